"""The invariants every reliability test ends with, read directly from Redis and
SQL (bypassing the service) and through the API:

- no seat is in two live holds, and no seat is both sold and held;
- no seat has two active bookings (SQL);
- every seat SQL has sold is BOOKED in Redis, and Redis sells nothing SQL did not;
- no confirmed booking is lost: every Confirm that answered OK has its row;
- and, while the load runs, no seat SQL has sold is ever AVAILABLE (``SoldSeatWatch``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import asyncpg
import redis.asyncio as aioredis
from seatinventory.v1 import seat_inventory_pb2, types_pb2

from seat_inventory.adapters.redis.keys import EventKeys
from tests.reliability.conftest import Client
from tests.reliability.report import REPORT
from tests.reliability.workload import LoadStats, invoke
from tests.support.server_process import Ledger

__all__ = ["Findings", "SoldSeatWatch", "check_invariants", "live_holds", "settle"]

BOOKED = types_pb2.SEAT_STATUS_BOOKED
AVAILABLE = types_pb2.SEAT_STATUS_AVAILABLE


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # booking ids a Confirm answered, not in SQL

    def report(self) -> None:
        REPORT.add("invariant violations", len(self.violations))
        REPORT.add("bookings lost", len(self.lost))

    def assert_clean(self) -> None:
        self.report()
        assert self.lost == [], f"confirmed bookings missing from SQL: {self.lost}"
        assert self.violations == [], "\n".join(self.violations)


async def _holds(redis: aioredis.Redis, event_id: str) -> dict[str, dict[str, str]]:
    keys = EventKeys(event_id)
    found: dict[str, dict[str, str]] = {}
    async for key in redis.scan_iter(match=keys.hold("*"), count=500):
        fields = cast(dict[str, str], await redis.hgetall(key))  # decode_responses
        if fields:
            found[str(key).removeprefix(keys.hold(""))] = fields
    return found


async def live_holds(
    redis: aioredis.Redis, event_id: str, now_ms: int
) -> dict[str, frozenset[str]]:
    """Hold id -> seats of every hold that still takes its seats at ``now_ms``:
    held and not yet lapsed, or confirming (pinned)."""
    return {
        hold: frozenset(fields["seats"].split(","))
        for hold, fields in (await _holds(redis, event_id)).items()
        if fields.get("state") == "confirming"
        or (fields.get("state") == "held" and int(fields["expires_at"]) > now_ms)
    }


async def confirming_holds(redis_url: str, event_id: str) -> list[str]:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        holds = await _holds(redis, event_id)
    finally:
        await redis.aclose()
    return [h for h, fields in holds.items() if fields.get("state") == "confirming"]


async def settle(redis_url: str, event_id: str, timeout_s: float = 30.0) -> None:
    """Until no hold of the event is confirming (the sweeper repaired them all)."""
    deadline = time.monotonic() + timeout_s
    while pending := await confirming_holds(redis_url, event_id):
        assert time.monotonic() < deadline, f"holds still confirming after {timeout_s}s: {pending}"
        await asyncio.sleep(0.1)


async def _redis_findings(
    redis_url: str, event_id: str, seats: list[str], out: Findings
) -> set[str]:
    """Checks the live holds; returns the sold set."""
    keys = EventKeys(event_id)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        seconds, micros = await redis.time()
        now = seconds * 1000 + micros // 1000
        live = await live_holds(redis, event_id, now)
        sold = cast(set[str], await redis.smembers(keys.sold))
        values = cast(list[str | None], await redis.mget([keys.seat(s) for s in seats]))
    finally:
        await redis.aclose()
    per_seat = Counter(seat for held in live.values() for seat in held)
    out.violations += [f"seat {s} is in {n} live holds" for s, n in per_seat.items() if n > 1]
    out.violations += [f"seat {s} is sold and in a live hold" for s in per_seat.keys() & sold]
    for seat, value in zip(seats, values, strict=True):
        if value is None:
            continue
        owner, _, expires = value.partition("|")
        if (expires == "0" or int(expires) > now) and seat not in live.get(owner, ()):
            out.violations += [f"seat {seat} is taken by {owner}, which is not a live hold of it"]
    out.violations += await _held_index_findings(redis_url, event_id, seats)
    return sold


async def _held_index_findings(redis_url: str, event_id: str, seats: list[str]) -> list[str]:
    """The held-seats index that snapshots read says what the seat keys say: a
    seat is in it with a later score exactly when its seat key is live, with
    inf exactly when pinned. Read in one MULTI, so no key lapses in between."""
    keys = EventKeys(event_id)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with redis.pipeline(transaction=True) as tx:
            tx.time()
            tx.zrange(f"{keys.prefix}:held", 0, -1, withscores=True)
            tx.mget([keys.seat(s) for s in seats])
            (seconds, micros), index, values = await tx.execute()
    finally:
        await redis.aclose()
    now = int(seconds) * 1000 + int(micros) // 1000
    scores = {seat: score for seat, score in index}
    found = []
    for seat, value in zip(seats, values, strict=True):
        expires = int(value.partition("|")[2]) if value is not None else None
        by_key = expires is not None and (expires == 0 or expires > now)
        score = scores.get(seat)
        by_index = score is not None and score > now
        if by_key != by_index or (by_key and (expires == 0) != (score == float("inf"))):
            found.append(f"seat {seat}: seat key {value!r}, held index {score!r} (now {now})")
    return found


async def check_invariants(
    ledger: Ledger,
    client: Client,
    event_id: str,
    stats: LoadStats | None = None,
    *,
    redis_url: str | None = None,
) -> Findings:
    """Every invariant, once the system is quiet (call ``settle`` first)."""
    out = Findings()
    try:
        await ledger.assert_no_double_sale()
    except AssertionError as exc:
        out.violations.append(f"SQL: {exc}")
    statuses = await client.statuses(event_id)
    seats = sorted(statuses)
    sold = await _redis_findings(redis_url or ledger.redis_url, event_id, seats, out)
    booked = await ledger.booked_seats(event_id)
    for seat in sorted(booked):
        if statuses.get(seat) != BOOKED or seat not in sold:
            shown = types_pb2.SeatStatus.Name(statuses.get(seat, 0))  # type: ignore[arg-type]
            where = "in" if seat in sold else "not in"
            out.violations.append(f"seat {seat} is sold in SQL but {shown} ({where} Redis's sold)")
    for seat in sorted(sold - booked.keys()):
        out.violations.append(f"seat {seat} is sold in Redis but not in SQL")
    if stats is not None:
        rows = {row["booking_id"]: row for row in await ledger.bookings(event_id)}
        for booking_id, (hold_id, seat_ids) in sorted(stats.confirmed.items()):
            row = rows.get(booking_id)
            if (
                row is None
                or row["hold_id"] != hold_id
                or tuple(row["seat_ids"].split(",")) != seat_ids
            ):
                out.lost.append(booking_id)
            elif row["status"] != 1 and booking_id not in stats.cancelled | stats.maybe_cancelled:
                out.violations.append(f"booking {booking_id} is cancelled; nobody cancelled it")
            elif row["status"] == 1 and booking_id in stats.cancelled:
                out.violations.append(f"booking {booking_id} was cancelled (OK) but is confirmed")
        REPORT.add("confirmed bookings verified", len(stats.confirmed))
    return out


class SoldSeatWatch:
    """While a load runs: a seat SQL has sold is never AVAILABLE in Redis.

    Each look reads SQL's sold seats (t1), then availability (t2), then, for a
    seat AVAILABLE at t2 that was sold at t1, whether its booking is still
    confirmed (t3): a cancellation is final, so confirmed at t3 means sold
    throughout, and AVAILABLE at t2 was a window in which it could be sold twice."""

    def __init__(self, ledger: Ledger, client: Client, event_id: str, interval_s: float = 0.1):
        self.ledger, self.client, self.event_id = ledger, client, event_id
        self.interval_s = interval_s
        self.violations: list[str] = []
        self.looks = 0
        self.tries: list[str] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        request = seat_inventory_pb2.GetAvailabilityRequest(event_id=self.event_id)
        conn = await asyncpg.connect(self.ledger.database_url, timeout=10)
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1",
                    self.event_id,
                    timeout=10,
                )
                call = await invoke(
                    "GetAvailability", self.client.inventory.GetAvailability, request, 2.0
                )
                if call.ok:
                    self.looks += 1
                    available = {s.seat_id for s in call.reply.seats if s.status == AVAILABLE}
                    suspects = {r["seat_id"]: r["booking_id"] for r in rows}
                    suspects = {seat: b for seat, b in suspects.items() if seat in available}
                    if suspects:
                        still = await conn.fetch(
                            "SELECT booking_id FROM bookings WHERE booking_id = ANY($1) "
                            "AND status = 1",
                            list(suspects.values()),
                            timeout=10,
                        )
                        confirmed = {r["booking_id"] for r in still}
                        self.violations += [
                            f"seat {seat} AVAILABLE while booking {booking} had it sold"
                            for seat, booking in sorted(suspects.items())
                            if booking in confirmed
                        ]
                await asyncio.sleep(self.interval_s)
        finally:
            await conn.close()

    async def stop(self) -> list[str]:
        self._stop.set()
        async with asyncio.timeout(30):
            await self._task
        return self.violations
