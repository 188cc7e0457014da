"""Holds belong to a holder id *of a principal*, and a holder may hold only so
many seats of an event at once (HOLD_LIMIT): the Lua scripts on fakeredis
(unit), a real redis-server and a 3-master cluster this session started
(integration)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from seat_inventory.adapters.redis import RedisHoldStore
from seat_inventory.adapters.redis.keys import EventKeys
from seat_inventory.domain.clock import FakeClock
from seat_inventory.domain.errors import HoldLimitExceeded, HoldNotOwned
from seat_inventory.domain.ids import new_hold_id
from seat_inventory.domain.model import Hold
from seat_inventory.domain.policy import reserve_fingerprint
from seat_inventory.service_layer.ports import EventSnapshot, ReserveRequest

SEATS = tuple(f"A{i}" for i in range(1, 21))
EVENT = "ev-p"
LIMIT = 5


@pytest.fixture
async def store(raw_redis: aioredis.Redis, clock: FakeClock) -> RedisHoldStore:
    holds = RedisHoldStore(raw_redis, clock=clock)
    await holds.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    return holds


def reserve_request(
    seats: tuple[str, ...],
    *,
    holder: str = "alice",
    principal: str = "shop-a",
    request_id: str = "",
    ttl_ms: int = 5_000,
) -> ReserveRequest:
    return ReserveRequest(
        event_id=EVENT,
        hold_id=new_hold_id(EVENT),
        holder_id=holder,
        seat_ids=seats,
        ttl_ms=ttl_ms,
        max_lifetime_ms=60_000,
        request_id=request_id,
        fingerprint=reserve_fingerprint(seats, ttl_ms),
        principal=principal,
        max_held_seats=LIMIT,
    )


async def hold_record(raw_redis: aioredis.Redis, hold: Hold) -> dict[str, str]:
    return dict(await raw_redis.hgetall(EventKeys(EVENT).hold(hold.hold_id)))


async def test_another_principal_cannot_touch_a_hold_and_it_stays_unchanged(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """Principal B, even with A's holder id, gets HoldNotOwned on release, extend and
    claim, and A's hold keeps its seats, expiry and state; A can still release it."""
    hold = await store.reserve(reserve_request(("A1", "A2")))
    before = await hold_record(raw_redis, hold)
    assert before["principal"] == "shop-a"
    with pytest.raises(HoldNotOwned):
        await store.release(EVENT, hold.hold_id, "alice", "shop-b")
    with pytest.raises(HoldNotOwned):
        await store.extend(EVENT, hold.hold_id, "alice", 20_000, "shop-b")
    with pytest.raises(HoldNotOwned):
        await store.claim(EVENT, hold.hold_id, "alice", "shop-b")
    assert await hold_record(raw_redis, hold) == before
    assert (await store.live_state(EVENT)).held == {"A1", "A2"}
    assert await store.release(EVENT, hold.hold_id, "alice", "shop-a") is True


async def test_request_ids_are_scoped_by_principal(store: RedisHoldStore) -> None:
    """The same holder id and request_id under two principals are two requests:
    the second principal gets its own hold, not a replay of the first's."""
    first = await store.reserve(reserve_request(("A1",), request_id="order-1"))
    again = await store.reserve(reserve_request(("A1",), request_id="order-1"))
    assert again.hold_id == first.hold_id  # a replay for the same principal
    other = await store.reserve(reserve_request(("A2",), request_id="order-1", principal="shop-b"))
    assert other.hold_id != first.hold_id
    assert other.seat_ids == ("A2",)


async def test_holds_stored_without_a_principal_belong_to_the_anonymous_one(
    store: RedisHoldStore, raw_redis: aioredis.Redis
) -> None:
    """A hold recorded before principals were (no 'principal' field) is the anonymous
    principal's: a named principal is refused, the anonymous caller may release it."""
    hold = await store.reserve(reserve_request(("A3",), principal="anonymous"))
    await raw_redis.hdel(EventKeys(EVENT).hold(hold.hold_id), "principal")
    with pytest.raises(HoldNotOwned):
        await store.release(EVENT, hold.hold_id, "alice", "shop-a")
    assert await store.release(EVENT, hold.hold_id, "alice") is True


async def test_hold_limit_counts_seats_held_at_once_per_holder_and_principal(
    store: RedisHoldStore,
) -> None:
    """Up to LIMIT seats over several holds; one more is HOLD_LIMIT with the limit and the
    seats held; other holders and the same holder id under another principal are not
    affected, and nothing is held by the refused Reserve."""
    await store.reserve(reserve_request(("A1", "A2", "A3")))
    await store.reserve(reserve_request(("A4", "A5")))
    with pytest.raises(HoldLimitExceeded) as refused:
        await store.reserve(reserve_request(("A6",)))
    assert refused.value.reason == "HOLD_LIMIT"
    assert refused.value.metadata == {"event_id": EVENT, "limit": "5", "held": "5"}
    assert "A6" not in (await store.live_state(EVENT)).held
    await store.reserve(reserve_request(("A6",), holder="bob"))
    await store.reserve(reserve_request(("A7", "A8", "A9", "A10", "A11"), principal="shop-b"))


async def test_released_expired_and_booked_holds_stop_counting(
    store: RedisHoldStore, clock: FakeClock
) -> None:
    """Releasing, lapsing (also before the sweeper ran) and a finalized Confirm free
    the holder's allowance; a claimed hold keeps counting until it is finalized."""
    released = await store.reserve(reserve_request(("A1", "A2", "A3", "A4", "A5")))
    await store.release(EVENT, released.hold_id, "alice", "shop-a")
    await store.reserve(reserve_request(("A1", "A2", "A3", "A4", "A5"), ttl_ms=1_000))
    clock.advance(1_001)  # lapsed, not yet swept
    claimed = await store.reserve(reserve_request(("A6", "A7", "A8")))
    seats = await store.claim(EVENT, claimed.hold_id, "alice", "shop-a")
    with pytest.raises(HoldLimitExceeded):
        await store.reserve(reserve_request(("A9", "A10", "A11")))
    await store.finalize(EVENT, claimed.hold_id, seats)
    await store.reserve(reserve_request(("A9", "A10", "A11", "A12", "A13")))
    clock.advance(10_000)
    assert (await store.expire_due(EVENT))[0] == 2
    assert (await store.reserve(reserve_request(("A14", "A15", "A16", "A17", "A18")))).seat_ids


async def test_extending_or_replaying_does_not_count_twice(
    store: RedisHoldStore, clock: FakeClock
) -> None:
    """At the limit, ExtendHold of one's own hold and a replayed Reserve (same
    request_id) still succeed: the seats are counted once, and an extended hold
    counts until its new expiry."""
    hold = await store.reserve(reserve_request(("A1", "A2", "A3", "A4", "A5"), request_id="r-1"))
    extended = await store.extend(EVENT, hold.hold_id, "alice", 20_000, "shop-a")
    assert extended.expires_at_ms > hold.expires_at_ms
    replay = await store.reserve(reserve_request(("A1", "A2", "A3", "A4", "A5"), request_id="r-1"))
    assert replay.hold_id == hold.hold_id
    with pytest.raises(HoldLimitExceeded):
        await store.reserve(reserve_request(("A6",)))
    clock.advance(6_000)  # past the first expiry, before the extended one
    with pytest.raises(HoldLimitExceeded):
        await store.reserve(reserve_request(("A6",)))


async def test_a_vanished_hold_record_does_not_break_the_count(
    store: RedisHoldStore, raw_redis: aioredis.Redis, clock: FakeClock
) -> None:
    """A hold listed for its holder whose record is gone (lost data) keeps counting
    the seats its entry names until its expiry, then stops: HOLD_LIMIT meanwhile,
    never a script error."""
    hold = await store.reserve(reserve_request(("A1", "A2", "A3", "A4", "A5")))
    await raw_redis.delete(EventKeys(EVENT).hold(hold.hold_id))
    await raw_redis.delete(*(EventKeys(EVENT).seat(s) for s in hold.seat_ids))
    with pytest.raises(HoldLimitExceeded) as refused:
        await store.reserve(reserve_request(("A1",)))
    assert refused.value.metadata["held"] == "5"
    clock.advance(5_001)
    assert (await store.reserve(reserve_request(("A1",)))).seat_ids == ("A1",)


async def holder_entries(raw_redis: aioredis.Redis, principal: str = "shop-a") -> list[str]:
    return [
        m.decode() if isinstance(m, bytes) else m
        for m in await raw_redis.zrange(EventKeys(EVENT).holder(principal, "alice"), 0, -1)
    ]


async def as_entry_without_count(raw_redis: aioredis.Redis, hold: Hold) -> None:
    """Rewrite a hold's holder entry as it was written before entries carried
    their seat count: the bare hold id."""
    key = EventKeys(EVENT).holder("shop-a", "alice")
    member = f"{hold.hold_id}|{len(hold.seat_ids)}"
    score = await raw_redis.zscore(key, member)
    assert score is not None, "a new hold's entry names its seat count"
    await raw_redis.zrem(key, member)
    await raw_redis.zadd(key, {hold.hold_id: score})


async def test_holder_entries_carry_the_seat_count_and_old_entries_still_count(
    store: RedisHoldStore, raw_redis: aioredis.Redis, clock: FakeClock
) -> None:
    """A holder's entry names its hold and seat count (one read counts every hold).
    Entries written before that (bare hold ids, from a server of an earlier
    version) are counted from their hold's record, follow an ExtendHold and leave
    with a Release or the sweeper."""
    first = await store.reserve(reserve_request(("A1", "A2", "A3")))
    assert await holder_entries(raw_redis) == [f"{first.hold_id}|3"]
    await as_entry_without_count(raw_redis, first)
    with pytest.raises(HoldLimitExceeded) as refused:
        await store.reserve(reserve_request(("A4", "A5", "A6")))
    assert refused.value.metadata["held"] == "3"
    second = await store.reserve(reserve_request(("A4", "A5")))
    # an old entry moves with ExtendHold: past the first expiry it still counts
    await store.extend(EVENT, first.hold_id, "alice", 20_000, "shop-a")
    clock.advance(6_000)
    with pytest.raises(HoldLimitExceeded) as refused:
        await store.reserve(reserve_request(("A6", "A7", "A8")))
    assert refused.value.metadata["held"] == "3"  # the second hold lapsed
    assert await store.release(EVENT, first.hold_id, "alice", "shop-a")
    assert await holder_entries(raw_redis) == [f"{second.hold_id}|2"]
    third = await store.reserve(reserve_request(("A7", "A8", "A9")))
    await as_entry_without_count(raw_redis, third)
    clock.advance(6_000)
    assert (await store.expire_due(EVENT))[0] == 2
    assert await holder_entries(raw_redis) == []
