"""Test-only crash points inside Confirm.

``SEAT_INVENTORY_FAILPOINTS=after_claim`` (comma-separated names) read once at
start-up makes the process exit abruptly at that point, as a power cut
would, so tests can prove recovery from a crash at every step.
"""

from __future__ import annotations

import os
import sys

__all__ = ["FAILPOINT_NAMES", "Failpoints"]

FAILPOINT_NAMES = frozenset({"after_claim", "after_commit", "before_finalize"})
EXIT_CODE = 86


class Failpoints:
    def __init__(self, active: frozenset[str] = frozenset()) -> None:
        unknown = active - FAILPOINT_NAMES
        if unknown:
            raise ValueError(
                f"unknown failpoint(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(FAILPOINT_NAMES))}"
            )
        self._active = active

    @classmethod
    def from_env(cls, value: str | None = None) -> Failpoints:
        raw = os.environ.get("SEAT_INVENTORY_FAILPOINTS", "") if value is None else value
        return cls(frozenset(name.strip() for name in raw.split(",") if name.strip()))

    @property
    def active(self) -> frozenset[str]:
        return self._active

    def hit(self, name: str) -> None:
        if name in self._active:
            sys.stderr.write(f"failpoint {name}: exiting now\n")
            sys.stderr.flush()
            os._exit(EXIT_CODE)  # no cleanup, no flush of anything else: a crash
