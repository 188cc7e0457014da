"""Database URLs as users write them, turned into the async drivers we ship.

Operators paste the URL their other tools use (``postgresql://...``,
``sqlite:///path``); the service, not the user, chooses the asyncio driver.
"""

from __future__ import annotations

import shlex
import ssl
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["SUPPORTED_SCHEMES", "normalize_url", "postgres_connect_options"]

SUPPORTED_SCHEMES = (
    "postgresql://",
    "postgres://",
    "postgresql+asyncpg://",
    "postgresql+psycopg2://",
    "postgresql+psycopg://",
    "sqlite:///<file>",
    "sqlite+aiosqlite:///<file>",
)
_POSTGRES = {"postgres", "postgresql"}
_SYNC_POSTGRES_DRIVERS = {"", "asyncpg", "psycopg2", "psycopg", "pg8000"}
_SQLITE_DRIVERS = {"", "aiosqlite", "pysqlite"}


def _unsupported(what: str) -> ValueError:
    return ValueError(
        f"unsupported database URL: {what}; use one of {', '.join(SUPPORTED_SCHEMES)}"
    )


# Query options asyncpg takes as they are (SQLAlchemy hands the query to
# asyncpg.connect as keyword arguments).
_ASYNCPG_OPTIONS = {"ssl", "target_session_attrs", "passfile", "krbsrvname", "gsslib"}
# libpq's spellings this module translates for asyncpg.
_LIBPQ_OPTIONS = {
    "connect_timeout",
    "application_name",
    "fallback_application_name",
    "options",
    "sslrootcert",
    "sslcert",
    "sslkey",
}


def postgres_connect_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without the libpq options asyncpg does not take, and what they
    mean to asyncpg: ``timeout`` (connect_timeout), ``server_settings``
    (application_name, options' ``-c name=value``), ``ssl`` (an SSL context
    from sslrootcert, sslcert and sslkey, checking as sslmode says).

    Raises ValueError naming an option neither takes."""
    parsed = make_url(url)
    query: dict[str, str | tuple[str, ...]] = dict(parsed.query)
    unknown = sorted(set(query) - _ASYNCPG_OPTIONS - _LIBPQ_OPTIONS)
    if unknown:
        raise ValueError(
            f"database URL option {', '.join(unknown)} is not supported; supported: "
            f"{', '.join(sorted(_ASYNCPG_OPTIONS | _LIBPQ_OPTIONS | {'sslmode'}))}"
        )
    out: dict[str, Any] = {}
    settings: dict[str, str] = {}
    if "connect_timeout" in query:
        out["timeout"] = _seconds(query.pop("connect_timeout"))
    names = [
        _one(query.pop(key))
        for key in ("application_name", "fallback_application_name")
        if key in query
    ]
    if names:
        settings["application_name"] = names[0]
    if "options" in query:
        settings.update(_server_options(_one(query.pop("options"))))
    if settings:
        out["server_settings"] = settings
    files: dict[str, str] = {}
    for key in ("sslrootcert", "sslcert", "sslkey"):
        if key in query:
            files[key] = _one(query.pop(key))
    if files:
        out["ssl"] = _ssl_context(_one(query.pop("ssl", "prefer")), files)
    return parsed.set(query=query).render_as_string(hide_password=False), out


def _one(value: str | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        raise ValueError(f"database URL option given twice: {value!r}")  # noqa: TRY004 - a bad URL
    return value


def _seconds(value: str | tuple[str, ...]) -> float:
    text = _one(value)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 3600:
        raise ValueError(f"database URL option connect_timeout={text!r}: give seconds, such as 5")
    return seconds


def _server_options(text: str) -> dict[str, str]:
    """libpq's ``options``: ``-c name=value`` (or ``--name=value``) pairs."""
    settings: dict[str, str] = {}
    words = shlex.split(text)
    while words:
        word = words.pop(0)
        if word == "-c" and words:
            word = "--" + words.pop(0)
        elif word.startswith("-c") and len(word) > 2:
            word = "--" + word[2:]
        name, equals, value = word.removeprefix("--").partition("=")
        if not word.startswith("--") or not equals or not name:
            raise ValueError(
                f"database URL option options={text!r}: use -c name=value pairs, "
                "such as options=-csearch_path%3Dtickets"
            )
        settings[name.replace("-", "_")] = value
    return settings


def _ssl_context(mode: str, files: dict[str, str]) -> ssl.SSLContext:
    """An SSL context from libpq's certificate options, checking what sslmode
    asks: verify-full the name and the chain, verify-ca the chain, the other
    modes the chain only when a root certificate is given (as libpq does)."""
    if mode == "disable":
        raise ValueError("database URL: sslmode=disable with certificate options")
    try:
        context = ssl.create_default_context(cafile=files.get("sslrootcert"))
        if mode != "verify-full":
            context.check_hostname = False
            if mode != "verify-ca" and "sslrootcert" not in files:
                context.verify_mode = ssl.CERT_NONE
        if "sslcert" in files:
            context.load_cert_chain(files["sslcert"], files.get("sslkey"))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"database URL certificate options: {exc}") from None
    return context


def _postgres(url: URL) -> URL:
    query = dict(url.query)
    # libpq spells it sslmode; asyncpg takes the same values as ``ssl``.
    if "sslmode" in query:
        query.setdefault("ssl", query.pop("sslmode"))
    return url.set(drivername="postgresql+asyncpg", query=query)


def _sqlite(raw: str, url: URL) -> URL:
    database = url.database or ""
    if not database or ":memory:" in database or url.query.get("mode") == "memory":
        raise ValueError(
            f"{raw!r} is an in-memory SQLite database; the service needs a file "
            "(for example sqlite:///./seat-inventory.db) so bookings survive a restart "
            "and every connection sees the same data"
        )
    return url.set(drivername="sqlite+aiosqlite")


def normalize_url(url: str) -> str:
    """The same database, addressed through asyncpg or aiosqlite.

    Raises ValueError for in-memory SQLite and for any other database or driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise _unsupported("it does not parse as a URL") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in _POSTGRES and driver in _SYNC_POSTGRES_DRIVERS:
        normalized = _postgres(parsed)
    elif backend == "sqlite" and driver in _SQLITE_DRIVERS:
        normalized = _sqlite(url, parsed)
    else:
        # Echo only the scheme: the rest of the URL may carry a password.
        raise _unsupported(f"{parsed.drivername}://")
    return normalized.render_as_string(hide_password=False)
