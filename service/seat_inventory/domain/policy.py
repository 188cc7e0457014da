"""Limits the service enforces on requests, and the checks that apply them."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import FieldViolation, InvalidArgument
from .ids import EVENT_ID_RULE, HOLDER_ID_RULE, REQUEST_ID_RULE, SEAT_ID_RULE, IdRule
from .model import SeatSpec

__all__ = ["Limits", "Violations", "reserve_fingerprint"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits; every one is configurable (see config.py)."""

    max_seats_per_hold: int = 50
    # Seats one holder of one principal may hold of one event at once, over
    # all its live holds (RESOURCE_EXHAUSTED HOLD_LIMIT beyond it).
    max_seats_per_holder: int = 50
    min_ttl_ms: int = 1_000
    max_ttl_ms: int = 30 * 60_000
    default_ttl_ms: int = 10 * 60_000
    # A hold never lives longer than this from its creation, however often it
    # is extended (think of a payment window).
    max_hold_lifetime_ms: int = 60 * 60_000
    max_seats_per_event: int = 100_000
    max_event_name_len: int = 200
    max_order_ref_len: int = 128
    max_label_len: int = 32  # section / row / number of a seat

    def __post_init__(self) -> None:
        if not 0 < self.min_ttl_ms <= self.default_ttl_ms <= self.max_ttl_ms:
            raise ValueError("ttl limits must satisfy 0 < min <= default <= max")
        if self.max_hold_lifetime_ms < self.max_ttl_ms:
            raise ValueError("max hold lifetime must be at least the max ttl")
        if self.max_seats_per_hold < 1 or self.max_seats_per_event < 1:
            raise ValueError("seat limits must be positive")
        if self.max_seats_per_holder < self.max_seats_per_hold:
            raise ValueError(
                f"max seats per holder ({self.max_seats_per_holder}) must be at least "
                f"max seats per hold ({self.max_seats_per_hold})"
            )


MAX_SEAT_PROBLEMS_LISTED = 10  # per request; see Violations.seat_list


def _printable(text: str) -> bool:
    return all(unicodedata.category(ch)[0] != "C" for ch in text)


class Violations:
    """Collects every problem of one request, then raises them together."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def id(self, field: str, value: str, rule: IdRule) -> None:
        problem = rule.problem(value)
        if problem is not None:
            self.add(field, problem)

    def optional_id(self, field: str, value: str, rule: IdRule) -> None:
        if value:
            self.id(field, value, rule)

    def text(self, field: str, value: str, max_len: int, *, required: bool = False) -> None:
        if required and not value.strip():
            self.add(field, "must not be empty")
        elif len(value) > max_len:
            self.add(field, f"must be at most {max_len} characters (got {len(value)})")
        elif not _printable(value):
            self.add(field, "must not contain control or unassigned characters")

    def seat_list(self, field: str, seat_ids: Sequence[str], max_count: int) -> None:
        if not seat_ids:
            self.add(field, "must name at least one seat")
            return
        if len(seat_ids) > max_count:
            self.add(field, f"must name at most {max_count} seats (got {len(seat_ids)})")
            return
        seen: set[str] = set()
        problems: list[tuple[str, str]] = []
        for index, seat_id in enumerate(seat_ids):
            problem = SEAT_ID_RULE.problem(seat_id)
            if problem is not None:
                problems.append((f"{field}[{index}]", problem))
            elif seat_id in seen:
                problems.append((f"{field}[{index}]", f"seat {seat_id!r} is listed twice"))
            seen.add(seat_id)
        # Each violation travels in the error's headers three times: listing up to
        # 50 outgrew the 8 KB a gRPC client accepts (RESOURCE_EXHAUSTED, no ErrorInfo).
        for name, problem in problems[:MAX_SEAT_PROBLEMS_LISTED]:
            self.add(name, problem)
        if len(problems) > MAX_SEAT_PROBLEMS_LISTED:
            more = len(problems) - MAX_SEAT_PROBLEMS_LISTED
            listed = MAX_SEAT_PROBLEMS_LISTED
            self.add(field, f"{more} more seat ids have problems (the first {listed} are listed)")

    def ttl(self, field: str, ttl_ms: int | None, limits: Limits) -> None:
        if ttl_ms is None:
            return
        if not limits.min_ttl_ms <= ttl_ms <= limits.max_ttl_ms:
            self.add(
                field,
                f"must be between {limits.min_ttl_ms / 1000:g}s and "
                f"{limits.max_ttl_ms / 1000:g}s (got {ttl_ms / 1000:g}s)",
            )

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)


def check_event_id(v: Violations, event_id: str) -> None:
    v.id("event_id", event_id, EVENT_ID_RULE)


def check_holder_id(v: Violations, holder_id: str) -> None:
    v.id("holder_id", holder_id, HOLDER_ID_RULE)


def check_request_id(v: Violations, request_id: str) -> None:
    v.optional_id("request_id", request_id, REQUEST_ID_RULE)


def check_seat_map(v: Violations, seats: Sequence[SeatSpec], limits: Limits) -> None:
    if not seats:
        v.add("seats", "an event needs at least one seat")
        return
    if len(seats) > limits.max_seats_per_event:
        v.add("seats", f"must be at most {limits.max_seats_per_event} seats (got {len(seats)})")
        return
    seen: set[str] = set()
    for index, seat in enumerate(seats):
        problem = SEAT_ID_RULE.problem(seat.seat_id)
        if problem is not None:
            v.add(f"seats[{index}].seat_id", problem)
        elif seat.seat_id in seen:
            v.add(f"seats[{index}].seat_id", f"seat {seat.seat_id!r} is listed twice")
        seen.add(seat.seat_id)
        for name in ("section", "row", "number"):
            value = getattr(seat, name)
            if len(value) > limits.max_label_len or not _printable(value):
                v.add(
                    f"seats[{index}].{name}",
                    f"must be at most {limits.max_label_len} printable characters",
                )
        if len(seen) > 0 and len(v._items) >= 20:
            v.add("seats", "too many problems; first 20 shown")
            return


def reserve_fingerprint(seat_ids: Sequence[str], ttl_ms: int) -> str:
    """Identifies a Reserve payload, so a request_id reused for another one is caught."""
    payload = ",".join(sorted(seat_ids)) + f"|{ttl_ms}"
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
