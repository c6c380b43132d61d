"""Regions: the app once per region, a global front door, Chaos Kong (docs/regions.md)."""
