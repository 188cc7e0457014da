"""After the load: read the bookings back and count double bookings and lost
confirmations (both must be 0), through the API and, if given, straight from SQL."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc
from seatinventory.v1 import types_pb2

from .runner import open_channel
from .scenario import Scenario

__all__ = ["Verification", "verify"]


@dataclass
class Verification:
    confirmations: int = 0
    seats_sold_api: int = 0
    double_bookings: int = 0
    lost_confirmations: int = 0
    checked_sql: bool = False
    seats_sold_sql: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.double_bookings == 0 and self.lost_confirmations == 0


async def verify(scenario: Scenario, confirmed: dict[str, tuple[str, ...]]) -> Verification:
    v = Verification(confirmations=len(confirmed))
    per_seat = Counter(seat for seats in confirmed.values() for seat in seats)
    for seat, count in per_seat.items():
        if count > 1:
            v.double_bookings += count - 1
            v.problems.append(f"seat {seat} confirmed to {count} bookings")
    metadata = (("authorization", f"Bearer {scenario.token}"),) if scenario.token else ()
    async with open_channel(scenario) as channel:
        stub = pb_grpc.SeatInventoryStub(channel)
        reply = await stub.GetAvailability(
            pb.GetAvailabilityRequest(event_id=scenario.event_id), timeout=30, metadata=metadata
        )
    booked = {s.seat_id for s in reply.seats if s.status == types_pb2.SEAT_STATUS_BOOKED}
    v.seats_sold_api = len(booked)
    for booking_id, seats in confirmed.items():
        missing = [s for s in seats if s not in booked]
        if missing:
            v.lost_confirmations += 1
            v.problems.append(f"booking {booking_id}: seats {missing} not BOOKED in the API")
    if scenario.database_url:
        await _verify_sql(scenario, confirmed, v)
    return v


async def _verify_sql(
    scenario: Scenario, confirmed: dict[str, tuple[str, ...]], v: Verification
) -> None:
    from sqlalchemy import text

    from ..adapters.sql import make_engine

    engine = make_engine(scenario.database_url or "")
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT booking_id, seat_ids, status FROM bookings WHERE event_id = :e"),
                    {"e": scenario.event_id},
                )
            ).all()
            dup_rows = (
                await conn.execute(
                    text(
                        "SELECT seat_id FROM booked_seats WHERE event_id = :e "
                        "GROUP BY seat_id HAVING count(*) > 1"
                    ),
                    {"e": scenario.event_id},
                )
            ).all()
    finally:
        await engine.dispose()
    v.checked_sql = True
    active = {r.booking_id: r.seat_ids.split(",") for r in rows if r.status == 1}
    seats = Counter(seat for s in active.values() for seat in s)
    v.seats_sold_sql = len(seats)
    overlaps = [seat for seat, n in seats.items() if n > 1] + [r.seat_id for r in dup_rows]
    if overlaps:
        v.double_bookings += len(overlaps)
        v.problems.append(f"SQL: seats in two active bookings: {sorted(set(overlaps))[:10]}")
    for booking_id in confirmed:
        if booking_id not in active:
            v.lost_confirmations += 1
            v.problems.append(f"SQL: confirmed booking {booking_id} is not an active row")
