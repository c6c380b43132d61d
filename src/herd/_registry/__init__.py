"""The registry: which instances exist, where, and in what state (private; use `herd`)."""
