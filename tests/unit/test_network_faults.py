"""The isolated network's names and addresses, and network faults as nftables rules and tc
queues (pure: no namespace is made here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd._cloud.app import load, with_network
from herd._cloud.network import isolated
from herd._cloud.network.faults import NetFault, Placed, nft_script, tc_commands
from herd._cloud.network.plan import NetworkPlan, cloud_id
from herd._model.errors import ConfigurationError
from tests.helpers import ROOT

PLAN = NetworkPlan("abc123", ("a", "b", "c"), subnet=7)


def test_every_name_carries_the_cloud_id_and_links_fit_the_kernels_15_characters() -> None:
    assert cloud_id(Path("/x/run")) == cloud_id(Path("/x/run")) != cloud_id(Path("/y/run"))
    assert PLAN.namespaces == [
        "herd-abc123-core",
        "herd-abc123-zone-a",
        "herd-abc123-zone-b",
        "herd-abc123-zone-c",
    ]
    links = [PLAN.bridge, PLAN.host_link, PLAN.host_port]
    links += [f(z) for z in PLAN.zones for f in (PLAN.zone_link, PLAN.zone_port)]
    assert all(link.startswith("hdabc123") and len(link) <= 15 for link in links)
    assert len(set(links)) == len(links)


def test_each_zone_has_its_own_address_in_the_clouds_slash_24() -> None:
    assert PLAN.network == "10.213.7.0/24"
    assert (PLAN.host_address, PLAN.core_address) == ("10.213.7.1", "10.213.7.2")
    assert [PLAN.address(z) for z in PLAN.zones] == ["10.213.7.10", "10.213.7.11", "10.213.7.12"]
    assert PLAN.zone_of("10.213.7.11") == "b" and PLAN.zone_of("10.213.7.2") is None


def _placed(fault: NetFault, port: int | None = None, peers: tuple[str, ...] = ()) -> Placed:
    return Placed(fault, "herd-abc123-zone-b", "hdabc123z1", port, peers)


def _rules(script: str, chain: str) -> list[str]:
    lines = script.split(f"chain {chain} {{\n", 1)[1].splitlines()
    body = lines[1 : lines.index("  }")]  # after the chain's type line
    return [line.strip() for line in body]


def test_a_partition_drops_both_ways_and_one_way_only_what_the_side_sends() -> None:
    both = _placed(NetFault(zone="b", peer="a", partition=True), peers=("10.213.7.10",))
    script = nft_script("herd_abc123", [both])
    assert script.startswith("table inet herd_abc123\ndelete table inet herd_abc123\n")
    assert _rules(script, "out") == ["ip daddr { 10.213.7.10 } drop"]
    assert _rules(script, "in") == ["ip saddr { 10.213.7.10 } drop"]
    one_way = _placed(NetFault(instance="edge-b2", partition=True, one_way=True), port=4100)
    script = nft_script("herd_abc123", [one_way])
    assert _rules(script, "out") == ["tcp sport 4100 drop"]  # its answers are lost
    assert _rules(script, "in") == []  # requests still arrive


def test_loss_toward_everything_matches_the_zones_link_not_its_loopback() -> None:
    script = nft_script("herd_abc123", [_placed(NetFault(zone="b", loss_pct=5))])
    assert _rules(script, "out") == ['oifname "hdabc123z1" numgen random mod 10000 < 500 drop']
    assert _rules(script, "in") == ['iifname "hdabc123z1" numgen random mod 10000 < 500 drop']
    assert _rules(nft_script("herd_abc123", []), "out") == []  # no fault: an empty table


def test_latency_and_bandwidth_get_a_class_of_their_own_and_links_a_default_delay() -> None:
    fault = NetFault(zone="b", peer="registry", latency_ms=200, jitter_ms=20, rate_kbit=800)
    commands = tc_commands(
        "hdabc123z1", [_placed(fault, peers=("10.213.7.2",))], default_delay_ms=0.5, netem=True
    )
    lines = [" ".join(c) for c in commands]
    assert "parent 1:1 handle 10: netem delay 0.5ms" in lines[2]
    assert lines[1].endswith("classid 1:1 htb rate 10gbit burst 1mb cburst 1mb")
    assert lines[3].endswith("classid 1:2 htb rate 800kbit")
    assert lines[4].endswith("parent 1:2 handle 12: netem delay 200.5ms 20ms")
    assert lines[5].endswith("match ip dst 10.213.7.2/32 flowid 1:2")
    # A kernel without netem, and no fault: the link keeps its own queue, nothing in the way.
    assert tc_commands("hdabc123z1", [], default_delay_ms=0.5, netem=False) == []


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (NetFault(partition=True), "one zone or one instance"),
        (NetFault(zone="a", instance="x", partition=True), "one zone or one instance"),
        (NetFault(zone="a"), "partitions, delays, loses or limits"),
        (NetFault(zone="a", loss_pct=5, one_way=True), "one way is a kind of partition"),
        (NetFault(zone="a", loss_pct=101), "loss (0 to 100)"),
        (NetFault(zone="a", latency_ms=10, jitter_ms=20), "jitter (at most the latency)"),
        (NetFault(zone="a", partition=True, duration_s=0), "more than 0 s"),
    ],
)
def test_a_fault_that_makes_no_sense_is_refused(fault: NetFault, problem: str) -> None:
    assert problem in (fault.problem() or "")


def test_a_fault_describes_itself() -> None:
    fault = NetFault(zone="b", peer="a", partition=True, one_way=True, loss_pct=5)
    assert fault.describe() == "b -> a: partition one way, 5% loss"
    assert NetFault(zone="c", latency_ms=200, jitter_ms=10).describe() == "c -> all: +200±10ms"


def test_isolation_says_what_it_needs_and_the_default_stays_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = load(ROOT / "examples" / "flix" / "app.toml")
    assert app.spec.network == "loopback"
    assert with_network(app, "isolated").spec.network == "isolated"
    with pytest.raises(ConfigurationError, match="loopback or isolated"):
        with_network(app, "bridged")
    monkeypatch.setattr(isolated.os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigurationError, match="needs root"):
        isolated.require()
    monkeypatch.setattr(isolated.sys, "platform", "darwin")
    with pytest.raises(ConfigurationError, match="needs Linux"):
        isolated.require()
