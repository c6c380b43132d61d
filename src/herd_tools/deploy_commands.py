"""What `herd deploy start / status / confirm / abort / rollback` do: follow-up on stderr,
data (the status, as tables or JSON) on stdout."""

from __future__ import annotations

import asyncio
import time

import msgspec

from herd._cloud.interface import CloudApi, DeployView
from herd_tools.cloud_commands import ask
from herd_tools.output import Column, Failure, print_table, say, usage

#: States a deploy ends in, or waits in for a person (the rollback window).
_SETTLED = ("window", "promoted", "rolled_back", "aborted", "failed")


def _settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise usage(f"--set takes KEY=VALUE, not {pair!r}", "e.g. --set FLIX_FAIL_RATE=0.1")
        settings[key] = value
    return settings


def deploy_command(service: str, version: str, strategy: str, pairs: list[str], wait: bool) -> None:
    """Start a deploy and, with `wait`, follow it until it settles."""
    settings = _settings(pairs)

    async def run(api: CloudApi) -> DeployView:
        view = await api.deploy(service, version, strategy, settings)
        say(f"deploying {view.new_group} beside {view.old_group} ({strategy})")
        if not wait:
            return view
        shown = 0
        while True:
            views = {v.service: v for v in await api.deploys()}
            view = views[service]
            for event in view.events[shown:]:
                say(f"  {_clock(event.at)}  {event.kind:<16} {event.message}")
            shown = len(view.events)
            if view.state in _SETTLED:
                return view
            await asyncio.sleep(0.5)

    view = ask(run)
    if view.state == "window":
        say(
            f"{view.new_group} serves; {view.old_group} is disabled and kept until"
            f" {_clock(view.window_ends_at or 0)}: herd rollback {service} | herd deploy confirm"
            f" {service}"
        )
    elif view.state == "promoted":
        say(f"{service}: promoted", style="green")
    elif view.state in _SETTLED:
        raise Failure(f"{service}: the deploy of {view.new_group} ended {view.state}")


def status_command(as_json: bool) -> None:
    """Print every service's latest deploy with its steps, scores and decisions."""

    async def run(api: CloudApi) -> list[DeployView]:
        return await api.deploys()

    views = ask(run)
    if as_json:
        print(msgspec.json.encode(views).decode())
        return
    if not views:
        say("no deploys yet")
        return
    columns = [Column("time"), Column("step"), Column("score", right=True), Column("what")]
    for view in views:
        shares = ", ".join(f"{group} {share} %" for group, share in view.shares.items())
        score = "" if view.canary_score is None else f", canary score {view.canary_score:.0f}"
        back = "" if view.rollback_s is None else f", rolled back in {view.rollback_s:.3f} s"
        title = (
            f"{view.service} {view.version} ({view.strategy}): {view.state}{score}{back}"
            f" · traffic: {shares}"
        )
        rows = [
            [
                _clock(event.at),
                event.kind,
                "" if event.score is None else f"{event.score:.0f}",
                event.message,
            ]
            for event in view.events
        ]
        print_table(title, columns, rows)


def confirm_command(service: str) -> None:
    """End a deploy's rollback window now."""
    view = ask(lambda api: api.confirm(service))
    say(f"{service}: confirmed; {view.old_group} is destroyed")


def abort_command(service: str) -> None:
    """Stop a deploy and go back to the old group."""
    view = ask(lambda api: api.abort(service))
    say(f"{service}: aborted; {view.old_group} serves ({view.rollback_s} s)")


def rollback_command(service: str) -> None:
    """Send a service's traffic back to its old group."""
    started = time.monotonic()
    view = ask(lambda api: api.rollback(service))
    say(
        f"{service}: rolled back; {view.old_group} serves again in {view.rollback_s} s"
        f" (command: {time.monotonic() - started:.2f} s)"
    )


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))
