"""The `seat-inventory loadtest` command line."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .scenario import Scenario

__all__ = ["add_loadtest_command"]


def _run(args: argparse.Namespace) -> int:
    from .main import run_loadtest

    fields = {
        name: getattr(args, name)
        for name in Scenario.__dataclass_fields__
        if getattr(args, name, None) is not None
    }
    return run_loadtest(Scenario(**fields), json_path=args.json, html_path=args.html)


def add_loadtest_command(sub: Any) -> None:
    d = Scenario.__dataclass_fields__
    p = sub.add_parser(
        "loadtest",
        help="run a flash-sale load against a running server and verify no seat sold twice",
        description="A flash sale: an event of --seats seats, --users virtual users arriving "
        "at --arrival-rate per second, a --hot-share of them going for the first --hot-seats "
        "seats, each reserving 1..--max-seats seats, then confirming, releasing or abandoning. "
        "Ends with per-RPC latencies and a verification (double bookings and lost "
        "confirmations must be 0; exit code 1 otherwise).",
    )
    p.add_argument("--target", default=os.environ.get("SEAT_INVENTORY_TARGET", "localhost:50051"),
                   help="server address, HOST:PORT (default localhost:50051, or "
                   "SEAT_INVENTORY_TARGET)")  # fmt: skip
    p.add_argument("--token", default=os.environ.get("SEAT_INVENTORY_TOKEN"),
                   help="bearer token when the server requires one")  # fmt: skip
    p.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    p.add_argument("--ca", dest="tls_ca", help="PEM file of the CA to trust (implies --tls)")
    p.add_argument("--cert", dest="tls_cert", help="PEM client certificate, for mutual TLS")
    p.add_argument("--key", dest="tls_key", help="PEM key of --cert")
    p.add_argument("--database-url", help="also verify straight from this SQL database")
    p.add_argument("--event-id", help="event to create (default: a fresh loadtest-<random>)")
    for name, kind, text in (
        ("seats", int, "seats in the event"),
        ("users", int, "virtual users in all"),
        ("arrival_rate", float, "users arriving per second"),
        ("hot_seats", int, "how many seats everyone wants"),
        ("hot_share", float, "share of users going for the hot seats"),
        ("max_seats", int, "each user reserves 1..this many seats"),
        ("p_confirm", float, "probability a holder confirms"),
        ("p_release", float, "probability a holder releases (the rest abandon)"),
        ("think_min_s", float, "shortest think time, seconds"),
        ("think_max_s", float, "longest think time, seconds"),
        ("hold_ttl_s", float, "ttl of each hold, seconds"),
        ("reserve_attempts", int, "Reserve tries per user after losing"),
        ("subscribers", int, "stream subscribers watching the event"),
        ("processes", int, "load processes (one Python process tops out near 1-2k calls/s)"),
        ("timeout_s", float, "deadline per call, seconds"),
        ("seed", int, "random seed for a repeatable run"),
    ):
        flag = "--" + name.removesuffix("_s").replace("_", "-")
        p.add_argument(flag, dest=name, type=kind,
                       help=f"{text} (default {d[name].default})")  # fmt: skip
    p.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout only)")
    p.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    p.set_defaults(func=_run)
