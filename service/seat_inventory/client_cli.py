"""Client commands of ``seat-inventory``: talk to a running server over gRPC."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["add_client_commands"]


# google.protobuf.Duration's range: about 10,000 years.
_MAX_SECONDS = 315_576_000_000


def _seconds(text: str) -> float:
    """A positive, finite number of seconds a Duration (and a deadline) can carry."""
    value = float(text)
    if not (math.isfinite(value) and 0 < value <= _MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _default_target() -> str:
    """SEAT_INVENTORY_TARGET, else the port ``serve`` takes from this environment
    (a container's health check finds its server wherever the image put it)."""
    target = os.environ.get("SEAT_INVENTORY_TARGET")
    if target:
        return target
    return f"localhost:{os.environ.get('SEAT_INVENTORY_PORT') or 50051}"


def _target_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        default=_default_target(),
        help="server address (default localhost:50051, or localhost:$SEAT_INVENTORY_PORT "
        "where serve's port is set; env SEAT_INVENTORY_TARGET)",
    )
    p.add_argument("--timeout", type=_seconds, default=30.0, help="deadline in seconds")
    p.add_argument(
        "--token",
        default=os.environ.get("SEAT_INVENTORY_TOKEN"),
        help="bearer token, when the server requires one (env SEAT_INVENTORY_TOKEN)",
    )
    p.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    p.add_argument("--ca", help="PEM file of the CA to trust (implies --tls)")
    p.add_argument("--cert", help="PEM client certificate, for mutual TLS (implies --tls)")
    p.add_argument("--key", help="PEM key of --cert")


def _describe_error(err: Any) -> str:
    """One line a person can act on: code, reason, message, useful metadata."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    reason, extra = "", ""
    status = rpc_status.from_call(err)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                if "seat_ids" in info.metadata:
                    more = info.metadata.get("seat_ids_omitted")
                    tail = f" and {more} more" if more else ""
                    extra = f" (seats: {info.metadata['seat_ids']}{tail})"
    code = err.code().name
    label = f"{code} {reason}" if reason and reason != code else code
    return f"error: {label}: {err.details()}{extra}"


def _tls(args: argparse.Namespace) -> Any:
    """The client package's Tls for --tls/--ca/--cert/--key, or None for plaintext."""
    from seatinventory.client.channel import Tls

    if not (args.tls or args.ca or args.cert or args.key):
        return None
    try:
        return Tls.from_files(ca=args.ca, cert=args.cert, key=args.key)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: TLS: {exc}") from None


def _call(args: argparse.Namespace, fn: Callable[[Any, Any, argparse.Namespace], None]) -> int:
    import grpc
    from seatinventory.client.channel import auth_metadata, open_channel
    from seatinventory.v1 import inventory_admin_pb2_grpc, seat_inventory_pb2_grpc

    args.metadata = auth_metadata(args.token)
    with open_channel(args.target, _tls(args)) as channel:
        inventory = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
        admin = inventory_admin_pb2_grpc.InventoryAdminStub(channel)
        args.channel = channel
        try:
            fn(inventory, admin, args)
        except grpc.RpcError as err:
            print(_describe_error(err), file=sys.stderr)
            if err.code() == grpc.StatusCode.UNAVAILABLE and "BACKEND" not in str(err.details()):
                print(f"is the server running at {args.target}?", file=sys.stderr)
            return 1
    return 0


def _when(ts: Any) -> str:
    moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)
    return moment.isoformat(timespec="milliseconds")


def _print_hold(hold: Any) -> None:
    print(f"hold_id:    {hold.hold_id}")
    print(f"seats:      {', '.join(hold.seat_ids)}")
    print(f"holder:     {hold.holder_id}")
    print(f"expires_at: {_when(hold.expires_at)}")


def _create_event(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from seatinventory.v1 import inventory_admin_pb2, types_pb2

    from .seatmap import SeatMapError, load_seat_map

    try:
        name, seats = load_seat_map(Path(args.file))
    except SeatMapError as exc:
        raise SystemExit(f"error: {exc}") from None
    request = inventory_admin_pb2.CreateEventRequest(
        event_id=args.event_id,
        name=args.name or name or args.event_id,
        seats=[
            types_pb2.SeatSpec(seat_id=s.seat_id, section=s.section, row=s.row, number=s.number)
            for s in seats
        ],
    )
    print(f"creating {args.event_id} with {len(seats)} seats ...", file=sys.stderr)
    event = admin.CreateEvent(request, timeout=args.timeout, metadata=args.metadata).event
    print(
        f"event {event.event_id} ({event.name!r}): {event.seat_count} seats, "
        f"{event.available_count} available"
    )


def _get_event(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from seatinventory.v1 import inventory_admin_pb2

    e = admin.GetEvent(
        inventory_admin_pb2.GetEventRequest(event_id=args.event_id),
        timeout=args.timeout,
        metadata=args.metadata,
    ).event
    print(
        f"event {e.event_id} ({e.name!r}): {e.seat_count} seats, {e.available_count} "
        f"available, {e.held_count} held, {e.booked_count} booked"
    )


def _duration(seconds: float | None) -> Any:
    from google.protobuf import duration_pb2

    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(seconds * 1000))
    return d


def _reserve(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from seatinventory.v1 import seat_inventory_pb2

    request = seat_inventory_pb2.ReserveRequest(
        event_id=args.event_id,
        seat_ids=args.seats,
        holder_id=args.holder,
        request_id=args.request_id or "",
        ttl=_duration(args.ttl),
    )
    _print_hold(inventory.Reserve(request, timeout=args.timeout, metadata=args.metadata).hold)


def _extend(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from seatinventory.v1 import seat_inventory_pb2

    request = seat_inventory_pb2.ExtendHoldRequest(
        hold_id=args.hold_id, holder_id=args.holder, ttl=_duration(args.ttl)
    )
    _print_hold(inventory.ExtendHold(request, timeout=args.timeout, metadata=args.metadata).hold)


def _release(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from seatinventory.v1 import seat_inventory_pb2

    reply = inventory.Release(
        seat_inventory_pb2.ReleaseRequest(hold_id=args.hold_id, holder_id=args.holder),
        timeout=args.timeout,
        metadata=args.metadata,
    )
    print("released" if reply.released else "already released")


def _availability(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from seatinventory.v1 import seat_inventory_pb2, types_pb2

    reply = inventory.GetAvailability(
        seat_inventory_pb2.GetAvailabilityRequest(event_id=args.event_id),
        timeout=args.timeout,
        metadata=args.metadata,
    )
    by_status: dict[str, list[str]] = {}
    for seat in reply.seats:
        label = types_pb2.SeatStatus.Name(seat.status).removeprefix("SEAT_STATUS_").lower()
        by_status.setdefault(label, []).append(seat.seat_id)
    for label in ("available", "held", "booked"):
        seats = by_status.get(label, [])
        shown = ", ".join(seats[: args.show]) + (" ..." if len(seats) > args.show else "")
        print(f"{label:>9}: {len(seats):>6}  {shown}")
    print(f"   cursor: {reply.cursor}")


def _health(inventory: Any, admin: Any, args: argparse.Namespace) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub: Any = health_pb2_grpc.HealthStub(args.channel)  # the stubs package lacks Check
    reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise SystemExit(1)


def add_client_commands(sub: Any) -> None:
    def command(name: str, help_: str, fn: Callable[[Any, Any, argparse.Namespace], None]) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        _target_arg(p)
        p.set_defaults(func=lambda args: _call(args, fn))
        return p

    p = command("create-event", "create an event from a seat-map file (JSON or CSV)", _create_event)
    p.add_argument("event_id")
    p.add_argument("--file", required=True, help="seat map: .json or .csv (see README)")
    p.add_argument("--name", help="event name (default: the file's, else the id)")

    p = command("event", "show an event and its seat counts", _get_event)
    p.add_argument("event_id")

    p = command("reserve", "hold seats (all or nothing)", _reserve)
    p.add_argument("event_id")
    p.add_argument("seats", nargs="+", metavar="SEAT_ID")
    p.add_argument("--holder", required=True, help="who holds the seats")
    p.add_argument("--ttl", type=_seconds, help="seconds the hold lives (default: server's)")
    p.add_argument("--request-id", help="idempotency key: retries with it get the same hold")

    p = command("extend", "extend a hold", _extend)
    p.add_argument("hold_id")
    p.add_argument("--holder", required=True)
    p.add_argument("--ttl", type=_seconds, help="new seconds to live, from now")

    p = command("release", "release a hold", _release)
    p.add_argument("hold_id")
    p.add_argument("--holder", required=True)

    p = command("health", "exit 0 when the server reports SERVING (for health checks)", _health)
    p.add_argument("--service", default="", help="a service name; default: the whole server")

    p = command("availability", "show which seats are available, held and booked", _availability)
    p.add_argument("event_id")
    p.add_argument("--show", type=int, default=10, help="seat ids to list per status")
