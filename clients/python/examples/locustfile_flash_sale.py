"""A flash sale: many buyers rush the best seats of one event at the same time.

Start a server (``seat-inventory serve`` or ``make serve``), then:

    locust -f clients/python/examples/locustfile_flash_sale.py \\
        --headless -u 50 -r 10 -t 20s --host localhost:50051

Each buyer looks at the seat map, tries to hold 1-4 of the best free seats
and confirms (or, now and then, changes their mind and releases). Losing a
race is the normal outcome of a flash sale: it shows in the statistics as
"Reserve SEATS_UNAVAILABLE", not as a failure; anything else that fails does
fail the run (exit code 1).

Environment:
    FLASH_SALE_EVENT  event id (default: a new event per run, "flash-sale-<time>";
                      set it for distributed runs so that every worker agrees)
    FLASH_SALE_SEATS  seats of the event (default 500)
    FLASH_SALE_TOKEN  bearer token to send, if the server wants one
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

from locust import between, events, task
from locust.env import Environment
from seatinventory.client import (
    EventNotFound,
    SeatInventoryClient,
    SeatSpec,
    SeatStatus,
    SeatsUnavailable,
)
from seatinventory.client.locust import SeatInventoryUser

EVENT_ID = os.environ.get("FLASH_SALE_EVENT") or f"flash-sale-{int(time.time())}"
SEATS = int(os.environ.get("FLASH_SALE_SEATS", "500"))
TOKEN = os.environ.get("FLASH_SALE_TOKEN") or None
ROW_LENGTH = 25


def seat_map() -> list[SeatSpec]:
    """Rows of 25 seats, best (row 1) first; seat ids like "R1-7"."""
    return [
        SeatSpec(
            seat_id=f"R{i // ROW_LENGTH + 1}-{i % ROW_LENGTH + 1}",
            section="Stalls",
            row=str(i // ROW_LENGTH + 1),
            number=str(i % ROW_LENGTH + 1),
        )
        for i in range(SEATS)
    ]


@events.test_start.add_listener
def ensure_event(environment: Environment, **_: Any) -> None:
    """Create the event once before the rush; CreateEvent returns it if it exists."""
    with SeatInventoryClient(environment.host or "localhost:50051", token=TOKEN) as client:
        event = client.create_event(EVENT_ID, "Flash sale", seat_map(), timeout=60)
    print(f"flash sale {event.event_id}: {event.seat_count} seats, {event.available_count} free")


@events.test_stop.add_listener
def report_sale(environment: Environment, **_: Any) -> None:
    with SeatInventoryClient(environment.host or "localhost:50051", token=TOKEN) as client:
        try:
            event = client.get_event(EVENT_ID)
        except EventNotFound:
            print(f"flash sale {EVENT_ID}: never started")
            return
    print(
        f"flash sale {event.event_id}: {event.booked_count} of {event.seat_count} seats sold, "
        f"{event.held_count} held, {event.available_count} free"
    )


class FlashSaleBuyer(SeatInventoryUser):
    wait_time = between(0.05, 0.5)
    token = TOKEN
    expected_errors = (SeatsUnavailable,)

    def on_start(self) -> None:
        self.holder_id = f"buyer-{uuid.uuid4().hex[:12]}"

    @task(10)
    def buy(self) -> None:
        seats = self.client.get_availability(EVENT_ID).seats
        free = [s.seat_id for s in seats if s.status == SeatStatus.SEAT_STATUS_AVAILABLE]
        if not free:
            return  # sold out: keep watching the seat map
        wanted = random.sample(free[:20], k=min(len(free[:20]), random.randint(1, 4)))
        try:
            hold = self.client.reserve(EVENT_ID, wanted, self.holder_id, ttl=60)
        except SeatsUnavailable:
            return  # someone was faster
        if random.random() < 0.9:
            self.client.confirm(hold.hold_id, self.holder_id, order_ref=f"order-{uuid.uuid4().hex}")
        else:
            self.client.release(hold.hold_id, self.holder_id)

    @task(1)
    def browse(self) -> None:
        self.client.get_event(EVENT_ID)

    @task(1)
    def extend_and_release(self) -> None:
        """A hesitant buyer: holds one seat, asks for more time, then lets it go."""
        seats = self.client.get_availability(EVENT_ID).seats
        free = [s.seat_id for s in seats if s.status == SeatStatus.SEAT_STATUS_AVAILABLE]
        if not free:
            return
        try:
            hold = self.client.reserve(EVENT_ID, [random.choice(free)], self.holder_id, ttl=30)
            self.client.extend_hold(hold.hold_id, self.holder_id, ttl=60)
        except SeatsUnavailable:
            return
        self.client.release(hold.hold_id, self.holder_id)
