"""Events as the service layer sees them: immutable seat maps, cached per
process, and loaded into the hold store on first use or after Redis lost them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..domain.errors import EventNotFound
from ..domain.model import Event
from .ports import EventNotLoaded, EventRepository, HoldStore

__all__ = ["EventCatalog"]

T = TypeVar("T")


class EventCatalog:
    def __init__(
        self,
        events: EventRepository,
        holds: HoldStore,
        on_loaded: Callable[[str], None] | None = None,
    ) -> None:
        self._events = events
        self._holds = holds
        # Lets the sweeper start on an event at once instead of at its next refresh.
        self.on_loaded = on_loaded
        self._cache: dict[str, Event] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}

    async def get(self, event_id: str) -> Event:
        """The event and its seat map; seat maps never change, so one read is enough."""
        event = self._cache.get(event_id)
        if event is None:
            event = await self._events.get_event(event_id)
            if event is None:
                raise EventNotFound(event_id)
            self._cache[event_id] = event
        return event

    def remember(self, event: Event) -> None:
        self._cache[event.event_id] = event

    async def load(self, event_id: str) -> None:
        """Load one event from SQL into the hold store; concurrent callers share one load.

        The load is a task of its own: a caller that gives up (its deadline, a
        cancelled call) leaves it running for the others, who would otherwise
        get that caller's cancellation. It ends by itself (the fence it waits
        for is held only by bounded transactions)."""
        task = self._loading.get(event_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read_and_load(event_id))
            self._loading[event_id] = task
            task.add_done_callback(lambda done: self._loaded(event_id, done))
        await asyncio.shield(task)

    def _loaded(self, event_id: str, task: asyncio.Task[None]) -> None:
        if self._loading.get(event_id) is task:
            del self._loading[event_id]
        if not task.cancelled():
            task.exception()  # retrieved: its waiters report it, if any are left

    async def _read_and_load(self, event_id: str) -> None:
        snapshot = await self._events.snapshot(event_id, apply=self._holds.load_event)
        if snapshot is None:
            raise EventNotFound(event_id)
        if self.on_loaded is not None:
            self.on_loaded(event_id)

    async def loaded(self, event_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run a hold-store call, loading the event first when the store lacks it."""
        try:
            return await call()
        except EventNotLoaded:
            await self.load(event_id)
            return await call()
