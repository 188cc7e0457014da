"""Servers the benchmark starts besides ``seat-inventory serve``, each on the same
grpc.aio stack (the options of ``seat_inventory.api.server.server_options``,
the service's extra accept loops of ``seat_inventory.api.accept`` and its
draining of grpc.aio's wake-ups, ``seatinventory.client.wakeups``):

- ``ceiling``: SeatInventory/Reserve answering an empty message at once, the
  most a grpc.aio process can answer on this machine;
- ``naive`` and ``dbonly``: the alternatives in ``alternatives/``, serving
  the real SeatInventory service (Reserve) so that the same requests drive them;
- ``layer-messages``, ``layer-redis`` and ``layer-store``: the ceiling plus
  one layer of what Reserve does at a time, to show where Reserve's server
  time goes: decoding the request and encoding a real ReserveResponse; then
  also one script call on Redis through the service's own batched path
  (``ScriptBatcher``); then the store's real reserve.lua call instead (a hold
  id, the script's arguments and reply, a hold made in Redis).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc

RESERVE = "/seatinventory.v1.SeatInventory/Reserve"


def grpc_server(reuse_port: bool = False) -> grpc.aio.Server:
    from seat_inventory.api.server import server_options
    from seat_inventory.config import Settings

    options = server_options(Settings())
    if reuse_port:  # several ceiling processes share one port, as workers would
        options = [(k, 1 if k == "grpc.so_reuseport" else v) for k, v in options]
    return grpc.aio.server(options=options)


async def _empty(request: bytes, context: Any) -> bytes:
    return b""


async def _layer(role: str, extra: dict[str, Any], closing: list[Any]) -> Any:
    """Reserve's handler reduced to its messages; then also one Redis call; then
    the store's real reserve.lua call instead (its arguments, its reply, a hold)."""
    from seatinventory.v1 import seat_inventory_pb2 as pb
    from seatinventory.v1 import types_pb2

    from seat_inventory.adapters.redis.batch import ScriptBatcher
    from seat_inventory.adapters.redis.connection import connect_redis
    from seat_inventory.adapters.redis.store import RedisHoldStore
    from seat_inventory.domain.ids import new_hold_id
    from seat_inventory.service_layer.ports import ReserveRequest

    hold = types_pb2.Hold(hold_id="x" * 44, holder_id="bench")
    hold.expires_at.FromMilliseconds(1_900_000_000_000)
    redis: Any = None
    store: RedisHoldStore | None = None
    if role in ("layer-redis", "layer-store"):
        redis = connect_redis(extra["redis_url"], timeout_s=2.0)
        closing.append(redis)
        sha = await redis.script_load("return ARGV[1]")
        batcher = ScriptBatcher.for_client(redis)
        if batcher is None:
            raise SystemExit(f"bench {role}: needs a plain Redis server")
        closing.append(batcher)
        if role == "layer-store":
            store = RedisHoldStore(redis)
            closing.append(store)

    async def reserve(request: bytes, context: Any) -> bytes:
        req = pb.ReserveRequest.FromString(request)
        reply = pb.ReserveResponse()
        if store is not None:
            # The event is the service's, loaded in the same Redis; the service's
            # sweeper expires these holds too.
            made = await store.reserve(
                ReserveRequest(
                    event_id=req.event_id,
                    hold_id=new_hold_id(req.event_id),
                    holder_id=req.holder_id,
                    seat_ids=tuple(req.seat_ids),
                    ttl_ms=req.ttl.ToMilliseconds(),
                    max_lifetime_ms=3_600_000,
                    request_id="",
                    fingerprint="",
                )
            )
            reply.hold.hold_id = made.hold_id
            reply.hold.expires_at.FromMilliseconds(made.expires_at_ms)
            reply.hold.holder_id = made.holder_id
        else:
            if redis is not None:
                await batcher.evalsha(sha, (), (req.event_id,))
            reply.hold.CopyFrom(hold)
        reply.hold.event_id = req.event_id
        reply.hold.seat_ids.extend(req.seat_ids)
        return reply.SerializeToString()

    return reserve


async def serve(role: str, port: int, extra: dict[str, Any]) -> None:
    from seat_inventory.api.accept import Acceptors, Registrar
    from seat_inventory.config import Settings

    grpc_aio = grpc_server(reuse_port=bool(extra.get("reuse_port")))
    # The service's own way of taking new calls (api/accept.py), the same for every server here.
    acceptors = Acceptors(grpc_aio, Settings().accepts_per_method)
    server: Any = Registrar(grpc_aio, acceptors)
    closing: list[Any] = []
    if role == "ceiling" or role.startswith("layer-"):
        handler = _empty if role == "ceiling" else await _layer(role, extra, closing)
        handlers = {"Reserve": grpc.unary_unary_rpc_method_handler(handler)}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("seatinventory.v1.SeatInventory", handlers),)
        )
        server.add_registered_method_handlers("seatinventory.v1.SeatInventory", handlers)
    else:
        from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc

        if role == "naive":
            from alternatives.naive import NaiveServicer

            servicer: Any = NaiveServicer(extra["redis_url"])
        else:
            from alternatives.dbonly import DbOnlyServicer

            servicer = DbOnlyServicer(extra["dsn"], extra.get("pool", 10))
            await servicer.start()
        closing.append(servicer)
        pb_grpc.add_SeatInventoryServicer_to_server(servicer, server)
    if grpc_aio.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"bench {role}: cannot listen on port {port}")
    await grpc_aio.start()
    acceptors.start()
    from seatinventory.client.wakeups import drain_wakeups

    drain_wakeups()  # as the service's server does once started (seatinventory.client.wakeups)
    from seat_inventory.runtime import DEFAULT_GC_THRESHOLD, tune_gc

    tune_gc(DEFAULT_GC_THRESHOLD)  # the runtime `seat-inventory serve` sets up once built
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await grpc_aio.stop(0.5)
    await acceptors.aclose()
    for item in reversed(closing):
        await (item.aclose() if hasattr(item, "aclose") else item.close())
