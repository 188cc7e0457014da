"""The schema as SQLAlchemy Core tables; migrations/versions must create exactly this.

A seat is sold while a ``booked_seats`` row names it. Its primary key
(event_id, seat_id) is what makes a second active booking of a seat
impossible, on PostgreSQL and SQLite alike; cancelling deletes the rows
while the booking keeps its seat list. ``given_up_holds`` records the holds
repair settled as never booked, so that a late commit of one fails.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["booked_seats", "bookings", "events", "given_up_holds", "metadata", "seats"]

# Named constraints let migrations refer to them and make the migrated schema
# comparable with these definitions on every backend.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

events = Table(
    "events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("seat_count", Integer, nullable=False),
)

seats = Table(
    "seats",
    metadata,
    Column("event_id", String(64), ForeignKey(events.c.event_id), primary_key=True),
    Column("seat_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),  # index in the seat map as created
    Column("section", String(32), nullable=False),
    Column("row", String(32), nullable=False),
    Column("number", String(32), nullable=False),
    UniqueConstraint("event_id", "position"),
)

bookings = Table(
    "bookings",
    metadata,
    Column("booking_id", String(40), primary_key=True),
    Column("event_id", String(64), ForeignKey(events.c.event_id), nullable=False, index=True),
    Column("hold_id", String(200), nullable=False, unique=True),
    Column("holder_id", String(128), nullable=False),
    Column("order_ref", String(128), nullable=False),
    Column("seat_ids", Text, nullable=False),  # comma-joined: seat ids never hold a comma
    Column("status", SmallInteger, nullable=False),  # domain BookingStatus
    Column("confirmed_at_ms", BigInteger, nullable=False),
    Column("cancelled_at_ms", BigInteger, nullable=True),
    # Whose hold it confirmed; NULL (bookings from before principals) = anonymous.
    Column("principal", String(64), nullable=True),
    CheckConstraint("status IN (1, 2)", name="status"),
)

booked_seats = Table(
    "booked_seats",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("seat_id", String(64), primary_key=True),
    Column("booking_id", String(40), ForeignKey(bookings.c.booking_id), nullable=False, index=True),
    ForeignKeyConstraint(["event_id", "seat_id"], [seats.c.event_id, seats.c.seat_id]),
)

given_up_holds = Table(
    "given_up_holds",
    metadata,
    Column("hold_id", String(200), primary_key=True),
    # No foreign key on purpose: repair must be able to record its decision
    # whatever state the rest of the database is in.
    Column("event_id", String(64), nullable=False),
    Column("given_up_at_ms", BigInteger, nullable=False),
)
