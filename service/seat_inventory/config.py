"""One frozen settings object, read once from flags and SEAT_INVENTORY_* env."""

from __future__ import annotations

from dataclasses import dataclass, field

from .domain.policy import Limits

__all__ = ["DEFAULT_SQLITE_PATH", "Settings"]

DEFAULT_SQLITE_PATH = "seat-inventory.db"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50051
    # None: in-process fakeredis (embedded default, one process only).
    redis_url: str | None = None
    # None: a SQLite file in the working directory (embedded default).
    database_url: str | None = None
    limits: Limits = field(default_factory=Limits)
    feed_maxlen: int = 100_000
    # A claimed hold stays confirmable (and pinned) for at least this long; a
    # Confirm cut off half-way is repaired by the sweeper after it.
    confirm_window_s: float = 30.0
    sweep_interval_s: float = 0.2
    health_interval_s: float = 1.0
    grace_s: float = 10.0
    # On SIGTERM: seconds of NOT_SERVING while still serving, before the drain
    # (load balancers and client-side health checks move away first).
    drain_delay_s: float = 0.0
    # Server processes sharing the port (SO_REUSEPORT) under one supervisor.
    workers: int = 1
    backend_timeout_s: float = 2.0
    # PostgreSQL connections each process opens at most (on demand, then
    # kept). A Confirm holds one from its BEGIN to its COMMIT, Redis claim
    # included, so this bounds the Confirms in flight per process; workers x
    # this must stay below the server's max_connections.
    database_pool_size: int = 15
    max_message_bytes: int = 16 * 1024 * 1024
    # StreamAvailability fan-out. Changes arriving within one tick travel as
    # one message; a longer tick costs latency and saves per-message CPU.
    stream_tick_s: float = 0.025
    # Stream messages per second this process aims to stay under; with more
    # subscribers the tick stretches (subscribers / this) rather than let
    # stream writes starve Reserve and friends.
    stream_max_messages_s: float = 20_000
    # How long a Redis script call may wait for others to travel with while
    # calls come densely from many callers (adapters/redis/batch.py); 0: never.
    # Off by default: since the server takes new calls many at a time they reach
    # the batcher together anyway, and the wait cost 2-8 callers a third.
    redis_batch_linger_s: float = 0.0
    # Young-generation threshold of the garbage collector, set with startup's
    # objects frozen once the server is built (runtime.py); 0: Python's defaults.
    gc_threshold: int = 50_000
    # Batches queued per subscriber before it is dropped to a fresh snapshot.
    stream_queue_size: int = 256
    # Changes per message when catching up, and per feed read.
    stream_page_size: int = 1000
    # How long a feed reader blocks; also how often it notices a reload.
    stream_block_s: float = 1.0
    # gRPC answers CANCELLED to new calls beyond this many not yet picked up
    # by the application; the default (1000) drops bursts of stream opens.
    max_pending_requests: int = 10_000
    # New calls of each method the server stands ready to take at once beyond
    # grpc.aio's own one (api/accept.py); 0: grpc.aio's own alone.
    accepts_per_method: int = 16
    # Ping idle connections so that dead peers' streams are ended.
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    # Authentication: a principals file (api/auth.py); None runs every call
    # as the anonymous principal.
    principals_file: str | None = None
    # Set by the --workers supervisor for its workers: a copy of the last
    # principals file it accepted, which a worker (re)started while the file
    # itself is refused serves with instead of failing to start.
    principals_fallback_file: str | None = None
    # TLS: certificate chain and key (PEM); with a client CA, mutual TLS.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # Serve a non-loopback address without authentication (refused otherwise).
    allow_insecure_bind: bool = False
    # Prometheus /metrics on this port (of metrics_host); None: no metrics; 0: a
    # free port (a worker's, which its supervisor serves merged on the real one).
    metrics_port: int | None = None
    # Address the metrics listen on. Loopback by default: the endpoint takes
    # no token, so it is exposed only when the operator names an interface.
    metrics_host: str = "127.0.0.1"
    # Abuse limits per principal (0: off): requests per second (token bucket
    # of rate_burst, default one second's worth) and open streams.
    rate_limit: float = 0.0
    rate_burst: int = 0
    max_streams_per_principal: int = 0
    # One JSON/console line per answered call (method, principal, code, duration).
    access_log: bool = False
    log_format: str = "console"  # or "json"
    log_level: str = "info"

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{DEFAULT_SQLITE_PATH}"

    @property
    def address(self) -> str:
        bare = self.host.removeprefix("[").removesuffix("]")  # "[::1]" or "::1"
        host = f"[{bare}]" if ":" in bare else bare
        return f"{host}:{self.port}"
