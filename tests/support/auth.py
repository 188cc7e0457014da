"""Principals files and bearer-token metadata for tests that turn authentication on."""

from __future__ import annotations

import secrets
from pathlib import Path

from seat_inventory.api.auth import hash_token

__all__ = ["TestPrincipals", "bearer"]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class TestPrincipals:
    """A principals file with fresh random tokens: ``shop-a`` and ``shop-b`` (client),
    ``ops`` (admin), ``both`` (client and admin) and ``old`` (client, token expired)."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, directory: Path) -> None:
        self.tokens = {
            name: "tok-" + secrets.token_urlsafe(24)
            for name in ("shop-a", "shop-b", "ops", "both", "old")
        }
        roles = {
            "shop-a": '["client"]',
            "shop-b": '["client"]',
            "ops": '["admin"]',
            "both": '["client", "admin"]',
            "old": '["client"]',
        }
        blocks = []
        for name, token in self.tokens.items():
            if name == "old":
                tokens = f'[{{hash = "{hash_token(token)}", expires = 2020-01-01T00:00:00Z}}]'
            else:
                tokens = f'["{hash_token(token)}"]'
            blocks.append(
                f'[[principals]]\nname = "{name}"\nroles = {roles[name]}\ntokens = {tokens}\n'
            )
        self.path = directory / "principals.toml"
        self.path.write_text("\n".join(blocks))

    def md(self, name: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens[name])
