"""The supervisor's metrics relay: the workers' expositions merged into one, each
sample labelled with its worker, and a worker that does not answer shown down."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seat_inventory.metrics_relay import MetricsRelay, Target, merge


def exposition(calls: int, subscribers: int) -> str:
    """What a worker's registry writes: a counter, a gauge and a histogram."""
    registry = CollectorRegistry()
    rpcs = Counter("seat_inventory_rpcs", "RPCs", ["method", "code"], registry=registry)
    rpcs.labels("Reserve", "OK").inc(calls)
    Gauge("seat_inventory_stream_subscribers", "open", registry=registry).set(subscribers)
    latency = Histogram("seat_inventory_rpc_duration_seconds", "time", registry=registry)
    for _ in range(calls):
        latency.observe(0.002)
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_merged_workers_keep_their_samples_apart_and_the_exposition_is_valid() -> None:
    text = merge(
        [("0", exposition(3, 1)), ("1", exposition(5, 0)), ("2", None)],
        [("0", 0), ("1", 2), ("2", 1)],
    ).decode()
    got = samples(text)  # parses: one HELP/TYPE per family, whatever the worker count
    reserve_ok = {"method": "Reserve", "code": "OK"}
    assert got[("seat_inventory_rpcs_total", frozenset({**reserve_ok, "worker": "0"}.items()))] == 3
    assert got[("seat_inventory_rpcs_total", frozenset({**reserve_ok, "worker": "1"}.items()))] == 5
    assert got[("seat_inventory_stream_subscribers", frozenset({"worker": "0"}.items()))] == 1
    assert (
        got[("seat_inventory_rpc_duration_seconds_count", frozenset({"worker": "1"}.items()))] == 5
    )
    bucket = frozenset({"worker": "1", "le": "+Inf"}.items())
    assert got[("seat_inventory_rpc_duration_seconds_bucket", bucket)] == 5
    assert {
        w: got[("seat_inventory_worker_up", frozenset({"worker": w}.items()))] for w in "012"
    } == {
        "0": 1,
        "1": 1,
        "2": 0,
    }
    restarts = {
        w: got[("seat_inventory_worker_restarts_total", frozenset({"worker": w}.items()))]
        for w in "012"
    }
    assert restarts == {"0": 0, "1": 2, "2": 1}
    assert text.count("# TYPE seat_inventory_rpcs_total counter") == 1
    assert not any(name.endswith("worker") for name, _ in got)  # no stray families


def test_an_unreadable_exposition_counts_as_down() -> None:
    got = samples(merge([("0", "this is { not metrics"), ("1", exposition(1, 0))], []).decode())
    assert got[("seat_inventory_worker_up", frozenset({"worker": "0"}.items()))] == 0
    assert got[("seat_inventory_worker_up", frozenset({"worker": "1"}.items()))] == 1


class _Fixed(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_worker() -> Iterator[int]:
    """A worker's metrics endpoint on a free loopback port."""
    handler = type("Handler", (_Fixed,), {"body": exposition(7, 2).encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_the_relay_serves_live_workers_and_reports_the_rest_down(fake_worker: int) -> None:
    targets: list[Target] = [("0", fake_worker, 0), ("1", None, 0)]
    relay = MetricsRelay("127.0.0.1", 0, lambda: targets)
    relay.start()
    try:
        url = f"http://127.0.0.1:{relay.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain")
            got = samples(reply.read().decode())
        rpcs = frozenset({"method": "Reserve", "code": "OK", "worker": "0"}.items())
        assert got[("seat_inventory_rpcs_total", rpcs)] == 7
        assert got[("seat_inventory_worker_up", frozenset({"worker": "1"}.items()))] == 0
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/other", timeout=10)
        assert missing.value.code == 404
    finally:
        relay.stop()


def test_a_port_in_use_is_refused_at_construction(fake_worker: int) -> None:
    with pytest.raises(OSError, match="in use"):
        MetricsRelay("127.0.0.1", fake_worker, list)


def test_a_worker_that_does_not_answer_is_down_after_the_fetch_timeout(
    monkeypatch: pytest.MonkeyPatch, fake_worker: int
) -> None:
    """A stopped worker (SIGSTOP, a hang) costs the scrape one fetch timeout, not
    the scrape: it shows down and the others are there."""
    import socket
    import time

    from seat_inventory import metrics_relay

    monkeypatch.setattr(metrics_relay, "FETCH_TIMEOUT_S", 0.5)
    silent = socket.create_server(("127.0.0.1", 0))  # listens, never answers
    try:
        targets: list[Target] = [("0", fake_worker, 0), ("1", silent.getsockname()[1], 0)]
        relay = MetricsRelay("127.0.0.1", 0, lambda: targets)
        relay.start()
        try:
            started = time.monotonic()
            url = f"http://127.0.0.1:{relay.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as reply:
                got = samples(reply.read().decode())
            took = time.monotonic() - started
        finally:
            relay.stop()
    finally:
        silent.close()
    assert got[("seat_inventory_worker_up", frozenset({"worker": "0"}.items()))] == 1
    assert got[("seat_inventory_worker_up", frozenset({"worker": "1"}.items()))] == 0
    assert took < 5, f"the scrape waited {took:.1f} s for a silent worker"
