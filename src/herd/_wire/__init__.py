"""The wire: how calls travel between processes (HTTP/1.1 + msgpack today)."""
