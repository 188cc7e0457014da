"""The one place where errors become gRPC statuses (AIP-193).

Every error carries exactly one google.rpc.ErrorInfo (domain
``seatinventory``), plus a google.rpc.BadRequest for field violations, packed
into ``grpc-status-details-bin`` by grpcio-status so any client can parse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NamedTuple, NoReturn, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ..domain.errors import BackendUnavailable, DeadlineExceeded, InvalidArgument, InventoryError
from .calls import REQUEST_ID_KEY, Guarded, request_id_of
from .decoding import refuse_undecodable
from .principal import current_principal
from .wire import field, varint

__all__ = ["DOMAIN", "abort_with", "server_stream", "status_of", "unary"]

DOMAIN = "seatinventory"
log = structlog.get_logger(__name__)
# Sent back with every answer: which process served it (``serve --workers N``
# runs several on one port).
SERVED_BY = ("x-served-by", str(os.getpid()))

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self", bound=Guarded)


def _pack(message: Any) -> any_pb2.Any:
    # What Any.Pack makes, without its descriptor lookups on every call.
    return any_pb2.Any(type_url=_TYPE_URLS[type(message)], value=message.SerializeToString())


_TYPE_URLS = {
    kind: "type.googleapis.com/" + kind.DESCRIPTOR.full_name
    for kind in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
    )
}
_CODES = {code.name: code for code in grpc.StatusCode}
_DETAILS_KEY = "grpc-status-details-bin"  # what grpcio-status packs the Status into


_ANY_ERROR_INFO = field(0x0A, _TYPE_URLS[error_details_pb2.ErrorInfo].encode())
_INFO_DOMAIN = field(0x12, DOMAIN.encode())


def _status_bytes(code: int, message: str, reason: str, metadata: dict[str, str]) -> bytes:
    """google.rpc.Status{code, message, details: [Any(ErrorInfo)]} serialised by
    hand, byte for byte as protobuf serialises it, at half the cost; the
    commonest answer of an on-sale (a Reserve that lost) sends one."""
    entries = [
        field(0x1A, field(0x0A, key.encode()) + field(0x12, value.encode()))
        for key, value in metadata.items()
    ]
    info = field(0x0A, reason.encode()) + _INFO_DOMAIN + b"".join(entries)
    return (
        b"\x08"
        + varint(code)
        + field(0x12, message.encode())
        + field(0x1A, _ANY_ERROR_INFO + field(0x12, info))
    )


def status_of(error: InventoryError) -> grpc.Status:
    code = _CODES[error.code.value]
    if not isinstance(error, InvalidArgument) and "retry_after_ms" not in error.metadata:
        raw = _status_bytes(code.value[0], error.message, error.reason, error.metadata)
        return _Status(code, error.message, ((_DETAILS_KEY, raw),))
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
    retry_ms = error.metadata.get("retry_after_ms")
    if retry_ms is not None and retry_ms.isdigit():
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(int(retry_ms))
        details.append(_pack(retry))
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.value), message=error.message, details=details
    )
    return _Status(code, error.message, ((_DETAILS_KEY, status.SerializeToString()),))


class _Status(
    NamedTuple(
        "_Status",
        [
            ("code", grpc.StatusCode),
            ("details", str),
            ("trailing_metadata", Any),  # grpc.Status says Metadata; ours are pairs
        ],
    ),
    grpc.Status,
):
    """What ``grpc_status.rpc_status.to_status`` returns, without its search of
    the status codes (the code and the message are ours and agree)."""


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any],
    error: InventoryError,
    metadata: Sequence[tuple[str, str]] = (),
) -> NoReturn:
    status = status_of(error)
    await context.abort(status.code, status.details, (*status.trailing_metadata, *metadata))


def backend_budget(context: grpc.aio.ServicerContext[Any, Any], ceiling_s: float) -> float:
    """Time the backends may take: a little less than the caller's deadline, so
    a stuck backend is answered UNAVAILABLE before the deadline runs out."""
    # grpc.aio answers None when the caller set no deadline (the stubs say float).
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return ceiling_s
    return max(0.0, min(ceiling_s, remaining * 0.9 - 0.005))


def _budget_or_refuse(context: grpc.aio.ServicerContext[Any, Any], ceiling_s: float) -> float:
    """The backends' budget; DEADLINE_EXCEEDED when the caller's deadline leaves
    none (not the backends' failure: none is asked)."""
    budget = backend_budget(context, ceiling_s)
    if budget <= 0:
        raise DeadlineExceeded
    return budget


def unary(
    ceiling_s: float = 10.0,
) -> Callable[
    [Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]],
    Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
]:
    """Wrap a unary handler: request id, rate limit, deadline, errors, metrics, log.

    The request id (the caller's ``x-request-id`` or a fresh one) is bound to
    every log line of the call and sent back in the trailing metadata."""

    def decorate(
        handler: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
    ) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
        method = handler.__name__

        @functools.wraps(handler)
        async def wrapper(
            self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
        ) -> Resp:
            started = time.perf_counter()
            guard = self.calls
            principal = current_principal()
            request_id = request_id_of(context)
            echo = ((REQUEST_ID_KEY, request_id), SERVED_BY)
            bound = structlog.contextvars.bind_contextvars(request_id=request_id)
            code, failure = "OK", None
            try:
                guard.admit(principal)
                refuse_undecodable(request)
                async with asyncio.timeout(_budget_or_refuse(context, ceiling_s)):
                    response = await handler(self, request, context)
                context.set_trailing_metadata(echo)
                return response
            except InventoryError as error:
                code, failure = error.code.value, error
            except TimeoutError:
                failure = BackendUnavailable("backend", "no answer in time")
                code = failure.code.value
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception:  # a bug: report INTERNAL without leaking a traceback
                code = "INTERNAL"
                log.exception("unhandled error", method=method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error", echo)
            finally:
                guard.finish(method, principal, code, failure, time.perf_counter() - started)
                structlog.contextvars.reset_contextvars(**bound)
            # An expected failure: the status goes out with the (absent) answer in
            # one batch, as abort() would send it but without awaiting a batch of
            # its own and raising through grpc.
            status = status_of(failure)
            # The error's traceback holds this frame, which holds the error: let
            # go of it, or every failed call leaves a cycle (its frames, request
            # and error) for the garbage collector.
            failure = None
            context.set_code(status.code)
            context.set_details(status.details)
            context.set_trailing_metadata((*status.trailing_metadata, *echo))
            return None  # type: ignore[return-value]  # grpc sends no message on a non-OK code

        return wrapper

    return decorate


def server_stream(
    handler: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncGenerator[Resp, None]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Wrap a server-streaming handler as ``unary`` does, and hold one of the
    principal's stream slots while it is open. The request id travels in the
    initial metadata.

    No overall deadline: a stream lives as long as its caller wants. Each
    backend call inside it is bounded by the adapters' own timeouts."""
    method = handler.__name__

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        started = time.perf_counter()
        guard = self.calls
        principal = current_principal()
        request_id = request_id_of(context)
        echo = ((REQUEST_ID_KEY, request_id), SERVED_BY)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        code, failure, opened = "OK", None, False
        try:
            guard.admit(principal)
            refuse_undecodable(request)
            guard.open_stream(principal)
            opened = True
            await context.send_initial_metadata(echo)
            # aclosing: a cancelled call must unwind the handler (and its
            # subscription) now, not whenever the generator is collected.
            async with contextlib.aclosing(handler(self, request, context)) as messages:
                async for message in messages:
                    yield message
        except InventoryError as error:
            code, failure = error.code.value, error
            await abort_with(context, error, echo)
        except (asyncio.CancelledError, GeneratorExit):
            # GeneratorExit: the stream was closed while it waited to send (a
            # caller that stopped reading, then cancelled); not an OK stream.
            code = "CANCELLED"
            raise
        except Exception:  # a bug: report INTERNAL without leaking a traceback
            code = "INTERNAL"
            log.exception("unhandled error", method=method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error", echo)
        finally:
            if opened:
                guard.close_stream(principal)
            guard.finish(method, principal, code, failure, time.perf_counter() - started)
            failure = None  # as in unary: no cycle through the error's traceback
            # A generator closed by the collector runs this in another context.
            with contextlib.suppress(ValueError):
                structlog.contextvars.reset_contextvars(**bound)

    return wrapper
