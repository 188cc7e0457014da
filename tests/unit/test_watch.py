"""The fan-out on an in-memory feed: coalescing, bounded queues, reader lifetime,
and how a stream lines its own position up with the batches it is handed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.domain.model import ChangeReason, Event
from seat_inventory.service_layer.fanout import FeedHub
from seat_inventory.service_layer.ports import FeedEntry, FeedPage, LiveState
from seat_inventory.service_layer.subscription import (
    FeedBatch,
    ServerDraining,
    Signal,
    Subscription,
    coalesce,
)
from seat_inventory.service_layer.watch import AvailabilityWatch, entry_order


class MemoryFeed:
    """FeedSource on a list: ids "<n>-0", trimmed from the front, epoch settable."""

    def __init__(self) -> None:
        self.epoch = "e1"
        self.entries: list[FeedEntry] = []
        self.next_id = 1
        self.failures = 0  # reads that raise BackendUnavailable before one succeeds
        self.waiters: list[MemoryWaiter] = []

    def add(self, reason: ChangeReason = ChangeReason.HELD, seats: Sequence[str] = ("A-1",)) -> str:
        entry_id = f"{self.next_id}-0"
        self.next_id += 1
        self.entries.append(FeedEntry(entry_id, reason, tuple(seats)))
        return entry_id

    def tail(self) -> str:
        return self.entries[-1].entry_id if self.entries else "0-0"

    async def read(self, event_id: str, after: str | None, count: int) -> FeedPage:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("redis", "memory feed told to fail")
        if after is None:
            return FeedPage(self.epoch, True, self.tail())
        ids = [e.entry_id for e in self.entries]
        if after in ids:
            start = ids.index(after) + 1
        elif after == "0-0" and (not ids or ids[0] == "1-0"):
            start = 0
        else:
            return FeedPage(self.epoch, False, self.tail())
        return FeedPage(self.epoch, True, self.tail(), tuple(self.entries[start : start + count]))

    def waiter(self, event_id: str) -> MemoryWaiter:
        waiter = MemoryWaiter(self)
        self.waiters.append(waiter)
        return waiter


class MemoryWaiter:
    def __init__(self, feed: MemoryFeed) -> None:
        self.feed = feed
        self.interrupted = self.closed = False

    async def wait(self, after: str, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.interrupted:
                raise BackendUnavailable("redis", "interrupted")
            if self.feed.entries and entry_order(self.feed.tail()) > entry_order(after):
                return True
            await asyncio.sleep(0.001)
        return False

    async def interrupt(self) -> None:
        self.interrupted = True

    async def close(self) -> None:
        self.closed = True


class CountingEncoder:
    def __init__(self) -> None:
        self.batches = 0

    def snapshot(self, event: Event, live: LiveState) -> bytes:
        return b"snapshot"

    def changes(self, event_id: str, epoch: str, entries: Sequence[FeedEntry]) -> bytes:
        self.batches += 1
        return ",".join(e.entry_id for e in entries).encode()


def hub_on(feed: MemoryFeed, encoder: CountingEncoder, **kw: float) -> FeedHub:
    options: dict[str, float] = {"tick_s": 0.05, "queue_size": 8, "block_s": 0.05, **kw}
    return FeedHub(
        feed,
        encoder,
        tick_s=options["tick_s"],
        queue_size=int(options["queue_size"]),
        page_size=100,
        block_s=options["block_s"],
    )


_received: dict[int, list[FeedBatch]] = {}  # batches taken from a subscription, not yet seen


@pytest.fixture(autouse=True)
def _fresh_received() -> None:
    _received.clear()


async def next_batch(sub: Subscription, wait_s: float = 2.0) -> FeedBatch:
    """One batch at a time, although a subscription hands over all it has at once."""
    waiting = _received.setdefault(id(sub), [])
    if not waiting:
        items = await asyncio.wait_for(sub.next(), wait_s)
        assert isinstance(items, list), items
        waiting.extend(items)
    return waiting.pop(0)


async def started(*subs: Subscription) -> None:
    """Until the reader has announced where it starts (changes before that are
    for each stream to catch up on by itself)."""
    for sub in subs:
        assert (await next_batch(sub)).entries == ()


async def next_with_entries(sub: Subscription, wait_s: float = 2.0) -> FeedBatch:
    """The next batch that carries changes (skipping the reader's start announcement)."""
    while True:
        batch = await next_batch(sub, wait_s)
        if batch.entries:
            return batch


async def test_a_ticks_changes_are_one_batch_encoded_once_for_all_subscribers() -> None:
    """Five changes inside one tick reach three subscribers as one batch whose bytes were
    built once, the same object for everyone."""
    feed, encoder = MemoryFeed(), CountingEncoder()
    hub = hub_on(feed, encoder, tick_s=0.2)
    async with hub.subscribe("ev") as a, hub.subscribe("ev") as b, hub.subscribe("ev") as c:
        await started(a, b, c)
        first = feed.add()
        got_first = [await next_with_entries(s) for s in (a, b, c)]  # leading edge: at once
        assert [g.last for g in got_first] == [first] * 3
        ids = [feed.add() for _ in range(5)]
        batches = [await next_with_entries(s) for s in (a, b, c)]
        assert [e.entry_id for e in batches[0].entries] == ids
        assert batches[0] is batches[1] is batches[2]
        assert batches[0].prev == first
        assert encoder.batches == 2
    await hub.close()


async def test_a_full_queue_is_dropped_to_lagged_and_does_not_grow() -> None:
    """A subscriber that never reads holds at most its capacity, then is told LAGGED
    once; a reading subscriber still gets every change in order."""
    feed, encoder = MemoryFeed(), CountingEncoder()
    hub = hub_on(feed, encoder, tick_s=0.001, queue_size=3)
    async with hub.subscribe("ev") as slow, hub.subscribe("ev") as fast:
        await started(slow, fast)
        seen: list[str] = []
        for _ in range(10):
            feed.add()
            seen += [e.entry_id for e in (await next_with_entries(fast)).entries]
            assert len(slow._items) <= 3
        assert seen == [e.entry_id for e in feed.entries]
        assert await slow.next() is Signal.LAGGED
        feed.add()  # after LAGGED the subscriber is queued again
        assert (await next_with_entries(slow)).last == feed.tail()
    await hub.close()


async def test_batches_waiting_together_merge_into_one_message_encoded_once() -> None:
    """Streams that find several batches waiting send them as one message, and streams
    that lag alike share its bytes; batches of another epoch are not merged in."""
    entries = [FeedEntry(f"{n}-0", ChangeReason.HELD, ("A-1",)) for n in range(1, 5)]
    batches = [
        FeedBatch("e1", "0-0", (entries[0],), b"1"),
        FeedBatch("e1", "1-0", (entries[1], entries[2]), b"2"),
        FeedBatch("e2", "0-0", (entries[3],), b"3"),
    ]
    merged = coalesce(batches)
    assert [(b.epoch, b.prev, b.last, b.frame) for b in merged] == [
        ("e1", "0-0", "3-0", b""),
        ("e2", "0-0", "4-0", b"3"),
    ]
    encoder = CountingEncoder()
    hub = hub_on(MemoryFeed(), encoder)
    frames = {hub.merged_frame("ev", coalesce(batches[:2])[0]) for _ in range(3)}
    assert frames == {b"1-0,2-0,3-0"}
    assert encoder.batches == 1


async def test_reader_stops_with_its_last_subscriber_and_restarts_for_a_new_one() -> None:
    """The last unsubscribe cancels the reader and closes its connection; the next
    subscriber starts a fresh reader."""
    feed, encoder = MemoryFeed(), CountingEncoder()
    hub = hub_on(feed, encoder)
    async with hub.subscribe("ev") as a, hub.subscribe("ev") as b:
        await started(a, b)
        assert (hub.readers, hub.subscribers("ev")) == (1, 2)
    assert (hub.readers, hub.subscribers("ev")) == (0, 0)
    for _ in range(100):
        if feed.waiters[0].closed:
            break
        await asyncio.sleep(0.001)
    assert feed.waiters[0].interrupted
    assert feed.waiters[0].closed
    async with hub.subscribe("ev") as sub:
        await started(sub)
        feed.add()
        assert (await next_with_entries(sub)).last == feed.tail()
        assert len(feed.waiters) == 2
    await hub.close()


async def test_the_reader_does_not_log_with_its_first_subscribers_request_id() -> None:
    """The reader outlives the call that started it: its log context is its own."""
    import structlog

    seen: list[dict[str, object]] = []

    class WatchedFeed(MemoryFeed):
        async def read(self, event_id: str, after: str | None, count: int) -> FeedPage:
            seen.append(structlog.contextvars.get_contextvars())
            return await super().read(event_id, after, count)

    feed, encoder = WatchedFeed(), CountingEncoder()
    hub = hub_on(feed, encoder)
    bound = structlog.contextvars.bind_contextvars(request_id="first-caller")
    try:
        async with hub.subscribe("ev") as sub:
            await started(sub)
            assert structlog.contextvars.get_contextvars() == {"request_id": "first-caller"}
    finally:
        structlog.contextvars.reset_contextvars(**bound)
    await hub.close()
    assert seen
    assert all("request_id" not in context for context in seen)


async def test_reader_retries_through_backend_errors_without_gaps() -> None:
    """Reads that fail for a while are retried; the subscriber keeps its subscription
    and then gets every change made meanwhile, each exactly once."""
    feed, encoder = MemoryFeed(), CountingEncoder()
    hub = hub_on(feed, encoder, tick_s=0.001)
    async with hub.subscribe("ev") as sub:
        await started(sub)
        feed.add()
        received = [e.entry_id for e in (await next_with_entries(sub)).entries]
        feed.failures = 2
        for _ in range(5):
            feed.add()
        while len(received) < 6:
            received += [e.entry_id for e in (await next_with_entries(sub, 5.0)).entries]
        assert received == [e.entry_id for e in feed.entries]
    await hub.close()


async def test_a_new_epoch_is_announced_with_an_empty_batch() -> None:
    """When the feed is reloaded under it, the reader publishes an entry-less batch of
    the new epoch, which tells each stream to resynchronise."""
    feed, encoder = MemoryFeed(), CountingEncoder()
    hub = hub_on(feed, encoder, tick_s=0.001)
    async with hub.subscribe("ev") as sub:
        await started(sub)
        feed.add()
        await next_with_entries(sub)
        feed.epoch, feed.entries = "e2", []
        feed.add()
        while (batch := await next_batch(sub)).epoch != "e2":
            pass
        assert batch.entries == ()
    await hub.close()


async def test_close_ends_subscriptions_and_refuses_new_ones() -> None:
    """Draining wakes every subscriber with CLOSED and later subscribes raise SERVER_DRAINING."""
    feed, encoder = MemoryFeed(), CountingEncoder()
    hub = hub_on(feed, encoder)
    async with hub.subscribe("ev") as sub:
        await started(sub)
        waiting = asyncio.create_task(sub.next())
        await asyncio.sleep(0.01)
        await hub.close()
        assert await waiting is Signal.CLOSED
    with pytest.raises(ServerDraining) as caught:
        async with hub.subscribe("ev"):
            pass
    assert "resume_cursor" in caught.value.message
    assert caught.value.reason == "SERVER_DRAINING"


class SnapshotAt:
    """The inventory and catalog a watch needs: a snapshot at a chosen cursor."""

    def __init__(self, feed: MemoryFeed) -> None:
        self.feed = feed
        self.at: str | None = None  # None: the feed's current tail

    async def get(self, event_id: str) -> object:
        return object()

    async def live_view(self, event_id: str) -> tuple[Event, LiveState]:
        cursor = f"{self.feed.epoch}.{self.at or self.feed.tail()}"
        return Event(event_id, event_id, (), 0), LiveState(frozenset(), frozenset(), cursor)


class TextEncoder(CountingEncoder):
    def snapshot(self, event: Event, live: LiveState) -> bytes:
        return f"snapshot@{live.cursor}".encode()


async def frames_of(watch: AvailabilityWatch, cursor: str, count: int) -> list[str]:
    stream = watch.stream("ev-1", cursor)
    try:
        return [(await asyncio.wait_for(anext(stream), 2)).decode() for _ in range(count)]
    finally:
        await stream.aclose()


def watch_on(feed: MemoryFeed, tick_s: float = 0.001) -> tuple[AvailabilityWatch, SnapshotAt]:
    encoder = TextEncoder()
    hub = hub_on(feed, encoder, tick_s=tick_s)
    inventory = SnapshotAt(feed)
    return AvailabilityWatch(inventory, inventory, feed, hub, encoder), inventory  # type: ignore[arg-type]


async def test_a_snapshot_older_than_the_reader_is_caught_up_from_the_feed() -> None:
    """A snapshot taken before the reader's start position leaves a gap that the
    stream fills from the feed itself: every later change arrives exactly once."""
    feed = MemoryFeed()
    for _ in range(3):
        feed.add()
    watch, inventory = watch_on(feed)
    inventory.at = "1-0"
    stream = watch.stream("ev-1", "")
    assert (await anext(stream)).decode() == "snapshot@e1.1-0"
    assert (await asyncio.wait_for(anext(stream), 2)).decode() == "2-0,3-0"
    feed.add()
    assert (await asyncio.wait_for(anext(stream), 2)).decode() == "4-0"
    await stream.aclose()


async def test_a_stream_ahead_of_the_batch_gets_only_the_newer_changes() -> None:
    """Resuming inside a batch the reader is still coalescing sends the changes after
    the cursor once, not again when that batch is handed over."""
    feed = MemoryFeed()
    watch, _ = watch_on(feed, tick_s=0.3)
    async with watch._hub.subscribe("ev-1") as first:
        await started(first)
        feed.add()
        await next_with_entries(first)  # leading edge: published at once, the tick starts
        feed.add()
        feed.add()
        stream = watch.stream("ev-1", "e1.2-0")
        assert (await anext(stream)).decode() == "3-0"
        feed.add()
        assert (await asyncio.wait_for(anext(stream), 2)).decode() == "4-0"
        await stream.aclose()


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage", "e1.1-0", "e1.77-0", "e9.2-0", "e1.2-0.3", "e1.-1-0"],
    ids=["none", "malformed", "trimmed", "future", "other-epoch", "dotted", "negative"],
)
async def test_cursors_the_feed_cannot_continue_from_get_a_snapshot(cursor: str) -> None:
    """Unset, malformed, trimmed, never issued and other-epoch cursors all start with a
    fresh snapshot rather than a guess."""
    feed = MemoryFeed()
    for _ in range(3):
        feed.add()
    feed.entries.pop(0)  # trimmed: 1-0 is gone
    watch, _ = watch_on(feed)
    assert await frames_of(watch, cursor, 1) == ["snapshot@e1.3-0"]


async def test_a_cursor_still_on_the_feed_resumes_without_a_snapshot() -> None:
    """A cursor the feed still holds gets exactly the changes after it, nothing else."""
    feed = MemoryFeed()
    for _ in range(4):
        feed.add()
    watch, _ = watch_on(feed)
    assert await frames_of(watch, "e1.2-0", 1) == ["3-0,4-0"]


class SlowSnapshotAt(SnapshotAt):
    """Reads the state when asked, answers when ``gate`` opens (a big event, a busy loop)."""

    def __init__(self, feed: MemoryFeed) -> None:
        super().__init__(feed)
        self.gate = asyncio.Event()

    async def live_view(self, event_id: str) -> tuple[Event, LiveState]:
        state = await super().live_view(event_id)
        await self.gate.wait()
        return state


async def test_a_stream_opened_during_another_streams_snapshot_gets_a_newer_one() -> None:
    """Stream A's snapshot read has run and its answer is on its way; a change is
    published; then stream B opens. B must not get A's older snapshot: the change
    came before B subscribed, so nothing would ever bring it to B on a quiet event."""
    feed = MemoryFeed()
    encoder = TextEncoder()
    hub = hub_on(feed, encoder)
    inventory = SlowSnapshotAt(feed)
    watch = AvailabilityWatch(inventory, inventory, feed, hub, encoder)  # type: ignore[arg-type]
    a = watch.stream("ev-1", "")
    first_of_a = asyncio.create_task(anext(a))
    await asyncio.sleep(0.01)  # A subscribed; its snapshot read (at 0-0) waits at the gate
    feed.add()  # 1-0, published to A's subscription
    await asyncio.sleep(0.05)
    b = watch.stream("ev-1", "")
    first_of_b = asyncio.create_task(anext(b))
    await asyncio.sleep(0.01)
    inventory.gate.set()
    try:
        async with asyncio.timeout(2):
            assert (await first_of_a).decode() == "snapshot@e1.0-0"
            assert (await anext(a)).decode() == "1-0"
            assert (await first_of_b).decode() == "snapshot@e1.1-0"
    finally:
        await a.aclose()
        await b.aclose()


async def test_merged_frames_are_bounded_and_go_with_their_reader() -> None:
    """Streams lagging at different positions each get a merged frame: what is kept of
    them stays within the byte bound while they run, and nothing is kept once the
    event's last stream has gone (merges of any size had stayed until 1,024 newer
    ones pushed them out: 70 MB here)."""
    from seat_inventory.api.translate import ProtoUpdateEncoder
    from seat_inventory.service_layer import fanout

    feed = MemoryFeed()

    class Encoder(ProtoUpdateEncoder):
        def snapshot(self, event: Event, live: LiveState) -> bytes:
            return b"snapshot"  # not what this is about

    encoder = Encoder()
    hub = hub_on(feed, encoder, tick_s=0.001, queue_size=64)  # type: ignore[arg-type]
    inventory = SnapshotAt(feed)
    watch = AvailabilityWatch(inventory, inventory, feed, hub, encoder)  # type: ignore[arg-type]
    streams = [watch.stream("ev-1") for _ in range(64)]
    for stream in streams:
        await anext(stream)
    seats = tuple(f"SECTION-{n:03d}" for n in range(20))
    rng = random.Random(7)
    peak = 0
    for _ in range(30):
        for _ in range(100):
            feed.add(ChangeReason.HELD, seats)
        await asyncio.sleep(0.03)  # the reader publishes the page
        for stream in streams:
            if rng.random() < 0.15:
                await asyncio.wait_for(anext(stream), 2)  # what waited, merged
        peak = max(peak, hub.merged_bytes)
    print(f"\nmerged frames kept at most {peak / 1e6:.1f} MB")
    assert 0 < peak <= fanout._MERGED_MAX_BYTES
    for stream in streams:
        await stream.aclose()
    assert (hub.readers, hub.merged_bytes) == (0, 0)
    await hub.close()
