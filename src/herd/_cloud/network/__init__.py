"""Zones as real networks: a network namespace per zone, joined by a bridge (`herd up
--network isolated`), and the faults herd injects into it (`herd chaos net`)."""
