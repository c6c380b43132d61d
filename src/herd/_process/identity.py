"""This process's identity, from `HERD_TLS_DIR`: the server's and the drivers' TLS contexts.

Importing this module makes the environment the source of the process's client context, so
every driver presents the process's identity without application code.
"""

from __future__ import annotations

import functools
import ssl

from herd._model.errors import ConfigurationError
from herd._process.config import TLS_DIR, settings
from herd._wire import tls


def _checked(make: functools.partial[ssl.SSLContext] | None) -> ssl.SSLContext | None:
    if make is None:
        return None
    try:
        return make()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"{TLS_DIR}: cannot load this process's identity: {exc}") from exc


def server_context() -> ssl.SSLContext | None:
    """The context this process serves with; None without `HERD_TLS_DIR` (plain TCP, anyone
    local may connect)."""
    directory = settings().tls_dir
    return _checked(None if directory is None else functools.partial(tls.server_context, directory))


def client_context() -> ssl.SSLContext | None:
    """The context this process's drivers connect with; None without `HERD_TLS_DIR`."""
    directory = settings().tls_dir
    return _checked(None if directory is None else functools.partial(tls.client_context, directory))


tls.use_client_source(client_context)
