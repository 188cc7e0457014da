"""Counters the reliability tests keep, printed as one table at the end of a run.

Tests call ``REPORT.add(metric, n)``; the conftest tells the report which test
module is running, so every count lands in that module's column.
"""

from __future__ import annotations

import os
from collections import defaultdict

__all__ = ["METRICS", "REPORT", "SCALE", "Report", "scaled"]

# A run's size: 1 is the CI run (the whole reliability marker in about 90 s on
# two cores); RELIABILITY_SCALE=10 is a long soak, one variable away.
SCALE = float(os.environ.get("RELIABILITY_SCALE", "1"))


def scaled(n: float, minimum: int = 1) -> int:
    return max(minimum, round(n * SCALE))


METRICS = (
    "tests run",
    "tests failed",
    "operations attempted",
    "outcomes unknown (timeout/UNAVAILABLE)",
    "faults injected",
    "model steps",
    "bad inputs tried",
    "histories checked (seats)",
    "histories not linearizable",
    "confirmed bookings verified",
    "invariant violations",
    "bookings lost",
)
MUST_BE_ZERO = frozenset(
    {"tests failed", "histories not linearizable", "invariant violations", "bookings lost"}
)


class Report:
    def __init__(self) -> None:
        self.current = "other"
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, metric: str, n: int = 1) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; add it to METRICS")
        self.counts[metric][self.current] += n

    def total(self, metric: str) -> int:
        return sum(self.counts[metric].values())

    @property
    def ran(self) -> bool:
        return self.total("tests run") > 0

    def table(self) -> list[str]:
        columns = sorted({where for per in self.counts.values() for where in per})
        header = ["metric", *(c.removeprefix("test_") for c in columns), "total"]
        rows = [header]
        for metric in METRICS:
            per = self.counts.get(metric, {})
            total = sum(per.values())
            mark = " (must be 0)" if metric in MUST_BE_ZERO else ""
            rows.append([metric + mark, *(str(per.get(c, 0)) for c in columns), str(total)])
        seconds = [f"{self.seconds.get(c, 0.0):.1f}" for c in columns]
        rows.append(["seconds", *seconds, f"{sum(self.seconds.values()):.1f}"])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

        def fmt(row: list[str]) -> str:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            return "| " + " | ".join(cells) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return [fmt(rows[0]), rule, *(fmt(r) for r in rows[1:])]


REPORT = Report()
