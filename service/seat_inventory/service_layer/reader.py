"""One event's feed reader: blocks on the feed, coalesces a tick's changes into
one batch, encodes it once and offers it to every subscriber of this process."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import time
from typing import TYPE_CHECKING

import structlog

from ..domain.errors import BackendUnavailable
from .ports import FeedEntry
from .subscription import FeedBatch, Subscription

if TYPE_CHECKING:
    from .fanout import FeedHub

__all__ = ["FeedReader"]

log = structlog.get_logger(__name__)

_SLICE = 50  # subscribers woken per event-loop iteration


class FeedReader:
    """Follows one event's feed for as long as this process has subscribers to it."""

    def __init__(self, hub: FeedHub, event_id: str) -> None:
        self.hub, self.event_id = hub, event_id
        self.subs: set[Subscription] = set()
        self.waiter = hub.feed.waiter(event_id)
        self._stopping = asyncio.Event()
        # A context of its own: created inside the first subscriber's call, it
        # must not log with that call's request id for as long as it lives.
        self.task = asyncio.create_task(
            self._run(), name=f"feed:{event_id}", context=contextvars.Context()
        )

    async def stop(self) -> None:
        """Not task.cancel(): a redis-py read cancelled at an unlucky moment can swallow
        the cancellation and block again. Closing the connection ends the read for sure."""
        self._stopping.set()
        await self.waiter.interrupt()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.0))

    async def _publish(self, epoch: str, prev: str, entries: tuple[FeedEntry, ...]) -> None:
        frame = self.hub.encoder.changes(self.event_id, epoch, entries) if entries else b""
        batch = FeedBatch(epoch, prev, entries, frame)  # encoded once, shared by all
        subs = list(self.subs)
        for start in range(0, len(subs), _SLICE):
            if start:
                # grpc.aio accepts one new call per loop iteration: waking thousands
                # of writers in one iteration would hold Reserve calls at the door.
                await asyncio.sleep(0)
            for sub in subs[start : start + _SLICE]:
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
                        await self._publish(epoch, pos, ())
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
                        await self._publish(epoch, pos, page.entries)
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
