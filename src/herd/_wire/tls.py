"""Mutual TLS at the socket, whatever protocol runs inside: the SSL contexts, the caller's
identity read from the peer's certificate, and the process's own client context.

Servers require a certificate from the app's certificate authority (`CERT_REQUIRED`), so a
process without one fails the handshake before any byte of a request is read. Clients present
their own certificate and check that the server's comes from the same authority. Connections
are kept alive and reused, so the handshake (the only public-key work) is paid once per
connection, never per call.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from herd._model.identity import Identity, parse

#: The files of one identity, in its directory.
CA_FILE = "ca.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def _context(purpose: ssl.Purpose, directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(directory / CA_FILE))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
    return context


def server_context(directory: Path) -> ssl.SSLContext:
    """A server's context: its certificate, and callers must present one from the CA."""
    context = _context(ssl.Purpose.CLIENT_AUTH, directory)
    context.verify_mode = ssl.CERT_REQUIRED
    # No session tickets: herd's clients never resume a session (a pool keeps its connections
    # instead), and making two tickets per handshake is a fifth of its cost.
    context.num_tickets = 0
    return context


def client_context(directory: Path) -> ssl.SSLContext:
    """A client's context: its certificate, and servers must present one from the CA.

    Host names are not checked: instances are found by address in the registry, and any
    certificate the app's authority issued is one of the app's processes.
    """
    context = _context(ssl.Purpose.SERVER_AUTH, directory)
    context.check_hostname = False
    return context


def peer_identity(ssl_object: Any) -> Identity | None:
    """The identity in the URI SAN of the peer's certificate (an `ssl.SSLObject` or socket);
    None without a certificate or a herd URI."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI" and (identity := parse(value)) is not None:
            return identity
    return None


ContextSource = Callable[[], ssl.SSLContext | None]


def _no_identity() -> ssl.SSLContext | None:
    return None


_source: ContextSource = _no_identity
_loaded = False
_context_now: ssl.SSLContext | None = None


def use_client_source(source: ContextSource) -> None:
    """Where the process's own client context comes from (the process layer reads it from the
    environment); asked once, on first use."""
    global _source, _loaded
    _source, _loaded = source, False


def set_client_context(context: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """Make `context` this process's client context (the control plane holds its own identity
    this way); returns the previous one. Transports made before keep theirs."""
    global _loaded, _context_now
    previous = process_client_context()
    _context_now, _loaded = context, True
    return previous


def process_client_context() -> ssl.SSLContext | None:
    """The context this process's drivers connect with; None to speak plain TCP."""
    global _loaded, _context_now
    if not _loaded:
        _context_now, _loaded = _source(), True
    return _context_now


class _Identity(enum.Enum):
    PROCESS = "process"


#: `tls=` for a transport that connects with the process's own identity (if it has one).
PROCESS = _Identity.PROCESS
#: What a transport's `tls=` takes: a context, `PROCESS`, or None for plain TCP.
Tls: TypeAlias = ssl.SSLContext | _Identity | None
#: Added to the connect timeout under TLS, whose handshake counts in it: a burst of new
#: connections (a pool filling up) queues handshakes on both ends' CPUs, and a handshake that
#: waits its turn is no dead host.
HANDSHAKE_S = 1.0


def client_context_for(tls: Tls) -> ssl.SSLContext | None:
    """The context a transport given `tls=` connects with."""
    return process_client_context() if tls is PROCESS else tls
