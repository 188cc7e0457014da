"""Credentials end to end: the bearer token reaches the server on every call, and
the client speaks mutual TLS to a TLS-terminating proxy in front of the server
(certificates made by openssl for this test)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from seatinventory.client import (
    AsyncSeatInventoryClient,
    RetryPolicy,
    SeatInventoryClient,
    Tls,
    Unavailable,
)

from tests.client.grpc_proxy import GrpcProxy
from tests.e2e.conftest import Running
from tests.e2e.helpers import new_event_id, seat_map
from tests.support.services import missing

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_token_is_sent_with_every_call(
    live: Running, client: AsyncSeatInventoryClient
) -> None:
    """``token=`` sends ``authorization: Bearer <token>`` on unary calls and the stream alike,
    from the async and the sync client."""
    proxy = await GrpcProxy(live.target).start()
    try:
        async with AsyncSeatInventoryClient(proxy.target, token="s3cret") as c:
            event_id = new_event_id()
            await c.create_event(event_id, "Token", seat_map(2))
            await c.reserve(event_id, ["A-1"], "alice")
            updates = c.watch_availability(event_id)
            await anext(updates)
            await updates.aclose()

        def sync_call() -> None:
            with SeatInventoryClient(proxy.target, token="sync-t0k") as sync:
                sync.get_event(event_id)

        await asyncio.to_thread(sync_call)
        seen = [(s.rpc, s.metadata.get("authorization")) for s in proxy.seen]
        assert seen == [
            ("CreateEvent", "Bearer s3cret"),
            ("Reserve", "Bearer s3cret"),
            ("StreamAvailability", "Bearer s3cret"),
            ("GetEvent", "Bearer sync-t0k"),
        ]
    finally:
        await proxy.stop()


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate, all signed by it."""
    if shutil.which("openssl") is None:
        missing("openssl", "install it (Debian: apt-get install openssl)")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=seat-inventory test CA")  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in (("server", "localhost"), ("client", "checkout-service")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        extra = ["-extfile", "server.ext"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", *extra)  # fmt: skip
    return {
        n: directory / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }


async def test_mutual_tls(live: Running, client: AsyncSeatInventoryClient, tmp_path: Path) -> None:
    """With ``Tls.from_files(ca=, cert=, key=)`` the client passes a proxy that demands a
    client certificate; without its certificate the handshake fails UNAVAILABLE."""
    files = make_certificates(tmp_path)
    server_credentials = grpc.ssl_server_credentials(
        [(files["server.key"].read_bytes(), files["server.pem"].read_bytes())],
        root_certificates=files["ca.pem"].read_bytes(),
        require_client_auth=True,
    )
    proxy = await GrpcProxy(live.target, server_credentials=server_credentials).start()
    target = f"localhost:{proxy.port}"
    try:
        tls = Tls.from_files(ca=files["ca.pem"], cert=files["client.pem"], key=files["client.key"])
        async with AsyncSeatInventoryClient(target, tls=tls) as secure:
            event_id = new_event_id()
            assert (await secure.create_event(event_id, "mTLS", seat_map(2))).seat_count == 2
        once = RetryPolicy(max_attempts=1)
        async with AsyncSeatInventoryClient(
            target, tls=Tls.from_files(ca=files["ca.pem"]), retry=once
        ) as anonymous:
            with pytest.raises(Unavailable):
                await anonymous.get_event(event_id, timeout=5)
    finally:
        await proxy.stop()
