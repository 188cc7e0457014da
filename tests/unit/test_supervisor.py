"""The ``--workers`` supervisor's policy, with stand-in workers (tiny Python
processes that serve, die or ignore SIGTERM on cue) instead of real servers."""

from __future__ import annotations

import dataclasses
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from seat_inventory.config import Settings
from seat_inventory.supervisor import (
    Policy,
    Supervisor,
    _reserve_port,
    _signal_name,
    decode_settings,
    encode_settings,
    refusal,
    worker_settings,
)

FAST = Policy(backoff_first_s=0.05, backoff_max_s=0.2, stop_margin_s=0.5)
SETTINGS = Settings(
    port=0, workers=2, grace_s=0.5, redis_url="redis://r/0", database_url="postgresql://p/d"
)

# Stand-ins get the ready pipe's fd as argv[1]; writing to it means "serving".
SERVES = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
os.write(int(sys.argv[1]), b"1")
time.sleep(60)
"""
SERVES_THEN_DIES = """
import os, sys, time
os.write(int(sys.argv[1]), b"1")
time.sleep(0.2)
sys.exit(1)
"""
DIES_AT_ONCE = "import sys; sys.exit(3)"
IGNORES_SIGTERM = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.write(int(sys.argv[1]), b"1")
time.sleep(60)
"""


class StandIns:
    """The supervisor's ``command``: which script each start of each worker runs."""

    def __init__(self, pick: Callable[[int, int], str]) -> None:
        self.pick = pick
        self.starts: list[int] = []

    def __call__(self, index: int, ready_fd: int) -> list[str]:
        attempt = self.starts.count(index)
        self.starts.append(index)
        return [sys.executable, "-c", self.pick(index, attempt), str(ready_fd)]


def stop_when(supervisor: Supervisor, ready: Callable[[], bool]) -> threading.Thread:
    """Request a stop (as SIGTERM would) once ``ready()``; gives up after 30 s."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        supervisor.request_stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_workers_that_never_serve_make_it_give_up() -> None:
    """Workers that die before serving are started max_startup_failures times each,
    then the supervisor exits 1 instead of restarting them forever."""
    stand_ins = StandIns(lambda index, attempt: DIES_AT_ONCE)
    code = Supervisor(SETTINGS, command=stand_ins, policy=FAST).run()
    assert code == 1
    assert stand_ins.starts.count(0) == FAST.max_startup_failures or (
        stand_ins.starts.count(1) == FAST.max_startup_failures
    )


def run_until_worker_0_is_replaced(first_run: str) -> tuple[Supervisor, StandIns]:
    """Worker 0's first start runs ``first_run``, every other start serves; a stop is
    requested once worker 0 was started again and both serve. Checks the exit code
    and the starts."""
    stand_ins = StandIns(lambda index, attempt: first_run if (index, attempt) == (0, 0) else SERVES)
    supervisor = Supervisor(SETTINGS, command=stand_ins, policy=FAST)

    def replaced_and_serving() -> bool:
        return stand_ins.starts.count(0) == 2 and all(
            w.ready and w.proc is not None for w in supervisor.workers
        )

    stop_when(supervisor, replaced_and_serving)
    assert supervisor.run() == 0
    assert sorted(stand_ins.starts) == [0, 0, 1]
    return supervisor, stand_ins


def test_a_worker_that_dies_after_serving_is_restarted_and_all_stop_cleanly() -> None:
    """Worker 0's first run serves and then exits 1: it is started again, and a stop
    request ends both workers with exit code 0."""
    supervisor, _ = run_until_worker_0_is_replaced(SERVES_THEN_DIES)
    assert [w.stopped_code for w in supervisor.workers] == [0, 0]


def test_a_worker_that_ignores_sigterm_is_killed_after_grace_and_margin() -> None:
    """A worker still alive grace + margin after SIGTERM is SIGKILLed, and the
    supervisor's exit code says the stop was not clean."""
    stand_ins = StandIns(lambda index, attempt: IGNORES_SIGTERM if index == 1 else SERVES)
    supervisor = Supervisor(SETTINGS, command=stand_ins, policy=FAST)
    stop_when(
        supervisor,
        lambda: len(supervisor.workers) == 2 and all(w.ready for w in supervisor.workers),
    )
    assert supervisor.run() == 1
    assert [w.stopped_code for w in supervisor.workers] == [0, -9]


@pytest.mark.parametrize(
    "reuse_port", [False, True], ids=["another-program", "another-seat-inventory"]
)
def test_a_port_taken_by_another_program_is_reported_before_any_worker_starts(
    reuse_port: bool,
) -> None:
    """The supervisor checks the port itself: taken by a listener, it exits 1 and
    starts nothing; also when that listener set SO_REUSEPORT, as another
    seat-inventory deployment's does (which would otherwise share the port, the
    kernel splitting the callers between the two)."""
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = Settings(
            port=taken.getsockname()[1],
            workers=2,
            redis_url="redis://r/0",
            database_url="postgresql://p/d",
        )
        stand_ins = StandIns(lambda index, attempt: SERVES)
        assert Supervisor(settings, command=stand_ins, policy=FAST).run() == 1
        assert stand_ins.starts == []


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_host_is_reserved_written_either_way(host: str) -> None:
    """--host ::1 or [::1]: the port is reserved on the IPv6 loopback."""
    sock = _reserve_port(host, 0)
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[0] == "::1"
    finally:
        sock.close()


SERVES_THEN_TAKES_SIG40 = """
import os, signal, sys, time
os.write(int(sys.argv[1]), b"1")
time.sleep(0.2)
signal.signal(40, signal.SIG_DFL)
os.kill(os.getpid(), 40)
time.sleep(5)
"""


def test_a_worker_killed_by_a_signal_without_a_name_is_restarted() -> None:
    """Real-time signals (SIG34..SIG64) have no name in Python: a worker killed by one
    is logged as SIG40 and replaced, instead of the name lookup ending the supervisor
    (and with it every worker)."""
    assert (_signal_name(signal.SIGKILL), _signal_name(40)) == ("SIGKILL", "SIG40")
    run_until_worker_0_is_replaced(SERVES_THEN_TAKES_SIG40)


def test_each_worker_gets_the_shared_port_and_settings_survive_the_pipe() -> None:
    """Workers get the port the supervisor chose (and, when metrics are served, a free
    loopback metrics port: the supervisor serves the one asked for); settings (nested
    limits too) travel by field name, and fields a newer or older version does not
    know are skipped."""
    public = dataclasses.replace(SETTINGS, metrics_port=9100, metrics_host="0.0.0.0")
    chosen = worker_settings(public, 1, 45678)
    assert chosen.port == 45678
    assert (chosen.metrics_port, chosen.metrics_host) == (0, "127.0.0.1")
    assert worker_settings(SETTINGS, 1, 45678).metrics_port is None
    assert decode_settings(encode_settings(chosen)) == chosen
    values = pickle.loads(encode_settings(chosen))  # noqa: S301 - our own bytes
    values["field_from_another_version"] = 1
    del values["grace_s"]
    decoded = decode_settings(pickle.dumps(values))
    assert decoded.grace_s == Settings().grace_s
    assert decoded.limits == chosen.limits


@pytest.mark.parametrize(
    ("redis_url", "database_url", "refused"),
    [
        (None, None, True),
        ("redis://r/0", None, True),  # SQLite's fence is one process's lock
        ("redis://r/0", "sqlite:///x.db", True),
        ("redis://r/0", "postgresql://p/d", False),
    ],
)
def test_several_workers_need_redis_and_postgresql(
    redis_url: str | None, database_url: str | None, refused: bool
) -> None:
    """--workers > 1 is refused unless Redis and PostgreSQL are configured."""
    settings = Settings(workers=2, redis_url=redis_url, database_url=database_url)
    assert (refusal(settings) is not None) is refused
    assert refusal(Settings(workers=1)) is None


def test_the_supervisors_copy_of_the_principals_is_the_last_good_file_json_too(
    tmp_path: Path,
) -> None:
    """The copy a restarted worker falls back on is loadable in the file's own format
    (a .json file's copy had been read as TOML), keeps the last good content when an
    edit is refused, takes the next good one, and is removed at the end."""
    from seat_inventory.api.auth import hash_token, load_principals
    from seat_inventory.supervisor import _AcceptedPrincipals

    def principals(name: str) -> str:
        token_hash = hash_token("token-of-" + name + "-0123456789")
        return (
            f'{{"principals": [{{"name": "{name}", "roles": ["client"], '
            f'"tokens": ["{token_hash}"]}}]}}'
        )

    source = tmp_path / "principals.json"
    source.write_text(principals("first"))
    copy = _AcceptedPrincipals(str(source))
    assert copy.path is not None
    assert load_principals(copy.path).authenticate("token-of-first-0123456789").name == "first"
    source.write_text('{"principals": [')  # a bad edit: refused, the copy stays
    copy.accept_if_good()
    assert load_principals(copy.path).authenticate("token-of-first-0123456789").name == "first"
    source.write_text(principals("second"))
    copy.accept_if_good()
    assert load_principals(copy.path).authenticate("token-of-second-0123456789").name == "second"
    copy.close()
    assert not Path(copy.path).parent.exists()


def test_a_port_with_connections_left_in_time_wait_is_taken_again() -> None:
    """A server just stopped leaves its closed connections in TIME_WAIT on the port:
    a supervisor started at once reserves it all the same (only a live listener
    refuses it)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: TIME_WAIT is on its port
    time.sleep(0.1)
    client.close()
    server.close()
    _reserve_port("127.0.0.1", port).close()
