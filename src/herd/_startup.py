"""What an instance of the local cloud does as it starts: no work it will not use.

Every replacement instance starts on the cores its group is serving on, so the CPU of its start
is taken from their calls (issue 27: the tail under kills). For an instance the cloud started
(`HERD_INSTANCE` set, stderr not a terminal), two imports are made cheaper:

- structlog imports its development renderer, and with it rich (about 60 ms of CPU), whenever
  rich is installed, which herd's command line needs. Instances render with structlog's plain
  renderer (`herd._process.logging`), so structlog is imported with rich hidden; rich stays
  importable for anything that asks for it later.
- aiohttp's import builds its two default client SSL contexts, each loading the system CA store
  (about 70 ms together), which herd's own connections never use: they use mutual TLS with the
  app's authority. The two contexts are made without it and load it at their first handshake,
  so an instance's own HTTPS calls through aiohttp's defaults verify as before.
"""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any


class _CaStoreOnFirstUse(ssl.SSLContext):
    """A client context that loads the system CA store at its first handshake."""

    _ca_loaded = False

    def _load_ca(self) -> None:
        if not self._ca_loaded:
            self._ca_loaded = True
            ssl.SSLContext.set_default_verify_paths(self)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_ca()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_ca()
        return super().wrap_bio(*args, **kwargs)


def _import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # import rich: ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


def _import_aiohttp_without_the_ca_store() -> None:
    if "aiohttp" in sys.modules:
        return
    loading = ssl.SSLContext.set_default_verify_paths
    ssl.SSLContext.set_default_verify_paths = lambda self: None  # type: ignore[method-assign]
    try:
        import aiohttp.connector as connector
    finally:
        ssl.SSLContext.set_default_verify_paths = loading  # type: ignore[method-assign]
    for name in ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED"):
        context = getattr(connector, name, None)
        if type(context) is ssl.SSLContext:
            context.__class__ = _CaStoreOnFirstUse
        else:
            # Not the aiohttp this was written for: load the store now, as it would have.
            if isinstance(context, ssl.SSLContext):
                loading(context)


if os.environ.get("HERD_INSTANCE") and not sys.stderr.isatty():
    _import_structlog_without_rich()
    _import_aiohttp_without_the_ca_store()
