"""The ``seat-inventory`` command: serve, and a small client for people."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .config import DEFAULT_SQLITE_PATH, Settings
from .domain.policy import Limits

__all__ = ["main"]

ENV = "SEAT_INVENTORY_"


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _seconds_ms(text: str) -> int:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return int(value * 1000)


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a positive number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a positive whole number, got {text}")
    return value


def _shown_url(url: str) -> str:
    """A database URL fit for a log line: its password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a database URL that does not parse)"


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0 picks a free one), got {text}")
    return value


def _port_or_off(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number, or 0 for off, got {text}")
    return value


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
            # argparse checks a flag's choices, never its default's.
            choices = extra.get("choices")
            if choices is not None and default not in choices:
                self._parser.error(f"{env_name}={raw!r}: choose from {', '.join(choices)}")
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
    opt("--port", _port, 50051, "port to listen on (0 picks a free one)")
    opt(
        "--redis-url",
        str,
        None,
        "redis://host:port/db (rediss:// for TLS); redis+cluster://host:port[,host:port] "
        "for a Redis Cluster",
    )
    opt("--database-url", str, None, "postgresql://user@host/db or sqlite:///path")
    opt(
        "--database-pool-size",
        _positive_int,
        15,
        "PostgreSQL connections each process opens at most; a Confirm holds one from "
        "BEGIN to COMMIT (workers x this must stay below the server's max_connections)",
    )
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
    opt(
        "--max-seats-per-hold",
        _positive_int,
        limits.max_seats_per_hold,
        "seats one Reserve may ask for",
    )
    opt(
        "--max-seats-per-holder",
        _positive_int,
        limits.max_seats_per_holder,
        "seats one holder (of one principal) may hold of one event at once",
    )
    opt(
        "--confirm-window",
        _positive_float,
        30.0,
        "seconds a Confirm cut off half-way stays retryable before repair settles it",
    )
    opt(
        "--sweep-interval",
        _positive_float,
        0.2,
        "seconds between sweeps for expired holds (expiries reach the feed this fast)",
    )
    opt(
        "--feed-maxlen",
        _positive_int,
        100_000,
        "changes kept per event feed (older cursors get a fresh snapshot)",
    )
    opt("--grace", _non_negative_float, 10.0, "seconds in-flight calls get to finish on SIGTERM")
    opt(
        "--drain-delay",
        _non_negative_float,
        0.0,
        "on SIGTERM, seconds to report NOT_SERVING while still serving before the drain "
        "begins, so load balancers stop sending calls first (a second signal cuts it short)",
    )
    opt(
        "--workers",
        _positive_int,
        1,
        "server processes sharing the port (SO_REUSEPORT) under one supervisor that "
        "restarts a dead one; more than 1 needs --redis-url and PostgreSQL",
    )
    opt(
        "--stream-tick",
        _positive_float,
        0.025,
        "seconds of changes a stream message gathers (longer: fewer, larger messages)",
    )
    opt(
        "--stream-max-messages",
        _positive_float,
        20_000,
        "stream messages per second this process aims to stay under; with more "
        "subscribers the tick stretches to subscribers / this",
    )
    opt(
        "--stream-queue-size",
        _positive_int,
        256,
        "messages a stream may lag behind before it is sent a fresh snapshot instead",
    )
    opt(
        "--principals",
        str,
        None,
        "TOML/JSON file of principals, roles and token hashes; unset: no authentication",
    )
    opt("--tls-cert", str, None, "PEM certificate chain: serve TLS (with --tls-key)")
    opt("--tls-key", str, None, "PEM private key of --tls-cert")
    opt("--tls-client-ca", str, None, "PEM CA bundle: require client certificates it signed")
    opt.switch(
        "--allow-insecure-bind",
        "listen on a non-loopback address without --principals (only behind something "
        "that authenticates callers)",
    )
    opt(
        "--metrics-port",
        _port_or_off,
        0,
        "serve Prometheus metrics over HTTP on this port of --metrics-host (0: off; with "
        "--workers N, the supervisor serves every worker's, labelled by worker)",
    )
    opt(
        "--metrics-host",
        str,
        "127.0.0.1",
        "address the metrics listen on; they need no token, so loopback unless you "
        "name an interface only the scraper reaches",
    )
    opt(
        "--rate-limit",
        _non_negative_float,
        0,
        "requests per second each principal may make, per process (0: no limit); "
        "beyond it RESOURCE_EXHAUSTED RATE_LIMITED",
    )
    opt(
        "--rate-burst",
        _non_negative_int,
        0,
        "requests a principal may make at once above --rate-limit (0: one second's worth)",
    )
    opt(
        "--max-streams-per-principal",
        _non_negative_int,
        0,
        "StreamAvailability calls each principal may have open per process (0: no limit); "
        "beyond it RESOURCE_EXHAUSTED STREAM_LIMIT",
    )
    opt(
        "--max-message-bytes",
        _positive_int,
        16 * 1024 * 1024,
        "largest request or response message; a larger request is refused with RESOURCE_EXHAUSTED",
    )
    opt(
        "--redis-batch-linger",
        _non_negative_float,
        0.0,
        "seconds a Redis script call may wait for others to share its round trip, only while "
        "calls come densely from many callers (0: never wait)",
    )
    opt(
        "--accepts-per-method",
        _non_negative_int,
        16,
        "new calls of each method the server stands ready to take at once beyond grpc.aio's "
        "own one (see api/accept.py); 0: grpc.aio's own alone",
    )
    opt(
        "--gc-threshold",
        _non_negative_int,
        50_000,
        "young-generation threshold of Python's garbage collector, set (with startup's objects "
        "frozen) once the server is built; 0 leaves Python's defaults (see runtime.py)",
    )
    opt.switch("--access-log", "log one line per answered call (method, principal, code, time)")
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
            max_seats_per_holder=args.max_seats_per_holder,
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
        database_pool_size=args.database_pool_size,
        limits=limits,
        grace_s=args.grace,
        drain_delay_s=args.drain_delay,
        workers=args.workers,
        confirm_window_s=args.confirm_window,
        sweep_interval_s=args.sweep_interval,
        feed_maxlen=args.feed_maxlen,
        stream_tick_s=args.stream_tick,
        stream_max_messages_s=args.stream_max_messages,
        stream_queue_size=args.stream_queue_size,
        principals_file=args.principals or None,
        tls_cert=args.tls_cert or None,
        tls_key=args.tls_key or None,
        tls_client_ca=args.tls_client_ca or None,
        allow_insecure_bind=args.allow_insecure_bind,
        metrics_port=args.metrics_port or None,
        metrics_host=args.metrics_host or "127.0.0.1",
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        max_streams_per_principal=args.max_streams_per_principal,
        max_message_bytes=args.max_message_bytes,
        access_log=args.access_log,
        gc_threshold=args.gc_threshold,
        accepts_per_method=args.accepts_per_method,
        redis_batch_linger_s=args.redis_batch_linger,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def _serve(args: argparse.Namespace) -> int:
    from .logging import configure_logging

    settings = _settings(args)
    if settings.workers > 1:
        from .supervisor import refusal, supervise

        refused = refusal(settings) or _security_problem(settings)
        if refused is not None:
            print(f"seat-inventory: {refused}", file=sys.stderr)
            return 2
        configure_logging(settings.log_format, settings.log_level)
        return supervise(settings)
    configure_logging(settings.log_format, settings.log_level)
    return asyncio.run(_run_server(settings))


async def _run_server(
    settings: Settings, *, on_serving: Callable[[int, int | None], None] | None = None
) -> int:
    """Serve until SIGTERM/SIGINT; ``on_serving`` (a --workers worker) hears the port
    and the metrics port (None without metrics).
    SIGHUP reloads the principals file (one arriving before the server serves is
    acted on once it does; its default would end the process)."""
    import structlog

    from .api.server import EarlyHangup, Server
    from .bootstrap import build
    from .domain.errors import InventoryError

    # SIGHUP before the server takes it over: remembered, and acted on then (a
    # reload asked while the file was being read must not be lost).
    early_hangup = EarlyHangup()
    log = structlog.get_logger("seat_inventory")
    problem = _security_problem(settings)
    if problem is not None:
        log.error("cannot start", error=problem)
        return 1
    from .api.transport import plaintext_tokens_warning

    if warning := plaintext_tokens_warning(settings):
        log.warning(warning)
    if settings.embedded:
        parts = "in-process fakeredis" + ("" if settings.database_url else " + SQLite")
        log.warning(
            f"embedded mode: {parts}; for one process on one machine "
            "(use --redis-url and --database-url for anything else)",
            database=_shown_url(settings.effective_database_url),
        )
    try:
        app = await build(settings)
    except (InventoryError, OSError, ValueError) as exc:
        log.error("cannot start", error=str(exc))  # noqa: TRY400 - expected, no traceback
        return 1
    if not settings.embedded:
        from .adapters.redis.connection import setup_warnings

        for warning in await setup_warnings(app.redis):
            log.warning("redis setup weakens the guarantees", problem=warning)
    server = Server(app)
    try:
        port = await server.start()
    except OSError as exc:
        log.error("cannot start", error=str(exc))  # noqa: TRY400 - expected, no traceback
        await app.close()
        return 1
    log.info(
        "serving",
        address=f"{settings.host}:{port}",
        embedded=settings.embedded,
        auth="bearer tokens" if settings.principals_file else "off",
        tls="mutual" if settings.tls_client_ca else "on" if settings.tls_cert else "off",
    )
    from .runtime import tune_gc

    tune_gc(settings.gc_threshold)  # everything built so far lives as long as the process
    if on_serving is not None:
        endpoint = server.metrics_endpoint
        on_serving(port, None if endpoint is None else endpoint.port)
    await server.serve_until_signalled(early_hangup)
    log.info("stopped")
    return 0


def _security_problem(settings: Settings) -> str | None:
    """Read the principals and TLS files now, so that a mistake in them stops the
    start with one clear line, before any backend is touched."""
    from .api.auth import PrincipalsError
    from .api.server import principals_to_start_with
    from .api.transport import TransportError, insecure_bind_problem, server_credentials

    try:
        if settings.principals_file:
            # A worker may start on its supervisor's last accepted copy (the
            # server says so when it loads it).
            principals_to_start_with(settings)
        server_credentials(settings)
    except (PrincipalsError, TransportError) as exc:
        return str(exc)
    return insecure_bind_problem(settings)


def _hash_token(args: argparse.Namespace) -> int:
    import getpass
    import secrets

    from .api.auth import MIN_TOKEN_LENGTH, hash_token

    if args.generate:
        token = secrets.token_urlsafe(32)
        print(token)  # the caller's secret: shown once, stored nowhere
    elif sys.stdin.isatty():
        token = getpass.getpass("token: ")
    else:
        token = sys.stdin.readline().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        print(
            f"error: a token needs at least {MIN_TOKEN_LENGTH} characters "
            "(hash-token --generate makes a good one)",
            file=sys.stderr,
        )
        return 1
    print(hash_token(token))
    return 0


def _hash_token_parser(sub: Any) -> None:
    p = sub.add_parser(
        "hash-token",
        help="print the sha256:<hex> line a principals file stores for a token",
        description="Read a bearer token from stdin (or a prompt) and print the hash to put "
        "in a principals file; with --generate, print a new random token and then its hash.",
    )
    p.add_argument("--generate", action="store_true", help="make a new random token")
    p.set_defaults(func=_hash_token)


def main(argv: Sequence[str] | None = None) -> int:
    from .client_cli import add_client_commands
    from .loadtest.command import add_loadtest_command

    parser = argparse.ArgumentParser(
        prog="seat-inventory", description="Hold, confirm and release seats; never sell one twice."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _hash_token_parser(sub)
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
