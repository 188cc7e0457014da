"""The per-principal token bucket and stream slots, on a clock the test moves."""

from __future__ import annotations

from seat_inventory.api.limits import RateLimiter, StreamSlots


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_admits_a_burst_then_one_per_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 0.5  # refused: a token in half a second
    clock.now += 0.25
    assert limiter.acquire("a") == 0.25  # a refusal takes nothing
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # every principal has its own bucket
    clock.now += 100
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refills to the burst, no more


def test_zero_rate_is_off_and_burst_defaults_to_one_second() -> None:
    off = RateLimiter(0)
    assert not off.enabled
    assert all(off.acquire("a") == 0.0 for _ in range(10_000))
    assert RateLimiter(50).burst == 50
    assert RateLimiter(0.2).burst == 1


def test_stream_slots_per_principal() -> None:
    slots = StreamSlots(2)
    assert slots.acquire("a")
    assert slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.open("a") == 1
    assert slots.acquire("a")
    unlimited = StreamSlots(0)
    assert all(unlimited.acquire("a") for _ in range(1000))
