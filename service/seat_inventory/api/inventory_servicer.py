"""SeatInventory over gRPC: translate, call the service layer, translate back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import grpc
from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc

from ..domain.policy import Violations
from ..service_layer.bookings import BookingService
from ..service_layer.inventory import InventoryService
from ..service_layer.watch import AvailabilityWatch
from .calls import Guarded
from .errors import server_stream, unary
from .principal import current_principal
from .translate import availability_response, booking_to_proto, hold_to_proto, ttl_ms

__all__ = ["SeatInventoryServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class SeatInventoryServicer(Guarded, pb_grpc.SeatInventoryServicer):
    def __init__(
        self, inventory: InventoryService, bookings: BookingService, watch: AvailabilityWatch
    ) -> None:
        self._inventory = inventory
        self._bookings = bookings
        self._watch = watch

    @unary()
    async def Reserve(self, request: pb.ReserveRequest, context: Ctx) -> pb.ReserveResponse:
        v = Violations()
        ttl = ttl_ms(v, "ttl", request.ttl, request.HasField("ttl"))
        v.raise_if_any()
        hold = await self._inventory.reserve(
            request.event_id,
            request.seat_ids,
            request.holder_id,
            ttl,
            request.request_id,
            principal=current_principal().name,
        )
        return pb.ReserveResponse(hold=hold_to_proto(hold))

    @unary()
    async def Confirm(self, request: pb.ConfirmRequest, context: Ctx) -> pb.ConfirmResponse:
        booking = await self._bookings.confirm(
            request.hold_id,
            request.holder_id,
            request.order_ref,
            request.request_id,
            principal=current_principal().name,
        )
        return pb.ConfirmResponse(booking=booking_to_proto(booking))

    @unary()
    async def Release(self, request: pb.ReleaseRequest, context: Ctx) -> pb.ReleaseResponse:
        released = await self._inventory.release(
            request.hold_id, request.holder_id, principal=current_principal().name
        )
        return pb.ReleaseResponse(released=released)

    @unary()
    async def ExtendHold(
        self, request: pb.ExtendHoldRequest, context: Ctx
    ) -> pb.ExtendHoldResponse:
        v = Violations()
        ttl = ttl_ms(v, "ttl", request.ttl, request.HasField("ttl"))
        v.raise_if_any()
        hold = await self._inventory.extend(
            request.hold_id, request.holder_id, ttl, principal=current_principal().name
        )
        return pb.ExtendHoldResponse(hold=hold_to_proto(hold))

    @unary()
    async def GetAvailability(self, request: pb.GetAvailabilityRequest, context: Ctx) -> Any:
        # Any, not GetAvailabilityResponse: the answer is built serialised from the
        # event's cached seat-map bytes and the server sends it as it is.
        event, live = await self._inventory.live_view(request.event_id)
        return availability_response(event, live)

    @server_stream
    async def StreamAvailability(
        self, request: pb.StreamAvailabilityRequest, context: Ctx
    ) -> AsyncGenerator[Any, None]:
        # Any, not AvailabilityUpdate: the messages arrive already serialised
        # (a tick's batch is encoded once for every subscriber) and the server
        # registers this method with a serializer that sends bytes as they are.
        frames = self._watch.stream(request.event_id, request.resume_cursor)
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame
