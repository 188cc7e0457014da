"""Credentials and channels in one place: a bearer token sent as metadata on
every call, TLS or mTLS channel credentials, and the channel options the
client relies on (quick reconnects, keepalive for long streams)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .wakeups import drain_wakeups

__all__ = [
    "Metadata",
    "Tls",
    "auth_metadata",
    "channel_options",
    "open_aio_channel",
    "open_channel",
]

Metadata = tuple[tuple[str, str], ...]

# gRPC waits 1 s (growing to 120 s) between attempts to reach a server it lost,
# and fails calls at once meanwhile; a restarted server should be found again
# as fast as the retries (RetryPolicy) look for it.
_DEFAULT_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
    # Pings find a server that vanished without closing (a dead host), so a
    # watch notices and reconnects; the server allows one ping per 10 s.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
}


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS for the channel; with ``certificate_chain`` and ``private_key``, mutual TLS.

    ``root_certificates`` None trusts the system's roots. ``server_name``
    overrides the name checked against the server's certificate.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mutual TLS needs both certificate_chain and private_key")

    @classmethod
    def from_files(
        cls,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> Tls:
        """PEM files: the CA to trust, and the client certificate and key for mTLS."""
        return cls(_read(ca), _read(cert), _read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )


def auth_metadata(token: str | None) -> Metadata:
    """``authorization: Bearer <token>``, sent with every call (TLS or not)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def channel_options(
    tls: Tls | None, extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    options = {**_DEFAULT_OPTIONS, **dict(extra)}
    if tls is not None and tls.server_name:
        options["grpc.ssl_target_name_override"] = tls.server_name
    return list(options.items())


def open_channel(
    target: str, tls: Tls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target, channel_options(tls, options))
    return grpc.secure_channel(target, tls.credentials(), channel_options(tls, options))


def open_aio_channel(
    target: str, tls: Tls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel; made on a running event loop, it also lets that loop
    take gRPC's wake-ups all at once (``wakeups.drain_wakeups``)."""
    if tls is None:
        channel = grpc.aio.insecure_channel(target, channel_options(tls, options))
    else:
        channel = grpc.aio.secure_channel(target, tls.credentials(), channel_options(tls, options))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return channel  # made outside a loop: grpc.aio binds it to a loop later
    drain_wakeups()
    return channel
