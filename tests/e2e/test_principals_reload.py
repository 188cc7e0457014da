"""SIGHUP reloads the principals file: a token added works and a token removed
stops working without a restart; a file that cannot be used is refused with a
log line and the principals in force stay; through the supervisor, every
worker reloads."""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

import grpc
import pytest
from seatinventory.v1 import inventory_admin_pb2, inventory_admin_pb2_grpc, seat_inventory_pb2_grpc
from seatinventory.v1 import seat_inventory_pb2 as pb

from seat_inventory.api.auth import hash_token
from tests.e2e.helpers import new_event_id, seat_map
from tests.support.auth import bearer
from tests.support.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WAIT_S = 15.0  # a hang guard, not a performance figure


def principals_file(path: Path, tokens: dict[str, list[str]]) -> None:
    """``name -> tokens``; every principal gets both roles."""
    blocks = []
    for name, toks in tokens.items():
        hashes = ", ".join(f'"{hash_token(t)}"' for t in toks)
        blocks.append(
            f'[[principals]]\nname = "{name}"\nroles = ["client", "admin"]\ntokens = [{hashes}]\n'
        )
    path.write_text("\n".join(blocks))


@pytest.fixture
def tokens() -> dict[str, str]:
    return {name: "tok-" + secrets.token_urlsafe(24) for name in ("old", "new", "ops")}


async def code_of(target: str, token: str) -> tuple[grpc.StatusCode, str]:
    """The status of a GetAvailability of an unknown event with ``token`` on a new
    connection (NOT_FOUND: authenticated), and the pid that answered."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
        call = stub.GetAvailability(
            pb.GetAvailabilityRequest(event_id="no-such-event"), metadata=bearer(token), timeout=5
        )
        try:
            await call
        except grpc.aio.AioRpcError as err:
            served = dict(err.trailing_metadata() or ()).get("x-served-by", "")
            return err.code(), str(served)
    raise AssertionError("an unknown event was found")


async def until_code(target: str, token: str, code: grpc.StatusCode) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            if (await code_of(target, token))[0] == code:
                return
            await asyncio.sleep(0.05)


async def test_sighup_swaps_the_tokens_and_a_broken_file_changes_nothing(
    redis_url: str, postgres_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    path = tmp_path / "principals.toml"
    principals_file(path, {"shop": [tokens["old"]], "ops": [tokens["ops"]]})
    server = ServerProcess(
        redis_url=redis_url, database_url=postgres_url, args=["--principals", str(path)]
    )
    try:
        await server.start()
        assert server.proc is not None
        authenticated, refused = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED
        assert (await code_of(server.target, tokens["old"]))[0] == authenticated
        assert (await code_of(server.target, tokens["new"]))[0] == refused

        # Rotation: the new token in, the old one out.
        principals_file(path, {"shop": [tokens["new"]], "ops": [tokens["ops"]]})
        server.proc.send_signal(signal.SIGHUP)
        await until_code(server.target, tokens["new"], authenticated)
        assert (await code_of(server.target, tokens["old"]))[0] == refused

        # A broken file: refused, logged, the principals in force stay.
        path.write_text('[[principals]]\nname = "shop"\nroles = ["client"]\ntokens = ["plain"]\n')
        server.proc.send_signal(signal.SIGHUP)
        await server.wait_logged("principals file not reloaded", WAIT_S)
        assert server.running
        assert (await code_of(server.target, tokens["new"]))[0] == authenticated
        assert (await code_of(server.target, tokens["old"]))[0] == refused

        # Still a working server: an admin call with the kept principals.
        async with grpc.aio.insecure_channel(server.target) as channel:
            await inventory_admin_pb2_grpc.InventoryAdminStub(channel).CreateEvent(
                inventory_admin_pb2.CreateEventRequest(
                    event_id=new_event_id(), name="Reload", seats=seat_map(2)
                ),
                metadata=bearer(tokens["ops"]),
                timeout=30,
            )
        assert await server.stop() == 0
        logs = server.logs(tail_lines=10_000)
        assert "principals reloaded" in logs
        for token in tokens.values():
            assert token not in logs
    finally:
        server.cleanup()


async def test_sighup_without_principals_is_logged_and_harmless(
    redis_url: str, postgres_url: str
) -> None:
    server = ServerProcess(redis_url=redis_url, database_url=postgres_url)
    try:
        await server.start()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        await server.wait_logged("no principals file to reload", WAIT_S)
        assert server.running
        assert await server.stop() == 0
    finally:
        server.cleanup()


def two_workers_of_shop(
    redis_url: str, postgres_url: str, tmp_path: Path, token: str
) -> tuple[Path, ServerProcess]:
    """A principals file with the principal "shop" and ``token``, and (not started
    yet) a server of two workers reading it."""
    path = tmp_path / "principals.toml"
    principals_file(path, {"shop": [token]})
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=["--principals", str(path), "--workers", "2"],
    )
    return path, server


async def test_sighup_to_the_supervisor_reloads_every_worker(
    redis_url: str, postgres_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    path, server = two_workers_of_shop(redis_url, postgres_url, tmp_path, tokens["old"])
    try:
        await server.start()
        assert server.proc is not None
        principals_file(path, {"shop": [tokens["new"]]})
        server.proc.send_signal(signal.SIGHUP)
        # New connections land on either worker: each one must take the new
        # token and refuse the old one.
        accepted: set[str] = set()
        async with asyncio.timeout(WAIT_S * 2):
            while len(accepted) < 2:
                code, pid = await code_of(server.target, tokens["new"])
                if code == grpc.StatusCode.NOT_FOUND:
                    accepted.add(pid)
        for _ in range(10):
            assert (await code_of(server.target, tokens["old"]))[0] == (
                grpc.StatusCode.UNAUTHENTICATED
            )
        print(f"\nworkers that took the new token: {sorted(accepted)}")
        assert "reload passed on to the workers" in server.logs(tail_lines=10_000)
        assert await server.stop() == 0
    finally:
        server.cleanup()


async def test_a_worker_restarted_while_the_file_is_broken_serves_the_last_accepted(
    redis_url: str, postgres_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    """The file is broken and SIGHUP refused (the workers keep their principals); then
    a worker dies. Its replacement starts with the last principals the supervisor
    accepted instead of failing to start (and its slot staying empty)."""
    import os

    path, server = two_workers_of_shop(redis_url, postgres_url, tmp_path, tokens["old"])
    try:
        await server.start()
        assert server.proc is not None
        path.write_text('[[principals]]\nname = "shop"\nroles = [')  # a bad edit
        server.proc.send_signal(signal.SIGHUP)
        for _ in range(int(WAIT_S / 0.05)):  # the supervisor logs the refusal
            if "restarted workers use the last one accepted" in server.logs(10_000):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the supervisor did not refuse the broken file")
        code, victim = await code_of(server.target, tokens["old"])
        assert code == grpc.StatusCode.NOT_FOUND
        os.kill(int(victim), signal.SIGKILL)
        # Two workers answer again, the new one with the old token too.
        answered: set[str] = set()
        async with asyncio.timeout(WAIT_S * 2):
            while len(answered - {victim}) < 2:
                code, pid = await code_of(server.target, tokens["old"])
                if code == grpc.StatusCode.UNAVAILABLE:
                    await asyncio.sleep(0.05)  # the dead worker's port slot, meanwhile
                    continue
                assert code == grpc.StatusCode.NOT_FOUND
                answered.add(pid)
        assert "serving with the last one the supervisor accepted" in server.logs(10_000)
        assert await server.stop() == 0
    finally:
        server.cleanup()
