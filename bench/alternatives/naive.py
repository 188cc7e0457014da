"""(a) The well-known blog recipe: GET each seat key; if none is taken, SET them
with a TTL. Two round trips apart, so two buyers can both see a seat free and
both get it: the benchmark counts those double reservations."""

from __future__ import annotations

import secrets
import time
from typing import Any

import grpc
from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc
from seatinventory.v1 import types_pb2


class NaiveServicer(pb_grpc.SeatInventoryServicer):
    def __init__(self, redis_url: str) -> None:
        from seat_inventory.adapters.redis.connection import connect_redis

        self.redis = connect_redis(redis_url)

    async def Reserve(self, request: pb.ReserveRequest, context: Any) -> pb.ReserveResponse:
        keys = [f"naive:{request.event_id}:{seat}" for seat in request.seat_ids]
        for key in keys:  # check ...
            if await self.redis.get(key) is not None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "seats unavailable")
        hold_id = secrets.token_urlsafe(16)
        ttl_ms = request.ttl.ToMilliseconds() if request.HasField("ttl") else 600_000
        for key in keys:  # ... then set: another call may have done the same in between
            await self.redis.set(key, hold_id, px=ttl_ms)
        hold = types_pb2.Hold(
            hold_id=hold_id,
            event_id=request.event_id,
            seat_ids=request.seat_ids,
            holder_id=request.holder_id,
        )
        hold.expires_at.FromMilliseconds(int(time.time() * 1000) + ttl_ms)
        return pb.ReserveResponse(hold=hold)

    async def close(self) -> None:
        await self.redis.aclose()
