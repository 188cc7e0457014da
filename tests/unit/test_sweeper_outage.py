"""The sweeper when some events' Redis is down (one master of a Redis Cluster):
the other events are still swept, and the pass still reports the failure."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.service_layer.ports import ExpiryPass
from seat_inventory.service_layer.sweeper import Sweeper


class Holds:
    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.swept: list[str] = []

    async def expire_due(self, event_id: str) -> ExpiryPass:
        if event_id in self.down:
            raise BackendUnavailable("redis", "ConnectionError")
        self.swept.append(event_id)
        return ExpiryPass(1, None, [], False)


class Events:
    async def event_ids(self) -> list[str]:
        return ["on-a", "on-b", "on-c", "on-b-too", "on-a-too"]


async def no_repair(event_id: str, hold_id: str) -> bool:
    raise AssertionError("nothing to repair")


async def test_events_of_a_live_master_are_swept_while_another_master_is_down() -> None:
    holds = Holds(down={"on-b", "on-b-too"})
    sweeper = Sweeper(holds, Events(), repair=no_repair)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        await sweeper.sweep_once()
    assert holds.swept == ["on-a", "on-c", "on-a-too"]
    assert sweeper.expired_total == 3
    holds.down.clear()
    assert await sweeper.sweep_once() == 5


class Confirming:
    """Every event has one lapsed hold, and one confirming hold to repair."""

    def __init__(self) -> None:
        self.swept: list[str] = []

    async def expire_due(self, event_id: str) -> ExpiryPass:
        self.swept.append(event_id)
        return ExpiryPass(1, None, [f"hold-of-{event_id}"], False)


async def test_a_repair_failing_on_a_database_outage_does_not_stop_expiring_other_events() -> None:
    """The database is down, so the first event's repair fails: every later event is
    still expired (that needs only Redis), the pass reports the outage, and once the
    database is back the repairs are done."""
    holds, repaired, database_up = Confirming(), [], False

    async def repair(event_id: str, hold_id: str) -> bool:
        if not database_up:
            raise BackendUnavailable("database", "ConnectionRefusedError")
        repaired.append(hold_id)
        return False

    sweeper = Sweeper(holds, Events(), repair=repair)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        await sweeper.sweep_once()
    assert holds.swept == ["on-a", "on-b", "on-c", "on-b-too", "on-a-too"]
    assert (sweeper.expired_total, repaired) == (5, [])
    database_up = True
    await sweeper.sweep_once()
    assert repaired == [f"hold-of-{e}" for e in holds.swept[:5]]


async def test_an_unexpected_error_never_ends_the_sweeper() -> None:
    """A repair raising something no one expected is logged; the other events are
    swept in the same pass and the sweeper keeps running, tick after tick."""
    holds = Confirming()

    async def repair(event_id: str, hold_id: str) -> bool:
        if event_id == "on-a":
            raise RuntimeError("a bug")
        return True

    sweeper = Sweeper(holds, Events(), repair=repair, interval_s=0.001)  # type: ignore[arg-type]
    task = asyncio.create_task(sweeper.run())
    try:
        async with asyncio.timeout(10):
            while len(holds.swept) < 15:  # three passes
                await asyncio.sleep(0.01)
                assert not task.done(), task
        assert sweeper.repaired_total >= 12  # every event but on-a, every pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
