"""The ``seat-inventory`` command: serve, and a small client for people."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .config import DEFAULT_SQLITE_PATH, Settings
from .domain.policy import Limits

__all__ = ["main"]

ENV = "SEAT_INVENTORY_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV + name, default)


def _seconds_ms(text: str) -> int:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return int(value * 1000)


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the server. With no --redis-url and no --database-url it runs the "
        f"embedded default: SQLite ({DEFAULT_SQLITE_PATH}) + in-process fakeredis, one process. "
        f"Every flag can also be set as an environment variable {ENV}<FLAG>.",
    )
    limits = Limits()
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(_env("PORT", "50051") or 50051))
    p.add_argument("--redis-url", default=_env("REDIS_URL"), help="redis://host:port/db")
    p.add_argument(
        "--database-url",
        default=_env("DATABASE_URL"),
        help="postgresql://user@host/db or sqlite:///path",
    )
    p.add_argument(
        "--default-ttl",
        type=_seconds_ms,
        default=_seconds_ms(_env("DEFAULT_TTL", str(limits.default_ttl_ms / 1000)) or "600"),
        help="seconds a hold lives when Reserve sets no ttl",
    )
    p.add_argument(
        "--min-ttl",
        type=_seconds_ms,
        default=_seconds_ms(_env("MIN_TTL", str(limits.min_ttl_ms / 1000)) or "1"),
    )
    p.add_argument(
        "--max-ttl",
        type=_seconds_ms,
        default=_seconds_ms(_env("MAX_TTL", str(limits.max_ttl_ms / 1000)) or "1800"),
    )
    p.add_argument(
        "--max-hold-lifetime",
        type=_seconds_ms,
        default=_seconds_ms(
            _env("MAX_HOLD_LIFETIME", str(limits.max_hold_lifetime_ms / 1000)) or "3600"
        ),
        help="seconds a hold may live in all, however often it is extended",
    )
    p.add_argument(
        "--max-seats-per-hold",
        type=int,
        default=int(_env("MAX_SEATS_PER_HOLD", str(limits.max_seats_per_hold)) or 50),
    )
    p.add_argument(
        "--confirm-window",
        type=float,
        default=float(_env("CONFIRM_WINDOW", "30") or 30),
        help="seconds a Confirm cut off half-way stays retryable before repair settles it",
    )
    p.add_argument(
        "--sweep-interval",
        type=float,
        default=float(_env("SWEEP_INTERVAL", "0.2") or 0.2),
        help="seconds between sweeps for expired holds (expiries reach the feed this fast)",
    )
    p.add_argument(
        "--feed-maxlen",
        type=int,
        default=int(_env("FEED_MAXLEN", "100000") or 100000),
        help="changes kept per event feed (older cursors get a fresh snapshot)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=float(_env("GRACE", "10") or 10),
        help="seconds in-flight calls get to finish on SIGTERM",
    )
    p.add_argument(
        "--log-format", choices=("console", "json"), default=_env("LOG_FORMAT", "console")
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=_env("LOG_LEVEL", "info"),
    )
    p.set_defaults(func=_serve)


def _settings(args: argparse.Namespace) -> Settings:
    try:
        limits = Limits(
            max_seats_per_hold=args.max_seats_per_hold,
            min_ttl_ms=args.min_ttl,
            max_ttl_ms=args.max_ttl,
            default_ttl_ms=args.default_ttl,
            max_hold_lifetime_ms=args.max_hold_lifetime,
        )
    except ValueError as exc:
        raise SystemExit(f"seat-inventory: bad limits: {exc}") from None
    return Settings(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url or None,
        database_url=args.database_url or None,
        limits=limits,
        grace_s=args.grace,
        confirm_window_s=args.confirm_window,
        sweep_interval_s=args.sweep_interval,
        feed_maxlen=args.feed_maxlen,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def _serve(args: argparse.Namespace) -> int:
    from .logging import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level)
    return asyncio.run(_run_server(settings))


async def _run_server(settings: Settings) -> int:
    import structlog

    from .api.server import Server
    from .bootstrap import build
    from .domain.errors import InventoryError

    log = structlog.get_logger("seat_inventory")
    if settings.embedded:
        log.warning(
            "embedded mode: SQLite + in-process fakeredis; for one process on one machine "
            "(use --redis-url and --database-url for anything else)",
            database=settings.effective_database_url,
        )
    try:
        app = await build(settings)
    except (InventoryError, OSError, ValueError) as exc:
        log.error("cannot start", error=str(exc))  # noqa: TRY400 - expected, no traceback
        return 1
    server = Server(app)
    try:
        port = await server.start()
    except OSError as exc:
        log.error("cannot start", error=str(exc))  # noqa: TRY400 - expected, no traceback
        await app.close()
        return 1
    log.info("serving", address=f"{settings.host}:{port}", embedded=settings.embedded)
    await server.serve_until_signalled()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .client_cli import add_client_commands
    from .loadtest.command import add_loadtest_command

    parser = argparse.ArgumentParser(
        prog="seat-inventory", description="Hold, confirm and release seats; never sell one twice."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    add_client_commands(sub)
    add_loadtest_command(sub)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
