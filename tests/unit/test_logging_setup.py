"""Log records leave the process in one write each, so processes sharing a
stderr (``serve --workers N``) cannot interleave halves of their JSON lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from seat_inventory.logging import configure_logging


class Writes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_each_json_record_is_one_whole_line_in_one_write(
    monkeypatch: pytest.MonkeyPatch, restore_structlog: None
) -> None:
    # Set here, not in a fixture: pytest's output capture resets sys.stderr between
    # the fixtures and the test body.
    captured = Writes()
    monkeypatch.setattr(sys, "stderr", captured)
    configure_logging("json", "info")
    log = structlog.get_logger("test")
    log.info("first", n=1)
    log.warning("second", detail="x" * 200)
    assert len(captured.calls) == 2
    for text, event in zip(captured.calls, ("first", "second"), strict=True):
        assert text.endswith("\n")
        assert text.count("\n") == 1
        assert json.loads(text)["event"] == event
