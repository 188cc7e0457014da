"""The sweeper, in every server process at once: expires due holds (so
EXPIRED reaches the feed within a tick) and repairs confirming holds whose
Confirm died half-way. Each expiry is one atomic script and each repair is
decided by one SQL row, so concurrent sweepers never disagree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from ..domain.errors import BackendUnavailable, InventoryError
from .ports import EventNotLoaded, EventRepository, HoldStore
from .telemetry import NO_TELEMETRY, Telemetry

__all__ = ["Sweeper"]

log = structlog.get_logger(__name__)


class Sweeper:
    def __init__(
        self,
        holds: HoldStore,
        events: EventRepository,
        *,
        repair: Callable[[str, str], Awaitable[bool]],
        interval_s: float = 0.2,
        refresh_events_s: float = 5.0,
        max_rounds: int = 500,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._holds = holds
        self._events = events
        self._repair = repair
        self._interval_s = interval_s
        self._refresh_events_s = refresh_events_s
        # Bounds one pass (batches per event), e.g. should full batches keep
        # coming back because repairs fail to settle the holds they return.
        self._max_rounds = max_rounds
        self._telemetry = telemetry
        self._event_ids: list[str] = []
        self._refreshed_at = float("-inf")
        self.expired_total = 0
        self.repaired_total = 0

    @property
    def event_ids(self) -> tuple[str, ...]:
        """The events this sweeper looks after (every event, within a refresh)."""
        return tuple(self._event_ids)

    def track(self, event_id: str) -> None:
        """Sweep an event created by this process without waiting for a refresh."""
        if event_id not in self._event_ids:
            self._event_ids.append(event_id)

    async def sweep_once(self) -> int:
        """One pass over every event; returns the number of holds expired.

        Each ``expire_due`` call takes a bounded batch (one short script, so
        Redis keeps serving everyone else); an event whose batch came back full
        is called again, in turns with the other such events, until nothing
        more is due: many holds lapsing at one moment reach the feed within the
        pass, not one batch per tick."""
        if time.monotonic() - self._refreshed_at > self._refresh_events_s:
            self._event_ids = await self._events.event_ids()
            self._refreshed_at = time.monotonic()
        expired, failure = 0, None
        pending = list(self._event_ids)
        for _ in range(self._max_rounds):
            more: list[str] = []
            for event_id in pending:
                try:
                    swept = await self._holds.expire_due(event_id)
                except EventNotLoaded:
                    continue  # nothing is held in an event Redis does not have
                except BackendUnavailable as exc:
                    # On a Redis Cluster only this event's master may be down: sweep
                    # the other events, then report it.
                    failure = exc
                    continue
                expired += swept.expired
                self.expired_total += swept.expired
                self._telemetry.holds_expired(swept.expired)
                for hold_id in swept.confirming:
                    try:
                        booked = await self._repair(event_id, hold_id)
                    except BackendUnavailable as exc:
                        # The database (or this event's Redis) is down: the hold
                        # comes back next tick; expiring the other events needs
                        # only Redis, so go on with them, then report it.
                        failure = exc
                        continue
                    except Exception:
                        log.exception("repair failed", event_id=event_id, hold_id=hold_id)
                        continue
                    self.repaired_total += 1
                    log.info("repaired confirming hold", event_id=event_id, booked=booked)
                if swept.more:
                    more.append(event_id)
            if not more:
                break
            pending = more  # the rest waits for the next tick after max_rounds
        if failure is not None:
            raise failure
        return expired

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except InventoryError as exc:  # a backend is down: try again next tick
                if isinstance(exc, BackendUnavailable):
                    self._telemetry.backend_error(exc.metadata.get("backend", "backend"))
                log.warning("sweep failed", reason=exc.reason, error=exc.message)
            except Exception:
                # Never the end of the sweeper: expiries and repairs of every
                # event depend on it, in this process, for as long as it runs.
                log.exception("sweep failed")
            await asyncio.sleep(self._interval_s)
