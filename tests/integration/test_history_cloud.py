"""The history of a real local cloud: what a kill, a scale and a restart of `herd up` leave in it,
through the control API, its HTTP query parameters and `herd history`."""

from __future__ import annotations

import json
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, by_group, replaced, settled, write_app

pytestmark = pytest.mark.timeout(150)


def query(cloud: Cloud, **params: str) -> Any:
    state = cloud.state()
    assert state is not None
    url = f"http://{state['control']}/history?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def snapshot(cloud: Cloud) -> Any:
    state = cloud.state()
    assert state is not None
    with urllib.request.urlopen(f"http://{state['control']}/api/snapshot", timeout=10) as answer:
        return json.load(answer)


async def test_kills_scaling_and_restarts_are_recorded_and_queried_exactly(
    tmp_path: Path,
) -> None:
    app = write_app(tmp_path, "chain", instances={"deep": 2, "middle": 1, "edge": 1})
    # A leashed monkey on edge, from the app file: it says whom it would kill, and kills nobody.
    document = tomllib.loads(app.read_text())
    document["groups"][2]["chaos"] = {"mean_interval_s": 0.3, "min_healthy": 0, "leashed": True}
    app.write_text(tomli_w.dumps(document))
    cloud = Cloud(app)
    try:
        _, instances = await cloud.wait_up()
        began = time.time()
        victim = by_group(instances)["deep-v001"][0]
        before = {i.id for i in by_group(instances)["deep-v001"]}
        async with cloud.api() as api:
            await api.kill(victim.id)
        _, replacement = await replaced(cloud, victim, before, time.monotonic())
        async with cloud.api() as api:
            await api.scale("middle-v001", 2)
            _, now_running = await settled(api, timeout=30, pids=cloud.pids)

        await eventually(
            lambda: query(cloud, kind="chaos.kill"), lambda k: len(k) >= 2, what="leashed kills"
        )
        (opted,) = query(cloud, kind="chaos.monkey")
        assert (opted["group"], opted["cause"], opted["detail"]["leashed"]) == (
            "edge-v001",
            "app",
            True,
        )
        # What ended, and why: exactly the one kill.
        ended = query(cloud, kind="instance.terminated")
        assert [(e["instance"], e["cause"]) for e in ended] == [(victim.id, "kill")]
        since = query(cloud, _since=str(began), kind="instance.launched")
        assert {e["instance"] for e in since} == {
            replacement.id,
            *(
                i.id
                for i in by_group(now_running)["middle-v001"]
                if i.id not in {j.id for j in instances}
            ),
        }
        scaled = query(cloud, group="middle-v001", kind="group")
        assert [(e["kind"], e["detail"]["desired"]) for e in scaled] == [
            ("group.created", 1),
            ("group.scaled", 2),
        ]
        # The state as of now is what `herd ps` shows; as of before the kill, the first set.
        await eventually(
            lambda: {i["id"]: i["status"] for i in query(cloud, _at=str(time.time()))["instances"]},
            lambda seen: seen == {i.id: "UP" for i in now_running},
            what="the replayed state matches ps",
        )
        assert {i["id"] for i in query(cloud, _at=str(began))["instances"]} == {
            i.id for i in instances
        }
        diff = query(cloud, _diff=f"{began},{time.time()}")
        gone = [c["id"] for c in diff["changes"] if c["what"] == "instance" and not c["after"]]
        assert gone == [victim.id]

        # The same through `herd history`, and a clear error for a bad time.
        printed = json.loads(cloud.cli("history", "--kind", "instance.terminated", "--json"))
        assert [e["instance"] for e in printed] == [victim.id]
        assert victim.id in cloud.cli("history", "--since", "10m")
        assert "no time" in cloud.cli("history", "--since", "yesterday", check=False)
        with pytest.raises(urllib.error.HTTPError) as refused:
            query(cloud, _since="yesterday")
        assert refused.value.code == 400
        # The dashboard shows the latest events, and what chaos does, as panels (and deploys:
        # none here).
        panels = {p["id"]: p for p in snapshot(cloud)["panels"]}
        assert set(panels) == {"chaos", "history", "deploys", "traces"}
        assert panels["deploys"]["rows"] == []
        # The leashed monkey strikes every 0.3 s on average: its events lead the panel.
        assert any(row[1] == "chaos.kill" for row in panels["history"]["rows"])
        assert [row[1] for row in panels["chaos"]["rows"]] == ["edge-v001"]
    finally:
        cloud.close()

    stopped_at = time.time()
    again = Cloud(app)
    try:
        _, fresh = await again.wait_up()
        events = query(again, _until=str(stopped_at))
        assert victim.id in {e["instance"] for e in events}, "the history outlived herd up"
        shutdown = {
            e["instance"]
            for e in events
            if e["kind"] == "instance.terminated" and e["cause"] == "shutdown"
        }
        assert shutdown == {i.id for i in now_running}
        assert [e["kind"] for e in query(again, kind="cloud")] == [
            "cloud.started",
            "cloud.stopped",
            "cloud.started",
        ]
        await eventually(
            lambda: {i["id"] for i in query(again, _at=str(time.time()))["instances"]},
            lambda seen: seen == {i.id for i in fresh},
            what="the state as of now holds only the new cloud's instances",
        )
    finally:
        again.close()
