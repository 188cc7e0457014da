"""The real service layer (real Redis, real PostgreSQL) and a plain-Python model
of the seat inventory, driven side by side by Hypothesis: reserve, replay a
request_id, extend, release, confirm, cancel, let time pass (a FakeClock drives
the Lua scripts), sweep, and wipe Redis. After every step they must agree.

RELIABILITY_EXAMPLES sets the number of runs (default 20 x RELIABILITY_SCALE)."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from seat_inventory.adapters.redis.keys import EventKeys
from seat_inventory.bootstrap import App, build
from seat_inventory.config import Settings
from seat_inventory.domain.clock import FakeClock
from seat_inventory.domain.errors import (
    HoldNotFound,
    HoldNotOwned,
    InvalidArgument,
    InventoryError,
    SeatsUnavailable,
)
from seat_inventory.domain.model import Booking, BookingStatus, Hold, SeatSpec, SeatStatus
from tests.reliability.invariants import live_holds
from tests.reliability.loop_thread import LoopThread
from tests.reliability.report import REPORT, scaled
from tests.support.services import RedisProcess

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

T = TypeVar("T")

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", scaled(20)))
MINUTE = 60_000
SEATS = tuple(f"S{i}" for i in range(1, 7))
HOLDERS = ("alice", "bob")
# Every time in whole minutes: Redis still expires keys by its own clock (PX is
# exp - fake now), so a key always has at least a real minute left, far more
# than one run takes, and only the FakeClock decides what has lapsed.
TTLS = (1 * MINUTE, 5 * MINUTE, 15 * MINUTE)
ADVANCES = (1 * MINUTE, 2 * MINUTE, 5 * MINUTE, 15 * MINUTE, 60 * MINUTE)
LIFETIME = Settings().limits.max_hold_lifetime_ms

pick = st.integers(min_value=0, max_value=1_000_000)


@dataclass
class ModelHold:
    hold_id: str
    holder: str
    seats: tuple[str, ...]
    expires_at: int
    cap: int
    state: str = "held"  # held | released | booked | lost (Redis wiped)


@dataclass
class ModelBooking:
    booking_id: str
    hold_id: str
    seats: tuple[str, ...]
    status: BookingStatus = BookingStatus.CONFIRMED


class Model:
    """What the service should say, in plain Python."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.holds: dict[str, ModelHold] = {}
        self.bookings: dict[str, ModelBooking] = {}
        # (holder, request_id) -> (the hold answered, seats, ttl)
        self.requests: dict[tuple[str, str], tuple[Hold, tuple[str, ...], int]] = {}

    def live(self, hold: ModelHold) -> bool:
        return hold.state == "held" and hold.expires_at > self.now

    def live_holds(self) -> dict[str, frozenset[str]]:
        return {h.hold_id: frozenset(h.seats) for h in self.holds.values() if self.live(h)}

    def booked(self) -> dict[str, str]:
        return {
            seat: b.booking_id
            for b in self.bookings.values()
            if b.status is BookingStatus.CONFIRMED
            for seat in b.seats
        }

    def status(self, seat: str) -> SeatStatus:
        if seat in self.booked():
            return SeatStatus.BOOKED
        if any(seat in seats for seats in self.live_holds().values()):
            return SeatStatus.HELD
        return SeatStatus.AVAILABLE


class SeatMachine(RuleBasedStateMachine):
    def __init__(self, loop: LoopThread, app: App, clock: FakeClock) -> None:
        super().__init__()
        self.loop, self.app, self.clock = loop, app, clock
        self.event_id = f"model-{uuid.uuid4().hex[:10]}"
        self.keys = EventKeys(self.event_id)
        self.loop.run(app.admin.create_event(self.event_id, "model", [SeatSpec(s) for s in SEATS]))
        self.model = Model(clock.now_ms())
        self.requests = 0

    # --- plumbing ---------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T]) -> T | InventoryError:
        """The service's answer, or the error it raised for the caller."""

        async def answer() -> T | InventoryError:
            try:
                return await coro
            except InventoryError as error:
                return error

        REPORT.add("model steps")
        return self.loop.run(answer(), timeout_s=30)

    def pick_hold(self, n: int, *, live: bool = False) -> ModelHold:
        holds = [h for h in self.model.holds.values() if self.model.live(h) or not live]
        return holds[n % len(holds)]

    def has_live_hold(self) -> bool:
        return bool(self.model.live_holds())

    # --- rules ------------------------------------------------------------

    @rule(
        holder=st.sampled_from(HOLDERS),
        seats=st.lists(st.sampled_from(SEATS), min_size=1, max_size=3, unique=True),
        ttl=st.sampled_from(TTLS),
        keyed=st.booleans(),
    )
    def reserve(self, holder: str, seats: list[str], ttl: int, keyed: bool) -> None:
        self.requests += 1
        request_id = f"req-{self.requests}" if keyed else ""
        taken = {s for s in seats if self.model.status(s) is not SeatStatus.AVAILABLE}
        got = self.call(self.app.inventory.reserve(self.event_id, seats, holder, ttl, request_id))
        if taken:
            assert isinstance(got, SeatsUnavailable), got
            assert set(got.seat_ids) == taken
            return
        assert isinstance(got, Hold), got
        assert got.expires_at_ms == self.model.now + ttl
        self.model.holds[got.hold_id] = ModelHold(
            got.hold_id, holder, tuple(seats), got.expires_at_ms, self.model.now + LIFETIME
        )
        if keyed:
            self.model.requests[(holder, request_id)] = (got, tuple(seats), ttl)

    @precondition(lambda self: self.model.requests)
    @rule(n=pick, same=st.booleans())
    def replay(self, n: int, same: bool) -> None:
        """The same request_id again: the first answer, whatever happened since;
        another payload under it is INVALID_ARGUMENT."""
        requests = list(self.model.requests.items())
        (holder, request_id), (first, seats, ttl) = requests[n % len(requests)]
        other_ttl = ttl if same else next(t for t in TTLS if t != ttl)
        got = self.call(
            self.app.inventory.reserve(
                self.event_id, list(reversed(seats)), holder, other_ttl, request_id
            )
        )
        if same:
            assert isinstance(got, Hold), got
            assert (got.hold_id, got.expires_at_ms) == (first.hold_id, first.expires_at_ms)
        else:
            assert isinstance(got, InvalidArgument), got

    @precondition(lambda self: self.model.holds)
    @rule(n=pick, ttl=st.sampled_from(TTLS))
    def extend(self, n: int, ttl: int) -> None:
        hold = self.pick_hold(n)
        got = self.call(self.app.inventory.extend(hold.hold_id, hold.holder, ttl))
        if self.model.live(hold):
            assert isinstance(got, Hold), got
            hold.expires_at = min(self.model.now + ttl, hold.cap)
            assert got.expires_at_ms == hold.expires_at
        else:
            assert isinstance(got, HoldNotFound), got

    @precondition(lambda self: self.model.holds)
    @rule(n=pick)
    def release(self, n: int) -> None:
        hold = self.pick_hold(n)
        got = self.call(self.app.inventory.release(hold.hold_id, hold.holder))
        if self.model.live(hold):
            assert got is True, got
            hold.state = "released"
        elif hold.state == "released":
            assert got is False, got
        else:
            assert isinstance(got, HoldNotFound), got

    @precondition(lambda self: self.model.holds)
    @rule(n=pick)
    def confirm(self, n: int) -> None:
        hold = self.pick_hold(n)
        got = self.call(self.app.bookings.confirm(hold.hold_id, hold.holder, "order-1"))
        if self.model.live(hold):
            assert isinstance(got, Booking), got
            assert (got.hold_id, got.seat_ids, got.holder_id) == (
                hold.hold_id,
                hold.seats,
                hold.holder,
            )
            assert got.status is BookingStatus.CONFIRMED
            hold.state = "booked"
            self.model.bookings[got.booking_id] = ModelBooking(
                got.booking_id, hold.hold_id, hold.seats
            )
        elif hold.state == "booked":
            assert isinstance(got, Booking), got
            expected = next(b for b in self.model.bookings.values() if b.hold_id == hold.hold_id)
            assert (got.booking_id, got.status) == (expected.booking_id, expected.status)
        else:
            assert isinstance(got, HoldNotFound), got

    @precondition(lambda self: self.model.bookings)
    @rule(n=pick)
    def cancel(self, n: int) -> None:
        bookings = list(self.model.bookings.values())
        booking = bookings[n % len(bookings)]
        got = self.call(self.app.bookings.cancel(booking.booking_id))
        assert isinstance(got, Booking), got
        assert got.status is BookingStatus.CANCELLED
        booking.status = BookingStatus.CANCELLED

    @precondition(has_live_hold)
    @rule(n=pick, confirm=st.booleans())
    def someone_else(self, n: int, confirm: bool) -> None:
        """Another holder may neither release nor confirm a live hold."""
        hold = self.pick_hold(n, live=True)
        thief = next(h for h in HOLDERS if h != hold.holder)
        if confirm:
            got: object = self.call(self.app.bookings.confirm(hold.hold_id, thief))
        else:
            got = self.call(self.app.inventory.release(hold.hold_id, thief))
        assert isinstance(got, HoldNotOwned), got

    @rule(ms=st.sampled_from(ADVANCES))
    def time_passes(self, ms: int) -> None:
        self.clock.advance(ms)
        self.model.now += ms

    @rule()
    def sweep(self) -> None:
        """The sweeper expires every hold whose time is up: nothing due is left."""
        self.loop.run(self.app.sweeper.sweep_once())
        REPORT.add("model steps")
        due = self.loop.run(
            self.app.redis.zrangebyscore(self.keys.deadlines, "-inf", self.model.now)
        )
        assert due == [], f"holds due but not swept: {due}"

    @rule(now=st.integers(0, 3))
    def wipe(self, now: int) -> None:
        """Redis loses everything (one time in four, so that runs also get deep
        without it): live holds and tombstones are gone, bookings stay."""
        if now:
            return
        self.loop.run(self.app.redis.flushall())
        REPORT.add("faults injected")
        for hold in self.model.holds.values():
            if hold.state in ("held", "released"):
                hold.state = "lost"
        self.model.requests.clear()

    # --- after every step -------------------------------------------------

    @invariant()
    def service_agrees_with_the_model(self) -> None:
        """Availability as the model says (when the event is loaded: after a wipe
        the next rule, not this check, is the first call to meet the empty Redis);
        Redis's live holds are the model's and never share a seat; SQL's sold seats
        are the model's and no seat is in two confirmed bookings."""
        loaded = self.loop.run(self.app.redis.exists(self.keys.seats))
        if loaded:
            availability = self.call(self.app.inventory.availability(self.event_id))
            assert not isinstance(availability, InventoryError), availability
            assert dict(availability.seats) == {s: self.model.status(s) for s in SEATS}
        held = self.loop.run(live_holds(self.app.redis, self.event_id, self.model.now))
        assert held == self.model.live_holds()
        per_seat = Counter(seat for seats in held.values() for seat in seats)
        assert max(per_seat.values(), default=0) <= 1, per_seat
        sold, confirmed = self.loop.run(self.sql())
        assert sold == self.model.booked()
        per_seat = Counter(seat for seats in confirmed for seat in seats)
        assert max(per_seat.values(), default=0) <= 1, per_seat

    async def sql(self) -> tuple[dict[str, str], list[list[str]]]:
        async with self.app.engine.connect() as conn:
            sold = (
                await conn.execute(
                    text("SELECT seat_id, booking_id FROM booked_seats WHERE event_id = :e"),
                    {"e": self.event_id},
                )
            ).all()
            confirmed = (
                await conn.execute(
                    text("SELECT seat_ids FROM bookings WHERE event_id = :e AND status = 1"),
                    {"e": self.event_id},
                )
            ).all()
        return {r.seat_id: r.booking_id for r in sold}, [r.seat_ids.split(",") for r in confirmed]


def test_service_agrees_with_the_model(own_redis: RedisProcess, postgres_url: str) -> None:
    """Through any sequence of reserve, replay, extend, release, confirm, cancel,
    time passing, sweeps and Redis wipes, the service's availability, live holds
    and bookings are the model's, and no seat has two holders or two bookings."""
    with LoopThread("model") as loop:
        clock = FakeClock()
        app = loop.run(
            build(Settings(redis_url=own_redis.url, database_url=postgres_url), clock=clock)
        )

        class Bound(SeatMachine):
            def __init__(self) -> None:
                super().__init__(loop, app, clock)

        try:
            run_state_machine_as_test(
                Bound,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=30,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=False,
                ),
            )
        finally:
            loop.run(app.close())
