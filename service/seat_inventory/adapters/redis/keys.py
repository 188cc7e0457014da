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

    def idempotency(self, holder_id: str, request_id: str) -> str:
        return f"{self.prefix}:req:{holder_id}:{request_id}"
