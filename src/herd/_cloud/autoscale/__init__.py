"""Autoscaling: the policy that decides a group's count. See docs/autoscale.md."""
