"""Chaos on the local cloud: Chaos Monkey, failure injection, zone outages. See docs/chaos.md."""
