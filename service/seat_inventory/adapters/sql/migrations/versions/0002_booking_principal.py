"""bookings.principal: the authenticated principal whose hold a booking confirmed.

NULL for bookings made before principals were recorded: they belong to the
anonymous principal (authentication off).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("bookings", sa.Column("principal", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bookings") as batch:  # SQLite rebuilds the table
        batch.drop_column("principal")
