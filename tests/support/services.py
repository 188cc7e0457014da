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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.asyncio

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

    def __init__(self, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "install Redis (Debian: apt-get install redis-server)")
        self.binary = str(binary)
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="seatinv-redis-")
        self.extra_args = list(extra_args)  # after the defaults: they win
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
                *self.extra_args,
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


def _free_port_with_bus() -> int:
    """A free port whose port + 10000 (a cluster node's bus port) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisCluster:
    """A Redis Cluster of three masters (no replicas) this test run owns, on free
    ports in a temporary directory; ``url`` (``redis+cluster://``) points the
    service at it. Slots are split evenly, as ``redis-cli --cluster create`` would,
    but set up directly (no one-second waits)."""

    def __init__(self, masters: int = 3) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "install Redis (Debian: apt-get install redis-server)")
        self.binary = str(binary)
        # Each node's cluster bus listens on its port + 10000 (Redis 6 and 7 alike).
        self.ports: list[int] = []
        while len(self.ports) < masters:
            port = _free_port_with_bus()
            if all(abs(port - other) not in (0, 10000) for other in self.ports):
                self.ports.append(port)
        self.dir = Path(tempfile.mkdtemp(prefix="seatinv-cluster-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The service's URL: any one node; the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def client(self) -> redis.asyncio.RedisCluster:
        """An async cluster client for tests (e.g. FLUSHALL on every master)."""
        return redis.asyncio.RedisCluster(
            host="127.0.0.1", port=self.ports[0], decode_responses=True
        )

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)

    def _start_node(self, index: int) -> None:
        port, node_dir = self.ports[index], self.dir / f"node-{index}"
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every node reports cluster_state:ok and knows every master."""
        deadline = time.monotonic() + timeout
        while True:
            ready = 0
            for port in self.ports:
                with self._node(port) as node:
                    try:
                        info = node.cluster("info")
                    except redis.RedisError:
                        continue
                known = int(info.get("cluster_known_nodes", 0))
                ready += info.get("cluster_state") == "ok" and known == len(self.ports)
            if ready == len(self.ports):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Redis Cluster on {self.ports} is not ok after {timeout}s")
            time.sleep(0.05)

    def start(self) -> RedisCluster:
        for index in range(len(self.ports)):
            self._start_node(index)
        for port in self.ports:
            wait_for_port(port)
        slots, n = 16384, len(self.ports)
        for index, port in enumerate(self.ports):
            with self._node(port) as node:
                node.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
                first, last = index * slots // n, (index + 1) * slots // n
                node.execute_command("CLUSTER ADDSLOTS", *range(first, last))
        with self._node(self.ports[0]) as first_node:
            for port in self.ports[1:]:
                first_node.execute_command("CLUSTER MEET", "127.0.0.1", port)
        self.wait_ok()
        return self

    def node_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s hash slot."""
        with self._node(self.ports[0]) as node:
            slot = int(node.execute_command("CLUSTER KEYSLOT", key))
            for first, last, master, *_ in node.execute_command("CLUSTER SLOTS"):
                if first <= slot <= last:
                    return int(master[1])
        raise LookupError(f"no master serves slot {slot} of {key!r}")

    def kill(self, port: int) -> None:
        """SIGKILL the master on ``port``; its data is lost, its nodes.conf is not."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def start_node(self, port: int) -> None:
        """Start a killed master again, empty; it keeps its slots. Returns once the
        cluster is ok again (a restarted master waits ~2 s before it serves)."""
        self._start_node(self.ports.index(port))
        wait_for_port(port)
        self.wait_ok()

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    """A three-master Redis Cluster for this test session, torn down afterwards."""
    cluster = RedisCluster()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()
