"""Adapters: the real backends (Redis, SQL) behind the service-layer ports."""
