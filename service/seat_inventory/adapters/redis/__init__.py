"""Live holds in Redis: one Lua script per mutation, every key of an event
under its ``{e:<event_id>}`` hash tag."""

from .connection import connect_redis
from .store import RedisHoldStore

__all__ = ["RedisHoldStore", "connect_redis"]
