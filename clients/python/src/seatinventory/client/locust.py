"""``SeatInventoryUser``: a Locust user whose ``self.client`` is a
``SeatInventoryClient`` that reports every RPC to Locust's statistics.

Install with the extra: ``pip install 'seatinventory-client[locust]'``.
Importing this module prepares grpc for gevent, so import it (directly or
through a locustfile) before any grpc channel is created.
"""

from __future__ import annotations

import gevent
import grpc.experimental.gevent as grpc_gevent
from locust import User
from locust.env import Environment
from locust.exception import LocustError

from .channel import Tls
from .errors import SeatInventoryError
from .outcome import CallOutcome
from .retry import DEFAULT_TIMEOUT, RetryPolicy
from .sync import SeatInventoryClient

__all__ = ["SeatInventoryUser"]

# grpc's blocking calls must yield to the other users' greenlets instead of
# blocking the one OS thread they all share.
grpc_gevent.init_gevent()
# gevent's loop caches "now" and has not run since Locust started it; timers
# set from it (Locust's --run-time) would count the seconds spent importing
# grpc and the locustfile as already elapsed, and on a busy machine end the
# run before it starts.
gevent.get_hub().loop.update_now()


class SeatInventoryUser(User):
    """Subclass it, add ``@task`` methods that call ``self.client``; ``--host`` is
    the gRPC target (``localhost:50051``).

    Each logical call (retries included) becomes one Locust request of type
    ``grpc`` named after the RPC ("Reserve"), with its response time and size;
    a failure carries the typed error (code, reason, message) as its exception.
    Errors listed in ``expected_errors`` are a normal outcome of the scenario
    (a lost race in a flash sale): they count as successes named
    "<Rpc> <REASON>" ("Reserve SEATS_UNAVAILABLE"), so they show in the
    statistics without failing the run; the task still sees the exception.
    """

    abstract = True
    token: str | None = None
    tls: Tls | None = None
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy | None = None
    expected_errors: tuple[type[SeatInventoryError], ...] = ()

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise LocustError("no gRPC target: pass --host HOST:PORT (or set host on the class)")
        self.client = SeatInventoryClient(
            self.host,
            token=self.token,
            tls=self.tls,
            timeout=self.timeout,
            retry=self.retry,
            observer=self._report,
        )

    def on_stop(self) -> None:
        self.client.close()

    def _report(self, outcome: CallOutcome) -> None:
        error = outcome.error
        expected = error is not None and isinstance(error, self.expected_errors)
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"{outcome.rpc} {error.reason}" if expected and error else outcome.rpc,
            response_time=outcome.elapsed_s * 1000,
            response_length=outcome.response_bytes,
            exception=None if expected else error,
            context={"attempts": outcome.attempts},
        )
