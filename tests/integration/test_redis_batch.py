"""Script calls made together travel to Redis as one pipeline (adapters/redis/batch.py):
each call keeps its own reply and its own error, a caller that gives up drops
only its own call, and a lost connection fails (or retries) only the calls it
carried, never leaving an unread reply on a pooled connection. Every test runs
twice: replies read straight from redis-py's hiredis reader (the default with
hiredis installed) and through redis-py's ``read_response`` (any other parser)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from seat_inventory.adapters.redis import RedisHoldStore, batch, connect_redis
from seat_inventory.adapters.redis.batch import ScriptBatcher
from seat_inventory.domain.errors import (
    BackendUnavailable,
    HoldNotFound,
    SeatNotFound,
    SeatsUnavailable,
)
from seat_inventory.domain.ids import new_hold_id
from seat_inventory.domain.policy import reserve_fingerprint
from seat_inventory.service_layer.ports import EventNotLoaded, EventSnapshot, ReserveRequest
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

EVENT = "batch-ev"
SEATS = tuple(f"S{i}" for i in range(1, 201))


def request(seats: tuple[str, ...], event: str = EVENT, holder: str = "alice") -> ReserveRequest:
    return ReserveRequest(
        event_id=event,
        hold_id=new_hold_id(event),
        holder_id=holder,
        seat_ids=seats,
        ttl_ms=60_000,
        max_lifetime_ms=120_000,
        request_id="",
        fingerprint=reserve_fingerprint(seats, 60_000),
    )


@pytest.fixture(autouse=True, params=["direct", "read_response"])
def reply_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "read_response":
        monkeypatch.setattr(batch, "_HiredisParser", None)
    return str(request.param)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = connect_redis(redis_url)
    await redis.flushdb()
    yield redis
    await redis.aclose()


@pytest.fixture
async def store(client: aioredis.Redis) -> AsyncIterator[RedisHoldStore]:
    holds = RedisHoldStore(client)
    assert holds.batcher is not None
    await holds.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    yield holds
    await holds.aclose()


async def held_seats(client: aioredis.Redis) -> set[str]:
    """Seats with a live seat key."""
    keys = [key async for key in client.scan_iter(match="{e:batch-ev}:seat:*")]
    return {key.rsplit(":", 1)[1] for key in keys}


async def pool_is_clean(client: aioredis.Redis) -> bool:
    """No idle pooled connection has a reply waiting to be read."""
    for connection in client.connection_pool._available_connections:
        if connection.is_connected and await connection.can_read():
            return False
    return True


def test_only_a_plain_client_of_one_server_is_batched(redis_url: str) -> None:
    """fakeredis (the embedded mode) and anything not a plain client run each call alone."""
    assert ScriptBatcher.for_client(connect_redis(None)) is None
    assert ScriptBatcher.for_client(object()) is None
    assert ScriptBatcher.for_client(connect_redis(redis_url)) is not None
    assert RedisHoldStore(connect_redis(redis_url), batching=False).batcher is None


async def test_calls_made_together_share_batches_and_keep_their_own_replies(
    store: RedisHoldStore, client: aioredis.Redis, reply_reader: str
) -> None:
    """100 Reserves issued at once go out in far fewer batches; each gets its own hold."""
    assert store.batcher is not None
    before, direct_before = store.batcher.batches, store.batcher.direct_reads
    pairs = [(SEATS[2 * i], SEATS[2 * i + 1]) for i in range(100)]
    holds = await asyncio.gather(*(store.reserve(request(pair)) for pair in pairs))
    assert [hold.seat_ids for hold in holds] == pairs
    assert len({hold.hold_id for hold in holds}) == 100
    assert store.batcher.batches - before <= 10
    direct = store.batcher.direct_reads - direct_before
    assert direct == (store.batcher.batches - before if reply_reader == "direct" else 0)
    assert await held_seats(client) == set(SEATS)
    assert await pool_is_clean(client)


async def trickle(
    store: RedisHoldStore, pairs: list[tuple[str, str]], pause_s: float
) -> list[object]:
    """Reserves started one at a time, ``pause_s`` apart (longer than Redis takes to
    answer one), the way grpc.aio hands a busy server its calls, all of them in
    flight together."""
    calls = []
    for pair in pairs:
        calls.append(asyncio.ensure_future(store.reserve(request(pair))))
        await asyncio.sleep(pause_s)
    return list(await asyncio.gather(*calls))


async def test_calls_trickling_in_from_many_callers_wait_for_company(
    client: aioredis.Redis,
) -> None:
    """Calls arriving one per loop iteration, densely and from many callers, wait
    (up to the linger) for the next ones: far fewer batches than calls."""
    # A generous linger, so that a slow machine still counts as dense.
    holds = RedisHoldStore(client, batch_linger_s=0.05)
    batcher = holds.batcher
    assert batcher is not None
    await holds.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    pairs = [(SEATS[2 * i], SEATS[2 * i + 1]) for i in range(100)]
    await asyncio.gather(*(holds.reserve(request(pair)) for pair in pairs[:40]))  # many callers
    batches = batcher.batches
    got = await trickle(holds, pairs[40:88], pause_s=0.002)
    assert len({hold.hold_id for hold in got}) == 48  # type: ignore[attr-defined]
    assert batcher.lingered >= 1
    # Sent at once, each would go alone (Redis answers within the pause): 48 batches.
    assert batcher.batches - batches <= 12
    assert await held_seats(client) == {seat for pair in pairs[:88] for seat in pair}
    assert await pool_is_clean(client)
    await holds.aclose()


async def test_a_lone_caller_or_a_zero_linger_never_waits(client: aioredis.Redis) -> None:
    """One caller calling in a loop makes batches of one and is never kept waiting,
    even with a linger; with the linger at 0 (the default), trickling calls go
    out at once too."""
    lone = RedisHoldStore(client, batch_linger_s=0.001)
    assert lone.batcher is not None
    await lone.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    for i in range(30):
        await lone.reserve(request((SEATS[i],)))
    assert (lone.batcher.batches, lone.batcher.calls, lone.batcher.lingered) == (30, 30, 0)
    await lone.aclose()

    eager = RedisHoldStore(client)
    assert eager.batcher is not None
    pairs = [(SEATS[2 * i], SEATS[2 * i + 1]) for i in range(15, 100)]
    await asyncio.gather(*(eager.reserve(request(pair)) for pair in pairs[:40]))
    batches = eager.batcher.batches
    await trickle(eager, pairs[40:80], pause_s=0.002)
    assert eager.batcher.lingered == 0
    assert eager.batcher.batches - batches >= 30  # each (nearly) alone
    await eager.aclose()


async def test_one_seat_asked_by_many_at_once_is_granted_once(store: RedisHoldStore) -> None:
    """Batching keeps each script atomic: 50 callers in one batch, one winner."""
    results = await asyncio.gather(
        *(store.reserve(request(("S1", "S2"), holder=f"h{i}")) for i in range(50)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, SeatsUnavailable) for r in results if r is not winners[0])


async def test_each_call_of_a_batch_gets_its_own_error(store: RedisHoldStore) -> None:
    """A conflict, an unknown seat, an unknown hold and an unloaded event in one batch."""
    first = await store.reserve(request(("S1",)))
    results = await asyncio.gather(
        store.reserve(request(("S3", "S4"))),
        store.reserve(request(("S1", "S5"))),
        store.reserve(request(("S6", "nope"))),
        store.release(EVENT, new_hold_id(EVENT), "alice"),
        store.reserve(request(("S1",), event="not-loaded")),
        store.release(EVENT, first.hold_id, "alice"),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException)
    assert results[0].seat_ids == ("S3", "S4")
    assert isinstance(results[1], SeatsUnavailable)
    assert isinstance(results[2], SeatNotFound)
    assert isinstance(results[3], HoldNotFound)
    assert isinstance(results[4], EventNotLoaded)
    assert results[5] is True


async def test_scripts_lost_by_redis_are_loaded_again(
    store: RedisHoldStore, client: aioredis.Redis
) -> None:
    """After SCRIPT FLUSH every call of the batch gets NOSCRIPT, loads and succeeds."""
    await client.script_flush()
    holds = await asyncio.gather(*(store.reserve(request((SEATS[i],))) for i in range(20)))
    assert [hold.seat_ids for hold in holds] == [(SEATS[i],) for i in range(20)]
    assert await pool_is_clean(client)


async def test_a_caller_cancelled_before_the_send_is_not_sent(
    store: RedisHoldStore, client: aioredis.Redis
) -> None:
    """Cancelled in the iteration it called: its script never runs, the others do."""
    tasks = [asyncio.create_task(store.reserve(request((SEATS[i],)))) for i in range(5)]
    await asyncio.sleep(0)  # every task has queued its call; the batch is not sent yet
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert await held_seats(client) == {SEATS[0], SEATS[1], SEATS[3], SEATS[4]}
    assert await pool_is_clean(client)


async def test_a_caller_giving_up_mid_batch_leaves_the_others_and_the_pool_alone(
    redis_url: str, redis_server: object
) -> None:
    """One caller's deadline runs out while its batch is on the wire (a slow
    path): the others get their replies, the reply of the one that gave up is
    read and dropped, and the connection goes back to the pool clean."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        client = connect_redis(f"redis://{proxy.address()}/0")
        store = RedisHoldStore(client)
        try:
            await client.flushdb()
            await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
            proxy.slow(0.3)

            async def impatient() -> object:
                async with asyncio.timeout(0.1):
                    return await store.reserve(request(("S1",)))

            results = await asyncio.gather(
                store.reserve(request(("S2",))),
                impatient(),
                store.reserve(request(("S3",))),
                return_exceptions=True,
            )
            assert isinstance(results[1], TimeoutError)
            assert [r.seat_ids for r in (results[0], results[2])] == [("S2",), ("S3",)]  # type: ignore[union-attr]
            proxy.slow(0)
            # The impatient call had been sent: Redis ran it, its reply was thrown away.
            assert await held_seats(client) == {"S1", "S2", "S3"}
            assert await pool_is_clean(client)
            hold = await store.reserve(request(("S4",)))
            assert hold.seat_ids == ("S4",)
        finally:
            await store.aclose()
            await client.aclose()


async def test_a_connection_lost_mid_batch_fails_only_its_calls(redis_url: str) -> None:
    """The path to Redis is cut while a batch is on it: its callers get
    BACKEND_UNAVAILABLE (the retry on a fresh connection is refused too), and
    once the path is back the next calls succeed on a fresh connection."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        client = connect_redis(f"redis://{proxy.address()}/0", timeout_s=0.5)
        store = RedisHoldStore(client)
        try:
            await client.flushdb()
            await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
            fired = proxy.trip_on(b"EVALSHA", proxy.down)
            results = await asyncio.gather(
                *(store.reserve(request((SEATS[i],))) for i in range(5)),
                return_exceptions=True,
            )
            assert fired.is_set()
            assert all(isinstance(r, BackendUnavailable) for r in results), results
            await proxy.up()
            holds = await asyncio.gather(*(store.reserve(request((SEATS[i],))) for i in range(5)))
            assert [h.seat_ids for h in holds] == [(SEATS[i],) for i in range(5)]
            assert await pool_is_clean(client)
        finally:
            await store.aclose()
            await client.aclose()


async def test_a_stale_connection_is_retried_once_on_a_fresh_one(redis_url: str) -> None:
    """Every pooled connection is reset while idle (a Redis restart, a proxy
    timeout): the next batch fails on it and its calls succeed on a fresh one."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        client = connect_redis(f"redis://{proxy.address()}/0", timeout_s=0.5)
        store = RedisHoldStore(client)
        try:
            await client.flushdb()
            await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
            await store.reserve(request(("S1",)))
            assert proxy.reset_all() >= 1
            holds = await asyncio.gather(
                *(store.reserve(request((SEATS[i],))) for i in range(1, 6))
            )
            assert [h.seat_ids for h in holds] == [(SEATS[i],) for i in range(1, 6)]
        finally:
            await store.aclose()
            await client.aclose()


async def test_a_redis_that_does_not_answer_is_backend_unavailable(redis_url: str) -> None:
    """Replies slower than the socket timeout: BACKEND_UNAVAILABLE, not a hang."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        client = connect_redis(f"redis://{proxy.address()}/0", timeout_s=0.2)
        store = RedisHoldStore(client)
        try:
            await client.flushdb()
            await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
            proxy.slow(0.5)
            results = await asyncio.gather(
                *(store.reserve(request((SEATS[i],))) for i in range(3)),
                return_exceptions=True,
            )
            assert all(isinstance(r, BackendUnavailable) for r in results), results
            proxy.slow(0)
            hold = await store.reserve(request(("S9",)))
            assert hold.seat_ids == ("S9",)
        finally:
            await store.aclose()
            await client.aclose()


@pytest.mark.parametrize("hiredis", [True, False], ids=["hiredis-writer", "own-writer"])
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_batch_is_packed_as_redis_py_packs_it(hiredis: bool, encoding: str) -> None:
    """The batch's RESP writers (hiredis's, our own) agree with redis-py's, byte
    for byte, whatever the client's encoding (hiredis's writer knows only UTF-8)."""
    from redis.asyncio.connection import Connection

    from seat_inventory.adapters.redis import batch
    from seat_inventory.adapters.redis.batch import _Call, _pack

    if hiredis:
        assert batch._hiredis_pack is not None, "redis[hiredis] is a dependency"
    connection = Connection(decode_responses=True, encoding=encoding)
    loop = asyncio.new_event_loop()
    try:
        commands = [
            ("EVALSHA", "a" * 40, 2, "{e:x}:seats", "clé", "", 100_000, -5, "s1"),
            ("EVALSHA", "b" * 40, 0),
            ("EVALSHA", "c" * 40, 0, 2.5, b"\x00raw"),  # our writer: redis-py packs the batch
        ]
        calls = [_Call(command, loop.create_future()) for command in commands]
        for n in (1, 2, 3):
            assert b"".join(_pack(connection, calls[:n], hiredis=hiredis)) == b"".join(
                connection.pack_commands(commands[:n])
            )
    finally:
        loop.close()


async def test_nothing_listening_is_backend_unavailable_at_once() -> None:
    """No Redis on the port: every call of the batch fails BACKEND_UNAVAILABLE
    (connection refused), none waits for its deadline; a second batch too."""
    from tests.support.services import free_port

    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    store = RedisHoldStore(client)
    try:
        for _ in range(2):
            async with asyncio.timeout(30):  # a hang guard: a refused connect fails at once
                results = await asyncio.gather(
                    *(store.reserve(request((SEATS[i],))) for i in range(3)),
                    return_exceptions=True,
                )
            assert all(isinstance(r, BackendUnavailable) for r in results), results
    finally:
        await store.aclose()
        await client.aclose()


async def test_closing_the_store_mid_batch_fails_its_callers_without_a_retry(
    redis_url: str,
) -> None:
    """``aclose`` while a batch is on the wire: its callers get BACKEND_UNAVAILABLE
    (their scripts may have run, so they are not sent again) and nothing hangs."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        client = connect_redis(f"redis://{proxy.address()}/0")
        store = RedisHoldStore(client)
        try:
            await client.flushdb()
            await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
            proxy.slow(0.3)
            calls = [asyncio.create_task(store.reserve(request((SEATS[i],)))) for i in range(3)]
            await asyncio.sleep(0.1)  # sent, replies not back yet
            await store.aclose()
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, BackendUnavailable) for r in results), results
            proxy.slow(0)
            await asyncio.sleep(0.5)  # whatever was on the wire has arrived
            assert await held_seats(client) <= {SEATS[0], SEATS[1], SEATS[2]}
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def behind_proxy(
    redis_url: str, *, timeout_s: float = 2.0, batching: bool = True
) -> AsyncIterator[tuple[TcpProxy, aioredis.Redis, RedisHoldStore]]:
    """A store on the loaded event, reaching Redis through a proxy the test can cut,
    slow down or make lose a reply."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        client = connect_redis(f"redis://{proxy.address()}/0", timeout_s=timeout_s)
        store = RedisHoldStore(client, batching=batching)
        try:
            await client.flushdb()
            await store.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
            yield proxy, client, store
        finally:
            await store.aclose()
            await client.aclose()


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "alone"])
async def test_a_reserve_whose_reply_was_lost_answers_as_it_ran(
    redis_url: str, batching: bool
) -> None:
    """Redis ran a Reserve, then the connection broke before the reply came back;
    the call goes again on a fresh connection (the store's retry when batched,
    redis-py's alone) and answers with the hold its first run made: not
    SEATS_UNAVAILABLE for seats it took itself, and no second, unknown hold."""
    async with behind_proxy(redis_url, batching=batching) as (proxy, client, store):
        await store.reserve(request(("S9",)))  # the script is loaded: the lost call runs
        lost = proxy.lose_reply_to(b"$2\r\nS7\r\n")
        hold = await store.reserve(request(("S7", "S8")))
        assert lost.is_set()
        assert hold.seat_ids == ("S7", "S8")
        assert {await client.get(f"{{e:{EVENT}}}:seat:{s}") for s in ("S7", "S8")} == {
            f"{hold.hold_id}|{hold.expires_at_ms}"
        }
        assert await held_seats(client) == {"S7", "S8", "S9"}
        assert await store.release(EVENT, hold.hold_id, "alice") is True
        assert await held_seats(client) == {"S9"}


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "alone"])
async def test_a_release_whose_reply_was_lost_still_says_it_released(
    redis_url: str, batching: bool
) -> None:
    """The same for Release: the call that released the hold answers released=True
    although its second run found the hold released; a later Release of the same
    hold (a new call) answers released=False."""
    async with behind_proxy(redis_url, batching=batching) as (proxy, client, store):
        warm = await store.reserve(request(("S6",)))
        await store.release(EVENT, warm.hold_id, "alice")  # the script is loaded
        hold = await store.reserve(request(("S5",)))
        lost = proxy.lose_reply_to(hold.hold_id.encode())
        assert await store.release(EVENT, hold.hold_id, "alice") is True
        assert lost.is_set()
        assert await store.release(EVENT, hold.hold_id, "alice") is False
        assert await held_seats(client) == set()


async def test_calls_queued_behind_a_batch_redis_does_not_answer_fail_with_it(
    redis_url: str,
) -> None:
    """Redis stops answering while a batch is out: its calls time out, and the calls
    queued behind it fail at the same moment without being sent (each would wait a
    whole timeout again); once Redis answers, the next call goes through."""
    async with behind_proxy(redis_url, timeout_s=0.3) as (proxy, _, store):
        assert store.batcher is not None
        await store.reserve(request(("S9",)))
        sent = store.batcher.batches
        proxy.slow(1.0)
        first = asyncio.create_task(store.reserve(request(("S1",))))
        await asyncio.sleep(0.05)  # on the wire, no answer coming
        queued = [asyncio.create_task(store.reserve(request((s,)))) for s in SEATS[1:4]]
        results = await asyncio.gather(first, *queued, return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in results), results
        # The queued calls failed with the batch's own timeout, not one of their own.
        assert len({id(r.__cause__) for r in results}) == 1
        assert store.batcher.batches == sent + 1  # and were never sent
        proxy.slow(0)
        await asyncio.sleep(1.2)  # what was on the wire has arrived
        hold = await store.reserve(request(("S5",)))
        assert hold.seat_ids == ("S5",)


async def test_a_read_redis_does_not_answer_is_not_sent_again(redis_url: str) -> None:
    """A snapshot read (sent alone, not batched) that times out is BACKEND_UNAVAILABLE
    after that one timeout: no second try on a fresh connection, which would wait
    as long again. (A connection that failed is still tried once more.)"""
    async with behind_proxy(redis_url, timeout_s=0.3) as (proxy, _, store):
        await store.live_state(EVENT)
        connections = proxy.accepted
        proxy.slow(1.0)
        with pytest.raises(BackendUnavailable):
            await store.live_state(EVENT)
        assert proxy.accepted == connections
        proxy.slow(0)
        await asyncio.sleep(1.2)
        assert (await store.live_state(EVENT)).held == frozenset()
