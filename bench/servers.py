"""Servers the benchmark starts besides ``seat-inventory serve``, each on the same
grpc.aio stack (the options of ``seat_inventory.api.server.server_options``):

- ``ceiling``: SeatInventory/Reserve answering an empty message at once, the
  most a grpc.aio process can answer on this machine;
- ``naive`` and ``dbonly``: the alternatives in ``alternatives/``, serving
  the real SeatInventory service (Reserve) so that the same requests drive them.
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


async def serve(role: str, port: int, extra: dict[str, Any]) -> None:
    server = grpc_server(reuse_port=bool(extra.get("reuse_port")))
    closing: list[Any] = []
    if role == "ceiling":
        handlers = {"Reserve": grpc.unary_unary_rpc_method_handler(_empty)}
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
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"bench {role}: cannot listen on port {port}")
    await server.start()
    from seat_inventory.runtime import DEFAULT_GC_THRESHOLD, tune_gc

    tune_gc(DEFAULT_GC_THRESHOLD)  # the runtime `seat-inventory serve` sets up once built
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)
    for item in closing:
        await item.close()
