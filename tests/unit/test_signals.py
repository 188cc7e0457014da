"""SIGHUP before the server takes it over: remembered in the server process, and
blocked in a starting worker until then (its default action would end the
process)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from seat_inventory.api.server import EarlyHangup
from seat_inventory.config import Settings
from seat_inventory.supervisor import Policy, Supervisor


def test_an_early_sighup_is_remembered_and_does_not_end_the_process() -> None:
    previous = signal.getsignal(signal.SIGHUP)
    try:
        hangup = EarlyHangup()
        assert not hangup.seen
        os.kill(os.getpid(), signal.SIGHUP)
        assert hangup.seen
    finally:
        signal.signal(signal.SIGHUP, previous)


# A stand-in worker: SIGHUP must arrive blocked; one sent now stays pending (the
# process lives on) and reaches EarlyHangup once it is in place.
CHECKS_SIGHUP = """
import os, signal, sys, time
from seat_inventory.api.server import EarlyHangup
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
assert signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, []), "SIGHUP not blocked"
os.kill(os.getpid(), signal.SIGHUP)
time.sleep(0.05)
hangup = EarlyHangup()
assert hangup.seen, "the pending SIGHUP was not delivered"
assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
os.write(int(sys.argv[1]), b"1")
time.sleep(60)
"""


def test_a_worker_starts_with_sighup_blocked_and_gets_it_once_handled() -> None:
    """The supervisor spawns workers with SIGHUP blocked (no preexec_fn: the
    metrics relay runs threads), and its own mask is as before afterwards."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    settings = Settings(
        port=0, workers=1, grace_s=0.5, redis_url="redis://r/0", database_url="postgresql://p/d"
    )

    def command(index: int, ready_fd: int) -> list[str]:
        return [sys.executable, "-c", CHECKS_SIGHUP, str(ready_fd)]

    supervisor = Supervisor(settings, command=command, policy=Policy(stop_margin_s=0.5))

    def stop_once_served() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if supervisor.workers and supervisor.workers[0].ever_served:
                break
            if supervisor.workers and supervisor.workers[0].startup_failures:
                break
            time.sleep(0.02)
        supervisor.request_stop()

    threading.Thread(target=stop_once_served, daemon=True).start()
    assert supervisor.run() == 0
    assert supervisor.workers[0].ever_served
    assert supervisor.workers[0].stopped_code == 0
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
