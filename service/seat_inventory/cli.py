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


def _seconds_ms(text: str) -> int:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return int(value * 1000)


class _Options:
    """Adds ``--some-flag`` whose default comes from SEAT_INVENTORY_SOME_FLAG when set.

    A bad value in the environment is reported like a bad flag, not as a traceback.
    """

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser

    def __call__(
        self,
        flag: str,
        kind: Callable[[str], Any],
        default: Any,
        help: str,
        **extra: Any,
    ) -> None:
        env_name = ENV + flag.removeprefix("--").replace("-", "_").upper()
        shown = (
            f" (env {env_name})" if default is None else f" (default: {default}; env {env_name})"
        )
        raw = os.environ.get(env_name)
        if raw is not None and raw != "":
            try:
                default = kind(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                self._parser.error(f"{env_name}={raw!r}: {exc}")
        elif default is not None and kind is not str and not isinstance(default, bool):
            default = kind(str(default))
        self._parser.add_argument(flag, type=kind, default=default, help=help + shown, **extra)

    def switch(self, flag: str, help: str) -> None:
        """A boolean flag; the environment turns it on with 1/true/yes."""
        env_name = ENV + flag.removeprefix("--").replace("-", "_").upper()
        on = os.environ.get(env_name, "").strip().lower() in {"1", "true", "yes", "on"}
        self._parser.add_argument(
            flag, action="store_true", default=on, help=f"{help} (env {env_name}=1)"
        )


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the server. With no --redis-url and no --database-url it runs the "
        f"embedded default: SQLite ({DEFAULT_SQLITE_PATH}) + in-process fakeredis, one process. "
        f"Every flag can also be set as an environment variable {ENV}<FLAG>.",
    )
    limits = Limits()
    opt = _Options(p)
    opt("--host", str, "127.0.0.1", "address to listen on")
    opt("--port", int, 50051, "port to listen on (0 picks a free one)")
    opt("--redis-url", str, None, "redis://host:port/db")
    opt("--database-url", str, None, "postgresql://user@host/db or sqlite:///path")
    opt(
        "--default-ttl",
        _seconds_ms,
        limits.default_ttl_ms / 1000,
        "seconds a hold lives when Reserve sets no ttl",
    )
    opt("--min-ttl", _seconds_ms, limits.min_ttl_ms / 1000, "shortest ttl a Reserve may ask")
    opt("--max-ttl", _seconds_ms, limits.max_ttl_ms / 1000, "longest ttl a Reserve may ask")
    opt(
        "--max-hold-lifetime",
        _seconds_ms,
        limits.max_hold_lifetime_ms / 1000,
        "seconds a hold may live in all, however often it is extended",
    )
    opt("--max-seats-per-hold", int, limits.max_seats_per_hold, "seats one Reserve may ask for")
    opt(
        "--confirm-window",
        float,
        30.0,
        "seconds a Confirm cut off half-way stays retryable before repair settles it",
    )
    opt(
        "--sweep-interval",
        float,
        0.2,
        "seconds between sweeps for expired holds (expiries reach the feed this fast)",
    )
    opt(
        "--feed-maxlen",
        int,
        100_000,
        "changes kept per event feed (older cursors get a fresh snapshot)",
    )
    opt("--grace", float, 10.0, "seconds in-flight calls get to finish on SIGTERM")
    opt("--log-format", str, "console", "console or json", choices=("console", "json"))
    opt(
        "--log-level",
        str,
        "info",
        "debug, info, warning or error",
        choices=("debug", "info", "warning", "error"),
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
