"""One region's cloud, as the global control plane runs it:
``python -m herd._cloud.regions.region APP.toml REGION``.

The `Controller` on the region's ports and run directory (`herd._cloud.app.region_app`); once
everything is up it prints the ready line with its front door's address, its control API and
nothing secret: its admin token is the one the global control plane gave it (`TOKEN`, in its
environment), and the plane reads the line from its output (`Process`).
"""

from __future__ import annotations

import json
import os
import sys

import msgspec
import uvloop

from herd._cloud.app import RegionLinks, load, region_app
from herd._cloud.controller import Controller
from herd._cloud.regions.plane import LINKS, TOKEN
from herd._cloud.up import up
from herd._process.config import STORE_URL
from herd._process.logging import configure
from herd._process.run import READY_PREFIX


def main(argv: list[str]) -> None:
    """Run the region named by `argv` (app file, region) until SIGTERM."""
    configure()
    source, region = argv
    links = os.environ.pop(LINKS, None)
    app = region_app(
        load(source), region, msgspec.json.decode(links, type=RegionLinks) if links else None
    )

    async def announce(controller: Controller) -> None:
        door = controller.front_door
        assert door is not None
        announced = {
            "address": door.url.removeprefix("http://").rstrip("/"),
            "control": controller.control_address,
            "dashboard": controller.dashboard_url,
            # Where its stores are (`HERD_STORE_URL`; absent on SQLite): the plane links them.
            "store": controller.launcher.environment().get(STORE_URL, ""),
        }
        print(READY_PREFIX + json.dumps(announced), flush=True)

    def say(message: str) -> None:
        print(f"{region}: {message}", file=sys.stderr, flush=True)

    token = os.environ.pop(TOKEN, None)
    uvloop.run(up(app, say=say, on_ready=announce, state=False, token=token))


if __name__ == "__main__":
    main(sys.argv[1:])
