"""The Locust user and the flash-sale example, run headless as Locust runs them
(a child process: Locust patches the whole interpreter with gevent)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from seatinventory.client import AsyncSeatInventoryClient

from tests.e2e.conftest import Running
from tests.e2e.helpers import new_event_id
from tests.support.services import missing

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EXAMPLE = Path(__file__).parents[2] / "clients/python/examples/locustfile_flash_sale.py"
FAILING = """
from typing import Any

from locust import events, task
from seatinventory.client.locust import SeatInventoryUser


@events.request.add_listener
def show(request_type: str, name: str, exception: Any, **_: Any) -> None:
    print(f"REQUEST {request_type} {name} {exception!r}", flush=True)


class Lost(SeatInventoryUser):
    @task
    def missing_event(self) -> None:
        self.client.get_event("no-such-event")
"""


async def run_locust(locustfile: Path, target: str, out: Path, **env: str) -> tuple[int, str]:
    """Locust's exit code and what it printed; its final statistics go to ``<out>.json``.

    Statistics come from --json-file, written at shutdown: the CSV files are
    written on a timer and may miss the last second of a short run."""
    locust = Path(sys.executable).with_name("locust")
    if not locust.exists():
        missing("locust", "pip install 'seatinventory-client[locust]'")
    log = out.with_suffix(".log")
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(locust), "-f", str(locustfile), "--headless", "-u", "5", "-r", "5", "-t", "3s",
            "--host", target, "--json-file", str(out), "--only-summary",
            env={**os.environ, **env}, stdout=sink, stderr=sink,
        )  # fmt: skip
        code = await asyncio.wait_for(process.wait(), 60)
    return code, log.read_text()


def stats(out: Path) -> dict[str, dict[str, Any]]:
    """Request name → Locust's entry for it (method, num_requests, num_failures, ...)."""
    entries = json.loads(out.with_suffix(".json").read_text())
    return {entry["name"]: entry for entry in entries}


async def test_flash_sale_and_failure_reporting(
    live: Running, client: AsyncSeatInventoryClient, tmp_path: Path
) -> None:
    """The example creates its event and reports each RPC to Locust without failures; a
    user whose call fails reports it as a failure carrying the code and reason."""
    failing = tmp_path / "locustfile_failing.py"
    failing.write_text(FAILING)
    event_id = new_event_id()
    (sale, sale_log), (lost, lost_log) = await asyncio.gather(
        run_locust(EXAMPLE, live.target, tmp_path / "sale", FLASH_SALE_EVENT=event_id,
                   FLASH_SALE_SEATS="60"),
        run_locust(failing, live.target, tmp_path / "lost"),
    )  # fmt: skip

    assert sale == 0, sale_log
    sold = stats(tmp_path / "sale")
    for rpc in ("GetAvailability", "Reserve", "Confirm"):
        assert sold[rpc]["num_requests"] > 0, sale_log
    assert {e["method"] for e in sold.values()} == {"grpc"}
    assert sum(e["num_failures"] for e in sold.values()) == 0, sale_log
    assert f"flash sale {event_id}: 60 seats" in sale_log
    event = await client.get_event(event_id)
    assert (event.seat_count, event.booked_count > 0) == (60, True)

    assert lost == 1, lost_log  # Locust's exit code when a request failed
    lost_stats = stats(tmp_path / "lost")["GetEvent"]
    assert lost_stats["num_failures"] == lost_stats["num_requests"] > 0
    expected = 'REQUEST grpc GetEvent EventNotFound("NOT_FOUND EVENT_NOT_FOUND: event'
    assert expected in lost_log, lost_log[-2000:]
