"""A short `herd experiment durability`: writes through flix's front door while history,
merch and edge instances are SIGKILLed, every acknowledged write read back from its store, none
lost or applied twice; then a memcached zone killed under read load without a broken page. On
the engine (flix's app-nats.toml), also a zone's outage and a stream leader's loss (the full
run and its figures are in docs/data.md and benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd, write_app
from tests.integration.memcached import require_memcached
from tests.integration.nats_cluster import require_nats_server

pytestmark = pytest.mark.timeout(150)

#: This short run's target for whole pages, where the full run's is 99.9 %. History's row is
#: optional (one attempt may take 0.15 s): on a loaded machine it can be left out of a page
#: whatever the cache does, and of 120 pages one such page is 0.8 %, so 99.9 % would measure
#: the machine's load more than the cache. 95 % still fails a lost cache zone that cost pages.
WHOLE_PCT = 95.0


def test_no_acknowledged_write_is_lost_or_applied_twice(tmp_path: Path) -> None:
    require_memcached()
    app = write_app(tmp_path, "flix")
    figures = tmp_path / "durability.json"
    done = run_herd(
        "experiment",
        "durability",
        "--app",
        str(app),
        "--rate",
        "40",
        "--duration",
        "5",
        "--kill-every",
        "1.5",
        "--warmup",
        "1.5",
        "--cache-seconds",
        "3",
        "--whole",
        str(WHOLE_PCT),
        "--json",
        str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=120,
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    # Exit 0: nothing lost, nothing applied twice, enough pages whole (checked below too).
    assert done.returncode == 0, output
    result = json.loads(figures.read_text())
    writes, cache = result["writes"], result["cache"]
    assert result["whole_target_pct"] == WHOLE_PCT
    assert writes["sent"] == 200 and len(writes["killed"]) >= 3
    assert writes["lost"] == 0 and writes["duplicated"] == 0
    assert writes["acknowledged"] >= 0.99 * writes["sent"]
    assert cache["pages"] == 120
    # Every page answered and greeted its visitor; only history's optional row may be missing.
    assert set(cache["broken_by_reason"]) <= {"omitted_history"}, output
    assert cache["whole_pct"] >= WHOLE_PCT, output


def test_on_the_engine_a_zone_outage_and_a_leader_kill_lose_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    require_memcached()
    require_nats_server()
    app = write_app(tmp_path, "flix", file="app-nats.toml")
    figures = tmp_path / "durability.json"
    done = run_herd(
        "experiment",
        "durability",
        "--app",
        str(app),
        "--rate",
        "40",
        "--duration",
        "2",
        "--kill-every",
        "1",
        "--engine-seconds",
        "10",
        "--warmup",
        "1",
        "--cache-seconds",
        "2",
        "--whole",
        "0",
        "--json",
        str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=140,
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    # Exit 0: in every phase nothing lost, nothing applied twice, >= 99.9 % acknowledged.
    assert done.returncode == 0, output
    result = json.loads(figures.read_text())
    assert result["success_target_pct"] == 99.9
    phases = {phase["phase"]: phase for phase in result["phases"]}
    assert list(phases) == ["zone_outage", "leader_kill"], output
    for phase in phases.values():
        assert phase["sent"] == 400
        assert phase["lost"] == 0 and phase["duplicated"] == 0, phase
        assert phase["success_pct"] >= 99.9, phase
        assert phase["write_p99_ms"] > 0 and phase["catch_up_s"] is not None, phase
    # Zone b lost its nats-server and every instance; the leader kill, one nats-server.
    outage = phases["zone_outage"]["killed"]
    assert "store-nats-b" in outage and all("-b" in victim for victim in outage), outage
    assert len(outage) >= 4, outage
    assert [v.startswith("store-nats-") for v in phases["leader_kill"]["killed"]] == [True]
