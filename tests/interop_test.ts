/**
 * Real processes meeting at checkpoints: Deno (async, through the module),
 * the CLI (sync) and the C peer (LTP's own algorithm), on both layouts.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit, LAYOUTS, peer, run, startActor, startCli, startPeer } from "./helpers.ts";

type Role = "deno" | "cli" | "c";
const ROLES: Role[] = ["deno", "cli", "c"];

/** Starts a waiter of the given kind on `id`. */
function waiter(role: Role, cp: Checkpoint, id: number, timeout = 10000) {
  const env = cp.env;
  if (role === "deno") return Promise.resolve(startActor(["wait", `${id}`, `${timeout}`], { env }));
  if (role === "cli") return Promise.resolve(startCli(["wait", `${timeout}`, `${id}`], { env }));
  return startPeer(["wait", cp.path, cp.layout, `${id}`, `${timeout}`]);
}

/** Starts a waker of the given kind on `id`. */
function waker(role: Role, cp: Checkpoint, id: number, nr: number, timeout = 10000) {
  const env = cp.env;
  if (role === "deno") return Promise.resolve(startActor(["wake", `${id}`, `${nr}`, `${timeout}`], { env }));
  if (role === "cli") return Promise.resolve(startCli(["wake", `${timeout}`, `${id}`, `${nr}`], { env }));
  return startPeer(["wake", cp.path, cp.layout, `${id}`, `${nr}`, `${timeout}`]);
}

for (const layout of LAYOUTS) {
  for (const waits of ROLES) {
    for (const wakes of ROLES) {
      Deno.test(`${layout} layout: a ${waits} waiter is woken by a ${wakes} waker`, async () => {
        using cp = Checkpoint.create({ layout });
        const id = layout === "ltp" ? 1004 : 7; // the last id of the ltp layout proves the offset
        const w = await waiter(waits, cp, id);
        const k = await waker(wakes, cp, id, 1);
        assertExit(await k.result, 0);
        assertExit(await w.result, 0);
      });
    }
  }

  Deno.test(`${layout} layout: the C peer made by LTP's C library's rules is usable from Deno`, async () => {
    const path = `/dev/shm/ltp-checkpoint-c-made-${Deno.pid}`;
    try {
      assertExit(await run(await peer(), ["create", path]), 0);
      using cp = Checkpoint.open(path, { layout });
      assert.equal(cp.stat().mode, 0o666);
      const w = await startPeer(["wait", path, layout, "3", "10000"]);
      await cp.wake(3, 1, 10000);
      assertExit(await w.result, 0);
    } finally {
      Deno.removeSync(path);
    }
  });
}

Deno.test("a wake that comes before its wait still meets it (C waiter arriving late)", async () => {
  using cp = Checkpoint.create();
  const waking = cp.wake(0, 1, 10000);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(cp.waiters(0), 0);
  const w = await startPeer(["wait", cp.path, cp.layout, "0", "10000"]);
  await waking;
  assertExit(await w.result, 0);
});

Deno.test("a CLI wake that comes before a Deno wait still meets it", async () => {
  using cp = Checkpoint.create({ layout: "ltp" });
  const k = startCli(["wake", "10000", "2", "1"], { env: cp.env });
  await new Promise((r) => setTimeout(r, 300));
  await cp.wait(2, 10000);
  assertExit(await k.result, 0);
});

Deno.test("one wake reaches several waiters of every kind", async () => {
  using cp = Checkpoint.create();
  const waiters = await Promise.all([...ROLES, ...ROLES].map((role) => waiter(role, cp, 4)));
  await cp.waitForWaiters(4, waiters.length, 10000);
  await cp.wake(4, waiters.length, 10000);
  for (const w of waiters) assertExit(await w.result, 0);
});

Deno.test("waking more than nrWake never succeeds: it times out as LTP's does, C and Deno alike", async () => {
  using cp = Checkpoint.create();
  for (const wakes of ["deno", "c"] as const) {
    const waiters = await Promise.all([waiter("c", cp, 5), waiter("c", cp, 5)]);
    await cp.waitForWaiters(5, 2, 10000);
    const k = await waker(wakes, cp, 5, 1, 300);
    assertExit(await k.result, 1);
    for (const w of waiters) assertExit(await w.result, 0); // both were woken all the same
  }
});

Deno.test("the id at capacity is refused by Deno, the CLI and the C peer alike", async () => {
  using seed = Checkpoint.create();
  using ltp = Checkpoint.create({ layout: "ltp" });
  for (const [cp, capacity] of [[seed, 1023], [ltp, 1005]] as const) {
    assert.throws(() => cp.waitSync(capacity, 10), RangeError);
    const c = await startPeer(["wake", cp.path, cp.layout, `${capacity}`, "0", "10"]);
    const r = await c.result;
    assertExit(r, 1);
    assert.match(r.stderr, /too large/); // EOVERFLOW
    const viaCli = await startCli(["wake", "10", `${capacity}`, "0"], { env: cp.env }).result;
    assertExit(viaCli, 1);
    assert.match(viaCli.stderr, /out of range/);
  }
});

Deno.test("a Deno parent and Deno children started with cp.env take turns", async () => {
  using cp = Checkpoint.create({ layout: "ltp" });
  const children = [0, 1, 2].map(() => startActor(["wait", "9", "10000"], { env: cp.env }));
  await cp.waitForWaiters(9, 3, 10000);
  await cp.wake(9, 3, 10000);
  for (const c of children) assertExit(await c.result, 0);
  assert.equal(cp.waiters(9), 0);
});
