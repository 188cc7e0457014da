"""Confirm's transaction on PostgreSQL, straight on the pooled asyncpg connection.

Confirm is the service's hottest write. Through SQLAlchemy it took five round
trips (BEGIN, the fence's advisory lock, the booking row, its seat rows,
COMMIT), each a ``send()`` and a wake-up of PostgreSQL, plus SQLAlchemy's
execution path around each. Here it takes two: ``BEGIN`` and the fence's lock
in one simple-protocol message (before the Redis claim, which must run under
the fence), then one message that inserts the booking and its seats and
commits. On this two-core machine a third round trip cost a fifth of
Confirm's throughput, so the second message is worth its price: the protocol
that carries several statements in one message (simple query) carries no
bound parameters, so the values travel as SQL literals (``_literal``: every
text PostgreSQL can store, quoted in the one form whose meaning does not
depend on server settings) to statements prepared once per connection.

That message succeeds only when the booking and every seat went in; a booked
hold, a given-up hold or a sold seat makes one of its statements fail on a
constraint, which the transaction takes back to a savepoint set in the same
message, and the checked statement (prepared once per connection, bound
values) then finds out which case it was, as it always did.

The connection is checked out of SQLAlchemy's pool, which knows nothing of
the transaction opened behind its back: every way out of
``booking_transaction`` commits, rolls back, or invalidates the connection
(closing it: the server aborts the transaction and drops the lock), so the
pool never gets a connection back inside a transaction.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]  # ships no type information
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from ...domain.model import Booking
from . import _rows
from ._errors import UNAVAILABLE_SQLSTATES
from ._fence import FENCE_NAMESPACE
from .tables import booked_seats, bookings, given_up_holds

__all__ = ["NotInserted", "PgBooking", "booking_transaction"]

T = TypeVar("T")

# The fence's shared lock, exactly as _fence takes it (same function, same
# key). The event id goes into the SQL text only when it is made of the id
# rule's characters (no quote or backslash can get in); any other takes the
# lock through a bound parameter, one round trip more.
_LITERAL_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_LOCK = "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))"

_COLUMNS = [c.name for c in bookings.c]
_PARAM = {name: f"${i}" for i, name in enumerate(_COLUMNS, start=1)}
_CAST = {"status": "smallint", "confirmed_at_ms": "bigint", "cancelled_at_ms": "bigint"}


def _insert_booking_sql() -> str:
    """The booking row (unless its hold is booked already or was given up by
    repair) and, only if it went in, one row per seat in the order given;
    answers whether the booking went in and the seats it got.

    The caller sorts the seats, so two bookings sharing seats lock them in the
    same order and wait for each other instead of deadlocking. The seat rows'
    foreign key to the booking is checked at the end of the statement, where
    the new booking row is visible.
    """
    values = ", ".join(f"{_PARAM[c]}::{_CAST.get(c, 'text')}" for c in _COLUMNS)
    hold, event = _PARAM["hold_id"] + "::text", _PARAM["event_id"] + "::text"
    seats = f"${len(_COLUMNS) + 1}::text[]"
    return (
        f"WITH b AS (INSERT INTO {bookings.name} ({', '.join(_COLUMNS)})"  # noqa: S608
        f" SELECT {values}"
        f" WHERE NOT EXISTS (SELECT FROM {given_up_holds.name} WHERE hold_id = {hold})"
        " ON CONFLICT (hold_id) DO NOTHING RETURNING booking_id),"
        f" s AS (INSERT INTO {booked_seats.name} (event_id, seat_id, booking_id)"
        f" SELECT {event}, seat.id, b.booking_id"
        f" FROM b, unnest({seats}) WITH ORDINALITY AS seat(id, n) ORDER BY seat.n"
        " ON CONFLICT DO NOTHING RETURNING seat_id)"
        " SELECT EXISTS (SELECT FROM b) AS inserted,"
        " ARRAY(SELECT seat_id FROM s) AS booked"
    )


INSERT_BOOKING = _insert_booking_sql()
_SAVEPOINT = "booking"


def _literal(value: str | int | None) -> str:
    """``value`` as an SQL literal: NULL, a decimal integer, or an escape string.

    In ``E'...'`` a backslash starts an escape and ``''`` is a quote, whatever
    ``standard_conforming_strings`` says; with every backslash and quote
    doubled, the string means exactly ``value``. NUL cannot be stored in a
    text column, and it would end the query text early: refused.
    """
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(int(value))  # bool and int subclasses as plain integers
    if "\x00" in value:
        raise ValueError("NUL in a value")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# The message's two inserts, prepared once per connection (PREPARE in its first
# BEGIN's message): planned once, not per Confirm, and EXECUTE takes the values
# as literals. Prepared statements outlive transactions, rolled back or not,
# and go with the session; ``fairy.info`` (the pool's per-connection dict,
# cleared when the connection is replaced) remembers which connections have them.
_ROW_STATEMENT, _SEATS_STATEMENT = "seat_inventory_booking_row", "seat_inventory_booking_seats"
_PREPARED_KEY = "seat_inventory_booking_prepared"


def _prepare_sql() -> str:
    types = ", ".join(_CAST.get(c, "text") for c in _COLUMNS)
    params = ", ".join(_PARAM[c] for c in _COLUMNS)
    return (
        f"PREPARE {_ROW_STATEMENT} ({types}) AS"  # noqa: S608 - names from the schema
        f" INSERT INTO {bookings.name} ({', '.join(_COLUMNS)}) SELECT {params}"
        f" WHERE NOT EXISTS (SELECT FROM {given_up_holds.name}"
        f" WHERE hold_id = {_PARAM['hold_id']});"
        f" PREPARE {_SEATS_STATEMENT} (text, text[], text) AS"
        f" INSERT INTO {booked_seats.name} (event_id, seat_id, booking_id)"
        " SELECT $1, seat.id, $3 FROM unnest($2) WITH ORDINALITY AS seat(id, n)"
        " ORDER BY seat.n"
    )


PREPARE_BOOKING = _prepare_sql()


def booking_message(row: dict[str, str | int | None], seats: list[str]) -> str:
    """The booking's insert and COMMIT as one simple-protocol message (the
    statements ``PREPARE_BOOKING`` made).

    Each way the booking may not go in fails a statement, so COMMIT runs only
    when all of it did: a booked hold (the UNIQUE ``hold_id``), a given-up hold
    (no booking row, so the seat rows' foreign key fails), a sold seat (the
    seat rows' primary key). Seats go in sorted, like the checked statement's.
    """
    values = ", ".join(_literal(row[c]) for c in _COLUMNS)
    event, booking = _literal(row["event_id"]), _literal(row["booking_id"])
    array = "ARRAY[" + ", ".join(_literal(seat) for seat in seats) + "]::text[]"
    # Every value went through _literal (tested against PostgreSQL's own reading).
    return (
        f"SAVEPOINT {_SAVEPOINT};"
        f" EXECUTE {_ROW_STATEMENT}({values});"
        f" EXECUTE {_SEATS_STATEMENT}({event}, {array}, {booking});"
        " COMMIT"
    )


BOOKING_BY_HOLD = f"SELECT {', '.join(_COLUMNS)} FROM {bookings.name} WHERE hold_id = $1"  # noqa: S608


class NotInserted(Exception):
    """The booking did not go in: its hold is booked already, or repair gave it up."""


# The driver's own failures: misuse of a closed connection, or its protocol
# state broken (for one, a query sent as the server's news of a terminated
# session comes in). Either way the connection is lost to us.
_CLIENT_ERRORS = (asyncpg.InterfaceError, asyncpg.InternalClientError)


def _translate(exc: Exception) -> sa_exc.DBAPIError:
    """asyncpg's error as SQLAlchemy's, which ``database_errors`` sorts."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    cls: type[sa_exc.DBAPIError] = sa_exc.DBAPIError
    if isinstance(exc, _CLIENT_ERRORS) or sqlstate.startswith(UNAVAILABLE_SQLSTATES):
        cls = sa_exc.OperationalError
    elif sqlstate.startswith("23"):
        cls = sa_exc.IntegrityError
    return cls(None, None, exc)


class PgBooking:
    """The booking transaction's statements, on its pooled connection.

    A statement failing for want of the connection (lost, timed out, the
    server going away) invalidates it at once: a ROLLBACK could only wait for
    it too, and the server aborts the transaction of a closed connection.
    """

    def __init__(self, fairy: PoolProxiedConnection) -> None:
        self._fairy = fairy
        self._pg: asyncpg.Connection = fairy.driver_connection
        self.lost = False
        self.committed = False

    async def _db(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (OSError, TimeoutError):
            self._lose()
            raise
        except (asyncpg.PostgresError, *_CLIENT_ERRORS) as exc:
            error = _translate(exc)
            if isinstance(error, sa_exc.OperationalError):
                self._lose()
            raise error from exc

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self._fairy.invalidate()  # closes it: no await, nothing to cancel

    async def begin(self, event_id: str) -> None:
        """BEGIN and the event's fence, shared: one message when the id can be
        spelled in the SQL text (with the booking's statements prepared first
        on a connection that has not had them yet)."""
        prepare = "" if self._fairy.info.get(_PREPARED_KEY) else PREPARE_BOOKING + "; "
        try:
            await self._begin(prepare, event_id)
        except sa_exc.DBAPIError as exc:
            if not prepare or not isinstance(exc.orig, asyncpg.DuplicatePreparedStatementError):
                raise
            # This session has them already (nothing else ran: PREPARE came first).
            await self._begin("", event_id)
        self._fairy.info[_PREPARED_KEY] = True

    async def _begin(self, prepare: str, event_id: str) -> None:
        if _LITERAL_SAFE.fullmatch(event_id):
            lock = f"pg_advisory_xact_lock_shared({FENCE_NAMESPACE}, hashtext('{event_id}'))"
            await self._db(self._pg.execute(f"{prepare}BEGIN; SELECT {lock}"))
        else:
            if prepare:
                await self._db(self._pg.execute(PREPARE_BOOKING))
            await self._db(self._pg.execute("BEGIN"))
            await self._db(self._pg.execute(_LOCK, FENCE_NAMESPACE, event_id))

    async def book(self, booking: Booking) -> list[str]:
        """Insert the booking and its seats and, when all went in, commit, in
        one message; return the seats another active booking holds (nothing
        is committed then). Raises ``NotInserted`` when the booking did not go
        in. When it returns ``[]``, ``committed`` says whether COMMIT was sent.
        """
        row = _rows.booking_row(booking)
        seats = sorted(set(booking.seat_ids))
        try:
            message = booking_message(row, seats) if seats else None
        except ValueError:
            message = None  # the bound statement reports it the way it always did
        if message is not None:
            try:
                await self._db(self._pg.execute(message))
            except sa_exc.IntegrityError:
                # Not booked, nothing committed, fence still held: find out why.
                await self._db(self._pg.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}"))
            except sa_exc.DBAPIError as exc:
                if not isinstance(exc.orig, asyncpg.InvalidSQLStatementNameError):
                    raise  # the server's answer: not committed (or the connection is lost)
                # The statements are gone (DEALLOCATE ALL, a pooler): the checked
                # statement books this one, the next BEGIN prepares them again.
                self._fairy.info.pop(_PREPARED_KEY, None)
                await self._db(self._pg.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}"))
            except BaseException:
                # Cancelled with COMMIT sent and no answer yet: committed or
                # not, nobody can tell (repair will); the connection goes.
                self._lose()
                raise
            else:
                self.committed = True
                return []
        return await self._insert(booking, row, seats)

    async def _insert(
        self, booking: Booking, row: dict[str, object], seats: list[str]
    ) -> list[str]:
        """The checked statement: whether the booking went in, and its seats."""
        args = [row[c] for c in _COLUMNS]
        record = await self._db(self._pg.fetchrow(INSERT_BOOKING, *args, seats))
        if record is None or not record["inserted"]:
            raise NotInserted
        got = set(record["booked"])
        return [s for s in booking.seat_ids if s not in got]

    async def booking_by_hold(self, hold_id: str) -> Booking | None:
        record = await self._db(self._pg.fetchrow(BOOKING_BY_HOLD, hold_id))
        return None if record is None else _rows.booking_from(record)

    async def commit(self) -> None:
        if self.committed:
            return
        try:
            await self._db(self._pg.execute("COMMIT"))
        except BaseException:
            # Committed or not, nobody can tell what state the connection is in.
            self._lose()
            raise

    async def abandon(self) -> None:
        """Roll back; when that fails or is cancelled, invalidate the connection.

        Sent even when the BEGIN seems not to have happened: a BEGIN
        interrupted by a cancellation may still have opened the transaction
        (a ROLLBACK outside one is only a warning). The caller's exception is
        the one that propagates, unless the rollback itself was cancelled.
        """
        if self.lost or self._pg.is_closed():
            self._lose()
            return
        try:
            await self._pg.execute("ROLLBACK")
        except BaseException as exc:
            self._lose()
            if not isinstance(exc, Exception):
                raise


async def _checkout(engine: AsyncEngine) -> PoolProxiedConnection:
    """A pooled connection that is not known to be closed, failures raised as
    SQLAlchemy's (a raw checkout does not wrap the driver's errors the way
    ``engine.connect()`` does).

    A connection the server or the network closed while it sat in the pool is
    replaced here, before the booking's first statement would fail on it.
    """
    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
    pool = engine.pool
    replace = pool.size() if isinstance(pool, QueuePool) else 1
    while True:
        try:
            fairy = await engine.raw_connection()
        except (asyncpg.PostgresError, *_CLIENT_ERRORS) as exc:
            raise _translate(exc) from exc
        except dbapi_error as exc:
            raise sa_exc.DBAPIError.instance(
                None, None, exc, dbapi_error, dialect=engine.dialect
            ) from exc
        pg = fairy.driver_connection
        if replace == 0 or (pg is not None and not pg.is_closed()):
            return fairy  # (out of replacements: the first statement will say why)
        replace -= 1
        fairy.invalidate()  # reconnects when next checked out
        fairy.close()


@contextlib.asynccontextmanager
async def booking_transaction(engine: AsyncEngine, event_id: str) -> AsyncIterator[PgBooking]:
    """A transaction holding the event's fence (shared) on a pooled connection:
    committed when the block ends, rolled back when it raises.

    The connection is checked out raw: one hop into SQLAlchemy's greenlet
    instead of three, and checking it in or invalidating it needs no await,
    so no cancellation can leave a connection half returned.
    """
    fairy = await _checkout(engine)
    try:
        tx = PgBooking(fairy)
        try:
            await tx.begin(event_id)
            yield tx
        except BaseException:
            await tx.abandon()
            raise
        await tx.commit()
    finally:
        fairy.close()
