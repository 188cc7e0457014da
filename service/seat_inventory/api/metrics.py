"""Prometheus metrics of one server process, on their own registry.

Every servicer call passes through ``api/errors.py``, which records its
latency and outcome here; the service layer reports conflicts, confirms and
expiries through the ``Telemetry`` interface this class implements. Each
``Metrics`` has its own ``CollectorRegistry``, so several servers in one
process (tests) never collide.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..adapters.redis.keys import EventKeys

if TYPE_CHECKING:
    from ..bootstrap import App

__all__ = ["Metrics", "MetricsEndpoint", "count_live_holds", "serve_metrics"]

log = structlog.get_logger(__name__)

# Seconds; Reserve and friends take about a millisecond, CreateEvent of a
# stadium several seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# How long a scrape waits for the live-hold count from Redis.
SAMPLE_TIMEOUT_S = 2.0


class _Sampled(Collector):
    """A gauge read when scraped, from a coroutine run on the server's loop."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self._source: tuple[asyncio.AbstractEventLoop, Callable[[], Awaitable[int]]] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, source: Callable[[], Awaitable[int]]) -> None:
        self._source = (loop, source)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation)
        value = self._read()
        if value is not None:
            family.add_metric([], value)
        return [family]

    def _read(self) -> int | None:
        if self._source is None:
            return None
        loop, source = self._source
        if loop.is_closed() or _running_loop() is loop:
            return None  # waiting on our own loop from inside it would deadlock

        async def sample() -> int:
            return await source()

        future = asyncio.run_coroutine_threadsafe(sample(), loop)
        try:
            return future.result(SAMPLE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a failed sample must not fail the scrape
            future.cancel()
            log.warning("metric sample failed", metric=self._name, error=repr(exc))
            return None


class _RpcStats(Collector):
    """``rpc_duration_seconds`` and ``rpcs_total``, counted in plain Python.

    Every call records here, so this is on the hot path: prometheus-client's
    own Histogram and Counter take a lock per update (two per bucket hit,
    one per counter), which costs more than the rest of the bookkeeping.
    Only the event loop's thread writes; a scrape (another thread) reads a
    copy of the dicts, taken in one step under the GIL."""

    def __init__(self) -> None:
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._le = ["+Inf" if b == float("inf") else repr(b) for b in self._bounds]
        # (method, code) -> [bucket counts..., sum]
        self._histograms: dict[tuple[str, str], list[float]] = {}
        self._counts: dict[tuple[str, str, str], int] = {}

    def record(self, method: str, code: str, reason: str, seconds: float) -> None:
        key = (method, code)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = [0.0] * (len(self._bounds) + 1)
        histogram[bisect.bisect_left(self._bounds, seconds)] += 1
        histogram[-1] += seconds
        counted = (method, code, reason)
        self._counts[counted] = self._counts.get(counted, 0) + 1

    def describe(self) -> Iterable[Metric]:
        return [
            HistogramMetricFamily(
                "seat_inventory_rpc_duration_seconds", _DURATION_DOC, labels=["method", "code"]
            ),
            CounterMetricFamily(
                "seat_inventory_rpcs", _RPCS_DOC, labels=["method", "code", "reason"]
            ),
        ]

    def collect(self) -> Iterable[Metric]:
        durations = HistogramMetricFamily(
            "seat_inventory_rpc_duration_seconds", _DURATION_DOC, labels=["method", "code"]
        )
        for (method, code), histogram in list(self._histograms.items()):
            values = list(histogram)
            cumulative, buckets = 0.0, []
            for le, count in zip(self._le, values[:-1], strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            durations.add_metric([method, code], buckets, sum_value=values[-1])
        calls = CounterMetricFamily(
            "seat_inventory_rpcs", _RPCS_DOC, labels=["method", "code", "reason"]
        )
        for labels, count in list(self._counts.items()):
            calls.add_metric(list(labels), count)
        return [durations, calls]


_DURATION_DOC = "Time to answer an RPC (a stream: how long it was open), by method and status code"
_RPCS_DOC = "RPCs answered, by method, status code and error reason ('' when OK)"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Metrics:
    """The metrics of one server process (implements service_layer Telemetry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rpc_stats = _RpcStats()
        r.register(self.rpc_stats)
        self.conflicts = Counter(
            "seat_inventory_conflicts",
            "Reserves refused because a seat was held or booked (SEATS_UNAVAILABLE)",
            registry=r,
        )
        self.confirms = Counter(
            "seat_inventory_confirms", "Bookings committed by Confirm", registry=r
        )
        self.expiries = Counter(
            "seat_inventory_hold_expiries", "Holds the sweeper expired", registry=r
        )
        self.backend_errors = Counter(
            "seat_inventory_backend_errors",
            "Calls that failed because Redis or the database did not answer",
            ["backend"],
            registry=r,
        )
        self.stream_subscribers = Gauge(
            "seat_inventory_stream_subscribers",
            "StreamAvailability calls open on this process",
            registry=r,
        )
        self.holds_active = _Sampled(
            "seat_inventory_holds_active",
            "Live holds (held or being confirmed) across all events, read from Redis at "
            "scrape time: the same in every process",
        )
        r.register(self.holds_active)

    # -- per call (api/errors.py) ------------------------------------------

    def rpc(self, method: str, code: str, reason: str, seconds: float) -> None:
        self.rpc_stats.record(method, code, reason, seconds)

    # -- Telemetry (service layer) -----------------------------------------

    def seats_conflicted(self) -> None:
        self.conflicts.inc()

    def booking_confirmed(self) -> None:
        self.confirms.inc()

    def holds_expired(self, count: int) -> None:
        if count:
            self.expiries.inc(count)

    def backend_error(self, backend: str) -> None:
        self.backend_errors.labels(backend).inc()


class MetricsEndpoint:
    """``/metrics`` over HTTP on a thread of its own (prometheus-client's server)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        try:
            self._server, self._thread = start_http_server(
                self._port, self._host, registry=self._metrics.registry
            )
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {self._host}:{self._port}: {exc}") from exc
        self.port = int(self._server.server_port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


async def count_live_holds(redis: Any, event_ids: Iterable[str]) -> int:
    """Live holds (held or confirming) of the given events: each one's deadline entries."""
    counts = await asyncio.gather(*(redis.zcard(EventKeys(e).deadlines) for e in event_ids))
    return sum(int(c) for c in counts)


def serve_metrics(app: App, host: str, port: int) -> MetricsEndpoint:
    """Start ``/metrics`` for ``app`` (call from its event loop; ``port`` 0 picks one)."""
    loop = asyncio.get_running_loop()

    async def live_holds() -> int:
        async with asyncio.timeout(app.settings.backend_timeout_s):
            return await count_live_holds(app.redis, app.sweeper.event_ids)

    app.metrics.holds_active.bind(loop, live_holds)
    endpoint = MetricsEndpoint(app.metrics, host, port)
    endpoint.start()
    return endpoint
