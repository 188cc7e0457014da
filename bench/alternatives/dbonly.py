"""(b) The database-only design most teams would pick: one row per seat with a
``held_until`` column; a Reserve claims its rows with SELECT ... FOR UPDATE
SKIP LOCKED and marks them held, in one PostgreSQL transaction (asyncpg; the
bench gives it a pool of 10, which served it better here than the service's
15: 4,080 / 4,023 against 3,713 / 3,598 losing Reserves/s with h2load)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import grpc
from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc
from seatinventory.v1 import types_pb2

SCHEMA = """
CREATE TABLE IF NOT EXISTS dbonly_seats (
    event_id text NOT NULL,
    seat_id text NOT NULL,
    held_until bigint NOT NULL DEFAULT 0,
    hold_id text,
    holder_id text,
    PRIMARY KEY (event_id, seat_id)
)
"""
CLAIM = """
SELECT seat_id FROM dbonly_seats
WHERE event_id = $1 AND seat_id = ANY($2::text[]) AND held_until < $3
FOR UPDATE SKIP LOCKED
"""
HOLD = """
UPDATE dbonly_seats SET held_until = $3, hold_id = $4, holder_id = $5
WHERE event_id = $1 AND seat_id = ANY($2::text[])
"""


async def create_event(dsn: str, event_id: str, seat_ids: Sequence[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.copy_records_to_table(
            "dbonly_seats",
            records=[(event_id, s) for s in seat_ids],
            columns=["event_id", "seat_id"],
        )
        await conn.execute("ANALYZE dbonly_seats")
    finally:
        await conn.close()


class DbOnlyServicer(pb_grpc.SeatInventoryServicer):
    def __init__(self, dsn: str, pool_size: int) -> None:
        self.dsn, self.pool_size = dsn, pool_size
        self.pool: Any = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=self.pool_size, max_size=self.pool_size
        )
        async with self.pool.acquire() as conn:
            await conn.execute(SCHEMA)

    async def Reserve(self, request: pb.ReserveRequest, context: Any) -> pb.ReserveResponse:
        seats = list(request.seat_ids)
        now = int(time.time() * 1000)
        ttl_ms = request.ttl.ToMilliseconds() if request.HasField("ttl") else 600_000
        hold_id = secrets.token_urlsafe(16)
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(CLAIM, request.event_id, seats, now)
            if len(claimed) < len(seats):
                won = False  # nothing written; the commit unlocks what was claimed
            else:
                won = True
                await conn.execute(
                    HOLD, request.event_id, seats, now + ttl_ms, hold_id, request.holder_id
                )
        if not won:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "seats unavailable")
        hold = types_pb2.Hold(
            hold_id=hold_id, event_id=request.event_id, seat_ids=seats, holder_id=request.holder_id
        )
        hold.expires_at.FromMilliseconds(now + ttl_ms)
        return pb.ReserveResponse(hold=hold)

    async def close(self) -> None:
        await self.pool.close()
