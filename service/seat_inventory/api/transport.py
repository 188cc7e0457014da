"""How the server listens: TLS or mutual TLS credentials, and the rule that a
non-loopback address is served only with authentication (or when told to)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc

from ..config import Settings

__all__ = [
    "TransportError",
    "insecure_bind_problem",
    "is_loopback",
    "plaintext_tokens_warning",
    "server_credentials",
]


class TransportError(ValueError):
    """The TLS settings cannot be used; the message says which file and why."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; everything else (0.0.0.0, [::], names) is not."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_bind_problem(settings: Settings) -> str | None:
    """Why the server must not start as configured, or None."""
    if settings.principals_file or settings.allow_insecure_bind or is_loopback(settings.host):
        return None
    return (
        f"refusing to listen on {settings.host} without authentication: anyone who can "
        "reach it could hold, confirm and cancel seats. Pass --principals FILE (see "
        "README 'Authentication and TLS'), listen on 127.0.0.1, or, if something in front "
        "of the service authenticates callers, pass --allow-insecure-bind"
    )


def plaintext_tokens_warning(settings: Settings) -> str | None:
    """Tokens would cross a network in the clear: worth a warning, not a refusal
    (a TLS-terminating proxy or a service mesh may sit in front)."""
    if settings.principals_file and not settings.tls_cert and not is_loopback(settings.host):
        return (
            "bearer tokens arrive unencrypted: serve TLS (--tls-cert, --tls-key) unless a "
            "TLS-terminating proxy sits in front"
        )
    return None


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TransportError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TransportError(f"{what} {path} is not a PEM file")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' PEM files; None when TLS is off."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise TransportError("TLS needs both --tls-cert and --tls-key")
    pair = (_read(key, "TLS key (--tls-key)"), _read(cert, "TLS certificate (--tls-cert)"))
    if client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read(client_ca, "client CA (--tls-client-ca)"),
        require_client_auth=True,
    )
