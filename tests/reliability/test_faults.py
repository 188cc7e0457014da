"""Faults injected into a server under load (clients reserving and confirming
all along): Redis frozen with SIGSTOP past a hold's ttl, the service killed
with SIGKILL and restarted, and a slow network between the service and Redis.

Whatever happens, calls answer within their deadline with a documented status,
and afterwards no seat is in two holds, no seat is sold twice, every seat SQL
sold is BOOKED in Redis, and every Confirm that answered OK has its row.
Every fault is injected into a process or proxy the test started itself."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from seatinventory.v1 import seat_inventory_pb2, types_pb2
from sqlalchemy.engine import make_url

from tests.e2e.conftest import Running
from tests.e2e.helpers import ttl
from tests.reliability.conftest import SERVING, Client, until
from tests.reliability.invariants import (
    SoldSeatWatch,
    check_invariants,
    confirming_holds,
    settle,
)
from tests.reliability.report import REPORT, scaled
from tests.reliability.workload import (
    Call,
    LoadStats,
    invoke,
    load_client,
    retry_lost_cancels,
    wall_ms,
)
from tests.support.server_process import Ledger, ServerProcess
from tests.support.services import RedisProcess
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SpawnServer = Callable[..., ServerProcess]
ServeInProcess = Callable[..., Awaitable[tuple[Running, Client]]]
Loads = Callable[..., "Load"]

AVAILABLE = types_pb2.SEAT_STATUS_AVAILABLE
SEATS = [f"A-{i}" for i in range(1, 17)]
CLIENTS = 6
# Successful Confirms to see before a fault, and again after it is over.
CONFIRMS = scaled(4)
# The answers a call may get while a backend is frozen or slow.
UNDER_FAULT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


class Load:
    """CLIENTS load clients on one server, and a SoldSeatWatch beside them;
    ``stop`` ends them and returns the stats. The first ``keepers`` clients keep
    their newest booking (so the end state has sales to check); the others
    cancel every booking, so that seats never run out."""

    def __init__(
        self,
        client: Client,
        ledger: Ledger,
        event_id: str,
        seats: Sequence[str],
        *,
        keepers: int = 2,
        **kw: float,
    ) -> None:
        self.stats = LoadStats()
        self.watch = SoldSeatWatch(ledger, client, event_id)
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(
                load_client(
                    client,
                    event_id,
                    seats,
                    self._stop,
                    self.stats,
                    name=f"load-{i}",
                    seed=i,
                    keep=int(i < keepers),
                    **kw,
                )
            )
            for i in range(CLIENTS)
        ]

    async def confirms(self, more: int, what: str, timeout_s: float = 30.0) -> None:
        """Until ``more`` further Confirms answered OK."""
        target = self.stats.confirms_ok() + more

        async def enough() -> bool:
            for task in self._tasks:
                if task.done():
                    task.result()  # a load client that crashed fails the test here
            return self.stats.confirms_ok() >= target

        await until(enough, what, timeout_s)

    async def stop(self) -> LoadStats:
        if not self._stop.is_set():
            self._stop.set()
            async with asyncio.timeout(60):  # every call has its own deadline
                await asyncio.gather(*self._tasks)
            await self.watch.stop()
            REPORT.add("operations attempted", len(self.stats.calls))
            unknown = sum(c.unknown for c in self.stats.calls)
            REPORT.add("outcomes unknown (timeout/UNAVAILABLE)", unknown)
        return self.stats

    async def abandon(self) -> None:
        """After a test that failed half-way: no load runs on into the next test."""
        if not self._stop.is_set():
            self._stop.set()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.watch.stop()


@pytest.fixture
async def loads() -> AsyncIterator[Callable[..., Load]]:
    """Makes Loads; any still running at the end is abandoned (request this
    fixture last, so that it is torn down before the server it loads)."""
    made: list[Load] = []

    def make(*args: Any, **kwargs: Any) -> Load:
        made.append(Load(*args, **kwargs))
        return made[-1]

    yield make
    for load in made:
        await load.abandon()


async def finish(load: Load, ledger: Ledger, client: Client, event_id: str) -> LoadStats:
    """Stop the load, let the sweeper settle every claimed hold, check every invariant."""
    stats = await load.stop()
    await retry_lost_cancels(client, stats)
    await settle(ledger.redis_url, event_id)
    findings = await check_invariants(ledger, client, event_id, stats)
    findings.violations += [f"unexpected answer: {c.describe()}" for c in stats.unexpected()]
    findings.violations += load.watch.violations
    print(f"\nsold seats never AVAILABLE: {load.watch.looks} looks while the load ran", end="")
    codes = Counter(f"{c.rpc} {c.status} {c.reason}".strip() for c in stats.calls)
    print("\n" + ", ".join(f"{n} {k}" for k, n in sorted(codes.items())))
    findings.assert_clean()
    return stats


def no_deadline_probes(client: Client, event_id: str) -> list[asyncio.Task[Call]]:
    """Calls with no deadline at all: only the server's own bounds can end them."""
    reserve = seat_inventory_pb2.ReserveRequest(
        event_id=event_id, seat_ids=[SEATS[-1]], holder_id="probe", ttl=ttl(1)
    )
    read = seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id)
    return [
        asyncio.create_task(invoke("Reserve", client.inventory.Reserve, reserve, None)),
        asyncio.create_task(
            invoke("GetAvailability", client.inventory.GetAvailability, read, None)
        ),
    ]


async def test_redis_paused_past_a_hold_ttl(
    own_redis: RedisProcess, serve_in_process: ServeInProcess, postgres_url: str, loads: Loads
) -> None:
    """redis-server frozen (SIGSTOP) for longer than a hold's ttl: every call meanwhile,
    with or without a deadline, answers UNAVAILABLE or DEADLINE_EXCEEDED (never hangs);
    after SIGCONT the lapsed hold is gone, its seats are free, and no invariant broke."""
    _, client = await serve_in_process(
        redis_url=own_redis.url, backend_timeout_s=0.5, confirm_window_s=1.0, sweep_interval_s=0.1
    )
    ledger = Ledger(postgres_url, own_redis.url)
    event_id = await client.create_event(n=len(SEATS))
    victim = await client.reserve(event_id, SEATS[:2], holder="victim", ttl_s=1)
    load = loads(client, ledger, event_id, SEATS[2:-1], ttl_s=1.0, deadline_s=1.0)
    await load.confirms(CONFIRMS, "the load never got going")

    own_redis.pause()
    paused = time.monotonic()
    REPORT.add("faults injected")
    try:
        probes = no_deadline_probes(client, event_id)
        lapsed_at = victim.expires_at.ToMilliseconds() + 200

        async def paused_long_enough() -> bool:
            # past the victim's expiry and 2.5 s (calls with a deadline come and go
            # meanwhile), and every no-deadline probe has answered
            late = wall_ms() > lapsed_at and time.monotonic() - paused > 2.5
            return late and all(p.done() for p in probes)

        await until(paused_long_enough, "a call with no deadline hung while Redis was frozen", 20)
    finally:
        own_redis.resume()
    resumed = time.monotonic()

    for probe in probes:
        call = probe.result()
        assert (call.status, call.reason, call.infos) == ("UNAVAILABLE", "BACKEND_UNAVAILABLE", 1)
    during = load.stats.during(paused, resumed)
    assert during, "no call of the load was made and answered during the pause"
    assert {c.status for c in during} <= UNDER_FAULT, [c.describe() for c in during]

    await client.wait_health(SERVING)
    statuses = await client.statuses(event_id)
    assert [statuses[s] for s in SEATS[:2]] == [AVAILABLE, AVAILABLE]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.confirm(victim.hold_id, holder="victim")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.release(victim.hold_id, holder="victim")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await client.reserve(event_id, SEATS[:2], holder="after")
    await load.confirms(CONFIRMS, "the load never recovered after SIGCONT")
    await finish(load, ledger, client, event_id)
    print(
        f"paused {resumed - paused:.1f}s; {len(during)} calls answered meanwhile, "
        f"{sorted(Counter(c.status for c in during).items())}; no-deadline probes answered in "
        + ", ".join(f"{p.result().ended - p.result().started:.2f}s" for p in probes)
    )


@asynccontextmanager
async def database_proxy(database_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test database's server, and the database's URL through it."""
    url = make_url(database_url)
    async with TcpProxy(url.port or 5432, url.host or "127.0.0.1") as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@asynccontextmanager
async def fast_reconnecting(target: str) -> AsyncIterator[Client]:
    """A channel that tries a restarted server again within half a second."""
    options = [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        yield Client.on(channel)


async def test_service_killed_mid_load_and_restarted(
    own_redis: RedisProcess, spawn_server: SpawnServer, postgres_url: str, loads: Loads
) -> None:
    """The service process SIGKILLed while Confirms are between their Redis claim
    and their SQL commit, then restarted: the sweeper settles every claimed hold,
    every Confirm that answered OK is in SQL, and no invariant broke."""
    async with database_proxy(postgres_url) as (database, proxied_url):
        server = spawn_server(redis_url=own_redis.url, database_url=proxied_url)
        await server.start()
        async with fast_reconnecting(server.target) as client:
            ledger = Ledger(postgres_url, own_redis.url)
            event_id = await client.create_event(n=len(SEATS))
            load = loads(client, ledger, event_id, SEATS, ttl_s=2.0, deadline_s=3.0)
            await load.confirms(CONFIRMS, "the load never got going")

            # A slow database keeps each Confirm a while between its claim and its
            # commit; kill the server once two of them are there.
            database.slow(0.1)
            claimed: list[str] = []

            async def two_claimed() -> bool:
                claimed[:] = await confirming_holds(own_redis.url, event_id)
                return len(claimed) >= 2

            await until(two_claimed, "never two Confirms between claim and commit at once")
            server.kill()
            REPORT.add("faults injected")
            claimed = await confirming_holds(own_redis.url, event_id)
            database.slow(0)

            await server.start()
            await load.confirms(CONFIRMS, "the load never recovered after the restart")
            stats = await finish(load, ledger, client, event_id)
    booked = [h for h in claimed if await ledger.booking_of_hold(h) is not None]
    print(
        f"killed with {len(claimed)} hold(s) claimed: repair booked {len(booked)} and gave up "
        f"{len(claimed) - len(booked)}; {stats.confirms_ok()} Confirms answered OK"
    )


async def test_slow_network_to_redis(
    own_redis: RedisProcess, serve_in_process: ServeInProcess, postgres_url: str, loads: Loads
) -> None:
    """Every packet between the service and Redis delayed 250 ms: calls answer OK or
    UNAVAILABLE / DEADLINE_EXCEEDED within their deadline (never hang, no-deadline
    calls included), and once the network is fast again no invariant broke."""
    async with TcpProxy(own_redis.port) as proxy:
        _, client = await serve_in_process(
            redis_url=f"redis://{proxy.address()}/0", confirm_window_s=1.0, sweep_interval_s=0.1
        )
        ledger = Ledger(postgres_url, own_redis.url)
        event_id = await client.create_event(n=len(SEATS))
        # Few seats, none kept sold: a seat is soon asked for again once it is free.
        load = loads(client, ledger, event_id, SEATS[:4], keepers=0, ttl_s=1.0, deadline_s=1.0)
        await load.confirms(CONFIRMS, "the load never got going")

        proxy.slow(0.25)
        slowed = time.monotonic()
        REPORT.add("faults injected")
        probes = no_deadline_probes(client, event_id)
        wanted = scaled(40)

        async def enough_calls() -> bool:
            during = load.stats.during(slowed, time.monotonic())
            return len(during) >= wanted and all(p.done() for p in probes)

        await until(enough_calls, f"{wanted} calls answered on the slow network", 60)
        proxy.slow(0)
        fast = time.monotonic()

        during = load.stats.during(slowed, fast)
        statuses = Counter(c.status for c in during)
        assert set(statuses) <= UNDER_FAULT | {"OK", "FAILED_PRECONDITION", "NOT_FOUND"}, statuses
        assert statuses.keys() & UNDER_FAULT, f"the slow network slowed nothing down: {statuses}"
        for probe in probes:
            assert probe.result().status in ("OK", "UNAVAILABLE"), probe.result().describe()
        await load.confirms(CONFIRMS, "the load never recovered on a fast network")
        await finish(load, ledger, client, event_id)
    print(
        f"slow for {fast - slowed:.1f}s: {sorted(statuses.items())}; no-deadline probes: "
        + ", ".join(
            f"{p.result().status} in {p.result().ended - p.result().started:.2f}s" for p in probes
        )
    )
