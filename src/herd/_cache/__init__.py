"""herd.Cache: EVCache's pattern over memcached, one replica per zone (docs/data.md)."""
