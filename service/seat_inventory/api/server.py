"""The grpc.aio server: services, health, reflection, background tasks, drain."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, cast

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from seatinventory.client.wakeups import drain_wakeups
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2
from seatinventory.v1 import inventory_admin_pb2_grpc as admin_grpc
from seatinventory.v1 import seat_inventory_pb2_grpc as inventory_grpc

from ..bootstrap import App
from ..config import Settings
from ..domain.errors import InventoryError
from .accept import Acceptors, Registrar
from .admin_servicer import InventoryAdminServicer
from .auth import Authenticator, AuthInterceptor, PrincipalsError, load_principals
from .calls import CallGuard
from .inventory_servicer import SeatInventoryServicer
from .metrics import MetricsEndpoint, serve_metrics
from .principal import ADMIN, CLIENT
from .transport import server_credentials

__all__ = ["Server"]

log = structlog.get_logger(__name__)

SERVICE_NAMES = (
    seat_inventory_pb2.DESCRIPTOR.services_by_name["SeatInventory"].full_name,
    inventory_admin_pb2.DESCRIPTOR.services_by_name["InventoryAdmin"].full_name,
)


def _send_as_is(message: Any) -> bytes:
    """StreamAvailability yields messages already serialised by the fan-out, and
    GetAvailability answers serialised bytes too."""
    if isinstance(message, bytes):
        return message
    return cast(bytes, message.SerializeToString())


class _Captured:
    """Stands in for a server to collect what a generated add_*_to_server registers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.service, self.handlers = service, dict(handlers)


def _add_inventory(servicer: SeatInventoryServicer, server: Any) -> None:
    """The generated registration, except that StreamAvailability and
    GetAvailability send bytes as they are."""
    captured = _Captured()
    inventory_grpc.add_SeatInventoryServicer_to_server(servicer, cast(Any, captured))
    generated = captured.handlers["StreamAvailability"]
    captured.handlers["StreamAvailability"] = grpc.unary_stream_rpc_method_handler(
        servicer.StreamAvailability,
        request_deserializer=generated.request_deserializer,
        response_serializer=_send_as_is,
    )
    # GetAvailability answers bytes built from cached seat-map bytes (api/translate).
    generated = captured.handlers["GetAvailability"]
    captured.handlers["GetAvailability"] = grpc.unary_unary_rpc_method_handler(
        servicer.GetAvailability,
        request_deserializer=generated.request_deserializer,
        response_serializer=_send_as_is,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(captured.service, captured.handlers),)
    )
    server.add_registered_method_handlers(captured.service, captured.handlers)


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Workers share one port; a lone server must fail when the port is taken.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ("grpc.server.max_pending_requests", settings.max_pending_requests),
        ("grpc.server.max_pending_requests_hard_limit", 2 * settings.max_pending_requests),
        # Pings find peers that vanished without closing (a dead host, a cut
        # network) so their streams end instead of lingering.
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # A stream with no changes sends no data; keep pinging it anyway.
        ("grpc.http2.max_pings_without_data", 0),
        # Clients may ping this often without being told to calm down (GOAWAY).
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and wait, cancelling again while a task lives on: a cancellation that
    lands inside a backend client call can be swallowed there (seen with redis-py),
    and awaiting such a task once would wait forever."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task had failed", task=task.get_name(), error=task.exception())


def principals_to_start_with(settings: Settings) -> tuple[Authenticator, PrincipalsError | None]:
    """The principals a server starts with: its file's, or (a worker restarted while
    the file is refused) the last ones its supervisor accepted, with the file's
    refusal. Raises PrincipalsError when neither can be used."""
    assert settings.principals_file is not None
    try:
        return load_principals(settings.principals_file), None
    except PrincipalsError as exc:
        if not settings.principals_fallback_file:
            raise
        return load_principals(settings.principals_fallback_file), exc


def initial_principals(settings: Settings) -> Authenticator:
    """``principals_to_start_with``, saying so when it is the supervisor's copy."""
    authenticator, refused = principals_to_start_with(settings)
    if refused is not None:
        log.warning(
            "principals file refused; serving with the last one the supervisor accepted "
            "(fix the file and send SIGHUP)",
            error=str(refused),
        )
    return authenticator


def auth_interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    """The authentication interceptor when a principals file is configured.
    Health and reflection stay open: load balancers and grpcurl need no token."""
    if not settings.principals_file:
        return []
    inventory, admin = SERVICE_NAMES
    return [
        AuthInterceptor(
            initial_principals(settings),
            roles={inventory: CLIENT, admin: ADMIN},
            open_services=(health.SERVICE_NAME, reflection.SERVICE_NAME),
        )
    ]


class EarlyHangup:
    """SIGHUP caught from construction until the server takes it over: remembered,
    so that a reload asked for while the principals file was being read is done
    once the server serves (SIGHUP's default action would end the process)."""

    def __init__(self) -> None:
        self.seen = False
        signal.signal(signal.SIGHUP, self._on_hangup)
        # A worker starts with SIGHUP blocked (supervisor): one sent meanwhile
        # is delivered here, now that it is handled.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})

    def _on_hangup(self, signum: int, frame: object) -> None:
        self.seen = True


# A signal this long after the first one cuts the drain delay short.
SECOND_SIGNAL_AFTER_S = 1.0


class DrainingHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1, with a Watch that ends once the server drains: NOT_SERVING,
    then UNAVAILABLE. An open Watch (client-side health checking keeps one per
    connection) would otherwise hold the drain for the whole grace.

    Written here rather than wrapped around grpc_health's servicer: wrapping meant
    cancelling its Watch, and a Watch cancelled while its NOT_SERVING write was in
    flight left that write pending in grpc core, so the wrapper's own write failed
    (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS) and the Watch lived on until the grace
    ran out. grpc_health's Watch also writes while holding the lock ``set`` needs,
    so one watcher stuck on flow control would stall every status change; here a
    watcher waits on an event and writes holding nothing."""

    def __init__(self) -> None:
        self._statuses: dict[str, int] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._changed = asyncio.Event()
        self._shutting_down = False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def set(self, service: str, status: int) -> None:
        """Set a service's status; ignored once the server drains."""
        if self._shutting_down or self._statuses.get(service) == status:
            return
        self._statuses[service] = status
        self._notify()

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING for good; every open Watch is told so and ends."""
        if self._shutting_down:
            return
        self._shutting_down = True
        for service in self._statuses:
            self._statuses[service] = health_pb2.HealthCheckResponse.NOT_SERVING
        self._notify()

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        last: int | None = None
        while True:
            # Taken before reading the status: a change made while the write
            # below is in flight sets this event, and the loop reads again.
            changed = self._changed
            status: int
            if self._shutting_down:
                status = health_pb2.HealthCheckResponse.NOT_SERVING
            else:
                status = self._statuses.get(
                    request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                )
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self._shutting_down:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
            await changed.wait()


class Server:
    """One server process. ``start`` binds and returns the port (0 picks a free one)."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.health = DrainingHealth()
        self._interceptors = auth_interceptors(settings)
        self._server = grpc.aio.server(
            options=server_options(settings), interceptors=self._interceptors
        )
        guard = CallGuard(
            app.metrics,
            rate=settings.rate_limit,
            burst=settings.rate_burst,
            max_streams=settings.max_streams_per_principal,
            access_log=settings.access_log,
        )
        inventory = SeatInventoryServicer(app.inventory, app.bookings, app.watch)
        admin = InventoryAdminServicer(app.admin, app.bookings)
        inventory.calls = admin.calls = self.calls = guard
        self.acceptors = Acceptors(self._server, settings.accepts_per_method, self._interceptors)
        # Whether seatinventory.client.wakeups took over grpc.aio's reader (set by start).
        self.drains_wakeups = False
        registrar = cast(Any, Registrar(self._server, self.acceptors, SERVICE_NAMES))
        _add_inventory(inventory, registrar)
        admin_grpc.add_InventoryAdminServicer_to_server(admin, registrar)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, registrar)
        # The asyncio servicer, named outright: enable_server_reflection picks it
        # only for a grpc.aio.Server, and registrar is not one; the blocking
        # servicer held a thread of the loop's default executor per open stream,
        # so a few token-less reflection streams stalled SQLite commits.
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
            reflection.aio.ReflectionServicer(
                (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
            ),
            registrar,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.metrics_endpoint: MetricsEndpoint | None = None

    async def start(self) -> int:
        settings = self.app.settings
        credentials = server_credentials(settings)
        address = settings.address  # an IPv6 host in brackets, as gRPC wants it
        try:
            if credentials is None:
                self.port = self._server.add_insecure_port(address)
            else:
                self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError:  # this grpcio raises where older ones answered 0
            self.port = 0
        if self.port == 0:
            raise OSError(
                f"cannot listen on {settings.address}: address in use or not allowed"
                + ("" if credentials is None else ", or the TLS certificate and key do not match")
            )
        if settings.metrics_port is not None:  # 0: a free port (a worker's)
            self.metrics_endpoint = serve_metrics(
                self.app, settings.metrics_host, settings.metrics_port
            )
        await self._set_health(serving=False)
        await self._server.start()
        self.acceptors.start()
        self.drains_wakeups = drain_wakeups()
        self._tasks = [
            asyncio.create_task(self._watch_backends(), name="health"),
            asyncio.create_task(self.app.sweeper.run(), name="sweeper"),
        ]
        return self.port

    async def _set_health(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def check_backends(self) -> bool:
        try:
            async with asyncio.timeout(self.app.settings.backend_timeout_s):
                await self.app.holds.ping()
                await self.app.events.ping()
        except (InventoryError, TimeoutError) as exc:
            # The cause too, for the operator (what a caller is told stays terse).
            cause = exc.__cause__
            log.warning(
                "backend check failed",
                error=str(exc) or "no answer in time",
                cause=f"{type(cause).__name__}: {cause}" if cause is not None else None,
            )
            return False
        return True

    async def _watch_backends(self) -> None:
        """SERVING only while both Redis and the database answer."""
        serving: bool | None = None
        while True:
            ok = await self.check_backends()
            if ok != serving:
                serving = ok
                await self._set_health(serving=ok)
                log.info("health", serving=ok)
            await asyncio.sleep(self.app.settings.health_interval_s)

    async def stop(
        self,
        grace_s: float | None = None,
        *,
        drain_delay_s: float = 0.0,
        cut_short: asyncio.Event | None = None,
    ) -> None:
        """Drain: NOT_SERVING first, then let in-flight calls finish within the grace.

        With a ``drain_delay_s``, the server goes on serving that long while its
        health says NOT_SERVING, so that load balancers and clients' health
        checks move their calls elsewhere before it refuses any; ``cut_short``
        (a second signal) ends the delay early.

        grpc stops taking calls at once: a call arriving later gets UNAVAILABLE,
        one that had arrived but not yet started gets CANCELLED (grpc/grpc#41785);
        neither has run. Calls already running finish; past the grace they are
        cancelled."""
        await self.health.enter_graceful_shutdown()
        if drain_delay_s > 0:
            log.info("NOT_SERVING; still serving before the drain", drain_delay_s=drain_delay_s)
            early = cut_short or asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_delay_s):
                    await early.wait()
            if early.is_set():
                log.info("drain delay cut short")
        # Streams never finish by themselves: end them now with UNAVAILABLE
        # SERVER_DRAINING (resume from your last cursor) instead of cutting
        # them off when the grace runs out.
        await self.app.hub.close()
        await _cancel_all(self._tasks)
        await self._server.stop(self.app.settings.grace_s if grace_s is None else grace_s)
        await self.acceptors.aclose()
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.stop)
        await self.app.close()

    def reload_principals(self) -> bool:
        """Read the principals file again (SIGHUP) and authenticate with it from now
        on; a file that cannot be used is refused with a log line and the previous
        principals stay. True when the new file is in force."""
        path = self.app.settings.principals_file
        auth = next((i for i in self._interceptors if isinstance(i, AuthInterceptor)), None)
        if not path or auth is None:
            log.info("reload asked; no principals file to reload (authentication is off)")
            return False
        try:
            authenticator = load_principals(path)
        except PrincipalsError as exc:
            log.error("principals file not reloaded; the previous principals stay", error=str(exc))  # noqa: TRY400 - expected, no traceback
            return False
        auth.replace(authenticator)
        log.info(
            "principals reloaded",
            principals=authenticator.principal_count,
            tokens=authenticator.token_count,
        )
        return True

    async def serve_until_signalled(self, early_hangup: EarlyHangup | None = None) -> None:
        """Serve until SIGTERM/SIGINT, then drain; a second signal ends the drain
        delay early. Only one coming a second or more after the first counts: the
        same stop often arrives twice at once (Ctrl-C reaches every process of the
        group, systemd signals the whole cgroup, and the supervisor passes it on)."""
        stop, again = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        first_at = 0.0

        def on_signal() -> None:
            nonlocal first_at
            if not stop.is_set():
                first_at = loop.time()
                stop.set()
            elif loop.time() - first_at >= SECOND_SIGNAL_AFTER_S:
                again.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        loop.add_signal_handler(signal.SIGHUP, self.reload_principals)
        if early_hangup is not None and early_hangup.seen:
            self.reload_principals()
        await stop.wait()
        settings = self.app.settings
        log.info("shutting down", grace_s=settings.grace_s, drain_delay_s=settings.drain_delay_s)
        await self.stop(drain_delay_s=settings.drain_delay_s, cut_short=again)
