// End to end through the generated TypeScript stubs: start `seat-inventory
// serve` (the embedded default: SQLite + in-process Redis, no servers needed)
// on a free port in a temp dir, then create an event, reserve, confirm and
// read the availability stream over gRPC (HTTP/2) with Connect.
//
// Run with `make ts-test` (or `npm test` here). SEAT_INVENTORY_BIN overrides
// the server command (default: the repository's .venv/bin/seat-inventory).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { errorInfo } from "../src/errors.js";
import { InventoryAdmin } from "../src/gen/seatinventory/v1/inventory_admin_pb.js";
import { SeatInventory } from "../src/gen/seatinventory/v1/seat_inventory_pb.js";
import {
  type AvailabilityUpdate,
  BookingStatus,
  ChangeReason,
  SeatStatus,
} from "../src/gen/seatinventory/v1/types_pb.js";

const SERVE =
  process.env.SEAT_INVENTORY_BIN ??
  fileURLToPath(new URL("../../../.venv/bin/seat-inventory", import.meta.url));

let server: ChildProcess | undefined;
let workDir = "";
let log = "";
let baseUrl = "";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function clients() {
  // gRPC always runs on HTTP/2; connect-node v2 dropped the httpVersion option.
  const transport = createGrpcTransport({ baseUrl });
  return {
    inventory: createClient(SeatInventory, transport),
    admin: createClient(InventoryAdmin, transport),
  };
}

async function untilServing(deadlineMs: number): Promise<void> {
  const { admin } = clients();
  for (;;) {
    if (server?.exitCode !== null) throw new Error(`server exited early:\n${log}`);
    try {
      await admin.getEvent({ eventId: "readiness-probe" }, { timeoutMs: 1000 });
      return;
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return; // it answers: serving
    }
    if (Date.now() > deadlineMs) throw new Error(`server never answered:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

before(async () => {
  const port = await freePort();
  workDir = mkdtempSync(join(tmpdir(), "seatinv-ts-"));
  server = spawn(SERVE, ["serve", "--host", "127.0.0.1", "--port", String(port)], {
    cwd: workDir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  server.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  server.on("error", (err) => (log += `spawn ${SERVE}: ${err.message}\n`));
  baseUrl = `http://127.0.0.1:${port}`;
  await untilServing(Date.now() + 30_000);
});

after(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server?.once("exit", resolve));
    server.kill("SIGTERM"); // graceful drain, as an operator would stop it
    let timer: NodeJS.Timeout | undefined;
    const patience = new Promise((resolve) => (timer = setTimeout(resolve, 15_000)));
    await Promise.race([exited, patience]);
    clearTimeout(timer);
    if (server.exitCode === null) server.kill("SIGKILL");
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const seats = ["A-1", "A-2", "A-3", "A-4"].map((seatId, i) => ({
  seatId,
  section: "A",
  row: "1",
  number: String(i + 1),
}));

test("create an event, reserve, confirm and watch availability", async () => {
  const { inventory, admin } = clients();
  const eventId = `ts-${Date.now()}`;

  const { event } = await admin.createEvent({ eventId, name: "TypeScript", seats });
  assert.equal(event?.seatCount, 4);

  const { hold } = await inventory.reserve(
    { eventId, seatIds: ["A-1", "A-2"], holderId: "ts-alice", requestId: "ts-req-1" },
    { timeoutMs: 5000 },
  );
  assert.ok(hold?.holdId);
  assert.deepEqual(hold.seatIds, ["A-1", "A-2"]);

  const { booking } = await inventory.confirm(
    { holdId: hold.holdId, holderId: "ts-alice", orderRef: "ts-order-1" },
    { timeoutMs: 5000 },
  );
  assert.equal(booking?.status, BookingStatus.CONFIRMED);
  assert.deepEqual(booking.seatIds, ["A-1", "A-2"]);

  const stop = new AbortController();
  const updates: AvailabilityUpdate[] = [];
  const stream = inventory.streamAvailability({ eventId }, { signal: stop.signal });
  try {
    for await (const update of stream) {
      updates.push(update);
      if (updates.length === 1) {
        assert.equal(update.update.case, "snapshot");
        const status = Object.fromEntries(
          (update.update.value?.seats ?? []).map((s) => [s.seatId, s.status]),
        );
        assert.deepEqual(status, {
          "A-1": SeatStatus.BOOKED,
          "A-2": SeatStatus.BOOKED,
          "A-3": SeatStatus.AVAILABLE,
          "A-4": SeatStatus.AVAILABLE,
        });
        await inventory.reserve({ eventId, seatIds: ["A-4"], holderId: "ts-bob" });
      } else if (update.update.case === "changes") {
        const [change] = update.update.value.changes;
        assert.ok(change);
        assert.deepEqual(change.seatIds, ["A-4"]);
        assert.equal(change.status, SeatStatus.HELD);
        assert.equal(change.reason, ChangeReason.HELD);
        assert.ok(change.cursor);
        assert.equal(update.cursor, change.cursor);
        break;
      }
    }
  } finally {
    stop.abort();
  }
  assert.equal(updates.length, 2);

  const availability = await inventory.getAvailability({ eventId });
  assert.equal(availability.cursor, updates[1]?.cursor);
});

test("a lost race is FAILED_PRECONDITION with ErrorInfo SEATS_UNAVAILABLE", async () => {
  const { inventory, admin } = clients();
  const eventId = `ts-err-${Date.now()}`;
  await admin.createEvent({ eventId, name: "TypeScript errors", seats });
  await inventory.reserve({ eventId, seatIds: ["A-3"], holderId: "ts-carol" });
  await assert.rejects(
    inventory.reserve({ eventId, seatIds: ["A-2", "A-3"], holderId: "ts-dave" }),
    (err: unknown) => {
      assert.equal(ConnectError.from(err).code, Code.FailedPrecondition);
      const info = errorInfo(err);
      assert.equal(info?.domain, "seatinventory");
      assert.equal(info?.reason, "SEATS_UNAVAILABLE");
      assert.equal(info?.metadata.seat_ids, "A-3");
      return true;
    },
  );
});
