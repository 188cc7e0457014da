"""``serve --workers N``: N processes answer on one port (each answer names its
process in ``x-served-by``), a killed worker is replaced, SIGTERM stops them
all; and the embedded default refuses more than one process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from seatinventory.v1 import (
    inventory_admin_pb2_grpc,
    seat_inventory_pb2,
    seat_inventory_pb2_grpc,
)

from seat_inventory.cli import main
from tests.e2e.helpers import create_event
from tests.support.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRACE_S = 3.0


def served_by(call: grpc.aio.Call, trailing: grpc.aio.Metadata | None) -> int:
    value = dict(trailing or ()).get("x-served-by")
    assert value is not None, f"no x-served-by in the trailing metadata of {call}"
    return int(value)


async def answer_from_fresh_connection(target: str, event_id: str) -> int:
    """One GetAvailability over a new connection (the kernel picks a worker per
    connection); the pid of the worker that answered."""
    # A local subchannel pool: channels otherwise share one process-wide pool and a
    # "new" channel may ride a connection an earlier one left behind (one worker).
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
        call = stub.GetAvailability(
            seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=10
        )
        await call
        return served_by(call, await call.trailing_metadata())


async def answers_until(
    target: str, event_id: str, wanted: int, *, exclude: frozenset[int] = frozenset()
) -> tuple[Counter[int], int]:
    """Calls on fresh connections until ``wanted`` distinct pids outside ``exclude``
    answered; the answers per pid and how many calls failed (UNAVAILABLE while a
    worker is replaced)."""
    counts: Counter[int] = Counter()
    failed = 0
    deadline = time.monotonic() + 60
    while len(set(counts) - exclude) < wanted:
        assert time.monotonic() < deadline, f"only {dict(counts)} answered in 60 s"
        try:
            counts[await answer_from_fresh_connection(target, event_id)] += 1
        except grpc.aio.AioRpcError as err:
            error = err
        else:
            continue
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        failed += 1
        await asyncio.sleep(0.05)
    return counts, failed


def parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
async def workers(redis_url: str, postgres_url: str) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=["--workers", "2", "--grace", str(GRACE_S)],
    )
    try:
        yield await server.start()
    finally:
        server.cleanup()


async def test_two_workers_serve_one_port_and_a_killed_one_is_replaced(
    workers: ServerProcess,
) -> None:
    """Both workers (children of the supervisor) answer calls on the shared port; after
    one is SIGKILLed a new worker takes its place while the other goes on answering;
    SIGTERM to the supervisor stops every worker and it exits 0."""
    assert workers.proc is not None
    supervisor = workers.proc.pid
    async with grpc.aio.insecure_channel(workers.target) as channel:
        event_id = await create_event(inventory_admin_pb2_grpc.InventoryAdminStub(channel), n=5)
    counts, _ = await answers_until(workers.target, event_id, 2)
    print(f"\nanswers per worker pid: {dict(counts)}")
    assert len(counts) == 2
    assert all(parent_of(pid) == supervisor for pid in counts)

    victim, survivor = sorted(counts)
    os.kill(victim, signal.SIGKILL)
    replaced, failed = await answers_until(
        workers.target, event_id, 1, exclude=frozenset({survivor, victim})
    )
    print(f"after SIGKILL of {victim}: {dict(replaced)}; {failed} call(s) UNAVAILABLE meanwhile")
    assert victim not in replaced
    (newcomer,) = set(replaced) - {survivor}
    assert parent_of(newcomer) == supervisor
    assert "worker died" in workers.logs()
    # the survivor kept serving throughout
    more, _ = await answers_until(workers.target, event_id, 2, exclude=frozenset({victim}))
    assert set(more) == {survivor, newcomer}

    started = time.monotonic()
    code = await workers.stop(timeout_s=GRACE_S + 15)
    print(f"supervisor and workers stopped in {time.monotonic() - started:.2f}s")
    assert code == 0, workers.logs()
    for pid in (survivor, newcomer):
        for _ in range(50):  # already reaped by the supervisor; allow the kernel a moment
            if gone(pid):
                break
            await asyncio.sleep(0.1)
        assert gone(pid), f"worker {pid} outlived its supervisor"


def test_embedded_mode_refuses_several_workers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --redis-url (in-process fakeredis) or on SQLite, --workers 2 exits 2 with
    one clear line and starts nothing."""
    for name in list(os.environ):
        if name.startswith("SEAT_INVENTORY_"):
            monkeypatch.delenv(name)
    for argv in (
        ["serve", "--workers", "2", "--port", "0"],
        ["serve", "--workers", "2", "--port", "0", "--redis-url", "redis://127.0.0.1:1/0"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [
            "seat-inventory: --workers needs --redis-url and a PostgreSQL --database-url; "
            "the embedded default (in-process fakeredis, SQLite) is one process"
        ]


async def test_the_supervisor_serves_every_workers_metrics_on_one_port(
    redis_url: str, postgres_url: str
) -> None:
    """``--metrics-port P`` with workers: P answers for all of them, each sample
    labelled with its worker; the calls each worker answered are its counts; a
    killed worker shows down (or restarting), then up again with one restart."""
    from tests.support.metrics import scrape, value
    from tests.support.services import free_port

    metrics_port = free_port()
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=["--workers", "2", "--grace", str(GRACE_S), "--metrics-port", str(metrics_port)],
    )
    try:
        await server.start()
        # Until then the supervisor may not have heard a worker serve: it shows down.
        await server.wait_logged("all workers serving", 30)
        async with grpc.aio.insecure_channel(server.target) as channel:
            event_id = await create_event(inventory_admin_pb2_grpc.InventoryAdminStub(channel), n=5)
        counts, failed = await answers_until(server.target, event_id, 2)
        assert failed == 0
        samples = await scrape(metrics_port)

        def answered(worker: str) -> float:
            return value(
                samples,
                "seat_inventory_rpcs_total",
                method="GetAvailability",
                code="OK",
                reason="",
                worker=worker,
            )

        assert sorted([answered("0"), answered("1")]) == sorted(counts.values())
        for worker in ("0", "1"):
            assert value(samples, "seat_inventory_worker_up", worker=worker) == 1
            assert value(samples, "seat_inventory_worker_restarts_total", worker=worker) == 0

        os.kill(min(counts), signal.SIGKILL)
        deadline = time.monotonic() + 60
        saw_down = False
        while True:
            assert time.monotonic() < deadline, f"no restart seen: {samples}"
            samples = await scrape(metrics_port)
            ups = [value(samples, "seat_inventory_worker_up", worker=w) for w in ("0", "1")]
            saw_down = saw_down or 0 in ups
            restarts = [
                value(samples, "seat_inventory_worker_restarts_total", worker=w) for w in ("0", "1")
            ]
            if sorted(restarts) == [0, 1] and ups == [1, 1]:
                break
            await asyncio.sleep(0.1)
        print(f"\nrestart seen in the metrics; a scrape saw the worker down: {saw_down}")
        assert await server.stop(timeout_s=GRACE_S + 15) == 0, server.logs()
    finally:
        server.cleanup()
