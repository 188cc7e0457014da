"""Run a load: create the event, drive the users (in one or several
processes) with a live progress bar, verify, report."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

import grpc
from seatinventory.v1 import inventory_admin_pb2 as admin_pb
from seatinventory.v1 import inventory_admin_pb2_grpc as admin_grpc
from seatinventory.v1 import types_pb2
from sqlalchemy.exc import SQLAlchemyError

from ..adapters.sql import first_line
from .report import as_dict, html_report, print_report
from .runner import ShareResult, error_outcome, open_channel, run_share
from .scenario import Scenario
from .stats import Stats
from .verify import Verification, verify

__all__ = ["run_loadtest"]


async def _create_event(s: Scenario) -> None:
    metadata = (("authorization", f"Bearer {s.token}"),) if s.token else ()
    seats = [
        types_pb2.SeatSpec(seat_id=f"S{n}", section="S", row=str((n - 1) // 50 + 1), number=str(n))
        for n in range(1, s.seats + 1)
    ]
    async with open_channel(s) as channel:
        stub = admin_grpc.InventoryAdminStub(channel)
        await stub.CreateEvent(
            admin_pb.CreateEventRequest(event_id=s.event_id, name="Load test", seats=seats),
            timeout=120,
            metadata=metadata,
        )


def _child(scenario: Scenario, slot: int, progress: SynchronizedArray[int], out: Any) -> None:
    def report(users: int, calls: int, errors: int) -> None:
        progress[3 * slot : 3 * slot + 3] = [users, calls, errors]

    out.put(asyncio.run(run_share(scenario, report)))


def _drive(scenario: Scenario) -> tuple[ShareResult, list[str]]:
    """Run the users with a live progress bar (on stderr); several processes when
    asked. Returns what the processes reported and what went wrong with them."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    n = scenario.processes
    ctx = multiprocessing.get_context("spawn")
    progress_array = ctx.Array("q", 3 * n)
    results: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(scenario.share(i), i, progress_array, results))
        for i in range(n)
    ]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} users"),
        TextColumn("{task.fields[rps]:>7.0f} calls/s  {task.fields[errors]} errors"),
        TimeElapsedColumn(),
    )
    started = time.perf_counter()
    failures: list[str] = []
    # stderr: stdout may be the JSON (--json -).
    with Progress(*columns, transient=False, console=Console(stderr=True)) as bar:
        task = bar.add_task("flash sale", total=scenario.users, rps=0.0, errors=0)
        for proc in procs:
            proc.start()
        merged = ShareResult()
        pending = n
        while pending:
            try:
                part: ShareResult = results.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty: just refresh the bar
                part = None  # type: ignore[assignment]
            if part is not None:
                pending -= 1
                merged.samples.extend(part.samples)
                merged.confirmed.update(part.confirmed)
                merged.wrong_answers.extend(part.wrong_answers)
                merged.abandoned_holds += part.abandoned_holds
                merged.abandoned_seats += part.abandoned_seats
                merged.expired_seen.extend(part.expired_seen)
                merged.stream_messages += part.stream_messages
                merged.duration_s = max(merged.duration_s, part.duration_s)
            values: list[int] = progress_array[:]
            users, calls, errors = sum(values[0::3]), sum(values[1::3]), sum(values[2::3])
            rps = calls / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=users, rps=rps, errors=errors)
            if pending and not any(p.is_alive() for p in procs) and results.empty():
                dead = [f"{i + 1} (exit code {p.exitcode})" for i, p in enumerate(procs)
                        if p.exitcode not in (0, None)]  # fmt: skip
                failures.append(
                    f"load process {', '.join(dead) or '?'} died before reporting: its calls "
                    "and confirmations are missing from the results and the verification"
                )
                break
    for proc in procs:
        proc.join(timeout=10)
    return merged, failures


def run_loadtest(scenario: Scenario, *, json_path: str | None, html_path: str | None) -> int:
    problems = scenario.problems()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_create_event(scenario))
    except grpc.aio.AioRpcError as err:
        print(f"error: cannot create the event at {scenario.target}: {error_outcome(err)}: "
              f"{err.details()}", file=sys.stderr)  # fmt: skip
        return 1
    result, failures = _drive(scenario)
    stats = Stats(result.samples, result.duration_s)
    try:
        verification = asyncio.run(verify(scenario, result.confirmed, result.wrong_answers))
    except grpc.aio.AioRpcError as err:
        failures.append(
            f"verification failed: cannot read the bookings back from {scenario.target}: "
            f"{error_outcome(err)}: {err.details()}"
        )
        verification = Verification(confirmations=len(result.confirmed))
    except (OSError, SQLAlchemyError) as exc:
        failures.append(f"verification failed: cannot read the database: {first_line(exc)}")
        verification = Verification(confirmations=len(result.confirmed))
    for failure in failures:
        verification.problems.append(failure)
        verification.incomplete = True
    data = as_dict(scenario, stats, verification, result)
    if json_path == "-":
        print(json.dumps(data, indent=2))
    else:
        print_report(data)
        if json_path:
            Path(json_path).write_text(json.dumps(data, indent=2))
    if html_path:
        Path(html_path).write_text(html_report(data))
        print(f"HTML report: {html_path}", file=sys.stderr)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 0 if verification.ok and not failures else 1
