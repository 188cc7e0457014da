"""Requests protobuf cannot parse (bad UTF-8 in a string field, truncated or
garbled bytes) are answered INVALID_ARGUMENT with the error model's details.

grpc.aio parses a request before any handler or interceptor of ours runs and
answers a parse failure UNKNOWN, with the Python exception in the status
message and no ErrorInfo. ``tolerant`` gives our methods a deserializer that
hands such a request on as an ``Undecodable`` instead; the handler wrappers
(api/errors.py) answer it, and an interceptor refusing the call (auth) refuses
it as it would any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ..domain.errors import InvalidArgument

__all__ = ["Undecodable", "refuse_undecodable", "tolerant"]


class Undecodable:
    """A request that did not parse, in place of the message."""

    __slots__ = ("problem",)

    def __init__(self, type_name: str, error: DecodeError) -> None:
        text = str(error)  # "Error parsing message with type 'T': <what>"
        detail = text.rsplit(": ", 1)[1] if ": " in text else "cannot be parsed"
        self.problem = f"does not parse as {type_name} ({detail})"

    def error(self) -> InvalidArgument:
        return InvalidArgument.one("request", self.problem)


def refuse_undecodable(request: object) -> None:
    """Raise INVALID_ARGUMENT for a request that did not parse."""
    if type(request) is Undecodable:
        raise request.error()


def _decoding(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(deserialize, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    type_name = getattr(descriptor, "full_name", "request message")

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as error:
            return Undecodable(type_name, error)

    return decode


def tolerant(
    handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]],
) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The same handlers, whose requests that do not parse become ``Undecodable``."""
    out: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, handler in handlers.items():
        deserialize = handler.request_deserializer
        if deserialize is not None:
            handler = handler._replace(  # type: ignore[attr-defined]
                request_deserializer=_decoding(deserialize)
            )
        out[name] = handler
    return out
