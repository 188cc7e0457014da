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
