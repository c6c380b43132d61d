"""The local cloud: server groups as OS processes across zones, a front door (private)."""
