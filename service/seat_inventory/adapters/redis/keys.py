"""Key names of DESIGN §3. All keys of one event share the hash tag ``{e:ID}``."""

from __future__ import annotations

__all__ = ["EventKeys"]


class EventKeys:
    __slots__ = ("base", "deadlines", "feed", "meta", "prefix", "seats", "sold")

    def __init__(self, event_id: str) -> None:
        self.prefix = f"{{e:{event_id}}}"
        self.seats = f"{self.prefix}:seats"
        self.sold = f"{self.prefix}:sold"
        self.deadlines = f"{self.prefix}:deadlines"
        self.feed = f"{self.prefix}:feed"
        self.meta = f"{self.prefix}:meta"
        # Every script takes these five first (see lua/_prelude.lua).
        self.base = [self.seats, self.sold, self.deadlines, self.feed, self.meta]

    def hold(self, hold_id: str) -> str:
        return f"{self.prefix}:hold:{hold_id}"

    def seat(self, seat_id: str) -> str:
        return f"{self.prefix}:seat:{seat_id}"

    def idempotency(self, principal: str, holder_id: str, request_id: str) -> str:
        # '|' occurs in none of the three, so no two triples share a key.
        return f"{self.prefix}:req:{principal}|{holder_id}|{request_id}"

    def holder(self, principal: str, holder_id: str) -> str:
        """The live holds of one holder (see lua/_prelude.lua holder_key)."""
        return f"{self.prefix}:holder:{principal}|{holder_id}"
