"""The sweeper with many holds due at once: it calls again while a batch comes
back full, in turns over the events, until nothing more is due (or its bound)."""

from __future__ import annotations

from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.service_layer.ports import ExpiryPass
from seat_inventory.service_layer.sweeper import Sweeper


class Holds:
    """Each event has some holds due; a call takes at most ``batch`` of them."""

    def __init__(self, due: dict[str, int], batch: int = 10) -> None:
        self.due, self.batch = due, batch
        self.calls: list[str] = []
        self.fail_after: dict[str, int] = {}  # event -> calls that succeed before it fails

    async def expire_due(self, event_id: str) -> ExpiryPass:
        self.calls.append(event_id)
        left = self.fail_after.get(event_id)
        if left is not None:
            if left == 0:
                raise BackendUnavailable("redis", "ConnectionError")
            self.fail_after[event_id] = left - 1
        taken = min(self.batch, self.due.get(event_id, 0))
        self.due[event_id] = self.due.get(event_id, 0) - taken
        return ExpiryPass(taken, None, [], taken == self.batch)


class Events:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    async def event_ids(self) -> list[str]:
        return list(self.ids)


async def no_repair(event_id: str, hold_id: str) -> bool:
    raise AssertionError("nothing to repair")


async def test_one_pass_expires_everything_due_taking_turns_over_the_events() -> None:
    holds = Holds({"big": 35, "small": 12, "idle": 0})
    sweeper = Sweeper(holds, Events(["big", "small", "idle"]), repair=no_repair)  # type: ignore[arg-type]
    assert await sweeper.sweep_once() == 47
    assert holds.due == {"big": 0, "small": 0, "idle": 0}
    # Round one visits every event; then only those whose batch was full, in turns.
    assert holds.calls == ["big", "small", "idle", "big", "small", "big", "big"]
    assert sweeper.expired_total == 47


async def test_a_pass_is_bounded_and_the_rest_waits_for_the_next_pass() -> None:
    holds = Holds({"big": 100})
    sweeper = Sweeper(holds, Events(["big"]), repair=no_repair, max_rounds=3)  # type: ignore[arg-type]
    assert await sweeper.sweep_once() == 30
    assert await sweeper.sweep_once() == 30
    assert holds.due == {"big": 40}


async def test_an_event_failing_mid_pass_does_not_stop_the_others() -> None:
    holds = Holds({"a": 25, "b": 25})
    holds.fail_after["a"] = 1  # the second batch of "a" fails (its master went down)
    sweeper = Sweeper(holds, Events(["a", "b"]), repair=no_repair)  # type: ignore[arg-type]
    try:
        await sweeper.sweep_once()
    except BackendUnavailable:
        pass
    else:
        raise AssertionError("the failure is reported after the pass")
    assert holds.due == {"a": 15, "b": 0}
    assert sweeper.expired_total == 35
    del holds.fail_after["a"]
    assert await sweeper.sweep_once() == 15


async def test_confirming_holds_of_every_batch_are_repaired() -> None:
    repaired: list[tuple[str, str]] = []

    async def repair(event_id: str, hold_id: str) -> bool:
        repaired.append((event_id, hold_id))
        return False

    class WithConfirming(Holds):
        async def expire_due(self, event_id: str) -> ExpiryPass:
            swept = await super().expire_due(event_id)
            return swept._replace(confirming=[f"h{len(self.calls)}"])

    holds = WithConfirming({"ev": 15})
    sweeper = Sweeper(holds, Events(["ev"]), repair=repair)  # type: ignore[arg-type]
    assert await sweeper.sweep_once() == 15
    assert repaired == [("ev", "h1"), ("ev", "h2")]
    assert sweeper.repaired_total == 2
