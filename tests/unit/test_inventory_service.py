"""The service layer on fakes: validation, loading, hold ids, counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from seat_inventory.adapters.redis import RedisHoldStore, connect_redis
from seat_inventory.domain.clock import FakeClock
from seat_inventory.domain.errors import (
    BackendUnavailable,
    EventExists,
    EventNotFound,
    HoldNotFound,
    InvalidArgument,
    SeatsUnavailable,
)
from seat_inventory.domain.ids import new_hold_id
from seat_inventory.domain.model import SeatSpec, SeatStatus
from seat_inventory.domain.policy import Limits
from seat_inventory.service_layer.admin import AdminService
from seat_inventory.service_layer.catalog import EventCatalog
from seat_inventory.service_layer.inventory import InventoryService
from tests.fakes import InMemoryEventRepository

SEATS = [SeatSpec(f"A-{n}", "A", "1", str(n)) for n in range(1, 6)]


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.redis = connect_redis(None)
        self.repo = InMemoryEventRepository()
        self.holds = RedisHoldStore(self.redis, clock=self.clock)
        self.catalog = EventCatalog(self.repo, self.holds)
        self.limits = Limits(max_seats_per_hold=3)
        self.inventory = InventoryService(self.holds, self.catalog, self.limits)
        self.admin = AdminService(self.repo, self.catalog, self.inventory, self.limits, self.clock)


@pytest.fixture
async def world() -> World:
    w = World()
    await w.admin.create_event("show", "The Show", SEATS)
    return w


async def test_create_event_twice_with_same_seats_is_idempotent(world: World) -> None:
    """An identical CreateEvent returns the existing event instead of failing."""
    event, counts, created = await world.admin.create_event("show", "The Show", SEATS)
    assert (created, len(event.seats), counts.available) == (False, 5, 5)


async def test_create_event_with_other_seats_is_event_exists(world: World) -> None:
    """The same id with a different seat map is ALREADY_EXISTS EVENT_EXISTS."""
    with pytest.raises(EventExists):
        await world.admin.create_event("show", "The Show", SEATS[:2])


async def test_create_event_while_redis_is_out_of_reach(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis cannot be reached: a new event is created with every seat available (it is
    loaded on first use); repeating an existing one, whose counts Redis holds, is
    BACKEND_UNAVAILABLE rather than OK with every seat shown available."""
    await world.inventory.reserve("show", ["A-1"], "alice", None)

    async def unreachable(event_id: str) -> None:
        raise BackendUnavailable("redis", "ConnectionError")

    monkeypatch.setattr(world.catalog, "load", unreachable)
    _, counts, created = await world.admin.create_event("other", "Other", SEATS)
    assert (created, counts.available, counts.held) == (True, 5, 0)
    with pytest.raises(BackendUnavailable):
        await world.admin.create_event("show", "The Show", SEATS)


async def test_bad_reserve_reports_every_field(world: World) -> None:
    """A Reserve with several bad fields names each of them in one INVALID_ARGUMENT."""
    with pytest.raises(InvalidArgument) as caught:
        await world.inventory.reserve("bad id!", ["A-1", "A-1", "x,y"], "", 10, "r id")
    fields = {v.field for v in caught.value.violations}
    assert fields == {"event_id", "seat_ids[1]", "seat_ids[2]", "holder_id", "ttl", "request_id"}


async def test_too_many_seats_is_invalid(world: World) -> None:
    """More seats than the per-hold limit is INVALID_ARGUMENT with the limit in the message."""
    with pytest.raises(InvalidArgument, match="at most 3 seats"):
        await world.inventory.reserve("show", ["A-1", "A-2", "A-3", "A-4"], "alice", None)


async def test_default_ttl_applies_when_unset(world: World) -> None:
    """A Reserve without ttl lives for the configured default."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    assert hold.expires_at_ms == world.clock.now_ms() + world.limits.default_ttl_ms


async def test_unknown_event_is_event_not_found(world: World) -> None:
    """Reserving in an event that exists nowhere is NOT_FOUND EVENT_NOT_FOUND."""
    with pytest.raises(EventNotFound):
        await world.inventory.reserve("nope", ["A-1"], "alice", None)


async def test_garbage_hold_id_is_invalid_argument(world: World) -> None:
    """A string that is not a hold id of ours is INVALID_ARGUMENT on hold_id."""
    with pytest.raises(InvalidArgument, match="hold_id"):
        await world.inventory.release("not-a-hold", "alice")


async def test_hold_of_unknown_event_is_hold_not_found(world: World) -> None:
    """A well-formed hold id of an event that does not exist is HOLD_NOT_FOUND."""
    with pytest.raises(HoldNotFound):
        await world.inventory.release(new_hold_id("ghost"), "alice")


async def test_data_loss_reloads_the_event_from_the_repository(world: World) -> None:
    """After Redis loses everything, the next call reloads seats and sold seats."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    world.repo.booked[("show", "A-2")] = "bk_1"
    await world.redis.flushall()
    availability = await world.inventory.availability("show")
    statuses = dict(availability.seats)
    assert statuses["A-1"] is SeatStatus.AVAILABLE  # the hold died with Redis's data
    assert statuses["A-2"] is SeatStatus.BOOKED
    with pytest.raises(SeatsUnavailable):
        await world.inventory.reserve("show", ["A-2"], "bob", None)
    with pytest.raises(HoldNotFound):
        await world.inventory.release(hold.hold_id, "alice")


async def test_a_caller_giving_up_on_a_shared_reload_leaves_it_to_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Redis lost its data two calls wait for one reload of the event (slow:
    it waits for the booking fence); the one that started it gives up (its
    deadline): the other still gets its hold, not that caller's cancellation."""
    await world.redis.flushall()
    gate = asyncio.Event()
    snapshot = world.repo.snapshot

    async def slow_snapshot(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await snapshot(*args, **kwargs)

    monkeypatch.setattr(world.repo, "snapshot", slow_snapshot)

    async def impatient() -> None:
        async with asyncio.timeout(0.05):
            await world.inventory.reserve("show", ["A-1"], "alice", None)

    first = asyncio.create_task(impatient())
    await asyncio.sleep(0)  # the first call starts the reload
    patient = asyncio.create_task(world.inventory.reserve("show", ["A-2"], "bob", None))
    with pytest.raises(TimeoutError):
        await first
    gate.set()
    async with asyncio.timeout(5):
        hold = await patient
    assert hold.seat_ids == ("A-2",)
    assert dict((await world.inventory.availability("show")).seats)["A-1"] is (SeatStatus.AVAILABLE)


async def test_availability_lists_seats_in_map_order_with_counts(world: World) -> None:
    """GetAvailability lists every seat in seat-map order and counts each status."""
    await world.inventory.reserve("show", ["A-3", "A-1"], "alice", None)
    availability = await world.inventory.availability("show")
    assert [s for s, _ in availability.seats] == [s.seat_id for s in SEATS]
    assert (availability.counts.available, availability.counts.held) == (3, 2)


async def test_get_event_counts_statuses(world: World) -> None:
    """GetEvent reports the seat map size and how many seats are held."""
    await world.inventory.reserve("show", ["A-3"], "alice", None)
    event, counts = await world.admin.get_event("show")
    assert (len(event.seats), counts.held, counts.available) == (5, 1, 4)
