"""Who is calling: the principal an authenticated call runs as.

Authentication (api/auth.py) binds the caller's principal for the duration of
one call; everything else (hold ownership, rate limits, stream limits, metrics,
logs) reads it with ``current_principal()``. With authentication off every call
runs as ``ANONYMOUS``, which has every role.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "CLIENT",
    "Principal",
    "bind_principal",
    "current_principal",
    "reset_principal",
]

CLIENT = "client"  # may call SeatInventory
ADMIN = "admin"  # may call InventoryAdmin


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        return role in self.roles


ANONYMOUS = Principal("anonymous", frozenset({CLIENT, ADMIN}))

_current: ContextVar[Principal] = ContextVar("seat_inventory_principal", default=ANONYMOUS)


def current_principal() -> Principal:
    return _current.get()


def bind_principal(principal: Principal) -> Token[Principal]:
    return _current.set(principal)


def reset_principal(token: Token[Principal]) -> None:
    _current.reset(token)
