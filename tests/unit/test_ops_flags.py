"""The operations flags (metrics, limits, access log) reach Settings, from the
command line or the environment, and bad values are refused like bad flags."""

from __future__ import annotations

import argparse
import os

import pytest

from seat_inventory import cli
from seat_inventory.config import Settings


def settings_of(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="seat-inventory")
    sub = parser.add_subparsers(dest="command", required=True)
    cli._serve_parser(sub)
    return cli._settings(parser.parse_args(["serve", *argv]))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(cli.ENV):
            monkeypatch.delenv(name)


def test_all_off_by_default() -> None:
    settings = settings_of([])
    assert settings.metrics_port is None
    assert settings.metrics_host == "127.0.0.1"
    assert (settings.rate_limit, settings.rate_burst, settings.max_streams_per_principal) == (
        0,
        0,
        0,
    )
    assert settings.max_message_bytes == Settings().max_message_bytes
    assert not settings.access_log


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAT_INVENTORY_RATE_LIMIT", "250.5")
    monkeypatch.setenv("SEAT_INVENTORY_ACCESS_LOG", "1")
    settings = settings_of(
        [
            "--metrics-port",
            "9464",
            "--metrics-host",
            "10.0.0.5",
            "--rate-burst",
            "40",
            "--max-streams-per-principal",
            "8",
            "--max-message-bytes",
            "65536",
        ]
    )
    assert (settings.metrics_port, settings.metrics_host) == (9464, "10.0.0.5")
    assert (settings.rate_limit, settings.rate_burst) == (250.5, 40)
    assert settings.max_streams_per_principal == 8
    assert settings.max_message_bytes == 65536
    assert settings.access_log


@pytest.mark.parametrize(
    "argv",
    [
        ["--metrics-port", "70000"],
        ["--rate-limit", "-1"],
        ["--max-streams-per-principal", "-2"],
        ["--max-message-bytes", "0"],
    ],
)
def test_bad_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        settings_of(argv)
    assert argv[0] in capsys.readouterr().err
