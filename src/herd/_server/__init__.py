"""Serving an interface: deadlines, shedding, identity, metrics, drain (private; use `herd`)."""
