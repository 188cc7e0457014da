"""Small helpers for talking to a server through the generated stubs."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from seatinventory.v1 import inventory_admin_pb2, types_pb2


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex[:10]


def seat_map(n: int, section: str = "A") -> list[types_pb2.SeatSpec]:
    return [
        types_pb2.SeatSpec(seat_id=f"{section}-{i}", section=section, row="1", number=str(i))
        for i in range(1, n + 1)
    ]


async def create_event(
    admin: object, n: int = 20, metadata: tuple[tuple[str, str], ...] = ()
) -> str:
    event_id = new_event_id()
    await admin.CreateEvent(  # type: ignore[attr-defined]
        inventory_admin_pb2.CreateEventRequest(event_id=event_id, name="Test", seats=seat_map(n)),
        metadata=metadata,
        timeout=30,
    )
    return event_id


def ttl(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(seconds * 1000))
    return d


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of an error (fails if there is not exactly one)."""
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin on the error"
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    assert len(infos) == 1, f"expected exactly one ErrorInfo, got {len(infos)}"
    assert infos[0].domain == "seatinventory"
    return infos[0]


def bad_request(err: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            return br
    raise AssertionError("no BadRequest detail")
