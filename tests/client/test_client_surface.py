"""The client's surface without a server: a method for every RPC of the contract on
both clients, the error table, the backoff bounds and the credentials pieces."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from seatinventory import client as api
from seatinventory.client import (
    RETRY_SAFE,
    AsyncSeatInventoryClient,
    RetryPolicy,
    SeatInventoryClient,
    Tls,
)
from seatinventory.client.channel import auth_metadata, channel_options
from seatinventory.client.retry import Deadline
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2

SERVICES = (
    seat_inventory_pb2.DESCRIPTOR.services_by_name["SeatInventory"],
    inventory_admin_pb2.DESCRIPTOR.services_by_name["InventoryAdmin"],
)
RENAMED = {"StreamAvailability": "watch_availability"}  # a resumable watch, not one stream


def method_name(rpc: str) -> str:
    return RENAMED.get(rpc) or re.sub(r"(?<!^)([A-Z])", r"_\1", rpc).lower()


RPCS = [(service.name, m) for service in SERVICES for m in service.methods]


def test_the_walk_sees_all_nine_rpcs() -> None:
    """The descriptor walk covers the nine RPCs the contract pins, so it cannot pass empty."""
    assert len(RPCS) == 9


@pytest.mark.parametrize("client_class", [AsyncSeatInventoryClient, SeatInventoryClient])
@pytest.mark.parametrize(("service", "rpc"), RPCS, ids=[m.full_name for _, m in RPCS])
def test_every_rpc_has_a_client_method(client_class: type[Any], service: str, rpc: Any) -> None:
    """Each RPC of both services is a method on the async and the sync client, taking every
    field of its request by name (a new request field fails here until the client has it)."""
    method = getattr(client_class, method_name(rpc.name), None)
    assert method is not None, f"{client_class.__name__} has no {method_name(rpc.name)}"
    params = set(inspect.signature(method).parameters)
    assert {f.name for f in rpc.input_type.fields} <= params
    assert "timeout" in params
    if rpc.server_streaming:
        kind = inspect.isasyncgenfunction if client_class is AsyncSeatInventoryClient else None
        assert (kind or inspect.isgeneratorfunction)(method)
    else:
        assert rpc.name in RETRY_SAFE  # every unary RPC has a stated retry rule
        assert inspect.iscoroutinefunction(method) == (client_class is AsyncSeatInventoryClient)


def test_the_twins_have_the_same_signatures() -> None:
    """The sync client's public methods mirror the async client's, parameter for parameter."""

    def public(cls: type[Any]) -> dict[str, Callable[..., Any]]:
        return {n: f for n, f in vars(cls).items() if callable(f) and not n.startswith("_")}

    async_methods, sync_methods = public(AsyncSeatInventoryClient), public(SeatInventoryClient)
    assert set(async_methods) == set(sync_methods)
    for name, method in async_methods.items():
        twin = inspect.signature(sync_methods[name])
        assert inspect.signature(method).parameters == twin.parameters, name


class FakeError(grpc.RpcError):
    """What a stub raises: a code, details, and trailing metadata with the status."""

    def __init__(self, code: grpc.StatusCode, reason: str | None, **metadata: str) -> None:
        self._code = code
        details = []
        if reason is not None:
            info = error_details_pb2.ErrorInfo(reason=reason, domain="seatinventory")
            info.metadata.update(metadata)
            packed = any_pb2.Any()
            packed.Pack(info)
            details.append(packed)
        status = status_pb2.Status(code=code.value[0], message="boom", details=details)
        self._trailing = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "boom"

    def trailing_metadata(self) -> Any:
        return self._trailing


C = grpc.StatusCode
TABLE = [
    (C.INVALID_ARGUMENT, "INVALID_ARGUMENT", api.InvalidRequest),
    (C.NOT_FOUND, "EVENT_NOT_FOUND", api.EventNotFound),
    (C.NOT_FOUND, "SEAT_NOT_FOUND", api.SeatNotFound),
    (C.NOT_FOUND, "HOLD_NOT_FOUND", api.HoldNotFound),
    (C.NOT_FOUND, "BOOKING_NOT_FOUND", api.BookingNotFound),
    (C.FAILED_PRECONDITION, "SEATS_UNAVAILABLE", api.SeatsUnavailable),
    (C.FAILED_PRECONDITION, "HOLD_CONFIRMING", api.HoldConfirming),
    (C.PERMISSION_DENIED, "HOLD_NOT_OWNED", api.HoldNotOwned),
    (C.PERMISSION_DENIED, "SOMETHING_ELSE", api.PermissionDenied),
    (C.RESOURCE_EXHAUSTED, "HOLD_LIMIT", api.HoldLimit),
    (C.RESOURCE_EXHAUSTED, "RATE_LIMITED", api.RateLimited),
    (C.RESOURCE_EXHAUSTED, "STREAM_LIMIT", api.StreamLimit),
    (C.ALREADY_EXISTS, "EVENT_EXISTS", api.EventExists),
    (C.UNAUTHENTICATED, "UNAUTHENTICATED", api.Unauthenticated),
    (C.UNAVAILABLE, "BACKEND_UNAVAILABLE", api.BackendUnavailable),
    (C.UNAVAILABLE, "SERVER_DRAINING", api.Unavailable),
    (C.UNAVAILABLE, None, api.Unavailable),
    (C.DEADLINE_EXCEEDED, None, api.DeadlineExceeded),
    (C.NOT_FOUND, "HOLD_LIMIT", api.NotFound),  # a reason with an unexpected code
    (C.INTERNAL, None, api.SeatInventoryError),
]


@pytest.mark.parametrize(("code", "reason", "expected"), TABLE)
def test_each_code_and_reason_maps_to_its_class(
    code: grpc.StatusCode, reason: str | None, expected: type[api.SeatInventoryError]
) -> None:
    """error_from_rpc picks the reason's class, else the code's, else the root, and keeps
    code, reason, metadata and message."""
    error = api.error_from_rpc(FakeError(code, reason, seat_ids="A-1,A-2"))
    assert type(error) is expected
    assert (error.code, error.message) == (code, "boom")
    assert error.reason == (reason or code.name)
    if reason is not None:
        assert error.seat_ids == ("A-1", "A-2")


def test_backoff_grows_with_jitter_within_bounds() -> None:
    """The n-th retry waits between half and all of min(max, initial * multiplier^(n-1))."""
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        waits = [policy.backoff(retry) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered


def test_retry_rules() -> None:
    """Only UNAVAILABLE of a retry-safe RPC is retried, up to max_attempts and only while
    the wait still fits before the deadline."""
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=0.1)
    roomy = Deadline.after(60)
    assert policy.delay("Reserve", 1, C.UNAVAILABLE, roomy) is not None
    assert policy.delay("Reserve", 3, C.UNAVAILABLE, roomy) is None
    assert policy.delay("Reserve", 1, C.FAILED_PRECONDITION, roomy) is None
    assert policy.delay("StreamAvailability", 1, C.UNAVAILABLE, roomy) is None
    assert policy.delay("GetEvent", 1, C.UNAVAILABLE, Deadline.after(0.05)) is None
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_credentials_pieces() -> None:
    """A token becomes one authorization header; TLS wants a client cert and key together
    and can override the server name it checks."""
    assert auth_metadata("t0k") == (("authorization", "Bearer t0k"),)
    assert auth_metadata(None) == ()
    with pytest.raises(ValueError, match="both"):
        Tls(certificate_chain=b"cert")
    options = dict(
        channel_options(Tls(server_name="seats.internal"), [("grpc.lb_policy_name", "x")])
    )
    assert options["grpc.ssl_target_name_override"] == "seats.internal"
    assert options["grpc.lb_policy_name"] == "x"


def test_every_public_name_is_exported() -> None:
    """``seatinventory.client.__all__`` names exactly what the package offers."""
    assert sorted(api.__all__) == sorted(set(api.__all__))
    for name in api.__all__:
        assert hasattr(api, name), name
