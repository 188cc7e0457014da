"""The side-by-side benchmark: one command, one machine, one load generator.

    .venv/bin/python bench/run.py            # everything, 3 runs per figure (~8 min)
    .venv/bin/python bench/run.py --quick    # the same rows, 1 run each, smaller (~2 min)
    make bench                               # the full run, writing bench/RESULTS.md

It starts its own redis-server and PostgreSQL database, then the servers
(``seat-inventory serve``, the empty-RPC ceiling and the alternatives in
``alternatives/``), and drives each with ``loadgen.py``. Every figure is the
median of the runs, beside its ratio to the ceiling or to the peer it was
measured with, run for run; the generator's and the server's CPU (cores) are
printed beside it. Writes RESULTS.md (``--out``) and the raw figures as JSON
(``--json``). Targets print pass/miss; nothing here fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import pickle
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get(
    "SEAT_INVENTORY_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RESERVE = "/seatinventory.v1.SeatInventory/Reserve"
CONFIRM = "/seatinventory.v1.SeatInventory/Confirm"
RELEASE = "/seatinventory.v1.SeatInventory/Release"
AVAILABILITY = "/seatinventory.v1.SeatInventory/GetAvailability"
STREAM = "/seatinventory.v1.SeatInventory/StreamAvailability"
SHORT_TTL_MS = 10  # low-contention holds lapse at once: every pair is free again next lap


@dataclass
class Config:
    seconds: float = 4.0
    warmup: float = 1.0
    reps: int = 3
    concurrency: int = 64
    read_concurrency: int = 8
    big_event: int = 50_000
    small_event: int = 100
    read_sizes: tuple[int, int] = (5_000, 50_000)
    book_pairs: int = 8_000  # bookings per raw asyncpg run
    prefill: int = 5_000  # holds per Confirm / Release run
    hot_seats: int = 2_000
    expiries: int = 100_000
    expiry_reps: int = 1  # ~70 s each at 100,000 (setup, then the sweep)
    only: frozenset[str] = frozenset()
    workers: int = 2
    h2load: bool = True

    @classmethod
    def quick(cls) -> Config:
        return cls(
            seconds=2.0,
            warmup=0.5,
            reps=1,
            book_pairs=4_000,
            prefill=2_500,
            hot_seats=1_000,
            expiries=20_000,
            expiry_reps=1,
        )

    @classmethod
    def smoke(cls) -> Config:
        return cls(
            seconds=0.5,
            warmup=0.2,
            reps=1,
            concurrency=8,
            big_event=1_000,
            only=frozenset({"hot", "layers"}),
            h2load=False,
        )

    def wants(self, group: str) -> bool:
        return not self.only or group in self.only


# --------------------------------------------------------------------------- processes


class Proc:
    """A child process and its CPU (with its children: server workers)."""

    def __init__(self, name: str, argv: Sequence[str], **kwargs: Any) -> None:
        self.name = name
        self.popen = subprocess.Popen(list(argv), **kwargs)

    def cpu_s(self) -> float:
        import psutil

        try:
            proc = psutil.Process(self.popen.pid)
            total = sum(proc.cpu_times()[:2])
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += sum(child.cpu_times()[:2])
            return float(total)
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class CpuSampler:
    """Samples the CPU seconds of the watched processes every 50 ms, so a run's
    server CPU can be read over exactly the window its generator reports."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.loads: list[float] = []  # the 1-minute load average, every sample
        self.procs: dict[str, Proc] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, proc: Proc) -> None:
        self.procs[proc.name] = proc
        self.samples[proc.name] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            now = time.time()
            self.loads.append(os.getloadavg()[0])
            for name, proc in list(self.procs.items()):
                series = self.samples[name]
                series.append((now, proc.cpu_s()))
                if len(series) > 4000:
                    del series[:2000]
            await asyncio.sleep(0.05)

    def rate(self, name: str, start: float, end: float) -> float:
        series = self.samples.get(name, [])
        inside = [s for s in series if start - 0.05 <= s[0] <= end + 0.05]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def grpc_error() -> type[Exception]:
    import grpc

    return grpc.aio.AioRpcError


# The layers group's rows, in order: each adds one thing Reserve does.
LAYERS = (
    "empty unary RPC (the ceiling)",
    "+ decode ReserveRequest, encode a ReserveResponse",
    "+ one script call on Redis (batched, as the store makes it)",
    "+ the store's real reserve.lua call instead (hold id, arguments, reply, a hold)",
    "Reserve (the service: validation, ids, reserve.lua, errors, metrics, request ids)",
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, timeout_s: float = 60.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if proc is not None and proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}") from None
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[tuple[str, Proc]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is needed (Debian: apt-get install redis-server)")
    port, workdir = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    options += ["--dir", workdir, "--maxmemory-policy", "noeviction"]
    proc = Proc("redis", [binary, *options], stdout=subprocess.DEVNULL)
    try:
        await wait_port(port, proc=proc)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    import asyncpg

    name = "seatinv_bench_" + uuid.uuid4().hex[:10]
    try:
        admin = await asyncio.wait_for(asyncpg.connect(PG_ADMIN_URL), 10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"bench: PostgreSQL is needed: cannot reach {PG_ADMIN_URL} ({exc}); "
            "set SEAT_INVENTORY_TEST_PG_ADMIN_URL"
        ) from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def serve_has_workers() -> bool:
    out = subprocess.run(
        [PYTHON, "-m", "seat_inventory", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--workers" in out


# --------------------------------------------------------------------------- requests


def seat_ids(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


def reserve_requests(
    event_id: str, pairs: Sequence[Sequence[str]], ttl_ms: int, holders: int = 1000
) -> list[bytes]:
    from google.protobuf import duration_pb2
    from seatinventory.v1 import seat_inventory_pb2 as pb

    ttl = duration_pb2.Duration()
    ttl.FromMilliseconds(ttl_ms)
    return [
        pb.ReserveRequest(
            event_id=event_id, seat_ids=list(pair), holder_id=f"u{i % holders}", ttl=ttl
        ).SerializeToString()
        for i, pair in enumerate(pairs)
    ]


def disjoint_pairs(n_seats: int, offset: int = 0, count: int | None = None) -> list[list[str]]:
    count = n_seats // 2 if count is None else count
    return [[f"s{offset + 2 * i}", f"s{offset + 2 * i + 1}"] for i in range(count)]


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


# --------------------------------------------------------------------------- the bench


@dataclass
class Run:
    rps: float
    ok: int
    calls: int
    p50_ms: float | None
    p99_ms: float | None
    gen_cpu: float
    srv_cpu: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    group: str
    name: str
    runs: list[Run] = field(default_factory=list)
    ratio_to: str = ""
    ratios: list[float] = field(default_factory=list)
    note: str = ""
    unit: str = "calls/s"

    def median(self, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        values = [v for v in values if v == v]  # drop NaN
        return statistics.median(values) if values else float("nan")

    def extra_median(self, key: str) -> float:
        values = [r.extra[key] for r in self.runs if key in r.extra]
        return statistics.median(values) if values else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "median": self.median("rps"),
            "ratio": statistics.median(self.ratios) if self.ratios else None,
            "ratio_to": self.ratio_to,
            "gen_cpu": self.median("gen_cpu"),
            "srv_cpu": self.median("srv_cpu"),
            "note": self.note,
            "runs": [r.__dict__ for r in self.runs],
        }


class Bench:
    def __init__(self, cfg: Config, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.sampler = CpuSampler()
        self.rows: dict[str, Row] = {}
        self.order: list[str] = []
        self.notes: list[str] = []
        self.redis_url = ""
        self.dsn = ""
        self._event_n = 0
        self.profile_dir: Path | None = None
        self.load_before = os.getloadavg()[0]
        self.burst_doubles: dict[str, int] = {}
        self.profile_rows: set[str] = set()
        self.log: Callable[[str], None] = lambda line: print(line, flush=True)

    def row(self, group: str, name: str, **kwargs: Any) -> Row:
        if name not in self.rows:
            self.rows[name] = Row(group, name, **kwargs)
            self.order.append(name)
        return self.rows[name]

    # ---- servers

    def start_ours(self, port: int, workers: int = 1) -> Proc:
        argv = [PYTHON, "-m", "seat_inventory", "serve", "--port", str(port)]
        argv += ["--redis-url", self.redis_url, "--database-url", self.dsn]
        argv += ["--min-ttl", str(SHORT_TTL_MS / 1000), "--log-level", "warning"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        env = {**os.environ, "SEAT_INVENTORY_LOG_LEVEL": "warning"}
        log = (self.workdir / f"ours{workers}.log").open("ab")
        proc = Proc(f"ours{workers}", argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.sampler.watch(proc)
        return proc

    def start_role(self, role: str, port: int, name: str, **extra: Any) -> Proc:
        argv = [PYTHON, str(BENCH / "run.py"), "--role", role, "--port", str(port)]
        proc = Proc(name, [*argv, "--extra", json.dumps(extra)])
        self.sampler.watch(proc)
        return proc

    async def create_event(self, target: str, n_seats: int, prefix: str = "ev") -> str:
        import grpc
        from seatinventory.v1 import inventory_admin_pb2 as ia
        from seatinventory.v1 import inventory_admin_pb2_grpc as ia_grpc
        from seatinventory.v1 import types_pb2

        self._event_n += 1
        event_id = f"{prefix}{self._event_n}-{uuid.uuid4().hex[:6]}"
        seats = [types_pb2.SeatSpec(seat_id=s) for s in seat_ids(n_seats)]
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        request = ia.CreateEventRequest(event_id=event_id, name=event_id, seats=seats)
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            stub = ia_grpc.InventoryAdminStub(channel)
            for attempt in range(5):  # a loaded machine can time a big event's load out
                try:
                    await stub.CreateEvent(request, timeout=300)
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == 4:
                        raise
                    self.log(f"  CreateEvent of {n_seats:,} seats: {err.details()}; again")
                    await asyncio.sleep(2)
        return event_id

    # ---- one measured run

    async def load(
        self, job: dict[str, Any], requests: list[Any], server: str, *, label: str
    ) -> Run:
        cfg = self.cfg
        path = self.workdir / f"req-{uuid.uuid4().hex[:8]}.pkl"
        path.write_bytes(pickle.dumps(requests))
        job = {"concurrency": cfg.concurrency, **job, "requests": str(path)}
        job_path = path.with_suffix(".json")
        job_path.write_text(json.dumps(job))
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            str(BENCH / "loadgen.py"),
            str(job_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            if not line.startswith(b"READY"):
                raise RuntimeError(f"load generator failed to start for {label}: {line!r}")
            start = time.time() + cfg.warmup
            end = start + job.get("seconds", cfg.seconds)
            proc.stdin.write(f"GO {start} {end}\n".encode())
            await proc.stdin.drain()
            spy = await self.maybe_profile(server, label, start, end)
            out = await asyncio.wait_for(proc.stdout.readline(), end - time.time() + 120)
            if spy is not None:
                await spy.wait()
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            path.unlink(missing_ok=True)
            job_path.unlink(missing_ok=True)
        result = json.loads(out)
        await asyncio.sleep(0.1)  # let the sampler pass the window's end
        srv = self.sampler.rate(server, *result["window"]) if server else float("nan")
        run = Run(
            rps=result["rps"],
            ok=result["ok"],
            calls=result["calls"],
            p50_ms=result["p50_ms"],
            p99_ms=result["p99_ms"],
            gen_cpu=result["gen_cpu"],
            srv_cpu=srv,
            extra={
                k: result[k]
                for k in ("double_reservations", "granted_seats", "outcomes")
                if k in result
            },
        )
        if server != "redis":
            run.extra["redis_cpu"] = self.sampler.rate("redis", *result["window"])
        if server != "postgres" and "postgres" in self.sampler.procs:
            run.extra["pg_cpu"] = self.sampler.rate("postgres", *result["window"])
        self.log(
            f"  {label:<34} {run.rps:>9.0f}/s  ok {run.ok:>6}/{run.calls:<6} "
            f"p50 {run.p50_ms or 0:>6.1f} ms  gen {run.gen_cpu:.2f}  srv {run.srv_cpu:.2f} cores"
            + (
                f"  doubles {result['double_reservations']}"
                if "double_reservations" in result
                else ""
            )
        )
        return run

    async def maybe_profile(
        self, server: str, label: str, start: float, end: float
    ) -> asyncio.subprocess.Process | None:
        """py-spy the server over this run's window: the first run of each label
        in ``--profile-rows``, into ``--profile`` DIR (collapsed stacks)."""
        if (
            not self.profile_dir
            or label not in self.profile_rows
            or server not in self.sampler.procs
        ):
            return None
        self.profile_rows.discard(label)
        spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        pid = self.sampler.procs[server].popen.pid
        name = "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")
        out = self.profile_dir / f"{name}.txt"
        await asyncio.sleep(max(0.0, start - time.time()))
        return await asyncio.create_subprocess_exec(
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, int(end - time.time()))),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def h2load(self, port: int, body: bytes, server: str, connections: int = 1) -> Run:
        """h2load replaying one request: ``connections`` connections (several
        processes on one port each get whole connections) sharing the usual
        number of calls in flight."""
        cfg = self.cfg
        data = self.workdir / "h2load.bin"
        data.write_bytes(grpc_frame(body))
        streams = max(1, cfg.concurrency // connections)
        argv = ["h2load", "-c", str(connections), "-t", "1", "-m", str(streams)]
        argv += ["-D", str(int(max(1, cfg.seconds))), f"--warm-up-time={max(1, int(cfg.warmup))}"]
        argv += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(data)]
        argv += [f"http://127.0.0.1:{port}{RESERVE}"]
        proc = Proc("h2load", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.sampler.watch(proc)
        t0 = time.time()
        out, _ = await asyncio.to_thread(proc.popen.communicate)
        t1 = time.time()
        window = (t1 - cfg.seconds - 0.2, t1 - 0.2)
        srv = self.sampler.rate(server, *window)
        gen = self.sampler.rate("h2load", t0 + max(1, cfg.warmup) + 0.3, t1 - 0.2)
        rps = float("nan")
        ok = 0
        for line in out.splitlines():
            if line.startswith("finished in"):
                rps = float(line.split(",")[1].split()[0])
            if line.startswith("status codes:"):
                ok = int(line.split()[2])
        del self.sampler.procs["h2load"]
        self.log(f"  {'ceiling (h2load)':<34} {rps:>9.0f}/s  gen {gen:.2f}  srv {srv:.2f} cores")
        return Run(rps, ok, ok, None, None, gen, srv)

    def pair(self, row: Row, run: Run, peer: Run, peer_name: str) -> None:
        row.runs.append(run)
        row.ratio_to = peer_name
        if peer.rps:
            row.ratios.append(run.rps / peer.rps)

    # ---- groups

    async def hot_path(self, ours: str, ceiling_port: int | None, target: str) -> None:
        """Ceiling, Reserve on 50k and 100 seats, and the raw Lua script, run for run."""
        cfg = self.cfg
        self.log("hot path: empty-RPC ceiling, Reserve (2 seats, low contention), raw Lua")
        big = await self.create_event(target, cfg.big_event, "big")
        small = await self.create_event(target, cfg.small_event, "small")
        raw = await self.create_event(target, cfg.big_event, "lua")
        big_req = reserve_requests(big, disjoint_pairs(cfg.big_event), SHORT_TTL_MS)
        small_req = reserve_requests(small, disjoint_pairs(cfg.small_event), SHORT_TTL_MS)
        jobs: dict[str, tuple[dict[str, Any], list[bytes], str, str]] = {
            "big": (
                {"target": target, "method": RESERVE},
                big_req,
                ours,
                f"Reserve, {cfg.big_event:,}-seat event",
            ),
            "small": (
                {"target": target, "method": RESERVE},
                small_req,
                ours,
                f"Reserve, {cfg.small_event}-seat event",
            ),
        }
        if ceiling_port is not None:
            jobs["ceiling"] = (
                {"target": f"127.0.0.1:{ceiling_port}", "method": RESERVE},
                big_req,
                "ceiling",
                "ceiling: empty unary RPC",
            )
        for rep in range(cfg.reps):
            self.log(f" run {rep + 1}/{cfg.reps}")
            # ABBA: the order flips every run, so a drift of the machine favours no row.
            order = ["ceiling", "big", "small"] if rep % 2 == 0 else ["small", "big", "ceiling"]
            runs: dict[str, Run] = {}
            for key in order:
                if key in jobs:
                    job, requests, server, label = jobs[key]
                    runs[key] = await self.load(job, requests, server, label=label)
            ceil, res, small_run = runs.get("ceiling"), runs["big"], runs["small"]
            if ceil is not None:
                self.row("hot", "ceiling: empty unary RPC (1 process)").runs.append(ceil)
            row = self.row("hot", f"Reserve, 2 seats, {cfg.big_event:,}-seat event")
            if ceil is not None:
                self.pair(row, res, ceil, "ceiling")
            else:
                row.runs.append(res)
            self.pair(
                self.row("scale", f"Reserve, 2 seats, {cfg.small_event}-seat event"),
                small_run,
                ceil or res,
                "ceiling" if ceil else "",
            )
            scale = self.row("scale", f"Reserve on {cfg.big_event:,} vs {cfg.small_event} seats")
            self.pair(scale, res, small_run, f"Reserve on {cfg.small_event} seats")
            lua = await self.load(
                {
                    "kind": "lua",
                    "redis_url": self.redis_url,
                    "event_id": raw,
                    "ttl_ms": SHORT_TTL_MS,
                },
                disjoint_pairs(cfg.big_event),
                "redis",
                label="raw: reserve.lua on Redis",
            )
            self.pair(
                self.row("raw", "raw: reserve.lua straight on Redis (redis-py)"),
                lua,
                res,
                "Reserve",
            )
        if ceiling_port is not None and cfg.h2load and shutil.which("h2load"):
            for _ in range(cfg.reps):
                self.row("hot", "ceiling: empty unary RPC (h2load, C)").runs.append(
                    await self.h2load(ceiling_port, big_req[0], "ceiling")
                )

    async def layers(
        self, ours: str, ceiling_port: int, layer_ports: dict[str, int], target: str
    ) -> None:
        """Reserve's server time taken apart: the ceiling, then one layer of what
        Reserve does added at a time, then Reserve itself, run for run."""
        cfg = self.cfg
        self.log("layers: where Reserve's server time goes")
        event = await self.create_event(target, cfg.big_event, "layers")
        requests = reserve_requests(event, disjoint_pairs(cfg.big_event), SHORT_TTL_MS)
        steps = [
            ("ceiling", f"127.0.0.1:{ceiling_port}", "ceiling", LAYERS[0]),
            ("messages", f"127.0.0.1:{layer_ports['messages']}", "layer-messages", LAYERS[1]),
            ("redis", f"127.0.0.1:{layer_ports['redis']}", "layer-redis", LAYERS[2]),
            ("store", f"127.0.0.1:{layer_ports['store']}", "layer-store", LAYERS[3]),
            ("ours", target, ours, LAYERS[4]),
        ]
        for rep in range(cfg.reps):
            self.log(f" run {rep + 1}/{cfg.reps}")
            order = steps if rep % 2 == 0 else steps[::-1]
            runs: dict[str, Run] = {}
            for key, address, server, label in order:
                run = await self.load(
                    {"target": address, "method": RESERVE}, requests, server, label=label
                )
                run.extra["srv_us"] = 1e6 * run.srv_cpu / max(run.rps, 1e-9)
                runs[key] = run
            for key, _, _, label in steps:
                self.pair(self.row("layers", label), runs[key], runs["ceiling"], "ceiling")

    async def prefill(
        self, target: str, event_id: str, pairs: list[list[str]]
    ) -> list[tuple[str, str]]:
        """Hold these pairs (long ttl, a holder per pair); returns (hold id, holder)s."""
        import grpc
        from google.protobuf import duration_pb2
        from seatinventory.v1 import seat_inventory_pb2 as pb
        from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc

        ttl = duration_pb2.Duration(seconds=600)
        holds: list[tuple[str, str]] = []
        queue = list(enumerate(pairs))
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.SeatInventoryStub(channel)

            async def worker() -> None:
                while queue:
                    i, pair = queue.pop()
                    holder = f"b{i}"
                    reply = await stub.Reserve(
                        pb.ReserveRequest(
                            event_id=event_id, seat_ids=pair, holder_id=holder, ttl=ttl
                        ),
                        timeout=30,
                    )
                    holds.append((reply.hold.hold_id, holder))

            await asyncio.gather(*(worker() for _ in range(64)))
        return holds

    async def booking(self, ours: str, target: str) -> None:
        """Raw asyncpg booking INSERTs, then Confirm and Release, run for run."""
        from seatinventory.v1 import seat_inventory_pb2 as pb

        cfg = self.cfg
        self.log("bookings: raw asyncpg INSERTs, Confirm (PostgreSQL), Release")
        n_raw, n_hold = 2 * cfg.book_pairs, 2 * cfg.prefill
        # Release runs about as fast as Reserve: 4x the holds, or they run out in
        # the warm-up and the window counts nothing.
        n_release = 4 * n_hold
        for rep in range(cfg.reps):
            self.log(f" run {rep + 1}/{cfg.reps}")
            event = await self.create_event(target, n_raw + n_hold + n_release, "book")
            raw = await self.load(
                {"kind": "asyncpg", "dsn": self.dsn, "event_id": event, "pool": 10, "cycle": False},
                disjoint_pairs(n_raw),
                "postgres",
                label="raw: booking INSERTs via asyncpg",
            )
            self.row("raw", "raw: booking INSERTs straight through asyncpg").runs.append(raw)
            holds = await self.prefill(target, event, disjoint_pairs(n_hold, n_raw))
            confirms = [
                pb.ConfirmRequest(hold_id=h, holder_id=who, order_ref="o").SerializeToString()
                for h, who in holds
            ]
            run = await self.load(
                {"target": target, "method": CONFIRM, "cycle": False},
                confirms,
                ours,
                label="Confirm (PostgreSQL)",
            )
            self.pair(self.row("hot", "Confirm (PostgreSQL)"), run, raw, "raw asyncpg INSERTs")
            holds = await self.prefill(target, event, disjoint_pairs(n_release, n_raw + n_hold))
            releases = [
                pb.ReleaseRequest(hold_id=h, holder_id=who).SerializeToString() for h, who in holds
            ]
            run = await self.load(
                {"target": target, "method": RELEASE, "cycle": False},
                releases,
                ours,
                label="Release",
            )
            ceiling = self.rows.get("ceiling: empty unary RPC (1 process)")
            row = self.row("hot", "Release")
            row.runs.append(run)
            if ceiling and ceiling.runs:
                row.ratio_to = "ceiling (median)"
                row.ratios.append(run.rps / ceiling.median("rps"))

    async def contended(self, ours: str, target: str, naive_port: int, dbonly_port: int) -> None:
        """The same contended workload on ours, naive and database-only, run for run."""
        from alternatives.dbonly import create_event as dbonly_event

        cfg = self.cfg
        self.log(
            f"contention: 2 random seats of {cfg.hot_seats:,}, holds outlive the run "
            "(most calls lose); ours vs naive vs database-only"
        )
        rng = random.Random(7)
        for rep in range(cfg.reps):
            self.log(f" run {rep + 1}/{cfg.reps}")
            hot = seat_ids(cfg.hot_seats)
            pairs = [rng.sample(hot, 2) for _ in range(40_000)]
            event = await self.create_event(target, cfg.hot_seats, "hot")
            job = {"grants_of": pairs}
            ttl_ms = 600_000
            mine = await self.load(
                {**job, "target": target, "method": RESERVE},
                reserve_requests(event, pairs, ttl_ms),
                ours,
                label="Reserve, contended (ours)",
            )
            naive = await self.load(
                {**job, "target": f"127.0.0.1:{naive_port}", "method": RESERVE},
                reserve_requests(event, pairs, ttl_ms),
                "naive",
                label="naive GET-then-SET",
            )
            await dbonly_event(self.dsn, event, hot)
            db = await self.load(
                {**job, "target": f"127.0.0.1:{dbonly_port}", "method": RESERVE},
                reserve_requests(event, pairs, ttl_ms),
                "dbonly",
                label="database-only SKIP LOCKED",
            )
            self.pair(self.row("contended", "Reserve, contended (ours)"), mine, db, "database-only")
            self.pair(self.row("contended", "(a) naive GET-then-SET-with-TTL"), naive, mine, "ours")
            self.pair(
                self.row("contended", "(b) database-only, FOR UPDATE SKIP LOCKED"), db, mine, "ours"
            )

    async def bursts(self, target: str, naive_port: int, dbonly_port: int) -> None:
        """The flash-sale moment: 64 buyers at once for the same 2 seats, 20 times.
        Every grant beyond the first of a burst is a double reservation."""
        import grpc
        from alternatives.dbonly import create_event as dbonly_event
        from google.protobuf import duration_pb2
        from seatinventory.v1 import seat_inventory_pb2 as pb
        from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc

        rounds, buyers = 20, self.cfg.concurrency
        event = await self.create_event(target, 2 * rounds, "burst")
        await dbonly_event(self.dsn, event, seat_ids(2 * rounds))
        ttl = duration_pb2.Duration(seconds=600)
        for name, where in (
            ("Reserve, contended (ours)", target),
            ("(a) naive GET-then-SET-with-TTL", f"127.0.0.1:{naive_port}"),
            ("(b) database-only, FOR UPDATE SKIP LOCKED", f"127.0.0.1:{dbonly_port}"),
        ):
            doubles = 0
            async with grpc.aio.insecure_channel(where) as channel:
                stub = pb_grpc.SeatInventoryStub(channel)

                async def buy(seats: list[str], who: int, stub: Any = stub) -> bool:
                    try:
                        await stub.Reserve(
                            pb.ReserveRequest(
                                event_id=event, seat_ids=seats, holder_id=f"x{who}", ttl=ttl
                            ),
                            timeout=30,
                        )
                    except grpc.aio.AioRpcError:
                        return False
                    return True

                for r in range(rounds):
                    seats = [f"s{2 * r}", f"s{2 * r + 1}"]
                    won = await asyncio.gather(*(buy(seats, i) for i in range(buyers)))
                    doubles += 2 * max(0, sum(won) - 1)
            self.burst_doubles[name] = doubles
            self.log(f"  {name:<44} {doubles:>5} double reservations in {rounds} bursts")

    async def workers_rows(self, ceiling2_port: int | None, ours2: tuple[str, str] | None) -> None:
        cfg = self.cfg
        self.log(f"{cfg.workers} worker processes")
        target = ours2[1] if ours2 else ""
        big = await self.create_event(target, cfg.big_event, "w") if ours2 else ""
        requests = reserve_requests(big or "w", disjoint_pairs(cfg.big_event), SHORT_TTL_MS)
        # The kernel hands each process whole connections: 4 per process, as for h2load.
        channels = 4 * cfg.workers
        for rep in range(cfg.reps):
            self.log(f" run {rep + 1}/{cfg.reps}")
            ceil = None
            if ceiling2_port is not None:
                ceil = await self.load(
                    {
                        "target": f"127.0.0.1:{ceiling2_port}",
                        "method": RESERVE,
                        "channels": channels,
                    },
                    requests,
                    "ceiling2",
                    label=f"ceiling, {cfg.workers} processes",
                )
                self.row(
                    "workers", f"ceiling: empty unary RPC ({cfg.workers} processes)"
                ).runs.append(ceil)
            if ours2 is not None:
                run = await self.load(
                    {"target": target, "method": RESERVE, "channels": channels},
                    requests,
                    ours2[0],
                    label=f"Reserve, {cfg.workers} workers",
                )
                row = self.row("workers", f"Reserve, 2 seats ({cfg.workers} workers)")
                if ceil is not None:
                    self.pair(row, run, ceil, f"ceiling ({cfg.workers} processes)")
                else:
                    row.runs.append(run)
        if ceiling2_port is not None and cfg.h2load and shutil.which("h2load"):
            # 4 connections per process: the kernel hands each process whole
            # connections, so one would measure one process.
            body = reserve_requests(big or "w", disjoint_pairs(2), SHORT_TTL_MS)[0]
            for _ in range(cfg.reps):
                self.row(
                    "workers", f"ceiling: empty unary RPC ({cfg.workers} processes, h2load, C)"
                ).runs.append(
                    await self.h2load(ceiling2_port, body, "ceiling2", connections=4 * cfg.workers)
                )

    async def reads(self, ours: str, target: str) -> None:
        from seatinventory.v1 import seat_inventory_pb2 as pb

        cfg = self.cfg
        self.log("scale: GetAvailability and the stream's snapshot")
        events = {n: await self.create_event(target, n, "read") for n in cfg.read_sizes}
        small, big = cfg.read_sizes
        for rep in range(cfg.reps):
            self.log(f" run {rep + 1}/{cfg.reps}")
            for what, method, kind, message in (
                ("GetAvailability", AVAILABILITY, "unary", pb.GetAvailabilityRequest),
                ("stream snapshot", STREAM, "stream_first", pb.StreamAvailabilityRequest),
            ):
                runs = {}
                for n, event in events.items():
                    runs[n] = await self.load(
                        {
                            "target": target,
                            "method": method,
                            "kind": kind,
                            "concurrency": cfg.read_concurrency,
                        },
                        [message(event_id=event).SerializeToString()],
                        ours,
                        label=f"{what}, {n:,} seats",
                    )
                    runs[n].extra["srv_ms"] = 1000 * runs[n].srv_cpu / max(runs[n].rps, 1e-9)
                for n in (small, big):
                    self.row("reads", f"{what}, {n:,} seats").runs.append(runs[n])
                # Linear cost: server CPU per call grows by the seat ratio, not more.
                row = self.row(
                    "reads", f"{what}: server ms/call {big:,} ÷ {small:,} seats", unit="ratio"
                )
                row.runs.append(runs[big])
                row.ratio_to = f"{big // small}x = linear"
                row.ratios.append(
                    runs[big].extra["srv_ms"] / max(runs[small].extra["srv_ms"], 1e-9)
                )

    async def expiries(self, ours: str, target: str) -> None:
        """N holds of one seat each, all lapsing at one moment: how long until the
        last EXPIRED reaches a stream subscriber."""
        import grpc
        from loadgen import raw_reserve
        from seatinventory.v1 import seat_inventory_pb2 as pb
        from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc
        from seatinventory.v1 import types_pb2

        from seat_inventory.adapters.redis.keys import EventKeys

        cfg = self.cfg
        n = cfg.expiries
        self.log(f"expiries: {n:,} holds lapsing at the same moment")
        event = await self.create_event(target, n, "exp")
        redis, reserve = raw_reserve(self.redis_url, timeout_s=30)
        row = self.row(
            "expiry", f"{n:,} holds expiring at once: last EXPIRED on the stream", unit="s"
        )
        try:
            # How fast holds can be written right now (this machine is shared):
            # the due time must leave room to write them all.
            probe = await self.create_event(target, 2_000, "probe")
            t0 = time.monotonic()
            await asyncio.gather(
                *(reserve(probe, [f"s{i}"], 60_000) for i in range(2_000)), return_exceptions=True
            )
            rate = 2_000 / max(1e-3, time.monotonic() - t0)
            for rep in range(cfg.expiry_reps):
                # All due at one instant: each hold's ttl is what is left until then.
                setup_s = 5.0 + 1.6 * n / rate
                due = time.time() + setup_s
                queue = list(range(n))

                async def worker(due: float = due, queue: list[int] = queue) -> None:
                    while queue:
                        seat = queue.pop()
                        ttl_ms = max(1, int((due - time.time()) * 1000))
                        outcome = await reserve(event, [f"s{seat}"], ttl_ms)
                        if outcome != "OK":
                            raise RuntimeError(f"expiry setup: reserve answered {outcome}")

                # The subscriber is there from before the holds (as a watching client
                # would be): its snapshot is of a quiet event, and it follows the holds'
                # HELD changes while they are written.
                seen: list[float] = [0, 0.0, 0.0]  # seats seen EXPIRED, first and last time

                async def follow(call: Any, seen: list[float] = seen) -> None:
                    async for update in call:
                        if not update.HasField("changes"):
                            continue
                        for change in update.changes.changes:
                            if change.reason == types_pb2.CHANGE_REASON_EXPIRED:
                                seen[0] += len(change.seat_ids)
                                seen[2] = time.time()
                                seen[1] = seen[1] or seen[2]
                        if seen[0] >= n:
                            return

                async with grpc.aio.insecure_channel(
                    target, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
                ) as channel:
                    call = pb_grpc.SeatInventoryStub(channel).StreamAvailability(
                        pb.StreamAvailabilityRequest(event_id=event)
                    )
                    follower = asyncio.create_task(follow(call))
                    await asyncio.gather(*(worker() for _ in range(64)))
                    if time.time() > due - 0.5:
                        self.notes.append(
                            "expiry setup ran past the due time: the figure is late-biased "
                            "(run again on a quieter machine)"
                        )
                    # The deadlines the holds really got (Redis's clock, this machine's):
                    # a call queued on a loaded machine lands later than it was sent,
                    # so the last one, not the planned instant, is when all are due.
                    deadlines = EventKeys(event).deadlines
                    first_due = await redis.zrange(deadlines, 0, 0, withscores=True)
                    last_due = await redis.zrange(deadlines, -1, -1, withscores=True)
                    spread_s = float("nan")
                    if first_due and last_due:  # else all lapsed during the setup already
                        spread_s = (last_due[0][1] - first_due[0][1]) / 1000
                        due = last_due[0][1] / 1000
                    left_s = due - time.time()
                    # Until every seat is seen EXPIRED, or two minutes past the due time.
                    await asyncio.wait({follower}, timeout=max(0.0, left_s) + 120)
                    call.cancel()
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                        await follower
                count, first, last = int(seen[0]), seen[1], seen[2]
                lag = last - due if count >= n else float("nan")
                self.log(
                    f"  run {rep + 1}: {count:,}/{n:,} EXPIRED seen, first {first - due:.2f} s and "
                    f"last {lag:.2f} s after the last hold's deadline (deadlines spread over "
                    f"{spread_s:.2f} s; setup done {left_s:.1f} s before)"
                )
                row.runs.append(Run(lag, count, n, None, None, float("nan"), float("nan")))
        finally:
            await redis.aclose()

    # ---- everything

    async def run_all(self) -> None:
        self.sampler.start()
        procs: list[Proc] = []
        async with redis_server() as (redis_url, redis_proc), postgres_database() as dsn:
            self.redis_url, self.dsn = redis_url, dsn.replace("postgresql+asyncpg", "postgresql")
            self.sampler.watch(redis_proc)
            try:
                await self._run_all(procs)
            finally:
                for proc in procs:
                    proc.stop()
                await self.sampler.stop()

    async def _run_all(self, procs: list[Proc]) -> None:
        cfg = self.cfg
        port = free_port()
        ours = self.start_ours(port)
        procs.append(ours)
        ceiling_port = free_port()
        procs.append(self.start_role("ceiling", ceiling_port, "ceiling"))
        await wait_port(port, proc=ours)
        await wait_port(ceiling_port, proc=procs[-1])
        self._watch_postgres()
        target = f"127.0.0.1:{port}"
        if cfg.wants("hot"):
            await self.guard("hot path", self.hot_path(ours.name, ceiling_port, target))
        if cfg.wants("layers"):
            layer_ports = {"messages": free_port(), "redis": free_port(), "store": free_port()}
            for key, lport in layer_ports.items():
                procs.append(
                    self.start_role(f"layer-{key}", lport, f"layer-{key}", redis_url=self.redis_url)
                )
                await wait_port(lport, proc=procs[-1])
            await self.guard("layers", self.layers(ours.name, ceiling_port, layer_ports, target))
            for proc in procs[-len(layer_ports) :]:
                proc.stop()
        if cfg.wants("booking"):
            await self.guard("bookings", self.booking(ours.name, target))
        if cfg.wants("contended"):
            naive_port, dbonly_port = free_port(), free_port()
            procs.append(self.start_role("naive", naive_port, "naive", redis_url=self.redis_url))
            procs.append(self.start_role("dbonly", dbonly_port, "dbonly", dsn=self.dsn, pool=10))
            await wait_port(naive_port, proc=procs[-2])
            await wait_port(dbonly_port, proc=procs[-1])
            await self.guard(
                "contention", self.contended(ours.name, target, naive_port, dbonly_port)
            )
            await self.guard("bursts", self.bursts(target, naive_port, dbonly_port))
        if cfg.wants("reads"):
            await self.guard("reads", self.reads(ours.name, target))
        if cfg.wants("expiry"):
            await self.guard("expiries", self.expiries(ours.name, target))
        if cfg.wants("workers"):
            ours.stop()
            await asyncio.sleep(0.5)
            c2 = free_port()
            ceilings = [
                self.start_role("ceiling", c2, f"ceiling2-{i}", reuse_port=True)
                for i in range(cfg.workers)
            ]
            procs.extend(ceilings)
            await wait_port(c2, proc=ceilings[0])
            await asyncio.sleep(0.5)
            self._combine("ceiling2", ceilings)
            ours2 = None
            if serve_has_workers():
                p2 = free_port()
                proc2 = self.start_ours(p2, cfg.workers)
                procs.append(proc2)
                await wait_port(p2, proc=proc2)
                await asyncio.sleep(1.0)
                ours2 = (proc2.name, f"127.0.0.1:{p2}")
            else:
                self.notes.append(
                    f"Reserve with {cfg.workers} workers: not measured, this checkout's "
                    "`seat-inventory serve` has no --workers yet"
                )
            await self.guard("workers", self.workers_rows(c2, ours2))

    async def guard(self, name: str, group: Coroutine[Any, Any, None]) -> None:
        """One group failing (a loaded machine timing a backend out) leaves the
        others' figures standing; the report says what failed."""
        try:
            await group
        except (grpc_error(), OSError, RuntimeError, TimeoutError, ValueError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if hasattr(exc, "details"):
                message = f"{exc.code().name}: {exc.details()}"
            self.notes.append(f"{name}: stopped early ({message}); its rows are incomplete")
            self.log(f"  {name} stopped early: {message}")

    def _combine(self, name: str, procs: list[Proc]) -> None:
        """Watch several processes as one (the ceiling's worker processes)."""

        class Many(Proc):
            def __init__(self) -> None:
                self.name = name

            def cpu_s(self) -> float:
                return sum(p.cpu_s() for p in procs)

        for p in procs:
            self.sampler.procs.pop(p.name, None)
        self.sampler.watch(Many())

    def _watch_postgres(self) -> None:
        """The PostgreSQL server's processes, when they run on this machine."""
        import psutil

        pg = [
            p for p in psutil.process_iter(["name"]) if p.info["name"] in {"postgres", "postmaster"}
        ]

        class Pg(Proc):
            """Backends come and go: keep each one's last CPU reading after it exits."""

            def __init__(self) -> None:
                self.name = "postgres"
                self.seen: dict[int, float] = {}

            def cpu_s(self) -> float:
                for p in psutil.process_iter(["name"]):
                    if p.info["name"] in {"postgres", "postmaster"}:
                        with contextlib.suppress(psutil.Error):
                            self.seen[p.pid] = sum(p.cpu_times()[:2])
                return sum(self.seen.values())

        if pg:
            self.sampler.watch(Pg())


# --------------------------------------------------------------------------- report

TARGETS: list[tuple[str, str, str, float]] = [
    # (target text, row name prefix, how, threshold)
]


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:,.{digits}f}"


def targets(bench: Bench) -> list[tuple[str, str, str]]:
    """(target, measured, pass/miss) for every target of the issue we could measure."""
    cfg, rows = bench.cfg, bench.rows
    out: list[tuple[str, str, str]] = []

    def ratio(name: str) -> float | None:
        row = rows.get(name)
        return statistics.median(row.ratios) if row and row.ratios else None

    def failed_share(name: str) -> float:
        row = rows.get(name)
        calls = sum(r.calls for r in row.runs) if row else 0
        return 1 - sum(r.ok for r in row.runs) / calls if row and calls else 0.0

    def check(
        text: str,
        value: float | None,
        ok: Callable[[float], bool],
        shown: str,
        answered: str = "",
    ) -> None:
        failed = failed_share(answered) if answered else 0.0
        if value is None or value != value:
            out.append((text, "not measured", "-"))
        elif failed > 0.01:
            # A rate of failed calls is no throughput.
            out.append((text, f"{shown.format(value)} with {failed:.0%} of calls failed", "miss"))
        else:
            passed = ok(value)
            text_value = shown.format(value)
            if passed != ok(float(text_value.split()[0].replace(",", ""))):
                # Rounded, a miss would read as a pass (0.9496 as 0.95): show more digits.
                text_value = re.sub(r":\.\d+f", ":.4f", shown).format(value)
            out.append((text, text_value, "pass" if passed else "miss"))

    reserve = f"Reserve, 2 seats, {cfg.big_event:,}-seat event"
    check(
        "Reserve ≥ 0.85 x empty-RPC ceiling",
        ratio(reserve),
        lambda v: v >= 0.85,
        "{:.2f} x",
        reserve,
    )
    check(
        "Confirm ≥ 0.5 x raw asyncpg booking INSERTs",
        ratio("Confirm (PostgreSQL)"),
        lambda v: v >= 0.5,
        "{:.2f} x",
        "Confirm (PostgreSQL)",
    )
    check(
        "Reserve ≥ 2.5 x database-only, same contended workload",
        ratio("Reserve, contended (ours)"),
        lambda v: v >= 2.5,
        "{:.2f} x",
    )
    naive = rows.get("(a) naive GET-then-SET-with-TTL")
    mine = rows.get("Reserve, contended (ours)")
    if naive and mine:
        nd = sum(r.extra.get("double_reservations", 0) for r in naive.runs)
        md = sum(r.extra.get("double_reservations", 0) for r in mine.runs)
        nd += bench.burst_doubles.get("(a) naive GET-then-SET-with-TTL", 0)
        md += bench.burst_doubles.get("Reserve, contended (ours)", 0)
        out.append(
            (
                "naive shows double reservations, ours 0",
                f"naive {nd:,}, ours {md:,} (all runs and bursts)",
                "pass" if nd > 0 and md == 0 else "miss",
            )
        )
    else:
        out.append(("naive shows double reservations, ours 0", "not measured", "-"))
    check(
        f"Reserve on {cfg.big_event:,} seats ≥ 0.95 x on {cfg.small_event}",
        ratio(f"Reserve on {cfg.big_event:,} vs {cfg.small_event} seats"),
        lambda v: v >= 0.95,
        "{:.2f} x",
    )
    small, big = cfg.read_sizes
    for what in ("GetAvailability", "stream snapshot"):
        check(
            f"{what} cost linear ({big // small}x seats → ≤ {big // small * 1.25:g}x "
            "server CPU/call)",
            ratio(f"{what}: server ms/call {big:,} ÷ {small:,} seats"),
            lambda v, k=big // small: v <= 1.25 * k,
            "{:.1f} x",
        )
    exp = rows.get(f"{cfg.expiries:,} holds expiring at once: last EXPIRED on the stream")
    target = f"{cfg.expiries:,} expiries on the stream within 2 s"
    incomplete = sum(1 for r in exp.runs if r.rps != r.rps) if exp else 0
    if exp and incomplete:
        # A run whose subscriber never saw every EXPIRED (its lag NaN) is a miss,
        # not a run to leave out of the median.
        out.append(
            (target, f"{incomplete} of {len(exp.runs)} runs: not every EXPIRED arrived", "miss")
        )
    else:
        check(
            target, exp.median("rps") if exp and exp.runs else None, lambda v: v <= 2.0, "{:.2f} s"
        )
    return out


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(bench: Bench) -> str:
    lines = [
        "| row | median | ratio (median of run-for-run) | ok % | p50 ms | p99 ms "
        "| generator CPU | server CPU | Redis CPU | PostgreSQL CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in bench.order:
        row = bench.rows[name]
        if row.group in {"reads", "expiry", "layers"}:
            continue  # in the scale and layers tables
        ok = 100 * sum(r.ok for r in row.runs) / max(1, sum(r.calls for r in row.runs))
        ratio = f"{statistics.median(row.ratios):.2f} x {row.ratio_to}" if row.ratios else ""
        extra = ""
        if any("double_reservations" in r.extra for r in row.runs):
            doubles = sum(r.extra["double_reservations"] for r in row.runs)
            extra = f"; {doubles:,} double reservations"
            if name in bench.burst_doubles:
                extra += f" (+ {bench.burst_doubles[name]:,} in the bursts)"
        lines.append(
            f"| {name} | {fmt(row.median('rps'))} /s | {ratio}{extra} | {ok:.0f} "
            f"| {fmt(row.median('p50_ms'), 1)} | {fmt(row.median('p99_ms'), 1)} "
            f"| {fmt(row.median('gen_cpu'), 2)} | {fmt(row.median('srv_cpu'), 2)} "
            f"| {fmt(row.extra_median('redis_cpu'), 2)} | {fmt(row.extra_median('pg_cpu'), 2)} |"
        )
    return "\n".join(lines)


def per_call_us(row: Row, cores: Callable[[Run], float]) -> float:
    """Median over the row's runs of CPU (cores) per call, in µs."""
    values = [1e6 * cores(r) / r.rps for r in row.runs if r.rps and r.rps == r.rps]
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def _extra(key: str) -> Callable[[Run], float]:
    def cores(run: Run) -> float:
        value = run.extra.get(key)
        return float(value) if value is not None and value == value else 0.0

    return cores


def budgets(bench: Bench) -> list[dict[str, Any]]:
    """For each throughput target measured: what one of our calls may cost for
    the ratio to reach it, against what it costs now.

    At the target, ours makes ``factor`` x the peer's calls per second. Two
    limits bound what its server may then spend per call: the machine (every
    core, less what the generator and the backends spend per call of ours, as
    measured) and its one server process (the cores it reached in the run:
    one event loop and one GIL). First-order: the generator's and the backends'
    cost per call are taken as they were measured."""
    cfg, rows = bench.cfg, bench.rows
    cores_total = float(os.cpu_count() or 1)
    ceiling = rows.get("ceiling: empty unary RPC (1 process)")
    empty_us = per_call_us(ceiling, lambda r: r.srv_cpu) if ceiling and ceiling.runs else None
    out: list[dict[str, Any]] = []
    for target, ours_name, peer_name, factor in (
        (
            "Reserve ≥ 0.85 x empty-RPC ceiling",
            f"Reserve, 2 seats, {cfg.big_event:,}-seat event",
            "ceiling: empty unary RPC (1 process)",
            0.85,
        ),
        (
            "Reserve ≥ 2.5 x database-only, same contended workload",
            "Reserve, contended (ours)",
            "(b) database-only, FOR UPDATE SKIP LOCKED",
            2.5,
        ),
    ):
        ours, peer = rows.get(ours_name), rows.get(peer_name)
        if not (ours and ours.runs and peer and peer.runs):
            continue
        wanted = factor * peer.median("rps")
        others = (
            per_call_us(ours, lambda r: r.gen_cpu)
            + per_call_us(ours, _extra("redis_cpu"))
            + per_call_us(ours, _extra("pg_cpu"))
        )
        machine = 1e6 * cores_total / wanted - others
        process = 1e6 * ours.median("srv_cpu") / wanted
        now = per_call_us(ours, lambda r: r.srv_cpu)
        may = min(machine, process)
        out.append(
            {
                "target": target,
                "ours_rps": ours.median("rps"),
                "wanted_rps": wanted,
                "others_us": others,
                "machine_us": machine,
                "process_us": process,
                "server_may_us": may,
                "server_now_us": now,
                "cut": 1 - may / now if now == now and now > 0 else float("nan"),
                "empty_us": empty_us,
            }
        )
    return out


def budget_table(bench: Bench) -> str:
    found = budgets(bench)
    if not found:
        return ""
    lines = [
        "| target | ours now | at the target | generator + Redis + PostgreSQL µs per call "
        f"of ours | server may spend µs/call: {os.cpu_count()} cores / its one process "
        "| server spends now | cut needed | an empty call costs the server |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in found:
        cut = b["cut"]
        lines.append(
            f"| {b['target']} | {fmt(b['ours_rps'])} /s | {fmt(b['wanted_rps'])} /s "
            f"| {fmt(b['others_us'])} | {fmt(b['machine_us'])} / {fmt(b['process_us'])} "
            f"| {fmt(b['server_now_us'])} | {'none' if cut <= 0 else f'{100 * cut:.0f} %'} "
            f"| {fmt(b['empty_us'])} |"
        )
    return "\n".join(lines)


def layers_table(bench: Bench) -> str:
    rows = [bench.rows[name] for name in LAYERS if name in bench.rows]
    if not rows:
        return ""
    lines = [
        "| server | calls/s | ratio to the ceiling | server CPU µs/call | µs/call added |"
        " generator CPU | server CPU |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    before = None
    for row in rows:
        us = row.extra_median("srv_us")
        added = "" if before is None else f"+{us - before:.0f}"
        ratio = f"{statistics.median(row.ratios):.2f} x" if row.ratios else ""
        lines.append(
            f"| {row.name} | {fmt(row.median('rps'))} | {ratio} | {us:.0f} | {added} "
            f"| {fmt(row.median('gen_cpu'), 2)} | {fmt(row.median('srv_cpu'), 2)} |"
        )
        before = us
    return "\n".join(lines)


def scale_table(bench: Bench) -> str:
    lines = [
        "| read | calls/s | server CPU ms/call | ratio | generator CPU | server CPU |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name in bench.order:
        row = bench.rows[name]
        if row.group != "reads":
            continue
        if row.unit == "ratio":
            lines.append(
                f"| {name} | | | {statistics.median(row.ratios):.1f} x (vs {row.ratio_to}) | | |"
            )
            continue
        lines.append(
            f"| {name} | {fmt(row.median('rps'))} | {fmt(row.extra_median('srv_ms'), 2)} | "
            f"| {fmt(row.median('gen_cpu'), 2)} | {fmt(row.median('srv_cpu'), 2)} |"
        )
    for name in bench.order:
        row = bench.rows[name]
        if row.group == "expiry":
            runs = ", ".join(fmt(r.rps, 2) for r in row.runs)
            lines.append(
                f"| {name} | | | median {fmt(row.median('rps'), 2)} s (runs: {runs}) | | |"
            )
    return "\n".join(lines)


def results_md(bench: Bench, args: argparse.Namespace, elapsed_s: float) -> str:
    import grpc

    cfg = bench.cfg
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = bench.sampler.loads or [bench.load_before]
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    head = [
        "# Benchmark results",
        "",
        f"`{' '.join(['bench/run.py', *args.argv])}` ({mode} run) on {now}; commit {commit()}; "
        f"{os.cpu_count()} CPU cores shared by everything below; Python "
        f"{platform.python_version()}, grpcio {grpc.__version__}; took {elapsed_s / 60:.1f} min; "
        f"1-minute load average {min(loads):.1f} to {max(loads):.1f} during the run"
        + (
            " (other work shared the cores: figures are noisier than on a quiet machine, "
            "ratios measured run for run less so)."
            if max(loads) > (os.cpu_count() or 1) + 1
            else "."
        ),
        "",
        f"Closed-loop load generator (`bench/loadgen.py`, one grpc.aio process, "
        f"{cfg.concurrency} calls in flight, pre-serialised requests) for every row; "
        f"{cfg.reps} run(s) of {cfg.seconds:g} s after {cfg.warmup:g} s warm-up per figure. "
        "Ratios are taken run for run against the peer measured right before or after, "
        "then the median. CPU columns are cores (1.00 = one core busy): the generator's own, "
        "and the server's (all its processes; Redis for the raw Lua row, PostgreSQL for "
        "the raw asyncpg row). PostgreSQL's CPU is that of every postgres process on the "
        "machine (the bench uses the machine's server, in a database of its own): other "
        "work on that server shows in it.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *(f"| {t} | {m} | {p} |" for t, m, p in targets(bench)),
        "",
        "## Throughput",
        "",
        table(bench),
        "",
        *(
            [
                "## What a call may cost for the throughput targets",
                "",
                "At the target ratio, ours makes that many times the peer's calls per "
                "second (the peer as measured). Its server may then spend per call what is "
                "left of every core after the generator's and the backends' share (measured "
                "per call of ours), and no more than its one process reached in the run "
                "(one event loop, one GIL). First order: the generator and the backends are "
                "taken to cost per call what they cost in the run.",
                "",
                budget_table(bench),
                "",
            ]
            if budget_table(bench)
            else []
        ),
        *(
            [
                "## Where Reserve's server time goes",
                "",
                "The ceiling's server, then one layer of Reserve's work added at a time "
                "(bench/servers.py), then the service, with the same requests, run for run. "
                "Server CPU per call is the server's CPU over the run divided by its calls.",
                "",
                layers_table(bench),
                "",
            ]
            if layers_table(bench)
            else []
        ),
        "## Scale",
        "",
        scale_table(bench),
        "",
    ]
    if bench.notes:
        head += ["## Notes from this run", "", *(f"- {n}" for n in bench.notes), ""]
    head += [
        "## What the rows run",
        "",
        "- **ceiling**: SeatInventory/Reserve answering an empty message without reading the "
        "request, on `grpc.aio.server` with the service's own `server_options` and its way of "
        "taking new calls (api/accept.py; every server here has both, bench/servers.py); "
        "the h2load rows replay one framed request over one connection (4 per process for "
        "several processes) with the same number of streams in flight.",
        f"- **Reserve**: 2 seats per call, disjoint pairs lapping a {cfg.big_event:,}-seat event, "
        f"ttl {SHORT_TTL_MS} ms so a pair is free again on the next lap (every hold also costs "
        f"its expiry in the sweeper). The {cfg.small_event}-seat row sends the same calls on a "
        f"{cfg.small_event}-seat event, where calls in flight do collide.",
        "- **Confirm / Release**: holds made beforehand (not timed), then confirmed into "
        "PostgreSQL or released, each once; the row ends when the holds run out.",
        "- **raw reserve.lua**: the service's reserve script through the store's own call "
        "(`RedisHoldStore.reserve`), from Python through redis-py (hiredis) on the same "
        "Redis: what is left when gRPC and the service layer are taken away.",
        "- **raw asyncpg INSERTs**: per booking one transaction with the booking row and its "
        "seat rows (BEGIN, two INSERTs, COMMIT: four round trips, the straightforward way "
        "the target names), on the service's schema, pool of 10 (the service keeps 15; "
        "sizes 10 to 32 measured the same). The same rows written in one statement make "
        "about half as many again calls/s (a review's runs: Confirm 0.27-0.39x of that); "
        "Confirm itself needs two round trips to PostgreSQL and two Redis calls.",
        f"- **contended**: every call asks for 2 random seats of {cfg.hot_seats:,}; holds "
        "outlive the run, so after the first second almost every call loses. A seat granted "
        "twice is a double reservation. The alternatives serve the same SeatInventory/Reserve "
        "(bench/alternatives/). Then the bursts: 20 times, "
        f"{cfg.concurrency} buyers at once for the same 2 seats (not timed); every grant "
        "after a burst's first is a double reservation.",
        "- **reads**: GetAvailability and the first message (the snapshot) of "
        f"StreamAvailability, {cfg.read_concurrency} calls in flight; server CPU per call.",
        f"- **expiries**: {cfg.expiries:,} one-seat holds written straight through reserve.lua "
        "(64 at a time), all due at the same instant; a subscriber on StreamAvailability, open "
        "from before the holds, counts EXPIRED seats until it has seen them all. The figure is "
        "from the latest deadline the holds got in Redis (calls queued on a loaded machine land "
        "a little after the planned instant) to the last EXPIRED received.",
        "",
    ]
    profile = BENCH / "PROFILE.md"
    if profile.exists():
        head += [profile.read_text().strip(), ""]
    return "\n".join(head)


def print_summary(bench: Bench) -> None:
    print("\n" + table(bench) + "\n\n" + layers_table(bench) + "\n\n" + scale_table(bench) + "\n")
    if budget_table(bench):
        print(budget_table(bench) + "\n")
    for text, measured, verdict in targets(bench):
        print(f"  {verdict:>4}  {text}: {measured}")


# --------------------------------------------------------------------------- main


async def orchestrate(args: argparse.Namespace) -> int:
    cfg = Config.smoke() if args.smoke else Config.quick() if args.quick else Config()
    if args.only:
        cfg.only = frozenset(args.only.split(","))
    if args.seconds:
        cfg.seconds = args.seconds
    if args.reps:
        cfg.reps = args.reps
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(cfg, workdir)
    if args.profile:
        bench.profile_dir = Path(args.profile)
        bench.profile_dir.mkdir(parents=True, exist_ok=True)
        bench.profile_rows = {
            f"Reserve, {cfg.big_event:,}-seat event",
            f"Reserve, {cfg.small_event}-seat event",
            "Confirm (PostgreSQL)",
            "Reserve, contended (ours)",
        }
    try:
        await bench.run_all()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print_summary(bench)
    if args.out:
        Path(args.out).write_text(results_md(bench, args, elapsed))  # noqa: ASYNC240
        print(f"wrote {args.out}")
    if args.json:
        Path(args.json).write_text(  # noqa: ASYNC240
            json.dumps(
                {
                    "rows": [bench.rows[n].as_json() for n in bench.order],
                    "targets": [
                        {"target": t, "measured": m, "verdict": v} for t, m, v in targets(bench)
                    ],
                    "budgets": budgets(bench),
                    "notes": bench.notes,
                },
                indent=1,
            )
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run per figure, smaller (~2 min)")
    parser.add_argument("--smoke", action="store_true", help="seconds: one group, tiny (tests)")
    parser.add_argument(
        "--only", help="comma-separated groups: hot,layers,booking,contended,reads,expiry,workers"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per run")
    parser.add_argument("--reps", type=int, help="runs per figure")
    parser.add_argument("--out", help="write the Markdown report here (e.g. bench/RESULTS.md)")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument(
        "--profile",
        help="py-spy the server during the first Reserve, Confirm and contended run into DIR",
    )
    # internal: the servers the bench starts
    parser.add_argument(
        "--role",
        choices=("ceiling", "naive", "dbonly", "layer-messages", "layer-redis", "layer-store"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.role:
        import servers

        asyncio.run(servers.serve(args.role, args.port, json.loads(args.extra)))
        return 0
    return asyncio.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
