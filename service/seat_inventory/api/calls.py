"""What happens around every servicer call: request ids, abuse limits,
metrics and the access log. ``api/errors.py`` wraps each handler and calls
into the ``CallGuard`` its servicer carries (``Guarded.calls``)."""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Any

import grpc
import structlog

from ..domain.errors import (
    BackendUnavailable,
    InventoryError,
    RateLimited,
    StreamLimitExceeded,
)
from .limits import RateLimiter, StreamSlots
from .metrics import Metrics
from .principal import Principal

__all__ = ["NO_GUARD", "REQUEST_ID_KEY", "CallGuard", "Guarded", "request_id_of"]

log = structlog.get_logger("seat_inventory.access")

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Generated request ids: a random per-process prefix and a counter (32 hex
# digits, as a uuid4's), unique without a urandom() call per request.
_GENERATED_PREFIX = secrets.token_hex(8)
_generated = itertools.count(1)


def request_id_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's ``x-request-id`` when it is a sane one (1-128 of letters,
    digits and ``. _ : -``), else a fresh one."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return f"{_GENERATED_PREFIX}{next(_generated):016x}"


class CallGuard:
    """Limits, metrics and logging for the calls of one server.

    ``rate`` requests per second per principal (0: no limit) in bursts of up to
    ``burst``; at most ``max_streams`` open streams per principal (0: no limit).
    """

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        rate: float = 0.0,
        burst: int = 0,
        max_streams: int = 0,
        access_log: bool = False,
    ) -> None:
        self.metrics = metrics
        self._rate = RateLimiter(rate, burst or None)
        self._streams = StreamSlots(max_streams)
        self._access_log = access_log

    def admit(self, principal: Principal) -> None:
        """Take the call out of the principal's rate budget, or refuse it."""
        wait_s = self._rate.acquire(principal.name)
        if wait_s > 0:
            retry_ms = max(1, int(wait_s * 1000 + 0.999))
            raise RateLimited(
                f"more than {self._rate.rate:g} requests per second from {principal.name!r}: "
                f"retry in {retry_ms} ms",
                metadata={"limit": f"{self._rate.rate:g}", "retry_after_ms": str(retry_ms)},
            )

    def open_stream(self, principal: Principal) -> None:
        if not self._streams.acquire(principal.name):
            raise StreamLimitExceeded(principal.name, self._streams.limit)
        if self.metrics is not None:
            self.metrics.stream_subscribers.inc()

    def close_stream(self, principal: Principal) -> None:
        self._streams.release(principal.name)
        if self.metrics is not None:
            self.metrics.stream_subscribers.dec()

    def open_streams(self, principal: Principal) -> int:
        return self._streams.open(principal.name)

    def finish(
        self,
        method: str,
        principal: Principal,
        code: str,
        error: InventoryError | None,
        seconds: float,
    ) -> None:
        """Record one finished call: metrics, and the access log line when on."""
        reason = error.reason if error is not None else ""
        if self.metrics is not None:
            self.metrics.rpc(method, code, reason, seconds)
            if isinstance(error, BackendUnavailable):
                self.metrics.backend_error(error.metadata.get("backend", "backend"))
        if self._access_log:
            log.info(
                "call",
                method=method,
                principal=principal.name,
                code=code,
                reason=reason or None,
                duration_ms=round(seconds * 1000, 3),
            )


NO_GUARD = CallGuard()


class Guarded:
    """Servicers inherit this; the server sets ``calls`` to its own guard."""

    calls: CallGuard = NO_GUARD
