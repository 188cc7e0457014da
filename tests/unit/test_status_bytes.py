"""The status details of an error without field violations or a retry delay are
serialised by hand (api/errors.py): they must parse to exactly the
google.rpc.Status protobuf itself would make."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from seat_inventory.api.errors import DOMAIN, status_of
from seat_inventory.domain.errors import (
    ErrorCode,
    HoldNotFound,
    InventoryError,
    RateLimited,
    SeatNotFound,
    SeatsUnavailable,
)


def expected(error: InventoryError) -> status_pb2.Status:
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    )
    return status_pb2.Status(
        code=getattr(code_pb2, error.code.value), message=error.message, details=[info]
    )


def parsed(status: status_pb2.Status) -> tuple[object, ...]:
    """What a client reads: the code, the message, each detail unpacked (a map's
    entries may come in any order on the wire)."""
    details: list[object] = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        details.append((detail.type_url, detail.Unpack(info) and info))
    return status.code, status.message, details


def sent(error: InventoryError) -> status_pb2.Status:
    status = status_of(error)
    assert status.code is getattr(grpc.StatusCode, error.code.value)
    assert status.details == error.message
    ((key, raw),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    return status_pb2.Status.FromString(raw)


class Odd(InventoryError):
    code = ErrorCode.UNAVAILABLE
    reason = "ODD"


text = st.text(min_size=0, max_size=300)


@settings(max_examples=300, deadline=None)
@given(
    message=text,
    reason=st.text(min_size=1, max_size=40),
    metadata=st.dictionaries(st.text(min_size=1, max_size=20), text, max_size=6),
)
def test_any_message_and_metadata_parse_as_protobuf_makes_them(
    message: str, reason: str, metadata: dict[str, str]
) -> None:
    """Unicode, empty strings, lengths past 127 bytes (two-byte lengths)."""
    error = Odd(message, metadata=metadata)
    error.reason = reason
    assert parsed(sent(error)) == parsed(expected(error))


def test_the_errors_of_an_on_sale_parse_as_protobuf_makes_them() -> None:
    long_seats = [f"Section-{i:03d}-Row-{i % 30:02d}-Seat-{i:04d}" for i in range(60)]
    for error in (
        SeatsUnavailable("ev-1", ["A1", "A2"]),
        SeatsUnavailable("ev-1", long_seats),
        SeatNotFound("ev-é", ["Zé-1"]),
        HoldNotFound("x" * 200),
    ):
        assert parsed(sent(error)) == parsed(expected(error))


def test_errors_with_more_details_still_go_through_protobuf() -> None:
    """A retry delay adds a RetryInfo (and field violations a BadRequest)."""
    error = RateLimited("slow down", metadata={"limit": "5", "retry_after_ms": "250"})
    status = sent(error)
    assert len(status.details) == 2
    retry = error_details_pb2.RetryInfo()
    assert status.details[1].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 250
