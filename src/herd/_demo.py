"""`herd demo`: start the example chain as processes and show deadlines and typed errors at work."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from herd._server.run import READY_PREFIX

console = Console()


def _examples_root() -> Path:
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / "examples" / "chain" / "service.py").exists():
            return base
    raise SystemExit("herd demo: run it from the herd checkout (examples/ not found)")


def _start(root: Path, service: str, downstream: str | None) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "examples.chain.service", service]
    if downstream:
        command += ["--downstream", downstream]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(READY_PREFIX):
            address = str(json.loads(line[len(READY_PREFIX) :])["address"])
            console.print(f"  started [bold]{service}[/] pid {process.pid} on {address}")
            return process, address
    raise SystemExit(f"herd demo: {service} exited before it was ready")


def run_demo() -> int:
    """Run the demo; returns the exit status."""
    import herd

    root = _examples_root()
    sys.path.insert(0, str(root))
    chain = importlib.import_module("examples.chain.interface")
    Edge, Refused = chain.Edge, chain.Refused
    console.print("[bold]herd demo[/]: edge → middle → deep, each its own process")
    processes = []
    try:
        deep, deep_at = _start(root, "deep", None)
        processes.append(deep)
        middle, middle_at = _start(root, "middle", deep_at)
        processes.append(middle)
        edge, edge_at = _start(root, "edge", middle_at)
        processes.append(edge)

        async def calls() -> None:
            edge_driver = herd.driver(Edge, address=edge_at)
            with herd.deadline(1.0):
                echo = await edge_driver.greet("world")
            console.print(f"\n1. a call under a 1 s deadline: {echo.text!r}")
            console.print(f"   budget seen at each hop (ms): {echo.budgets_ms}  ← it telescopes")
            try:
                await edge_driver.greet("forbidden")
            except herd.RemoteError as exc:
                console.print(
                    f"2. deep raised Refused; the edge sees {type(exc).__name__}: {exc.message}"
                )
            except Refused as exc:
                console.print(f"2. a declared error crossed two hops: Refused(word={exc.word!r})")
            started = time.monotonic()
            try:
                with herd.deadline(0.5):
                    await edge_driver.greet("slow", hang=True)
            except herd.DeadlineExceeded as exc:
                console.print(
                    f"3. deep hangs; a 0.5 s deadline answers in {time.monotonic() - started:.2f} s"
                    f" with DeadlineExceeded ({exc})"
                )
            await edge_driver.aclose()

        asyncio.run(calls())
        console.print("\n[green]done[/]: the flix demo replaces this once it lands")
        return 0
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
