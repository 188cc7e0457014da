"""The one load generator every row of the benchmark uses (a child process).

A closed loop: ``concurrency`` calls in flight on one grpc.aio channel, each
sending a pre-serialised request (no per-call message building), so the
generator spends its CPU on gRPC, not on protobuf. The same loop drives the
raw-backend rows, with the gRPC call replaced by the Lua script on Redis or
the booking INSERTs through asyncpg.

Protocol with the orchestrator: the job arrives as a JSON file named in argv; the process
prints ``READY`` once connected, reads ``GO <start> <end>`` (wall-clock
seconds) from stdin, calls from then on, counts the calls that complete
inside [start, end] and prints one JSON line with the counts, latencies and
its own CPU over that window. A finite request list (``cycle`` false) ends the
window early when it runs out.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

Call = Callable[[int], Awaitable[str]]  # request index -> outcome ("OK" or a code)


class Window:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.cpu0: float | None = None
        self.first_done: float | None = None
        self.last_done = start
        self.outcomes: dict[str, int] = {}
        self.latencies: list[float] = []
        self.granted: list[int] = []  # request indexes that succeeded, any time

    def record(self, index: int, outcome: str, started: float, done: float) -> None:
        if outcome == "OK":
            self.granted.append(index)
        if self.start <= done <= self.end:
            if self.cpu0 is None:
                self.cpu0 = time.process_time()
                self.first_done = done
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.latencies.append(done - started)
            self.last_done = done


async def drive(call: Call, n_requests: int, job: dict[str, Any], window: Window) -> float:
    """Run the closed loop until the window ends (or a finite list runs out)."""
    cycle = bool(job.get("cycle", True))
    next_index = 0
    stop_at = window.end

    async def worker() -> None:
        nonlocal next_index
        while time.time() < stop_at:
            if next_index >= n_requests:
                if not cycle:
                    return
                next_index = 0
            index = next_index
            next_index += 1
            started = time.time()
            outcome = await call(index)
            window.record(index, outcome, started, time.time())

    await asyncio.gather(*(worker() for _ in range(int(job["concurrency"]))))
    return time.process_time()


def summary(
    window: Window, cpu1: float, requests: list[Any], job: dict[str, Any]
) -> dict[str, Any]:
    end = min(window.end, window.last_done) if not job.get("cycle", True) else window.end
    start = window.start if job.get("cycle", True) else (window.first_done or window.start)
    seconds = max(1e-6, end - start)
    calls = sum(window.outcomes.values())
    lat = sorted(window.latencies)
    result: dict[str, Any] = {
        "calls": calls,
        "ok": window.outcomes.get("OK", 0),
        "outcomes": window.outcomes,
        "seconds": seconds,
        "window": [start, end],
        "rps": calls / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else None,
        "gen_cpu": (cpu1 - window.cpu0) / seconds if window.cpu0 is not None else 0.0,
    }
    if job.get("grants_of"):
        # Seats granted more than once while no hold could lapse = double reservations.
        seats_of = job["grants_of"]
        granted: dict[str, int] = {}
        for index in window.granted:
            for seat in seats_of[index % len(seats_of)]:
                granted[seat] = granted.get(seat, 0) + 1
        result["granted_seats"] = sum(granted.values())
        result["double_reservations"] = sum(n - 1 for n in granted.values() if n > 1)
    return result


# --------------------------------------------------------------------------- call makers


async def grpc_call(job: dict[str, Any], requests: list[bytes]) -> tuple[Call, Any]:
    import grpc

    # Each channel its own connection (a local subchannel pool): the kernel hands
    # server processes sharing a port whole connections, so one channel would
    # measure one process of several.
    options = [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    channels = [
        grpc.aio.insecure_channel(job["target"], options=options)
        for _ in range(int(job.get("channels", 1)))
    ]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), 30)
    from seatinventory.client.wakeups import drain_wakeups

    drain_wakeups()  # gRPC's wake-ups taken all at once, as the servers do
    resource = _Channels(channels)
    timeout = float(job.get("timeout_s", 10.0))
    if job.get("kind") == "stream_first":
        streams = [channel.unary_stream(job["method"]) for channel in channels]

        async def first(index: int) -> str:
            call = streams[index % len(streams)](requests[index], timeout=timeout)
            try:
                await call.read()
                return "OK"
            except grpc.aio.AioRpcError as err:
                return err.code().name
            finally:
                call.cancel()

        return first, resource
    unaries = [channel.unary_unary(job["method"]) for channel in channels]

    async def once(index: int) -> str:
        try:
            await unaries[index % len(unaries)](requests[index], timeout=timeout)
            return "OK"
        except grpc.aio.AioRpcError as err:
            return err.code().name

    return once, resource


class _Channels:
    def __init__(self, channels: list[Any]) -> None:
        self.channels = channels

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def raw_reserve(
    redis_url: str, timeout_s: float = 2.0
) -> tuple[Any, Callable[..., Awaitable[str]]]:
    """The reserve script straight on Redis: the store's own call (its arguments,
    its reply parsing; no service layer, no gRPC). Returns (client, reserve)."""
    from seat_inventory.adapters.redis.connection import connect_redis
    from seat_inventory.adapters.redis.store import RedisHoldStore
    from seat_inventory.domain.errors import InventoryError
    from seat_inventory.domain.ids import new_hold_id
    from seat_inventory.service_layer.ports import ReserveRequest

    redis = connect_redis(redis_url, timeout_s=timeout_s)
    store = RedisHoldStore(redis)

    async def reserve(event_id: str, seats: Sequence[str], ttl_ms: int) -> str:
        request = ReserveRequest(
            event_id=event_id,
            hold_id=new_hold_id(event_id),
            holder_id="raw",
            seat_ids=tuple(seats),
            ttl_ms=ttl_ms,
            max_lifetime_ms=3_600_000,
            request_id="",
            fingerprint="",
        )
        try:
            await store.reserve(request)
        except InventoryError as exc:
            return exc.reason
        return "OK"

    return redis, reserve


async def lua_call(job: dict[str, Any], pairs: list[list[str]]) -> tuple[Call, Any]:
    redis, reserve = raw_reserve(job["redis_url"])
    event_id, ttl_ms = job["event_id"], int(job["ttl_ms"])
    await redis.ping()

    async def once(index: int) -> str:
        return await reserve(event_id, pairs[index], ttl_ms)

    return once, redis


async def asyncpg_call(job: dict[str, Any], pairs: list[list[str]]) -> tuple[Call, Any]:
    """A booking's INSERTs straight through asyncpg: one transaction, the booking
    row and its seat rows, on the service's own schema."""
    import secrets

    import asyncpg

    pool = await asyncpg.create_pool(job["dsn"], min_size=job["pool"], max_size=job["pool"])
    event_id = job["event_id"]
    booking_sql = (
        "INSERT INTO bookings (booking_id, event_id, hold_id, holder_id, order_ref, seat_ids,"
        " status, confirmed_at_ms) VALUES ($1, $2, $3, 'raw', 'o', $4, 1, $5)"
    )
    seats_sql = (
        "INSERT INTO booked_seats (event_id, seat_id, booking_id)"
        " SELECT $1, s, $3 FROM unnest($2::text[]) AS s"
    )

    async def once(index: int) -> str:
        booking_id = secrets.token_hex(8)
        seats = pairs[index]
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    booking_sql,
                    booking_id,
                    event_id,
                    "raw-" + booking_id,
                    ",".join(seats),
                    int(time.time() * 1000),
                )
                await conn.execute(seats_sql, event_id, seats, booking_id)
        except asyncpg.PostgresError as exc:
            return type(exc).__name__
        return "OK"

    return once, pool


async def main_async(job: dict[str, Any]) -> None:
    raw = Path(job["requests"]).read_bytes()  # noqa: ASYNC240 - before any load
    requests = pickle.loads(raw)  # noqa: S301 - the orchestrator's own temp file
    kind = job.get("kind", "unary")
    maker = {"lua": lua_call, "asyncpg": asyncpg_call}.get(kind, grpc_call)
    call, resource = await maker(job, requests)
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start, end = (float(x) for x in line.split()[1:3])
    window = Window(start, end)
    cpu1 = await drive(call, len(requests), job, window)
    print(json.dumps(summary(window, cpu1, requests, job)), flush=True)
    close = getattr(resource, "aclose", None) or getattr(resource, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result


def main(argv: list[str]) -> None:
    asyncio.run(main_async(json.loads(Path(argv[0]).read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
