"""The dashboard in a real browser, against a real `herd up` of the chain with a failing deep.

Each check measures the page against the control plane's own truth: once the control API (or an
instance's `/herd/dependencies`) shows a change, the page must show it within `REFLECT_S`.
"""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import herd
from examples.chain.interface import Middle
from herd._cloud.interface import InstanceView
from herd._process.registry_client import RegistryResolver
from tests.browser.chromium import chromium, console_errors, missing
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, write_app

#: How soon the page must show what the control plane knows (it updates once a second).
REFLECT_S = 3.0
#: Enough failed calls, spread over two middle instances, to open their breakers for deep (the
#: default breaker needs 20 requests in its window, half of them failed).
CALLS = 100
BATCH = 10

if (why := missing()) is not None:
    pytest.fail(why, pytrace=False)


def failing_chain(directory: Path) -> Path:
    """The chain app with every deep instance failing its echo (an internal error), behind a
    front door."""
    path = write_app(
        directory,
        "chain",
        instances={"deep": 2, "middle": 2, "edge": 1},
        front_door={"service": "edge"},
    )
    document = tomllib.loads(path.read_text())
    for group in document["groups"]:
        if group["service"] == "deep":
            group["env"] = {"CHAIN_DEEP_FAULT": "fail"}
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    started = Cloud(failing_chain(tmp_path_factory.mktemp("dashboard"))).start()
    yield started
    started.close()


@pytest.fixture(scope="module")
def page(cloud: Cloud) -> Iterator[Any]:
    state = cloud.state()
    assert state is not None
    with chromium() as browser:
        # The token travels in the fragment, which the browser never sends to the server.
        browser.get(f"http://{state['control']}/#token={state['token']}")
        yield browser


def shown(browser: Any, attribute: str, value: str = "") -> dict[str, str]:
    """`data-<attribute>` -> `data-<value>` of every element the page shows with the attribute.

    Read in one script: the page redraws every second, so an element found in one call may be
    gone by the next.
    """
    found: dict[str, str] = browser.execute_script(
        "const [name, value] = arguments;"
        "return Object.fromEntries([...document.querySelectorAll(`[data-${name}]`)]"
        ".map((e) => [e.dataset[name], value ? e.dataset[value] : '']));",
        attribute,
        value,
    )
    return found


def shown_instances(browser: Any) -> dict[str, str]:
    """Instance id -> status, as the page shows them."""
    return shown(browser, "instance", "status")


async def truth(cloud: Cloud) -> list[InstanceView]:
    async with cloud.api() as api:
        return await api.ps()


async def test_page_shows_every_group_and_instance_without_console_errors(
    cloud: Cloud, page: Any
) -> None:
    instances = await truth(cloud)
    await eventually(
        lambda: shown_instances(page),
        lambda shown: shown == {i.id: i.status for i in instances},
        timeout=REFLECT_S + 2,  # the first snapshot also waits for the page to load
        what="every instance on the page with its status",
    )
    assert set(shown(page, "group")) == {i.group for i in instances}
    assert set(shown(page, "node")) == {"front door", "deep", "middle", "edge"}
    # The token came in the fragment, which is gone from the address once read.
    assert "token" not in page.current_url
    assert console_errors(page) == []


async def test_a_killed_instance_goes_then_its_replacement_shows(cloud: Cloud, page: Any) -> None:
    before = await truth(cloud)
    await eventually(lambda: shown_instances(page), lambda s: set(s) == {i.id for i in before})
    victim = next(i for i in before if i.service == "middle")
    # Killed from the page itself: the action needs the token the page took from its fragment.
    killed_at = time.monotonic()
    clicked = page.execute_script(
        "const button = document.querySelector(`[data-instance='${arguments[0]}'] button`);"
        "if (button) button.click();"
        "return Boolean(button);",
        victim.id,
    )
    assert clicked, "no kill button: the page did not take the token from its fragment"
    await eventually(
        lambda: shown_instances(page),
        lambda shown: victim.id not in shown,
        timeout=REFLECT_S,
        what=f"{victim.id} gone from the page",
    )
    assert time.monotonic() - killed_at < REFLECT_S

    async def replaced() -> list[InstanceView]:
        return [i for i in await truth(cloud) if i.group == victim.group]

    members = await eventually(
        replaced,
        lambda m: (
            len(m) == 2 and victim.id not in {i.id for i in m} and all(i.status == "UP" for i in m)
        ),
        timeout=15,
        what=f"{victim.group} back to 2 UP",
    )
    (new,) = [m for m in members if m.id not in {i.id for i in before}]
    await eventually(
        lambda: shown_instances(page).get(new.id),
        lambda status: status == "UP",
        timeout=REFLECT_S,
        what=f"the replacement {new.id} UP on the page",
    )
    assert console_errors(page) == []


def open_breakers(cloud: Cloud, middles: list[InstanceView]) -> int:
    """How many middle instances have their breaker for deep open, by their own account (asked
    as the control plane: instances take no call without an identity)."""
    opened = 0
    context = cloud.tls()
    for middle in middles:
        url = f"https://{middle.address}/herd/dependencies"
        with urllib.request.urlopen(url, timeout=2, context=context) as r:
            breaker = (json.load(r).get("deep") or {}).get("breaker") or {}
        opened += breaker.get("state") == "open"
    return opened


async def test_an_opened_breaker_shows(cloud: Cloud, page: Any) -> None:
    edge = "middle>deep"
    assert shown(page, "edge", "breaker").get(edge) != "open"
    # No breaker of our own, or it would open first (middle answers with deep's failures) and
    # stop the calls that open middle's.
    policy = herd.CallPolicy(breaker=None, attempts=1)
    with cloud.identity():
        resolver = RegistryResolver(cloud.registry)
        await resolver.start()
        try:
            async with herd.driver(Middle, resolver=resolver, policy=policy) as middle:
                # In batches, so that connections (a TLS handshake each) are reused, not opened
                # a hundred at once on a busy machine.
                answers = []
                for _ in range(CALLS // BATCH):
                    answers += await asyncio.gather(
                        *(middle.relay("hello") for _ in range(BATCH)), return_exceptions=True
                    )
        finally:
            await resolver.close()
    assert all(isinstance(answer, herd.HerdError) for answer in answers)
    middles = [i for i in await truth(cloud) if i.service == "middle" and i.address]
    await eventually(lambda: open_breakers(cloud, middles), timeout=5, what="a breaker opened")
    opened_at = time.monotonic()
    await eventually(
        lambda: shown(page, "edge", "breaker").get(edge),
        lambda state: state == "open",
        timeout=REFLECT_S,
        what="the middle → deep breaker open on the page",
    )
    assert time.monotonic() - opened_at < REFLECT_S
    assert console_errors(page) == []


def test_actions_need_the_token(cloud: Cloud) -> None:
    state = cloud.state()
    assert state is not None
    victim = json.dumps({"instance": "edge-v001-a1"}).encode()
    for headers in ({}, {"authorization": "Bearer wrong"}):
        request = urllib.request.Request(
            f"http://{state['control']}/api/kill", data=victim, headers=headers
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
    with urllib.request.urlopen(f"http://{state['control']}/", timeout=5) as answer:
        assert state["token"] not in answer.read().decode()


def test_herd_top_shows_the_same_figures(cloud: Cloud) -> None:
    output = cloud.cli("top", "--once")  # in a pipe: plain tables, headers in capitals
    for expected in ("deep-v001", "middle-v001", "edge-v001", "middle → deep", "ZONE A"):
        assert expected in output, output


async def test_a_kept_request_links_from_the_panel_to_its_waterfall(
    cloud: Cloud, page: Any
) -> None:
    # A sampled trace context from outside asks the control plane to keep the trace.
    asked = "00-" + "ab" * 16 + "-00f067aa0ba902b7-01"
    request = urllib.request.Request(f"{cloud.front_door}/nowhere", headers={"traceparent": asked})
    with pytest.raises(urllib.error.HTTPError) as answered:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
    assert answered.value.headers["traceresponse"].startswith(asked[:36])
    link = f"/trace?id={'ab' * 16}"
    found = await eventually(
        lambda: page.execute_script(
            "return [...document.querySelectorAll('[data-panel=traces] a')]"
            ".map((a) => a.getAttribute('href'));"
        ),
        lambda links: link in links,
        timeout=REFLECT_S + 2.0,
        what="the kept request in the traces panel",
    )
    assert link in found
    state = cloud.state()
    assert state is not None
    page.get(f"http://{state['control']}{link}")
    try:
        rows = await eventually(
            lambda: shown(page, "span", "service"),
            lambda rows: {"herd-front-door", "edge"} <= set(rows.values()),
            timeout=REFLECT_S,
            what="the waterfall's spans of the front door and the edge",
        )
        assert len(rows) >= 3
        assert console_errors(page) == []
    finally:
        page.get(f"http://{state['control']}/#token={state['token']}")
