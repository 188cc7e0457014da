"""The SQL adapter against real databases: the same tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from seat_inventory.adapters.sql import SqlEventRepository, make_engine, metadata, migrate
from seat_inventory.adapters.sql.tables import booked_seats, bookings
from seat_inventory.domain.errors import (
    BackendUnavailable,
    BookingNotFound,
    EventExists,
    HoldNotFound,
    SeatsUnavailable,
)
from seat_inventory.domain.model import Booking, BookingStatus, Event, SeatSpec
from seat_inventory.service_layer.ports import EventSnapshot
from tests.support.services import free_port, postgres_database, temp_sqlite_url

pytestmark = pytest.mark.integration

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return temp_sqlite_url(tmp_path)
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def fresh_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated yet (PostgreSQL: one more throw-away database)."""
    if backend == "sqlite":
        yield temp_sqlite_url(tmp_path)
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def repo(engine: AsyncEngine) -> SqlEventRepository:
    return SqlEventRepository(engine)


def make_event(seat_ids: list[str], *, name: str = "Concert", created_at_ms: int = 1_000) -> Event:
    seats = tuple(SeatSpec(s, section="A", row=s[:1], number=s[1:]) for s in seat_ids)
    return Event(f"ev-{uuid.uuid4().hex[:12]}", name, seats, created_at_ms)


def make_booking(event: Event, seat_ids: tuple[str, ...], hold: str = "") -> Booking:
    return Booking(
        booking_id="bk_" + uuid.uuid4().hex[:20],
        event_id=event.event_id,
        hold_id=hold or "h." + uuid.uuid4().hex,
        seat_ids=seat_ids,
        holder_id="alice",
        order_ref="order-1",
        confirmed_at_ms=2_000,
    )


async def created(repo: SqlEventRepository, seat_ids: list[str] | None = None) -> Event:
    event = make_event(seat_ids or [f"S{i}" for i in range(10)])
    await repo.create_event(event)
    return event


def _schema_diff(connection: Connection) -> list[Any]:
    def ours(name: str | None, type_: str, _parent: object) -> bool:
        return type_ != "table" or name in metadata.tables

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": ours}
    )
    return list(compare_metadata(context, metadata))


async def test_migration_creates_exactly_the_table_definitions(engine: AsyncEngine) -> None:
    """After migrate, Alembic finds no difference between the database and tables.py."""
    async with engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert set(metadata.tables) <= names
    assert version == "0002"


async def test_migrate_again_is_a_no_op(
    engine: AsyncEngine, repo: SqlEventRepository, database_url: str
) -> None:
    """Migrating an up-to-date database, by engine or by URL, changes nothing."""
    event = await created(repo)
    await migrate(engine)
    await migrate(database_url)
    assert await repo.get_event(event.event_id) == event
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar() == 1


async def _migrate_in_a_process(url: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = (
        "import sys; from seat_inventory.adapters.sql import migrate_url; migrate_url(sys.argv[1])"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, url, env=env)
    return await proc.wait()


async def test_concurrent_migrations_of_a_fresh_database_all_succeed(
    fresh_database_url: str,
) -> None:
    """Two processes and two engines migrating one new database at once leave one schema."""
    engines = [make_engine(fresh_database_url) for _ in range(2)]
    try:
        async with asyncio.timeout(30):
            codes = await asyncio.gather(
                _migrate_in_a_process(fresh_database_url),
                _migrate_in_a_process(fresh_database_url),
                *(migrate(e) for e in engines),
            )
        assert codes[:2] == [0, 0]
        async with engines[0].connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [v for (v,) in versions] == ["0002"]
    finally:
        for e in engines:
            await e.dispose()


async def test_a_database_from_a_newer_release_is_refused_with_one_message(
    fresh_database_url: str,
) -> None:
    """A database at a revision this build does not know (a deploy rolled back) stops
    the start with a ValueError naming the revision, not a traceback."""
    engine = make_engine(fresh_database_url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(ValueError, match=r"cannot migrate the database: .*'0099'"):
            await migrate(engine)
    finally:
        await engine.dispose()


async def test_another_applications_tables_are_named_not_reported_unreachable(
    fresh_database_url: str,
) -> None:
    """A database that already has an unrelated ``events`` table: a ValueError saying
    the schema cannot be made there (SQLite's error had read "unavailable")."""
    engine = make_engine(fresh_database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE events (id INTEGER PRIMARY KEY)"))
        with pytest.raises(ValueError, match=r"cannot migrate the database: .*already exists"):
            await migrate(engine)
    finally:
        await engine.dispose()


async def test_create_and_get_keep_the_seat_map_order(repo: SqlEventRepository) -> None:
    """get_event returns the seats with their labels in the order they were created."""
    event = make_event(["C3", "A10", "A2", "B1", "A1"])
    assert await repo.create_event(event) == (event, True)
    assert await repo.get_event(event.event_id) == event
    assert event.event_id in await repo.event_ids()


async def test_unknown_event_reads_as_none(repo: SqlEventRepository) -> None:
    """get_event and snapshot of an unknown id answer None."""
    assert await repo.get_event("no-such-event") is None
    assert await repo.snapshot("no-such-event") is None


async def test_identical_create_returns_the_existing_event(repo: SqlEventRepository) -> None:
    """Creating the same event again answers the stored one (and its creation time), False."""
    event = await created(repo)
    retry = Event(event.event_id, event.name, event.seats, created_at_ms=99_999)
    assert await repo.create_event(retry) == (event, False)


@pytest.mark.parametrize("change", ["name", "seats"])
async def test_create_of_a_different_event_under_a_taken_id_raises(
    repo: SqlEventRepository, change: str
) -> None:
    """Another name or seat map under an existing id is EventExists and changes nothing."""
    event = await created(repo, ["A1", "A2"])
    other = Event(
        event.event_id,
        "Other" if change == "name" else event.name,
        event.seats if change == "name" else event.seats[:1],
        event.created_at_ms,
    )
    with pytest.raises(EventExists):
        await repo.create_event(other)
    assert await repo.get_event(event.event_id) == event


async def test_snapshot_has_seats_in_order_and_the_booked_ones(repo: SqlEventRepository) -> None:
    """snapshot lists every seat in seat-map order and exactly the actively booked seats."""
    event = await created(repo, ["B2", "A1", "C9"])
    await commit(repo, make_booking(event, ("C9", "A1")))
    snapshot = await repo.snapshot(event.event_id)
    assert snapshot is not None
    assert snapshot.seat_ids == ("B2", "A1", "C9")
    assert snapshot.booked_seat_ids == {"A1", "C9"}


def claim_of(booking: Booking) -> Callable[[], Awaitable[Booking]]:
    async def claim() -> Booking:
        return booking

    return claim


async def commit(repo: SqlEventRepository, booking: Booking) -> tuple[Booking, bool]:
    return await repo.commit_booking(booking.event_id, booking.hold_id, claim_of(booking))


async def no_op(_: object) -> None:
    return None


async def test_commit_booking_stores_it(repo: SqlEventRepository) -> None:
    """A committed booking reads back the same by booking id and by hold id."""
    event = await created(repo)
    booking = make_booking(event, ("S1", "S2"))
    assert await commit(repo, booking) == (booking, True)
    assert await repo.get_booking(booking.booking_id) == booking
    assert await repo.booking_by_hold(booking.hold_id) == booking


async def test_a_failing_claim_writes_nothing(repo: SqlEventRepository) -> None:
    """What claim raises reaches the caller unchanged, and no booking is stored."""
    event = await created(repo)

    async def claim() -> Booking:
        raise HoldNotFound("h.gone")

    with pytest.raises(HoldNotFound):
        await repo.commit_booking(event.event_id, "h.gone", claim)
    assert await repo.booking_by_hold("h.gone") is None


async def test_a_claim_failing_with_oserror_is_not_called_a_database_failure(
    repo: SqlEventRepository,
) -> None:
    """A network error inside claim (Redis's) is not relabelled as the database's."""
    event = await created(repo)

    async def claim() -> Booking:
        raise ConnectionResetError("redis went away")

    with pytest.raises(ConnectionResetError):
        await repo.commit_booking(event.event_id, "h.reset", claim)


async def test_committing_a_hold_twice_returns_the_first_booking(
    repo: SqlEventRepository,
) -> None:
    """A second commit of the same hold answers the stored booking, False, and adds no row."""
    event = await created(repo)
    first = make_booking(event, ("S1",))
    await commit(repo, first)
    retry = make_booking(event, ("S1",), hold=first.hold_id)
    assert await commit(repo, retry) == (first, False)
    assert await repo.get_booking(retry.booking_id) is None


async def test_ten_concurrent_commits_of_one_hold_make_one_booking(
    repo: SqlEventRepository, engine: AsyncEngine
) -> None:
    """Ten identical commits racing over the pool store one booking and all answer it."""
    event = await created(repo)
    booking = make_booking(event, ("S3", "S4"))
    answers = await asyncio.gather(*(commit(repo, booking) for _ in range(10)))
    assert {b for b, _ in answers} == {booking}
    assert sorted(new for _, new in answers) == [False] * 9 + [True]
    async with engine.connect() as conn:
        count = select(bookings.c.booking_id).where(bookings.c.hold_id == booking.hold_id)
        assert len((await conn.execute(count)).all()) == 1


async def test_overlapping_holds_racing_let_exactly_one_win(repo: SqlEventRepository) -> None:
    """Two holds sharing a seat commit at once: one wins, the other hears which seat is taken."""
    event = await created(repo)
    a, b = make_booking(event, ("S1", "S2")), make_booking(event, ("S3", "S2"))
    results = await asyncio.gather(commit(repo, a), commit(repo, b), return_exceptions=True)
    winners = [r for r in results if isinstance(r, tuple)]
    losers = [r for r in results if isinstance(r, SeatsUnavailable)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert losers[0].seat_ids == ("S2",)
    loser = b if winners[0][0] == a else a
    assert await repo.booking_by_hold(loser.hold_id) is None


async def test_no_seat_ever_has_two_active_bookings(
    repo: SqlEventRepository, engine: AsyncEngine
) -> None:
    """After a storm of overlapping commits, SQL shows each seat in one active booking at most."""
    event = await created(repo, [f"S{i}" for i in range(8)])
    storm = [make_booking(event, (f"S{i % 8}", f"S{(i * 3 + 1) % 8}")) for i in range(16)]
    await asyncio.gather(*(commit(repo, b) for b in storm), return_exceptions=True)
    async with engine.connect() as conn:
        active = (
            await conn.execute(
                select(bookings.c.booking_id, bookings.c.seat_ids).where(
                    bookings.c.event_id == event.event_id,
                    bookings.c.status == int(BookingStatus.CONFIRMED),
                )
            )
        ).all()
        rows = (
            await conn.execute(
                select(booked_seats.c.seat_id, booked_seats.c.booking_id).where(
                    booked_seats.c.event_id == event.event_id
                )
            )
        ).all()
    owners = [(seat, r.booking_id) for r in active for seat in r.seat_ids.split(",")]
    assert active
    assert len({seat for seat, _ in owners}) == len(owners)
    assert sorted(owners) == sorted((r.seat_id, r.booking_id) for r in rows)


async def test_settling_a_booked_hold_returns_its_booking(repo: SqlEventRepository) -> None:
    """Repair of a hold whose commit went through gets that booking back."""
    event = await created(repo)
    booking = make_booking(event, ("S1",))
    await commit(repo, booking)
    assert await repo.settle_unconfirmed(event.event_id, booking.hold_id, now_ms=3_000) == booking


async def test_a_hold_given_up_by_repair_can_no_longer_be_committed(
    repo: SqlEventRepository,
) -> None:
    """After repair settled a hold as unbooked, a late commit of it is HoldNotFound."""
    event = await created(repo)
    late = make_booking(event, ("S1",))
    assert await repo.settle_unconfirmed(event.event_id, late.hold_id, now_ms=3_000) is None
    assert await repo.settle_unconfirmed(event.event_id, late.hold_id, now_ms=4_000) is None
    with pytest.raises(HoldNotFound):
        await commit(repo, late)
    assert await repo.booking_by_hold(late.hold_id) is None
    other = make_booking(event, ("S1",))
    assert await commit(repo, other) == (other, True)


async def test_snapshot_apply_runs_with_booking_writers_fenced_out(
    repo: SqlEventRepository,
) -> None:
    """While a snapshot's apply runs, a commit of the same event waits before its claim."""
    event = await created(repo)
    booking = make_booking(event, ("S1",))
    in_apply, release = asyncio.Event(), asyncio.Event()
    applied: list[EventSnapshot] = []
    claimed: list[Booking] = []

    async def apply(snapshot: EventSnapshot) -> None:
        applied.append(snapshot)
        in_apply.set()
        await release.wait()

    async def claim() -> Booking:
        claimed.append(booking)
        return booking

    async with asyncio.timeout(10):
        loader = asyncio.create_task(repo.snapshot(event.event_id, apply=apply))
        await in_apply.wait()
        writer = asyncio.create_task(repo.commit_booking(event.event_id, booking.hold_id, claim))
        await asyncio.sleep(0.2)
        assert claimed == []
        release.set()
        assert await loader == applied[0]
        assert await writer == (booking, True)
    assert applied[0].booked_seat_ids == frozenset()


async def test_a_catalog_reload_sees_a_booking_committed_while_it_waited(
    repo: SqlEventRepository,
) -> None:
    """The catalog reloads an event (after Redis lost it) while a Confirm is between
    its claim and its commit: the reload waits for the commit and hands the hold
    store the seat as sold (read under the fence, not before it)."""
    from seat_inventory.service_layer.catalog import EventCatalog

    event = await created(repo)
    booking = make_booking(event, ("S1",))
    in_claim, release = asyncio.Event(), asyncio.Event()
    loaded: list[EventSnapshot] = []

    class Holds:
        async def load_event(self, snapshot: EventSnapshot) -> None:
            loaded.append(snapshot)

    async def claim() -> Booking:
        in_claim.set()
        await release.wait()
        return booking

    catalog = EventCatalog(repo, Holds())  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        writer = asyncio.create_task(repo.commit_booking(event.event_id, booking.hold_id, claim))
        await in_claim.wait()
        reload = asyncio.create_task(catalog.load(event.event_id))
        await asyncio.sleep(0.2)
        release.set()
        assert await writer == (booking, True)
        await reload
    assert [s.booked_seat_ids for s in loaded] == [frozenset({"S1"})]


async def test_a_cancel_keeps_new_bookings_of_its_event_out_until_redis_is_told(
    repo: SqlEventRepository,
) -> None:
    """While CancelBooking tells Redis which seats are free again (its apply), a
    commit of the same event waits before its claim: a new sale of a seat cannot
    slip in between and then be removed from Redis's sold seats by the cancel."""
    event = await created(repo)
    first = make_booking(event, ("S1",))
    assert await repo.commit_booking(event.event_id, first.hold_id, claim_of(first)) == (
        first,
        True,
    )
    second = make_booking(event, ("S1",))
    in_apply, release = asyncio.Event(), asyncio.Event()
    claimed: list[Booking] = []

    async def apply(cancelled: Booking) -> None:
        in_apply.set()
        await release.wait()

    async def claim() -> Booking:
        claimed.append(second)
        return second

    async with asyncio.timeout(10):
        cancel = asyncio.create_task(repo.cancel_booking(first.booking_id, 5_000, apply))
        await in_apply.wait()
        writer = asyncio.create_task(repo.commit_booking(event.event_id, second.hold_id, claim))
        await asyncio.sleep(0.2)
        assert claimed == []
        release.set()
        await cancel
        assert await writer == (second, True)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_a_cancelled_commit_keeps_the_fence_until_its_transaction_ends(
    repo: SqlEventRepository, database_url: str
) -> None:
    """SQLite runs the booking's transaction on a worker thread. A Confirm
    cancelled (its deadline) while that transaction waits for the write lock
    cannot stop the thread: the fence stays held until the transaction ends, so
    a reload (a snapshot with apply, fenced alone) sees the booking the thread
    committed, never SQL without it."""
    event = await created(repo)
    booking = make_booking(event, ("S1",))
    claimed = asyncio.Event()
    applied: list[EventSnapshot] = []

    async def claim() -> Booking:
        claimed.set()
        return booking

    async def apply(snapshot: EventSnapshot) -> None:
        applied.append(snapshot)

    blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock
        async with asyncio.timeout(10):
            writer = asyncio.create_task(
                repo.commit_booking(event.event_id, booking.hold_id, claim)
            )
            await claimed.wait()
            await asyncio.sleep(0.1)  # the thread is in BEGIN IMMEDIATE, waiting
            writer.cancel()
            loader = asyncio.create_task(repo.snapshot(event.event_id, apply=apply))
            await asyncio.sleep(0.3)
            assert not writer.done(), "the commit let go while its transaction ran"
            assert applied == [], "a reload ran while a booking's transaction was open"
            blocker.execute("ROLLBACK")
            with pytest.raises(asyncio.CancelledError):
                await writer
            await loader
    finally:
        blocker.close()
    assert applied[0].booked_seat_ids == frozenset({"S1"})
    assert await repo.booking_by_hold(booking.hold_id) == booking


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_commits_concurrent_bookings_together_each_failing_alone(
    repo: SqlEventRepository,
) -> None:
    """SQLite commits the bookings of concurrent Confirms in shared transactions,
    each in a savepoint: one that loses a seat, names a seat the event lacks
    (a bug) or repeats a hold fails alone; the rest are booked."""
    event = await created(repo, [f"S{i}" for i in range(40)])
    won = [make_booking(event, (f"S{i}",)) for i in range(10, 30)]
    first = make_booking(event, ("S1", "S2"))
    loser = make_booking(event, ("S2", "S3"))
    broken = make_booking(event, ("S4", "NOPE"))
    again = replace(first, booking_id="bk_again")
    results = await asyncio.gather(
        commit(repo, first),
        *(commit(repo, b) for b in won[:10]),
        commit(repo, loser),
        commit(repo, broken),
        commit(repo, again),
        *(commit(repo, b) for b in won[10:]),
        return_exceptions=True,
    )
    assert results[0] == (first, True)
    assert results[1:11] == [(b, True) for b in won[:10]]
    assert isinstance(results[11], SeatsUnavailable)
    assert results[11].seat_ids == ("S2",)
    assert isinstance(results[12], sa_exc.IntegrityError)
    assert results[13] == (first, False)  # the hold's booking, made in the same transaction
    assert results[14:] == [(b, True) for b in won[10:]]
    for booking in (first, *won):
        assert await repo.booking_by_hold(booking.hold_id) == booking
    for booking in (loser, broken):
        assert await repo.booking_by_hold(booking.hold_id) is None
    snapshot = await repo.snapshot(event.event_id)
    assert snapshot is not None
    assert snapshot.booked_seat_ids == {"S1", "S2", *(f"S{i}" for i in range(10, 30))}
    bookings = repo._sqlite_bookings
    assert bookings is not None
    assert 1 <= bookings.transactions < 24, "concurrent bookings were not committed together"


async def test_cancel_frees_the_seats_for_another_booking(repo: SqlEventRepository) -> None:
    """A cancelled booking keeps its seat list, frees its seats, and cancels only once."""
    event = await created(repo)
    first = make_booking(event, ("S1", "S2"))
    await commit(repo, first)
    freed: list[Booking] = []

    async def apply(booking: Booking) -> None:
        freed.append(booking)

    cancelled, now = await repo.cancel_booking(first.booking_id, 5_000, apply)
    assert now
    assert cancelled.status is BookingStatus.CANCELLED
    assert (cancelled.seat_ids, cancelled.cancelled_at_ms) == (("S1", "S2"), 5_000)
    assert freed == [cancelled]
    snapshot = await repo.snapshot(event.event_id)
    assert snapshot is not None
    assert snapshot.booked_seat_ids == frozenset()
    second = make_booking(event, ("S2", "S5"))
    assert await commit(repo, second) == (second, True)
    assert await repo.cancel_booking(first.booking_id, 9_000, apply) == (cancelled, False)
    assert freed[1].seat_ids == ("S1",)  # S2 is sold again: a retry must not free it


async def test_a_failed_apply_leaves_the_cancel_done_and_a_retry_heals_it(
    repo: SqlEventRepository,
) -> None:
    """SQL commits the cancel before apply; a retry runs apply again; the fence is released."""
    event = await created(repo)
    booking = make_booking(event, ("S1",))
    await commit(repo, booking)

    async def broken(_: Booking) -> None:
        raise BackendUnavailable("redis", "down")

    with pytest.raises(BackendUnavailable, match="redis"):
        await repo.cancel_booking(booking.booking_id, 5_000, broken)
    stored = await repo.get_booking(booking.booking_id)
    assert stored is not None
    assert stored.status is BookingStatus.CANCELLED
    healed: list[Booking] = []

    async def apply(b: Booking) -> None:
        healed.append(b)

    async with asyncio.timeout(10):  # a fence left held would block these forever
        assert await repo.cancel_booking(booking.booking_id, 6_000, apply) == (stored, False)
        assert healed == [stored]
        again = make_booking(event, ("S1",))
        assert await commit(repo, again) == (again, True)


async def test_cancel_of_an_unknown_booking_raises_not_found(repo: SqlEventRepository) -> None:
    """Cancelling a booking id that was never stored is BookingNotFound."""
    with pytest.raises(BookingNotFound):
        await repo.cancel_booking("bk_missing", 1, no_op)


async def test_booking_a_seat_the_event_lacks_is_a_plain_integrity_error(
    repo: SqlEventRepository,
) -> None:
    """A seat outside the seat map breaks a foreign key: a bug, surfaced as IntegrityError."""
    event = await created(repo)
    booking = make_booking(event, ("S1", "NOPE"))
    with pytest.raises(sa_exc.IntegrityError):
        await commit(repo, booking)
    assert await repo.get_booking(booking.booking_id) is None


def _unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return temp_sqlite_url(tmp_path / "missing-directory")
    return f"postgresql://postgres@127.0.0.1:{free_port()}/seatinv"


async def test_unreachable_database_answers_backend_unavailable(
    backend: str, tmp_path: Path
) -> None:
    """With nothing to connect to, ping, reads, writes and migrate raise BackendUnavailable,
    whose message (a caller's) names the kind of failure, not where the database is."""
    url = _unreachable_url(backend, tmp_path)
    engine = make_engine(url, connect_timeout_s=1.0)
    # PostgreSQL's driver names the address ('127.0.0.1', port); SQLite's the path.
    where = url.rsplit(":", 1)[-1].split("/")[0] if backend != "sqlite" else str(tmp_path)
    repo = SqlEventRepository(engine)
    event = make_event(["A1"])
    calls: list[Callable[[], Awaitable[object]]] = [
        repo.ping,
        lambda: repo.get_booking("bk_x"),
        lambda: repo.create_event(event),
        lambda: migrate(engine),
    ]
    try:
        async with asyncio.timeout(5):  # a guard against hanging, not a benchmark
            for call in calls:
                with pytest.raises(BackendUnavailable) as caught:
                    await call()
                assert str(caught.value).startswith("database is unavailable: ")
                assert where not in str(caught.value)
                assert caught.value.metadata == {"backend": "database"}
    finally:
        await engine.dispose()


async def test_a_server_that_never_answers_times_out_as_unavailable() -> None:
    """A PostgreSQL port that accepts but stays silent is BackendUnavailable after the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        engine = make_engine(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout_s=0.3)
        try:
            async with asyncio.timeout(5):
                with pytest.raises(BackendUnavailable, match="TimeoutError"):
                    await SqlEventRepository(engine).ping()
        finally:
            await engine.dispose()
