"""What makes a registry entry fit to call: ids, names, hosts and ports, and how much of a refused
value an error message repeats."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from herd._model.instance import Instance, Status, clip, host_problem, id_problem

FIT = Instance(
    id="movie-v001-a1",
    service="movie",
    group="movie-v001",
    version="v001",
    zone="a",
    host="127.0.0.1",
    port=8080,
    status=Status.UP,
)


def entry(**changes: Any) -> Instance:
    return msgspec.structs.replace(FIT, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"id": "x" * 128},
        {"id": "deep-worker.example.org-4242"},
        {"group": "g" * 128},
        {"service": "s" * 63, "zone": "z" * 63, "version": "v" * 63},
        {"service": "flix_edge-2"},
        {"host": "::1"},
        {"host": "2001:db8::8:800:200c:417a"},
        {"host": "localhost"},
        {"host": "movie-1.internal.example"},
        {"host": ".".join(["a" * 63] * 3) + "." + "b" * 61},  # 253 characters
        {"port": 1},
        {"port": 65535},
    ],
)
def test_fit_entries_have_no_problems(changes: dict[str, Any]) -> None:
    assert entry(**changes).problems() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"id": ""}, "id is empty"),
        ({"id": "x" * 129}, "id has 129 characters, at most 128"),
        ({"id": "a b"}, "id 'a b': only"),
        ({"id": "a/b"}, "id 'a/b': only"),
        ({"id": "a\nb"}, "id 'a\\nb': only"),
        ({"id": "émile"}, "id 'émile': only"),
        ({"service": "my.svc"}, "service 'my.svc': only"),
        ({"service": "s" * 64}, "service has 64 characters, at most 63"),
        ({"group": "g" * 129}, "group has 129 characters"),
        ({"group": "movie v001"}, "group 'movie v001': only"),
        ({"version": ""}, "version is empty"),
        ({"version": "v1;rm"}, "version 'v1;rm': only"),
        ({"zone": "a/b"}, "zone 'a/b': only"),
        ({"zone": "z" * 64}, "zone has 64 characters"),
        ({"host": ""}, "host is empty"),
        ({"host": "a b"}, "host 'a b': neither"),
        ({"host": "evil.example/path"}, "host 'evil.example/path': neither"),
        ({"host": "host:80"}, "host 'host:80': neither"),
        ({"host": "-bad.example"}, "host '-bad.example': neither"),
        ({"host": "bad-.example"}, "host 'bad-.example': neither"),
        ({"host": "under_score.example"}, "host 'under_score.example': neither"),
        ({"host": "a..b"}, "host 'a..b': neither"),
        ({"host": "999.1.1.1"}, "host '999.1.1.1': neither"),
        ({"host": "1.2.3"}, "host '1.2.3': neither"),
        ({"host": "fe80::1%eth0 /x"}, "host 'fe80::1%eth0 /x': neither"),
        ({"host": "a" * 64 + ".example"}, f"host '{'a' * 40}' and 32 more characters: neither"),
        ({"host": "h" * 254}, "host has 254 characters, at most 253"),
        ({"port": 0}, "port 0: not from 1 to 65535"),
        ({"port": 70000}, "port 70000: not from 1 to 65535"),
        ({"port": -1}, "port -1: not from 1 to 65535"),
    ],
)
def test_unfit_entries_say_what_is_wrong(changes: dict[str, Any], expected: str) -> None:
    problems = entry(**changes).problems()
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_every_problem_of_an_entry_is_listed() -> None:
    problems = entry(id="", zone="a b", host="no host", port=0).problems()
    assert [p.split()[0] for p in problems] == ["id", "zone", "host", "port"]


@pytest.mark.parametrize("huge", ["x" * 70_000, "\n" * 70_000, "é" * 70_000])
def test_a_refusal_repeats_a_bounded_part_of_what_it_refuses(huge: str) -> None:
    problems = [
        id_problem(huge),
        host_problem(huge),
        *entry(id=huge[:128], service=huge, group=huge, host=huge[:200]).problems(),
    ]
    assert all(p is not None and len(p) < 300 and "\n" not in p for p in problems), problems


def test_clip_quotes_escapes_and_cuts() -> None:
    assert clip("deep-a-1") == "'deep-a-1'"
    assert clip("a\nb\x1b[2J") == "'a\\nb\\x1b[2J'"
    clipped = clip("y" * 70_000)
    assert clipped == repr("y" * 40) + " and 69960 more characters"
    assert clip("z" * 50, limit=50) == repr("z" * 50)
