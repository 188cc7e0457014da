"""More new calls taken at once than grpc.aio's server takes by itself.

grpc.aio's server (grpcio 1.85) asks gRPC's core for the next call of each
registered method one at a time: a call arrives, the answer goes through the
poller thread to the event loop, the serving task wakes a few loop iterations
later, starts the call's task and only then asks for the next one. Calls
already received wait in the core meanwhile. Under load the loop's iterations
are long, and that hand-off, not the CPU, caps what one process serves: on
the bench's 2-core machine Confirm stayed at ~1,300-1,400 calls/s for 16, 64
and 128 callers with the server's event loop idle a third of the time.

``Acceptors`` keeps ``per_method`` more requests for new calls outstanding
for each method, each in a loop of its own that starts the call exactly as
grpc.aio's own loop does (its ``_handle_rpc`` and ``_schedule_rpc_coro``:
interceptors, handler lookup, cancellation from the peer, status on errors)
and asks for the next call in the same step. Measured side by side (bench/,
4 per method): the empty-RPC ceiling 7,300 -> 11,200 calls/s, Reserve
4,500 -> 6,600, Confirm 1,350 -> 1,760, Release 4,100 -> 6,500; 16 per
method (the default) did better again (bench/PROFILE.md, item 9). Calls
taken here do not pass grpc.aio's ``maximum_concurrent_rpcs`` limiter, which
the service does not use (its limits are its own, api/calls.py).

It uses grpc.aio's private parts. ``start`` checks they are there and
answer as expected; when not (another grpcio), it logs a warning once and
leaves the server as grpc.aio made it, slower but correct. A test pins that
the installed grpcio takes the fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import structlog

from .decoding import tolerant

log = structlog.get_logger(__name__)

__all__ = ["Acceptors", "Registrar"]

try:  # grpc.aio's private parts; checked again in Acceptors.start
    from grpc._cython import cygrpc as _cygrpc  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - grpcio always ships it
    _cygrpc = None

_PRIVATE = ("_MethodResolver", "_handle_rpc", "_schedule_rpc_coro", "_RequestCallError")
# The parameters the loops pass, as grpcio 1.85 names them.
_SIGNATURES = {
    "_handle_rpc": (
        "method_name",
        "method_resolver",
        "interceptors",
        "rpc_state",
        "loop",
        "concurrency_exceeded",
    ),
    "_schedule_rpc_coro": ("rpc_coro", "rpc_state", "loop", "method_name"),
}


def _unknown_internals(core: Any) -> list[str]:
    """The private parts this grpcio lacks or has changed ([] when all is as known)."""
    if core is None or not hasattr(core, "_request_registered_call"):
        return ["AioServer._request_registered_call"]
    unknown = [name for name in _PRIVATE if not hasattr(_cygrpc, name)]
    for name, expected in _SIGNATURES.items():
        code = getattr(getattr(_cygrpc, name, None), "__code__", None)
        if code is None or code.co_varnames[: code.co_argcount] != expected:
            unknown.append(f"{name}{expected}")
    return unknown


class Acceptors:
    """Extra accept loops for a grpc.aio server's registered methods.

    Give it every registered method's handler (``add``) before the server
    starts, ``start`` it once the server has started; the loops end by
    themselves when the server stops (its core fails their requests).
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        per_method: int,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._server = server
        self._per_method = per_method
        self._interceptors = tuple(interceptors)
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._calls: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        # Calls these loops took (for tests and the curious).
        self.accepted = 0

    def add(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        """Methods registered with ``add_registered_method_handlers(service, handlers)``."""
        for name, handler in handlers.items():
            self._handlers[f"/{service}/{name}"] = handler

    @property
    def active(self) -> bool:
        """Whether the extra loops were started."""
        return bool(self._loops)

    @property
    def waiting(self) -> int:
        """Loops still waiting for calls (0 once the server stopped)."""
        return sum(not task.done() for task in self._loops)

    def start(self) -> bool:
        """Start the loops; False (and a warning) when this grpcio cannot take them."""
        if self._per_method <= 0 or not self._handlers:
            return False
        core = getattr(self._server, "_server", None)
        unknown = _unknown_internals(core)
        if unknown:
            log.warning(
                "grpc.aio internals differ from the ones known: new calls are taken one at a "
                "time per method (slower, still correct)",
                grpc_version=grpc.__version__,
                missing=unknown,
            )
            return False
        resolver = _cygrpc._MethodResolver([], dict(self._handlers))
        loop = asyncio.get_running_loop()
        for method in self._handlers:
            for _ in range(self._per_method):
                task = loop.create_task(self._accept(core, method, resolver, loop))
                self._loops.append(task)
        return True

    async def _accept(self, core: Any, method: str, resolver: Any, loop: Any) -> None:
        method_bytes = method.encode()
        handle, schedule = _cygrpc._handle_rpc, _cygrpc._schedule_rpc_coro
        request_error = _cygrpc._RequestCallError
        interceptors, calls = self._interceptors, self._calls
        while True:
            try:
                rpc_state = await core._request_registered_call(method_bytes)
            except request_error:
                return  # the server is shutting down
            except Exception as exc:  # noqa: BLE001 - grpc.aio's own loop still serves
                if core.is_running():
                    log.warning("extra accept loop stopped", method=method, error=repr(exc))
                return
            self.accepted += 1
            try:
                call = handle(method, resolver, interceptors, rpc_state, loop, False)
                task = loop.create_task(schedule(call, rpc_state, loop, method))
            except Exception:  # checked at start; never seen
                log.exception("extra accept loop stopped", method=method)
                return
            calls.add(task)
            task.add_done_callback(calls.discard)

    async def aclose(self) -> None:
        """Stop the loops still waiting (they end by themselves once the server
        stopped; this is for a server that never started or was left running)."""
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()


class Registrar:
    """Stands in for a server to ``add_*_to_server`` functions: passes the
    registrations on, noting the registered methods for ``acceptors``. The
    methods of ``ours`` get requests that do not parse as ``Undecodable``
    (api/decoding.py); a registered method is always found before a generic one."""

    def __init__(
        self, server: grpc.aio.Server, acceptors: Acceptors, ours: Sequence[str] = ()
    ) -> None:
        self._server = server
        self._acceptors = acceptors
        self._ours = frozenset(ours)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        if service in self._ours:
            handlers = tolerant(handlers)
        self._server.add_registered_method_handlers(service, handlers)
        self._acceptors.add(service, handlers)
