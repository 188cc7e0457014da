"""Hold and booking ids: unique, carrying the full random token, and a hold
id says which event it belongs to."""

from __future__ import annotations

import base64

from seat_inventory.domain.ids import HOLD_TOKEN_BYTES, event_of_hold, new_booking_id, new_hold_id


def token_of(hold_id: str) -> bytes:
    token = hold_id.split(".")[1]
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_hold_ids_name_their_event_and_carry_the_full_token() -> None:
    for event_id in ("ev-1", "A.b:c_d-e", "x" * 64):
        hold_id = new_hold_id(event_id)
        assert event_of_hold(hold_id) == event_id
        assert len(token_of(hold_id)) == HOLD_TOKEN_BYTES


def test_ids_do_not_repeat() -> None:
    holds = {new_hold_id("ev") for _ in range(50_000)}
    bookings = {new_booking_id() for _ in range(50_000)}
    assert len(holds) == 50_000
    assert len(bookings) == 50_000
