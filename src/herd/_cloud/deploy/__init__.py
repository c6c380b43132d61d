"""Deploys: a new immutable server group beside the old, traffic moved by routes, judged by a
canary analysis, rolled back in seconds. See docs/deploy.md."""
