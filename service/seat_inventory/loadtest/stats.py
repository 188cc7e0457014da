"""Samples of every RPC a load run made, and what they add up to."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["RpcSummary", "Sample", "Stats", "percentile"]

# (rpc name, start seconds since the run began, latency seconds, outcome)
# outcome is "OK" or "<CODE> <REASON>".
Sample = tuple[str, float, float, str]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    # Exact: 99.9 / 100 * 1000 is 999.0000000000001 in floating point.
    rank = max(1, math.ceil(Fraction(str(q)) * len(sorted_values) / 100))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class RpcSummary:
    rpc: str
    count: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    outcomes: dict[str, int]


@dataclass
class Stats:
    samples: list[Sample] = field(default_factory=list)
    duration_s: float = 0.0

    def extend(self, samples: Iterable[Sample]) -> None:
        self.samples.extend(samples)

    def summaries(self) -> list[RpcSummary]:
        by_rpc: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            by_rpc[sample[0]].append(sample)
        out = []
        for rpc in sorted(by_rpc):
            rows = by_rpc[rpc]
            latencies = sorted(s[2] * 1000 for s in rows)
            out.append(
                RpcSummary(
                    rpc=rpc,
                    count=len(rows),
                    rps=len(rows) / self.duration_s if self.duration_s else 0.0,
                    p50_ms=percentile(latencies, 50),
                    p95_ms=percentile(latencies, 95),
                    p99_ms=percentile(latencies, 99),
                    p999_ms=percentile(latencies, 99.9),
                    outcomes=dict(Counter(s[3] for s in rows).most_common()),
                )
            )
        return out

    def timeline(self) -> dict[str, list[tuple[int, int, float, float]]]:
        """Per RPC, per whole second: (second, calls, p50 ms, p99 ms)."""
        buckets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for rpc, start, latency, _ in self.samples:
            buckets[rpc][int(start)].append(latency * 1000)
        out: dict[str, list[tuple[int, int, float, float]]] = {}
        for rpc, seconds in sorted(buckets.items()):
            rows = []
            for second in sorted(seconds):
                values = sorted(seconds[second])
                rows.append((second, len(values), percentile(values, 50), percentile(values, 99)))
            out[rpc] = rows
        return out
