"""TLS and mutual TLS on the server itself (--tls-cert, --tls-key, --tls-client-ca),
with certificates made for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from seatinventory.v1 import (
    inventory_admin_pb2,
    inventory_admin_pb2_grpc,
    seat_inventory_pb2,
    seat_inventory_pb2_grpc,
)

from seat_inventory.config import Settings
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import new_event_id, seat_map
from tests.support.auth import TestPrincipals
from tests.support.certs import Certificates, make_certificates

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


async def tls_server(
    redis_url: str, postgres_url: str, certs: Certificates, **extra: str
) -> Running:
    return await start_server(
        Settings(
            host="127.0.0.1",
            port=0,
            redis_url=redis_url,
            database_url=postgres_url,
            tls_cert=str(certs.server_cert),
            tls_key=str(certs.server_key),
            **extra,  # type: ignore[arg-type]
        )
    )


def channel(
    running: Running, certs: Certificates, cert: Path | None = None, key: Path | None = None
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(),
        key.read_bytes() if key else None,
        cert.read_bytes() if cert else None,
    )
    port = running.target.rsplit(":", 1)[1]
    return grpc.aio.secure_channel(f"localhost:{port}", credentials)


async def create_event(ch: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    event_id = new_event_id()
    reply = await inventory_admin_pb2_grpc.InventoryAdminStub(ch).CreateEvent(
        inventory_admin_pb2.CreateEventRequest(event_id=event_id, name="TLS", seats=seat_map(2)),
        metadata=metadata,
        timeout=10,
    )
    assert reply.event.seat_count == 2
    return event_id


@pytest.fixture
async def tls_only(
    redis_url: str, postgres_url: str, certs: Certificates
) -> AsyncIterator[Running]:
    running = await tls_server(redis_url, postgres_url, certs)
    yield running
    await stop_running(running)


async def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(
    tls_only: Running, certs: Certificates
) -> None:
    """A client trusting the CA is served over TLS; a plaintext client is not."""
    async with channel(tls_only, certs) as secure:
        await create_event(secure)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tls_only.admin.GetEvent(inventory_admin_pb2.GetEventRequest(event_id="x"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_signed_by_the_client_ca(
    redis_url: str, postgres_url: str, certs: Certificates, tmp_path: Path
) -> None:
    """With --tls-client-ca a client without a certificate, or with one signed by
    another CA, fails the handshake (UNAVAILABLE); a client certificate signed by the
    CA gets through, and the bearer token is still required on top."""
    principals = TestPrincipals(tmp_path)
    running = await tls_server(
        redis_url,
        postgres_url,
        certs,
        tls_client_ca=str(certs.ca),
        principals_file=str(principals.path),
    )
    try:
        for label, cert, key in (
            ("no certificate", None, None),
            ("another CA", certs.stranger_cert, certs.stranger_key),
        ):
            async with channel(running, certs, cert, key) as refused_channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await create_event(refused_channel, principals.md("ops"))
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, label
        async with channel(running, certs, certs.client_cert, certs.client_key) as good:
            event_id = await create_event(good, principals.md("ops"))
            stub = seat_inventory_pb2_grpc.SeatInventoryStub(good)
            request = seat_inventory_pb2.ReserveRequest(
                event_id=event_id, seat_ids=["A-1"], holder_id="alice"
            )
            with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
                await stub.Reserve(request, timeout=5)
            assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
            hold = await stub.Reserve(request, metadata=principals.md("shop-a"), timeout=5)
            assert list(hold.hold.seat_ids) == ["A-1"]
    finally:
        await stop_running(running)


async def test_loadtest_runs_over_mutual_tls_with_a_token(
    redis_url: str, postgres_url: str, certs: Certificates, tmp_path: Path
) -> None:
    """`seat-inventory loadtest --ca --cert --key --token` drives a server that wants
    mTLS and a token, and verifies clean; without the client certificate it cannot."""
    import asyncio
    import json
    import sys

    principals = TestPrincipals(tmp_path)
    running = await tls_server(
        redis_url,
        postgres_url,
        certs,
        tls_client_ca=str(certs.ca),
        principals_file=str(principals.path),
    )
    target = "localhost:" + running.target.rsplit(":", 1)[1]
    common = [
        sys.executable, "-m", "seat_inventory", "loadtest", "--target", target,
        "--token", principals.tokens["both"], "--ca", str(certs.ca),
        "--seats", "20", "--users", "30", "--arrival-rate", "100", "--hold-ttl", "1",
        "--think-max", "0.05", "--seed", "5", "--timeout", "3",
    ]  # fmt: skip

    async def loadtest(*extra: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *common, *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode is not None
        return proc.returncode, output.decode()

    try:
        out = tmp_path / "run.json"
        code, text = await loadtest(
            "--cert", str(certs.client_cert), "--key", str(certs.client_key), "--json", str(out)
        )
        assert code == 0, text
        verification = json.loads(out.read_text())["verification"]
        assert (verification["double_bookings"], verification["lost_confirmations"]) == (0, 0)
        assert verification["confirmations"] > 0
        assert principals.tokens["both"] not in out.read_text()

        code, text = await loadtest()  # the CA, but no client certificate
        assert code != 0
        assert "Traceback" not in text

        code, text = await loadtest("--cert", str(certs.client_cert))  # no --key
        assert code != 0
        assert "--cert and --key go together" in text
    finally:
        await stop_running(running)
