"""Experiments that reproduce the talk's claims with real processes (`herd experiment ...`)."""
