/** Counting waiters: waiters(), waitForWaiters() and the CLI's `waiters`, with real processes. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { ROOT } from "../testing/paths.ts";
import { startPeer } from "../testing/peer.ts";
import { cli, run, startActor, startCli } from "../testing/process.ts";
import { eventually } from "../testing/timing.ts";

forgetCallerEnv();

Deno.test("counts rise as Deno, CLI and C waiters arrive, and fall as they are woken or time out", async () => {
  using cp = Checkpoint.create({ layout: "ltp" });
  assert.equal(cp.waiters(10), 0);
  const deno = startActor(["wait", "10", "10000"], { env: cp.env });
  await cp.waitForWaiters(10, 1, 10000);
  const c = await startPeer(["wait", cp.path, cp.layout, "10", "10000"]);
  await cp.waitForWaiters(10, 2, 10000);
  const tool = startCli(["wait", "10000", "10"], { env: cp.env });
  await cp.waitForWaiters(10, 3, 10000);
  const shortLived = await startPeer(["wait", cp.path, cp.layout, "10", "300"]);
  cp.waitForWaitersSync(10, 4, 10000);
  assert.equal(cp.waiters(11), 0, "other ids are not counted");

  assertExit(await shortLived.result, 1); // timed out on its own
  assert.equal(cp.waiters(10), 3); // the async Deno waiter is in the kernel all along
  await cp.wake(10, 3, 10000);
  for (const w of [deno, c, tool]) assertExit(await w.result, 0);
  assert.equal(cp.waiters(10), 0);
});

Deno.test("counting never wakes anyone: a counted waiter still times out at its own deadline", async () => {
  using cp = Checkpoint.create();
  const start = performance.now();
  const waiter = await startPeer(["wait", cp.path, cp.layout, "0", "600"]);
  await cp.waitForWaiters(0, 1, 10000);
  for (let i = 0; i < 200; i++) assert.equal(cp.waiters(0), 1);
  const r = await waiter.result;
  assertExit(r, 1);
  assert.match(r.stderr, /timed out/);
  assert.ok(performance.now() - start >= 600);
});

Deno.test("waitForWaiters times out when too few arrive, and honours an abort", async () => {
  using cp = Checkpoint.create();
  await assert.rejects(() => cp.waitForWaiters(0, 1, 50), Deno.errors.TimedOut);
  assert.throws(() => cp.waitForWaitersSync(0, 1, 50), Deno.errors.TimedOut);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error("enough")), 30);
  await assert.rejects(() => cp.waitForWaiters(0, 1, 10000, { signal: controller.signal }), /enough/);
  await cp.waitForWaiters(0, 0, 10); // nobody needed
});

Deno.test("the CLI's `waiters` blocks until enough wait (exit 0) or times out (exit 1)", async () => {
  using cp = Checkpoint.create();
  const counting = startCli(["waiters", "10000", "7", "2"], { env: cp.env });
  const waiting = [startActor(["wait", "7", "10000"], { env: cp.env })];
  waiting.push(await startPeer(["wait", cp.path, cp.layout, "7", "10000"]));
  assertExit(await counting.result, 0);
  await eventually(() => cp.waiters(7) === 2); // the CLI's count woke nobody
  await cp.wake(7, 2, 10000);
  for (const w of waiting) assertExit(await w.result, 0);
  const r = await cli(["waiters", "50", "7", "1"], { env: cp.env });
  assertExit(r, 1);
  assert.match(r.stderr, /Fewer than 1 waited on checkpoint 7/);
});

Deno.test("an LTP-style shell test replaces its sleep with `waiters`", async () => {
  using cp = Checkpoint.create();
  const tool =
    `${Deno.execPath()} run --quiet --allow-ffi --allow-env --allow-read=/dev/shm --allow-write=/dev/shm ${ROOT}/cli.ts`;
  // before: `child & sleep 1; kill -STOP $child_pid`; after: no sleep at all
  const script = `
    tst_checkpoint() { ${tool} "$@"; }
    (tst_checkpoint wait 10000 0 && echo "child: released") &
    tst_checkpoint waiters 10000 0 1 || exit 1
    echo "parent: child parked"
    tst_checkpoint wake 10000 0 1 || exit 1
    wait`;
  const r = await run("sh", ["-c", script], { env: cp.env });
  assertExit(r, 0);
  assert.equal(r.stdout, "parent: child parked\nchild: released\n");
});
