"""What one stream receives from the fan-out: batches, in a bounded queue.

The queue never makes the reader wait: a subscriber that falls behind has its
queue dropped and is told it lagged, and starts over from a fresh snapshot.
A subscriber that finds several batches waiting sends them as one message,
so when writes cannot keep up with the ticks, messages get fewer and larger
instead of later and later.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass

from ..domain.errors import ServerDraining
from .ports import FeedEntry

__all__ = ["FeedBatch", "ServerDraining", "Signal", "Subscription", "coalesce"]


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """The entries in (prev, last] of one epoch's feed, and their encoded message.
    A batch without entries announces where the reader (re)started."""

    epoch: str
    prev: str
    entries: tuple[FeedEntry, ...]
    frame: bytes  # b"" when not encoded yet (a merged batch)

    @property
    def last(self) -> str:
        return self.entries[-1].entry_id if self.entries else self.prev


class Signal(enum.Enum):
    LAGGED = "lagged"  # the queue overflowed and was dropped: take a snapshot
    CLOSED = "closed"  # the server is draining


class Subscription:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[FeedBatch] = deque()
        self._wake = asyncio.Event()
        self._lagged = False
        self._closed = False

    def offer(self, batch: FeedBatch) -> None:
        """Never blocks the reader: a full queue is dropped, not grown."""
        if self._lagged or self._closed:
            return
        if len(self._items) >= self._capacity:
            self._items.clear()
            self._lagged = True
        else:
            self._items.append(batch)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def next(self) -> list[FeedBatch] | Signal:
        """Every batch waiting, oldest first (at least one), or a signal."""
        while True:
            if self._closed:
                return Signal.CLOSED
            if self._lagged:
                self._lagged = False
                return Signal.LAGGED
            if self._items:
                items = list(self._items)
                self._items.clear()
                return items
            self._wake.clear()
            await self._wake.wait()


def coalesce(batches: list[FeedBatch]) -> list[FeedBatch]:
    """Merge runs of batches that continue one another into one batch each."""
    merged: list[FeedBatch] = []
    for batch in batches:
        last = merged[-1] if merged else None
        if (
            last
            and last.entries
            and batch.entries
            and (last.epoch, last.last)
            == (
                batch.epoch,
                batch.prev,
            )
        ):
            merged[-1] = FeedBatch(batch.epoch, last.prev, last.entries + batch.entries, b"")
        else:
            merged.append(batch)
    return merged
