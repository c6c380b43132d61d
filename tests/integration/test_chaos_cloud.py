"""Chaos on a real local cloud: the monkey's kills, injected faults and a zone outage, each
checked in what the instances do and in what the history says happened."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import herd
from examples.chain.interface import Deep, Edge
from herd._cloud.history.store import Event
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, by_group, settled, write_app

pytestmark = pytest.mark.timeout(150)

CHAIN = {"deep": 3, "middle": 1, "edge": 1}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    cloud = Cloud(write_app(tmp_path_factory.mktemp("chaos"), "chain", instances=CHAIN)).start()
    yield cloud
    cloud.close()


def events(cloud: Cloud, *args: str) -> list[Event]:
    return msgspec.json.decode(cloud.cli("history", "--json", *args), type=list[Event])


async def test_the_monkey_kills_one_at_a_time_records_each_kill_and_halts(chain: Cloud) -> None:
    began = str(time.time())
    chain.cli("chaos", "monkey", "--group", "deep-v001", "--mean", "0.5s", "--min-healthy", "2")

    def kills() -> list[Event]:
        return events(chain, "--since", began, "--kind", "chaos.kill")

    await eventually(kills, lambda found: len(found) >= 3, timeout=60, what="three kills")
    chain.cli("chaos", "halt")
    status = json.loads(chain.cli("chaos", "status", "--json"))
    assert status["monkey"] == []
    seen = events(chain, "--since", began, "--group", "deep-v001")
    strikes = [e for e in seen if e.kind == "chaos.kill"]
    ended = {e.instance: e.cause for e in seen if e.kind == "instance.terminated"}
    assert all(ended.get(s.instance) == "chaos" for s in strikes)
    # Never two at once: between two strikes, the first victim's replacement came UP.
    for first, second in itertools.pairwise(strikes):
        between = [e for e in seen if first.seq < e.seq < second.seq]
        assert any(e.kind == "instance.up" for e in between), (first, second)
    async with chain.api() as api:
        await settled(api, timeout=30, pids=chain.pids)


async def test_injected_faults_fail_the_chosen_instances_until_halted(chain: Cloud) -> None:
    async with chain.api() as api:
        _, instances = await settled(api, timeout=30, pids=chain.pids)
    victim, *others = by_group(instances)["deep-v001"]
    chain.cli(
        "chaos", "inject", "deep.echo", "--error-rate", "1", "--for", "60s",
        "--instance", victim.id,
    )  # fmt: skip
    # Instances take connections only from the cloud's identities: the test calls as the
    # control plane.
    with chain.identity():
        async with (
            herd.driver(Deep, address=victim.address) as sick,
            herd.driver(Deep, address=others[0].address) as well,
        ):
            with pytest.raises(herd.RemoteError, match="injected failure"):
                await sick.echo("hi")
            assert isinstance(await sick.stats(), dict)  # another method: untouched
            assert (await well.echo("hi")).text == "hi"
            status = json.loads(chain.cli("chaos", "status", "--json"))
            assert [i["instance"] for i in status["injections"]] == [victim.id]
            chain.cli("chaos", "halt")
            assert (await sick.echo("hi")).text == "hi"
    (injected,) = events(chain, "--kind", "chaos.injected")
    assert injected.detail["instances"] == [victim.id]
    refused = chain.cli("chaos", "inject", "nope", "--error-rate", "1", check=False)
    assert "no running instance of service 'nope'" in refused


async def test_a_zone_outage_empties_the_zone_until_it_ends_and_the_chain_still_answers(
    chain: Cloud,
) -> None:
    async with chain.api() as api:
        _, before = await settled(api, timeout=30, pids=chain.pids)
        in_b = {i.id for i in before if i.zone == "b"}
        assert in_b, "the chain has instances in zone b"
        state = chain.state()
        assert state is not None
        chain.cli("chaos", "zone-outage", "b", "--for", "4s")
        during = await api.ps()
        assert all(i.pid == 0 for i in during if i.zone == "b")
        edge = next(i for i in before if i.group == "edge-v001")
        assert edge.zone == "a", "a group's first instance goes to the first zone"
        with chain.identity():
            async with herd.driver(Edge, address=edge.address) as front:
                assert (await front.greet("still here")).text.endswith("still here")
        # Nothing starts in b while it is out; after, b is repopulated.
        _, after = await settled(api, timeout=30, pids=chain.pids)
    restored = events(chain, "--kind", "chaos")
    kinds = [e.kind for e in restored]
    assert kinds[-2:] == ["chaos.zone-outage", "chaos.zone-restored"]
    outage, back = restored[-2], restored[-1]
    assert back.at - outage.at >= 3.9
    assert set(outage.detail["stopped"]) == in_b
    launched_in_b = [
        e for e in events(chain, "--since", str(outage.at), "--kind", "instance.launched")
        if e.detail["zone"] == "b"
    ]  # fmt: skip
    assert launched_in_b and all(e.at >= back.at for e in launched_in_b)
    assert {i.zone for i in after} == {"a", "b", "c"}
    assert "no zone 'q'" in chain.cli("chaos", "zone-outage", "q", check=False)


def test_the_app_file_opts_a_group_in(tmp_path: Path) -> None:
    from herd._cloud.app import load

    app = write_app(
        tmp_path,
        "chain",
        groups=[
            {
                "service": "spare",
                "module": "examples.chain.service",
                "args": ["deep"],
                "chaos": {"mean_interval_s": 30, "min_healthy": 2, "leashed": True},
            }
        ],
    )
    spec = load(app).spec.groups[-1].chaos
    assert spec is not None and (spec.mean_interval_s, spec.min_healthy, spec.leashed) == (
        30,
        2,
        True,
    )
    bad = app.read_text().replace("mean_interval_s = 30", "mean_interval_s = 0")
    app.write_text(bad)
    with pytest.raises(herd.ConfigurationError, match="mean_interval_s must be > 0"):
        load(app)


async def test_a_hung_instance_is_recorded_down_and_up_again(chain: Cloud) -> None:
    async with chain.api() as api:
        _, instances = await settled(api, timeout=30, pids=chain.pids)
    hung = by_group(instances)["deep-v001"][0]
    began = str(time.time())

    def changes() -> list[tuple[str, str]]:
        found = events(chain, "--since", began, "--group", "deep-v001", "--kind", "instance")
        return [(e.kind, e.cause) for e in found if e.instance == hung.id]

    os.kill(hung.pid, signal.SIGSTOP)
    try:
        # Its lease runs out (3 s) and the registry evicts it: down, while its process lives.
        await eventually(changes, lambda c: ("instance.down", "registry") in c, timeout=20)
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    await eventually(changes, lambda c: ("instance.up", "registry") in c, timeout=20)
    assert changes() == [("instance.down", "registry"), ("instance.up", "registry")]
