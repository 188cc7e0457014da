"""`seat-inventory loadtest` against a real server on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Running

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
