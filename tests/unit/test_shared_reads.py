"""SharedReads: callers of one key share reads, and none is answered by a read
that began before it arrived."""

from __future__ import annotations

import asyncio

import pytest

from seat_inventory.service_layer.shared_reads import SharedReads


class Backend:
    """Reads that finish when the test says; each answers (key, its number)."""

    def __init__(self) -> None:
        self.started: list[asyncio.Event] = []
        self.release: list[asyncio.Event] = []
        self.fail_next = False

    async def fetch(self, key: str) -> tuple[str, int]:
        number = len(self.started)
        self.started.append(asyncio.Event())
        self.release.append(asyncio.Event())
        self.started[number].set()
        fail, self.fail_next = self.fail_next, False
        await self.release[number].wait()
        if fail:
            raise RuntimeError(f"read {number} failed")
        return key, number


async def started(backend: Backend, n: int) -> None:
    async with asyncio.timeout(5):
        while True:
            if len(backend.started) >= n:
                break
            await asyncio.sleep(0)
        await backend.started[n - 1].wait()


async def test_callers_during_a_read_share_the_next_one_not_that_one() -> None:
    backend = Backend()
    reads = SharedReads(backend.fetch)
    first = asyncio.create_task(reads.get("ev"))
    await started(backend, 1)
    # 50 callers arrive while read 0 is in flight: they must not get read 0
    later = [asyncio.create_task(reads.get("ev")) for _ in range(50)]
    await asyncio.sleep(0)
    backend.release[0].set()
    assert await first == ("ev", 0)
    await started(backend, 2)  # one more read, for all 50
    backend.release[1].set()
    assert {await task for task in later} == {("ev", 1)}
    assert reads.reads == 2


async def test_keys_are_read_apart() -> None:
    backend = Backend()
    reads = SharedReads(backend.fetch)
    a = asyncio.create_task(reads.get("a"))
    b = asyncio.create_task(reads.get("b"))
    await started(backend, 2)
    for event in backend.release:
        event.set()
    assert {(await a)[0], (await b)[0]} == {"a", "b"}


async def test_an_error_reaches_every_caller_of_that_read_and_the_next_read_is_fresh() -> None:
    backend = Backend()
    reads = SharedReads(backend.fetch)
    backend.fail_next = True
    first = asyncio.create_task(reads.get("ev"))
    await started(backend, 1)
    waiting = [asyncio.create_task(reads.get("ev")) for _ in range(3)]
    await asyncio.sleep(0)
    backend.fail_next = True  # the shared next read fails too
    backend.release[0].set()
    with pytest.raises(RuntimeError, match="read 0"):
        await first
    await started(backend, 2)
    backend.release[1].set()
    for task in waiting:
        with pytest.raises(RuntimeError, match="read 1"):
            await task
    third = asyncio.create_task(reads.get("ev"))
    await started(backend, 3)
    backend.release[2].set()
    assert await third == ("ev", 2)


async def test_a_caller_giving_up_leaves_the_read_to_the_others() -> None:
    backend = Backend()
    reads = SharedReads(backend.fetch)
    first = asyncio.create_task(reads.get("ev"))
    await started(backend, 1)
    quitter = asyncio.create_task(reads.get("ev"))
    stayer = asyncio.create_task(reads.get("ev"))
    await asyncio.sleep(0)
    first.cancel()
    quitter.cancel()
    backend.release[0].set()  # read 0 finishes although its caller left
    await started(backend, 2)
    backend.release[1].set()
    assert await stayer == ("ev", 1)
    assert quitter.cancelled()
    assert first.cancelled()
