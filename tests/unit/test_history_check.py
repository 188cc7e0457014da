"""The linearizability checker accepts every history a correct service can
produce and rejects the ones no correct service can."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.history_check import (
    Kind,
    Operation,
    Result,
    Verdict,
    check,
    dump_jsonl,
    load_jsonl,
    main,
)

LONG = 1_000_000  # an expiry far after every other time in a history


def reserve(
    inv: int,
    comp: int | None,
    hold: str,
    result: str = "ok",
    *,
    exp: int = LONG,
    seats: tuple[str, ...] = ("A",),
    taken: tuple[str, ...] = ("A",),
    ttl: int = 1000,
) -> Operation:
    return Operation(
        Kind.RESERVE,
        inv,
        comp,
        "unknown" if comp is None else result,
        seats=seats,
        hold=hold,
        ttl_ms=ttl,
        expires_at_ms=exp if result == "ok" else None,
        taken=taken if result == "unavailable" else (),
    )


def on_hold(
    kind: Kind, inv: int, comp: int | None, hold: str, result: str = "ok", **kw: object
) -> Operation:
    seats = kw.pop("seats", ("A",))
    assert isinstance(seats, tuple)
    exp = kw.pop("exp", None)
    assert exp is None or isinstance(exp, int)
    return Operation(
        kind, inv, comp, "unknown" if comp is None else result, seats, hold, expires_at_ms=exp
    )


def read(inv: int, comp: int | None, *seen: str, seats: tuple[str, ...] = ("A",)) -> Operation:
    return Operation(
        Kind.READ,
        inv,
        comp,
        "ok" if comp is not None else "unknown",
        observed=tuple(zip(seats, seen, strict=True)),
    )


def wipe(inv: int, comp: int, seats: tuple[str, ...] = ("A",)) -> Operation:
    return Operation(Kind.WIPE, inv, comp, "ok", seats=seats)


def verdicts(ops: list[Operation]) -> dict[str, Verdict]:
    return {v.seat: v for v in check(ops)}


def accepted(ops: list[Operation]) -> bool:
    results = check(ops)
    assert all(v.linearizable is not None for v in results), results
    return all(v.linearizable for v in results)


ACCEPT = {
    "a hold's whole life, one call after another": [
        reserve(0, 10, "h1"),
        read(20, 30, "held"),
        on_hold(Kind.CONFIRM, 40, 50, "h1"),
        read(60, 70, "booked"),
        on_hold(Kind.CANCEL, 80, 90, "h1"),
        read(100, 110, "available"),
        reserve(120, 130, "h2"),
    ],
    "two overlapping reserves: one wins, one loses": [
        reserve(0, 100, "h1"),
        reserve(10, 90, "h2", "unavailable"),
    ],
    "the loser may be the first one invoked": [
        reserve(0, 100, "h1", "unavailable"),
        reserve(10, 90, "h2"),
    ],
    "a read concurrent with a reserve may see the seat before it": [
        reserve(0, 100, "h1"),
        read(10, 20, "available"),
        read(110, 120, "held"),
    ],
    "a hold lapses at its expiry and the seat is offered again": [
        reserve(0, 10, "h1", exp=1000),
        read(500, 510, "held"),
        read(1000, 1010, "available"),
        reserve(1020, 1030, "h2", exp=3000),
        on_hold(Kind.CONFIRM, 1040, 1050, "h1", "not_found"),
        on_hold(Kind.RELEASE, 1060, 1070, "h1", "not_found"),
    ],
    "a read that straddles the expiry may see either": [
        reserve(0, 10, "h1", exp=1000),
        read(990, 1010, "available"),
        read(995, 1020, "held"),
    ],
    "release, then release again answers released=false": [
        reserve(0, 10, "h1"),
        on_hold(Kind.RELEASE, 20, 30, "h1"),
        on_hold(Kind.RELEASE, 40, 50, "h1", "already"),
        on_hold(Kind.CONFIRM, 60, 70, "h1", "not_found"),
        reserve(80, 90, "h2"),
    ],
    "a retried Confirm returns the booking; after a cancel, the cancelled one": [
        reserve(0, 10, "h1"),
        on_hold(Kind.CONFIRM, 20, 30, "h1"),
        on_hold(Kind.CONFIRM, 40, 50, "h1"),
        on_hold(Kind.RELEASE, 55, 58, "h1", "not_found"),
        on_hold(Kind.CANCEL, 60, 70, "h1"),
        on_hold(Kind.CONFIRM, 80, 90, "h1", "cancelled"),
        on_hold(Kind.CANCEL, 100, 110, "h1"),
    ],
    "a reserve with no answer may have taken the seat": [
        reserve(0, None, "h?"),
        read(50, 60, "held"),
        reserve(70, 80, "h2", "unavailable"),
    ],
    "a reserve with no answer may have done nothing": [
        reserve(0, None, "h?"),
        read(50, 60, "available"),
        reserve(70, 80, "h2"),
    ],
    "a Confirm with no answer may have booked the seat": [
        reserve(0, 10, "h1", exp=100),
        on_hold(Kind.CONFIRM, 20, None, "h1"),
        read(200, 210, "booked"),
        on_hold(Kind.CONFIRM, 220, 230, "h1"),
    ],
    "a Confirm cut off after its claim pins the seat until repair gives it up": [
        reserve(0, 10, "h1", exp=100),
        on_hold(Kind.CONFIRM, 20, None, "h1"),
        read(200, 210, "held"),
        on_hold(Kind.RELEASE, 220, 230, "h1", "confirming"),
        read(300, 310, "available"),
        on_hold(Kind.CONFIRM, 320, 330, "h1", "not_found"),
        reserve(340, 350, "h2"),
    ],
    "a Confirm that answered OK with its finalize deferred shows HELD until repair": [
        reserve(0, 10, "h1", exp=100),
        on_hold(Kind.CONFIRM, 20, 30, "h1"),
        read(200, 210, "held"),
        read(300, 310, "booked"),
    ],
    "a multi-seat Reserve that lost on one seat tells nothing about the other": [
        reserve(0, 10, "h1", seats=("A",)),
        reserve(20, 30, "h2", "unavailable", seats=("A", "B"), taken=("A",)),
        read(40, 50, "held", "available", seats=("A", "B")),
        reserve(60, 70, "h3", seats=("B",)),
    ],
    "Redis losing its data frees holds and keeps bookings": [
        reserve(0, 10, "h1", seats=("A",)),
        reserve(0, 10, "h2", seats=("B",)),
        on_hold(Kind.CONFIRM, 20, 30, "h2", seats=("B",)),
        on_hold(Kind.RELEASE, 32, 34, "h2", "not_found", seats=("B",)),
        wipe(40, 50, seats=("A", "B")),
        read(60, 70, "available", "booked", seats=("A", "B")),
        on_hold(Kind.CONFIRM, 80, 90, "h1", "not_found", seats=("A",)),
        on_hold(Kind.CONFIRM, 80, 90, "h2", seats=("B",)),
    ],
    "an extension keeps the hold past its first expiry": [
        reserve(0, 10, "h1", exp=1000),
        on_hold(Kind.EXTEND, 500, 510, "h1", exp=5000),
        read(2000, 2010, "held"),
        on_hold(Kind.CONFIRM, 3000, 3010, "h1"),
    ],
    "an observed expiry after the hold's time": [
        reserve(0, 10, "h1", exp=1000),
        on_hold(Kind.EXPIRE, 1000, 1200, "h1"),
        reserve(1300, 1310, "h2"),
    ],
}

REJECT = {
    "two overlapping successful reserves of one seat by different holds": [
        reserve(0, 100, "h1"),
        reserve(10, 90, "h2"),
    ],
    "a Confirm that succeeded for a hold whose reserve never happened": [
        on_hold(Kind.CONFIRM, 0, 10, "ghost"),
    ],
    "a read showing AVAILABLE between a reserve and its release, concurrent with neither": [
        reserve(0, 10, "h1"),
        read(20, 30, "available"),
        on_hold(Kind.RELEASE, 40, 50, "h1"),
    ],
    "double booking: a second hold confirmed while the first booking stands": [
        reserve(0, 10, "h1"),
        on_hold(Kind.CONFIRM, 20, 30, "h1"),
        reserve(40, 50, "h2"),
        on_hold(Kind.CONFIRM, 60, 70, "h2"),
    ],
    "double booking: a lapsed hold confirmed after the seat was taken again": [
        reserve(0, 10, "h1", exp=1000),
        reserve(1100, 1110, "h2", exp=5000),
        on_hold(Kind.CONFIRM, 1200, 1210, "h2"),
        on_hold(Kind.CONFIRM, 1300, 1310, "h1"),
    ],
    "a Confirm of a lapsed hold succeeded": [
        reserve(0, 10, "h1", exp=1000),
        on_hold(Kind.CONFIRM, 1100, 1110, "h1"),
    ],
    "a Confirm after the hold was released succeeded": [
        reserve(0, 10, "h1"),
        on_hold(Kind.RELEASE, 20, 30, "h1"),
        on_hold(Kind.CONFIRM, 40, 50, "h1"),
    ],
    "a hold still shown HELD long after its expiry": [
        reserve(0, 10, "h1", exp=1000),
        read(1500, 1510, "held"),
    ],
    "a Reserve lost on a seat nobody held": [
        reserve(0, 10, "h1", "unavailable"),
    ],
    "a Release that freed a hold after it lapsed": [
        reserve(0, 10, "h1", exp=1000),
        on_hold(Kind.RELEASE, 1100, 1110, "h1"),
    ],
    "released=false for a hold that was never released": [
        reserve(0, 10, "h1"),
        on_hold(Kind.RELEASE, 20, 30, "h1", "already"),
    ],
    "a booked seat shown AVAILABLE with no cancel": [
        reserve(0, 10, "h1"),
        on_hold(Kind.CONFIRM, 20, 30, "h1"),
        read(40, 50, "available"),
    ],
    "a booked seat AVAILABLE after Redis lost its data": [
        reserve(0, 10, "h1"),
        on_hold(Kind.CONFIRM, 20, 30, "h1"),
        wipe(40, 50),
        read(60, 70, "available"),
    ],
    "a hold that survived Redis losing its data": [
        reserve(0, 10, "h1"),
        wipe(20, 30),
        on_hold(Kind.CONFIRM, 40, 50, "h1"),
    ],
    "a Confirm that answered SEATS_UNAVAILABLE (Redis offered a sold seat)": [
        reserve(0, 10, "h1"),
        on_hold(Kind.CONFIRM, 20, 30, "h1", "unavailable"),
    ],
    "an INTERNAL error": [
        reserve(0, 10, "h1", "error:INTERNAL"),
    ],
    "a cancelled booking that came back": [
        reserve(0, 10, "h1"),
        on_hold(Kind.CONFIRM, 20, 30, "h1"),
        on_hold(Kind.CANCEL, 40, 50, "h1"),
        read(60, 70, "booked"),
    ],
    "a real-time order violated: the read completed before the reserve began": [
        read(0, 10, "held"),
        reserve(20, 30, "h1"),
    ],
    "a Confirm with no answer cannot book a seat another hold took": [
        reserve(0, 10, "h1", exp=100),
        on_hold(Kind.CONFIRM, 200, None, "h1"),
        reserve(300, 310, "h2"),
        read(400, 410, "booked"),
    ],
}


@pytest.mark.parametrize("ops", ACCEPT.values(), ids=ACCEPT.keys())
def test_accepts_histories_a_correct_service_produces(ops: list[Operation]) -> None:
    """Each of these histories has an order of its operations that the seat model explains."""
    assert accepted(ops), check(ops)


@pytest.mark.parametrize("ops", REJECT.values(), ids=REJECT.keys())
def test_rejects_histories_no_correct_service_produces(ops: list[Operation]) -> None:
    """Each of these histories is rejected, with a reason naming the seat's state."""
    results = check(ops)
    bad = [v for v in results if v.linearizable is False]
    assert bad, results
    assert all(v.reason for v in bad)


def test_reject_reason_names_the_operation_that_cannot_fit() -> None:
    """The reason says how far the search got and which operation is left over."""
    (verdict,) = check(REJECT["a Confirm of a lapsed hold succeeded"])
    assert "after 1 of 2 completed operations" in verdict.reason
    assert "confirm h1 -> ok [1100, 1110]" in verdict.reason


def test_seats_are_judged_apart() -> None:
    """A violation on one seat leaves the verdict on another seat untouched."""
    ops = [
        reserve(0, 10, "h1", seats=("A",)),
        reserve(20, 30, "h2", seats=("A",)),
        reserve(0, 10, "h3", seats=("B",)),
    ]
    result = verdicts(ops)
    assert result["A"].linearizable is False
    assert result["B"].linearizable is True


def test_search_budget_gives_an_inconclusive_verdict() -> None:
    """A search that runs out of states says so instead of guessing."""
    ops = [reserve(0, 1000, f"h{i}", "unavailable") for i in range(12)]
    ops.append(reserve(0, 1000, "winner"))
    (verdict,) = check(ops, max_states=3)
    assert verdict.linearizable is None
    assert "gave up" in verdict.reason


def test_skew_widens_every_interval() -> None:
    """A read just after the expiry showing HELD passes only within the allowed skew."""
    ops = [reserve(0, 10, "h1", exp=1000), read(1002, 1005, "held")]
    assert not accepted(ops)
    assert all(v.linearizable for v in check(ops, skew_ms=5))


def test_jsonl_round_trip_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Operations survive JSONL; the CLI prints a verdict per seat and exits 1 on a violation."""
    good = tmp_path / "good.jsonl"
    dump_jsonl(ACCEPT["Redis losing its data frees holds and keeps bookings"], good)
    assert load_jsonl(good) == ACCEPT["Redis losing its data frees holds and keeps bookings"]
    assert main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "A: linearizable" in out
    assert "B: linearizable" in out

    bad = tmp_path / "bad.jsonl"
    dump_jsonl(
        REJECT["double booking: a second hold confirmed while the first booking stands"], bad
    )
    assert main([str(bad)]) == 1
    assert "A: NOT LINEARIZABLE" in capsys.readouterr().out

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"kind": "reserve", "invoke_ms": "soon", "result": "ok"}) + "\n")
    assert main([str(broken)]) == 2
    assert "broken.jsonl:1: invoke_ms: must be an integer" in capsys.readouterr().err


# --- generated histories of a correct seat --------------------------------


def simulate(rng: random.Random, steps: int) -> list[Operation]:
    """A correct single seat driven by random calls; each call gets an interval
    around the instant it took effect (so calls overlap), and a few lose their answer."""
    ops: list[Operation] = []
    now = 0
    holder: tuple[str, int] | None = None  # hold, expiry
    booked: str | None = None
    released: set[str] = set()
    cancelled: set[str] = set()
    holds: list[str] = []
    for n in range(steps):
        now += rng.randint(1, 40)
        if holder is not None and holder[1] <= now:
            holder = None
        inv, comp = now - rng.randint(0, 60), now + rng.randint(0, 60)
        answer: int | None = None if rng.random() < 0.05 else comp
        choice = rng.choice(["reserve", "reserve", "read", "confirm", "release", "cancel"])
        if choice == "reserve":
            hold = f"h{n}"
            if holder is None and booked is None:
                exp = now + rng.choice([30, 80, 400])
                holder = (hold, exp)
                holds.append(hold)
                ops.append(reserve(inv, answer, hold, exp=exp, ttl=exp - now))
            else:
                ops.append(reserve(inv, comp, hold, "unavailable"))
        elif choice == "read":
            seen = "booked" if booked else "held" if holder else "available"
            ops.append(read(inv, comp, seen))
        elif holds:
            hold = rng.choice(holds)
            live = holder is not None and holder[0] == hold
            if choice == "confirm":
                if live or booked == hold:
                    holder, booked = None, hold
                    ops.append(on_hold(Kind.CONFIRM, inv, answer, hold))
                else:
                    result = "cancelled" if hold in cancelled else "not_found"
                    ops.append(on_hold(Kind.CONFIRM, inv, comp, hold, result))
            elif choice == "release":
                if live:
                    holder = None
                    released.add(hold)
                    ops.append(on_hold(Kind.RELEASE, inv, answer, hold))
                else:
                    result = "already" if hold in released else "not_found"
                    ops.append(on_hold(Kind.RELEASE, inv, comp, hold, result))
            elif booked == hold or hold in cancelled:
                booked = None if booked == hold else booked
                cancelled.add(hold)
                ops.append(on_hold(Kind.CANCEL, inv, answer, hold))
    return ops


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(1, 60))
def test_accepts_generated_histories_of_a_correct_seat(seed: int, steps: int) -> None:
    """Random overlapping histories of a correct seat, some answers lost, are all accepted."""
    ops = simulate(random.Random(seed), steps)
    assert accepted(ops), "\n".join(op.describe() for op in ops)


def test_results_outside_the_contract_are_named() -> None:
    """Results are plain strings: anything outside the enum is reported, not crashed on."""
    assert Result("ok") is Result.OK
    (verdict,) = check([reserve(0, 10, "h1", "error:UNKNOWN")])
    assert verdict.linearizable is False
    assert "never answers 'error:UNKNOWN'" in verdict.reason
