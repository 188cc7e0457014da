"""Fan-out of event feeds: one reader per (process, event), many subscribers.

Each reader blocks on its event's feed (on a connection of its own),
coalesces what arrives within one tick into a single batch, encodes that
batch once and hands the same bytes to every subscriber's bounded queue.
Two limits keep unary calls (Reserve) answered while thousands of streams
are written: subscribers are woken a slice at a time, and the tick stretches
once the process would send more than ``max_messages_s`` messages a second.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .ports import FeedSource, UpdateEncoder
from .reader import FeedReader
from .subscription import FeedBatch, ServerDraining, Subscription

__all__ = ["FeedHub"]


# Merged frames kept for subscribers lagging alike, in all (see merged_frame).
_MERGED_MAX_BYTES = 32 * 1024 * 1024


class FeedHub:
    def __init__(
        self,
        feed: FeedSource,
        encoder: UpdateEncoder,
        *,
        tick_s: float = 0.025,
        queue_size: int = 256,
        page_size: int = 1000,
        block_s: float = 1.0,
        max_messages_s: float = 20_000,
    ) -> None:
        self.feed, self.encoder = feed, encoder
        self.tick_s = tick_s  # what arrives within one tick travels as one message
        self.max_messages_s = max_messages_s
        self._subscribers = 0
        self.queue_size = queue_size  # batches a subscriber may lag before a snapshot
        self.page_size = page_size
        self.block_s = block_s  # also how often an idle reader checks the epoch
        self._readers: dict[str, FeedReader] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        self._merged: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()
        self._merged_bytes = 0

    def merged_frame(self, event_id: str, batch: FeedBatch) -> bytes:
        """The message of several batches sent as one. Subscribers that lag by the
        same amount ask for the same range, so it is encoded once for them too.
        Kept while its event has a reader, within _MERGED_MAX_BYTES in all (a merge
        can hold a lagging queue's worth of changes), the oldest dropped first."""
        key = (event_id, batch.epoch, batch.prev, batch.last)
        frame = self._merged.get(key)
        if frame is None:
            frame = self.encoder.changes(event_id, batch.epoch, batch.entries)
            if len(frame) <= _MERGED_MAX_BYTES // 4:
                self._merged[key] = frame
                self._merged_bytes += len(frame)
                while self._merged_bytes > _MERGED_MAX_BYTES or len(self._merged) > 1024:
                    _, dropped = self._merged.popitem(last=False)
                    self._merged_bytes -= len(dropped)
        return frame

    def _forget_merged(self, event_id: str) -> None:
        """An event's reader stopped: nobody will ask for its merges again."""
        for key in [k for k in self._merged if k[0] == event_id]:
            self._merged_bytes -= len(self._merged.pop(key))

    @property
    def merged_bytes(self) -> int:
        """Bytes of merged frames kept (for tests and the curious)."""
        return self._merged_bytes

    @asynccontextmanager
    async def subscribe(self, event_id: str) -> AsyncIterator[Subscription]:
        if self._closed:
            raise ServerDraining
        reader = self._readers.get(event_id)
        if reader is None:
            reader = self._readers[event_id] = FeedReader(self, event_id)
        sub = Subscription(self.queue_size)
        reader.subs.add(sub)
        self._subscribers += 1
        try:
            yield sub
        finally:
            self._subscribers -= 1
            reader.subs.discard(sub)
            if not reader.subs and self._readers.get(event_id) is reader:
                del self._readers[event_id]
                self._forget_merged(event_id)
                self._stop(reader)

    def _stop(self, reader: FeedReader) -> None:
        self._stopping.add(reader.task)
        reader.task.add_done_callback(self._stopping.discard)
        stopping = asyncio.create_task(reader.stop())
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)

    def tick(self) -> float:
        """The configured tick, stretched so that this process sends at most about
        ``max_messages_s`` stream messages a second: past that, grpc.aio spends the
        loop on stream writes and unary calls (Reserve) queue behind them for seconds."""
        return max(self.tick_s, self._subscribers / self.max_messages_s)

    def subscribers(self, event_id: str) -> int:
        reader = self._readers.get(event_id)
        return len(reader.subs) if reader else 0

    @property
    def readers(self) -> int:
        return len(self._readers)

    async def close(self) -> None:
        """End every subscription (they answer SERVER_DRAINING) and stop the readers."""
        self._closed = True
        for reader in list(self._readers.values()):
            for sub in reader.subs:
                sub.close()
            self._stop(reader)
        self._readers.clear()
        if self._stopping:
            _, stuck = await asyncio.wait(set(self._stopping), timeout=self.block_s + 2)
            for task in stuck:  # last resort; stop() normally ends a reader at once
                task.cancel()
