"""``serve --workers N``: N server processes on one port, under one supervisor.

Each worker is a fresh interpreter (``python -m seat_inventory.supervisor``)
that reads its Settings from stdin, binds the shared port with SO_REUSEPORT
(the kernel spreads new connections over the workers) and serves exactly like
a single-process ``serve``. The supervisor holds no event loop and no backend
connection; it only starts workers, restarts one that dies (with backoff),
gives up when a worker cannot even start (backends unreachable, bad
settings), and on SIGTERM/SIGINT asks every worker to drain and waits for it.
With ``--metrics-port`` it also serves the workers' metrics as one endpoint
(``metrics_relay``, on a thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import structlog

from .config import Settings
from .metrics_relay import MetricsRelay, Target

__all__ = ["Policy", "Supervisor", "refusal", "supervise"]

log = structlog.get_logger("seat_inventory.supervisor")

POLL_S = 0.1


@dataclass(frozen=True)
class Policy:
    # A worker that dies this many times in a row before it ever served makes the
    # supervisor give up (exit 1, for systemd or the container runtime to act
    # on): restarting cannot fix a database that refuses connections or a bad
    # flag. A worker that has served once is restarted for as long as it takes.
    max_startup_failures: int = 3
    # A run this long counts as healthy: the restart backoff starts over.
    stable_run_s: float = 30.0
    backoff_first_s: float = 0.5
    backoff_max_s: float = 10.0
    # On top of the grace: workers close their backends after draining.
    stop_margin_s: float = 5.0


def refusal(settings: Settings) -> str | None:
    """Why these settings cannot run several workers, or None when they can."""
    if settings.workers <= 1:
        return None
    if settings.embedded or settings.effective_database_url.startswith("sqlite"):
        return (
            "--workers needs --redis-url and a PostgreSQL --database-url; the embedded "
            "default (in-process fakeredis, SQLite) is one process"
        )
    return None


def worker_settings(
    settings: Settings, index: int, port: int, principals_copy: str | None = None
) -> Settings:
    """What worker ``index`` runs with: the shared port, the supervisor's copy of the
    last principals file it accepted and, when metrics are on, a loopback metrics
    port of its own choosing (the supervisor serves the one asked for, merging
    the workers')."""
    changes: dict[str, object] = {"port": port, "principals_fallback_file": principals_copy}
    if settings.metrics_port is not None:
        changes.update(metrics_port=0, metrics_host="127.0.0.1")
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def encode_settings(settings: Settings) -> bytes:
    """Settings by field name, nested dataclasses (Limits) as dicts: a worker started
    after the package was upgraded in place still reads what it understands."""
    values = {
        f.name: dataclasses.asdict(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type)
        else value
        for f in dataclasses.fields(settings)
        for value in [getattr(settings, f.name)]
    }
    return pickle.dumps(values)


def decode_settings(data: bytes) -> Settings:
    values: dict[str, object] = pickle.loads(data)  # noqa: S301 - written by our own parent
    defaults = Settings()
    known: dict[str, object] = {}
    for f in dataclasses.fields(defaults):
        if f.name not in values:
            continue
        value, default = values[f.name], getattr(defaults, f.name)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = dataclasses.replace(default, **value)  # type: ignore[type-var]
        known[f.name] = value
    return dataclasses.replace(defaults, **known)  # type: ignore[arg-type]


def _reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT: it fails fast
    when another program owns the port, turns port 0 into one the workers share,
    and keeps that port from being taken while a worker restarts.

    First the port is bound without SO_REUSEPORT: that fails while anything holds
    it, another seat-inventory supervisor and its workers too (they bind with
    SO_REUSEPORT, which would let a second deployment share the port and the
    kernel split the callers between the two)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.removeprefix("[").removesuffix("]") or None,
        port,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )[0]
    # SO_REUSEADDR on both: connections of a server just stopped, left in
    # TIME_WAIT on the port, must not keep it from starting again (a live
    # listener still refuses the check's bind).
    if port:
        with socket.socket(family, kind, proto) as alone:
            alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            alone.bind(address)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _signal_name(number: int) -> str:
    """SIGKILL, SIGTERM...; real-time signals have no name in Python: SIG40."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


class _AcceptedPrincipals:
    """A private copy of the last principals file that could be used (checked at
    start and at every SIGHUP): a worker restarted while the file is refused (a
    bad edit, reloads refused it too) serves with these instead of failing to
    start, and the slot staying empty, or the whole service giving up."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.path: str | None = None
        if source is not None:
            folder = tempfile.mkdtemp(prefix="seat-inventory-principals-")
            # The same suffix: it tells TOML from JSON.
            self.path = os.path.join(folder, "accepted" + Path(source).suffix)
            self.accept_if_good()

    def accept_if_good(self) -> None:
        if self.source is None or self.path is None:
            return
        from .api.auth import PrincipalsError, load_principals

        # The copy itself is checked (not the file read a second time): what a
        # worker would load is what was accepted.
        root, suffix = os.path.splitext(self.path)
        staging = f"{root}.new{suffix}"
        try:
            data = Path(self.source).read_bytes()
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            load_principals(staging)
        except (OSError, PrincipalsError) as exc:
            log.warning(
                "principals file refused; restarted workers use the last one accepted",
                error=str(exc).replace(staging, self.source),
            )
            return
        os.replace(staging, self.path)

    def close(self) -> None:
        if self.path is not None:
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    ever_served: bool = False
    started_at: float = 0.0
    restart_at: float | None = None  # when a dead worker is due to start again
    deaths: int = 0  # in a row, without a stable run: drives the backoff
    startup_failures: int = 0  # in a row, without ever serving: drives giving up
    stopped_code: int | None = None
    starts: int = 0
    metrics_port: int | None = None  # its own /metrics, once it serves (loopback)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def close_ready_fd(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None


def _worker_command(index: int, ready_fd: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "seat_inventory.supervisor",
        "--worker",
        str(index),
        "--ready-fd",
        str(ready_fd),
        "--parent",
        str(os.getpid()),
    ]


@dataclass
class Supervisor:
    settings: Settings
    command: Callable[[int, int], list[str]] = _worker_command
    policy: Policy = field(default_factory=Policy)
    workers: list[_Worker] = field(default_factory=list)
    port: int = 0
    _stop_signal: int | None = field(default=None, init=False)
    _stopping: list[_Worker] = field(default_factory=list, init=False)
    _reload_requested: bool = field(default=False, init=False)
    _principals: _AcceptedPrincipals = field(init=False)
    relay: MetricsRelay | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._principals = _AcceptedPrincipals(self.settings.principals_file)

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self._principals.close()

    def _run(self) -> int:
        try:
            reservation = _reserve_port(self.settings.host, self.settings.port)
        except OSError as exc:
            log.error("cannot listen", address=self.settings.address, error=str(exc))  # noqa: TRY400 - expected, no traceback
            return 1
        if self.settings.metrics_port is not None:
            host, port = self.settings.metrics_host, self.settings.metrics_port
            try:
                self.relay = MetricsRelay(host, port, self.metrics_targets)
            except OSError as exc:
                reservation.close()
                log.error("cannot serve metrics", address=f"{host}:{port}", error=str(exc))  # noqa: TRY400 - expected, no traceback
                return 1
            self.relay.start()
            log.info("serving metrics", address=f"{host}:{self.relay.port}")
        with reservation:
            self.port = int(reservation.getsockname()[1])
            previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
            }
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_reload)
            try:
                return self._supervise()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                for worker in self.workers:
                    worker.close_ready_fd()
                if self.relay is not None:
                    self.relay.stop()

    def metrics_targets(self) -> list[Target]:
        """For the metrics relay (its own thread): each worker's metrics port
        while it serves, and its restarts."""
        return [
            (str(w.index), w.metrics_port if w.ready else None, max(0, w.starts - 1))
            for w in list(self.workers)
        ]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signum)

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: every live worker is to reload its principals file (passed on
        from the supervising loop, not from inside the signal handler)."""
        self._reload_requested = True

    def _pass_reload_on(self) -> None:
        self._reload_requested = False
        self._principals.accept_if_good()
        pids = []
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGHUP)
                    pids.append(worker.proc.pid)
        log.info("reload passed on to the workers", pids=pids)

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """What SIGTERM/SIGINT do: drain and stop every worker, then return. Once
        the workers are stopping, a signal is passed on to them (a second one ends
        their drain delay early)."""
        self._stop_signal = signum
        for worker in self._stopping:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)

    def _supervise(self) -> int:
        log.info(
            "supervisor starting workers",
            workers=self.settings.workers,
            address=f"{self.settings.host}:{self.port}",
            supervisor_pid=os.getpid(),
        )
        self.workers = [_Worker(i) for i in range(self.settings.workers)]
        for worker in self.workers:
            self._start(worker)
        announced = False
        gave_up: _Worker | None = None
        while self._stop_signal is None and gave_up is None:
            time.sleep(POLL_S)
            if self._reload_requested:
                self._pass_reload_on()
            now = time.monotonic()
            for worker in self.workers:
                self._check_ready(worker)
                if worker.proc is not None:
                    if worker.proc.poll() is not None and self._on_death(worker, now):
                        gave_up = worker
                        break
                elif worker.restart_at is not None and now >= worker.restart_at:
                    self._start(worker)
            if not announced and all(w.ready for w in self.workers):
                announced = True
                log.info(
                    "all workers serving",
                    address=f"{self.settings.host}:{self.port}",
                    pids=[w.pid for w in self.workers],
                )
        if gave_up is not None:
            log.error(
                "worker cannot start; giving up and stopping the others",
                worker=gave_up.index,
                attempts=gave_up.startup_failures,
            )
        else:
            assert self._stop_signal is not None
            log.info(
                "stopping workers",
                signal=signal.Signals(self._stop_signal).name,
                grace_s=self.settings.grace_s,
                drain_delay_s=self.settings.drain_delay_s,
            )
        clean = self._stop_all()
        log.info("supervisor stopped", clean=clean)
        return 1 if gave_up is not None or not clean else 0

    def _start(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        # SIGHUP blocked across the spawn: the worker starts with it blocked (the
        # mask survives fork and exec) and unblocks it once its handler is in
        # place (EarlyHangup), so a reload sent while it starts waits instead of
        # ending it. In the supervisor it waits the moment Popen takes. (No
        # preexec_fn: it is unsafe beside the metrics relay's threads.)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc = subprocess.Popen(
                self.command(worker.index, write_fd),
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except OSError as exc:
            os.close(read_fd)
            log.error("cannot start worker", worker=worker.index, error=str(exc))  # noqa: TRY400 - expected, no traceback
            self._schedule_restart(worker, time.monotonic())
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(write_fd)
        worker.starts += 1
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: found by poll()
            proc.stdin.write(
                encode_settings(
                    worker_settings(self.settings, worker.index, self.port, self._principals.path)
                )
            )
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        os.set_blocking(read_fd, False)
        worker.close_ready_fd()
        worker.proc, worker.ready_fd, worker.ready = proc, read_fd, False
        worker.started_at, worker.restart_at = time.monotonic(), None
        log.info("worker started", worker=worker.index, pid=proc.pid, port=self.port)

    def _check_ready(self, worker: _Worker) -> None:
        """A worker writes ``1`` to its ready pipe once it serves, then its metrics
        port when it serves metrics (one write: the pipe delivers it whole)."""
        if worker.ready or worker.ready_fd is None:
            return
        try:
            data = os.read(worker.ready_fd, 64)
        except BlockingIOError:
            return
        if data:
            fields = data.split()
            if len(fields) > 1 and fields[1].isdigit():
                worker.metrics_port = int(fields[1])
            worker.ready = worker.ever_served = True
            worker.startup_failures = 0
            log.info("worker serving", worker=worker.index, pid=worker.pid)
        worker.close_ready_fd()  # served, or closed its end without serving (dying)

    def _on_death(self, worker: _Worker, now: float) -> bool:
        """Log a dead worker and schedule its restart; True means give up."""
        assert worker.proc is not None
        self._check_ready(worker)
        code = worker.proc.returncode
        ran_s = now - worker.started_at
        if not worker.ready:
            worker.startup_failures += 1
        if ran_s >= self.policy.stable_run_s:
            worker.deaths = 0
        log.error(
            "worker died",
            worker=worker.index,
            pid=worker.proc.pid,
            exit_code=code,
            signal=_signal_name(-code) if code < 0 else None,
            ran_s=round(ran_s, 1),
            served=worker.ready,
        )
        worker.proc = None
        worker.metrics_port = None
        worker.close_ready_fd()
        limit = self.policy.max_startup_failures
        if not worker.ever_served and worker.startup_failures >= limit:
            return True
        self._schedule_restart(worker, now)
        return False

    def _schedule_restart(self, worker: _Worker, now: float) -> None:
        delay = min(self.policy.backoff_max_s, self.policy.backoff_first_s * 2**worker.deaths)
        worker.deaths += 1
        worker.restart_at = now + delay
        log.info("worker restarts soon", worker=worker.index, in_s=delay)

    def _stop_all(self) -> bool:
        """SIGTERM every live worker (each drains within the grace), SIGKILL the ones
        still alive after grace + margin. True when every worker ended cleanly."""
        live = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for worker in live:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        self._stopping = live
        settings = self.settings
        deadline = (
            time.monotonic() + settings.drain_delay_s + settings.grace_s + self.policy.stop_margin_s
        )
        clean = True
        for worker in live:
            assert worker.proc is not None
            try:
                code = worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", worker=worker.index)  # noqa: TRY400 - expected, no traceback
                worker.proc.kill()
                code = worker.proc.wait()
                clean = False
            # Stopped by a signal before it had set up its drain (Ctrl-C reaches the
            # whole process group: KeyboardInterrupt, 130): nothing was in flight.
            if code not in (0, 130, -signal.SIGTERM, -signal.SIGINT):
                clean = False
            log.info("worker stopped", worker=worker.index, pid=worker.proc.pid, exit_code=code)
            worker.stopped_code = code
        return clean


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; the exit code."""
    return Supervisor(settings).run()


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this worker (a graceful drain) when the supervisor dies, so a
    SIGKILLed supervisor leaves no orphans serving on."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main(argv: Sequence[str] | None = None) -> int:
    """One worker: Settings from stdin, serve until SIGTERM, report readiness on a pipe."""
    import argparse
    import asyncio

    from .cli import _run_server as run_server
    from .logging import configure_logging

    parser = argparse.ArgumentParser(prog="seat-inventory worker")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    settings = decode_settings(sys.stdin.buffer.read())
    _die_with_parent(args.parent)
    configure_logging(settings.log_format, settings.log_level)
    structlog.contextvars.bind_contextvars(worker=args.worker)

    def serving(port: int, metrics_port: int | None) -> None:
        with contextlib.suppress(OSError):
            os.write(args.ready_fd, b"1" if metrics_port is None else f"1 {metrics_port}".encode())
        os.close(args.ready_fd)

    try:
        return asyncio.run(run_server(settings, on_serving=serving))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(worker_main())
