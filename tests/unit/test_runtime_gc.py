"""runtime.tune_gc: startup's objects frozen, the young threshold raised; 0
leaves Python's collector alone. Run in a child interpreter: the collector's
settings are process-wide and must not leak into the test session."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
from seat_inventory.runtime import tune_gc
before = gc.get_threshold()
tune_gc(int(sys.argv[1]))
garbage = []
garbage.append(garbage)  # a cycle made after the freeze is still collected
del garbage
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "collected": gc.collect()}))
"""


def probe(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(threshold)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, list[int] | int] = json.loads(out.stdout)
    return result


def test_freezes_startup_and_raises_the_young_threshold() -> None:
    result = probe(50_000)
    assert result["after"] == [50_000, *result["before"][1:]]  # type: ignore[index]
    assert result["frozen"] > 1000  # the imported modules' objects, at least
    assert result["collected"] >= 1  # the collector still runs, on what came after


def test_zero_leaves_python_defaults() -> None:
    result = probe(0)
    assert result["after"] == result["before"]
    assert result["frozen"] == 0
