/** Async waits: in the kernel for their whole length, out of it before they settle, counted at every instant. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { startActor } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

/** True when nobody waits on `id`: a wake of 0 succeeds only while the kernel holds no waiter there. */
function nobodyWaits(cp: Checkpoint, id: number): boolean {
  return cp.waiters(id) === 0 && (() => {
    try {
      cp.wakeSync(id, 0, 1);
      return true;
    } catch {
      return false;
    }
  })();
}

Deno.test("an aborted or timed-out wait has left the kernel when it settles: it never takes a later wake", async () => {
  using cp = Checkpoint.create();
  for (let i = 0; i < 50; i++) {
    const controller = new AbortController();
    const waiting = cp.wait(0, 10000, { signal: controller.signal });
    await cp.waitForWaiters(0, 1, 5000);
    controller.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
    assert.ok(nobodyWaits(cp, 0), `try ${i}: the aborted wait is still in the kernel`);

    await assert.rejects(cp.wait(1, 5), Deno.errors.TimedOut);
    assert.ok(nobodyWaits(cp, 1), `try ${i}: the timed-out wait is still in the kernel`);
  }
});

Deno.test("a pending async wait is counted by another process at every instant, and a C-style wake reaches it", async () => {
  using cp = Checkpoint.create();
  const child = startActor(["wait", "0", "30000"], { env: cp.env });
  await cp.waitForWaiters(0, 1, scaled(10000));
  const counts = Array.from({ length: 3000 }, () => cp.waiters(0));
  const missed = counts.filter((n) => n !== 1).length;
  assert.equal(missed, 0, `${missed} of 3000 counts missed the pending wait`);
  cp.wakeSync(0, 1, 1000); // one FUTEX_WAKE, as LTP's C code does it
  assertExit(await child.result, 0);
});

Deno.test("a same-process wakeSync reaches pending async waits, several on one id too", async () => {
  using cp = Checkpoint.create();
  const waiting = cp.wait(2, scaled(10000));
  cp.wakeSync(2, 1, scaled(5000));
  await waiting;
  const three = [cp.wait(2, scaled(10000)), cp.wait(2, scaled(10000)), cp.wait(2, scaled(10000))];
  cp.wakeSync(2, 3, scaled(5000)); // blocks the event loop: the three must be in the kernel without its help
  await Promise.all(three);
  assert.equal(cp.waiters(2), 0);
});

Deno.test("timeouts that are not 1 to 4294967295 ms are refused before anything waits", async () => {
  using cp = Checkpoint.create();
  for (const bad of [Infinity, 2 ** 32, 0]) {
    await assert.rejects(cp.wait(0, bad), RangeError);
    assert.throws(() => cp.waitSync(0, bad), RangeError);
  }
  assert.equal(cp.waiters(0), 0);
});

Deno.test("1000 concurrent waits on one id in one process are all released by one wake(1000)", async () => {
  using cp = Checkpoint.create();
  const child = startActor(["many", "1000", "4", "60000"], { env: cp.env });
  await cp.waitForWaiters(4, 1000, scaled(20000));
  assert.equal(cp.waiters(4), 1000);
  await cp.wake(4, 1000, scaled(10000)); // exactly 1000: one more or one fewer would time out
  const r = await child.result;
  assertExit(r, 0);
  assert.equal(r.stdout, "woken\n");
});

Deno.test("waits on 16 distinct ids in one process are all counted at once and all woken", async () => {
  using cp = Checkpoint.create();
  const ids = Array.from({ length: 16 }, (_, i) => 10 + i);
  const waits = ids.map((id) => cp.wait(id, scaled(30000)));
  for (const id of ids) await cp.waitForWaiters(id, 1, scaled(10000));
  for (let i = 0; i < 100; i++) assert.deepEqual(ids.map((id) => cp.waiters(id)), ids.map(() => 1));
  for (const id of ids) await cp.wake(id, 1, scaled(5000));
  await Promise.all(waits);
  assert.deepEqual(cp.snapshot().waiters, {});
});

Deno.test("waits on 48 distinct ids, more than Deno runs at once, take turns and lose no wake in 20 rounds", async () => {
  using cp = Checkpoint.create();
  const ids = Array.from({ length: 48 }, (_, i) => 100 + i);
  for (let round = 0; round < 20; round++) {
    const waits = ids.map((id) => cp.wait(id, scaled(30000)));
    for (const id of ids) await cp.wake(id, 1, scaled(5000)); // waits out of turn are met when back
    await Promise.all(waits);
    assert.deepEqual(cp.snapshot().waiters, {}, `round ${round}`);
  }
});

Deno.test("closing a region rejects its pending waits with BadResource and leaves nothing in the kernel", async () => {
  const cp = Checkpoint.create();
  const other = Checkpoint.open(cp.path);
  try {
    const waiting = cp.wait(3, scaled(10000));
    await other.waitForWaiters(3, 1, scaled(5000));
    cp.close();
    await assert.rejects(waiting, Deno.errors.BadResource);
    assert.equal(other.waiters(3), 0);
  } finally {
    other.close();
  }
});

Deno.test({
  name: "waits queued beyond their share of Deno's thread pool time out and abort, leaving no timer or call behind",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    using cp = Checkpoint.create();
    const controller = new AbortController();
    const end = (waiting: Promise<void>) => waiting.then(() => "woken", (e) => e.name);
    const timingOut = Array.from({ length: 24 }, (_, i) => end(cp.wait(200 + i, 50)));
    const aborted = Array.from(
      { length: 24 },
      (_, i) => end(cp.wait(300 + i, scaled(30000), { signal: controller.signal })),
    );
    assert.deepEqual(await Promise.all(timingOut), timingOut.map(() => "TimedOut"));
    controller.abort();
    assert.deepEqual(await Promise.all(aborted), aborted.map(() => "AbortError"));
    assert.deepEqual(cp.snapshot().waiters, {});
  },
});
