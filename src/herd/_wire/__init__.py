"""The wire: how calls travel between processes (herd's frames between drivers and servers,
HTTP/1.1 for everything else, msgpack bodies both ways)."""
