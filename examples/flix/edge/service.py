"""edge's implementation and process: ``python -m examples.flix.edge.service``.

One server, one port (``HERD_PORT``, default 0: any free port), two fronts over `HomePages`:

- the `Edge` interface over herd RPC (``home(visitor) -> HomePage``);
- web routes for people, the front door and load generators: ``/`` (HTML),
  ``/api/home?visitor=N`` (JSON), ``/boxshot.svg?video=N``; sign-in and sign-out
  (``POST /signin``, ``/signout``, ``/api/signin``, ``/api/signout``) and the writes
  (``POST /act`` from the page, ``/api/play``, ``/api/rate``): see `examples.flix.edge.web`.

Dependencies: ``FLIX_MOVIE_ADDR``, ``FLIX_MERCH_ADDR``, ``FLIX_HISTORY_ADDR``,
``FLIX_IDENTITY_ADDR`` (``host:port,...``; without one, the registry), ``FLIX_IDENTITY=real|fake``,
``FLIX_EDGE_DEADLINE`` (seconds per HTTP request, default 1.0).
"""

from __future__ import annotations

import herd
from examples.flix.edge.interface import Edge, HomePage
from examples.flix.edge.library import HomePages
from examples.flix.edge.web import Front
from examples.flix.ids import VisitorId


class EdgeService(Edge):
    """The `Edge` interface and the HTTP front, over `HomePages`."""

    def __init__(self, pages: HomePages) -> None:
        self.pages = pages
        self.front = Front(pages)

    async def home(self, visitor: VisitorId) -> HomePage:
        return await self.pages.home(visitor)

    @herd.route("GET", "/")
    async def home_html(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.home(request)

    @herd.route("GET", "/api/home")
    async def home_json(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.api_home(request)

    @herd.route("POST", "/signin")
    async def sign_in_form(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.sign_in(request, as_json=False)

    @herd.route("POST", "/api/signin")
    async def sign_in_json(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.sign_in(request, as_json=True)

    @herd.route("POST", "/signout")
    async def sign_out_form(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.sign_out(request, as_json=False)

    @herd.route("POST", "/api/signout")
    async def sign_out_json(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.sign_out(request, as_json=True)

    @herd.route("POST", "/act")
    async def act(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.act(request)

    @herd.route("POST", "/api/play")
    async def play(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.api_play(request)

    @herd.route("POST", "/api/rate")
    async def rate(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.api_rate(request)

    @herd.route("GET", "/boxshot.svg")
    async def boxshot(self, request: herd.WebRequest) -> herd.WebResponse:
        return await self.front.boxshot(request)


def main() -> None:
    herd.run(EdgeService(HomePages.from_env()))


if __name__ == "__main__":
    main()
