"""A chain of three services, edge → middle → deep: the smallest system that shows telescoping."""
