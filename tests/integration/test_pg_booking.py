"""Confirm's PostgreSQL transaction straight on asyncpg (adapters/sql/_pg_booking.py).

It opens its transaction behind the pool's back, so every way out of it must
leave the pool a connection outside any transaction and the event's fence
free: a cancelled commit (during the claim, or while waiting for the fence),
a connection lost during the claim or before COMMIT. The fence it takes must
be the one reloads take exclusively, also for event ids it cannot put in the
SQL text.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from seat_inventory.adapters.sql import SqlEventRepository, _pg_booking, make_engine, migrate
from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.domain.model import Booking, Event, SeatSpec
from seat_inventory.service_layer.ports import EventSnapshot

pytestmark = pytest.mark.integration


@pytest.fixture
async def migrated(postgres_url: str) -> str:
    engine = make_engine(postgres_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return postgres_url


@pytest.fixture
async def engine(migrated: str) -> AsyncIterator[AsyncEngine]:
    """One connection only: what the pool gets back is what the next caller gets."""
    engine = make_engine(migrated, pool_size=1)
    yield engine
    await engine.dispose()


@pytest.fixture
def repo(engine: AsyncEngine) -> SqlEventRepository:
    return SqlEventRepository(engine)


@pytest.fixture
async def inspector(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(migrated)
    yield conn
    await conn.close()


async def make_event(repo: SqlEventRepository, event_id: str = "") -> Event:
    seats = tuple(SeatSpec(f"S{i}", "A", "1", str(i)) for i in range(10))
    event = Event(event_id or f"ev-{uuid.uuid4().hex[:12]}", "Concert", seats, 1_000)
    await repo.create_event(event)
    return event


def make_booking(event: Event, *seat_ids: str) -> Booking:
    return Booking(
        booking_id="bk_" + uuid.uuid4().hex[:20],
        event_id=event.event_id,
        hold_id="h." + uuid.uuid4().hex,
        seat_ids=seat_ids,
        holder_id="alice",
        order_ref="o'1; -- \\",  # quotes and backslashes travel as values
        confirmed_at_ms=2_000,
    )


def claim_of(booking: Booking) -> Callable[[], Awaitable[Booking]]:
    async def claim() -> Booking:
        return booking

    return claim


async def commit(repo: SqlEventRepository, booking: Booking) -> tuple[Booking, bool]:
    return await repo.commit_booking(booking.event_id, booking.hold_id, claim_of(booking))


async def leftovers(inspector: asyncpg.Connection) -> list[tuple[str, str]]:
    """Other sessions of this database inside a transaction or holding an advisory lock."""
    rows = await inspector.fetch(
        "SELECT a.state, coalesce(l.mode, '') AS mode FROM pg_stat_activity a"
        " LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'"
        " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
        " AND (a.state LIKE 'idle in transaction%' OR l.mode IS NOT NULL)"
    )
    return [(r["state"], r["mode"]) for r in rows]


async def kill_fence_holders(inspector: asyncpg.Connection) -> int:
    """Terminate the sessions of this database holding an advisory lock."""
    killed = await inspector.fetchval(
        "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
        " AND a.pid <> pg_backend_pid()"
    )
    return int(killed)


async def lock_request_queued(inspector: asyncpg.Connection) -> None:
    """Until a session of this database waits for an advisory lock."""
    for _ in range(1000):
        if await inspector.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND NOT l.granted"
            " AND a.datname = current_database()"
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no lock request queued")


async def assert_clean_and_usable(
    repo: SqlEventRepository, inspector: asyncpg.Connection, event: Event, *seats: str
) -> None:
    assert await leftovers(inspector) == []
    after = make_booking(event, *seats)
    assert await commit(repo, after) == (after, True)
    assert await repo.get_booking(after.booking_id) == after


async def test_a_booking_round_trips_with_odd_values(repo: SqlEventRepository) -> None:
    """Every column goes in as a bound value and reads back the same."""
    event = await make_event(repo)
    booking = make_booking(event, "S3", "S1")
    assert await commit(repo, booking) == (booking, True)
    assert await repo.booking_by_hold(booking.hold_id) == booking
    snapshot = await repo.snapshot(event.event_id)
    assert snapshot is not None
    assert snapshot.booked_seat_ids == {"S1", "S3"}


async def test_a_commit_cancelled_during_its_claim_leaves_nothing_behind(
    repo: SqlEventRepository, inspector: asyncpg.Connection
) -> None:
    """Cancelled while the claim runs: rolled back, fence free, connection reusable."""
    event = await make_event(repo)
    booking = make_booking(event, "S1")
    claiming = asyncio.Event()

    async def claim() -> Booking:
        claiming.set()
        await asyncio.Event().wait()  # never
        return booking

    async with asyncio.timeout(10):  # a guard against hanging, not a benchmark
        task = asyncio.create_task(repo.commit_booking(event.event_id, booking.hold_id, claim))
        await claiming.wait()
        assert [mode for _, mode in await leftovers(inspector)] == ["ShareLock"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await repo.booking_by_hold(booking.hold_id) is None
        await assert_clean_and_usable(repo, inspector, event, "S1")


async def test_a_commit_cancelled_while_waiting_for_the_fence_leaves_nothing_behind(
    migrated: str, inspector: asyncpg.Connection
) -> None:
    """Cancelled inside its BEGIN (a reload holds the fence): no transaction left open."""
    engine = make_engine(migrated, pool_size=2)
    repo = SqlEventRepository(engine)
    try:
        event = await make_event(repo)
        in_apply, release = asyncio.Event(), asyncio.Event()

        async def apply(_snapshot: EventSnapshot) -> None:
            in_apply.set()
            await release.wait()

        async with asyncio.timeout(10):
            loader = asyncio.create_task(repo.snapshot(event.event_id, apply=apply))
            await in_apply.wait()
            booking = make_booking(event, "S2")
            writer = asyncio.create_task(commit(repo, booking))
            await lock_request_queued(inspector)
            writer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await writer
            release.set()
            await loader
            assert await repo.booking_by_hold(booking.hold_id) is None
            await assert_clean_and_usable(repo, inspector, event, "S2")
            await assert_clean_and_usable(repo, inspector, event, "S3")  # both connections
    finally:
        await engine.dispose()


async def test_a_connection_lost_during_the_claim_is_unavailable_and_replaced(
    repo: SqlEventRepository, inspector: asyncpg.Connection
) -> None:
    event = await make_event(repo)
    booking = make_booking(event, "S4")

    async def claim() -> Booking:
        assert await kill_fence_holders(inspector) == 1
        return booking

    async with asyncio.timeout(10):
        with pytest.raises(BackendUnavailable):
            await repo.commit_booking(event.event_id, booking.hold_id, claim)
        assert await repo.booking_by_hold(booking.hold_id) is None
        await assert_clean_and_usable(repo, inspector, event, "S4")


async def test_a_connection_lost_before_commit_is_unavailable_and_writes_nothing(
    repo: SqlEventRepository, inspector: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = await make_event(repo)
    booking = make_booking(event, "S5")
    insert = _pg_booking.PgBooking.insert

    async def insert_then_die(self: _pg_booking.PgBooking, b: Booking) -> list[str]:
        taken = await insert(self, b)
        assert await kill_fence_holders(inspector) == 1
        return taken

    monkeypatch.setattr(_pg_booking.PgBooking, "insert", insert_then_die)
    async with asyncio.timeout(10):
        with pytest.raises(BackendUnavailable):
            await commit(repo, booking)
        monkeypatch.undo()
        assert await repo.booking_by_hold(booking.hold_id) is None
        await assert_clean_and_usable(repo, inspector, event, "S5")


async def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    repo: SqlEventRepository, inspector: asyncpg.Connection
) -> None:
    """A session terminated while idle in the pool (a database restart, a proxy
    dropping connections) costs no failed Confirm."""
    event = await make_event(repo)
    await assert_clean_and_usable(repo, inspector, event, "S8")
    pids = await inspector.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert len(pids) == 1  # the pool's one connection
    async with asyncio.timeout(10):
        for _ in range(1000):
            if not await inspector.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the client reads the end of the stream
        await assert_clean_and_usable(repo, inspector, event, "S9")


async def test_an_event_id_kept_out_of_the_sql_text_still_takes_the_fence(
    repo: SqlEventRepository, inspector: asyncpg.Connection, migrated: str
) -> None:
    """An id with a quote takes the same lock through a bound parameter."""
    engine = make_engine(migrated, pool_size=2)
    other = SqlEventRepository(engine)
    try:
        event = await make_event(repo, "it's an id")
        in_apply, release = asyncio.Event(), asyncio.Event()
        claimed: list[str] = []
        booking = make_booking(event, "S6")

        async def apply(_snapshot: EventSnapshot) -> None:
            in_apply.set()
            await release.wait()

        async def claim() -> Booking:
            claimed.append(booking.hold_id)
            return booking

        async with asyncio.timeout(10):
            loader = asyncio.create_task(other.snapshot(event.event_id, apply=apply))
            await in_apply.wait()
            writer = asyncio.create_task(
                repo.commit_booking(event.event_id, booking.hold_id, claim)
            )
            await asyncio.sleep(0.2)
            assert claimed == []
            release.set()
            await loader
            assert await writer == (booking, True)
            await assert_clean_and_usable(repo, inspector, event, "S7")
    finally:
        await engine.dispose()


async def test_the_pool_is_fixed_and_a_full_one_is_unavailable(migrated: str) -> None:
    """pool_size connections and no more; a caller finding them all busy gets
    BackendUnavailable after the pool timeout instead of queueing forever."""
    engine = make_engine(migrated, pool_size=2, command_timeout_s=0.3)
    repo = SqlEventRepository(engine)
    try:
        async with asyncio.timeout(10), engine.connect(), engine.connect():
            with pytest.raises(BackendUnavailable):
                await repo.ping()
        await repo.ping()
    finally:
        await engine.dispose()
