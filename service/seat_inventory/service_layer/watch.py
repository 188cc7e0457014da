"""StreamAvailability: a snapshot or a resumed position, then every change.

A cursor is "<epoch>.<feed entry id>". Each stream keeps its own position and
checks every batch the fan-out hands it against it: a batch that starts where
the stream stands is forwarded as the shared, already encoded bytes; anything
else (a gap, a reader on another epoch) is caught up from the feed itself, and
when the feed no longer holds the position, a fresh snapshot replaces it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from ..domain.policy import Violations, check_event_id
from .catalog import EventCatalog
from .fanout import FeedHub
from .inventory import InventoryService
from .ports import FeedSource, UpdateEncoder
from .shared_reads import SharedReads
from .subscription import FeedBatch, ServerDraining, Signal, coalesce

__all__ = ["AvailabilityWatch", "entry_order"]

_CURSOR = re.compile(r"^([0-9A-Za-z]+)\.(\d{1,20}-\d{1,20})$")


def entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


class _Position:
    __slots__ = ("epoch", "lost", "pos")

    def __init__(self, epoch: str, pos: str) -> None:
        self.epoch, self.pos, self.lost = epoch, pos, False

    @classmethod
    def parse(cls, cursor: str) -> _Position | None:
        match = _CURSOR.match(cursor)
        return cls(match[1], match[2]) if match else None


class AvailabilityWatch:
    def __init__(
        self,
        inventory: InventoryService,
        catalog: EventCatalog,
        feed: FeedSource,
        hub: FeedHub,
        encoder: UpdateEncoder,
    ) -> None:
        self._inventory, self._catalog, self._feed = inventory, catalog, feed
        self._hub, self._encoder = hub, encoder
        # Streams asking together share one snapshot read and its encoding, but
        # a stream never gets one begun before it asked (see SharedReads).
        self._snapshots: SharedReads[str, tuple[bytes, str]] = SharedReads(self._take_snapshot)

    async def stream(self, event_id: str, resume_cursor: str = "") -> AsyncGenerator[bytes, None]:
        """Encoded AvailabilityUpdate messages, until the caller stops or the server drains."""
        v = Violations()
        check_event_id(v, event_id)
        v.raise_if_any()
        await self._catalog.get(event_id)  # EVENT_NOT_FOUND before anything is streamed
        # Subscribed before the first read, so nothing published from here on is missed.
        async with self._hub.subscribe(event_id) as sub:
            at = _Position.parse(resume_cursor)
            if at is not None:
                async for frame in self._catch_up(event_id, at):
                    yield frame
            if at is None or at.lost:
                frame, at = await self._snapshot(event_id)
                yield frame
            while True:
                batches = await sub.next()
                if batches is Signal.CLOSED:
                    raise ServerDraining
                if batches is Signal.LAGGED:
                    frame, at = await self._snapshot(event_id)
                    yield frame
                    continue
                for batch in coalesce(batches):
                    async for frame in self._forward(event_id, batch, at):
                        yield frame
                    if at.lost:
                        frame, at = await self._snapshot(event_id)
                        yield frame

    async def _forward(
        self, event_id: str, batch: FeedBatch, at: _Position
    ) -> AsyncGenerator[bytes, None]:
        """What of ``batch`` this stream needs, given where it stands; moves ``at``."""
        if batch.epoch == at.epoch and batch.prev == at.pos:
            if batch.entries:  # the common case: bytes built once for every subscriber
                yield batch.frame or self._hub.merged_frame(event_id, batch)
                at.pos = batch.last
        elif batch.epoch == at.epoch and entry_order(batch.prev) < entry_order(at.pos):
            after = entry_order(at.pos)
            newer = [e for e in batch.entries if entry_order(e.entry_id) > after]
            if newer:
                yield self._encoder.changes(event_id, at.epoch, newer)
                at.pos = newer[-1].entry_id
        else:  # a gap before this batch, or the reader is on another epoch
            async for frame in self._catch_up(event_id, at):
                yield frame

    async def _catch_up(self, event_id: str, at: _Position) -> AsyncGenerator[bytes, None]:
        """Every change after ``at`` in pages; sets ``at.lost`` when the feed no longer
        holds the position (trimmed, never issued, or another epoch's)."""
        page_size = self._hub.page_size
        while True:
            page = await self._feed.read(event_id, at.pos, page_size)
            if page.epoch != at.epoch or not page.continuous:
                at.lost = True
                return
            if page.entries:
                yield self._encoder.changes(event_id, at.epoch, page.entries)
                at.pos = page.entries[-1].entry_id
            if len(page.entries) < page_size:
                return

    async def _snapshot(self, event_id: str) -> tuple[bytes, _Position]:
        """A snapshot read after this call began: so it holds every change
        published before the stream subscribed, which the subscription will not
        deliver (a read already in flight could predate them, and on a quiet
        event nothing later would make the stream catch up)."""
        frame, cursor = await self._snapshots.get(event_id)
        at = _Position.parse(cursor)
        if at is None:
            raise RuntimeError(f"live state returned a malformed cursor {cursor!r}")
        return frame, at

    async def _take_snapshot(self, event_id: str) -> tuple[bytes, str]:
        event, live = await self._inventory.live_view(event_id)
        return self._encoder.snapshot(event, live), live.cursor
