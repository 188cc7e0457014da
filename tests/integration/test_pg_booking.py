"""Confirm's PostgreSQL transaction straight on asyncpg (adapters/sql/_pg_booking.py).

It opens its transaction behind the pool's back, so every way out of it must
leave the pool a connection outside any transaction and the event's fence
free: a cancelled commit (during the claim, or while waiting for the fence),
a connection lost during the claim or inside the one message that inserts
the booking and commits. The fence it takes must
be the one reloads take exclusively, also for event ids it cannot put in the
SQL text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from seat_inventory.adapters.sql import SqlEventRepository, _pg_booking, make_engine, migrate
from seat_inventory.domain.errors import BackendUnavailable, SeatsUnavailable
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


async def waiting_for(inspector: asyncpg.Connection, locktype: str) -> None:
    """Until a session of this database waits for a lock of ``locktype``: an
    ``advisory`` one (the fence), or a ``transactionid`` (a row another
    transaction inserted and has not committed yet)."""
    for _ in range(1000):
        if await inspector.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = $1 AND NOT l.granted AND a.datname = current_database()",
            locktype,
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no session waits for a {locktype} lock")


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
            await waiting_for(inspector, "advisory")
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


@contextlib.asynccontextmanager
async def seat_booked_uncommitted(
    inspector: asyncpg.Connection, event_id: str, seat: str
) -> AsyncIterator[asyncpg.transaction.Transaction]:
    """Another session's booking of ``seat``, inserted and not yet committed:
    a booking of that seat waits for it inside its one insert-and-commit
    message. The caller commits it or lets it roll back."""
    tx = inspector.transaction()
    await tx.start()
    try:
        await inspector.execute(
            "INSERT INTO bookings (booking_id, event_id, hold_id, holder_id, order_ref,"
            " seat_ids, status, confirmed_at_ms) VALUES ($1, $2, $3, 'bob', '', $4, 1, 1)",
            "bk_other" + uuid.uuid4().hex[:12],
            event_id,
            "h.other" + uuid.uuid4().hex,
            seat,
        )
        await inspector.execute(
            "INSERT INTO booked_seats (event_id, seat_id, booking_id)"
            " SELECT event_id, $2, booking_id FROM bookings"
            " WHERE event_id = $1 AND holder_id = 'bob'",
            event_id,
            seat,
        )
        yield tx
    finally:
        if inspector.is_in_transaction():
            await tx.rollback()


@contextlib.asynccontextmanager
async def commit_waiting_behind(
    repo: SqlEventRepository,
    inspector: asyncpg.Connection,
    observer: asyncpg.Connection,
    booking: Booking,
    seat: str,
) -> AsyncIterator[tuple[asyncpg.transaction.Transaction, asyncio.Task[tuple[Booking, bool]]]]:
    """``booking``'s commit, started while another session's booking of
    ``seat`` is uncommitted, and seen (from ``observer``) waiting for it inside
    its insert-and-commit message. Yields the other transaction and the commit."""
    async with seat_booked_uncommitted(inspector, booking.event_id, seat) as other:
        writer = asyncio.create_task(commit(repo, booking))
        await waiting_for(observer, "transactionid")
        yield other, writer


async def test_a_connection_lost_inside_the_booking_message_is_unavailable_and_writes_nothing(
    repo: SqlEventRepository, inspector: asyncpg.Connection, migrated: str
) -> None:
    """Insert and COMMIT travel in one message; the session dying while that
    message waits leaves no booking, no fence and a replaced connection."""
    killer = await asyncpg.connect(migrated)
    event = await make_event(repo)
    booking = make_booking(event, "S5", "S0")
    try:
        async with asyncio.timeout(10):
            async with commit_waiting_behind(repo, inspector, killer, booking, "S5") as (_, writer):
                assert await kill_fence_holders(killer) == 1
                with pytest.raises(BackendUnavailable):
                    await writer
            assert await repo.booking_by_hold(booking.hold_id) is None
            await assert_clean_and_usable(repo, inspector, event, "S5", "S0")
    finally:
        await killer.close()


async def test_a_commit_cancelled_inside_the_booking_message_is_all_or_nothing(
    repo: SqlEventRepository, inspector: asyncpg.Connection, migrated: str
) -> None:
    """The caller's deadline ends the call while the one insert-and-COMMIT
    message waits for a lock. Like a commit cancelled during its COMMIT, its
    outcome is unknown to the caller: the server may finish the message after
    the call is gone. What must hold: the booking is there whole or not at all,
    the fence is free, the pool's connection is replaced, and a retry of the
    same hold answers that outcome (the booking, or a fresh commit)."""
    watcher = await asyncpg.connect(migrated)
    event = await make_event(repo)
    booking = make_booking(event, "S6", "S3")
    try:
        async with asyncio.timeout(10):
            async with commit_waiting_behind(repo, inspector, watcher, booking, "S6") as (
                _,
                writer,
            ):
                writer.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await writer
            for _ in range(1000):  # the dropped session finishes or aborts
                if not await leftovers(watcher):
                    break
                await asyncio.sleep(0.01)
            stored = await repo.booking_by_hold(booking.hold_id)
            assert stored in (None, booking)
            seats = await watcher.fetch(
                "SELECT seat_id FROM booked_seats WHERE event_id = $1 ORDER BY seat_id",
                event.event_id,
            )
            assert [r["seat_id"] for r in seats] == ([] if stored is None else ["S3", "S6"])
            again = dataclasses.replace(booking, booking_id="bk_" + uuid.uuid4().hex[:20])
            answer = await commit(repo, again)
            assert answer == ((booking, False) if stored is not None else (again, True))
            await assert_clean_and_usable(repo, inspector, event, "S7")
    finally:
        await watcher.close()


@pytest.mark.parametrize("other_commits", [True, False])
async def test_a_booking_waiting_on_another_for_a_seat_gets_what_that_one_left(
    repo: SqlEventRepository, inspector: asyncpg.Connection, migrated: str, other_commits: bool
) -> None:
    """The other booking commits: this one fails on the seat's key, goes back to
    its savepoint and reports the seat sold (nothing of it stays). It rolls
    back: this one goes in whole, in its one message."""
    watcher = await asyncpg.connect(migrated)
    event = await make_event(repo)
    booking = make_booking(event, "S7", "S2")
    try:
        async with asyncio.timeout(10):
            waiting = commit_waiting_behind(repo, inspector, watcher, booking, "S7")
            async with waiting as (other, writer):
                if other_commits:
                    await other.commit()
            if other_commits:
                with pytest.raises(SeatsUnavailable) as refused:
                    await writer
                assert refused.value.seat_ids == ("S7",)
                assert await repo.booking_by_hold(booking.hold_id) is None
                await assert_clean_and_usable(repo, inspector, event, "S2")
            else:
                assert await writer == (booking, True)
                assert await repo.booking_by_hold(booking.hold_id) == booking
                await assert_clean_and_usable(repo, inspector, event, "S8")
    finally:
        await watcher.close()


def test_literals_are_the_values_they_spell() -> None:
    """The escape-string form: backslashes and quotes doubled, NUL refused."""
    assert _pg_booking._literal(None) == "NULL"
    assert _pg_booking._literal(42) == "42"
    assert _pg_booking._literal("it's") == "E'it''s'"
    assert _pg_booking._literal("a\\'b") == "E'a\\\\''b'"
    with pytest.raises(ValueError, match="NUL"):
        _pg_booking._literal("a\x00b")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")))
async def test_every_storable_text_reads_back_from_its_literal(
    inspector: asyncpg.Connection, value: str
) -> None:
    """PostgreSQL reads each literal back as exactly the value, whatever
    standard_conforming_strings says."""
    for conforming in ("on", "off"):
        await inspector.execute(f"SET standard_conforming_strings = {conforming}")
        literal = _pg_booking._literal(value)
        assert await inspector.fetchval(f"SELECT {literal}::text") == value
    await inspector.execute("RESET standard_conforming_strings")


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


async def prepared_here(engine: AsyncEngine) -> set[str]:
    """The prepared statements of the pool's one connection, by SQL name."""
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'seat_inventory%'"
        )
        return {row[0] for row in result}


async def test_booking_statements_dropped_behind_its_back_still_book(
    engine: AsyncEngine, repo: SqlEventRepository, inspector: asyncpg.Connection
) -> None:
    """Its statements deallocated on the session (by hand here; DEALLOCATE ALL
    would break asyncpg's own statement cache too): the next booking goes
    through the checked statement, and the one after prepares them again."""
    event = await make_event(repo)
    first = make_booking(event, "S1")
    assert await commit(repo, first) == (first, True)
    wanted = {_pg_booking._ROW_STATEMENT, _pg_booking._SEATS_STATEMENT}
    assert await prepared_here(engine) == wanted
    async with engine.connect() as conn:
        for name in sorted(wanted):
            await conn.exec_driver_sql(f"DEALLOCATE {name}")
    second, third = make_booking(event, "S2"), make_booking(event, "S3")
    assert await commit(repo, second) == (second, True)
    assert await prepared_here(engine) == set()
    assert await commit(repo, third) == (third, True)
    assert await prepared_here(engine) == wanted
    for booking in (first, second, third):
        assert await repo.booking_by_hold(booking.hold_id) == booking
    await assert_clean_and_usable(repo, inspector, event, "S4")


async def test_a_connection_that_has_the_statements_without_the_pool_knowing_books(
    engine: AsyncEngine, repo: SqlEventRepository, inspector: asyncpg.Connection
) -> None:
    """PREPARE answering "already exists" is taken as done, not as a failure."""
    event = await make_event(repo)
    first = make_booking(event, "S1")
    assert await commit(repo, first) == (first, True)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        raw.info.pop(_pg_booking._PREPARED_KEY)
    second = make_booking(event, "S2")
    assert await commit(repo, second) == (second, True)
    await assert_clean_and_usable(repo, inspector, event, "S3")


async def test_a_fence_not_granted_within_the_operators_lock_timeout_is_unavailable(
    migrated: str, repo: SqlEventRepository, inspector: asyncpg.Connection
) -> None:
    """With lock_timeout set on the database, a give-up that cannot take the event's
    fence in time (a Confirm holds it) is BACKEND_UNAVAILABLE, to be tried again,
    not an internal error; the Confirm then commits."""
    event = await make_event(repo)
    booking = make_booking(event, "S1")
    in_claim, release = asyncio.Event(), asyncio.Event()

    async def claim() -> Booking:
        in_claim.set()
        await release.wait()
        return booking

    database = await inspector.fetchval("SELECT current_database()")
    await inspector.execute(f'ALTER DATABASE "{database}" SET lock_timeout = 200')
    impatient = make_engine(migrated, pool_size=1)  # its sessions start with the setting
    try:
        async with asyncio.timeout(10):
            writer = asyncio.create_task(
                repo.commit_booking(event.event_id, booking.hold_id, claim)
            )
            await in_claim.wait()
            with pytest.raises(BackendUnavailable, match="lock timeout"):
                await SqlEventRepository(impatient).settle_unconfirmed(
                    event.event_id, "h.other", 3_000
                )
            release.set()
            assert await writer == (booking, True)
    finally:
        await inspector.execute(f'ALTER DATABASE "{database}" RESET lock_timeout')
        await impatient.dispose()


async def test_libpq_options_in_the_url_reach_the_server(migrated: str) -> None:
    """A URL with libpq's connect_timeout, application_name and options connects, and
    the server runs the session with those settings."""
    sep = "&" if "?" in migrated else "?"
    engine = make_engine(
        f"{migrated}{sep}connect_timeout=5&application_name=checkout"
        "&options=-c%20statement_timeout%3D4321"
    )
    try:
        async with engine.connect() as conn:
            row = (
                await conn.exec_driver_sql(
                    "SELECT current_setting('application_name'), "
                    "current_setting('statement_timeout')"
                )
            ).one()
        assert tuple(row) == ("checkout", "4321ms")
    finally:
        await engine.dispose()
