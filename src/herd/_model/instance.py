"""The registry's data model: an instance, its status, and what makes an entry fit to call."""

from __future__ import annotations

import enum
import ipaddress
import re

import msgspec

#: The longest instance id and group name; service, zone and version names are shorter.
MAX_ID = 128
MAX_NAME = 63
#: The longest DNS host name (RFC 1035).
MAX_HOST = 253
#: How many characters of a caller-chosen string a log line or error message repeats.
SHOWN = 40

# ASCII only, so that an entry reads the same in every log, terminal and metric label.
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_NAME_CHARACTERS = "A-Z a-z 0-9 . _ -"
_SERVICE = re.compile(r"[A-Za-z0-9_-]+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class Status(enum.StrEnum):
    """Lifecycle of an instance as the registry sees it."""

    STARTING = "STARTING"
    UP = "UP"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"
    DOWN = "DOWN"


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """One running copy of a service, in one zone, at one address.

    The fields' rules are checked by `problems`, not by decoding: a snapshot with one bad entry
    must still decode, so that its reader can skip that entry and keep the rest.
    """

    id: str
    service: str
    group: str
    version: str
    zone: str
    host: str
    port: int
    status: Status = Status.STARTING

    @property
    def address(self) -> str:
        """`host:port`."""
        return f"{self.host}:{self.port}"

    def problems(self) -> list[str]:
        """What makes this entry unfit for the registry and for callers; empty when it is fit.

        The id and group: 1 to 128 of ``A-Z a-z 0-9 . _ -``; the zone and version: 1 to 63 of
        the same; the service: 1 to 63 of ``A-Z a-z 0-9 _ -``; the host: an IP address or a DNS
        host name; the port: 1 to 65535. Each problem repeats at most `SHOWN` characters of
        what it refuses.
        """
        found = [
            id_problem(self.id),
            _name_problem("service", self.service, MAX_NAME, _SERVICE, "A-Z a-z 0-9 _ -"),
            _name_problem("group", self.group, MAX_ID, _NAME, _NAME_CHARACTERS),
            _name_problem("version", self.version, MAX_NAME, _NAME, _NAME_CHARACTERS),
            _name_problem("zone", self.zone, MAX_NAME, _NAME, _NAME_CHARACTERS),
            host_problem(self.host),
            None if 1 <= self.port <= 65535 else f"port {self.port}: not from 1 to 65535",
        ]
        return [problem for problem in found if problem is not None]


def id_problem(instance_id: str) -> str | None:
    """What makes `instance_id` unfit for the registry, or None."""
    return _name_problem("id", instance_id, MAX_ID, _NAME, _NAME_CHARACTERS)


def host_problem(host: str) -> str | None:
    """Why `host` is neither an IP address nor a DNS host name, or None."""
    if not host:
        return "host is empty"
    if len(host) > MAX_HOST:
        return f"host has {len(host)} characters, at most {MAX_HOST}"
    # An IPv6 scope (`%eth0`) names an interface of one machine, and may hold any character.
    if "%" not in host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return None
    labels = host.split(".")
    # An all-digit last label would be a mistyped IPv4 address (`999.1.1.1`), not a name.
    if all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit():
        return None
    return f"host {clip(host)}: neither an IP address nor a DNS host name"


def clip(text: str, limit: int = SHOWN) -> str:
    """`text` as a log line or error message may repeat it: quoted with escapes (no caller can
    start a line or hide a character) and cut to `limit` characters, saying how many more."""
    rest = len(text) - limit
    return repr(text[:limit]) + (f" and {rest} more characters" if rest > 0 else "")


def _name_problem(
    field: str, value: str, limit: int, pattern: re.Pattern[str], allowed: str
) -> str | None:
    if not value:
        return f"{field} is empty"
    # The length first: a refusal never scans, or repeats, more than it must.
    if len(value) > limit:
        return f"{field} has {len(value)} characters, at most {limit}"
    if pattern.fullmatch(value) is None:
        return f"{field} {clip(value)}: only {allowed} allowed"
    return None
