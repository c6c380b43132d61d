"""The dashboard: a live page served by the control plane, fed by one gatherer.

See docs/dashboard.md.
"""
