"""Confirm under faults: a server crashing at every step of Confirm, Redis losing
its data, the database out of reach. Whatever happens, SQL decides every sale
and Redis never offers a seat SQL has sold.

Every fault is injected into a process or a proxy the test started itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from seatinventory.v1 import types_pb2
from sqlalchemy.engine import make_url

from seat_inventory.service_layer.failpoints import EXIT_CODE
from tests.e2e.conftest import Running
from tests.e2e.helpers import error_info
from tests.reliability.conftest import NOT_SERVING, SERVING, Client, connect, until
from tests.support.server_process import Ledger, ServerProcess
from tests.support.services import RedisProcess
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

AVAILABLE = types_pb2.SEAT_STATUS_AVAILABLE
HELD = types_pb2.SEAT_STATUS_HELD
BOOKED = types_pb2.SEAT_STATUS_BOOKED

SpawnServer = Callable[..., ServerProcess]
ServeInProcess = Callable[..., Awaitable[tuple[Running, Client]]]


@asynccontextmanager
async def database_proxy(database_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test database's server, and the database's URL through it."""
    url = make_url(database_url)
    async with TcpProxy(url.port or 5432, url.host or "127.0.0.1") as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def unavailable(call: Awaitable[Any]) -> tuple[grpc.aio.AioRpcError, float]:
    """The call must fail UNAVAILABLE BACKEND_UNAVAILABLE; returns the error and
    how long the answer took (printed, never asserted)."""
    started = time.monotonic()
    err = await rpc_error(call)
    took = time.monotonic() - started
    assert (err.code(), error_info(err).reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "BACKEND_UNAVAILABLE",
    ), err
    return err, took


async def crash_confirm(server: ServerProcess, failpoint: str, ttl_s: float) -> tuple[str, str]:
    """Start ``server`` with ``failpoint``, Confirm a fresh hold of A-1 and A-2 so
    that it dies there; returns (event id, hold id)."""
    await server.start(failpoints=failpoint)
    async with connect(server.target) as client:
        event_id = await client.create_event(n=4)
        hold = await client.reserve(event_id, ["A-1", "A-2"], ttl_s=ttl_s)
        err = await rpc_error(client.confirm(hold.hold_id))
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    assert await server.wait_exit() == EXIT_CODE, server.logs()
    assert f"failpoint {failpoint}: exiting now" in server.logs()
    return event_id, hold.hold_id


async def assert_left_confirming(
    ledger: Ledger, event_id: str, hold_id: str, *, committed: bool
) -> None:
    """What a crash inside Confirm leaves: the hold claimed with its seats pinned,
    and a booking row exactly when the commit happened."""
    assert (await ledger.booking_of_hold(hold_id) is not None) is committed
    assert await ledger.hold_state(event_id, hold_id) == "confirming"
    for seat in ("A-1", "A-2"):
        assert await ledger.seat_key(event_id, seat) == f"{hold_id}|0", "seat not pinned"
    assert await ledger.sold(event_id) == set(), "finalized before the crash"


async def settle(client: Client, ledger: Ledger, event_id: str, hold_id: str) -> float:
    """Poll until the hold is settled; at every look a seat SQL has sold is not
    AVAILABLE. Returns the seconds it took. Fails if it stays confirming."""

    async def settled() -> bool:
        sold = await ledger.booked_seats(event_id)  # SQL first: a sale never un-happens
        state = await client.statuses(event_id)
        for seat in ("A-1", "A-2"):
            if seat in sold:
                assert state[seat] != AVAILABLE, f"{seat} sold in SQL, AVAILABLE in Redis"
            else:
                assert state[seat] != BOOKED, f"{seat} BOOKED in Redis, not sold in SQL"
        hold_state = await ledger.hold_state(event_id, hold_id)
        assert hold_state in (None, "confirming"), hold_state
        return hold_state is None

    return await until(settled, "the sweeper never settled the confirming hold")


async def assert_booked(
    client: Client, ledger: Ledger, event_id: str, hold_id: str
) -> types_pb2.Booking:
    """The hold's seats are sold, by both accounts, and nobody can hold them."""
    row = await ledger.booking_of_hold(hold_id)
    assert row is not None
    assert await ledger.booked_seats(event_id) == dict.fromkeys(("A-1", "A-2"), row["booking_id"])
    assert {"A-1", "A-2"} <= await ledger.sold(event_id)
    state = await client.statuses(event_id)
    assert (state["A-1"], state["A-2"], state["A-3"]) == (BOOKED, BOOKED, AVAILABLE)
    err = await rpc_error(client.reserve(event_id, ["A-2"], holder="bob"))
    assert (err.code(), error_info(err).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SEATS_UNAVAILABLE",
    )
    booking = await client.confirm(hold_id)  # a retry answers with the booking SQL has
    assert booking.booking_id == row["booking_id"]
    return booking


async def assert_available(client: Client, ledger: Ledger, event_id: str, hold_id: str) -> None:
    """The hold was given up: no booking, seats free, a late Confirm is HOLD_NOT_FOUND."""
    assert await ledger.booking_of_hold(hold_id) is None
    assert await ledger.given_up(hold_id)
    assert await ledger.booked_seats(event_id) == {}
    assert set((await client.statuses(event_id)).values()) == {AVAILABLE}
    err = await rpc_error(client.confirm(hold_id))
    assert (err.code(), error_info(err).reason) == (grpc.StatusCode.NOT_FOUND, "HOLD_NOT_FOUND")
    assert await ledger.booking_of_hold(hold_id) is None
    await client.reserve(event_id, ["A-1", "A-2"], holder="bob")


@pytest.mark.parametrize(
    ("failpoint", "committed"),
    [
        pytest.param(name, committed, id=name)
        for name, committed in [
            ("after_claim", False),
            ("after_commit", True),
            ("before_finalize", True),
        ]
    ],
)
async def test_crash_inside_confirm_is_repaired(
    spawn_server: SpawnServer, ledger: Ledger, failpoint: str, committed: bool
) -> None:
    """A server process dying at a Confirm step leaves a confirming hold; after a
    restart the sweeper books it when SQL committed it and frees it otherwise."""
    server = spawn_server()
    event_id, hold_id = await crash_confirm(server, failpoint, ttl_s=1)
    await assert_left_confirming(ledger, event_id, hold_id, committed=committed)

    await server.start()  # no failpoints
    async with connect(server.target) as client:
        took = await settle(client, ledger, event_id, hold_id)
        if committed:
            await assert_booked(client, ledger, event_id, hold_id)
        else:
            await assert_available(client, ledger, event_id, hold_id)
    print(f"\n{failpoint}: repaired {took:.2f}s after the restart served")


async def test_confirm_retried_after_a_crash_after_claim_agrees_with_sql(
    spawn_server: SpawnServer, ledger: Ledger
) -> None:
    """The caller retries a Confirm whose server died after the claim: within the
    hold's window the retry books it, and whatever it answers SQL says the same."""
    server = spawn_server()
    # A 5 s hold keeps the crashed Confirm retryable past the restart.
    event_id, hold_id = await crash_confirm(server, "after_claim", ttl_s=5)
    await assert_left_confirming(ledger, event_id, hold_id, committed=False)

    await server.start()
    async with connect(server.target) as client:
        answer: types_pb2.Booking | grpc.aio.AioRpcError
        try:
            answer = await client.confirm(hold_id)
        except grpc.aio.AioRpcError as err:
            answer = err
        if isinstance(answer, types_pb2.Booking):
            outcome = "booked"
            assert (await assert_booked(client, ledger, event_id, hold_id)) == answer
            assert await ledger.hold_state(event_id, hold_id) is None
        else:
            assert (answer.code(), error_info(answer).reason) == (
                grpc.StatusCode.NOT_FOUND,
                "HOLD_NOT_FOUND",
            )
            outcome = "HOLD_NOT_FOUND (repair came first)"
            await settle(client, ledger, event_id, hold_id)
            await assert_available(client, ledger, event_id, hold_id)
    print(f"\nretried Confirm after an after_claim crash: {outcome}")


async def test_booking_cancelled_before_repair_frees_the_seats(
    spawn_server: SpawnServer, ledger: Ledger
) -> None:
    """A booking committed by a Confirm that then crashed is cancelled before the
    sweeper gets to its hold: the cancel gives the confirming hold up, so neither
    repair nor a late finalize marks the seats sold; they are free."""
    server = spawn_server()
    # A 3 s hold leaves time to cancel after the restart (about 1 s), before repair.
    event_id, hold_id = await crash_confirm(server, "after_commit", ttl_s=3)
    row = await ledger.booking_of_hold(hold_id)
    assert row is not None

    await server.start()
    async with connect(server.target) as client:
        assert await ledger.hold_state(event_id, hold_id) == "confirming", "repair came first"
        cancelled = await client.cancel(row["booking_id"])
        assert cancelled.status == types_pb2.BOOKING_STATUS_CANCELLED
        assert await ledger.hold_state(event_id, hold_id) is None  # given up by the cancel
        assert await client.confirm(hold_id) == cancelled  # a late retry changes nothing
        await settle(client, ledger, event_id, hold_id)
        assert await ledger.booked_seats(event_id) == {}
        assert await ledger.sold(event_id) == set()
        assert set((await client.statuses(event_id)).values()) == {AVAILABLE}
        await client.reserve(event_id, ["A-1", "A-2"], holder="bob")


async def book(client: Client, event_id: str, seats: list[str]) -> types_pb2.Booking:
    hold = await client.reserve(event_id, seats)
    return await client.confirm(hold.hold_id)


async def assert_sold_seat_refused(client: Client, event_id: str) -> None:
    """Bob's Reserve of A-2 (sold) and A-5 (free) is refused, naming A-2 only."""
    err = await rpc_error(client.reserve(event_id, ["A-2", "A-5"], holder="bob"))
    assert (err.code(), error_info(err).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SEATS_UNAVAILABLE",
    )
    assert error_info(err).metadata["seat_ids"] == "A-2"


async def assert_survives_redis_loss(
    client: Client,
    ledger: Ledger,
    lose_data: Callable[[], Awaitable[None]],
) -> None:
    """Bookings made, one cancelled, one hold live; Redis loses everything; the
    first call after that is a Reserve of a sold seat, which must fail."""
    event_id = await client.create_event(n=6)
    kept = await book(client, event_id, ["A-1", "A-2"])
    cancelled = await book(client, event_id, ["A-3"])
    await client.cancel(cancelled.booking_id)
    lost_hold = await client.reserve(event_id, ["A-4"])

    await lose_data()

    await assert_sold_seat_refused(client, event_id)
    state = await client.statuses(event_id)
    assert [state[f"A-{i}"] for i in range(1, 7)] == [BOOKED, BOOKED] + [AVAILABLE] * 4
    assert await ledger.sold(event_id) == {"A-1", "A-2"}
    # the lost hold is gone for good; the booking is still the booking
    err = await rpc_error(client.confirm(lost_hold.hold_id))
    assert error_info(err).reason == "HOLD_NOT_FOUND"
    assert await ledger.booking_of_hold(lost_hold.hold_id) is None
    assert (await client.confirm(kept.hold_id)).booking_id == kept.booking_id
    # and the server keeps selling
    fresh = await book(client, event_id, ["A-3", "A-4"])
    assert set((await ledger.booked_seats(event_id)).values()) == {
        kept.booking_id,
        fresh.booking_id,
    }
    assert await client.health_status() == SERVING


async def test_flushall_keeps_booked_seats_unavailable(
    serve_in_process: ServeInProcess, ledger: Ledger, redis_url: str
) -> None:
    """After FLUSHALL the event is reloaded from SQL: sold seats stay BOOKED and
    unreservable, and the server goes on serving."""
    _, client = await serve_in_process()

    async def flushall() -> None:
        redis = aioredis.Redis.from_url(redis_url)
        await redis.flushall()
        await redis.aclose()

    await assert_survives_redis_loss(client, ledger, flushall)


async def test_redis_restarted_empty_keeps_booked_seats_unavailable(
    serve_in_process: ServeInProcess, postgres_url: str, own_redis: RedisProcess
) -> None:
    """redis-server killed: calls answer UNAVAILABLE and health NOT_SERVING;
    restarted empty: sold seats stay BOOKED and unreservable, and the server
    serves again."""
    _, client = await serve_in_process(redis_url=own_redis.url)
    ledger = Ledger(postgres_url, own_redis.url)

    async def kill_and_restart_empty() -> None:
        event_id = await client.create_event(n=2)
        own_redis.kill()
        _, took = await unavailable(client.reserve(event_id, ["A-1"]))
        print(f"\nReserve with Redis down answered UNAVAILABLE in {took * 1000:.0f} ms")
        await client.wait_health(NOT_SERVING)
        own_redis.start()
        await client.wait_health(SERVING)

    await assert_survives_redis_loss(client, ledger, kill_and_restart_empty)
    await ledger.assert_no_double_sale()


async def test_redis_restarted_from_an_older_snapshot_keeps_seats_sold_since_unavailable(
    serve_in_process: ServeInProcess, postgres_url: str, own_redis: RedisProcess
) -> None:
    """Redis saved to disk (SAVE), then a sale, then redis-server killed and
    restarted: it loads the snapshot, where the seat sold since is free. The
    event counts as not loaded (another Redis process loaded it) and is
    reloaded from SQL before anything runs on it: the seat sold since is
    BOOKED and unreservable; a hold live in the snapshot still confirms."""
    _, client = await serve_in_process(redis_url=own_redis.url)
    ledger = Ledger(postgres_url, own_redis.url)
    event_id = await client.create_event(n=6)
    before = await book(client, event_id, ["A-1"])
    kept_hold = await client.reserve(event_id, ["A-4"])
    redis = aioredis.Redis.from_url(own_redis.url)
    try:
        assert await redis.save()
    finally:
        await redis.aclose()
    sold_since = await book(client, event_id, ["A-2"])

    own_redis.kill()
    await client.wait_health(NOT_SERVING)
    own_redis.start()  # loads the snapshot: A-2 is not sold there
    await client.wait_health(SERVING)

    await assert_sold_seat_refused(client, event_id)
    state = await client.statuses(event_id)
    assert [state[f"A-{i}"] for i in range(1, 7)] == [
        BOOKED,
        BOOKED,
        AVAILABLE,
        HELD,
        AVAILABLE,
        AVAILABLE,
    ]
    assert (await client.confirm(kept_hold.hold_id)).seat_ids == ["A-4"]
    assert await ledger.sold(event_id) == {"A-1", "A-2", "A-4"}
    assert {before.booking_id, sold_since.booking_id} <= set(
        (await ledger.booked_seats(event_id)).values()
    )
    await ledger.assert_no_double_sale()


@pytest.mark.parametrize("outage", ["refused", "blackhole"])
async def test_database_out_of_reach_confirm_is_unavailable_then_books(
    serve_in_process: ServeInProcess, ledger: Ledger, outage: str
) -> None:
    """With the database unreachable (connections refused, or never answered) Confirm
    answers UNAVAILABLE within its deadline, writes nothing and keeps the hold, and
    health says NOT_SERVING; once it is back, health says SERVING and the same
    Confirm books the seats."""
    async with database_proxy(ledger.database_url) as (proxy, proxied_url):
        _, client = await serve_in_process(database_url=proxied_url)
        event_id = await client.create_event(n=4)
        hold = await client.reserve(event_id, ["A-1", "A-2"])

        reset = proxy.down(blackhole=outage == "blackhole")
        # first on the pooled connections the outage just broke ...
        on_pooled, took_pooled = await unavailable(client.confirm(hold.hold_id, timeout_s=3))
        down_for = await client.wait_health(NOT_SERVING)
        # ... then on a connection that has to be opened through the outage, with
        # a deadline shorter than the server's 2 s connect timeout: the answer
        # must come from the caller's deadline budget, not from the timeout.
        on_new, took_new = await unavailable(client.confirm(hold.hold_id, timeout_s=1.2))
        assert await ledger.booking_of_hold(hold.hold_id) is None
        hold_state = await ledger.hold_state(event_id, hold.hold_id)
        assert hold_state in ("held", "confirming")
        state = await client.statuses(event_id)
        assert (state["A-1"], state["A-2"]) == (HELD, HELD)

        await proxy.up()
        up_after = await client.wait_health(SERVING)
        booking = await client.confirm(hold.hold_id, timeout_s=3)
        assert list(booking.seat_ids) == ["A-1", "A-2"]
        row = await ledger.booking_of_hold(hold.hold_id)
        assert row is not None
        assert row["booking_id"] == booking.booking_id
        state = await client.statuses(event_id)
        assert (state["A-1"], state["A-2"]) == (BOOKED, BOOKED)
    print(
        f"\n{outage}: {reset} pooled connection(s) reset; Confirm (deadline 3000 ms) "
        f"answered in {took_pooled * 1000:.0f} ms {on_pooled.details()!r}, then "
        f"(deadline 1200 ms) in {took_new * 1000:.0f} ms {on_new.details()!r}; "
        f"hold left {hold_state}; "
        f"health NOT_SERVING after {down_for:.2f}s, SERVING {up_after:.2f}s after "
        "the database came back"
    )


async def test_database_lost_between_claim_and_commit_confirm_retry_books(
    serve_in_process: ServeInProcess, ledger: Ledger, redis_server: RedisProcess
) -> None:
    """The database goes away just as Confirm claims the hold in Redis: the caller
    gets UNAVAILABLE, the hold stays confirming (not releasable, seats pinned,
    nothing in SQL), and a retry after the database is back books it."""
    async with (
        database_proxy(ledger.database_url) as (db, proxied_url),
        TcpProxy(redis_server.port) as redis,
    ):
        _, client = await serve_in_process(
            database_url=proxied_url, redis_url=f"redis://{redis.address()}/0"
        )
        event_id = await client.create_event(n=4)
        hold = await client.reserve(event_id, ["A-1", "A-2"])
        # The claim is the first Redis command of Confirm naming the hold: cut the
        # database while it is on its way, so it lands inside an open transaction.
        tripped = redis.trip_on(hold.hold_id.encode(), db.down)

        await unavailable(client.confirm(hold.hold_id, timeout_s=3))
        assert tripped.is_set()
        assert await ledger.booking_of_hold(hold.hold_id) is None
        assert await ledger.hold_state(event_id, hold.hold_id) == "confirming"
        assert await ledger.seat_key(event_id, "A-1") == f"{hold.hold_id}|0"
        err = await rpc_error(client.release(hold.hold_id))
        assert error_info(err).reason == "HOLD_CONFIRMING"
        err = await rpc_error(client.reserve(event_id, ["A-1"], holder="bob"))
        assert error_info(err).reason == "SEATS_UNAVAILABLE"

        await db.up()
        await client.wait_health(SERVING)
        booking = await client.confirm(hold.hold_id, timeout_s=3)
        row = await ledger.booking_of_hold(hold.hold_id)
        assert row is not None
        assert row["booking_id"] == booking.booking_id
        assert await ledger.hold_state(event_id, hold.hold_id) is None
        state = await client.statuses(event_id)
        assert (state["A-1"], state["A-2"], state["A-3"]) == (BOOKED, BOOKED, AVAILABLE)
