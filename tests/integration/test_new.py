"""`herd new`: the generated services pass ruff, mypy --strict and their own tests as written,
the app file they are added to loads, and bad names or anything in the way write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from herd._cloud.app import load
from tests.helpers import Ran, clean_environment, herd_cli

pytestmark = pytest.mark.timeout(120)

# The rules herd holds itself to, at ruff's default line length: what a user's project with
# no settings of its own (or herd's) sees.
RUFF_RULES = "E,F,W,I,B,UP,SIM,RUF,ASYNC"


def herd_new(*args: str) -> Ran:
    """Run `herd new ARGS` in this process."""
    return herd_cli("new", *args)


MYPY_CACHE = Path(__file__).resolve().parents[2] / ".mypy_cache"


def run(folder: Path, *command: str) -> None:
    """Run `python -m COMMAND` in `folder` (which the generated packages import from)."""
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=folder,
        env=clean_environment(PYTHONPATH=str(folder)),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_generated_services_pass_ruff_mypy_and_their_own_tests(tmp_path: Path) -> None:
    folder = tmp_path / "services"
    # A long name calling another: its driver's line in library.py has to wrap as ruff would.
    long = "viewing-history-archive"
    for args in (
        ["ratings"],
        [long, "--calls", "ratings"],
        ["user-profile", "--calls", f"ratings,{long}"],
    ):
        ran = herd_new(*args, "--dir", str(folder))
        assert ran.code == 0, ran
    library = (folder / "user_profile" / "library.py").read_text()
    assert "from ratings.interface import Ratings" in library
    assert 'ratings=connect(Ratings, "ratings")' in library
    assert "viewing_history_archive: ViewingHistoryArchive" in library
    assert "viewing_history_archive=connect(\n" in library  # wrapped
    packages = ["ratings", "viewing_history_archive", "user_profile"]

    run(
        folder, "ruff", "check", "--isolated", "--select", RUFF_RULES, "--target-version=py311", "."
    )
    run(folder, "ruff", "format", "--isolated", "--check", ".")
    # herd's own modules were already checked by `make typecheck`: reuse its cache, so mypy
    # reads only the generated code afresh (a cold cache costs seconds, and changes nothing).
    run(folder, "mypy", "--strict", "--cache-dir", str(MYPY_CACHE), *packages)
    run(folder, "pytest", "-q", "-p", "no:cacheprovider", *packages)

    spec = load(folder).spec  # what `herd up DIR` reads
    assert [(g.name, g.module, g.instances) for g in spec.groups] == [
        ("ratings-v001", "ratings.service", 2),
        (f"{long}-v001", "viewing_history_archive.service", 2),
        ("user-profile-v001", "user_profile.service", 2),
    ]


def test_an_existing_app_file_gets_the_group_appended_and_keeps_its_comments(
    tmp_path: Path,
) -> None:
    # An app whose root is above its folder, as flix's is: modules import from the root.
    folder = tmp_path / "apps"
    folder.mkdir()
    before = """# my app
name = "mine"
root = ".."

[env]
A = "1"

[[groups]]
service = "web"
module = "apps.web.service"

[front_door]  # the group is appended after this table: still a [[groups]] entry
service = "web"
"""
    (folder / "app.toml").write_text(before)
    ran = herd_new("ratings", "--dir", str(folder))
    assert ran.code == 0, ran
    assert (folder / "app.toml").read_text().startswith(before)
    app = load(folder)
    assert [(g.name, g.module) for g in app.spec.groups] == [
        ("web-v001", "apps.web.service"),
        ("ratings-v001", "apps.ratings.service"),
    ]
    assert app.spec.env == {"A": "1"}
    assert "from apps.ratings.interface import" in (folder / "ratings" / "service.py").read_text()


def test_nothing_is_overwritten_and_nothing_is_written_on_refusal(tmp_path: Path) -> None:
    assert herd_new("ratings", "--dir", str(tmp_path)).code == 0
    (tmp_path / "ratings" / "service.py").write_text("# my logic\n")
    (tmp_path / "taken").mkdir()
    before = snapshot(tmp_path)
    for args, why in [
        (["ratings"], "already has a group of service 'ratings'"),
        (["taken"], "already exists"),
        (["movies", "--calls", "ratings,nope"], "--calls nope"),
    ]:
        ran = herd_new(*args, "--dir", str(tmp_path))
        assert ran.code == 1, ran
        # One line on stderr, whole however long the path is; nothing on stdout.
        assert ran.stdout == "", ran
        assert ran.stderr.startswith("herd: ") and ran.stderr.count("\n") == 1, ran
        assert why in ran.stderr
        assert snapshot(tmp_path) == before, args


@pytest.mark.parametrize(
    "name",
    [
        "Ratings",
        "9lives",
        "user_profile",
        "a--b",
        "a-",
        "-a",
        "class",
        "json",
        "herd",
        "x" * 25,
        "path",
    ],
)
def test_a_bad_name_is_refused(tmp_path: Path, name: str) -> None:
    ran = herd_new("--dir", str(tmp_path), "--", name)  # --: "-a" is a name here
    assert ran.code == 2, ran  # a usage mistake
    assert repr(name) in ran.stderr
    assert ran.stdout == ""
    assert list(tmp_path.iterdir()) == []
