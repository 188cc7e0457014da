"""Throw-away Redis servers and PostgreSQL databases for tests.

Tests never touch the machine's shared data: each run gets its own
redis-server on a free port and its own freshly created database, and fault
tests stop, pause or kill only the processes started here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get(
    "SEAT_INVENTORY_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def missing(what: str, how: str) -> None:
    """A test needs a real service that is not there: fail under CI, skip elsewhere."""
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RedisProcess:
    """A redis-server this test run owns: it may stop, pause or kill it."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "install Redis (Debian: apt-get install redis-server)")
        self.binary = str(binary)
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="seatinv-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_process() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.cleanup()


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_run(sql: str) -> None:
    asyncio.run(asyncio.wait_for(_pg_admin(sql), timeout=10))


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the local PostgreSQL server, dropped afterwards."""
    name = "seatinv_test_" + uuid.uuid4().hex[:12]
    try:
        _pg_run(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError) as exc:
        missing(
            "PostgreSQL",
            f"cannot reach {PG_ADMIN_URL} ({exc}); start it or set "
            "SEAT_INVENTORY_TEST_PG_ADMIN_URL",
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # bad auth, no role, ...
        missing("PostgreSQL", f"cannot create a database through {PG_ADMIN_URL}: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _pg_run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def temp_sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'seatinv.db'}"
