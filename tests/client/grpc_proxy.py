"""A gRPC proxy for client tests: a grpc.aio server in front of a real one that
forwards every call as raw bytes, records what it saw, and can drop chosen
attempts with UNAVAILABLE, the way a lost connection or a restarting replica
looks to a client."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["GrpcProxy", "Seen"]

Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Any]


@dataclass(frozen=True)
class Seen:
    """One attempt as the proxy saw it."""

    rpc: str  # "Reserve"
    request: bytes
    metadata: dict[str, str]
    deadline: float | None  # absolute, on time.monotonic(); None without a deadline
    response: bytes | None = None  # what the real server answered, if it was asked


class GrpcProxy:
    """``fail_first``: RPCs whose first attempt is forwarded, answered by the real
    server, and then dropped with UNAVAILABLE (the answer never reaches the
    client); ``fail_code`` is the status they get instead. ``fail_always``: RPCs
    answered UNAVAILABLE without forwarding."""

    def __init__(
        self,
        upstream: str,
        *,
        fail_first: Collection[str] = (),
        fail_always: Collection[str] = (),
        server_credentials: grpc.ServerCredentials | None = None,
        fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    ) -> None:
        self.upstream = upstream
        self.fail_code = fail_code
        self.fail_first = set(fail_first)
        self.fail_always = set(fail_always)
        self.seen: list[Seen] = []
        self._credentials = server_credentials
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Routes(self),))
        self._channel: grpc.aio.Channel | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> GrpcProxy:
        address = "127.0.0.1:0"
        if self._credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, self._credentials)
        self._channel = grpc.aio.insecure_channel(self.upstream)
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()

    def attempts(self, rpc: str) -> list[Seen]:
        return [s for s in self.seen if s.rpc == rpc]

    def _record(self, rpc: str, request: bytes, context: Any, response: bytes | None) -> None:
        remaining = context.time_remaining()
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        deadline = None if remaining is None else time.monotonic() + remaining
        self.seen.append(Seen(rpc, request, metadata, deadline, response))

    def _forwarded_metadata(self, context: Any) -> list[tuple[str, str]]:
        return [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]

    def unary(self, method: str) -> Handler:
        rpc = method.rsplit("/", 1)[1]

        async def handle(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            if rpc in self.fail_always:
                self._record(rpc, request, context, None)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: upstream unreachable")
            assert self._channel is not None
            first = Counter(s.rpc for s in self.seen)[rpc] == 0
            try:
                response: bytes = await self._channel.unary_unary(method)(
                    request,
                    timeout=context.time_remaining(),
                    metadata=self._forwarded_metadata(context),
                )
            except grpc.aio.AioRpcError as err:
                self._record(rpc, request, context, None)
                await context.abort(err.code(), err.details() or "", tuple(err.trailing_metadata()))
            self._record(rpc, request, context, response)
            if first and rpc in self.fail_first:
                await context.abort(self.fail_code, "proxy: the answer was lost")
            return response

        return handle

    def stream(self, method: str) -> Handler:
        rpc = method.rsplit("/", 1)[1]

        async def handle(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            self._record(rpc, request, context, None)
            assert self._channel is not None
            call = self._channel.unary_stream(method)(
                request, metadata=self._forwarded_metadata(context)
            )
            try:
                async for message in call:
                    yield message
            except grpc.aio.AioRpcError as err:
                await context.abort(err.code(), err.details() or "", tuple(err.trailing_metadata()))

        return handle


class _Routes(grpc.GenericRpcHandler):
    def __init__(self, proxy: GrpcProxy) -> None:
        self.proxy = proxy

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if method.endswith("/StreamAvailability"):
            return grpc.unary_stream_rpc_method_handler(self.proxy.stream(method))
        return grpc.unary_unary_rpc_method_handler(self.proxy.unary(method))
