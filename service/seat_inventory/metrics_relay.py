"""``serve --workers N --metrics-port P``: one ``/metrics`` for every worker.

Each worker serves its own metrics on a loopback port of its choosing and
tells the supervisor which, on the pipe that reports it serving. The
supervisor serves P (on ``--metrics-host``): a scrape fetches every serving
worker's metrics at once and answers them as one exposition, each sample
labelled with its ``worker`` index, plus

- ``seat_inventory_worker_up{worker}``: 1 when that worker answered this
  scrape; 0 while it is down, starting, or did not answer within
  ``FETCH_TIMEOUT_S``;
- ``seat_inventory_worker_restarts_total{worker}``: starts of that worker
  after its first.

A restarted worker's counters start again from zero, which Prometheus's
``rate()`` and ``increase()`` take as a counter reset of that series.

The relay is an HTTP server on a thread of the supervisor, which otherwise
keeps its loop as it was (workers are spawned without ``preexec_fn``, so the
thread is safe beside them).
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["FETCH_TIMEOUT_S", "MetricsRelay", "Target", "merge"]

log = structlog.get_logger("seat_inventory.supervisor")

# A scrape waits this long for each worker (all at once), then reports it down.
FETCH_TIMEOUT_S = 2.0

# (worker index as a label value, its metrics port or None while it serves none,
# its restarts so far)
Target = tuple[str, int | None, int]


class _Families:
    """A collector that yields the families it was given."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge(parts: Sequence[tuple[str, str | None]], restarts: Sequence[tuple[str, int]]) -> bytes:
    """The workers' expositions (``None``: no answer) as one, every sample with
    a ``worker`` label, plus ``worker_up`` and ``worker_restarts_total``."""
    families: dict[str, Metric] = {}
    up = GaugeMetricFamily(
        "seat_inventory_worker_up",
        "1 when the worker answered this scrape; 0 while it is down, starting or silent",
        labels=["worker"],
    )
    for worker, text in parts:
        parsed: list[Metric] = []
        if text is not None:
            try:
                parsed = list(text_string_to_metric_families(text))
            except ValueError as exc:
                log.warning("worker metrics unreadable", worker=worker, error=str(exc))
                text = None
        for family in parsed:
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            merged.samples.extend(
                sample._replace(labels={**sample.labels, "worker": worker})
                for sample in family.samples
            )
        up.add_metric([worker], 0.0 if text is None else 1.0)
    restarted = CounterMetricFamily(
        "seat_inventory_worker_restarts",
        "Starts of the worker after its first (the supervisor's count)",
        labels=["worker"],
    )
    for worker, count in restarts:
        restarted.add_metric([worker], float(count))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up, restarted]))
    return generate_latest(registry)


def _fetch(port: int) -> str | None:
    """A worker's exposition, or None when it does not answer in time. Straight
    over http.client: no proxy settings from the environment apply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=FETCH_TIMEOUT_S)
    try:
        conn.request("GET", "/metrics")
        reply = conn.getresponse()
        body = reply.read()
        return body.decode() if reply.status == 200 else None
    except (OSError, http.client.HTTPException, UnicodeDecodeError):
        return None
    finally:
        conn.close()


class MetricsRelay:
    """Serves the merged ``/metrics`` of the workers ``targets()`` names."""

    def __init__(self, host: str, port: int, targets: Callable[[], Sequence[Target]]) -> None:
        self._targets = targets
        self._fetchers = ThreadPoolExecutor(thread_name_prefix="metrics-fetch")
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/", "/metrics"):
                    self.send_error(404, "only /metrics here")
                    return
                body = relay.scrape()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not news

        bare = host.removeprefix("[").removesuffix("]")

        class Server(ThreadingHTTPServer):
            # IPv6 addresses too (ThreadingHTTPServer alone binds IPv4 only).
            address_family = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM)[0][0]

        self._server = Server((bare, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-relay", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def scrape(self) -> bytes:
        targets = list(self._targets())
        answers = list(
            self._fetchers.map(lambda t: None if t[1] is None else _fetch(t[1]), targets)
        )
        return merge(
            [(worker, text) for (worker, _, _), text in zip(targets, answers, strict=True)],
            [(worker, restarts) for worker, _, restarts in targets],
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._fetchers.shutdown(wait=False, cancel_futures=True)
