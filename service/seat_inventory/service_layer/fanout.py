"""Fan-out of event feeds: one reader per (process, event), many subscribers.

Each reader blocks on its event's feed (on a connection of its own),
coalesces what arrives within one tick into a single batch, encodes that
batch once and hands the same bytes to every subscriber's bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from ..domain.errors import BackendUnavailable
from .ports import FeedEntry, FeedSource, UpdateEncoder
from .subscription import FeedBatch, ServerDraining, Subscription

__all__ = ["FeedHub"]

log = structlog.get_logger(__name__)


class FeedHub:
    def __init__(
        self,
        feed: FeedSource,
        encoder: UpdateEncoder,
        *,
        tick_s: float = 0.05,
        queue_size: int = 256,
        page_size: int = 1000,
        block_s: float = 1.0,
        max_messages_s: float = 10_000,
    ) -> None:
        self.feed, self.encoder = feed, encoder
        self.tick_s = tick_s  # what arrives within one tick travels as one message
        self.max_messages_s = max_messages_s
        self._subscribers = 0
        self.queue_size = queue_size  # batches a subscriber may lag before a snapshot
        self.page_size = page_size
        self.block_s = block_s  # also how often an idle reader checks the epoch
        self._readers: dict[str, _Reader] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        self._merged: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()

    def merged_frame(self, event_id: str, batch: FeedBatch) -> bytes:
        """The message of several batches sent as one. Subscribers that lag by the
        same amount ask for the same range, so it is encoded once for them too."""
        key = (event_id, batch.epoch, batch.prev, batch.last)
        frame = self._merged.get(key)
        if frame is None:
            frame = self._merged[key] = self.encoder.changes(event_id, batch.epoch, batch.entries)
            if len(self._merged) > 1024:
                self._merged.popitem(last=False)
        return frame

    @asynccontextmanager
    async def subscribe(self, event_id: str) -> AsyncIterator[Subscription]:
        if self._closed:
            raise ServerDraining
        reader = self._readers.get(event_id)
        if reader is None:
            reader = self._readers[event_id] = _Reader(self, event_id)
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
                self._stop(reader)

    def _stop(self, reader: _Reader) -> None:
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


class _Reader:
    """Follows one event's feed for as long as this process has subscribers to it."""

    def __init__(self, hub: FeedHub, event_id: str) -> None:
        self.hub, self.event_id = hub, event_id
        self.subs: set[Subscription] = set()
        self.waiter = hub.feed.waiter(event_id)
        self._stopping = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"feed:{event_id}")

    async def stop(self) -> None:
        """Not task.cancel(): a redis-py read cancelled at an unlucky moment can swallow
        the cancellation and block again. Closing the connection ends the read for sure."""
        self._stopping.set()
        await self.waiter.interrupt()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.0))

    def _publish(self, epoch: str, prev: str, entries: tuple[FeedEntry, ...]) -> None:
        frame = self.hub.encoder.changes(self.event_id, epoch, entries) if entries else b""
        batch = FeedBatch(epoch, prev, entries, frame)  # encoded once, shared by all
        for sub in self.subs:
            sub.offer(batch)

    async def _run(self) -> None:
        hub, feed = self.hub, self.hub.feed
        epoch: str | None = None
        pos, published_at, backoff, full = "0-0", float("-inf"), 0.05, False
        try:
            while not self._stopping.is_set():
                try:
                    if epoch is None:  # (re)start at the tail; subscribers catch up themselves
                        page = await feed.read(self.event_id, None, 0)
                        epoch, pos = page.epoch, page.tail
                        self._publish(epoch, pos, ())
                    if self._stopping.is_set():
                        break
                    if not full:
                        await self.waiter.wait(pos, hub.block_s)  # a timeout still polls the epoch
                        await self._pause(published_at + hub.tick() - time.monotonic())
                    page = await feed.read(self.event_id, pos, hub.page_size)
                    if page.epoch != epoch or not page.continuous:
                        epoch = None  # reloaded or trimmed past us: resynchronise
                        continue
                    full = len(page.entries) == hub.page_size
                    if page.entries:
                        self._publish(epoch, pos, page.entries)
                        pos, published_at = page.entries[-1].entry_id, time.monotonic()
                    backoff = 0.05
                    continue
                except BackendUnavailable as exc:  # also how stop() interrupts a blocked read
                    if not self._stopping.is_set():
                        log.warning("feed retry", event_id=self.event_id, error=exc.message)
                except Exception:  # a bug must not leave subscribers waiting on a dead reader
                    log.exception("feed reader failed; restarting", event_id=self.event_id)
                    epoch = None
                await self._pause(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 2.0)
        finally:
            await self.waiter.close()
