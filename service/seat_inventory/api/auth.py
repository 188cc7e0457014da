"""Bearer-token authentication: the principals file and the server interceptor.

A principals file (TOML or JSON) lists who may call, with which roles, and the
SHA-256 of each of their tokens — never a token itself::

    [[principals]]
    name = "checkout"
    roles = ["client"]
    tokens = ["sha256:9f86d0...", {hash = "sha256:60303a...", expires = 2027-01-31T00:00:00Z}]

Several tokens per principal allow rotation (add the new one, move callers,
remove the old one); a token may carry an expiry. ``seat-inventory hash-token``
prints the line to paste.

A presented token is hashed, and the digest is compared with every known
digest by ``hmac.compare_digest`` without stopping at a match, so the time a
check takes depends on neither the token nor where its digest is listed.
Tokens are never logged: a refused call logs the method and the reason only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from .. import strictjson
from ..domain.errors import InventoryError, RoleRequired, Unauthenticated
from .calls import REQUEST_ID_KEY, request_id_of
from .errors import SERVED_BY, abort_with
from .principal import ADMIN, ANONYMOUS, CLIENT, Principal, bind_principal

__all__ = [
    "MIN_TOKEN_LENGTH",
    "AuthInterceptor",
    "Authenticator",
    "PrincipalsError",
    "bearer_token",
    "hash_token",
    "load_principals",
    "parse_principals",
]

log = structlog.get_logger(__name__)

ROLES = (CLIENT, ADMIN)
MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH = re.compile(r"sha256:([0-9a-f]{64})")
_BEARER = re.compile(r"bearer\s+(\S+)\s*", re.IGNORECASE)


class PrincipalsError(ValueError):
    """The principals file cannot be used; the message says where and why."""


def hash_token(token: str) -> str:
    """The form a principals file stores a token in: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Credential:
    principal: Principal
    digest: bytes
    expires_at: float | None  # epoch seconds


class Authenticator:
    """Who a bearer token belongs to."""

    def __init__(self, credentials: Iterable[_Credential]) -> None:
        self._credentials = tuple(credentials)

    @property
    def principal_count(self) -> int:
        return len({c.principal.name for c in self._credentials})

    @property
    def token_count(self) -> int:
        return len(self._credentials)

    def authenticate(self, token: str | None, now: float | None = None) -> Principal:
        """The token's principal; Unauthenticated when it is missing, unknown or expired."""
        if not token:
            raise Unauthenticated(
                "this server requires a bearer token: send 'authorization: Bearer <token>'"
            )
        digest = hashlib.sha256(token.encode()).digest()
        found: _Credential | None = None
        for credential in self._credentials:  # every one, match or not: constant time
            if hmac.compare_digest(digest, credential.digest):
                found = credential
        if found is None:
            raise Unauthenticated("the bearer token is not valid")
        moment = time.time() if now is None else now
        if found.expires_at is not None and moment >= found.expires_at:
            raise Unauthenticated("the bearer token has expired")
        return found.principal


def _expiry(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PrincipalsError(
                f"{where}: expires {value!r} is not an ISO 8601 time such as 2027-01-31T00:00:00Z"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PrincipalsError(f"{where}: expires needs a UTC offset (e.g. ...T00:00:00Z)")
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    raise PrincipalsError(f"{where}: expires must be a date-time such as 2027-01-31T00:00:00Z")


def _token(entry: Any, where: str) -> tuple[bytes, float | None]:
    expires: float | None = None
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"hash", "expires"}
        if unknown:
            raise PrincipalsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if "expires" in entry:
            expires = _expiry(entry["expires"], where)
        entry = entry.get("hash")
    if not isinstance(entry, str) or not (match := _HASH.fullmatch(entry.strip())):
        raise PrincipalsError(
            f"{where}: a token must be stored as 'sha256:<64 hex digits>' "
            "(print it with: seat-inventory hash-token), never as the token itself"
        )
    return bytes.fromhex(match[1]), expires


def _principal(raw: Any, where: str) -> list[_Credential]:
    if not isinstance(raw, Mapping):
        raise PrincipalsError(f"{where}: must be a table with name, roles and tokens")
    unknown = set(raw) - {"name", "roles", "tokens"}
    if unknown:
        raise PrincipalsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PrincipalsError(
            f"{where}: name must be 1-64 letters, digits and . _ - (got {name!r})"
        )
    if name == ANONYMOUS.name:
        raise PrincipalsError(f"{where}: the name {name!r} is reserved for calls without auth")
    where = f"{where} ({name})"
    roles = raw.get("roles")
    if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
        raise PrincipalsError(f"{where}: roles must be a non-empty list of {' and '.join(ROLES)}")
    tokens = raw.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        raise PrincipalsError(f"{where}: tokens must be a non-empty list of token hashes")
    principal = Principal(name, frozenset(roles))
    return [
        _Credential(principal, *_token(entry, f"{where} tokens[{i}]"))
        for i, entry in enumerate(tokens)
    ]


def parse_principals(data: Any, source: str) -> Authenticator:
    if not isinstance(data, Mapping) or not isinstance(data.get("principals"), list):
        raise PrincipalsError(f"{source}: expected a list 'principals' ([[principals]] in TOML)")
    if not data["principals"]:
        raise PrincipalsError(
            f"{source}: no principals listed (leave --principals unset to run without auth)"
        )
    credentials: list[_Credential] = []
    names: set[str] = set()
    for index, raw in enumerate(data["principals"]):
        found = _principal(raw, f"{source}: principals[{index}]")
        name = found[0].principal.name
        if name in names:
            raise PrincipalsError(f"{source}: principal {name!r} is listed twice")
        names.add(name)
        credentials.extend(found)
    digests = [c.digest for c in credentials]
    if len(set(digests)) != len(digests):
        raise PrincipalsError(f"{source}: the same token hash is listed more than once")
    return Authenticator(credentials)


def load_principals(path: str | Path) -> Authenticator:
    """Read a principals file (``.json``: JSON, anything else: TOML)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PrincipalsError(f"cannot read principals file {file}: {exc}") from None
    try:
        # strictjson: a key given twice is refused, as TOML refuses it.
        data = strictjson.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if file.suffix == ".json" else "TOML"
        raise PrincipalsError(f"{file}: not valid {kind}: {exc}") from None
    return parse_principals(data, str(file))


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header, if there is exactly one."""
    values = [v for k, v in metadata or () if k.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    match = _BEARER.fullmatch(values[0])
    return match[1] if match else None


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # generic only in the type stubs
    Handler = grpc.RpcMethodHandler


def _refusing(handler: Handler, error: InventoryError, method: str = "") -> Handler:
    """A handler of the same kind as ``handler`` that answers ``error`` at once."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # Like every answer: the request id and the process that served it.
        request_id = request_id_of(context)
        log.info(
            "call refused",
            method=method,
            reason=error.reason,
            detail=error.message,
            request_id=request_id,
        )
        await abort_with(context, error, ((REQUEST_ID_KEY, request_id), SERVED_BY))

    kinds: dict[str, Callable[..., Handler]] = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    kind = next(name for name in kinds if getattr(handler, name) is not None)
    return kinds[kind](
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call except to the open services and binds its principal.

    ``roles`` maps a full service name to the role its calls need; a service
    in neither ``roles`` nor ``open_services`` needs a valid token only. The
    principal is bound in the call's own task (grpc.aio runs interceptors and
    the handler in one task per call), so ``current_principal()`` sees it in
    the handler and in interceptors after this one.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        roles: Mapping[str, str],
        open_services: Iterable[str],
    ) -> None:
        self._auth = authenticator
        self._roles = dict(roles)
        self._open = frozenset(open_services)

    def replace(self, authenticator: Authenticator) -> None:
        """Authenticate calls from now on with ``authenticator`` (a reloaded file);
        calls already admitted keep their principal."""
        self._auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = handler_call_details.method
        service = method.split("/")[1] if method.count("/") == 2 else ""
        handler = await continuation(handler_call_details)
        if handler is None or service in self._open:
            return handler
        try:
            principal = self._auth.authenticate(
                bearer_token(handler_call_details.invocation_metadata)
            )
            role = self._roles.get(service)
            if role is not None and not principal.has_role(role):
                raise RoleRequired(principal.name, role, service)
        except InventoryError as error:  # logged with its request id when answered
            return _refusing(handler, error, method)
        bind_principal(principal)
        return handler
