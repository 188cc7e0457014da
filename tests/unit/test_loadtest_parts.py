"""The load generator's arithmetic: percentiles, shares, scenario checks, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from seat_inventory.loadtest.report import as_dict, expiries_text, html_report
from seat_inventory.loadtest.runner import ShareResult
from seat_inventory.loadtest.scenario import Scenario
from seat_inventory.loadtest.stats import Stats, percentile
from seat_inventory.loadtest.verify import Verification, active_overlaps


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..100 is 50, p99 is 99, p99.9 is the maximum, and no data is 0."""
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 99.9)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([], 50) == 0.0


def test_p999_of_a_thousand_calls_is_the_999th_not_the_maximum() -> None:
    """Nearest rank in exact arithmetic: 99.9 % of 1,000 is rank 999 (floating point
    made it 999.0000000000001, rounded up to the maximum)."""
    values = [float(v) for v in range(1, 1001)]
    assert percentile(values, 99.9) == 999.0
    assert percentile(values, 99) == 990.0


def test_seats_are_double_booked_only_by_bookings_active_at_once() -> None:
    """A booking cancelled before its seat is sold again is no double booking; two
    bookings of a seat overlapping in time are, each seat counted once."""
    forever = 2**63
    periods = [
        ("bk1", ("A-1", "A-2"), 100, 200),  # cancelled at 200
        ("bk2", ("A-1",), 200, forever),  # sold again the same millisecond: fine
        ("bk3", ("A-2",), 150, forever),  # while bk1 was still active: double
        ("bk4", ("A-3",), 10, forever),
        ("bk5", ("A-3",), 20, forever),  # both active: double
        ("bk6", ("A-3",), 30, forever),
    ]
    assert active_overlaps(periods) == {"A-2": ["bk1", "bk3"], "A-3": ["bk4", "bk5", "bk6"]}


def test_shares_split_users_and_rate_exactly() -> None:
    """Three processes share 10 users as 4+3+3 and each gets a third of the arrival rate."""
    scenario = Scenario(users=10, arrival_rate=30, subscribers=2, processes=3, seed=1)
    shares = [scenario.share(i) for i in range(3)]
    assert [s.users for s in shares] == [4, 3, 3]
    assert [s.subscribers for s in shares] == [1, 1, 0]
    assert {s.arrival_rate for s in shares} == {10}
    assert len({s.seed for s in shares}) == 3


def test_bad_scenarios_are_explained() -> None:
    """Probabilities over 1 and more hot seats than seats are reported, not run."""
    problems = Scenario(seats=5, hot_seats=10, p_confirm=0.8, p_release=0.5).problems()
    assert any("--hot-seats" in p for p in problems)
    assert any("--p-confirm" in p for p in problems)


def test_numbers_no_run_can_use_are_explained() -> None:
    """Infinite or NaN numbers, a ttl or deadline of 0, no Reserve attempts: each is a
    problem reported before the run (they once ended it with a traceback)."""
    problems = Scenario(
        arrival_rate=float("nan"), hold_ttl_s=float("inf"), timeout_s=0, reserve_attempts=0
    ).problems()
    assert "--arrival-rate must be a finite number, got nan" in problems
    assert "--hold-ttl must be a finite number, got inf" in problems
    assert "--hold-ttl and --timeout must be positive seconds, at most a day" in problems
    assert "--reserve-attempts must be at least 1 and --subscribers at least 0" in problems
    assert Scenario().problems() == []


def test_summary_and_html_report() -> None:
    """Samples add up per RPC with outcomes counted, and the HTML holds the plots."""
    stats = Stats(
        [("Reserve", 0.1, 0.002, "OK"), ("Reserve", 1.2, 0.004, "FAILED_PRECONDITION X")],
        duration_s=2.0,
    )
    (summary,) = stats.summaries()
    assert (summary.count, summary.rps, summary.outcomes) == (
        2,
        1.0,
        {"OK": 1, "FAILED_PRECONDITION X": 1},
    )
    result = ShareResult(abandoned_holds=2, abandoned_seats=5, expired_seen=[5, 4])
    data = as_dict(Scenario(token="secret"), stats, Verification(confirmations=0), result)
    assert data["scenario"]["token"] == "***"
    assert data["expiries"] == {
        "abandoned_holds": 2,
        "abandoned_seats": 5,
        "seen_by_each_subscriber": [5, 4],
    }
    page = html_report(data)
    assert page.count("<svg") == 3
    assert "Verification <b>OK</b>" in page
    assert "the 2 subscribers saw 4 to 5 seats expire" in page


def test_expiries_are_told_per_subscriber_not_summed() -> None:
    """Two subscribers seeing the same 6 expired seats is 6 each, not 12; none watching says so."""

    def text(seen: list[int]) -> str:
        return expiries_text(
            {"abandoned_holds": 3, "abandoned_seats": 7, "seen_by_each_subscriber": seen}
        )

    assert text([6, 6]) == (
        "3 holds (7 seats) left to lapse; each of 2 subscribers saw 6 seats expire on the stream"
    )
    assert text([6]).endswith("; the subscriber saw 6 seats expire on the stream")
    assert text([]).endswith("; expiries not watched (--subscribers 0)")


def test_the_harness_opens_the_client_packages_channel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its channel is the client's (the same reconnect and keepalive options):
    plaintext without TLS flags, the --ca/--cert/--key files read into Tls with them."""
    from seatinventory.client.channel import Tls

    from seat_inventory.loadtest import runner

    opened: list[tuple[str, Tls | None]] = []

    def fake_open(target: str, tls: Tls | None) -> str:
        opened.append((target, tls))
        return f"channel {len(opened)}"

    monkeypatch.setattr(runner, "open_aio_channel", fake_open)
    for name, data in (("ca.pem", b"CA"), ("cert.pem", b"CERT"), ("key.pem", b"KEY")):
        (tmp_path / name).write_bytes(data)
    plain = runner.open_channel(Scenario(target="host:1"))
    mutual = runner.open_channel(
        Scenario(
            target="host:2",
            tls_ca=str(tmp_path / "ca.pem"),
            tls_cert=str(tmp_path / "cert.pem"),
            tls_key=str(tmp_path / "key.pem"),
        )
    )
    system_roots = runner.open_channel(Scenario(target="host:3", tls=True))
    assert (plain, mutual, system_roots) == ("channel 1", "channel 2", "channel 3")
    assert opened == [
        ("host:1", None),
        ("host:2", Tls(b"CA", b"CERT", b"KEY")),
        ("host:3", Tls()),
    ]
