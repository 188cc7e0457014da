"""Snapshot bytes written by hand from cached seat-map bytes (api/translate.SeatMaps)
are exactly what the protobuf runtime serialises for the same picture."""

from __future__ import annotations

import random

from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import types_pb2

from seat_inventory.api.translate import SeatMaps, availability_seats, snapshot_update
from seat_inventory.domain.model import Availability, Event, SeatSpec
from seat_inventory.service_layer.ports import LiveState


def event_of(seat_ids: list[str], event_id: str = "ev-1") -> Event:
    return Event(event_id, "An event", tuple(SeatSpec(s) for s in seat_ids), 0)


def expected(event: Event, live: LiveState) -> tuple[bytes, bytes]:
    """(GetAvailabilityResponse, AvailabilityUpdate) through the protobuf runtime."""
    availability = Availability(
        event_id=event.event_id,
        seats=tuple((s.seat_id, live.status(s.seat_id)) for s in event.seats),
        cursor=live.cursor,
    )
    response = pb.GetAvailabilityResponse(
        seats=availability_seats(availability), cursor=availability.cursor
    )
    return response.SerializeToString(), snapshot_update(availability).SerializeToString()


def test_bytes_match_the_protobuf_runtime() -> None:
    rng = random.Random(7)
    seat_ids = [f"S-{i}" for i in range(3_000)]
    seat_ids += ["x" * 64, "y" * 200]  # a seat id of 200 bytes takes a two-byte length
    event = event_of(seat_ids)
    maps = SeatMaps()
    for held_n, booked_n in ((0, 0), (10, 0), (0, 10), (500, 700), (3_002, 3_002)):
        held = frozenset(rng.sample(seat_ids, held_n))
        booked = frozenset(rng.sample(seat_ids, booked_n))  # overlaps held: booked wins
        live = LiveState(held | {"not-a-seat"}, booked, f"abc123.{rng.randrange(10**13)}-0")
        response, update = expected(event, LiveState(held, booked, live.cursor))
        assert maps.availability_response(event, live) == response
        assert maps.snapshot(event, live) == update


def test_a_big_snapshot_parses_back_to_the_same_picture() -> None:
    seat_ids = [f"Block-{i // 100}-Row-{i % 100}" for i in range(50_000)]
    event = event_of(seat_ids, "stadium")
    live = LiveState(frozenset(seat_ids[::7]), frozenset(seat_ids[::11]), "e.1795886468225-7")
    update = types_pb2.AvailabilityUpdate.FromString(SeatMaps().snapshot(event, live))
    assert (update.event_id, update.cursor) == ("stadium", live.cursor)
    got = [(s.seat_id, s.status) for s in update.snapshot.seats]
    assert got == [(seat_id, int(live.status(seat_id))) for seat_id in seat_ids]


def test_rendering_leaves_the_cached_bytes_as_they_were() -> None:
    event = event_of(["A", "B", "C"])
    maps = SeatMaps()
    first = maps.availability_response(
        event, LiveState(frozenset({"A"}), frozenset({"B"}), "e.1-0")
    )
    empty = LiveState(frozenset(), frozenset(), "e.2-0")
    assert maps.availability_response(event, empty) == expected(event, empty)[0]
    assert first != maps.availability_response(event, empty)


def test_the_cache_is_bounded_by_seats_and_follows_the_event_object() -> None:
    maps = SeatMaps(max_seats=5)
    live = LiveState(frozenset(), frozenset(), "e.1-0")
    one, two = event_of(["A", "B", "C"], "one"), event_of(["D", "E", "F"], "two")
    maps.snapshot(one, live)
    maps.snapshot(two, live)  # 6 seats > 5: "one" is dropped, the latest stays
    assert list(maps._maps) == ["two"]
    # Another Event object of the same id (read again): its own seats are encoded.
    changed = event_of(["D", "E"], "two")
    assert maps.snapshot(changed, live) == expected(changed, live)[1]
    assert maps._seats == 2
