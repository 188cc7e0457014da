"""From a failed call to its typed error.

The server sends every error with exactly one ``google.rpc.ErrorInfo`` (domain
``seatinventory``) in ``grpc-status-details-bin``; INVALID_ARGUMENT adds a
``google.rpc.BadRequest``. ``error_from_rpc`` reads both and picks the class of
the reason, else the class of the code (for errors without ErrorInfo, such as
a DEADLINE_EXCEEDED raised by gRPC itself), else the root.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from .errors import FieldViolation, SeatInventoryError

__all__ = ["error_from_rpc"]

DOMAIN = "seatinventory"
_DETAILS_KEY = "grpc-status-details-bin"


def _classes(root: type[SeatInventoryError]) -> list[type[SeatInventoryError]]:
    found = []
    for sub in root.__subclasses__():
        found += [sub, *_classes(sub)]
    return found


_BY_REASON = {c.REASON: c for c in _classes(SeatInventoryError) if c.REASON}
_BY_CODE = {c.CODE: c for c in _classes(SeatInventoryError) if c.CODE and "CODE" in vars(c)}


class _FailedCall(Protocol):
    """What sync ``grpc.RpcError`` and ``grpc.aio.AioRpcError`` both offer."""

    def code(self) -> grpc.StatusCode: ...
    def details(self) -> str | None: ...
    def trailing_metadata(self) -> Any: ...


def _details(call: _FailedCall) -> tuple[Any | None, tuple[FieldViolation, ...]]:
    """The ErrorInfo (if one came with our domain) and the BadRequest violations."""
    info, violations = None, []
    for key, value in call.trailing_metadata() or ():
        if key != _DETAILS_KEY:
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                candidate = error_details_pb2.ErrorInfo()
                detail.Unpack(candidate)
                if candidate.domain == DOMAIN:
                    info = candidate
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return info, tuple(violations)


def error_from_rpc(error: grpc.RpcError) -> SeatInventoryError:
    """The typed error for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    call = cast(_FailedCall, error)  # every error a stub raises is also its call
    code, message = call.code(), call.details() or ""
    info, violations = _details(call)
    cls = _BY_REASON.get(info.reason) if info is not None else None
    if cls is None or code != cls.CODE:  # a reason this client does not know, or a new code
        cls = _BY_CODE.get(code, SeatInventoryError)
    return cls(
        message,
        code=code,
        reason=info.reason if info is not None else "",
        metadata=dict(info.metadata) if info is not None else None,
        violations=violations,
    )
