"""bench/run.py in its smallest mode, so the benchmark harness cannot rot.

Asserts the shape of what it writes (rows, ratios, targets, the Markdown
sections), never a timing: performance is printed, not asserted.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.services import missing, postgres_database

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_writes_results(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        missing("redis-server", "install Redis (Debian: apt-get install redis-server)")
    with postgres_database():  # skips (fails under CI) when PostgreSQL is away
        pass
    out, raw = tmp_path / "RESULTS.md", tmp_path / "results.json"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"]
    done = subprocess.run(
        [*command, "--out", str(out), "--json", str(raw)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    result = json.loads(raw.read_text())
    rows = {row["name"]: row for row in result["rows"]}
    ceiling = rows["ceiling: empty unary RPC (1 process)"]
    reserve = rows["Reserve, 2 seats, 1,000-seat event"]
    lua = rows["raw: reserve.lua straight on Redis (redis-py)"]
    for row in (ceiling, reserve, lua):
        assert len(row["runs"]) == 1
        assert row["median"] > 0
        assert row["runs"][0]["calls"] > 0
        assert not math.isnan(row["gen_cpu"])
    assert reserve["ratio_to"] == "ceiling"
    assert reserve["ratio"] > 0
    assert lua["ratio_to"] == "Reserve"
    assert reserve["runs"][0]["ok"] == reserve["runs"][0]["calls"]  # low contention: all win

    verdicts = {t["target"]: t["verdict"] for t in result["targets"]}
    assert verdicts["Reserve ≥ 0.85 x empty-RPC ceiling"] in {"pass", "miss"}
    assert verdicts["Confirm ≥ 0.5 x raw asyncpg booking INSERTs"] == "-"  # not in this mode

    # The layers: the ceiling, then one layer of Reserve's work at a time, then Reserve.
    layers = [row for row in result["rows"] if row["group"] == "layers"]
    assert len(layers) == 5
    assert layers[0]["name"].startswith("empty unary RPC")
    assert "real reserve.lua" in layers[3]["name"]
    assert layers[-1]["name"].startswith("Reserve")
    for row in layers:
        run = row["runs"][0]
        assert run["calls"] > 0
        assert run["ok"] == run["calls"]
        assert row["ratio_to"] == "ceiling"

    text = out.read_text()
    for section in (
        "# Benchmark results",
        "## Targets",
        "## Throughput",
        "## Where Reserve's server time goes",
        "## Scale",
    ):
        assert section in text
    assert "| Reserve, 2 seats, 1,000-seat event |" in text
