"""StreamAvailability fan-out benchmark: K subscribers on one event, 100 changes/s.

    .venv/bin/python bench/stream_fanout.py            # K = 100, 500, 1000, 2000 (~1.5 min)
    .venv/bin/python bench/stream_fanout.py --quick    # K = 100, 500 (~35 s)

One server process (what ``seat-inventory serve`` runs, on its own
redis-server and a SQLite file), subscribers spread over one or two client
processes, and a driver task in this process that reserves and releases one
seat at a time at a steady 100 changes per second. A change's commit time is the millisecond
part of its feed id (Redis's clock, which is this machine's clock), so the
latency of every change to every subscriber is measured, not sampled.

Beside each row, the ceiling: one grpc.aio process that streams pre-built
messages as fast as it can to the same K streams, with the same clients.
Prints a table; asserts nothing. BENCH_PROFILE=<file> in the environment
writes a cProfile of the server there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

STREAM_METHOD = "/seatinventory.v1.SeatInventory/StreamAvailability"
MAX_MS = 10_000  # latency histogram range; slower deliveries count in the last bucket
STREAMS_PER_CHANNEL = 100
SEATS = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class ProcStat:
    """CPU seconds and RSS of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


# --------------------------------------------------------------------------- client


async def client_main(args: argparse.Namespace) -> None:
    """Open ``--streams`` streams, say READY, measure between GO's times, print JSON."""
    from seatinventory.v1 import seat_inventory_pb2, types_pb2

    request = seat_inventory_pb2.StreamAvailabilityRequest(event_id=args.event).SerializeToString()
    hist = [0] * (MAX_MS + 1)
    window = [float("inf"), float("-inf")]
    counts = {"messages": 0, "changes": 0, "snapshots": 0, "errors": 0}
    codes: dict[str, int] = {}
    ready = asyncio.Event()
    settled = 0  # streams that got their first message or failed before it

    def settle() -> None:
        nonlocal settled
        settled += 1
        if settled == args.streams:
            ready.set()

    async def follow(channel: grpc.aio.Channel) -> None:
        call = channel.unary_stream(STREAM_METHOD)(request)
        first = True
        try:
            async for raw in call:
                now = time.time()
                if first:
                    first = False
                    settle()
                    continue
                if not window[0] <= now <= window[1]:
                    continue
                counts["messages"] += 1
                if args.mode == "count":
                    continue
                update = types_pb2.AvailabilityUpdate.FromString(raw)
                if update.HasField("snapshot"):
                    counts["snapshots"] += 1
                    continue
                now_ms = now * 1000
                for change in update.changes.changes:
                    committed = int(change.cursor.rpartition(".")[2].partition("-")[0])
                    hist[min(MAX_MS, max(0, int(now_ms - committed)))] += 1
                    counts["changes"] += 1
        except grpc.aio.AioRpcError as err:
            counts["errors"] += 1
            codes[err.code().name] = codes.get(err.code().name, 0) + 1
            if first:
                settle()

    channels = [
        grpc.aio.insecure_channel(
            args.target, options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", i)]
        )
        for i in range((args.streams + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    tasks = [
        asyncio.create_task(follow(channels[i // STREAMS_PER_CHANNEL])) for i in range(args.streams)
    ]
    await ready.wait()
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start, end = (float(x) for x in line.split()[1:3])
    window[0], window[1] = start, end
    await asyncio.sleep(max(0.0, end - time.time()) + 0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    nonzero = {str(ms): n for ms, n in enumerate(hist) if n}
    print(json.dumps({"counts": counts, "codes": codes, "hist": nonzero}), flush=True)


# --------------------------------------------------------------------------- server


async def serve_main(args: argparse.Namespace) -> None:
    """The real server, as ``seat-inventory serve`` runs it, with the bench's tick."""
    from seat_inventory.api.server import Server
    from seat_inventory.bootstrap import build
    from seat_inventory.config import Settings
    from seat_inventory.logging import configure_logging

    configure_logging("console", "warning")
    settings = Settings(
        host="127.0.0.1",
        port=args.port,
        redis_url=args.target,
        database_url=args.event,
        stream_tick_s=args.tick,
        stream_max_messages_s=args.max_messages,
        log_level="warning",
    )
    server = Server(await build(settings))
    await server.start()
    from seat_inventory.runtime import tune_gc

    tune_gc(args.gc_threshold)  # as ``seat-inventory serve`` does once built
    # Kept in a name: the loop holds tasks only weakly.
    _gc_log_task = asyncio.ensure_future(log_gc_pauses(Path(args.gc_log))) if args.gc_log else None
    if os.environ.get("BENCH_PROFILE"):  # cProfile the server into that file
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
        try:
            await server.serve_until_signalled()
        finally:
            profile.disable()
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        return
    await server.serve_until_signalled()


async def log_gc_pauses(path: Path) -> None:
    """Every pause of the garbage collector as [wall time, generation, ms],
    rewritten to ``path`` twice a second for the orchestrator to read."""
    import gc

    pauses: list[list[float]] = []
    started = [0.0]

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(
                [time.time(), info["generation"], 1000 * (time.perf_counter() - started[0])]
            )

    gc.callbacks.append(record)
    while True:
        await asyncio.sleep(0.5)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(pauses))
        tmp.replace(path)


def gc_pauses(path: Path, start: float, end: float) -> tuple[float, float]:
    """(ms of collector pauses per second, longest pause ms) within [start, end]."""
    try:
        pauses = json.loads(path.read_text())
    except (OSError, ValueError):
        return float("nan"), float("nan")
    inside = [ms for at, _, ms in pauses if start <= at <= end]
    return sum(inside) / max(end - start, 1e-9), max(inside, default=0.0)


# --------------------------------------------------------------------------- ceiling


async def ceiling_main(args: argparse.Namespace) -> None:
    """A grpc.aio server that streams one pre-built ChangeBatch as fast as it can."""
    from seatinventory.v1 import seat_inventory_pb2, types_pb2

    snapshot = types_pb2.AvailabilityUpdate(
        event_id="ceiling",
        cursor="e.0-0",
        snapshot=types_pb2.AvailabilitySnapshot(
            seats=[
                types_pb2.SeatState(seat_id=f"A-{i}", status=types_pb2.SEAT_STATUS_AVAILABLE)
                for i in range(SEATS)
            ]
        ),
    ).SerializeToString()
    batch = types_pb2.AvailabilityUpdate(
        event_id="ceiling",
        cursor="e.1-0",
        changes=types_pb2.ChangeBatch(
            changes=[
                types_pb2.SeatChange(
                    seat_ids=[f"A-{i}"],
                    status=types_pb2.SEAT_STATUS_HELD,
                    reason=types_pb2.CHANGE_REASON_HELD,
                    cursor=f"e.{i}-0",
                )
                for i in range(5)
            ]
        ),
    ).SerializeToString()

    # Flood only once every expected stream is open, or the first streams' flood
    # would starve the opening of the others. The clients ask for "ceiling-<K>".
    opened: dict[str, int] = {}
    everyone: dict[str, asyncio.Event] = {}

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        group = seat_inventory_pb2.StreamAvailabilityRequest.FromString(request).event_id
        opened[group] = opened.get(group, 0) + 1
        go = everyone.setdefault(group, asyncio.Event())
        if opened[group] >= int(group.rpartition("-")[2]):
            go.set()
        try:
            yield snapshot
            await go.wait()
            while True:
                yield batch
        finally:
            opened[group] -= 1
            if not opened[group]:
                del everyone[group]

    handler = grpc.method_handlers_generic_handler(
        "seatinventory.v1.SeatInventory",
        {"StreamAvailability": grpc.unary_stream_rpc_method_handler(stream)},
    )
    server = grpc.aio.server(options=[("grpc.server.max_pending_requests", 10_000)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    from seat_inventory.runtime import tune_gc

    tune_gc(args.gc_threshold)  # the same runtime as the server it is the ceiling of
    await server.wait_for_termination()


# --------------------------------------------------------------------------- orchestrator


def python() -> str:
    return sys.executable


async def spawn(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )


def client_args(target: str, event_id: str, streams: int, mode: str) -> list[str]:
    return ["--target", target, "--event", event_id, "--streams", str(streams), "--mode", mode]


async def measure(
    target: str, event_id: str, k: int, mode: str, seconds: float, warmup_s: float
) -> tuple[dict[str, int], list[int], float, float]:
    """Run the client processes against ``target``; (counts, histogram, window seconds,
    the client processes' CPU %)."""
    per_client = [k] if k <= 1000 else [k // 2, k - k // 2]
    clients = [
        await spawn(python(), __file__, "--client", *client_args(target, event_id, n, mode))
        for n in per_client
    ]
    stats = [ProcStat(proc.pid) for proc in clients]
    cpu_tasks = [
        asyncio.create_task(cpu_over_window(stat, warmup_s + 0.5, seconds - 1.0)) for stat in stats
    ]
    try:
        counts, hist, window = await _measure(clients, seconds, warmup_s, k, mode)
        return counts, hist, window, sum(await asyncio.gather(*cpu_tasks))
    finally:
        for task in cpu_tasks:
            task.cancel()
        for proc in clients:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _measure(
    clients: list[asyncio.subprocess.Process], seconds: float, warmup_s: float, k: int, mode: str
) -> tuple[dict[str, int], list[int], float]:
    for proc in clients:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"client failed to start: {line!r}")
    start = time.time() + warmup_s
    end = start + seconds
    for proc in clients:
        assert proc.stdin is not None
        proc.stdin.write(f"GO {start} {end}\n".encode())
        await proc.stdin.drain()
    counts: dict[str, int] = {}
    hist = [0] * (MAX_MS + 1)
    for proc in clients:
        assert proc.stdout is not None
        result = json.loads(await asyncio.wait_for(proc.stdout.readline(), seconds + 120))
        await proc.wait()
        for key, n in result["counts"].items():
            counts[key] = counts.get(key, 0) + n
        for ms, n in result["hist"].items():
            hist[int(ms)] += n
        if result["codes"]:
            print(f"  stream errors at K={k} ({mode}): {result['codes']}", flush=True)
    return counts, hist, end - start


def percentile(hist: Sequence[int], q: float) -> float:
    total = sum(hist)
    if total == 0:
        return float("nan")
    rank, seen = q * total, 0
    for ms, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return float(ms)
    return float(MAX_MS)


class Driver:
    """One change per op at a steady rate: reserve the next seat, or release the
    oldest hold. Seats rotate over the whole map, so no two live holds collide."""

    def __init__(self, inventory: Any, event_id: str) -> None:
        self.inventory, self.event_id = inventory, event_id
        self.holds: list[tuple[str, str]] = []  # (hold id, holder)
        self.next_seat = 0
        self.failed: dict[str, int] = {}
        self.call_ms: list[float] = []  # how long each Reserve / Release took

    async def _op(self, i: int) -> None:
        from seatinventory.v1 import seat_inventory_pb2 as si

        started = time.monotonic()
        try:
            if i % 2 == 0 or not self.holds:
                self.next_seat += 1
                seat = f"A-{self.next_seat % SEATS + 1}"
                # A holder per seat: one holder may hold only so many seats at once.
                holder = f"driver-{seat}"
                reply = await self.inventory.Reserve(
                    si.ReserveRequest(event_id=self.event_id, seat_ids=[seat], holder_id=holder),
                    timeout=5,
                )
                self.holds.append((reply.hold.hold_id, holder))
            else:
                hold_id, holder = self.holds.pop(0)
                await self.inventory.Release(
                    si.ReleaseRequest(hold_id=hold_id, holder_id=holder), timeout=5
                )
        except grpc.aio.AioRpcError as err:
            self.failed[err.code().name] = self.failed.get(err.code().name, 0) + 1
        self.call_ms.append((time.monotonic() - started) * 1000)

    async def run(self, rate: float, stop: asyncio.Event) -> int:
        n, started = 0, time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._op(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)
        return n


@contextlib.asynccontextmanager
async def redis_server(url: str | None) -> AsyncIterator[str]:
    if url:
        yield url
        return
    port, workdir = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = await asyncio.create_subprocess_exec(
        "redis-server", *options, "--dir", workdir, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def orchestrate(args: argparse.Namespace) -> None:
    from seatinventory.v1 import inventory_admin_pb2 as ia
    from seatinventory.v1 import inventory_admin_pb2_grpc, seat_inventory_pb2_grpc, types_pb2

    ks = [100, 500] if args.quick else [100, 500, 1000, 2000]
    if args.ks:
        ks = [int(k) for k in args.ks.split(",")]
    seconds = 4.0 if args.quick else 8.0
    workdir = tempfile.mkdtemp(prefix="bench-fanout-")
    port, ceiling_port = free_port(), free_port()
    async with redis_server(args.redis_url) as redis_url:
        database = args.database_url or f"sqlite:///{workdir}/bench.db"
        serve = ["--port", str(port), "--tick", str(args.tick)]
        serve += ["--max-messages", str(args.max_messages)]
        gc_log = Path(workdir) / "gc.json"
        serve += ["--gc-threshold", str(args.gc_threshold), "--gc-log", str(gc_log)]
        backends = ["--target", redis_url, "--event", database]
        server = await spawn(python(), __file__, "--serve", *serve, *backends)
        ceiling = await spawn(
            python(),
            __file__,
            "--ceiling",
            "--port",
            str(ceiling_port),
            "--gc-threshold",
            str(args.gc_threshold),
        )
        rows = []
        try:
            await wait_port(port)
            await wait_port(ceiling_port)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            admin = inventory_admin_pb2_grpc.InventoryAdminStub(channel)
            inventory = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
            event_id = f"bench-{int(time.time())}"
            seats = [types_pb2.SeatSpec(seat_id=f"A-{i}") for i in range(1, SEATS + 1)]
            await admin.CreateEvent(
                ia.CreateEventRequest(event_id=event_id, name="bench", seats=seats), timeout=60
            )
            stat, ceiling_stat = ProcStat(server.pid), ProcStat(ceiling.pid)
            driving = Driver(inventory, event_id)
            for k in ks:
                await asyncio.sleep(1.0)  # let the previous round's streams go
                rss_before = stat.rss_kb()
                stop = asyncio.Event()
                driver = asyncio.create_task(driving.run(args.rate, stop))
                settle = 2.0 + 0.5  # streams opened and warmed up before the window
                cpu_task = asyncio.create_task(cpu_over_window(stat, settle, seconds))
                window_at = time.time() + settle
                gc_window = (window_at, window_at + seconds)
                counts, hist, window, client_cpu = await measure(
                    f"127.0.0.1:{port}", event_id, k, "latency", seconds, 2.0
                )
                rss_after = stat.rss_kb()
                stop.set()
                ops = await driver
                cpu = await cpu_task
                ceiling_cpu_task = asyncio.create_task(cpu_over_window(ceiling_stat, 2.5, 4.0))
                top, _, top_window, top_client_cpu = await measure(
                    f"127.0.0.1:{ceiling_port}", f"ceiling-{k}", k, "count", 4.0, 2.0
                )
                ceiling_cpu = await ceiling_cpu_task
                rows.append(
                    {
                        "k": k,
                        "changes_s": counts["changes"] / window / k,
                        "msgs_s": counts["messages"] / window,
                        "p50": percentile(hist, 0.50),
                        "p99": percentile(hist, 0.99),
                        "max": percentile(hist, 1.0),
                        "cpu": cpu,
                        "gc": gc_pauses(gc_log, *gc_window),
                        "client_cpu": client_cpu,
                        "ceiling_client_cpu": top_client_cpu,
                        "rss_kb": (rss_after - rss_before) / k,
                        "snapshots": counts["snapshots"],
                        "errors": counts["errors"] + top["errors"] + sum(driving.failed.values()),
                        "ceiling": top["messages"] / top_window,
                        "ceiling_cpu": ceiling_cpu,
                        "ops": ops,
                        "call_p99": sorted(driving.call_ms)[int(0.99 * len(driving.call_ms))],
                    }
                )
                print_row(rows[-1], header=len(rows) == 1)
                if driving.failed:
                    print(f"  driver calls failed: {driving.failed}", flush=True)
                driving.failed.clear()
                driving.call_ms.clear()
            await channel.close()
        finally:
            for proc in (server, ceiling):
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\n{os.cpu_count()} CPUs shared by redis, the server, the client processes and "
        f"the driver; {args.rate:.0f} changes/s; server tick {args.tick * 1000:.0f} ms, "
        f"stretched past {args.max_messages:.0f} messages/s.\n"
        "changes/s = changes each subscriber received per second; msgs/s = messages "
        "delivered to all subscribers; latency = arrival - the change's commit in Redis;\n"
        "call p99 = the driver's Reserve/Release latency (ms) while the fan-out runs;\n"
        "GC = the server's garbage-collector pauses in the window: ms per second, longest;\n"
        "ceiling = pre-built messages/s one grpc.aio process pushes to the same K "
        "streams and clients (its CPU beside it)."
    )


async def cpu_over_window(stat: ProcStat, delay_s: float, seconds: float) -> float:
    await asyncio.sleep(delay_s)
    cpu0, t0 = stat.cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (stat.cpu_s() - cpu0) / (time.monotonic() - t0)


def print_row(row: dict[str, Any], *, header: bool) -> None:
    if header:
        print(
            f"{'K':>5} {'changes/s':>9} {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'srv CPU%':>8} {'cli CPU%':>8} {'RSS/sub KB':>10} {'resnap':>6} "
            f"{'err':>4} {'call p99':>8} {'GC ms/s':>7} {'GC max':>6} | "
            f"{'ceiling msgs/s':>14} {'ceil CPU%':>9} {'cli CPU%':>8}"
        )
    print(
        f"{row['k']:>5} {row['changes_s']:>9.1f} {row['msgs_s']:>8.0f} {row['p50']:>7.0f} "
        f"{row['p99']:>7.0f} {row['max']:>7.0f} {row['cpu']:>8.0f} {row['client_cpu']:>8.0f} "
        f"{row['rss_kb']:>10.1f} {row['snapshots']:>6} {row['errors']:>4} "
        f"{row['call_p99']:>8.0f} {row['gc'][0]:>7.1f} {row['gc'][1]:>6.0f} | "
        f"{row['ceiling']:>14.0f} "
        f"{row['ceiling_cpu']:>9.0f} {row['ceiling_client_cpu']:>8.0f}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 100 and 500, short windows")
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument(
        "--tick",
        type=float,
        default=0.025,
        help="the server's stream tick, seconds (default 0.025, as served)",
    )
    parser.add_argument(
        "--max-messages",
        type=float,
        default=20_000,
        help="the server's stream message budget per second (default 20000, as served)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=50_000,
        help="the server's (and the ceiling's) --gc-threshold (default 50000, as served; "
        "0: Python's defaults)",
    )
    parser.add_argument("--ks", help="comma-separated subscriber counts to run instead")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--database-url", help="use this database instead of a SQLite file")
    # internal roles of the child processes
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--event", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("latency", "count"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gc-log", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        asyncio.run(client_main(args))
    elif args.serve:
        asyncio.run(serve_main(args))
    elif args.ceiling:
        asyncio.run(ceiling_main(args))
    else:
        asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
