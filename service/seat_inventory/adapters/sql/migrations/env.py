"""Alembic environment: runs on the service's connection, or on its own for the CLI."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from seat_inventory.adapters.sql.engine import make_engine
from seat_inventory.adapters.sql.migrate import migration_transaction
from seat_inventory.adapters.sql.tables import metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    # Inside the caller's transaction this adds none of its own; the caller commits.
    with context.begin_transaction():
        context.run_migrations()


def cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "SEAT_INVENTORY_DATABASE_URL", ""
    )
    if not url:
        raise SystemExit("give the database with -x url=... or SEAT_INVENTORY_DATABASE_URL")
    return url


async def run_cli() -> None:
    engine = make_engine(cli_url())
    try:
        async with migration_transaction(engine) as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


shared = config.attributes.get("connection")
if shared is not None:
    run_on(shared)
else:
    # Only the CLI configures logging: the service owns its own logging setup.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        context.configure(url=cli_url(), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_cli())
