"""Database URLs as users write them, and the async URLs the service uses."""

from __future__ import annotations

import pytest

from seat_inventory.adapters.sql import make_engine, normalize_url
from seat_inventory.adapters.sql.urls import postgres_connect_options


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://app@db.example/seats", "postgresql+asyncpg://app@db.example/seats"),
        ("postgres://app@db.example:5433/seats", "postgresql+asyncpg://app@db.example:5433/seats"),
        ("postgresql+psycopg2://app:pw@db/seats", "postgresql+asyncpg://app:pw@db/seats"),
        ("postgresql+psycopg://app@db/seats", "postgresql+asyncpg://app@db/seats"),
        ("postgresql+asyncpg://app@db/seats", "postgresql+asyncpg://app@db/seats"),
        ("sqlite:///seat-inventory.db", "sqlite+aiosqlite:///seat-inventory.db"),
        ("sqlite:////var/lib/seats.db", "sqlite+aiosqlite:////var/lib/seats.db"),
        ("sqlite+aiosqlite:///seats.db", "sqlite+aiosqlite:///seats.db"),
    ],
)
def test_plain_urls_get_the_async_driver(given: str, expected: str) -> None:
    """Sync or driverless URLs become asyncpg / aiosqlite; async ones pass through."""
    assert normalize_url(given) == expected


def test_password_with_special_characters_survives() -> None:
    """An escaped password is kept, still escaped, in the normalized URL."""
    assert normalize_url("postgresql://app:p%40ss@db/seats") == (
        "postgresql+asyncpg://app:p%40ss@db/seats"
    )


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    """sslmode (libpq's spelling) is passed to asyncpg as ssl."""
    assert normalize_url("postgresql://app@db/seats?sslmode=require") == (
        "postgresql+asyncpg://app@db/seats?ssl=require"
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file::memory:?cache=shared&uri=true",
        "sqlite:///seats?mode=memory",
    ],
)
def test_in_memory_sqlite_is_refused_with_a_reason(url: str) -> None:
    """An in-memory SQLite database is refused: the embedded default needs a file."""
    with pytest.raises(ValueError, match="in-memory SQLite database; the service needs a file"):
        normalize_url(url)


def test_unsupported_database_names_the_supported_schemes() -> None:
    """Another database is refused, listing what works and without echoing the password."""
    with pytest.raises(ValueError, match="unsupported database URL: mysql://") as caught:
        normalize_url("mysql://app:secret@db/seats")
    assert "postgresql://" in str(caught.value)
    assert "sqlite:///<file>" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_text_that_is_no_url_is_refused() -> None:
    """A value that does not parse as a URL is a ValueError, not a SQLAlchemy error."""
    with pytest.raises(ValueError, match="does not parse as a URL"):
        normalize_url("seats.db")


def test_make_engine_connects_lazily() -> None:
    """Building an engine for a database nobody runs succeeds: nothing connects yet."""
    engine = make_engine("postgresql://app@127.0.0.1:1/seats")
    assert engine.dialect.driver == "asyncpg"
    assert make_engine("sqlite:///never-created.db").dialect.driver == "aiosqlite"


def test_libpq_options_become_what_asyncpg_takes() -> None:
    """connect_timeout, application_name (or fallback_application_name) and options'
    -c pairs, as people paste them from libpq tools, reach asyncpg as its own
    arguments instead of failing the first connect with a TypeError."""
    url, options = postgres_connect_options(
        "postgresql+asyncpg://app@db/seats?connect_timeout=5&application_name=checkout"
        "&options=-c%20search_path%3Dtickets%20-cstatement_timeout%3D5000&ssl=require"
    )
    assert url == "postgresql+asyncpg://app@db/seats?ssl=require"
    assert options == {
        "timeout": 5.0,
        "server_settings": {
            "application_name": "checkout",
            "search_path": "tickets",
            "statement_timeout": "5000",
        },
    }
    _, fallback = postgres_connect_options(
        "postgresql+asyncpg://app@db/seats?fallback_application_name=tools"
    )
    assert fallback == {"server_settings": {"application_name": "tools"}}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("keepalives=1", "database URL option keepalives is not supported; supported: "),
        ("connect_timeout=soon", "connect_timeout='soon': give seconds"),
        ("options=search_path", "use -c name=value pairs"),
        ("sslrootcert=/nonexistent/root.crt", "database URL certificate options: "),
    ],
)
def test_options_the_service_cannot_use_are_refused_by_name(query: str, message: str) -> None:
    """A ValueError (serve: "cannot start", one line) naming the option, not a
    TypeError from inside asyncpg."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make_engine(f"postgresql://app@db/seats?{query}")
