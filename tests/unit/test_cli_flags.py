"""`seat-inventory serve` flags: each maps onto Settings, each reads its
SEAT_INVENTORY_* variable, and bad values are refused like bad flags."""

from __future__ import annotations

import argparse
import os

import pytest

from seat_inventory import cli


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seat-inventory")
    sub = parser.add_subparsers(dest="command", required=True)
    cli._serve_parser(sub)
    return parser.parse_args(["serve", *argv])


def test_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(cli.ENV):
            monkeypatch.delenv(name)
    settings = cli._settings(parse([]))
    assert settings.host == "127.0.0.1"
    assert settings.port == 50051
    assert settings.embedded
    assert settings.limits.default_ttl_ms == 600_000
    assert settings.stream_tick_s == 0.025
    assert settings.stream_max_messages_s == 20_000
    assert settings.stream_queue_size == 256


def test_flags_reach_the_settings() -> None:
    settings = cli._settings(
        parse(
            [
                "--port",
                "7000",
                "--default-ttl",
                "90",
                "--stream-tick",
                "0.1",
                "--stream-max-messages",
                "5000",
                "--stream-queue-size",
                "32",
                "--feed-maxlen",
                "500",
            ]
        )
    )
    assert settings.port == 7000
    assert settings.limits.default_ttl_ms == 90_000
    assert (settings.stream_tick_s, settings.stream_max_messages_s) == (0.1, 5000)
    assert settings.stream_queue_size == 32
    assert settings.feed_maxlen == 500


def test_environment_sets_the_default_and_a_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAT_INVENTORY_STREAM_TICK", "0.2")
    monkeypatch.setenv("SEAT_INVENTORY_MAX_TTL", "120")
    args = parse([])
    assert args.stream_tick == 0.2
    assert args.max_ttl == 120_000
    assert parse(["--stream-tick", "0.3"]).stream_tick == 0.3


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--stream-tick", "0"], {}, "must be a positive number"),
        (["--stream-queue-size", "0"], {}, "must be a positive whole number"),
        (["--default-ttl", "-1"], {}, "must be a positive number of seconds"),
        ([], {"SEAT_INVENTORY_PORT": "eighty"}, "SEAT_INVENTORY_PORT='eighty'"),
        # Once taken as is: port 99999 listened on 34463, a negative feed length
        # failed every Reserve, infinity escaped as OverflowError.
        (["--port", "99999"], {}, "must be a port number"),
        (["--port", "-1"], {}, "must be a port number"),
        (["--feed-maxlen", "-1"], {}, "must be a positive whole number"),
        (["--sweep-interval", "0"], {}, "must be a positive number"),
        (["--confirm-window", "-5"], {}, "must be a positive number"),
        (["--grace", "-1"], {}, "must be 0 (off) or a positive number"),
        (["--max-seats-per-hold", "0"], {}, "must be a positive whole number"),
        (["--default-ttl", "inf"], {}, "must be a finite number"),
        (["--stream-tick", "nan"], {}, "must be a finite number"),
        (["--drain-delay", "inf"], {}, "must be a finite number"),
        # argparse checks choices of a flag, not of a default the environment set.
        ([], {"SEAT_INVENTORY_LOG_LEVEL": "verbose"}, "SEAT_INVENTORY_LOG_LEVEL='verbose'"),
        ([], {"SEAT_INVENTORY_LOG_FORMAT": "JSON"}, "choose from console, json"),
    ],
)
def test_bad_values_are_refused_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_database_pool_size_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAT_INVENTORY_DATABASE_POOL_SIZE", raising=False)
    assert cli._settings(parse([])).database_pool_size == 15
    assert cli._settings(parse(["--database-pool-size", "40"])).database_pool_size == 40
    monkeypatch.setenv("SEAT_INVENTORY_DATABASE_POOL_SIZE", "25")
    assert cli._settings(parse([])).database_pool_size == 25


def test_gc_threshold_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAT_INVENTORY_GC_THRESHOLD", raising=False)
    assert cli._settings(parse([])).gc_threshold == 50_000
    assert cli._settings(parse(["--gc-threshold", "0"])).gc_threshold == 0
    monkeypatch.setenv("SEAT_INVENTORY_GC_THRESHOLD", "20000")
    assert cli._settings(parse([])).gc_threshold == 20_000


def test_accepts_per_method_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAT_INVENTORY_ACCEPTS_PER_METHOD", raising=False)
    assert cli._settings(parse([])).accepts_per_method == 16
    assert cli._settings(parse(["--accepts-per-method", "0"])).accepts_per_method == 0
    monkeypatch.setenv("SEAT_INVENTORY_ACCEPTS_PER_METHOD", "4")
    assert cli._settings(parse([])).accepts_per_method == 4
    with pytest.raises(SystemExit):
        parse(["--accepts-per-method", "-1"])


def test_redis_batch_linger_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAT_INVENTORY_REDIS_BATCH_LINGER", raising=False)
    assert cli._settings(parse([])).redis_batch_linger_s == 0
    assert cli._settings(parse(["--redis-batch-linger", "0.001"])).redis_batch_linger_s == 0.001
    with pytest.raises(SystemExit):
        parse(["--redis-batch-linger", "-1"])


def test_drain_delay_reaches_the_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SEAT_INVENTORY_DRAIN_DELAY", raising=False)
    assert cli._settings(parse([])).drain_delay_s == 0.0
    assert cli._settings(parse(["--drain-delay", "7.5"])).drain_delay_s == 7.5
    monkeypatch.setenv("SEAT_INVENTORY_DRAIN_DELAY", "3")
    assert cli._settings(parse([])).drain_delay_s == 3.0
    with pytest.raises(SystemExit) as exited:
        parse(["--drain-delay", "-1"])
    assert exited.value.code == 2
    assert "--drain-delay" in capsys.readouterr().err
