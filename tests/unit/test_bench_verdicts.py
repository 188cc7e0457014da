"""bench/run.py's target lines never read as a pass while they say miss."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def run_module() -> object:
    sys.path.insert(0, str(BENCH))
    try:
        import run  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BENCH))
    return run


def verdicts(run: object, ratios: dict[str, float], tmp_path: Path) -> dict[str, tuple[str, str]]:
    bench = run.Bench(run.Config(), tmp_path)  # type: ignore[attr-defined]
    for name, value in ratios.items():
        bench.row("hot", name).ratios.append(value)
    return {text: (shown, verdict) for text, shown, verdict in run.targets(bench)}  # type: ignore[attr-defined]


def test_a_miss_just_under_the_target_shows_the_digits_that_make_it_one(
    run_module: object, tmp_path: Path
) -> None:
    cfg = run_module.Config()  # type: ignore[attr-defined]
    scale = f"Reserve on {cfg.big_event:,} seats ≥ 0.95 x on {cfg.small_event}"
    got = verdicts(
        run_module,
        {
            f"Reserve on {cfg.big_event:,} vs {cfg.small_event} seats": 0.9496,
            "Confirm (PostgreSQL)": 0.6612,
            "Reserve, contended (ours)": 2.499,
        },
        tmp_path,
    )
    assert got[scale] == ("0.9496 x", "miss")
    assert got["Confirm ≥ 0.5 x raw asyncpg booking INSERTs"] == ("0.66 x", "pass")
    assert got["Reserve ≥ 2.5 x database-only, same contended workload"] == ("2.4990 x", "miss")


def test_the_budget_is_what_is_left_of_the_cores_or_of_the_one_server_process(
    run_module: object, tmp_path: Path
) -> None:
    run = run_module
    bench = run.Bench(run.Config(), tmp_path)  # type: ignore[attr-defined]
    cores = float(run.os.cpu_count() or 1)  # type: ignore[attr-defined]

    def add(name: str, rps: float, gen: float, srv: float, redis: float = 0.0) -> None:
        row = bench.row("hot", name)
        row.runs.append(run.Run(rps, int(rps), int(rps), 1.0, 2.0, gen, srv, {"redis_cpu": redis}))  # type: ignore[attr-defined]

    add("Reserve, contended (ours)", 4_000, gen=0.5, srv=0.9, redis=0.1)
    add("(b) database-only, FOR UPDATE SKIP LOCKED", 2_000, gen=0.3, srv=0.8)
    add("ceiling: empty unary RPC (1 process)", 6_000, gen=0.6, srv=0.96)
    (contended,) = run.budgets(bench)  # type: ignore[attr-defined]
    assert contended["target"] == "Reserve ≥ 2.5 x database-only, same contended workload"
    assert contended["wanted_rps"] == pytest.approx(5_000)
    # Per call of ours: generator 125 µs + Redis 25 µs; server now 225 µs.
    assert contended["others_us"] == pytest.approx(150)
    assert contended["machine_us"] == pytest.approx(1e6 * cores / 5_000 - 150)
    assert contended["process_us"] == pytest.approx(180)  # 0.9 cores at 5,000 calls/s
    assert contended["server_now_us"] == pytest.approx(225)
    assert contended["server_may_us"] == pytest.approx(min(180, 1e6 * cores / 5_000 - 150))
    assert contended["empty_us"] == pytest.approx(160)
    table = run.budget_table(bench)  # type: ignore[attr-defined]
    assert "| 4,000 /s | 5,000 /s | 150 |" in table
    if cores >= 2:
        assert contended["cut"] == pytest.approx(0.2)  # 225 -> 180 µs
        assert "| 225 | 20 % | 160 |" in table


def test_a_target_already_met_needs_no_cut(run_module: object, tmp_path: Path) -> None:
    run = run_module
    bench = run.Bench(run.Config(), tmp_path)  # type: ignore[attr-defined]
    for name, rps, srv in (
        ("Reserve, contended (ours)", 6_000, 0.9),
        ("(b) database-only, FOR UPDATE SKIP LOCKED", 2_000, 0.8),
    ):
        bench.row("hot", name).runs.append(run.Run(rps, rps, rps, 1.0, 2.0, 0.1, srv))  # type: ignore[attr-defined]
    (contended,) = run.budgets(bench)  # type: ignore[attr-defined]
    assert contended["server_now_us"] == pytest.approx(150)
    assert contended["process_us"] == pytest.approx(180)
    assert contended["cut"] < 0
    assert contended["empty_us"] is None  # no ceiling measured
    assert "| 150 | none | - |" in run.budget_table(bench)  # type: ignore[attr-defined]


def test_failed_calls_and_missing_expiries_never_read_as_a_pass(
    run_module: object, tmp_path: Path
) -> None:
    """A Confirm row whose calls failed, and an expiry run whose subscriber never saw
    every EXPIRED (lag NaN) beside one that did, print miss: a rate of failures is
    no throughput, and a run that never finished is not one to leave out."""
    run = run_module
    cfg = run.Config()  # type: ignore[attr-defined]
    bench = run.Bench(cfg, tmp_path)  # type: ignore[attr-defined]
    confirm = bench.row("booking", "Confirm (PostgreSQL)")
    confirm.ratios.append(0.9)
    confirm.runs.append(run.Run(1000.0, 0, 4000, None, None, 0.2, 0.6))  # type: ignore[attr-defined]
    expiry = bench.row(
        "expiry", f"{cfg.expiries:,} holds expiring at once: last EXPIRED on the stream"
    )
    for lag in (float("nan"), 1.1):
        expiry.runs.append(run.Run(lag, 0, 0, None, None, 0.0, 0.0))  # type: ignore[attr-defined]
    got = {text: (shown, verdict) for text, shown, verdict in run.targets(bench)}  # type: ignore[attr-defined]
    assert got["Confirm ≥ 0.5 x raw asyncpg booking INSERTs"] == (
        "0.90 x with 100% of calls failed",
        "miss",
    )
    assert got[f"{cfg.expiries:,} expiries on the stream within 2 s"] == (
        "1 of 2 runs: not every EXPIRED arrived",
        "miss",
    )
