"""herd.Store and herd.Events: a service's own data and what it tells others (docs/data.md).

The data layer beside the registry: keyed records and per-key logs behind one typed API, on
SQLite (embedded, one machine) or NATS JetStream (three copies in three zones, quorum-
acknowledged); events on JetStream streams with durable consumers.
"""
