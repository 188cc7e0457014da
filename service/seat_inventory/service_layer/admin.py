"""The InventoryAdmin use cases: events and their seat maps."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain.clock import Clock
from ..domain.errors import BackendUnavailable
from ..domain.model import Event, EventCounts, SeatSpec
from ..domain.policy import Limits, Violations, check_event_id, check_seat_map
from .catalog import EventCatalog
from .inventory import InventoryService
from .ports import EventRepository

__all__ = ["AdminService"]


class AdminService:
    def __init__(
        self,
        events: EventRepository,
        catalog: EventCatalog,
        inventory: InventoryService,
        limits: Limits,
        clock: Clock,
    ) -> None:
        self._events = events
        self._catalog = catalog
        self._inventory = inventory
        self._limits = limits
        self._clock = clock

    async def create_event(
        self, event_id: str, name: str, seats: Sequence[SeatSpec]
    ) -> tuple[Event, EventCounts, bool]:
        """Create (or find the identical) event; returns it, its counts, and
        whether this call created it."""
        v = Violations()
        check_event_id(v, event_id)
        v.text("name", name, self._limits.max_event_name_len)
        check_seat_map(v, seats, self._limits)
        v.raise_if_any()
        event, created = await self._events.create_event(
            Event(event_id, name, tuple(seats), self._clock.now_ms())
        )
        self._catalog.remember(event)
        try:
            await self._catalog.load(event_id)
        except BackendUnavailable:
            if not created:
                # An event made before may have holds and bookings: its counts
                # are unknown while Redis is out of reach.
                raise
            # A new event is safely in SQL with every seat free; it is loaded
            # into Redis on first use.
            return event, EventCounts(len(event.seats), 0, 0), created
        return event, await self._counts(event_id), created

    async def get_event(self, event_id: str) -> tuple[Event, EventCounts]:
        v = Violations()
        check_event_id(v, event_id)
        v.raise_if_any()
        event = await self._catalog.get(event_id)
        return event, await self._counts(event_id)

    async def _counts(self, event_id: str) -> EventCounts:
        return (await self._inventory.availability(event_id)).counts
