"""`HERD_STORE_URL`: where a service finds its store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import herd
from herd._process.config import StoreAddress, parse_store_url, settings


def test_sqlite_names_a_directory() -> None:
    assert parse_store_url("sqlite:///var/lib/flix") == StoreAddress(
        directory=Path("/var/lib/flix")
    )
    assert parse_store_url("sqlite://writes") == StoreAddress(directory=Path("writes"))


def test_nats_names_servers_and_copies() -> None:
    assert parse_store_url("nats://10.0.0.1:4222,10.0.0.2:4222") == StoreAddress(
        servers=("10.0.0.1:4222", "10.0.0.2:4222"), replicas=3
    )
    assert parse_store_url("nats://a:1,nats://b:2?replicas=1") == StoreAddress(
        servers=("a:1", "b:2"), replicas=1
    )


@pytest.mark.parametrize("url", ["sqlite:///var/lib/x", "nats://a:1,b:2?replicas=3"])
def test_an_address_gives_back_its_url(url: str) -> None:
    assert parse_store_url(url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sqlite://",
        "nats://",
        "nats://host",
        "nats://h:x",
        "nats://h:1?copies=3",
        "nats://h:1?replicas=0",
        "nats://h:1?replicas=9",
        "redis://h:1",
        "/tmp/x",
    ],
)
def test_anything_else_is_a_configuration_error(url: str) -> None:
    with pytest.raises(herd.ConfigurationError):
        parse_store_url(url)


def test_without_the_variable_a_store_is_a_file_under_herd_home(tmp_path: Path) -> None:
    assert settings({"HERD_HOME": str(tmp_path)}).store is None
    assert settings({"HERD_STORE_URL": "sqlite:///x"}).store == StoreAddress(directory=Path("/x"))
    with pytest.raises(herd.ConfigurationError):
        settings({"HERD_STORE_URL": "nats://"})


def test_herd_store_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_STORE_URL", f"sqlite://{tmp_path}")
    opened = herd.store("history")
    assert getattr(opened.backend, "path", None) == tmp_path / "history.db"
    monkeypatch.delenv("HERD_STORE_URL")
    monkeypatch.setenv("HERD_HOME", str(tmp_path / "home"))
    assert getattr(herd.store("history").backend, "path", None) == (
        tmp_path / "home" / "stores" / "history.db"
    )
    with pytest.raises(herd.ConfigurationError):
        herd.store("Bad_Name")


def test_a_url_given_in_code_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_STORE_URL", "nats://127.0.0.1:4222")
    opened = herd.store("history", where=f"sqlite://{tmp_path}")
    assert getattr(opened.backend, "path", None) == tmp_path / "history.db"
    with pytest.raises(herd.ConfigurationError):
        herd.events(where="memcached://x")


def test_a_sqlite_store_needs_no_nats_client(tmp_path: Path) -> None:
    """nats-py is an extra (`herd[store]`): `import herd` and an SQLite store run without it."""
    probe = f"""
import asyncio, importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "nats":
            raise ImportError(f"{{name}} is not installed")
        return None

sys.meta_path.insert(0, Absent())
import herd

async def main():
    async with herd.store("x", where="sqlite://{tmp_path}") as store:
        await store.records("t", int).put(1, 2)
        print((await store.records("t", int).get(1)).value)

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
