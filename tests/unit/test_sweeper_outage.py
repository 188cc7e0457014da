"""The sweeper when some events' Redis is down (one master of a Redis Cluster):
the other events are still swept, and the pass still reports the failure."""

from __future__ import annotations

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
