"""The one place where errors become gRPC statuses (AIP-193).

Every error carries exactly one google.rpc.ErrorInfo (domain
``seatinventory``), plus a google.rpc.BadRequest for field violations, packed
into ``grpc-status-details-bin`` by grpcio-status so any client can parse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain.errors import BackendUnavailable, InvalidArgument, InventoryError

__all__ = ["DOMAIN", "abort_with", "server_stream", "status_of", "unary"]

DOMAIN = "seatinventory"
log = structlog.get_logger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_of(error: InventoryError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if isinstance(error, InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.value), message=error.message, details=details
    )
    return rpc_status.to_status(status)


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], error: InventoryError
) -> NoReturn:
    status = status_of(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def backend_budget(context: grpc.aio.ServicerContext[Any, Any], ceiling_s: float) -> float:
    """Time the backends may take: a little less than the caller's deadline, so
    a stuck backend is answered UNAVAILABLE before the deadline runs out."""
    # grpc.aio answers None when the caller set no deadline (the stubs say float).
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return ceiling_s
    return max(0.0, min(ceiling_s, remaining * 0.9 - 0.005))


def unary(
    ceiling_s: float = 10.0,
) -> Callable[
    [Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]],
    Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
]:
    """Wrap a unary handler: bound it by the deadline, translate errors."""

    def decorate(
        handler: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
    ) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
        @functools.wraps(handler)
        async def wrapper(
            self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
        ) -> Resp:
            try:
                async with asyncio.timeout(backend_budget(context, ceiling_s)):
                    return await handler(self, request, context)
            except InventoryError as error:
                await abort_with(context, error)
            except TimeoutError:
                await abort_with(context, BackendUnavailable("backend", "no answer in time"))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: report INTERNAL without leaking a traceback
                log.exception("unhandled error", method=handler.__name__)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return wrapper

    return decorate


def server_stream(
    handler: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncGenerator[Resp, None]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Wrap a server-streaming handler: translate errors, as ``unary`` does.

    No overall deadline: a stream lives as long as its caller wants. Each
    backend call inside it is bounded by the adapters' own timeouts."""

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            # aclosing: a cancelled call must unwind the handler (and its
            # subscription) now, not whenever the generator is collected.
            async with contextlib.aclosing(handler(self, request, context)) as messages:
                async for message in messages:
                    yield message
        except InventoryError as error:
            await abort_with(context, error)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: report INTERNAL without leaking a traceback
            log.exception("unhandled error", method=handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return wrapper
