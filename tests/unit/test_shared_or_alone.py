"""The SQLite fence's lock (adapters/sql/_fence.SharedOrAlone): bookings share
it, every other write holds it alone, first come first served; a cancelled
waiter or holder never leaves it taken."""

from __future__ import annotations

import asyncio

from seat_inventory.adapters.sql._fence import SharedOrAlone


async def test_sharers_share_and_one_alone_waits_for_them_and_blocks_later_sharers() -> None:
    lock = SharedOrAlone()
    order: list[str] = []
    release = {name: asyncio.Event() for name in ("s1", "s2", "alone", "s3")}

    async def hold(name: str, alone: bool) -> None:
        async with lock.hold(alone=alone):
            order.append(f"+{name}")
            await release[name].wait()
            order.append(f"-{name}")

    async with asyncio.timeout(5):
        s1 = asyncio.create_task(hold("s1", False))
        s2 = asyncio.create_task(hold("s2", False))
        await asyncio.sleep(0.01)
        alone = asyncio.create_task(hold("alone", True))
        await asyncio.sleep(0.01)
        s3 = asyncio.create_task(hold("s3", False))  # after the one waiting alone
        await asyncio.sleep(0.01)
        assert order == ["+s1", "+s2"]
        release["s1"].set()
        await asyncio.sleep(0.01)
        assert order == ["+s1", "+s2", "-s1"]  # alone still waits for s2, s3 behind it
        release["s2"].set()
        await asyncio.sleep(0.01)
        assert order[-2:] == ["-s2", "+alone"]
        release["alone"].set()
        await asyncio.sleep(0.01)
        assert order[-2:] == ["-alone", "+s3"]
        release["s3"].set()
        await asyncio.gather(s1, s2, alone, s3)


async def test_a_cancelled_waiter_is_skipped_and_a_cancelled_holder_lets_go() -> None:
    lock = SharedOrAlone()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold(alone: bool, gate: asyncio.Event | None = None) -> str:
        async with lock.hold(alone=alone):
            entered.set()
            if gate is not None:
                await gate.wait()
        return "done"

    async with asyncio.timeout(5):
        holder = asyncio.create_task(hold(True, release))
        await entered.wait()
        entered.clear()
        waiter = asyncio.create_task(hold(True))
        await asyncio.sleep(0.01)
        waiter.cancel()  # gives up while waiting
        sharer = asyncio.create_task(hold(False))
        await asyncio.sleep(0.01)
        assert not sharer.done()
        holder.cancel()  # cancelled while holding it alone
        assert await sharer == "done"
        assert waiter.cancelled()
        assert holder.cancelled()
        # Nothing left taken: alone at once.
        assert await hold(True) == "done"


async def test_a_waiter_cancelled_right_after_its_turn_came_gives_it_back() -> None:
    lock = SharedOrAlone()

    async def hold_alone() -> str:
        async with lock.hold(alone=True):
            return "done"

    async with asyncio.timeout(5):
        held = lock.hold(alone=True)
        await held.__aenter__()
        waiter = asyncio.create_task(hold_alone())
        await asyncio.sleep(0.01)
        await held.__aexit__(None, None, None)  # its turn comes (granted at once)...
        waiter.cancel()  # ...and it is cancelled before it ran
        await asyncio.gather(waiter, return_exceptions=True)
        assert waiter.cancelled()
        assert await hold_alone() == "done"
