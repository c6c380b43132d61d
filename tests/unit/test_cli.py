"""The `herd` command speaks like a Unix tool: every command's help reads in a pipe, a usage
mistake exits 2 and a failure 1, each as one whole line on stderr with nothing on stdout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from herd_tools.cli import command
from herd_tools.output import Column, error_line, render_table
from tests.helpers import herd_cli


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable command's words, e.g. ("deploy", "start")."""
    group = group or command()
    for name, child in getattr(group, "commands", {}).items():
        if getattr(child, "commands", None):
            yield from commands(child, (*path, name))
        else:
            yield (*path, name)


EVERY_COMMAND = sorted(commands())
# typer's placeholders, and click's type names, which say nothing to a person.
PLACEHOLDER = re.compile(r"<\w[\w ]*>|\b(TEXT|INTEGER|FLOAT|BOOLEAN)\b")


def test_the_tree_has_the_groups_a_reader_expects() -> None:
    assert {"deploy", "chaos", "experiment", "k8s"} <= {path[0] for path in EVERY_COMMAND}
    assert {("deploy", "start"), ("deploy", "status"), ("deploy", "rollback")} <= set(EVERY_COMMAND)
    # A service named like a subcommand can be deployed: the service is an argument of start.
    assert ("deploy", "status") in EVERY_COMMAND and ("rollback",) in EVERY_COMMAND


@pytest.mark.parametrize("words", EVERY_COMMAND, ids=" ".join)
def test_help_names_values_and_gives_an_example(words: tuple[str, ...]) -> None:
    ran = herd_cli(*words, "--help")
    assert ran.code == 0, ran
    assert ran.stderr == ""
    assert not PLACEHOLDER.search(ran.stdout), ran.stdout
    summary = ran.stdout.split("\n\n")[1]
    assert 0 < len(" ".join(summary.split())) <= 160, summary
    assert "Example:" in ran.stdout, ran.stdout


@pytest.mark.parametrize("words", EVERY_COMMAND, ids=" ".join)
def test_an_unknown_flag_is_a_usage_mistake_on_stderr(words: tuple[str, ...]) -> None:
    ran = herd_cli(*words, "--no-such-flag")
    assert ran.code == 2, ran
    assert ran.stdout == ""
    assert ran.stderr.startswith("herd: ") and ran.stderr.count("\n") == 1, ran.stderr
    assert "--no-such-flag" in ran.stderr
    assert f"herd {' '.join(words)} --help" in ran.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["chaos", "inject", "movie", "--for", "soon"], "--for"),
        (["chaos", "monkey", "--group", "movie-v001", "--mean", "often"], "--mean"),
        (["deploy", "start", "movie", "--version", "v002", "--set", "NOEQUALS"], "--set"),
        (["history", "--since", "yesterday-ish"], "--since"),
        (["history", "--diff", "5m"], "--diff"),
        (["simulate", "--scenario", "nope"], "--scenario"),
        (["experiment", "deploy", "--steps", "5,x"], "--steps"),
        (["load", "http://127.0.0.1:9/", "--rate", "0", "--duration", "1"], "rate"),
        (["new", "Bad_Name"], "'Bad_Name'"),
        (["scale", "movie-v001", "many"], "'N'"),
    ],
)
def test_a_malformed_value_is_a_usage_mistake_with_its_name(args: list[str], says: str) -> None:
    ran = herd_cli(*args)
    assert ran.code == 2, ran
    assert ran.stdout == ""
    assert ran.stderr.count("\n") == 1 and says in ran.stderr, ran.stderr


def test_no_cloud_is_a_failure_on_stderr_and_json_stays_clean(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HERD_HOME", str(tmp_path))
    for args in (["ps", "--json"], ["deploy", "status", "--json"], ["chaos", "status"]):
        ran = herd_cli(*args)
        assert ran.code == 1, ran
        assert ran.stdout == ""
        assert ran.stderr == "herd: no local cloud is running: start one with `herd up APP`\n"


def test_an_error_line_is_one_line_whatever_its_length_and_carries_no_markup() -> None:
    long_path = "/tmp/" + "a-rather-long-temporary-directory-name/" * 5 + "taken"
    line = error_line(f"{long_path} already\nexists", "[red]choose[/red] another")
    assert line == f"herd: {long_path} already exists: [red]choose[/red] another"


def test_a_narrow_table_drops_columns_and_never_splits_a_name() -> None:
    columns = [Column("instance"), Column("zone", drop=1), Column("uptime", drop=2)]
    rows = [["movie-v001-a-1", "a", "12s"], ["edge-v001-b-12", "b", "3s"]]
    wide = render_table(columns, rows, width=None)
    assert wide[0].split() == ["INSTANCE", "ZONE", "UPTIME"]
    narrow = render_table(columns, rows, width=20)
    assert [line.split() for line in narrow] == [
        ["INSTANCE", "ZONE"],
        ["movie-v001-a-1", "a"],
        ["edge-v001-b-12", "b"],
    ]
    # Too narrow even for what cannot go: the names stay whole, the terminal folds the line.
    tiniest = render_table(columns, rows, width=5)
    assert [line.split() for line in tiniest][1:] == [["movie-v001-a-1"], ["edge-v001-b-12"]]


@pytest.mark.parametrize("group", [(), ("deploy",), ("chaos",), ("experiment",), ("k8s",)])
def test_a_group_without_its_command_prints_its_help_as_it_reads(group: tuple[str, ...]) -> None:
    ran = herd_cli(*group)
    assert ran.code == 2, ran
    assert ran.stdout == ""
    lines = ran.stderr.splitlines()
    assert lines[0].startswith(f"Usage: herd {' '.join(group)}".rstrip()), ran.stderr
    assert "Commands" in ran.stderr and len(lines) > 5, ran.stderr
    assert not ran.stderr.startswith("herd: ")
