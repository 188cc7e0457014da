"""Authentication over a real channel: bearer tokens, roles per service, holds
bound to the principal that made them, the per-holder seat limit, and tokens
kept out of the logs."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from seatinventory.v1 import (
    inventory_admin_pb2,
    inventory_admin_pb2_grpc,
    seat_inventory_pb2,
    seat_inventory_pb2_grpc,
    types_pb2,
)

from seat_inventory.api.auth import hash_token
from seat_inventory.cli import main
from seat_inventory.config import Settings
from seat_inventory.domain.policy import Limits
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import create_event, error_info, new_event_id, seat_map, ttl
from tests.support.auth import TestPrincipals, bearer
from tests.support.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HELD = types_pb2.SEAT_STATUS_HELD


@pytest.fixture
def principals(tmp_path: Path) -> TestPrincipals:
    return TestPrincipals(tmp_path)


@pytest.fixture
async def secured(
    redis_url: str, postgres_url: str, principals: TestPrincipals
) -> AsyncIterator[Running]:
    """A server with authentication on; at most 4 seats held per holder at once."""
    running = await start_server(
        Settings(
            host="127.0.0.1",
            port=0,
            redis_url=redis_url,
            database_url=postgres_url,
            principals_file=str(principals.path),
            limits=Limits(max_seats_per_hold=3, max_seats_per_holder=4),
        )
    )
    yield running
    await stop_running(running)


async def new_event(running: Running, principals: TestPrincipals, seats: int = 10) -> str:
    return await create_event(running.admin, seats, principals.md("ops"))


def reserve(event_id: str, seats: list[str], holder: str = "alice", **kw: object) -> object:
    return seat_inventory_pb2.ReserveRequest(
        event_id=event_id, seat_ids=seats, holder_id=holder, **kw
    )


async def test_missing_wrong_and_expired_tokens_are_unauthenticated(
    secured: Running, principals: TestPrincipals
) -> None:
    """No token, an unknown token, another scheme and an expired token all get
    UNAUTHENTICATED with reason UNAUTHENTICATED and a message saying which."""
    event_id = await new_event(secured, principals)
    cases = {
        "no token": ((), "requires a bearer token"),
        "wrong token": (bearer("not-a-real-token-at-all"), "not valid"),
        "basic scheme": ((("authorization", "Basic YWxpY2U6cHc="),), "requires a bearer token"),
        "expired token": (principals.md("old"), "expired"),
    }
    for label, (metadata, message) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await secured.inventory.Reserve(
                reserve(event_id, ["A-1"]), metadata=metadata, timeout=5
            )
        err = refused.value
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, label
        assert error_info(err).reason == "UNAUTHENTICATED", label
        assert message in (err.details() or ""), label
    stream = secured.inventory.StreamAvailability(
        seat_inventory_pb2.StreamAvailabilityRequest(event_id=event_id), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.read()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(refused.value).reason == "UNAUTHENTICATED"


async def test_a_request_that_does_not_parse_is_still_refused_for_its_credentials(
    secured: Running, principals: TestPrincipals
) -> None:
    """Bytes that are no request, sent without a token or with a client's token to
    the admin service, get UNAUTHENTICATED / PERMISSION_DENIED like any call; with
    the right token, INVALID_ARGUMENT."""
    raw = b"\x0a\x02\xff\xfe"  # event_id with bad UTF-8
    as_is = lambda b: b  # noqa: E731
    create = secured.channel.unary_unary(
        "/seatinventory.v1.InventoryAdmin/CreateEvent", as_is, as_is
    )
    cases = {
        "no token": ((), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        "client token": (
            principals.md("shop-a"),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_REQUIRED",
        ),
        "admin token": (principals.md("ops"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    }
    for label, (metadata, code, reason) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create(raw, metadata=metadata, timeout=5)
        assert refused.value.code() == code, label
        assert error_info(refused.value).reason == reason, label


async def test_a_refused_call_is_answered_like_any_other(secured: Running) -> None:
    """A call refused for its credentials still carries the caller's x-request-id and
    x-served-by in its trailers, as every answer does."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.inventory.GetAvailability(
            seat_inventory_pb2.GetAvailabilityRequest(event_id="ev"),
            metadata=(("x-request-id", "order-42"),),
            timeout=5,
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["x-request-id"] == "order-42"
    assert trailers["x-served-by"].isdigit()


async def test_each_service_needs_its_role(secured: Running, principals: TestPrincipals) -> None:
    """A client token cannot call InventoryAdmin and an admin token cannot call
    SeatInventory (PERMISSION_DENIED ROLE_REQUIRED); a principal with both roles can."""
    event_id = await new_event(secured, principals)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.admin.GetEvent(
            inventory_admin_pb2.GetEventRequest(event_id=event_id),
            metadata=principals.md("shop-a"),
            timeout=5,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(refused.value)
    assert (info.reason, info.metadata["role"]) == ("ROLE_REQUIRED", "admin")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.inventory.Reserve(
            reserve(event_id, ["A-1"]), metadata=principals.md("ops"), timeout=5
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value).metadata["role"] == "client"
    hold = await secured.inventory.Reserve(
        reserve(event_id, ["A-1"]), metadata=principals.md("both"), timeout=5
    )
    assert list(hold.hold.seat_ids) == ["A-1"]
    event = await secured.admin.GetEvent(
        inventory_admin_pb2.GetEventRequest(event_id=event_id),
        metadata=principals.md("both"),
        timeout=5,
    )
    assert event.event.held_count == 1


async def test_health_and_reflection_need_no_token(secured: Running) -> None:
    """Load balancers and grpcurl reach health and reflection without a token."""
    reply = await health_pb2_grpc.HealthStub(secured.channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    assert reply.status in (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    stub = reflection_pb2_grpc.ServerReflectionStub(secured.channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "seatinventory.v1.SeatInventory" in names


async def test_another_principal_cannot_confirm_release_or_extend_a_hold(
    secured: Running, principals: TestPrincipals
) -> None:
    """Principal B, even with A's holder id and hold id, gets PERMISSION_DENIED
    HOLD_NOT_OWNED from Confirm, Release and ExtendHold; A's hold keeps its expiry and
    seats, A confirms it afterwards, and B's retried Confirm does not return A's booking."""
    event_id = await new_event(secured, principals)
    a, b = principals.md("shop-a"), principals.md("shop-b")
    hold = (
        await secured.inventory.Reserve(
            reserve(event_id, ["A-1", "A-2"], ttl=ttl(60)), metadata=a, timeout=5
        )
    ).hold
    hold_id = hold.hold_id
    attempts = {
        "Confirm": secured.inventory.Confirm(
            seat_inventory_pb2.ConfirmRequest(hold_id=hold_id, holder_id="alice"),
            metadata=b,
            timeout=5,
        ),
        "Release": secured.inventory.Release(
            seat_inventory_pb2.ReleaseRequest(hold_id=hold_id, holder_id="alice"),
            metadata=b,
            timeout=5,
        ),
        "ExtendHold": secured.inventory.ExtendHold(
            seat_inventory_pb2.ExtendHoldRequest(hold_id=hold_id, holder_id="alice", ttl=ttl(600)),
            metadata=b,
            timeout=5,
        ),
    }
    for rpc, call in attempts.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, rpc
        assert error_info(refused.value).reason == "HOLD_NOT_OWNED", rpc
    seats = await secured.inventory.GetAvailability(
        seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), metadata=b, timeout=5
    )
    assert {s.seat_id for s in seats.seats if s.status == HELD} == {"A-1", "A-2"}
    extended = await secured.inventory.ExtendHold(
        seat_inventory_pb2.ExtendHoldRequest(hold_id=hold_id, holder_id="alice", ttl=ttl(60)),
        metadata=a,
        timeout=5,
    )
    assert extended.hold.expires_at.ToMilliseconds() >= hold.expires_at.ToMilliseconds()
    booking = await secured.inventory.Confirm(
        seat_inventory_pb2.ConfirmRequest(hold_id=hold_id, holder_id="alice"),
        metadata=a,
        timeout=10,
    )
    assert list(booking.booking.seat_ids) == ["A-1", "A-2"]
    confirm = seat_inventory_pb2.ConfirmRequest(hold_id=hold_id, holder_id="alice")
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # B cannot read A's booking either
        await secured.inventory.Confirm(confirm, metadata=b, timeout=10)
    assert error_info(refused.value).reason == "HOLD_NOT_OWNED"
    again = await secured.inventory.Confirm(confirm, metadata=a, timeout=10)
    assert again.booking.booking_id == booking.booking.booking_id


async def test_hold_limit_is_answered_and_others_are_still_served(
    secured: Running, principals: TestPrincipals
) -> None:
    """A holder at its 4 seats gets RESOURCE_EXHAUSTED HOLD_LIMIT (limit and held in
    the metadata); other holders, and the same holder id of another principal, still
    reserve, and releasing frees the allowance."""
    event_id = await new_event(secured, principals)
    a, b = principals.md("shop-a"), principals.md("shop-b")
    first = await secured.inventory.Reserve(
        reserve(event_id, ["A-1", "A-2", "A-3"]), metadata=a, timeout=5
    )
    await secured.inventory.Reserve(reserve(event_id, ["A-4"]), metadata=a, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await secured.inventory.Reserve(reserve(event_id, ["A-5"]), metadata=a, timeout=5)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(refused.value)
    assert info.reason == "HOLD_LIMIT"
    assert (info.metadata["limit"], info.metadata["held"]) == ("4", "4")
    await secured.inventory.Reserve(reserve(event_id, ["A-5"], "bob"), metadata=a, timeout=5)
    await secured.inventory.Reserve(reserve(event_id, ["A-6"]), metadata=b, timeout=5)
    await secured.inventory.Release(
        seat_inventory_pb2.ReleaseRequest(hold_id=first.hold.hold_id, holder_id="alice"),
        metadata=a,
        timeout=5,
    )
    again = await secured.inventory.Reserve(reserve(event_id, ["A-7"]), metadata=a, timeout=5)
    assert list(again.hold.seat_ids) == ["A-7"]


async def test_tokens_never_appear_in_the_logs(
    redis_url: str, postgres_url: str, principals: TestPrincipals
) -> None:
    """A server logging at debug level, called with good, wrong and expired tokens,
    writes none of the token strings (nor the wrong one) to its output."""
    wrong = "wrong-" + principals.tokens["shop-a"][::-1]
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=["--principals", str(principals.path), "--log-level", "debug"],
    )
    try:
        await server.start()
        async with grpc.aio.insecure_channel(server.target) as channel:
            inventory = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
            event_id = new_event_id()
            await inventory_admin_pb2_grpc.InventoryAdminStub(channel).CreateEvent(
                inventory_admin_pb2.CreateEventRequest(
                    event_id=event_id, name="Logs", seats=seat_map(3)
                ),
                metadata=principals.md("ops"),
                timeout=30,
            )
            await inventory.Reserve(
                reserve(event_id, ["A-1"]), metadata=principals.md("shop-a"), timeout=5
            )
            for metadata in (bearer(wrong), principals.md("old"), principals.md("ops")):
                with pytest.raises(grpc.aio.AioRpcError):
                    await inventory.Reserve(
                        reserve(event_id, ["A-2"]), metadata=metadata, timeout=5
                    )
        await server.stop()
        output = server.logs(tail_lines=100_000)
        assert "call refused" in output  # the refusals were logged ...
        for token in [*principals.tokens.values(), wrong]:
            assert token not in output  # ... without the token
    finally:
        server.cleanup()


def serve_exits(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``seat-inventory serve`` with these flags, expected to refuse to start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAT_INVENTORY_")}
    script = Path(sys.executable).with_name("seat-inventory")
    return subprocess.run(
        [str(script), "serve", "--port", "0", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_principals_file_stops_the_start_with_one_clear_line(tmp_path: Path) -> None:
    """A principals file holding a plaintext token stops ``serve`` with exit code 1 and
    a message saying how tokens are stored, without a traceback or the token itself
    (unit tests cover the other mistakes one by one)."""
    path = tmp_path / "plain.toml"
    path.write_text('[[principals]]\nname = "a"\nroles = ["client"]\ntokens = ["hunter2"]\n')
    done = serve_exits(["--principals", str(path)], tmp_path)
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "sha256:<64 hex digits>" in output
    assert "seat-inventory hash-token" in output
    assert "Traceback" not in output
    assert "hunter2" not in output


def test_a_public_address_without_authentication_is_refused(tmp_path: Path) -> None:
    """``--host 0.0.0.0`` with no principals exits 1 naming --principals and
    --allow-insecure-bind; nothing is listened on and no backend is touched."""
    done = serve_exits(["--host", "0.0.0.0"], tmp_path)
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "refusing to listen on 0.0.0.0 without authentication" in output
    assert "--allow-insecure-bind" in output
    assert not (tmp_path / "seat-inventory.db").exists()


def test_hash_token_prints_the_line_a_principals_file_stores(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hash-token`` hashes a token read from stdin, refuses a short one, and
    ``--generate`` prints a new token followed by its hash."""

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(["hash-token", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run(stdin="a-long-enough-token-123\n")
    assert code == 0
    assert out.strip() == hash_token("a-long-enough-token-123")
    code, _, err = run(stdin="short\n")
    assert code == 1
    assert "at least 16 characters" in err
    code, out, _ = run("--generate")
    token, line = out.split()
    assert line == hash_token(token)
    assert len(token) >= 32


async def test_the_command_line_client_sends_its_token(
    secured: Running, principals: TestPrincipals, capsys: pytest.CaptureFixture[str]
) -> None:
    """``seat-inventory reserve --token`` is served; without a token the user reads
    one line naming UNAUTHENTICATED and exit code 1."""
    event_id = await new_event(secured, principals)
    command = ["reserve", event_id, "A-1", "--holder", "alice", "--target", secured.target]
    assert await asyncio.to_thread(main, command) == 1
    assert "error: UNAUTHENTICATED: this server requires a bearer token" in capsys.readouterr().err
    token = ["--token", principals.tokens["shop-a"]]
    assert await asyncio.to_thread(main, [*command, *token]) == 0
    assert "seats:      A-1" in capsys.readouterr().out
