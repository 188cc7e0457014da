"""Errors that list seats stay small enough for any gRPC client's trailers (it
refuses over 8 KB at random, over 16 KB always): the list goes whole into the
ErrorInfo up to a budget, cut at a seat beyond it, and into the message only
when short."""

from __future__ import annotations

import pytest

from seat_inventory.api.errors import status_of
from seat_inventory.domain.errors import (
    MAX_LISTED_SEAT_BYTES,
    InventoryError,
    SeatNotFound,
    SeatsUnavailable,
)

LONG = 64  # the longest seat id the id rule allows


def seats(n: int, length: int = LONG) -> list[str]:
    return [f"S{i:05d}".ljust(length, "x") for i in range(n)]


def trailer_bytes(error: InventoryError) -> int:
    status = status_of(error)
    return len(status.details.encode()) + sum(len(k) + len(v) for k, v in status.trailing_metadata)


@pytest.mark.parametrize("kind", [SeatsUnavailable, SeatNotFound])
def test_a_short_list_is_named_in_the_message_and_listed_whole(kind: type) -> None:
    error = kind("demo", ["Stalls-A-2", "Stalls-A-3"])
    assert "seat(s) Stalls-A-2,Stalls-A-3" in error.message
    assert error.metadata == {"event_id": "demo", "seat_ids": "Stalls-A-2,Stalls-A-3"}


@pytest.mark.parametrize("kind", [SeatsUnavailable, SeatNotFound])
def test_fifty_long_seat_ids_are_all_listed_once_and_fit(kind: type) -> None:
    """The default limit (50 seats a hold) with the longest ids: every seat in the
    ErrorInfo, none in the message, well under 8 KB in all."""
    many = seats(50)
    error = kind("e" * 64, many)
    assert error.metadata["seat_ids"].split(",") == many
    assert "seat_ids_omitted" not in error.metadata
    assert many[0] not in error.message
    assert "50 seats" in error.message
    assert trailer_bytes(error) < 5_000


@pytest.mark.parametrize("kind", [SeatsUnavailable, SeatNotFound])
def test_a_list_past_the_budget_is_cut_at_a_seat_and_counted(kind: type) -> None:
    many = seats(1_000)
    error = kind("e" * 64, many)
    listed = error.metadata["seat_ids"].split(",")
    assert listed == many[: len(listed)]
    assert len(error.metadata["seat_ids"]) <= MAX_LISTED_SEAT_BYTES
    assert len(listed) + int(error.metadata["seat_ids_omitted"]) == 1_000
    assert error.seat_ids == tuple(many)  # the service itself keeps every seat
    assert trailer_bytes(error) < 5_000


def test_a_list_exactly_at_the_budget_is_whole() -> None:
    # n ids of 64 characters and n - 1 commas: the largest n within the budget
    n = (MAX_LISTED_SEAT_BYTES + 1) // (LONG + 1)
    error = SeatsUnavailable("demo", seats(n))
    assert "seat_ids_omitted" not in error.metadata
    assert len(error.metadata["seat_ids"].split(",")) == n
    assert "seat_ids_omitted" in SeatsUnavailable("demo", seats(n + 1)).metadata
