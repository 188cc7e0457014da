"""Hypothesis-generated requests for every RPC of both services (empty, huge,
unicode and control characters, random bytes as ids, out-of-range durations,
oversized lists, absurd seat maps within the message size limit) against a
real server on the embedded default (SQLite + in-process fakeredis).

The answer is always a documented status, never UNKNOWN or INTERNAL; every
error carries exactly one ErrorInfo; and the server keeps serving."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seatinventory.v1 import (
    inventory_admin_pb2,
    inventory_admin_pb2_grpc,
    seat_inventory_pb2,
    seat_inventory_pb2_grpc,
    types_pb2,
)

from seat_inventory.api.server import Server
from seat_inventory.bootstrap import build
from seat_inventory.config import Settings
from tests.reliability.loop_thread import LoopThread
from tests.reliability.report import REPORT, SCALE, scaled

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

EXAMPLES = scaled(100)  # per RPC
DOCUMENTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    }
)
EVENT = "fuzz-ev"
SEATS = [f"A-{i}" for i in range(1, 11)]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Target:
    inventory: seat_inventory_pb2_grpc.SeatInventoryStub
    admin: inventory_admin_pb2_grpc.InventoryAdminStub
    health: health_pb2_grpc.HealthStub
    hold_id: str  # a live hold of alice's on
    booking_id: str  # a booking of A-3
    cursor: str  # a real availability cursor
    channel: grpc.Channel  # for requests no stub would send


async def serve(settings: Settings) -> tuple[Server, int]:
    """Built on the loop that will run it: a grpc.aio server belongs to the loop
    it was made on."""
    server = Server(await build(settings))
    return server, await server.start()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """The embedded default (SQLite in a temp dir, in-process fakeredis) served
    from its own loop, an event with a hold and a booking, and sync stubs."""
    with tempfile.TemporaryDirectory(prefix="seatinv-fuzz-") as tmp, LoopThread("fuzz") as loop:
        db = f"sqlite:///{Path(tmp) / 'fuzz.db'}"
        server, port = loop.run(serve(Settings(host="127.0.0.1", port=0, database_url=db)))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                inv = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
                admin = inventory_admin_pb2_grpc.InventoryAdminStub(channel)
                admin.CreateEvent(
                    inventory_admin_pb2.CreateEventRequest(
                        event_id=EVENT,
                        name="fuzz",
                        seats=[types_pb2.SeatSpec(seat_id=s) for s in SEATS],
                    ),
                    timeout=30,
                )
                hold = inv.Reserve(
                    seat_inventory_pb2.ReserveRequest(
                        event_id=EVENT, seat_ids=SEATS[:2], holder_id="alice"
                    ),
                    timeout=10,
                ).hold
                sold = inv.Reserve(
                    seat_inventory_pb2.ReserveRequest(
                        event_id=EVENT, seat_ids=SEATS[2:3], holder_id="bob"
                    ),
                    timeout=10,
                ).hold
                booking = inv.Confirm(
                    seat_inventory_pb2.ConfirmRequest(hold_id=sold.hold_id, holder_id="bob"),
                    timeout=10,
                ).booking
                cursor = inv.GetAvailability(
                    seat_inventory_pb2.GetAvailabilityRequest(event_id=EVENT), timeout=10
                ).cursor
                yield Target(
                    inv,
                    admin,
                    health_pb2_grpc.HealthStub(channel),
                    hold.hold_id,
                    booking.booking_id,
                    cursor,
                    channel,
                )
        finally:
            loop.run(server.stop(grace_s=1), timeout_s=30)


# --- strategies ---------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


huge = st.integers(min_value=65, max_value=300_000).map(lambda n: "x" * n)
garbage = st.one_of(
    st.text(max_size=40),  # any unicode, control characters included
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace")),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["", " ", "\x00", "\t", "a\nb", "é", "😀", "-a", ".", "a,b", "a|b", "{a}"]),
    huge,
)
plausible = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,70}", fullmatch=True)
ids = st.one_of(garbage, plausible, st.sampled_from([EVENT, *SEATS, "alice", "bob"]))
durations = st.one_of(
    st.none(),
    st.builds(
        duration_pb2.Duration,
        seconds=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        nanos=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    ),
    st.builds(
        duration_pb2.Duration,
        seconds=st.integers(min_value=-5, max_value=4000),
        nanos=st.integers(min_value=-1, max_value=1_000_000_000),
    ),
)
seat_lists = st.one_of(
    st.lists(ids, max_size=8),
    st.lists(st.sampled_from(SEATS), max_size=60),  # duplicates, too many
    st.integers(min_value=51, max_value=20_000).map(lambda n: [f"A-{i}" for i in range(n)]),
    st.lists(plausible, min_size=40, max_size=60, unique=True),  # long error listings
    st.lists(st.sampled_from(["/", "-", " ", "é", "a/b", "x" * 65]), min_size=30, max_size=50),
)


def hold_ids(t: Target) -> st.SearchStrategy[str]:
    event_part, _, token = t.hold_id.partition(".")
    return st.one_of(
        ids,
        st.just(t.hold_id),
        st.builds(
            lambda e, r: f"{b64(e)}.{b64(r)}", st.binary(max_size=80), st.binary(max_size=40)
        ),
        st.builds(
            lambda e, r: f"{b64(e.encode())}.{b64(r)}", ids, st.binary(min_size=16, max_size=24)
        ),
        st.builds(lambda r: f"{event_part}.{b64(r)}", st.binary(min_size=16, max_size=24)),
        st.builds(lambda n: f"{event_part}.{token[:n]}", st.integers(0, len(token))),
    )


def cursors(t: Target) -> st.SearchStrategy[str]:
    epoch = t.cursor.partition(".")[0]
    big = st.integers(min_value=0, max_value=10**20 - 1)
    return st.one_of(
        garbage,
        st.just(t.cursor),
        st.builds(lambda a, b: f"{epoch}.{a}-{b}", big, big),
        st.builds(lambda a, b: f"{a}.{b}", plausible, plausible),
    )


def seat_specs(max_size: int) -> st.SearchStrategy[list[types_pb2.SeatSpec]]:
    label = st.one_of(st.just(""), garbage, plausible)
    spec = st.builds(types_pb2.SeatSpec, seat_id=ids, section=label, row=label, number=label)
    return st.lists(spec, max_size=max_size)


# --- the check ----------------------------------------------------------------


def infos_of(err: grpc.RpcError) -> list[error_details_pb2.ErrorInfo]:
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError as exc:  # the details say another code than the status
        raise AssertionError(f"{err.code()}: {exc}; details {err.details()!r}") from None
    assert status is not None, f"no grpc-status-details-bin on {err.code()} {err.details()!r}"
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    return infos


def answer(
    call: Callable[..., Any], request: Any, *, stream: bool = False, may_wait: bool = False
) -> grpc.StatusCode:
    """Make the call; it must answer a documented status, and an error must
    carry exactly one ErrorInfo of the seatinventory domain. ``may_wait``: a
    stream resumed at the feed's tail rightly sends nothing until a change."""
    REPORT.add("bad inputs tried")
    error: grpc.RpcError | None = None
    try:
        if stream:
            messages = call(request, timeout=1 if may_wait else 10)
            next(messages)  # the first update; the stream stays open
            messages.cancel()
        else:
            call(request, timeout=10)
    except grpc.RpcError as err:
        error = err
    if error is None:
        return grpc.StatusCode.OK
    if may_wait and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return grpc.StatusCode.OK  # open, waiting for the next change
    code: grpc.StatusCode = error.code()
    shown = repr(request)[:300]
    assert code in DOCUMENTED, f"{code} {error.details()!r} for {shown}"
    infos = infos_of(error)
    assert len(infos) == 1, f"{len(infos)} ErrorInfo on {code} for {shown}"
    assert infos[0].domain == "seatinventory"
    assert infos[0].reason.isupper(), infos[0].reason
    return code


# --- SeatInventory --------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_reserve(target: Target, data: st.DataObject) -> None:
    """Reserve answers any request with a documented status and one ErrorInfo."""
    request = seat_inventory_pb2.ReserveRequest(
        event_id=data.draw(ids),
        seat_ids=data.draw(seat_lists),
        holder_id=data.draw(ids),
        request_id=data.draw(st.one_of(st.just(""), ids)),
    )
    duration = data.draw(durations)
    if duration is not None:
        request.ttl.CopyFrom(duration)
    answer(target.inventory.Reserve, request)


@FUZZ
@given(data=st.data())
def test_confirm(target: Target, data: st.DataObject) -> None:
    """Confirm answers any request with a documented status and one ErrorInfo."""
    request = seat_inventory_pb2.ConfirmRequest(
        hold_id=data.draw(hold_ids(target)),
        holder_id=data.draw(ids),
        request_id=data.draw(st.one_of(st.just(""), ids)),
        order_ref=data.draw(st.one_of(st.just(""), garbage)),
    )
    answer(target.inventory.Confirm, request)


@FUZZ
@given(data=st.data())
def test_release(target: Target, data: st.DataObject) -> None:
    """Release answers any request with a documented status and one ErrorInfo."""
    request = seat_inventory_pb2.ReleaseRequest(
        hold_id=data.draw(hold_ids(target)), holder_id=data.draw(ids)
    )
    answer(target.inventory.Release, request)


@FUZZ
@given(data=st.data())
def test_extend_hold(target: Target, data: st.DataObject) -> None:
    """ExtendHold answers any request with a documented status and one ErrorInfo."""
    request = seat_inventory_pb2.ExtendHoldRequest(
        hold_id=data.draw(hold_ids(target)), holder_id=data.draw(ids)
    )
    duration = data.draw(durations)
    if duration is not None:
        request.ttl.CopyFrom(duration)
    answer(target.inventory.ExtendHold, request)


@FUZZ
@given(event_id=ids)
def test_get_availability(target: Target, event_id: str) -> None:
    """GetAvailability answers any event id with a documented status and one ErrorInfo."""
    answer(
        target.inventory.GetAvailability,
        seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id),
    )


@FUZZ
@given(data=st.data())
def test_stream_availability(target: Target, data: st.DataObject) -> None:
    """StreamAvailability opens (a snapshot, the changes after the cursor, or, at
    the tail, nothing yet) or fails with a documented status and one ErrorInfo,
    whatever the event id and resume cursor."""
    request = seat_inventory_pb2.StreamAvailabilityRequest(
        event_id=data.draw(st.one_of(st.just(EVENT), ids)),
        resume_cursor=data.draw(st.one_of(st.just(""), cursors(target))),
    )
    at_tail = request.event_id == EVENT and request.resume_cursor == target.cursor
    answer(target.inventory.StreamAvailability, request, stream=True, may_wait=at_tail)


# --- InventoryAdmin --------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_create_event(target: Target, data: st.DataObject) -> None:
    """CreateEvent answers any seat map with a documented status and one ErrorInfo."""
    seats = data.draw(
        st.one_of(
            seat_specs(max_size=30),
            st.just([types_pb2.SeatSpec(seat_id=s) for s in SEATS]),  # the existing map
        )
    )
    request = inventory_admin_pb2.CreateEventRequest(
        event_id=data.draw(st.one_of(st.just(EVENT), ids)),
        name=data.draw(st.one_of(st.just("fuzz"), garbage)),
        seats=seats,
    )
    answer(target.admin.CreateEvent, request)


# 1.3 million seats is 15.6 MB, just inside the 16 MB message limit; it costs the
# server seconds to parse, so it runs in the longer runs only.
ABSURD_SEAT_COUNTS = [100_001, 250_000, *([1_300_000] if SCALE > 1 else [])]


@pytest.mark.parametrize("count", ABSURD_SEAT_COUNTS)
def test_create_event_with_an_absurd_number_of_seats(target: Target, count: int) -> None:
    """A seat map far beyond the 100,000-seat limit, yet inside the 16 MB message
    limit, is INVALID_ARGUMENT with one ErrorInfo."""
    request = inventory_admin_pb2.CreateEventRequest(event_id="absurd", name="absurd")
    request.seats.extend(types_pb2.SeatSpec(seat_id=f"s{i}") for i in range(count))
    assert request.ByteSize() < Settings().max_message_bytes
    assert answer(target.admin.CreateEvent, request) == grpc.StatusCode.INVALID_ARGUMENT


@FUZZ
@given(event_id=ids, include_seats=st.booleans())
def test_get_event(target: Target, event_id: str, include_seats: bool) -> None:
    """GetEvent answers any event id with a documented status and one ErrorInfo."""
    answer(
        target.admin.GetEvent,
        inventory_admin_pb2.GetEventRequest(event_id=event_id, include_seats=include_seats),
    )


@FUZZ
@given(data=st.data())
def test_cancel_booking(target: Target, data: st.DataObject) -> None:
    """CancelBooking answers any booking id with a documented status and one ErrorInfo."""
    booking_id = data.draw(
        st.one_of(
            ids,
            st.just(target.booking_id),
            st.binary(min_size=8, max_size=40).map(lambda r: "bk_" + b64(r)),
        )
    )
    answer(
        target.admin.CancelBooking, inventory_admin_pb2.CancelBookingRequest(booking_id=booking_id)
    )


def test_fifty_bad_seat_ids_fit_in_an_error(target: Target) -> None:
    """A Reserve naming 50 malformed seat ids (the minimal input that made the error
    outgrow a client's 8 KB header limit: RESOURCE_EXHAUSTED without ErrorInfo)
    answers INVALID_ARGUMENT listing the first ten and counting the rest."""
    request = seat_inventory_pb2.ReserveRequest(event_id=EVENT, seat_ids=["/"] * 50, holder_id="a")
    with pytest.raises(grpc.RpcError) as caught:
        target.inventory.Reserve(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (info,) = infos_of(caught.value)
    assert info.reason == "INVALID_ARGUMENT"
    assert (caught.value.details() or "").endswith(
        "seat_ids: 40 more seat ids have problems (the first 10 are listed)"
    )


@pytest.mark.parametrize(
    "method",
    [
        "/seatinventory.v1.SeatInventory/Reserve",
        "/seatinventory.v1.SeatInventory/GetAvailability",
        "/seatinventory.v1.SeatInventory/StreamAvailability",
        "/seatinventory.v1.InventoryAdmin/CreateEvent",
    ],
)
@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x0a\x02\xff\xfe", "String field had bad UTF-8"),
        (b"\x0a\x05ab", "Wire format was corrupt"),
    ],
    ids=["bad-utf8", "truncated"],
)
def test_bytes_that_are_no_request_are_invalid_argument(
    target: Target, method: str, raw: bytes, problem: str
) -> None:
    """Bytes protobuf cannot parse as the request (bad UTF-8 in a string field, a
    truncated field), as a client of another language or a broken one may send:
    INVALID_ARGUMENT with one ErrorInfo and a BadRequest on "request", not UNKNOWN
    with a Python exception in the message."""
    as_is: Callable[[bytes], bytes] = lambda b: b  # noqa: E731

    def call() -> object:
        if method.endswith("StreamAvailability"):
            return list(target.channel.unary_stream(method, as_is, as_is)(raw, timeout=10))
        return target.channel.unary_unary(method, as_is, as_is)(raw, timeout=10)

    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    (info,) = infos_of(err)
    assert info.reason == "INVALID_ARGUMENT"
    request_type = f"seatinventory.v1.{method.rsplit('/', 1)[1]}Request"
    assert (
        err.details() == f"invalid request: request: does not parse as {request_type} ({problem})"
    )


def test_server_still_serves_after_the_fuzzing(target: Target) -> None:
    """After every bad input above, health says SERVING and a good Reserve and
    Confirm of a fresh event work."""
    reply = target.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    target.admin.CreateEvent(
        inventory_admin_pb2.CreateEventRequest(
            event_id="after-fuzz", name="after", seats=[types_pb2.SeatSpec(seat_id="B-1")]
        ),
        timeout=30,
    )
    hold = target.inventory.Reserve(
        seat_inventory_pb2.ReserveRequest(
            event_id="after-fuzz", seat_ids=["B-1"], holder_id="carol"
        ),
        timeout=10,
    ).hold
    booking = target.inventory.Confirm(
        seat_inventory_pb2.ConfirmRequest(hold_id=hold.hold_id, holder_id="carol"), timeout=10
    ).booking
    assert list(booking.seat_ids) == ["B-1"]
