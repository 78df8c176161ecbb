/**
 * Real processes meeting at checkpoints: Deno (async, through the module),
 * the CLI (sync) and the C peer (LTP's own algorithm), on regions made by our
 * own init: a wake before its wait, one wake for many, over-waking, capacity.
 * Every waiter × waker pairing, on LTP's own regions with the default layout
 * and with the seed layout on request, is in ltp_test.ts.
 *
 * Children get the test's environment without LTP_IPC_LAYOUT and LTP_IPC_PATH,
 * plus `cp.env`: a layout left in the runner's environment must not leak in.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { LAYOUTS } from "../testing/paths.ts";
import { noPeer, startPeer } from "../testing/peer.ts";
import { startActor, startCli } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

type Role = "deno" | "cli" | "c";
const ROLES: Role[] = ["deno", "cli", "c"];

/** Starts a waiter of the given kind on `id`. */
function waiter(role: Role, cp: Checkpoint, id: number, timeout = scaled(10000)) {
  const options = { env: cp.env };
  if (role === "deno") return Promise.resolve(startActor(["wait", `${id}`, `${timeout}`], options));
  if (role === "cli") return Promise.resolve(startCli(["wait", `${timeout}`, `${id}`], options));
  return startPeer(["wait", cp.path, cp.layout, `${id}`, `${timeout}`], {});
}

/** Starts a waker of the given kind on `id`. */
function waker(role: Role, cp: Checkpoint, id: number, nr: number, timeout = scaled(10000)) {
  const options = { env: cp.env };
  if (role === "deno") return Promise.resolve(startActor(["wake", `${id}`, `${nr}`, `${timeout}`], options));
  if (role === "cli") return Promise.resolve(startCli(["wake", `${timeout}`, `${id}`, `${nr}`], options));
  return startPeer(["wake", cp.path, cp.layout, `${id}`, `${nr}`, `${timeout}`], {});
}

Deno.test(
  "a wake that comes before its wait still meets it (C waiter arriving late)",
  { ignore: noPeer() },
  async () => {
    using cp = Checkpoint.create({ layout: "ltp" });
    const waking = cp.wake(0, 1, scaled(10000));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(cp.waiters(0), 0);
    const w = await waiter("c", cp, 0);
    await waking;
    assertExit(await w.result, 0);
  },
);

Deno.test("a CLI wake that comes before a Deno wait still meets it", async () => {
  using cp = Checkpoint.create({ layout: "ltp" });
  const k = await waker("cli", cp, 2, 1);
  await new Promise((r) => setTimeout(r, 300));
  await cp.wait(2, scaled(10000));
  assertExit(await k.result, 0);
});

for (const layout of LAYOUTS) {
  Deno.test(`${layout} layout: one wake reaches several waiters of every kind`, { ignore: noPeer() }, async () => {
    using cp = Checkpoint.create({ layout });
    const waiters = await Promise.all([...ROLES, ...ROLES].map((role) => waiter(role, cp, 4)));
    await cp.waitForWaiters(4, waiters.length, scaled(10000));
    await cp.wake(4, waiters.length, scaled(10000));
    for (const w of waiters) assertExit(await w.result, 0);
  });
}

Deno.test("waking more than nrWake never succeeds: it times out as LTP's does, C and Deno alike", {
  ignore: noPeer(),
}, async () => {
  using cp = Checkpoint.create({ layout: "ltp" });
  for (const wakes of ["deno", "c"] as const) {
    const waiters = await Promise.all([waiter("c", cp, 5), waiter("c", cp, 5)]);
    await cp.waitForWaiters(5, 2, scaled(10000));
    const k = await waker(wakes, cp, 5, 1, 300);
    assertExit(await k.result, 1);
    for (const w of waiters) assertExit(await w.result, 0); // both were woken all the same
  }
});

Deno.test("the id at capacity is refused by Deno, the CLI and the C peer alike, in each layout", {
  ignore: noPeer(),
}, async () => {
  using seed = Checkpoint.create({ layout: "seed" });
  using ltp = Checkpoint.create({ layout: "ltp" });
  for (const [cp, capacity] of [[seed, 1023], [ltp, 1005]] as const) {
    assert.equal(cp.capacity, capacity);
    assert.throws(() => cp.waitSync(capacity, 10), RangeError);
    cp.wakeSync(capacity - 1, 0, 10); // the last id is there
    const c = await (await waker("c", cp, capacity, 0, 10)).result;
    assertExit(c, 1);
    assert.match(c.stderr, /too large/); // EOVERFLOW
    const viaCli = await (await waker("cli", cp, capacity, 0, 10)).result;
    assertExit(viaCli, 1);
    assert.match(viaCli.stderr, /out of range/);
    assertExit(await (await waker("cli", cp, capacity - 1, 0, 10)).result, 0);
  }
});

Deno.test("a Deno parent and Deno children started with cp.env take turns, in each layout", async () => {
  for (const layout of LAYOUTS) {
    using cp = Checkpoint.create({ layout });
    const children = await Promise.all([0, 1, 2].map(() => waiter("deno", cp, 9)));
    await cp.waitForWaiters(9, 3, scaled(10000));
    await cp.wake(9, 3, scaled(10000));
    for (const c of children) assertExit(await c.result, 0);
    assert.equal(cp.waiters(9), 0);
  }
});
