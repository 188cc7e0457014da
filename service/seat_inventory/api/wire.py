"""Protobuf wire format by hand, for the few messages the server writes without
the protobuf runtime (snapshots in ``translate``, error details in ``errors``);
the tests check those bytes against the runtime's."""

from __future__ import annotations

__all__ = ["field", "varint"]

_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: key byte (field number << 3 | 2), length, payload."""
    return _ONE_BYTE[tag] + varint(len(payload)) + payload
