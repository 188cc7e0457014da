"""Contract tests of the hold store's Lua scripts, run on fakeredis (unit) and
on a real redis-server and a 3-master cluster this session started (integration)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import redis.asyncio as aioredis

from seat_inventory.adapters.redis import RedisHoldStore
from seat_inventory.adapters.redis.store import StoreSettings
from seat_inventory.domain.clock import FakeClock
from seat_inventory.domain.errors import (
    HoldNotFound,
    HoldNotOwned,
    InvalidArgument,
    SeatNotFound,
    SeatsUnavailable,
)
from seat_inventory.domain.ids import new_hold_id
from seat_inventory.domain.policy import reserve_fingerprint
from seat_inventory.service_layer.ports import EventNotLoaded, EventSnapshot, ReserveRequest

SEATS = tuple(f"A{i}" for i in range(1, 11))
EVENT = "ev1"


@pytest.fixture
async def store(raw_redis: aioredis.Redis, clock: FakeClock) -> RedisHoldStore:
    holds = RedisHoldStore(raw_redis, clock=clock)
    await holds.load_event(EventSnapshot(EVENT, SEATS, frozenset({"A10"})))
    return holds


def request(
    seats: tuple[str, ...], holder: str = "alice", ttl_ms: int = 5_000, request_id: str = ""
) -> ReserveRequest:
    return ReserveRequest(
        event_id=EVENT,
        hold_id=new_hold_id(EVENT),
        holder_id=holder,
        seat_ids=seats,
        ttl_ms=ttl_ms,
        max_lifetime_ms=20_000,
        request_id=request_id,
        fingerprint=reserve_fingerprint(seats, ttl_ms),
    )


async def feed(raw_redis: aioredis.Redis) -> list[tuple[str, str]]:
    return [(f["r"], f["s"]) for _, f in await raw_redis.xrange("{e:ev1}:feed")]


async def test_reserve_holds_every_seat_and_reports_the_expiry(
    store: RedisHoldStore, clock: FakeClock, raw_redis: aioredis.Redis
) -> None:
    """A Reserve of free seats holds all of them until now + ttl and feeds HELD."""
    hold = await store.reserve(request(("A1", "A2")))
    assert hold.seat_ids == ("A1", "A2")
    assert hold.expires_at_ms == clock.now_ms() + 5_000
    state = await store.live_state(EVENT)
    assert state.held == {"A1", "A2"}
    assert state.booked == {"A10"}
    assert await feed(raw_redis) == [("HELD", "A1,A2")]


@pytest.mark.parametrize(
    ("taken", "asked"),
    [("A2", ("A1", "A2", "A10")), ("A1", ("A1", "A2"))],
    ids=["a-later-seat-taken", "the-first-seat-taken"],
)
async def test_reserve_is_all_or_nothing(
    store: RedisHoldStore, raw_redis: aioredis.Redis, taken: str, asked: tuple[str, ...]
) -> None:
    """When one seat is taken (the first asked for or a later one), none is held (no
    seat key written either) and the error names exactly the taken seats."""
    await store.reserve(request((taken,), holder="bob"))
    with pytest.raises(SeatsUnavailable) as caught:
        await store.reserve(request(asked))
    assert set(caught.value.seat_ids) == {taken} | ({"A10"} & set(asked))
    assert (await store.live_state(EVENT)).held == {taken}
    assert await feed(raw_redis) == [("HELD", taken)]
    for seat in set(asked) - {taken, "A10"}:
        assert await raw_redis.get(f"{{e:ev1}}:seat:{seat}") is None


async def test_unknown_seat_is_seat_not_found(store: RedisHoldStore) -> None:
    """A seat outside the seat map is SEAT_NOT_FOUND, naming it."""
    with pytest.raises(SeatNotFound) as caught:
        await store.reserve(request(("A1", "Z9")))
    assert caught.value.metadata["seat_ids"] == "Z9"


async def test_unloaded_event_signals_not_loaded(store: RedisHoldStore) -> None:
    """An event Redis does not have asks the caller to load it first."""
    with pytest.raises(EventNotLoaded):
        await store.live_state("ev2")


async def test_same_request_id_returns_the_same_hold(store: RedisHoldStore) -> None:
    """A retried Reserve with the same request_id gets the same hold, not a conflict."""
    first = await store.reserve(request(("A1",), request_id="r-1"))
    again = await store.reserve(request(("A1",), request_id="r-1"))
    assert again == first


async def test_request_id_with_other_seats_is_invalid(store: RedisHoldStore) -> None:
    """Reusing a request_id for a different payload is INVALID_ARGUMENT."""
    await store.reserve(request(("A1",), request_id="r-1"))
    with pytest.raises(InvalidArgument):
        await store.reserve(request(("A2",), request_id="r-1"))


async def test_request_id_is_scoped_to_the_holder(store: RedisHoldStore) -> None:
    """Two holders may use the same request_id independently."""
    await store.reserve(request(("A1",), request_id="r-1"))
    other = await store.reserve(request(("A2",), holder="bob", request_id="r-1"))
    assert other.seat_ids == ("A2",)


async def test_concurrent_retries_with_one_request_id_make_one_hold(store: RedisHoldStore) -> None:
    """Ten simultaneous Reserves with one request_id all get the same single hold."""
    holds = await asyncio.gather(
        *(store.reserve(request(("A3",), request_id="r-9")) for _ in range(10))
    )
    assert len({h.hold_id for h in holds}) == 1


async def test_lapsed_hold_frees_its_seats_at_once(store: RedisHoldStore, clock: FakeClock) -> None:
    """At expires_at the seats are free for another holder, without waiting for a sweep."""
    hold = await store.reserve(request(("A1",)))
    clock.advance(5_000)
    other = await store.reserve(request(("A1",), holder="bob"))
    assert other.hold_id != hold.hold_id
    with pytest.raises(HoldNotFound):
        await store.release(EVENT, hold.hold_id, "alice")
    with pytest.raises(HoldNotFound):
        await store.extend(EVENT, hold.hold_id, "alice", 5_000)


async def test_a_hold_whose_seat_another_took_cannot_be_claimed_or_extended(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """A seat key can lapse a moment before its hold does (Redis times the key from
    the script's start, the hold from TIME): if another Reserve took the seat in
    that moment, Confirm's claim and ExtendHold of the first hold are HOLD_NOT_FOUND
    and leave the other hold's seat alone, instead of writing it back as theirs."""
    hold = await store.reserve(request(("A1", "A2")))
    taker = await store.reserve(request(("A3",), holder="bob"))
    # The moment, made by hand: A1's key gone, then taken by bob's hold.
    taken = f"{taker.hold_id}|{taker.expires_at_ms}"
    await raw_redis.set("{e:ev1}:seat:A1", taken, px=5_000)
    with pytest.raises(HoldNotFound):
        await store.claim(EVENT, hold.hold_id, "alice")
    with pytest.raises(HoldNotFound):
        await store.extend(EVENT, hold.hold_id, "alice", 5_000)
    assert await raw_redis.get("{e:ev1}:seat:A1") == taken


async def test_giving_a_hold_up_leaves_a_seat_another_hold_took_alone(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """A seat key lapsed a moment before its hold and another hold took the seat: a
    Release of the first hold frees its other seats but leaves that one to its new
    holder (a Release had deleted whatever key it found)."""
    hold = await store.reserve(request(("A1", "A2")))
    taker = await store.reserve(request(("A3",), holder="bob"))
    taken = f"{taker.hold_id}|{taker.expires_at_ms}"
    await raw_redis.set("{e:ev1}:seat:A1", taken, px=5_000)  # the moment, made by hand
    assert await store.release(EVENT, hold.hold_id, "alice") is True
    assert await raw_redis.get("{e:ev1}:seat:A1") == taken
    with pytest.raises(SeatsUnavailable):
        await store.reserve(request(("A1",), holder="carol"))
    assert ("RELEASED", "A2") in await feed(raw_redis)


async def test_release_frees_seats_once(store: RedisHoldStore, raw_redis: aioredis.Redis) -> None:
    """Release answers True, a second Release False, and the seats are free again."""
    hold = await store.reserve(request(("A1", "A2")))
    assert await store.release(EVENT, hold.hold_id, "alice") is True
    assert await store.release(EVENT, hold.hold_id, "alice") is False
    assert (await store.live_state(EVENT)).held == set()
    assert await feed(raw_redis) == [("HELD", "A1,A2"), ("RELEASED", "A1,A2")]


async def test_another_holder_cannot_release_or_extend(store: RedisHoldStore) -> None:
    """Release and ExtendHold by a different holder are HOLD_NOT_OWNED and change nothing."""
    hold = await store.reserve(request(("A1",)))
    with pytest.raises(HoldNotOwned):
        await store.release(EVENT, hold.hold_id, "mallory")
    with pytest.raises(HoldNotOwned):
        await store.extend(EVENT, hold.hold_id, "mallory", 5_000)
    assert (await store.live_state(EVENT)).held == {"A1"}


async def test_unknown_hold_is_not_found(store: RedisHoldStore) -> None:
    """A hold id that never existed is HOLD_NOT_FOUND."""
    with pytest.raises(HoldNotFound):
        await store.release(EVENT, new_hold_id(EVENT), "alice")


async def test_extend_moves_expiry_but_not_past_the_lifetime_cap(
    store: RedisHoldStore, clock: FakeClock
) -> None:
    """ExtendHold sets now + ttl, capped at creation + max lifetime."""
    hold = await store.reserve(request(("A1",)))
    clock.advance(4_000)
    extended = await store.extend(EVENT, hold.hold_id, "alice", 5_000)
    assert extended.expires_at_ms == clock.now_ms() + 5_000
    clock.advance(4_000)
    capped = await store.extend(EVENT, hold.hold_id, "alice", 19_000)
    assert capped.expires_at_ms == hold.expires_at_ms - 5_000 + 20_000
    clock.advance(4_000)
    with pytest.raises(SeatsUnavailable):
        await store.reserve(request(("A1",), holder="bob"))


async def test_sweeper_expires_due_holds_onto_the_feed(
    store: RedisHoldStore, clock: FakeClock, raw_redis: aioredis.Redis
) -> None:
    """expire_due records EXPIRED for lapsed holds only, and only seats nobody took since."""
    first = await store.reserve(request(("A1", "A2")))
    clock.advance(5_000)
    bob = await store.reserve(request(("A2",), holder="bob", ttl_ms=60_000))
    expired, next_deadline, confirming, more = await store.expire_due(EVENT)
    assert (expired, confirming, more) == (1, [], False)
    assert next_deadline == clock.now_ms() + 60_000
    assert (await feed(raw_redis))[-1] == ("EXPIRED", "A1")
    # bob's seat is left alone: still his, refused to others.
    assert await raw_redis.get("{e:ev1}:seat:A2") == f"{bob.hold_id}|{bob.expires_at_ms}"
    with pytest.raises(SeatsUnavailable):
        await store.reserve(request(("A2",), holder="carol"))
    with pytest.raises(HoldNotFound):
        await store.release(EVENT, first.hold_id, "alice")
    assert await store.expire_due(EVENT) == (0, next_deadline, [], False)


async def test_expire_due_takes_bounded_batches_with_one_feed_entry_each(
    raw_redis: aioredis.Redis, store: RedisHoldStore, clock: FakeClock
) -> None:
    """Many holds due at once: each call expires at most a batch, says whether
    more may be due, and puts one EXPIRED entry on the feed naming each seat once."""
    small = RedisHoldStore(raw_redis, clock=clock, settings=StoreSettings(sweep_batch=3))
    for seat in SEATS[:7]:
        await small.reserve(request((seat,)))
    await small.reserve(request(("A8",), holder="bob", ttl_ms=60_000))
    clock.advance(5_001)
    before = len(await feed(raw_redis))
    passes = [await small.expire_due(EVENT) for _ in range(3)]
    assert [(p.expired, p.confirming, p.more) for p in passes] == [
        (3, [], True),
        (3, [], True),
        (1, [], False),
    ]
    assert passes[-1].next_deadline_ms == clock.now_ms() - 5_001 + 60_000
    entries = (await feed(raw_redis))[before:]
    assert [reason for reason, _ in entries] == ["EXPIRED"] * 3
    assert [len(seats.split(",")) for _, seats in entries] == [3, 3, 1]
    assert sorted(",".join(seats for _, seats in entries).split(",")) == sorted(SEATS[:7])
    assert (await small.live_state(EVENT)).held == {"A8"}
    # The holder's count went with the holds: 7 seats at once fit a limit of 7 again.
    again = dataclasses.replace(request(SEATS[:7]), max_held_seats=7)
    assert (await small.reserve(again)).seat_ids == SEATS[:7]


async def test_expire_due_leaves_a_confirming_hold_in_a_full_batch_for_repair(
    raw_redis: aioredis.Redis, store: RedisHoldStore, clock: FakeClock
) -> None:
    """A confirming hold past its window comes back for repair and stays; the
    held holds of the same batch expire around it."""
    small = RedisHoldStore(raw_redis, clock=clock, settings=StoreSettings(sweep_batch=3))
    claimed = await small.reserve(request(("A1",)))
    await small.claim(EVENT, claimed.hold_id, "alice")
    clock.advance(26_000)
    await small.reserve(request(("A2",)))
    await small.reserve(request(("A3",)))
    clock.advance(6_000)
    first = await small.expire_due(EVENT)
    assert (first.expired, first.confirming, first.more) == (2, [claimed.hold_id], True)
    second = await small.expire_due(EVENT)
    assert (second.expired, second.confirming, second.more) == (0, [claimed.hold_id], False)
    assert (await feed(raw_redis))[-1] in {("EXPIRED", "A2,A3"), ("EXPIRED", "A3,A2")}
    assert (await small.live_state(EVENT)).held == {"A1"}


async def test_load_event_does_not_overwrite_a_loaded_event(store: RedisHoldStore) -> None:
    """Loading an event that is loaded already keeps its live holds."""
    await store.reserve(request(("A1",)))
    await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    assert (await store.live_state(EVENT)).held == {"A1"}
    assert (await store.live_state(EVENT)).booked == {"A10"}


async def test_reload_after_data_loss_keeps_sold_seats_unavailable(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """After FLUSHALL the event reloads from the snapshot and sold seats stay unavailable."""
    await raw_redis.flushall()
    with pytest.raises(EventNotLoaded):
        await store.reserve(request(("A10",)))
    await store.load_event(EventSnapshot(EVENT, SEATS, frozenset({"A10"})))
    with pytest.raises(SeatsUnavailable):
        await store.reserve(request(("A10",)))


async def test_cursor_changes_with_every_change_and_with_a_reload(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """The cursor moves with each feed entry, and a reload starts a new feed epoch."""
    before = (await store.live_state(EVENT)).cursor
    await store.reserve(request(("A1",)))
    after = (await store.live_state(EVENT)).cursor
    assert after != before
    await raw_redis.flushall()
    await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    reloaded = (await store.live_state(EVENT)).cursor
    assert reloaded.split(".")[0] != after.split(".")[0]


async def test_real_ttl_frees_seats_without_a_clock(raw_redis: aioredis.Redis) -> None:
    """With Redis's own clock, a 300 ms hold's seats are free again after it lapses."""
    holds = RedisHoldStore(raw_redis)
    await holds.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    hold = await holds.reserve(request(("A1",), ttl_ms=300))
    await asyncio.sleep(0.4)
    assert (await holds.live_state(EVENT)).held == set()
    await holds.reserve(request(("A1",), holder="bob"))
    with pytest.raises(HoldNotFound):
        await holds.extend(EVENT, hold.hold_id, "alice", 1_000)


async def held_index(raw_redis: aioredis.Redis) -> dict[str, float]:
    return {
        (seat.decode() if isinstance(seat, bytes) else seat): score
        for seat, score in await raw_redis.zrange("{e:ev1}:held", 0, -1, withscores=True)
    }


async def test_the_held_index_follows_every_change(
    store: RedisHoldStore, clock: FakeClock, raw_redis: aioredis.Redis
) -> None:
    """Snapshots read held seats from an index (seat -> expiry, inf while pinned):
    reserve, extend, claim, finalize, release, abort and expiry keep it exact,
    and a sweep leaves no entry of a lapsed hold behind."""
    confirmed = await store.reserve(request(("A1", "A2")))
    released = await store.reserve(request(("A3",)))
    aborted = await store.reserve(request(("A4",)))
    await store.reserve(request(("A5",), ttl_ms=1_000))
    assert (await store.live_state(EVENT)).held == {"A1", "A2", "A3", "A4", "A5"}
    extended = await store.extend(EVENT, confirmed.hold_id, "alice", 8_000)
    assert (await held_index(raw_redis))["A1"] == extended.expires_at_ms

    await store.claim(EVENT, confirmed.hold_id, "alice")
    await store.claim(EVENT, aborted.hold_id, "alice")
    assert await store.release(EVENT, released.hold_id, "alice") is True
    clock.advance(10_000)  # past every expiry: only the pinned seats stay held
    state = await store.live_state(EVENT)
    assert state.held == {"A1", "A2", "A4"}
    index = await held_index(raw_redis)
    assert index["A1"] == index["A4"] == float("inf")
    assert "A3" not in index

    await store.finalize(EVENT, confirmed.hold_id, ("A1", "A2"))
    await store.abort_confirm(EVENT, aborted.hold_id)
    state = await store.live_state(EVENT)
    assert state.held == set()
    assert state.booked == {"A1", "A2", "A10"}
    assert set(await held_index(raw_redis)) == {"A5"}  # lapsed by the clock, not swept yet
    await store.expire_due(EVENT)
    assert await held_index(raw_redis) == {}


async def test_holds_from_before_the_index_are_indexed_on_the_first_snapshot(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """Data written by a version without the index (no index key, no flag in the
    meta hash): the first snapshot reads every hold once, builds the index, and
    reports the held and pinned seats all the same."""
    await store.reserve(request(("A1", "A2")))
    pinned = await store.reserve(request(("A3",)))
    await store.claim(EVENT, pinned.hold_id, "alice")
    await raw_redis.delete("{e:ev1}:held")
    await raw_redis.hdel("{e:ev1}:meta", "held_index")
    assert (await store.live_state(EVENT)).held == {"A1", "A2", "A3"}
    index = await held_index(raw_redis)
    assert set(index) == {"A1", "A2", "A3"}
    assert index["A3"] == float("inf")
    await store.reserve(request(("A4",)))
    assert (await store.live_state(EVENT)).held == {"A1", "A2", "A3", "A4"}
