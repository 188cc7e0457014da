"""`seat-inventory loadtest` against a real server on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

import pytest
from seatinventory.v1 import inventory_admin_pb2 as admin_pb
from seatinventory.v1 import seat_inventory_pb2 as pb

from seat_inventory.loadtest.runner import Confirmation
from seat_inventory.loadtest.scenario import Scenario
from seat_inventory.loadtest.verify import verify
from tests.e2e.conftest import Running
from tests.e2e.helpers import create_event
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_small_flash_sale_verifies_clean(
    live: Running, postgres_url: str, tmp_path: Path
) -> None:
    """A short flash sale ends with 0 double bookings and 0 lost confirmations, checked
    through the API and straight from SQL, with JSON and HTML reports written."""
    out, page = tmp_path / "run.json", tmp_path / "run.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "seat_inventory", "loadtest",
        "--target", live.target, "--seats", "60", "--users", "120", "--arrival-rate", "200",
        "--hot-seats", "10", "--hot-share", "0.5", "--hold-ttl", "1", "--think-max", "0.05",
        "--database-url", postgres_url, "--json", str(out), "--html", str(page), "--seed", "3",
        "--subscribers", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = output.decode()
    assert proc.returncode == 0, text
    data = json.loads(out.read_text())
    verification = data["verification"]
    assert verification["checked_sql"] is True
    assert (verification["double_bookings"], verification["lost_confirmations"]) == (0, 0)
    assert verification["confirmations"] > 0
    assert verification["seats_sold_sql"] == data["seats_sold"]
    rpcs = {r["rpc"]: r for r in data["rpcs"]}
    assert rpcs["Reserve"]["count"] >= 120
    assert "verification OK" in text
    assert page.read_text().count("<svg") == 3
    # Both subscribers watch one feed from before the first hold to after the last
    # lapse: they see the same expiries, at most the abandoned seats (a lapsed seat
    # held again before the sweep is not reported expired).
    expiries = data["expiries"]
    assert expiries["abandoned_holds"] > 0
    first, second = expiries["seen_by_each_subscriber"]
    assert first == second
    assert 0 < first <= expiries["abandoned_seats"]


async def confirm_as_the_harness(live: Running, event_id: str, seats: list[str], holder: str):  # type: ignore[no-untyped-def]
    """Reserve and Confirm as a virtual user would; the harness's record of it."""
    hold = (
        await live.inventory.Reserve(
            pb.ReserveRequest(event_id=event_id, seat_ids=seats, holder_id=holder), timeout=10
        )
    ).hold
    booking = (
        await live.inventory.Confirm(
            pb.ConfirmRequest(hold_id=hold.hold_id, holder_id=holder), timeout=10
        )
    ).booking
    return hold.hold_id, Confirmation(
        booking.booking_id, tuple(booking.seat_ids), holder, booking.confirmed_at.ToMilliseconds()
    )


@pytest.mark.parametrize("with_sql", [False, True], ids=["api", "api-and-sql"])
async def test_a_booking_cancelled_during_the_run_is_neither_lost_nor_doubled(
    live: Running, postgres_url: str, with_sql: bool
) -> None:
    """An operator cancels a booking mid-run and its seat is sold again: the first
    confirmation counts as cancelled, not lost, and the resale is no double booking."""
    event_id = await create_event(live.admin, 4)
    first_hold, first = await confirm_as_the_harness(live, event_id, ["A-1", "A-2"], "u1")
    await live.admin.CancelBooking(
        admin_pb.CancelBookingRequest(booking_id=first.booking_id), timeout=10
    )
    second_hold, second = await confirm_as_the_harness(live, event_id, ["A-1"], "u2")
    scenario = Scenario(
        target=live.target, event_id=event_id, database_url=postgres_url if with_sql else None
    )
    v = await verify(scenario, {first_hold: first, second_hold: second})
    assert (v.double_bookings, v.lost_confirmations, v.cancelled) == (0, 0, 1), v.problems
    assert v.ok
    assert v.checked_sql is with_sql


async def test_verification_catches_one_booking_answered_for_two_holds(
    live: Running, postgres_url: str
) -> None:
    """Two holds confirmed with the same booking id (a broken server, faked here) is a
    wrong answer that fails the run, not one confirmation among others."""
    event_id = await create_event(live.admin, 4)
    one_hold, one = await confirm_as_the_harness(live, event_id, ["A-1"], "u1")
    other_hold, other = await confirm_as_the_harness(live, event_id, ["A-2"], "u2")
    faked = dataclasses.replace(other, booking_id=one.booking_id)
    scenario = Scenario(target=live.target, event_id=event_id, database_url=postgres_url)
    v = await verify(scenario, {one_hold: one, other_hold: faked})
    assert v.wrong_answers >= 1
    assert f"booking {one.booking_id} was the answer for 2 holds" in v.problems
    assert not v.ok


async def run_loadtest(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "seat_inventory", "loadtest", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_run_that_confirmed_nothing_fails_and_json_goes_to_stdout_alone(
    live: Running,
) -> None:
    """Holds shorter than the server allows: every Reserve is INVALID_ARGUMENT (tried
    once each, not again with other seats), nothing is confirmed, and the run fails
    instead of verifying nothing; `--json -` leaves stdout to the JSON alone."""
    code, out, err = await run_loadtest(
        "--target", live.target, "--seats", "20", "--users", "15", "--arrival-rate", "300",
        "--hold-ttl", "0.01", "--json", "-",
    )  # fmt: skip
    assert code == 1, err
    data = json.loads(out)
    assert data["verification"]["nothing_to_check"] is True
    assert data["verification"]["ok"] is False
    (reserve,) = [r for r in data["rpcs"] if r["rpc"] == "Reserve"]
    assert reserve["count"] == 15
    assert list(reserve["outcomes"]) == ["INVALID_ARGUMENT INVALID_ARGUMENT"]


async def test_a_database_that_cannot_be_read_ends_the_run_with_one_line(
    live: Running, tmp_path: Path
) -> None:
    """--database-url naming a database nobody serves: the load runs, the report is
    still printed and written, then one error line says what failed; exit 1."""
    out_json = tmp_path / "run.json"
    code, out, err = await run_loadtest(
        "--target", live.target, "--seats", "20", "--users", "10", "--arrival-rate", "300",
        "--think-max", "0.05", "--json", str(out_json),
        "--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in err
    assert "error: verification failed: cannot read the database: " in err
    assert "verification FAILED" in out
    data = json.loads(out_json.read_text())
    assert data["verification"]["incomplete"] is True
    assert sum(r["count"] for r in data["rpcs"]) >= 10


async def test_verification_catches_a_seat_sold_twice(live: Running, postgres_url: str) -> None:
    """Two confirmations of the same seat, both active (a broken server, faked here by
    the harness's record of the second): one double booking, and the run fails."""
    event_id = await create_event(live.admin, 4)
    one_hold, one = await confirm_as_the_harness(live, event_id, ["A-1"], "u1")
    other_hold, other = await confirm_as_the_harness(live, event_id, ["A-2"], "u2")
    doubled = dataclasses.replace(other, seat_ids=("A-1",))
    scenario = Scenario(target=live.target, event_id=event_id)
    v = await verify(scenario, {one_hold: one, other_hold: doubled})
    assert v.double_bookings == 1
    assert any(p.startswith("seat A-1 sold to bookings active at once") for p in v.problems)
    assert not v.ok
