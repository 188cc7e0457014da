"""Is a recorded history of seat operations linearizable?

A history is what clients saw: for each call, when it was invoked, when its
answer arrived (None when none did: a timeout or UNAVAILABLE, so it may or may
not have taken effect), what it was and what it answered. Seats are
independent, so each seat's projection of the history is checked on its own
against a single-seat model:

    available ──reserve(h)──▶ held(h, until t) ──confirm(h)──▶ booked(h)
        ▲                        │ release(h), or t passes         │
        └────────────────────────┴─────────────── cancel ──────────┘

plus what Confirm's steps make visible (DESIGN §4): a claimed hold is
*pinned* (it shows HELD and cannot lapse) until its booking is finalized
(BOOKED) or repair gives it up (available); a Confirm that answered OK may
leave it pinned when the finalize step was deferred to repair. Redis losing
its data (``wipe``) frees every live hold; bookings survive it.

The search is Wing & Gong's with Lowe's memoisation (WGL): find an order of
the operations that respects real time (an op that completed before another
was invoked comes first) in which every answer is the model's answer. An
operation whose outcome is unknown may also be left out.

Time matters because holds lapse: every operation takes effect at one instant
``tau`` in [invoke, complete], and ``tau`` grows along the order. The search
gives each operation the earliest ``tau`` it allows, which never hurts the
operations after it. Times are epoch milliseconds of the machine's clock;
Redis reads the same clock when it runs on the same host, and ``skew_ms``
widens every interval when it does not.

Usage: ``python -m tools.history_check history.jsonl`` (one Operation per line).
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "ALLOWED_RESULTS",
    "Kind",
    "Operation",
    "Result",
    "Seen",
    "Verdict",
    "check",
    "dump_jsonl",
    "load_jsonl",
    "main",
]

INF = 1 << 62  # "no completion": later than any real time


class Kind(enum.StrEnum):
    RESERVE = "reserve"
    CONFIRM = "confirm"
    RELEASE = "release"
    EXTEND = "extend"
    CANCEL = "cancel"  # CancelBooking of the booking made from ``hold``
    READ = "read"  # GetAvailability (or a stream snapshot)
    EXPIRE = "expire"  # an observed expiry of ``hold`` (e.g. EXPIRED on the feed)
    WIPE = "wipe"  # Redis lost its data (FLUSHALL, restarted empty)


class Result(enum.StrEnum):
    OK = "ok"
    ALREADY = "already"  # Release of a released hold: released=false
    UNAVAILABLE = "unavailable"  # FAILED_PRECONDITION SEATS_UNAVAILABLE
    NOT_FOUND = "not_found"  # HOLD_NOT_FOUND, BOOKING_NOT_FOUND
    CONFIRMING = "confirming"  # FAILED_PRECONDITION HOLD_CONFIRMING
    CANCELLED = "cancelled"  # Confirm answered with a booking cancelled since
    UNKNOWN = "unknown"  # no answer: it may or may not have taken effect


class Seen(enum.StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    BOOKED = "booked"


ALLOWED_RESULTS: Mapping[Kind, frozenset[Result]] = {
    Kind.RESERVE: frozenset({Result.OK, Result.UNAVAILABLE, Result.UNKNOWN}),
    Kind.CONFIRM: frozenset({Result.OK, Result.CANCELLED, Result.NOT_FOUND, Result.UNKNOWN}),
    Kind.RELEASE: frozenset(
        {Result.OK, Result.ALREADY, Result.NOT_FOUND, Result.CONFIRMING, Result.UNKNOWN}
    ),
    Kind.EXTEND: frozenset({Result.OK, Result.NOT_FOUND, Result.CONFIRMING, Result.UNKNOWN}),
    Kind.CANCEL: frozenset({Result.OK, Result.NOT_FOUND, Result.UNKNOWN}),
    Kind.READ: frozenset({Result.OK, Result.UNKNOWN}),
    Kind.EXPIRE: frozenset({Result.OK}),
    Kind.WIPE: frozenset({Result.OK, Result.UNKNOWN}),
}
"""The answers a correct service may give; any other (INTERNAL, a Confirm that
answered SEATS_UNAVAILABLE, ...) makes the history of its seats rejected."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One call as a client saw it.

    ``seats``: the seats it concerns (a Reserve's request; the hold's seats for
    Confirm, Release, Extend, Cancel; every seat of the event for a wipe).
    ``hold``: the hold it acts on; for a Reserve, the hold it created (any
    unique placeholder when its outcome is unknown). ``taken``: the seats a
    Reserve that answered ``unavailable`` named. ``observed``: what a read saw,
    seat by seat. ``expires_at_ms``: what a Reserve or Extend answered.
    """

    kind: Kind
    invoke_ms: int
    complete_ms: int | None
    result: str
    seats: tuple[str, ...] = ()
    hold: str = ""
    holder: str = ""
    ttl_ms: int | None = None
    expires_at_ms: int | None = None
    taken: tuple[str, ...] = ()
    observed: tuple[tuple[str, str], ...] = ()
    op_id: str = ""

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "kind": str(self.kind),
            "invoke_ms": self.invoke_ms,
            "complete_ms": self.complete_ms,
            "result": self.result,
        }
        optional: dict[str, object] = {
            "op_id": self.op_id,
            "seats": list(self.seats),
            "hold": self.hold,
            "holder": self.holder,
            "ttl_ms": self.ttl_ms,
            "expires_at_ms": self.expires_at_ms,
            "taken": list(self.taken),
            "observed": dict(self.observed),
        }
        data.update({k: v for k, v in optional.items() if v not in ("", None, [], {})})
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Operation:
        """Raises ValueError or TypeError naming the field that is missing or malformed."""
        observed = data.get("observed", {})
        if not isinstance(observed, Mapping):
            raise TypeError("observed: must be an object of seat -> status")
        return cls(
            kind=Kind(_string(data, "kind", required=True)),
            invoke_ms=_integer(data, "invoke_ms", required=True) or 0,
            complete_ms=_integer(data, "complete_ms"),
            result=_string(data, "result", required=True),
            seats=_strings(data, "seats"),
            hold=_string(data, "hold"),
            holder=_string(data, "holder"),
            ttl_ms=_integer(data, "ttl_ms"),
            expires_at_ms=_integer(data, "expires_at_ms"),
            taken=_strings(data, "taken"),
            observed=tuple((str(k), str(v)) for k, v in observed.items()),
            op_id=_string(data, "op_id"),
        )

    def describe(self) -> str:
        done = "?" if self.complete_ms is None else str(self.complete_ms)
        what = f" {self.hold}" if self.hold else ""
        name = f"#{self.op_id} " if self.op_id else ""
        return f"{name}{self.kind}{what} -> {self.result} [{self.invoke_ms}, {done}]"


def _string(data: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{key}: must be a string")
    return value


def _integer(data: Mapping[str, object], key: str, *, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key}: must be an integer")
    return value


def _strings(data: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: must be a list of strings")
    return tuple(str(v) for v in value)


@dataclass(frozen=True, slots=True)
class Verdict:
    seat: str
    linearizable: bool | None  # None: the search gave up (``max_states``)
    operations: int
    states: int
    reason: str = ""

    def line(self) -> str:
        if self.linearizable:
            verdict = "linearizable"
        elif self.linearizable is None:
            verdict = "INCONCLUSIVE"
        else:
            verdict = "NOT LINEARIZABLE"
        text = f"{self.seat}: {verdict} ({self.operations} ops, {self.states} states)"
        return f"{text}: {self.reason}" if self.reason else text


# --- one seat ---------------------------------------------------------------

FREE, HELD, PINNED, BOOKED = "available", "held", "pinned", "booked"


class _State(NamedTuple):
    phase: str
    hold: str = ""
    lo: int = 0  # held: the expiry lies in [lo, hi] (a point when it was answered)
    hi: int = 0
    committed: bool = False  # pinned: its booking is known to be committed
    released: frozenset[str] = frozenset()  # holds a Release freed (tombstones)
    cancelled: frozenset[str] = frozenset()  # holds whose booking was cancelled

    def to(self, phase: str, hold: str = "", lo: int = 0, hi: int = 0) -> _State:
        return self._replace(phase=phase, hold=hold, lo=lo, hi=hi, committed=False)

    def free(self) -> _State:
        return self.to(FREE)

    def describe(self) -> str:
        if self.phase == HELD:
            until = f"{self.lo}" if self.lo == self.hi else f"[{self.lo}, {self.hi}]"
            return f"held by {self.hold} until {until}"
        if self.phase == PINNED:
            return f"pinned by a Confirm of {self.hold}"
        if self.phase == BOOKED:
            return f"booked by {self.hold}"
        return "available"


@dataclass(frozen=True, slots=True)
class _SeatOp:
    source: Operation
    kind: Kind
    inv: int
    comp: int  # INF when the outcome is unknown
    result: Result
    hold: str
    ttl: int
    exp: int
    seen: Seen | None


Step = tuple[_State, int]  # the state after an operation, and its tau


def _closure(s: _State) -> list[_State]:
    """What a pinned hold may become without any client asking: repair (or a
    Confirm's own finalize) books it, or repair gives it up."""
    if s.phase != PINNED:
        return [s]
    if s.hold in s.cancelled:
        return [s, s.free()]
    booked = s.to(BOOKED, s.hold)
    return [s, booked] if s.committed else [s, booked, s.free()]


def _lapse(s: _State, t0: int, limit: int) -> int | None:
    """The earliest tau >= t0 (and <= limit) at which the held hold has lapsed."""
    if s.phase != HELD:
        return None
    tau = max(t0, s.lo)
    return tau if tau <= limit else None


def _lapsed_to_free(s: _State, t0: int, limit: int) -> list[Step]:
    tau = _lapse(s, t0, limit)
    return [] if tau is None else [(s.free(), tau)]


def _gone_answer(s: _State, op: _SeatOp, t0: int, limit: int) -> list[Step]:
    """HOLD_NOT_FOUND for a hold that never held this seat, lapsed, was lost, or
    was booked (its hold record is gone once the sale is finalized)."""
    if s.hold != op.hold or s.phase == FREE:
        return [(s, t0)]
    if s.phase == HELD:
        return _lapsed_to_free(s, t0, limit)
    if s.phase == BOOKED:
        return [(s, t0)]
    return []  # pinned: HOLD_CONFIRMING, not NOT_FOUND


def _effects(s: _State, op: _SeatOp, t0: int, limit: int) -> list[Step]:
    h = op.hold
    live = s.phase == HELD and s.hold == h and t0 < s.hi
    mine = s.phase != FREE and s.hold == h
    if op.kind is Kind.RESERVE:
        if op.result is Result.UNAVAILABLE:
            taken = (s.phase == HELD and t0 < s.hi) or s.phase in (PINNED, BOOKED)
            return [(s, t0)] if taken else []
        tau = t0 if s.phase == FREE else _lapse(s, t0, limit)
        if tau is None:
            return []
        if op.result is Result.OK:
            return [(s.to(HELD, h, op.exp, op.exp), tau)]
        return [(s.to(HELD, h, tau + op.ttl, INF), tau)]  # unknown: lapses some time later
    if op.kind is Kind.CONFIRM:
        if op.result is Result.CANCELLED:
            return [(s, t0)] if h in s.cancelled else []
        if op.result is Result.NOT_FOUND:
            return [] if h in s.cancelled else _gone_answer(s, op, t0, limit)
        claimable = live or (s.phase == PINNED and mine and h not in s.cancelled)
        if op.result is Result.OK:
            if s.phase == BOOKED and mine:
                return [(s, t0)]
            if not claimable:
                return []
            # booked, or still pinned when its finalize was deferred to repair
            pinned = s.to(PINNED, h)._replace(committed=True)
            return [(s.to(BOOKED, h), t0), (pinned, t0)]
        if live:  # unknown: the claim may have happened (the commit too)
            return [(s.to(PINNED, h), t0)]
        return [(s, t0)] if mine and s.phase != HELD else []
    if op.kind is Kind.RELEASE:
        if op.result is Result.OK or op.result is Result.UNKNOWN:
            return [(s.free()._replace(released=s.released | {h}), t0)] if live else []
        if op.result is Result.ALREADY:
            return [(s, t0)] if h in s.released else []
        if op.result is Result.CONFIRMING:
            return [(s, t0)] if s.phase == PINNED and mine else []
        return [] if h in s.released else _gone_answer(s, op, t0, limit)
    if op.kind is Kind.EXTEND:
        if op.result is Result.OK:
            return [(s.to(HELD, h, op.exp, op.exp), t0)] if live else []
        if op.result is Result.UNKNOWN:
            return [(s.to(HELD, h, t0 + 1, INF), t0)] if live else []
        if op.result is Result.CONFIRMING:
            return [(s, t0)] if s.phase == PINNED and mine else []
        return _gone_answer(s, op, t0, limit)  # a released hold is NOT_FOUND too
    if op.kind is Kind.CANCEL:
        if h in s.cancelled:
            return [(s, t0)] if op.result is not Result.NOT_FOUND else []
        cancelled = s.cancelled | {h}
        if s.phase == BOOKED and mine:
            if op.result is Result.NOT_FOUND:
                return []
            return [(s.free()._replace(cancelled=cancelled), t0)]
        if s.phase == PINNED and mine:
            # the booking was committed if a cancel found it; repair frees the seat
            after = s._replace(committed=True, cancelled=cancelled)
            if op.result is Result.NOT_FOUND:
                return [] if s.committed else [(s, t0)]
            return [(after, t0)]
        return [(s, t0)] if op.result is Result.NOT_FOUND else []
    if op.kind is Kind.READ:
        if op.seen is Seen.AVAILABLE:
            return [(s, t0)] if s.phase == FREE else _lapsed_to_free(s, t0, limit)
        if op.seen is Seen.HELD:
            held = (s.phase == HELD and t0 < s.hi) or s.phase == PINNED
            return [(s, t0)] if held else []
        return [(s, t0)] if s.phase == BOOKED else []
    if op.kind is Kind.EXPIRE:
        if s.phase == HELD and s.hold == h:
            return _lapsed_to_free(s, t0, limit)
        gone = not mine and h not in s.released and h not in s.cancelled
        return [(s, t0)] if gone else []
    # WIPE: live holds and release tombstones are lost; SQL's bookings survive
    s = s._replace(released=frozenset())
    if s.phase == HELD:
        return [(s.free(), t0)]
    if s.phase == PINNED:
        if s.hold in s.cancelled:
            return [(s.free(), t0)]
        booked = s.to(BOOKED, s.hold)
        return [(booked, t0)] if s.committed else [(s.free(), t0), (booked, t0)]
    return [(s, t0)]


class _Search:
    """WGL search over one seat's operations (sorted by invocation)."""

    def __init__(self, seat: str, ops: Sequence[_SeatOp], max_states: int) -> None:
        self.seat = seat
        self.ops = ops
        self.max_states = max_states
        self.known = sorted(
            (i for i, op in enumerate(ops) if op.comp < INF), key=lambda i: ops[i].comp
        )
        self.required = sum(1 << i for i in self.known)
        refs: dict[str, int] = {}
        for i, op in enumerate(ops):
            if op.hold:
                refs[op.hold] = refs.get(op.hold, 0) | (1 << i)
        self.refs = refs
        self.states = 0
        self.best: tuple[int, int, _State] = (-1, 0, _State(FREE))

    def _prune(self, s: _State, mask: int) -> _State:
        """Forget tombstones no pending operation can ask about (fewer distinct states)."""
        if not s.released and not s.cancelled:
            return s

        def keep(holds: frozenset[str]) -> frozenset[str]:
            # the seat's own hold stays: a pinned hold's cancellation decides its fate
            return frozenset(h for h in holds if h == s.hold or self.refs.get(h, 0) & ~mask)

        return s._replace(released=keep(s.released), cancelled=keep(s.cancelled))

    def _next(self, mask: int, s: _State, now: int) -> list[tuple[int, _State, int]]:
        ops = self.ops
        first = second = INF
        first_op = -1
        for i in self.known:
            if not mask >> i & 1:
                if first_op < 0:
                    first, first_op = ops[i].comp, i
                else:
                    second = ops[i].comp
                    break
        found: list[tuple[int, _State, int]] = []
        i = (~mask & (mask + 1)).bit_length() - 1  # the first op not yet linearized
        while i < len(ops) and ops[i].inv <= first:
            if not mask >> i & 1:
                op = ops[i]
                limit = min(op.comp, second if i == first_op else first)
                t0 = max(now, op.inv)
                if t0 <= limit:
                    seen: set[Step] = set()
                    for before in _closure(s):
                        seen.update(_effects(before, op, t0, limit))
                    nmask = mask | (1 << i)
                    for after, tau in seen:
                        after = self._prune(after, nmask)
                        if tau == now and after == self._prune(s, nmask):
                            return [(nmask, after, tau)]  # changes nothing: take it now
                        found.append((nmask, after, tau))
            i += 1
        # popped last = tried first: the op that must complete soonest
        found.sort(key=lambda step: -ops[(step[0] ^ mask).bit_length() - 1].comp)
        return found

    def run(self) -> Verdict:
        memo: dict[tuple[int, _State], int] = {}
        stack: list[tuple[int, _State, int]] = [(0, _State(FREE), -INF)]
        while stack:
            mask, s, now = stack.pop()
            if mask & self.required == self.required:
                return Verdict(self.seat, True, len(self.ops), self.states)
            key = (mask, s)
            if memo.get(key, INF) <= now:
                continue
            memo[key] = now
            self.states += 1
            if self.states > self.max_states:
                return Verdict(
                    self.seat,
                    None,
                    len(self.ops),
                    self.states,
                    f"gave up after {self.max_states} states",
                )
            done = (mask & self.required).bit_count()
            if done > self.best[0]:
                self.best = (done, mask, s)
            stack.extend(self._next(mask, s, now))
        return Verdict(self.seat, False, len(self.ops), self.states, self._explain())

    def _explain(self) -> str:
        done, mask, s = self.best
        pending = [self.ops[i].source for i in self.known if not mask >> i & 1]
        first = pending[0].describe() if pending else "?"
        return (
            f"no order explains the answers: after {done} of {len(self.known)} completed "
            f"operations (seat {s.describe()}), none fits next; the first still pending "
            f"to complete: {first}"
        )


def _project(
    ops: Sequence[Operation], skew_ms: int
) -> tuple[dict[str, list[_SeatOp]], dict[str, str]]:
    """Each seat's operations, and the seats whose history holds a forbidden answer."""
    per_seat: dict[str, list[_SeatOp]] = {}
    forbidden: dict[str, str] = {}
    for number, op in enumerate(ops):
        unknown = op.complete_ms is None or op.result == Result.UNKNOWN
        inv = op.invoke_ms - skew_ms
        comp = INF if unknown else (op.complete_ms or 0) + skew_ms
        allowed = {str(r) for r in ALLOWED_RESULTS[op.kind]}
        result = Result.UNKNOWN if unknown else op.result
        if result not in allowed:
            for seat in op.seats or tuple(seat for seat, _ in op.observed):
                forbidden.setdefault(
                    seat, f"{op.describe()}: a {op.kind} never answers {op.result!r}"
                )
            continue
        template = _SeatOp(
            source=op,
            kind=op.kind,
            inv=inv,
            comp=comp,
            result=Result(result),
            hold=op.hold or (f"?{op.op_id or number}" if op.kind is Kind.RESERVE else ""),
            ttl=op.ttl_ms or 0,
            exp=op.expires_at_ms if op.expires_at_ms is not None else INF,
            seen=None,
        )
        if op.kind is Kind.READ:
            if not unknown:  # a read that got no answer tells nothing
                for seat, status in op.observed:
                    per_seat.setdefault(seat, []).append(replace(template, seen=Seen(status)))
            continue
        # A Reserve that lost tells nothing about the seats it did not name.
        seats = op.taken if op.kind is Kind.RESERVE and result == Result.UNAVAILABLE else op.seats
        for seat in seats:
            per_seat.setdefault(seat, []).append(template)
    return per_seat, forbidden


def check(
    ops: Iterable[Operation], *, skew_ms: int = 0, max_states: int = 2_000_000
) -> list[Verdict]:
    """One verdict per seat, in seat order."""
    per_seat, forbidden = _project(list(ops), skew_ms)
    verdicts = []
    for seat in sorted(per_seat.keys() | forbidden.keys()):
        seat_ops = sorted(per_seat.get(seat, []), key=lambda op: (op.inv, op.comp))
        if seat in forbidden:
            verdicts.append(Verdict(seat, False, len(seat_ops), 0, forbidden[seat]))
        else:
            verdicts.append(_Search(seat, seat_ops, max_states).run())
    return verdicts


def load_jsonl(path: Path) -> list[Operation]:
    ops = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                ops.append(Operation.from_json(json.loads(line)))
            except (TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{number}: {exc}") from exc
    return ops


def dump_jsonl(ops: Iterable[Operation], path: Path) -> None:
    with path.open("w") as out:
        for op in ops:
            out.write(json.dumps(op.to_json(), ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.history_check",
        description="Check that every seat's history is linearizable (exit 1 when not).",
    )
    parser.add_argument("history", type=Path, help="JSONL file, one operation per line")
    parser.add_argument("--skew-ms", type=int, default=0, help="clock skew to allow (ms)")
    parser.add_argument("--max-states", type=int, default=2_000_000, help="search budget per seat")
    args = parser.parse_args(argv)
    try:
        ops = load_jsonl(args.history)
    except (OSError, TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdicts = check(ops, skew_ms=args.skew_ms, max_states=args.max_states)
    for verdict in verdicts:
        print(verdict.line())
    bad = sum(1 for v in verdicts if v.linearizable is False)
    unsure = sum(1 for v in verdicts if v.linearizable is None)
    print(f"{len(ops)} operations, {len(verdicts)} seats: ", end="")
    print(f"{bad} not linearizable, {unsure} inconclusive")
    return 1 if bad or unsure else 0


if __name__ == "__main__":
    sys.exit(main())
