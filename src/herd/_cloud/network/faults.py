"""Faults in the network itself, as nftables rules and tc queues, worked out without I/O.

A fault sits on one side (a zone, or one instance: its zone and its port) and reaches a peer
(another zone, the registry, or everything beyond the side). The rules live in the side's
namespace, so removing the namespace removes them:

- a partition drops, with nftables, what the side sends to the peer and (both ways) what it
  receives from it; one way, only what it sends: requests arrive, answers do not;
- loss drops that share of the packets each way (nftables' `numgen random`);
- latency (+ jitter) and bandwidth queue what the side sends to the peer (tc: an htb class per
  fault, netem under it for the delay): the latency is added once per round trip.

Links carry a small default delay (netem) where the kernel has netem.
"""

from __future__ import annotations

import dataclasses

import msgspec

REGISTRY = "registry"
#: A class that does not limit bandwidth: at such a rate htb works its burst out as 0 bytes
#: (and then throttles everything), so the burst is given.
_UNLIMITED = ["rate", "10gbit", "burst", "1mb", "cburst", "1mb"]


class NetFault(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One network fault: on `zone` or one `instance`, toward `peer`, for `duration_s`."""

    zone: str = ""
    instance: str = ""
    """One instance instead of a whole zone (its server port, in its zone)."""
    peer: str = ""
    """Another zone, `registry`, or "" (everything beyond the side)."""
    partition: bool = False
    one_way: bool = False
    """With `partition`: only what the side sends is lost (its requests and its answers)."""
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_kbit: float = 0.0
    duration_s: float = 60.0

    def problem(self) -> str | None:
        """What is wrong with this fault, in words; None if nothing."""
        if bool(self.zone) == bool(self.instance):
            return "a network fault is on one zone or one instance"
        if not (self.partition or self.latency_ms or self.loss_pct or self.rate_kbit):
            return "a network fault partitions, delays, loses or limits something"
        if self.one_way and not self.partition:
            return "one way is a kind of partition"
        numbers = (self.latency_ms, self.jitter_ms, self.loss_pct, self.rate_kbit)
        if min(numbers) < 0 or self.loss_pct > 100 or self.jitter_ms > self.latency_ms:
            return "latency, jitter (at most the latency), loss (0 to 100) and rate are >= 0"
        if not 0 < self.duration_s <= 24 * 3600:
            return "a network fault lasts more than 0 s and at most a day"
        return None

    def describe(self) -> str:
        """The fault in a few words: `b -> a: partition one way`."""
        side = self.zone or self.instance
        parts = []
        if self.partition:
            parts.append("partition" + (" one way" if self.one_way else ""))
        if self.latency_ms:
            jitter = f"±{self.jitter_ms:g}" if self.jitter_ms else ""
            parts.append(f"+{self.latency_ms:g}{jitter}ms")
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g}% loss")
        if self.rate_kbit:
            parts.append(f"{self.rate_kbit:g}kbit/s")
        return f"{side} -> {self.peer or 'all'}: {', '.join(parts)}"


@dataclasses.dataclass(frozen=True)
class Placed:
    """A fault where it applies: the side's namespace and link, its port (an instance's) and
    the peer's addresses (none: everything)."""

    fault: NetFault
    namespace: str
    link: str
    port: int | None
    peers: tuple[str, ...]


def _matches(placed: Placed, outbound: bool) -> list[str]:
    """The nftables match of what the side sends (`outbound`) or receives from the peer."""
    match = []
    if placed.peers:
        field = "daddr" if outbound else "saddr"
        match.append(f"ip {field} {{ {', '.join(placed.peers)} }}")
    elif placed.port is None:
        # A zone toward everything beyond it: whatever crosses its link (not its loopback).
        match.append(f'{"oifname" if outbound else "iifname"} "{placed.link}"')
    if placed.port is not None:
        match.append(f"tcp {'sport' if outbound else 'dport'} {placed.port}")
    return match


def nft_script(table: str, faults: list[Placed]) -> str:
    """The `nft -f` script that makes `table` hold exactly the rules of `faults` (all in one
    namespace), atomically."""
    out: list[str] = []
    into: list[str] = []
    for placed in faults:
        fault = placed.fault
        for outbound, rules in ((True, out), (False, into)):
            match = " ".join(_matches(placed, outbound))
            if fault.partition and (outbound or not fault.one_way):
                rules.append(f"{match} drop")
            if fault.loss_pct:
                share = round(fault.loss_pct * 100)
                rules.append(f"{match} numgen random mod 10000 < {share} drop")
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    for chain, hook, rules in (("out", "output", out), ("in", "input", into)):
        lines.append(f"  chain {chain} {{")
        lines.append(f"    type filter hook {hook} priority 0; policy accept;")
        lines += [f"    {rule}" for rule in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def tc_commands(
    link: str, faults: list[Placed], *, default_delay_ms: float, netem: bool
) -> list[list[str]]:
    """The `tc` commands (without `ip netns exec`) that make `link`'s egress queues hold the
    default delay and the latency and bandwidth of `faults`, from nothing (the root qdisc
    removed first)."""
    dev = ["dev", link]
    shaped = [p for p in faults if p.fault.latency_ms or p.fault.rate_kbit]
    delayed = netem and default_delay_ms > 0
    if not (shaped or delayed):
        return []  # the link's own queue: nothing in its way
    commands = [
        ["tc", "qdisc", "add", *dev, "root", "handle", "1:", "htb", "default", "1"],
        ["tc", "class", "add", *dev, "parent", "1:", "classid", "1:1", "htb", *_UNLIMITED],
    ]
    if delayed:
        commands.append(_netem(link, "1:1", "10:", default_delay_ms, 0.0))
    for index, placed in enumerate(shaped, start=2):
        fault, classid = placed.fault, f"1:{index}"
        rate = ["rate", f"{fault.rate_kbit:g}kbit"] if fault.rate_kbit else _UNLIMITED
        commands.append(
            ["tc", "class", "add", *dev, "parent", "1:", "classid", classid, "htb", *rate]
        )
        delay = fault.latency_ms + (default_delay_ms if netem else 0.0)
        if netem and delay:
            commands.append(_netem(link, classid, f"{10 + index}:", delay, fault.jitter_ms))
        port = ["match", "ip", "sport", str(placed.port), "0xffff"] if placed.port else []
        for peer in placed.peers or ("0.0.0.0/0",):
            destination = peer if "/" in peer else f"{peer}/32"
            commands.append(
                ["tc", "filter", "add", *dev, "parent", "1:", "protocol", "ip", "prio", "1",
                 "u32", "match", "ip", "dst", destination, *port, "flowid", classid]
            )  # fmt: skip
    return commands


def _netem(link: str, parent: str, handle: str, delay_ms: float, jitter_ms: float) -> list[str]:
    command = ["tc", "qdisc", "add", "dev", link, "parent", parent, "handle", handle, "netem"]
    command += ["delay", f"{delay_ms:g}ms"]
    if jitter_ms:
        command += [f"{jitter_ms:g}ms"]
    return command
