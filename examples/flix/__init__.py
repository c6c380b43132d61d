"""flix: a small streaming site built only from herd's public API (see README.md)."""
