"""The one process wrapper with a real child: chatty output never blocks it, however long its
lines, and the ready line is found behind them."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from herd._cloud.launch.process import Process
from tests.helpers import ROOT, ServiceProcess, clean_environment, eventually

CHATTY = """
import json, sys, time
sys.stdout.write("x" * (1 << 20) + "\\n")
sys.stdout.flush()
sys.stderr.write("e" * 200_000 + "\\n")
sys.stderr.flush()
print("HERD_READY " + json.dumps({"service": "chatty", "address": "127.0.0.1:9"}), flush=True)
sys.stdout.write(("y" * 999 + "\\n") * 10_000)
print("DONE", flush=True)
time.sleep(60)
"""


async def test_long_lines_and_much_output_neither_stop_the_reader_nor_block_the_child(
    tmp_path: Path,
) -> None:
    log = tmp_path / "chatty.log"
    process = Process("chatty", [sys.executable, "-c", CHATTY], {}, ROOT, log)
    await process.start()
    try:
        assert await process.wait_ready(20.0), process.tail()
        assert process.address == "127.0.0.1:9"
        assert process.announced == {"service": "chatty", "address": "127.0.0.1:9"}
        # 10 MB after the ready line: far more than a pipe holds, so the child only gets there
        # if the reader keeps draining.
        await eventually(lambda: process.tail(1) == "DONE", timeout=20.0, what="the child is done")
    finally:
        code = await process.stop(grace_s=5.0)
    assert code == -signal.SIGTERM
    output = log.read_bytes()
    assert output.count(b"\n") == 1 + 1 + 1 + 10_000 + 1  # stdout and stderr, all of it
    assert len(output) > (1 << 20) + 200_000 + 10_000 * 1000


async def test_a_child_that_exits_before_its_ready_line_is_not_ready(tmp_path: Path) -> None:
    process = Process(
        "quits", [sys.executable, "-c", "print('bye')"], {}, ROOT, tmp_path / "quits.log"
    )
    await process.start()
    assert not await process.wait_ready(20.0)
    assert await process.wait() == 0
    assert process.address is None
    assert process.tail() == "bye"


def test_a_test_process_sees_no_herd_settings_of_the_developers_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_REGISTRY", "127.0.0.1:1")
    monkeypatch.setenv("CHAIN_DEEP_FAULT", "hang")
    monkeypatch.setenv("FLIX_DB", "/nowhere")
    assert not {"HERD_REGISTRY", "CHAIN_DEEP_FAULT", "FLIX_DB"} & clean_environment().keys()
    show = "import os; print(sorted(k for k in os.environ if k.startswith(('HERD_', 'CHAIN_'))))"
    child = ServiceProcess(
        "env", [sys.executable, "-c", show], tmp_path / "env.log", {"HERD_ZONE": "b"}
    )
    assert child.wait() == 0
    assert child.output() == "['HERD_ZONE']\n"
