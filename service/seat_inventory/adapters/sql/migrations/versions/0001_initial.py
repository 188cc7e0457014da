"""Events, seats, bookings, booked seats and given-up holds.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("seat_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
    )
    op.create_table(
        "seats",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seat_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(32), nullable=False),
        sa.Column("row", sa.String(32), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "seat_id", name="pk_seats"),
        sa.UniqueConstraint("event_id", "position", name="uq_seats_event_id_position"),
        sa.ForeignKeyConstraint(["event_id"], ["events.event_id"], name="fk_seats_event_id_events"),
    )
    op.create_table(
        "bookings",
        sa.Column("booking_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("hold_id", sa.String(200), nullable=False),
        sa.Column("holder_id", sa.String(128), nullable=False),
        sa.Column("order_ref", sa.String(128), nullable=False),
        sa.Column("seat_ids", sa.Text(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("confirmed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("cancelled_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("booking_id", name="pk_bookings"),
        sa.UniqueConstraint("hold_id", name="uq_bookings_hold_id"),
        sa.CheckConstraint("status IN (1, 2)", name="ck_bookings_status"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name="fk_bookings_event_id_events"
        ),
    )
    op.create_index("ix_bookings_event_id", "bookings", ["event_id"])
    op.create_table(
        "booked_seats",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seat_id", sa.String(64), nullable=False),
        sa.Column("booking_id", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "seat_id", name="pk_booked_seats"),
        sa.ForeignKeyConstraint(
            ["event_id", "seat_id"],
            ["seats.event_id", "seats.seat_id"],
            name="fk_booked_seats_event_id_seat_id_seats",
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.booking_id"], name="fk_booked_seats_booking_id_bookings"
        ),
    )
    op.create_index("ix_booked_seats_booking_id", "booked_seats", ["booking_id"])
    op.create_table(
        "given_up_holds",
        sa.Column("hold_id", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("given_up_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hold_id", name="pk_given_up_holds"),
    )


def downgrade() -> None:
    op.drop_table("given_up_holds")
    op.drop_table("booked_seats")
    op.drop_table("bookings")
    op.drop_table("seats")
    op.drop_table("events")
