"""The guards of a server's port, whichever protocol a connection speaks: read where they are
used (so a test may lower them), and kept apart from `http_server` so that a server whose callers
are all herd drivers never imports aiohttp (a tenth of a second of CPU at every start)."""

from __future__ import annotations

#: Idle keep-alive connections are closed after this long (longer than herd clients keep idle
#: connections, 30 s, so a client never reuses one the server is closing).
KEEPALIVE_S = 75.0
#: A request's head (request line and headers) must arrive within this long once it began.
HEADER_TIMEOUT_S = 10.0
#: A request body must arrive within this long once the core asks for it.
BODY_TIMEOUT_S = 10.0
#: Connections one server holds open at once; more are closed as they arrive.
MAX_CONNECTIONS = 4096
