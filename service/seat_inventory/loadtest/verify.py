"""After the load: read the bookings back and count double bookings and lost
confirmations (both must be 0), through the API and, if given, straight from SQL.

A booking cancelled during the run (by an operator: the harness never cancels)
is neither lost nor part of a double sale with a later booking of its seats;
a seat counts as double-booked when two bookings of it were active at the
same time. Each seat is counted once, whichever check found it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc
from seatinventory.v1 import types_pb2

from .runner import Confirmation, open_channel
from .scenario import Scenario

__all__ = ["Verification", "active_overlaps", "verify"]

_ACTIVE, _CANCELLED = 1, 2  # domain BookingStatus, as stored
_FOREVER = 2**63


@dataclass
class Verification:
    confirmations: int = 0
    seats_sold_api: int = 0
    double_bookings: int = 0  # seats sold to two bookings active at once
    lost_confirmations: int = 0
    cancelled: int = 0  # confirmations cancelled since (not lost)
    wrong_answers: int = 0  # a Confirm answered with another hold's booking or other seats
    checked_sql: bool = False
    seats_sold_sql: int = 0
    # A run in which nothing was confirmed although users were to confirm tested nothing.
    nothing_to_check: bool = False
    # The load or the reading back failed (a load process died, the server or the
    # database could not be read): the counts above are not the whole truth.
    incomplete: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.double_bookings == 0
            and self.lost_confirmations == 0
            and self.wrong_answers == 0
            and not self.nothing_to_check
            and not self.incomplete
        )


# (booking id, seats, active from ms, active until ms)
Period = tuple[str, tuple[str, ...], int, int]


def active_overlaps(periods: Iterable[Period]) -> dict[str, list[str]]:
    """Seats held by two bookings whose active periods overlap, with those bookings."""
    by_seat: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for booking_id, seats, start, end in periods:
        for seat in seats:
            by_seat[seat].append((start, end, booking_id))
    doubled: dict[str, list[str]] = {}
    for seat, spans in by_seat.items():
        spans.sort()
        latest_end, latest_id = spans[0][1], spans[0][2]
        for start, end, booking_id in spans[1:]:
            if start < latest_end:
                doubled.setdefault(seat, [latest_id]).append(booking_id)
            if end > latest_end:
                latest_end, latest_id = end, booking_id
    return doubled


async def verify(
    scenario: Scenario,
    confirmed: Mapping[str, Confirmation],
    wrong_answers: Iterable[str] = (),
) -> Verification:
    v = Verification(confirmations=len(confirmed))
    for problem in wrong_answers:
        v.wrong_answers += 1
        v.problems.append(problem)
    holds_of: dict[str, list[str]] = defaultdict(list)
    for hold_id, c in confirmed.items():
        holds_of[c.booking_id].append(hold_id)
    for booking_id, holds in holds_of.items():
        if len(holds) > 1:
            v.wrong_answers += len(holds) - 1
            v.problems.append(f"booking {booking_id} was the answer for {len(holds)} holds")
    if not confirmed and scenario.p_confirm > 0:
        v.nothing_to_check = True
        v.problems.append(
            "nothing was confirmed, so nothing was verified: see the outcomes of Reserve "
            "and Confirm above"
        )
    doubled: dict[str, list[str]] = {}
    metadata = (("authorization", f"Bearer {scenario.token}"),) if scenario.token else ()
    async with open_channel(scenario) as channel:
        stub = pb_grpc.SeatInventoryStub(channel)
        reply = await stub.GetAvailability(
            pb.GetAvailabilityRequest(event_id=scenario.event_id), timeout=30, metadata=metadata
        )
        booked = {s.seat_id for s in reply.seats if s.status == types_pb2.SEAT_STATUS_BOOKED}
        v.seats_sold_api = len(booked)
        # Which confirmations need their booking read back (Confirm again: it
        # answers a hold's booking as it is now, cancelled or not): those whose
        # seats are not all BOOKED, and those sharing a seat with another.
        sharing = {s for s, n in _seat_counts(confirmed).items() if n > 1}
        periods: list[Period] = []
        for hold_id, c in confirmed.items():
            if set(c.seat_ids) <= booked and not sharing.intersection(c.seat_ids):
                periods.append((c.booking_id, c.seat_ids, c.confirmed_at_ms, _FOREVER))
                continue
            now = await _booking_now(stub, hold_id, c, metadata)
            if now is not None and now.status == types_pb2.BOOKING_STATUS_CANCELLED:
                v.cancelled += 1
                ended = now.cancelled_at.ToMilliseconds()
                periods.append((c.booking_id, c.seat_ids, c.confirmed_at_ms, ended))
                continue
            periods.append((c.booking_id, c.seat_ids, c.confirmed_at_ms, _FOREVER))
            missing = sorted(set(c.seat_ids) - booked)
            if missing:
                v.lost_confirmations += 1
                v.problems.append(f"booking {c.booking_id}: seats {missing} not BOOKED in the API")
    for seat, bookings in active_overlaps(periods).items():
        doubled[seat] = bookings
    if scenario.database_url:
        await _verify_sql(scenario, confirmed, v, doubled)
    v.double_bookings = len(doubled)
    for seat, bookings in sorted(doubled.items())[:20]:
        v.problems.append(f"seat {seat} sold to bookings active at once: {', '.join(bookings)}")
    return v


def _seat_counts(confirmed: Mapping[str, Confirmation]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for c in confirmed.values():
        for seat in c.seat_ids:
            counts[seat] += 1
    return counts


async def _booking_now(
    stub: pb_grpc.SeatInventoryAsyncStub,
    hold_id: str,
    c: Confirmation,
    metadata: tuple[tuple[str, str], ...],
) -> types_pb2.Booking | None:
    """The hold's booking as the server has it now, or None if it has none."""
    try:
        reply = await stub.Confirm(
            pb.ConfirmRequest(hold_id=hold_id, holder_id=c.holder_id),
            timeout=30,
            metadata=metadata,
        )
    except grpc.aio.AioRpcError as err:
        if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return None
        raise
    return reply.booking


async def _verify_sql(
    scenario: Scenario,
    confirmed: Mapping[str, Confirmation],
    v: Verification,
    doubled: dict[str, list[str]],
) -> None:
    from sqlalchemy import text

    from ..adapters.sql import make_engine

    engine = make_engine(scenario.database_url or "")
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT booking_id, hold_id, seat_ids, status, confirmed_at_ms, "
                        "cancelled_at_ms FROM bookings WHERE event_id = :e"
                    ),
                    {"e": scenario.event_id},
                )
            ).all()
    finally:
        await engine.dispose()
    v.checked_sql = True
    periods: list[Period] = []
    sold: set[str] = set()
    for r in rows:
        seats = tuple(r.seat_ids.split(","))
        if r.status == _ACTIVE:
            sold.update(seats)
        end = r.cancelled_at_ms if r.status == _CANCELLED and r.cancelled_at_ms else _FOREVER
        periods.append((r.booking_id, seats, r.confirmed_at_ms, end))
    v.seats_sold_sql = len(sold)
    for seat, bookings in active_overlaps(periods).items():
        doubled.setdefault(seat, bookings)
    by_id = {r.booking_id: r for r in rows}
    for hold_id, c in confirmed.items():
        row = by_id.get(c.booking_id)
        if row is None or row.hold_id != hold_id:
            v.lost_confirmations += 1
            v.problems.append(f"SQL: confirmed booking {c.booking_id} of hold {hold_id} is missing")
        elif row.status not in (_ACTIVE, _CANCELLED):
            v.lost_confirmations += 1
            v.problems.append(f"SQL: booking {c.booking_id} has status {row.status}")
