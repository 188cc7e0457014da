"""InventoryAdmin over gRPC: translate, call the service layer, translate back."""

from __future__ import annotations

from typing import Any

import grpc
from seatinventory.v1 import inventory_admin_pb2 as pb
from seatinventory.v1 import inventory_admin_pb2_grpc as pb_grpc

from ..service_layer.admin import AdminService
from ..service_layer.bookings import BookingService
from .calls import Guarded
from .errors import unary
from .translate import booking_to_proto, event_to_proto, seat_spec_from_proto

__all__ = ["InventoryAdminServicer"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class InventoryAdminServicer(Guarded, pb_grpc.InventoryAdminServicer):
    def __init__(self, admin: AdminService, bookings: BookingService) -> None:
        self._admin = admin
        self._bookings = bookings

    @unary(ceiling_s=60.0)  # a 100,000-seat map takes a while to store
    async def CreateEvent(
        self, request: pb.CreateEventRequest, context: Ctx
    ) -> pb.CreateEventResponse:
        event, counts, _ = await self._admin.create_event(
            request.event_id, request.name, [seat_spec_from_proto(s) for s in request.seats]
        )
        return pb.CreateEventResponse(event=event_to_proto(event, counts, include_seats=False))

    @unary()
    async def GetEvent(self, request: pb.GetEventRequest, context: Ctx) -> pb.GetEventResponse:
        event, counts = await self._admin.get_event(request.event_id)
        return pb.GetEventResponse(
            event=event_to_proto(event, counts, include_seats=request.include_seats)
        )

    @unary()
    async def CancelBooking(
        self, request: pb.CancelBookingRequest, context: Ctx
    ) -> pb.CancelBookingResponse:
        booking = await self._bookings.cancel(request.booking_id)
        return pb.CancelBookingResponse(booking=booking_to_proto(booking))
