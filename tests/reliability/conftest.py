"""Servers the fault tests may crash or cut off from their backends, a client
that speaks to any of them through the generated stubs, and the plugin that
prints the reliability report (``tests/reliability/report.py``) at the end of
a run in which any reliability test ran."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import PurePath
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seatinventory.v1 import (
    inventory_admin_pb2,
    inventory_admin_pb2_grpc,
    seat_inventory_pb2,
    seat_inventory_pb2_grpc,
    types_pb2,
)

from seat_inventory.config import Settings
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import create_event, ttl
from tests.reliability.report import REPORT
from tests.support.server_process import Ledger, ServerProcess
from tests.support.services import RedisProcess, redis_process

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclasses.dataclass
class Client:
    """The generated stubs on one channel, with the calls these tests make."""

    channel: grpc.aio.Channel
    inventory: seat_inventory_pb2_grpc.SeatInventoryAsyncStub
    admin: inventory_admin_pb2_grpc.InventoryAdminAsyncStub
    health: health_pb2_grpc.HealthStub

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Client:
        return cls(
            channel,
            seat_inventory_pb2_grpc.SeatInventoryStub(channel),
            inventory_admin_pb2_grpc.InventoryAdminStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )

    async def create_event(self, n: int) -> str:
        return await create_event(self.admin, n=n)

    async def reserve(
        self, event_id: str, seats: list[str], holder: str = "alice", ttl_s: float = 60
    ) -> types_pb2.Hold:
        reply = await self.inventory.Reserve(
            seat_inventory_pb2.ReserveRequest(
                event_id=event_id, seat_ids=seats, holder_id=holder, ttl=ttl(ttl_s)
            ),
            timeout=10,
        )
        return reply.hold

    async def confirm(
        self, hold_id: str, holder: str = "alice", timeout_s: float = 10
    ) -> types_pb2.Booking:
        reply = await self.inventory.Confirm(
            seat_inventory_pb2.ConfirmRequest(
                hold_id=hold_id, holder_id=holder, order_ref="order-1", request_id="pay-1"
            ),
            timeout=timeout_s,
        )
        return reply.booking

    async def release(self, hold_id: str, holder: str = "alice") -> bool:
        reply = await self.inventory.Release(
            seat_inventory_pb2.ReleaseRequest(hold_id=hold_id, holder_id=holder), timeout=10
        )
        return reply.released

    async def cancel(self, booking_id: str) -> types_pb2.Booking:
        reply = await self.admin.CancelBooking(
            inventory_admin_pb2.CancelBookingRequest(booking_id=booking_id), timeout=10
        )
        return reply.booking

    async def statuses(self, event_id: str) -> dict[str, int]:
        reply = await self.inventory.GetAvailability(
            seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=10
        )
        return {s.seat_id: s.status for s in reply.seats}

    async def health_status(self) -> int:
        reply = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)

    async def wait_health(self, status: int, timeout_s: float = 15.0) -> float:
        """Poll grpc.health.v1 until it reports ``status``; returns the seconds it took."""
        started = time.monotonic()
        while (now := await self.health_status()) != status:
            assert time.monotonic() - started < timeout_s, (
                f"health still {health_pb2.HealthCheckResponse.ServingStatus.Name(now)} "
                f"after {timeout_s}s"
            )
            await asyncio.sleep(0.05)
        return time.monotonic() - started


@asynccontextmanager
async def connect(target: str) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(target) as channel:
        yield Client.on(channel)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0) -> float:
    """Poll ``check`` until it is true; returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout_s, f"{what}: not after {timeout_s}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
async def ledger(postgres_url: str, redis_url: str) -> AsyncIterator[Ledger]:
    """Direct reads of the test database and the session's Redis; afterwards
    no seat may have been sold twice."""
    ledger = Ledger(postgres_url, redis_url)
    yield ledger
    await ledger.assert_no_double_sale()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server for this test alone, which it may kill and restart."""
    with redis_process() as server:
        yield server


@pytest.fixture
async def spawn_server(
    redis_url: str, postgres_url: str
) -> AsyncIterator[Callable[..., ServerProcess]]:
    """Makes ``seat-inventory serve`` child processes (not yet started) with a
    1 s confirm window and a 0.1 s sweep; all are stopped afterwards."""
    made: list[ServerProcess] = []

    def make(**kwargs: Any) -> ServerProcess:
        server = ServerProcess(
            redis_url=kwargs.pop("redis_url", redis_url),
            database_url=kwargs.pop("database_url", postgres_url),
            args=("--confirm-window", "1", "--sweep-interval", "0.1", "--grace", "1"),
            **kwargs,
        )
        made.append(server)
        return server

    yield make
    for server in made:
        await server.stop(timeout_s=5)
        server.cleanup()


@pytest.fixture
async def serve_in_process(
    redis_url: str, postgres_url: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[Running, Client]]]]:
    """Starts in-process servers (Settings overridable per call), stopped afterwards."""
    started: list[Running] = []

    async def start(**overrides: Any) -> tuple[Running, Client]:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            redis_url=overrides.pop("redis_url", redis_url),
            database_url=overrides.pop("database_url", postgres_url),
            health_interval_s=0.1,
            **overrides,
        )
        running = await start_server(settings)
        started.append(running)
        return running, Client.on(running.channel)

    yield start
    for running in started:
        await stop_running(running)  # a shutdown that hangs fails with every task's stack


# --- the reliability report ------------------------------------------------


@pytest.fixture(autouse=True)
def _report_column(request: pytest.FixtureRequest) -> Iterator[None]:
    """Counts a reliability test adds go to its module's column; so does its time."""
    REPORT.current = request.module.__name__.rsplit(".", 1)[-1]
    started = time.monotonic()
    yield
    REPORT.seconds[REPORT.current] += time.monotonic() - started


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "reliability" not in report.keywords:
        return
    column = PurePath(report.nodeid.split("::", 1)[0]).stem
    ran = report.when == "call" or (report.when == "setup" and report.failed)
    if ran:
        REPORT.counts["tests run"][column] += 1
        REPORT.counts["tests failed"][column] += int(report.failed)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.ran:
        return
    terminalreporter.write_sep("=", "reliability report")
    for line in REPORT.table():
        terminalreporter.write_line(line)
