"""Many clients at once over gRPC on real Redis and PostgreSQL: every call is
recorded as the client saw it, and each seat's history must be linearizable
against the single-seat model of tools/history_check.py."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2, types_pb2

from tests.e2e.conftest import Running
from tests.e2e.helpers import ttl
from tests.reliability.conftest import Client
from tests.reliability.invariants import check_invariants, settle
from tests.reliability.report import REPORT, scaled
from tests.reliability.workload import Call, LoadStats, invoke, retry_lost_cancels
from tests.support.server_process import Ledger
from tests.support.services import RedisProcess
from tools.history_check import Kind, Operation, Result, check, dump_jsonl

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

ServeInProcess = Callable[..., Awaitable[tuple[Running, Client]]]

CLIENTS = 50
SEATS = [f"A-{i}" for i in range(1, 16)]
OPERATIONS = scaled(1500)
DEADLINE_S = 5.0
SEEN = {
    types_pb2.SEAT_STATUS_AVAILABLE: "available",
    types_pb2.SEAT_STATUS_HELD: "held",
    types_pb2.SEAT_STATUS_BOOKED: "booked",
}
RESULTS = {
    ("FAILED_PRECONDITION", "SEATS_UNAVAILABLE"): Result.UNAVAILABLE,
    ("FAILED_PRECONDITION", "HOLD_CONFIRMING"): Result.CONFIRMING,
    ("NOT_FOUND", "HOLD_NOT_FOUND"): Result.NOT_FOUND,
    ("NOT_FOUND", "BOOKING_NOT_FOUND"): Result.NOT_FOUND,
}


def result_of(call: Call, ok: str) -> str:
    if call.ok:
        return ok
    if call.unknown:
        return Result.UNKNOWN
    return RESULTS.get((call.status, call.reason), f"error:{call.status}:{call.reason}")


@dataclass
class Recorder:
    """The history, and what the clients were told about their holds and bookings."""

    event_id: str
    ops: list[Operation] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    confirmed: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    maybe_cancelled: set[str] = field(default_factory=set)
    budget: int = 0

    def take(self) -> bool:
        self.budget -= 1
        return self.budget >= 0

    def add(self, call: Call, kind: Kind, result: str, **fields: object) -> None:
        self.calls.append(call)
        complete = None if result == Result.UNKNOWN else call.complete_ms
        self.ops.append(
            Operation(
                kind,
                call.invoke_ms,
                complete,
                str(result),
                op_id=str(len(self.ops)),
                **fields,  # type: ignore[arg-type]
            )
        )


class Actor:
    """One client: reserves, then confirms, releases or walks away; cancels its
    bookings soon after, so seats go round; retries finished holds now and then."""

    def __init__(self, name: str, seed: int, client: Client, rec: Recorder) -> None:
        self.name, self.rng, self.client, self.rec = name, random.Random(seed), client, rec
        self.live: list[tuple[str, tuple[str, ...]]] = []
        self.finished: list[tuple[str, tuple[str, ...]]] = []
        self.bookings: list[tuple[str, str, tuple[str, ...]]] = []

    async def run(self) -> None:
        rng = self.rng
        while self.rec.take():
            roll = rng.random()
            pause = rng.expovariate(1 / 0.05)
            if roll < 0.15:
                await self.read()
            elif roll < 0.2 and self.finished:  # a late retry: same answer, or a lapse
                hold = self.finished[rng.randrange(len(self.finished))]
                await (self.confirm(hold) if rng.random() < 0.5 else self.release(hold))
            elif roll < 0.45 and self.bookings:
                await self.cancel()
            elif self.live:
                hold = self.live.pop()
                await (self.confirm(hold) if rng.random() < 0.8 else self.release(hold))
            elif await self.reserve():
                if rng.random() < 0.1:
                    pause = rng.uniform(0.5, 2.5)  # walk away: the hold may lapse meanwhile
            else:
                pause = rng.expovariate(1 / 0.2)  # lost: try again a little later
            await asyncio.sleep(pause)

    async def read(self) -> None:
        req = seat_inventory_pb2.GetAvailabilityRequest(event_id=self.rec.event_id)
        call = await invoke(
            "GetAvailability", self.client.inventory.GetAvailability, req, DEADLINE_S
        )
        seen = tuple((s.seat_id, SEEN[s.status]) for s in call.reply.seats) if call.ok else ()
        self.rec.add(call, Kind.READ, result_of(call, Result.OK), observed=seen, seats=tuple(SEATS))

    async def reserve(self) -> bool:
        rng = self.rng
        seats = tuple(rng.sample(SEATS, k=rng.choice([1, 1, 1, 2, 3])))
        ttl_ms = rng.choice([1000, 1000, 2000])
        req = seat_inventory_pb2.ReserveRequest(
            event_id=self.rec.event_id, seat_ids=seats, holder_id=self.name, ttl=ttl(ttl_ms / 1000)
        )
        call = await invoke("Reserve", self.client.inventory.Reserve, req, DEADLINE_S)
        hold_id = call.reply.hold.hold_id if call.ok else f"?{self.name}-{len(self.rec.ops)}"
        taken = call.metadata.get("seat_ids", "") if call.reason == "SEATS_UNAVAILABLE" else ""
        self.rec.add(
            call,
            Kind.RESERVE,
            result_of(call, Result.OK),
            hold=hold_id,
            seats=seats,
            holder=self.name,
            ttl_ms=ttl_ms,
            expires_at_ms=call.reply.hold.expires_at.ToMilliseconds() if call.ok else None,
            taken=tuple(s for s in taken.split(",") if s),
        )
        if call.ok:
            self.live.append((hold_id, seats))
        return call.ok

    async def confirm(self, hold: tuple[str, tuple[str, ...]]) -> None:
        hold_id, seats = hold
        req = seat_inventory_pb2.ConfirmRequest(hold_id=hold_id, holder_id=self.name)
        call = await invoke("Confirm", self.client.inventory.Confirm, req, DEADLINE_S)
        result = Result.OK
        if call.ok:
            booking = call.reply.booking
            self.rec.confirmed[booking.booking_id] = (hold_id, tuple(booking.seat_ids))
            if booking.status == types_pb2.BOOKING_STATUS_CANCELLED:
                result = Result.CANCELLED
            elif (booking.booking_id, hold_id, seats) not in self.bookings:
                self.bookings.append((booking.booking_id, hold_id, seats))
        self.rec.add(
            call, Kind.CONFIRM, result_of(call, result), hold=hold_id, seats=seats, holder=self.name
        )
        if hold not in self.finished:
            self.finished.append(hold)

    async def release(self, hold: tuple[str, tuple[str, ...]]) -> None:
        hold_id, seats = hold
        req = seat_inventory_pb2.ReleaseRequest(hold_id=hold_id, holder_id=self.name)
        call = await invoke("Release", self.client.inventory.Release, req, DEADLINE_S)
        ok = Result.OK if call.ok and call.reply.released else Result.ALREADY
        self.rec.add(
            call, Kind.RELEASE, result_of(call, ok), hold=hold_id, seats=seats, holder=self.name
        )
        if hold not in self.finished:
            self.finished.append(hold)

    async def cancel(self) -> None:
        booking_id, hold_id, seats = self.bookings.pop(self.rng.randrange(len(self.bookings)))
        req = inventory_admin_pb2.CancelBookingRequest(booking_id=booking_id)
        call = await invoke("CancelBooking", self.client.admin.CancelBooking, req, DEADLINE_S)
        if call.ok:
            self.rec.cancelled.add(booking_id)
        elif call.unknown:
            self.rec.maybe_cancelled.add(booking_id)
        self.rec.add(call, Kind.CANCEL, result_of(call, Result.OK), hold=hold_id, seats=seats)


def keep_history(ops: list[Operation], path: Path) -> None:
    """Write the history; also into $RELIABILITY_ARTIFACTS when set (for CI to keep)."""
    dump_jsonl(ops, path)
    if keep := os.environ.get("RELIABILITY_ARTIFACTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


async def test_concurrent_history_is_linearizable(
    own_redis: RedisProcess, serve_in_process: ServeInProcess, postgres_url: str, tmp_path: Path
) -> None:
    """50 clients reserving, confirming, releasing, cancelling and reading 15 seats
    with 1-2 s holds (lapsing, swept) leave a history that is linearizable on
    every seat; SQL sold no seat twice and holds every booking a Confirm answered."""
    _, client = await serve_in_process(
        redis_url=own_redis.url, sweep_interval_s=0.1, confirm_window_s=1.0
    )
    ledger = Ledger(postgres_url, own_redis.url)
    reply = await client.admin.CreateEvent(
        inventory_admin_pb2.CreateEventRequest(
            event_id=f"hist-{random.getrandbits(40):x}",
            name="history",
            seats=[types_pb2.SeatSpec(seat_id=s) for s in SEATS],
        ),
        timeout=30,
    )
    rec = Recorder(reply.event.event_id, budget=OPERATIONS)
    seed = int(os.environ.get("RELIABILITY_SEED", random.randrange(1 << 30)))
    print(f"\nRELIABILITY_SEED={seed}")
    await asyncio.gather(
        *(Actor(f"client-{i}", seed + i, client, rec).run() for i in range(CLIENTS))
    )
    final = await invoke(
        "GetAvailability",
        client.inventory.GetAvailability,
        seat_inventory_pb2.GetAvailabilityRequest(event_id=rec.event_id),
        DEADLINE_S,
    )
    assert final.ok, final.describe()
    seen = tuple((s.seat_id, SEEN[s.status]) for s in final.reply.seats)
    rec.add(final, Kind.READ, Result.OK, observed=seen, seats=tuple(SEATS))

    history = tmp_path / "history.jsonl"
    await asyncio.to_thread(keep_history, rec.ops, history)
    verdicts = await asyncio.to_thread(check, rec.ops, skew_ms=2)
    unknown = sum(1 for op in rec.ops if op.complete_ms is None)
    REPORT.add("operations attempted", len(rec.ops))
    REPORT.add("outcomes unknown (timeout/UNAVAILABLE)", unknown)
    REPORT.add("histories checked (seats)", len(verdicts))
    bad = [v for v in verdicts if not v.linearizable]
    REPORT.add("histories not linearizable", len(bad))
    mix = Counter(f"{op.kind} {op.result}" for op in rec.ops)
    print(
        f"{len(rec.ops)} calls ({unknown} unknown outcomes): "
        + ", ".join(f"{n} {k}" for k, n in sorted(mix.items()))
        + f"; states searched per seat: {max(v.states for v in verdicts)} max"
    )
    assert not bad, (
        "\n".join(v.line() for v in bad)
        + f"\nhistory: {history} (python -m tools.history_check {history})"
    )

    unexpected = [
        c.describe()
        for c in rec.calls
        if not c.unknown and c.status not in ("OK", "FAILED_PRECONDITION", "NOT_FOUND")
    ]
    assert unexpected == []
    stats = LoadStats(
        confirmed=rec.confirmed, cancelled=rec.cancelled, maybe_cancelled=rec.maybe_cancelled
    )
    await retry_lost_cancels(client, stats)
    await settle(own_redis.url, rec.event_id)
    (await check_invariants(ledger, client, rec.event_id, stats)).assert_clean()
