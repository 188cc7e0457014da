"""``AvailabilityView``: seat id → status, kept current by applying updates."""

from __future__ import annotations

from collections import Counter
from typing import TypeAlias

from seatinventory.v1 import types_pb2
from seatinventory.v1.seat_inventory_pb2 import GetAvailabilityResponse

__all__ = ["AvailabilityView"]

SeatStatus: TypeAlias = types_pb2.SeatStatus.ValueType


class AvailabilityView:
    """The picture a watcher builds: a snapshot replaces everything, a change
    batch updates the seats it names; ``cursor`` is the position it matches."""

    def __init__(self) -> None:
        self.seats: dict[str, SeatStatus] = {}
        self.cursor = ""
        self.snapshots = 0  # snapshots applied: more than one means the stream restarted clean

    @classmethod
    def from_response(cls, response: GetAvailabilityResponse) -> AvailabilityView:
        """A view of a GetAvailability answer; watch from ``view.cursor`` to keep it current."""
        view = cls()
        view.seats = {s.seat_id: s.status for s in response.seats}
        view.cursor = response.cursor
        return view

    def apply(self, update: types_pb2.AvailabilityUpdate) -> None:
        if update.HasField("snapshot"):
            self.seats = {s.seat_id: s.status for s in update.snapshot.seats}
            self.snapshots += 1
        for change in update.changes.changes:
            for seat_id in change.seat_ids:
                self.seats[seat_id] = change.status
        self.cursor = update.cursor

    def status(self, seat_id: str) -> SeatStatus:
        return self.seats.get(seat_id, types_pb2.SEAT_STATUS_UNSPECIFIED)

    def available(self) -> list[str]:
        """The seats nobody holds or has booked, in seat-map order."""
        return [s for s, status in self.seats.items() if status == types_pb2.SEAT_STATUS_AVAILABLE]

    def counts(self) -> dict[str, int]:
        """Seats per status name, e.g. ``{"SEAT_STATUS_AVAILABLE": 28, "SEAT_STATUS_HELD": 2}``."""
        return dict(Counter(types_pb2.SeatStatus.Name(s) for s in self.seats.values()))
