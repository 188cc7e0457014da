"""Identifier rules and hold ids.

Ids are checked before anything reaches Redis or SQL. The charsets keep ids
safe inside Redis key names and inside the comma-separated lists that Lua
scripts and the feed carry, so ``,``, ``|``, ``{``, ``}`` and whitespace are
never allowed.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

__all__ = [
    "EVENT_ID_RULE",
    "HOLDER_ID_RULE",
    "REQUEST_ID_RULE",
    "SEAT_ID_RULE",
    "IdRule",
    "event_of_hold",
    "new_booking_id",
    "new_hold_id",
]

HOLD_TOKEN_BYTES = 18  # 144 random bits; the brief asks for at least 128


class IdRule:
    """A documented charset and length limit for one kind of id."""

    def __init__(self, name: str, pattern: str, max_len: int, charset_doc: str) -> None:
        self.name = name
        self.max_len = max_len
        self.charset_doc = charset_doc
        self._re = re.compile(pattern)

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not a valid id, or None when it is."""
        if not value:
            return "must not be empty"
        if len(value) > self.max_len:
            return f"must be at most {self.max_len} characters (got {len(value)})"
        if not self._re.fullmatch(value):
            return f"must use only {self.charset_doc}"
        return None


_ID_CHARS = "letters, digits and . _ : - (starting with a letter or digit)"
EVENT_ID_RULE = IdRule("event_id", r"[A-Za-z0-9][A-Za-z0-9._:-]*", 64, _ID_CHARS)
SEAT_ID_RULE = IdRule("seat_id", r"[A-Za-z0-9][A-Za-z0-9._:-]*", 64, _ID_CHARS)
HOLDER_ID_RULE = IdRule(
    "holder_id",
    r"[A-Za-z0-9][A-Za-z0-9._:@+/-]*",
    128,
    "letters, digits and . _ : @ + / - (starting with a letter or digit)",
)
REQUEST_ID_RULE = IdRule("request_id", r"[A-Za-z0-9._:-]+", 128, "letters, digits and . _ : -")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_hold_id(event_id: str) -> str:
    """An opaque hold id that also tells the service which event it belongs to.

    The event id travels base64url-encoded before a ``.`` (not in the base64url
    alphabet), so no event id can make two hold ids ambiguous.
    """
    return f"{_b64(event_id.encode())}.{_b64(secrets.token_bytes(HOLD_TOKEN_BYTES))}"


def event_of_hold(hold_id: str) -> str | None:
    """The event a hold id belongs to, or None when it is not a hold id of ours."""
    if len(hold_id) > 160 or hold_id.count(".") != 1:
        return None
    encoded, token = hold_id.split(".")
    if len(token) < 22 or not re.fullmatch(r"[A-Za-z0-9_-]+", encoded + token):
        return None
    try:
        event_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if EVENT_ID_RULE.problem(event_id) is not None:
        return None
    return event_id


def new_booking_id() -> str:
    return "bk_" + _b64(secrets.token_bytes(16))
