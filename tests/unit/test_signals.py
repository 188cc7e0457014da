"""SIGHUP before the server takes it over: remembered in the server process, and
ignored in a starting worker (its default action would end the process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from seat_inventory.api.server import EarlyHangup
from seat_inventory.supervisor import _ignore_sighup


def test_an_early_sighup_is_remembered_and_does_not_end_the_process() -> None:
    previous = signal.getsignal(signal.SIGHUP)
    try:
        hangup = EarlyHangup()
        assert not hangup.seen
        os.kill(os.getpid(), signal.SIGHUP)
        assert hangup.seen
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_worker_starts_with_sighup_ignored() -> None:
    """The supervisor spawns workers with SIGHUP ignored; the ignore survives exec."""
    code = (
        "import os, signal\n"
        "assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "print('alive')\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=_ignore_sighup,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "alive"
    plain = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert plain.returncode != 0  # without it: SIG_DFL (the assert fails)
