"""``seat-inventory serve`` as a real child process that a test may crash, kill
and restart, and a ``Ledger``: direct reads of what the servers left in SQL
and Redis, bypassing the service, to check its answers against.

Only processes started here are ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seat_inventory.adapters.redis import connect_redis
from seat_inventory.adapters.redis.keys import EventKeys
from tests.support.services import free_port

__all__ = ["Ledger", "ServerProcess"]

SERVING = health_pb2.HealthCheckResponse.SERVING


def _serve_command() -> list[str]:
    script = Path(sys.executable).with_name("seat-inventory")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "seat_inventory", "serve"]  # not installed as a script


class ServerProcess:
    """One server as a child process; ``start`` may be called again after it exited.

    Each run's stdout and stderr go to their own file, so a failure message can
    show what every run (the crashed one too) logged.
    """

    def __init__(
        self,
        *,
        redis_url: str,
        database_url: str,
        port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.redis_url = redis_url
        self.database_url = database_url
        self.port = port or free_port()
        self.args = tuple(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="seatinv-server-"))
        self._logs: list[Path] = []
        self._log: IO[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [
            *_serve_command(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--redis-url",
            self.redis_url,
            "--database-url",
            self.database_url,
            *self.args,
        ]

    def spawn(self, *, failpoints: str = "") -> None:
        """Start the process without waiting for it to serve."""
        if self.running:
            raise RuntimeError(f"server on {self.target} is already running")
        # Only what this test sets: no SEAT_INVENTORY_* leaking in from the shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEAT_INVENTORY_")}
        env["SEAT_INVENTORY_FAILPOINTS"] = failpoints
        env["PYTHONUNBUFFERED"] = "1"
        self._close_log()
        path = self._dir / f"run-{len(self._logs) + 1}{'-' + failpoints if failpoints else ''}.log"
        self._logs.append(path)
        self._log = path.open("wb")
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    async def start(self, *, failpoints: str = "", timeout_s: float = 30.0) -> ServerProcess:
        """Start the process and wait until it serves."""
        self.spawn(failpoints=failpoints)
        await self.wait_serving(timeout_s)
        return self

    async def wait_serving(self, timeout_s: float = 30.0) -> None:
        """Until the port accepts and grpc.health.v1 says SERVING; fails fast if it exits."""
        deadline = time.monotonic() + timeout_s
        while not await self._accepts():
            self._check_alive("while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.target} never accepted\n{self.logs()}")
            await asyncio.sleep(0.02)
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive("before it served")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == SERVING:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.target} never reported SERVING\n{self.logs()}")
                await asyncio.sleep(0.02)

    async def _accepts(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), timeout=0.5
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _check_alive(self, when: str) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"server exited {when} (exit code {code})\n{self.logs()}")

    async def wait_logged(self, text: str, timeout_s: float = 15.0) -> None:
        """Until ``text`` appears in what the server has logged."""
        async with asyncio.timeout(timeout_s):
            while True:
                if text in self.logs(tail_lines=100_000):
                    return
                await asyncio.sleep(0.05)

    async def wait_exit(self, timeout_s: float = 10.0) -> int:
        """The exit code, once the process has exited by itself."""
        assert self.proc is not None, "never started"
        deadline = time.monotonic() + timeout_s
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server still running after {timeout_s}s\n{self.logs()}")
            await asyncio.sleep(0.01)
        self._close_log()
        return code

    async def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait_exit(timeout_s)
            except TimeoutError:
                self.kill()
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self, tail_lines: int = 60) -> str:
        """The last lines each run logged, run by run."""
        parts = []
        for path in self._logs:
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            parts.append(f"--- {path.name} ---")
            parts.extend(lines[-tail_lines:])
        return "\n".join(parts)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


class Ledger:
    """What SQL (the system of record) and Redis really hold, read directly."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            return list(await conn.fetch(query, *args, timeout=10))
        finally:
            await conn.close()

    async def booking_of_hold(self, hold_id: str) -> asyncpg.Record | None:
        rows = await self._fetch("SELECT * FROM bookings WHERE hold_id = $1", hold_id)
        return rows[0] if rows else None

    async def bookings(self, event_id: str) -> list[asyncpg.Record]:
        return await self._fetch("SELECT * FROM bookings WHERE event_id = $1", event_id)

    async def booked_seats(self, event_id: str) -> dict[str, str]:
        """Seat → booking id of every seat an active booking holds."""
        rows = await self._fetch(
            "SELECT seat_id, booking_id FROM booked_seats WHERE event_id = $1", event_id
        )
        return {r["seat_id"]: r["booking_id"] for r in rows}

    async def given_up(self, hold_id: str) -> bool:
        rows = await self._fetch("SELECT 1 FROM given_up_holds WHERE hold_id = $1", hold_id)
        return bool(rows)

    async def _redis(self, command: str, *args: str) -> Any:
        client = connect_redis(self.redis_url)  # also a redis+cluster:// URL
        try:
            return await client.execute_command(command, *args)
        finally:
            await client.aclose()

    async def hold_state(self, event_id: str, hold_id: str) -> str | None:
        """The hold hash's state in Redis ("held", "confirming", ...), None when gone."""
        state: str | None = await self._redis("HGET", EventKeys(event_id).hold(hold_id), "state")
        return state

    async def seat_key(self, event_id: str, seat_id: str) -> str | None:
        value: str | None = await self._redis("GET", EventKeys(event_id).seat(seat_id))
        return value

    async def sold(self, event_id: str) -> set[str]:
        return set(await self._redis("SMEMBERS", EventKeys(event_id).sold))

    async def assert_no_double_sale(self) -> None:
        """No seat of any event has two active bookings, by either account SQL keeps."""
        twice = await self._fetch(
            "SELECT event_id, seat_id, count(*) FROM booked_seats GROUP BY 1, 2 HAVING count(*) > 1"
        )
        assert twice == [], f"seats with two booked_seats rows: {twice}"
        confirmed = await self._fetch(
            "SELECT booking_id, event_id, seat_ids FROM bookings WHERE status = 1"
        )
        per_seat = Counter(
            (row["event_id"], seat) for row in confirmed for seat in row["seat_ids"].split(",")
        )
        overlapping = sorted(key for key, n in per_seat.items() if n > 1)
        assert overlapping == [], f"seats in two CONFIRMED bookings: {overlapping}"
        # and the two accounts agree: a confirmed booking holds exactly its seats,
        # a cancelled one holds none
        rows = await self._fetch(
            "SELECT b.booking_id, b.status, b.seat_ids, "
            "array_remove(array_agg(s.seat_id), NULL) AS held "
            "FROM bookings b LEFT JOIN booked_seats s ON s.booking_id = b.booking_id "
            "GROUP BY b.booking_id"
        )
        for row in rows:
            expected = set(row["seat_ids"].split(",")) if row["status"] == 1 else set()
            assert set(row["held"]) == expected, f"booking and booked_seats disagree: {row}"
