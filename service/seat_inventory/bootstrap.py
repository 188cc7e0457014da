"""Composition root: settings → adapters → services. The only place that
builds real adapters; nothing connects before ``build`` is awaited."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from .adapters.redis import RedisHoldStore, connect_redis
from .adapters.redis.feed import RedisFeed
from .adapters.redis.store import StoreSettings
from .adapters.sql import SqlEventRepository, make_engine, migrate
from .api.metrics import Metrics
from .api.translate import ProtoUpdateEncoder
from .config import Settings
from .domain.clock import Clock, SystemClock
from .service_layer.admin import AdminService
from .service_layer.bookings import BookingService
from .service_layer.catalog import EventCatalog
from .service_layer.failpoints import Failpoints
from .service_layer.fanout import FeedHub
from .service_layer.inventory import InventoryService
from .service_layer.sweeper import Sweeper
from .service_layer.watch import AvailabilityWatch

__all__ = ["App", "build"]

log = structlog.get_logger(__name__)


@dataclass
class App:
    settings: Settings
    redis: Any
    engine: Any
    holds: RedisHoldStore
    events: SqlEventRepository
    catalog: EventCatalog
    inventory: InventoryService
    admin: AdminService
    bookings: BookingService
    sweeper: Sweeper
    hub: FeedHub
    watch: AvailabilityWatch
    metrics: Metrics = field(default_factory=Metrics)

    async def close(self) -> None:
        await self.hub.close()
        await self.holds.aclose()  # the batcher's connection, before the pool goes
        await self.redis.aclose()
        self.events.close()
        await self.engine.dispose()


async def build(
    settings: Settings, *, clock: Clock | None = None, failpoints: Failpoints | None = None
) -> App:
    """Build every adapter and service. ``clock`` (tests only) also drives the
    Lua scripts; without it Redis's own clock decides expiry."""
    database_url = settings.effective_database_url
    await migrate(database_url)
    engine = make_engine(
        database_url,
        connect_timeout_s=settings.backend_timeout_s,
        pool_size=settings.database_pool_size,
    )
    redis = connect_redis(settings.redis_url, timeout_s=settings.backend_timeout_s)
    holds = RedisHoldStore(
        redis,
        clock=clock,
        settings=StoreSettings(
            feed_maxlen=settings.feed_maxlen,
            confirm_window_ms=int(settings.confirm_window_s * 1000),
        ),
        batch_linger_s=settings.redis_batch_linger_s,
    )
    events = SqlEventRepository(engine)
    catalog = EventCatalog(events, holds)
    metrics = Metrics()
    inventory = InventoryService(holds, catalog, settings.limits, telemetry=metrics)
    wall = clock or SystemClock()
    admin = AdminService(events, catalog, inventory, settings.limits, wall)
    bookings = BookingService(
        holds,
        events,
        catalog,
        settings.limits,
        wall,
        failpoints or Failpoints.from_env(),
        telemetry=metrics,
    )
    sweeper = Sweeper(
        holds,
        events,
        repair=bookings.repair,
        interval_s=settings.sweep_interval_s,
        telemetry=metrics,
    )
    catalog.on_loaded = sweeper.track
    feed = RedisFeed(
        redis,
        settings.redis_url,
        timeout_s=settings.backend_timeout_s,
        max_block_s=settings.stream_block_s,
    )
    encoder = ProtoUpdateEncoder()
    hub = FeedHub(
        feed,
        encoder,
        tick_s=settings.stream_tick_s,
        queue_size=settings.stream_queue_size,
        page_size=settings.stream_page_size,
        block_s=settings.stream_block_s,
        max_messages_s=settings.stream_max_messages_s,
    )
    watch = AvailabilityWatch(inventory, catalog, feed, hub, encoder)
    return App(
        settings,
        redis,
        engine,
        holds,
        events,
        catalog,
        inventory,
        admin,
        bookings,
        sweeper,
        hub,
        watch,
        metrics=metrics,
    )
