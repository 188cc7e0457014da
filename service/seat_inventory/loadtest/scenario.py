"""What a load run does: the knobs of a flash sale."""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, field

__all__ = ["Scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    target: str = "localhost:50051"
    event_id: str = field(default_factory=lambda: "loadtest-" + secrets.token_hex(4))
    seats: int = 1_000
    users: int = 500
    arrival_rate: float = 100.0  # virtual users arriving per second
    hot_seats: int = 20  # the first seats of the map: everyone wants them
    hot_share: float = 0.3  # share of users going for the hot seats
    max_seats: int = 4  # each user reserves 1..max_seats seats
    p_confirm: float = 0.6
    p_release: float = 0.2  # the rest abandon their hold and let it lapse
    think_min_s: float = 0.05
    think_max_s: float = 0.5
    hold_ttl_s: float = 2.0
    reserve_attempts: int = 3  # tries with other seats after SEATS_UNAVAILABLE
    subscribers: int = 0  # stream subscribers watching the event
    processes: int = 1
    timeout_s: float = 5.0
    token: str | None = None
    # TLS: ``tls`` alone trusts the system's CAs; ``tls_ca`` a PEM CA file;
    # ``tls_cert`` + ``tls_key`` a client certificate for mutual TLS.
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    database_url: str | None = None
    seed: int | None = None

    def problems(self) -> list[str]:
        out = []
        for name in ("arrival_rate", "hot_share", "p_confirm", "p_release", "think_min_s",
                     "think_max_s", "hold_ttl_s", "timeout_s"):  # fmt: skip
            value = getattr(self, name)
            if not math.isfinite(value):
                flag = "--" + name.removesuffix("_s").replace("_", "-")
                out.append(f"{flag} must be a finite number, got {value}")
        if not (0 < self.hold_ttl_s <= 86_400 and 0 < self.timeout_s <= 86_400):
            out.append("--hold-ttl and --timeout must be positive seconds, at most a day")
        if self.reserve_attempts < 1 or self.subscribers < 0:
            out.append("--reserve-attempts must be at least 1 and --subscribers at least 0")
        if self.seats < 1 or self.users < 1 or self.processes < 1:
            out.append("--seats, --users and --processes must be at least 1")
        if self.arrival_rate <= 0:
            out.append("--arrival-rate must be positive")
        if not 0 <= self.hot_share <= 1:
            out.append("--hot-share must be between 0 and 1")
        if self.hot_seats > self.seats:
            out.append("--hot-seats cannot exceed --seats")
        if self.max_seats < 1:
            out.append("--max-seats must be at least 1")
        if self.p_confirm < 0 or self.p_release < 0 or self.p_confirm + self.p_release > 1:
            out.append("--p-confirm and --p-release must be >= 0 and add up to at most 1")
        if not 0 <= self.think_min_s <= self.think_max_s:
            out.append("--think-min must be between 0 and --think-max")
        if (self.tls_cert is None) != (self.tls_key is None):
            out.append("--cert and --key go together (mutual TLS)")
        for flag, path in (
            ("--ca", self.tls_ca),
            ("--cert", self.tls_cert),
            ("--key", self.tls_key),
        ):
            if path is not None and not os.access(path, os.R_OK):
                out.append(f"{flag} {path}: not a readable file")
        return out

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))

    def share(self, index: int) -> Scenario:
        """The part of the load one of ``processes`` worker processes generates."""
        from dataclasses import replace

        users = self.users // self.processes + (1 if index < self.users % self.processes else 0)
        return replace(
            self,
            users=users,
            arrival_rate=self.arrival_rate / self.processes,
            subscribers=self.subscribers // self.processes
            + (1 if index < self.subscribers % self.processes else 0),
            processes=1,
            seed=None if self.seed is None else self.seed + index,
        )
