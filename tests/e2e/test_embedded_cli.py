"""The README walkthrough, as a new user runs it: `seat-inventory serve` on the
embedded default (no Redis, no PostgreSQL) and the CLI against it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "seat_inventory"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`seat-inventory serve` with nothing configured, in an empty folder."""
    workdir = tmp_path_factory.mktemp("embedded")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAT_INVENTORY_")}
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output
        assert "embedded mode" in output
        assert (workdir / "seat-inventory.db").exists()


def cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--target", target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_walkthrough_on_the_embedded_default(embedded: str) -> None:
    """Create an event from a CSV, reserve, extend, look, lose a race, release."""
    created = cli(
        embedded, "create-event", "demo", "--file", str(ROOT / "examples" / "small-venue.csv")
    )
    assert created.returncode == 0, created.stderr
    assert "30 seats" in created.stdout

    reserved = cli(
        embedded, "reserve", "demo", "Stalls-A-1", "Stalls-A-2", "--holder", "alice", "--ttl", "120"
    )
    assert reserved.returncode == 0, reserved.stderr
    hold_id = re.search(r"hold_id:\s+(\S+)", reserved.stdout)
    assert hold_id is not None, reserved.stdout

    extended = cli(embedded, "extend", hold_id[1], "--holder", "alice", "--ttl", "300")
    assert extended.returncode == 0, extended.stderr

    shown = cli(embedded, "availability", "demo")
    assert re.search(r"held:\s+2\s+Stalls-A-1, Stalls-A-2", shown.stdout), shown.stdout

    lost = cli(embedded, "reserve", "demo", "Stalls-A-2", "Stalls-A-3", "--holder", "bob")
    assert lost.returncode == 1
    assert lost.stderr.strip() == (
        "error: FAILED_PRECONDITION SEATS_UNAVAILABLE: seat(s) Stalls-A-2 of event 'demo' "
        "are held or booked (seats: Stalls-A-2)"
    )
    assert "Traceback" not in lost.stderr

    released = cli(embedded, "release", hold_id[1], "--holder", "alice")
    assert (released.returncode, released.stdout.strip()) == (0, "released")
    again = cli(embedded, "release", hold_id[1], "--holder", "alice")
    assert again.stdout.strip() == "already released"

    event = cli(embedded, "event", "demo")
    assert "30 seats, 30 available, 0 held, 0 booked" in event.stdout


def test_bad_input_shows_field_errors_not_a_traceback(embedded: str) -> None:
    """A bad request prints the code and which fields are wrong, and exits 1."""
    result = cli(embedded, "reserve", "demo", "Stalls-A-1", "Stalls-A-1", "--holder", "al ice")
    assert result.returncode == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: invalid request: ")
    assert "seat_ids[1]: seat 'Stalls-A-1' is listed twice" in result.stderr
    assert "holder_id: must use only" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_says_so(tmp_path: Path) -> None:
    """The CLI pointed at a port nobody listens on says the server is not running."""
    result = cli(f"127.0.0.1:{free_port()}", "event", "demo", "--timeout", "2")
    assert result.returncode == 1
    assert "is the server running at" in result.stderr


def test_a_port_already_taken_stops_serve_with_one_line(embedded: str, tmp_path: Path) -> None:
    """A second `serve` on the embedded server's port says it cannot listen there
    and exits 1, without a traceback."""
    port = embedded.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAT_INVENTORY_")}
    result = subprocess.run(
        [*CLI, "serve", "--port", port],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"cannot listen on 127.0.0.1:{port}: address in use or not allowed" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("ttl", ["inf", "nan", "1e20", "0", "-3"])
def test_an_absurd_ttl_is_refused_as_a_bad_flag(embedded: str, ttl: str) -> None:
    """--ttl that no Duration can carry (or no hold can live) is a usage error
    (exit 2, which flag and why), not a traceback."""
    result = cli(embedded, "reserve", "demo", "Stalls-A-9", "--holder", "alice", "--ttl", ttl)
    assert result.returncode == 2
    assert "--ttl: must be a positive number of seconds" in result.stderr
    assert "Traceback" not in result.stderr
