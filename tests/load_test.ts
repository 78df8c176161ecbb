/**
 * Load: a token ring of mixed participants, a wake of many waiters, many async
 * waits in one process. Sized for CI; `deno task stress` runs it larger
 * (STRESS_ROUNDS, default 100 here, 2000 there).
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { CLI, ROOT } from "../testing/paths.ts";
import { noPeer, startPeer } from "../testing/peer.ts";
import { CHILD_FLAGS, start, startActor, startCli } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const ROUNDS = Number(Deno.env.get("STRESS_ROUNDS") ?? 100);

Deno.test(`8 processes of three kinds pass a token around a ring ${ROUNDS} times`, { ignore: noPeer() }, async () => {
  using cp = Checkpoint.create();
  const size = 8;
  const tool = [Deno.execPath(), "run", ...CHILD_FLAGS, CLI].join(" ");
  const kinds = ["deno-async", "c", "cli", "deno-sync", "c", "deno-async", "cli", "c"];
  const participants = await Promise.all(kinds.map((kind, id) => {
    const next = `${(id + 1) % size}`;
    const args = [`${id}`, next, `${ROUNDS}`];
    if (kind === "c") return startPeer(["ring", cp.path, cp.layout, ...args]);
    if (kind === "cli") {
      return start("sh", [`${ROOT}/tests/fixtures/ring.sh`, ...args], { env: { ...cp.env, TST_CHECKPOINT: tool } });
    }
    return startActor(["ring", kind === "deno-sync" ? "sync" : "async", ...args], { env: cp.env });
  }));
  for (const [id, p] of participants.entries()) {
    const r = await p.result;
    assertExit(r, 0);
    assert.equal(r.stdout.trim(), `${ROUNDS}`, `participant ${id} (${kinds[id]}) took ${r.stdout.trim()} tokens`);
  }
  for (let id = 0; id < size; id++) assert.equal(cp.waiters(id), 0, `a waiter is left on ${id}`);
});

Deno.test("one wake with nrWake 64 releases 64 waiters of two kinds", { ignore: noPeer() }, async () => {
  using cp = Checkpoint.create({ layout: "ltp" });
  const waiters = await Promise.all(
    Array.from(
      { length: 64 },
      (_, i) =>
        i % 8 === 0
          ? Promise.resolve(startCli(["wait", "30000", "5"], { env: cp.env }))
          : startPeer(["wait", cp.path, cp.layout, "5", `${scaled(30000)}`]), // the C peer does not scale it
    ),
  );
  await cp.waitForWaiters(5, 64, 30000);
  await cp.wake(5, 64, 10000);
  for (const w of waiters) assertExit(await w.result, 0);
  assert.equal(cp.waiters(5), 0);
});

Deno.test("256 concurrent async waits in one process are all woken, and the process then ends at once", async () => {
  using cp = Checkpoint.create();
  const child = startActor(["many", "256", "3", "30000"], { env: cp.env });
  await cp.waitForWaiters(3, 1, 10000);
  const start = performance.now();
  await cp.wake(3, 256, 20000); // 16 kernel calls hold the 256 waits
  const woken = performance.now();
  const r = await child.result;
  assertExit(r, 0);
  assert.equal(r.stdout, "woken\n");
  const ended = performance.now() - woken;
  assert.ok(
    ended < scaled(3000),
    `the child lingered ${ended} ms after its waits were woken (all took ${woken - start} ms)`,
  );
  assert.equal(cp.waiters(3), 0);
});
