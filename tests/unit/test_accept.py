"""When the extra accept loops start, and when they stay off (api/accept.py);
their serving is tested over real channels in tests/e2e/test_accept.py."""

from __future__ import annotations

import grpc
import pytest
import structlog.testing

from seat_inventory.api import accept
from seat_inventory.api.accept import Acceptors


async def _empty(request: bytes, context: object) -> bytes:
    return b""


def acceptors(per_method: int = 2) -> tuple[grpc.aio.Server, Acceptors]:
    server = grpc.aio.server()
    acc = Acceptors(server, per_method)
    acc.add("t.Svc", {"A": grpc.unary_unary_rpc_method_handler(_empty)})
    return server, acc


async def test_this_grpcio_is_known_and_the_loops_start() -> None:
    server, acc = acceptors(per_method=3)
    server.add_registered_method_handlers(
        "t.Svc", {"A": grpc.unary_unary_rpc_method_handler(_empty)}
    )
    server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        assert accept._unknown_internals(server._server) == []  # type: ignore[attr-defined]
        assert acc.start()
        assert acc.waiting == 3
    finally:
        await server.stop(None)
        await acc.aclose()
    assert acc.waiting == 0


async def test_zero_or_no_methods_start_nothing() -> None:
    _, acc = acceptors(per_method=0)
    assert not acc.start()
    assert not Acceptors(grpc.aio.server(), 4).start()  # nothing registered


async def test_changed_internals_leave_grpc_aio_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A grpcio whose private functions take other parameters: a warning naming
    them, no loops (a call started with the wrong arguments would hang)."""
    changed = {**accept._SIGNATURES, "_handle_rpc": ("method_name", "something_new")}
    monkeypatch.setattr(accept, "_SIGNATURES", changed)
    _, acc = acceptors()
    with structlog.testing.capture_logs() as logs:
        assert not acc.start()
    assert not acc.active
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["missing"] == ["_handle_rpc('method_name', 'something_new')"]
