"""What the service layer reports about itself, without knowing who listens.

The API layer passes a Prometheus-backed implementation (api/metrics.py);
tests and anything else get ``NO_TELEMETRY``, which does nothing.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_TELEMETRY", "NoTelemetry", "Telemetry"]


class Telemetry(Protocol):
    def seats_conflicted(self) -> None:
        """A Reserve lost: some of its seats were held or booked."""

    def booking_confirmed(self) -> None:
        """A Confirm committed a new booking (a repeated Confirm is not counted)."""

    def holds_expired(self, count: int) -> None:
        """The sweeper expired ``count`` holds."""

    def backend_error(self, backend: str) -> None:
        """Redis or the database failed a call (``backend`` names which)."""


class NoTelemetry:
    def seats_conflicted(self) -> None:
        pass

    def booking_confirmed(self) -> None:
        pass

    def holds_expired(self, count: int) -> None:
        pass

    def backend_error(self, backend: str) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()
