"""RedisHoldStore: the HoldStore port on Redis (or fakeredis) via Lua scripts."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import BusyLoadingError, NoScriptError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from ...domain.clock import Clock
from ...domain.errors import (
    BackendUnavailable,
    HoldConfirming,
    HoldLimitExceeded,
    HoldNotFound,
    HoldNotOwned,
    InvalidArgument,
    SeatNotFound,
    SeatsUnavailable,
)
from ...domain.model import ANONYMOUS_PRINCIPAL, Hold
from ...service_layer.ports import (
    EventNotLoaded,
    EventSnapshot,
    ExpiryPass,
    LiveState,
    ReserveRequest,
)
from .batch import ScriptBatcher
from .connection import UNREACHABLE, ping_redis, refusal, refuses_for_now, unavailable
from .keys import EventKeys

__all__ = ["RedisHoldStore", "StoreSettings"]

_SCRIPTS = (
    "reserve",
    "release",
    "extend",
    "live_state",
    "load_event",
    "expire_due",
    "claim",
    "finalize",
    "abort_confirm",
    "cancel",
)

# Small scripts on the request path: these go out batched (see batch.py).
# Loading an event and reading a whole seat map stay on their own connection.
_BATCHED = frozenset(
    ("reserve", "release", "extend", "claim", "finalize", "abort_confirm", "cancel")
)
_MAX_CACHED_EVENTS = 10_000


def _script_source(name: str) -> str:
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("_prelude.lua").read_text() + "\n" + lua.joinpath(f"{name}.lua").read_text()


class StoreSettings:
    def __init__(
        self,
        *,
        feed_maxlen: int = 100_000,
        release_tombstone_ms: int = 3_600_000,
        hold_retention_ms: int = 86_400_000,
        sweep_batch: int = 1_000,
        confirm_window_ms: int = 30_000,
    ) -> None:
        self.feed_maxlen = feed_maxlen
        self.release_tombstone_ms = release_tombstone_ms
        self.hold_retention_ms = hold_retention_ms
        self.sweep_batch = sweep_batch
        # A claimed hold stays confirmable for at least this long, so a
        # Confirm that failed on a database outage can be retried.
        self.confirm_window_ms = confirm_window_ms


class RedisHoldStore:
    """Scripts are registered once; redis-py reloads them after a NOSCRIPT.

    On one Redis server the request-path scripts of calls made together travel
    together (``batch.ScriptBatcher``, waiting up to ``batch_linger_s`` for
    company while calls come densely); ``batching=False`` sends each alone."""

    def __init__(
        self,
        redis: Any,
        *,
        clock: Clock | None = None,
        settings: StoreSettings | None = None,
        batching: bool = True,
        batch_linger_s: float = 0.0,
    ) -> None:
        self._redis = redis
        # None: scripts read Redis's own clock (TIME), one clock for every
        # replica. Tests inject a clock to move time by hand.
        self._clock = clock
        self._settings = settings or StoreSettings()
        self._scripts = {name: redis.register_script(_script_source(name)) for name in _SCRIPTS}
        self.batcher = (
            ScriptBatcher.for_client(redis, linger_s=batch_linger_s) if batching else None
        )
        self._keys: dict[str, EventKeys] = {}

    def _event_keys(self, event_id: str) -> EventKeys:
        keys = self._keys.get(event_id)
        if keys is None:
            if len(self._keys) >= _MAX_CACHED_EVENTS:
                self._keys.clear()
            keys = self._keys[event_id] = EventKeys(event_id)
        return keys

    async def _run(
        self, name: str, event_id: str, extra_keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        keys = self._event_keys(event_id)
        now = "" if self._clock is None else str(self._clock.now_ms())
        all_keys = [*keys.base, *extra_keys]
        all_args = [keys.prefix, now, self._settings.feed_maxlen, *args]
        script = self._scripts[name]
        try:
            if self.batcher is not None and name in _BATCHED:
                try:
                    reply = await self.batcher.evalsha(script.sha, all_keys, all_args)
                except NoScriptError:  # Redis lost its scripts: load, then run alone
                    reply = await script(keys=all_keys, args=all_args)
                except RedisConnectionError as exc:
                    if isinstance(exc, BusyLoadingError):
                        raise
                    # A stale connection: once more on a fresh one, as redis-py's
                    # own retry would have done. Redis may have run the call
                    # before the connection failed: every batched script takes
                    # the same call sent twice as if it had come once.
                    reply = await script(keys=all_keys, args=all_args)
            else:
                reply = await script(keys=all_keys, args=all_args)
        except UNREACHABLE as exc:  # also a cluster failing over or unreachable
            raise unavailable(exc) from exc
        except RedisError as exc:
            if refuses_for_now(exc):
                raise BackendUnavailable("redis", refusal(exc)) from exc
            raise
        if reply[0] == "NOT_LOADED":
            raise EventNotLoaded(event_id)
        return reply

    async def load_event(self, snapshot: EventSnapshot) -> None:
        await self._run(
            "load_event",
            snapshot.event_id,
            [],
            [
                secrets.token_hex(4),
                len(snapshot.seat_ids),
                *snapshot.seat_ids,
                *snapshot.booked_seat_ids,
            ],
        )

    async def reserve(self, request: ReserveRequest) -> Hold:
        keys = self._event_keys(request.event_id)
        idem = keys.idempotency(request.principal, request.holder_id, request.request_id or "-")
        reply = await self._run(
            "reserve",
            request.event_id,
            [keys.hold(request.hold_id), idem],
            [
                request.hold_id,
                request.holder_id,
                request.ttl_ms,
                request.max_lifetime_ms,
                request.fingerprint if request.request_id else "",
                request.max_lifetime_ms,
                self._settings.hold_retention_ms,
                request.principal,
                request.max_held_seats,
                *request.seat_ids,
            ],
        )
        status = reply[0]
        if status == "OK":
            return Hold(
                hold_id=reply[1],
                event_id=request.event_id,
                seat_ids=request.seat_ids,
                holder_id=request.holder_id,
                expires_at_ms=int(reply[2]),
            )
        if status == "UNAVAILABLE":
            raise SeatsUnavailable(request.event_id, reply[1].split(","))
        if status == "SEAT_NOT_FOUND":
            raise SeatNotFound(request.event_id, reply[1].split(","))
        if status == "HOLD_LIMIT":
            raise HoldLimitExceeded(
                request.event_id,
                limit=request.max_held_seats,
                held=int(reply[1]),
                asked=len(request.seat_ids),
            )
        if status == "IDEMPOTENCY_MISMATCH":
            raise InvalidArgument.one(
                "request_id",
                "was already used by this holder with different seats or ttl; "
                "use a new request_id for a new request",
            )
        raise RuntimeError(f"unexpected reserve reply {reply!r}")

    def _hold_errors(self, status: str, hold_id: str) -> None:
        if status == "NOT_FOUND":
            raise HoldNotFound(hold_id)
        if status == "NOT_OWNED":
            raise HoldNotOwned(hold_id)
        if status == "CONFIRMING":
            raise HoldConfirming(hold_id)

    async def release(
        self, event_id: str, hold_id: str, holder_id: str, principal: str = ANONYMOUS_PRINCIPAL
    ) -> bool:
        reply = await self._run(
            "release",
            event_id,
            [self._event_keys(event_id).hold(hold_id)],
            [
                hold_id,
                holder_id,
                self._settings.release_tombstone_ms,
                principal,
                secrets.token_hex(8),  # tells this call's own resend from a second Release
            ],
        )
        self._hold_errors(reply[0], hold_id)
        return bool(reply[0] == "OK")

    async def extend(
        self,
        event_id: str,
        hold_id: str,
        holder_id: str,
        ttl_ms: int,
        principal: str = ANONYMOUS_PRINCIPAL,
    ) -> Hold:
        reply = await self._run(
            "extend",
            event_id,
            [self._event_keys(event_id).hold(hold_id)],
            [hold_id, holder_id, ttl_ms, principal],
        )
        self._hold_errors(reply[0], hold_id)
        return Hold(
            hold_id=hold_id,
            event_id=event_id,
            seat_ids=tuple(reply[1].split(",")),
            holder_id=holder_id,
            expires_at_ms=int(reply[2]),
        )

    async def live_state(self, event_id: str) -> LiveState:
        _, epoch, last_id, sold, held = await self._run("live_state", event_id, [], [])
        return LiveState(held=frozenset(held), booked=frozenset(sold), cursor=f"{epoch}.{last_id}")

    async def expire_due(self, event_id: str) -> ExpiryPass:
        """Expire up to ``sweep_batch`` due holds of one event."""
        reply = await self._run("expire_due", event_id, [], [self._settings.sweep_batch])
        next_deadline = int(float(reply[2])) if reply[2] else None
        return ExpiryPass(int(reply[1]), next_deadline, list(reply[4:]), int(reply[3]) == 1)

    async def claim(
        self, event_id: str, hold_id: str, holder_id: str, principal: str = ANONYMOUS_PRINCIPAL
    ) -> tuple[str, ...]:
        """Confirm step 1: pin the hold; returns its seats."""
        reply = await self._run(
            "claim",
            event_id,
            [self._event_keys(event_id).hold(hold_id)],
            [hold_id, holder_id, self._settings.confirm_window_ms, principal],
        )
        self._hold_errors(reply[0], hold_id)
        return tuple(reply[1].split(","))

    async def finalize(self, event_id: str, hold_id: str, seat_ids: Sequence[str]) -> None:
        """Confirm step 3: mirror a committed booking. An unloaded event needs
        nothing: its next load reads the booking from SQL."""
        try:
            await self._run("finalize", event_id, [], [hold_id, ",".join(seat_ids)])
        except EventNotLoaded:
            return

    async def abort_confirm(
        self, event_id: str, hold_id: str, sold_elsewhere: Sequence[str] = ()
    ) -> None:
        try:
            await self._run("abort_confirm", event_id, [], [hold_id, ",".join(sold_elsewhere)])
        except EventNotLoaded:
            return

    async def cancel(self, event_id: str, seat_ids: Sequence[str], hold_id: str = "") -> None:
        try:
            await self._run("cancel", event_id, [], [",".join(seat_ids), hold_id])
        except EventNotLoaded:
            return

    async def aclose(self) -> None:
        """Stop the batcher's lanes; the client itself is closed by its owner."""
        if self.batcher is not None:
            await self.batcher.aclose()

    async def ping(self) -> None:
        await ping_redis(self._redis)  # every master of a cluster
