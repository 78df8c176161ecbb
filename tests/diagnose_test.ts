/** Hangs staged with real processes: every timeout says who waits where, and status names the waiters. */
import assert from "node:assert/strict";
import { Checkpoint, CheckpointTimedOut } from "../mod.ts";
import {
  assertExit,
  assertOneLine,
  CHILD_FLAGS,
  CLI,
  cli,
  NO_PEER,
  run,
  scaled,
  startActor,
  startCli,
  startPeer,
} from "./helpers.ts";

type Started = { child: Deno.ChildProcess; result: Promise<unknown> };

/** Ends the children a test started as waiters, whatever happened. */
async function stop(children: Started[]): Promise<void> {
  for (const { child } of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // it had ended already
    }
  }
  await Promise.all(children.map((c) => c.result));
}

Deno.test("a timed-out wait, wake or waitForWaiters says which checkpoints have waiters, C, CLI and Deno alike", {
  ignore: NO_PEER,
}, async () => {
  using cp = Checkpoint.create();
  const waiters: Started[] = [
    await startPeer(["wait", cp.path, "ltp", "3", `${scaled(30000)}`]),
    startActor(["wait", "5", "30000"], { env: cp.env }),
    startCli(["wait", "30000", "5"], { env: cp.env }),
  ];
  try {
    await cp.waitForWaiters(3, 1, scaled(10000));
    await cp.waitForWaiters(5, 2, scaled(10000));
    const listed = /waiting now: checkpoint 3 \(1 waiting\), checkpoint 5 \(2 waiting\)$/;

    const wait = await cli(["wait", "50", "0"], { env: cp.env });
    assertExit(wait, 1);
    assertOneLine(wait.stderr, new RegExp(`Nobody woke checkpoint 0 within 50 ms \\(${cp.path}\\); ${listed.source}`));
    const wake = await cli(["wake", "50", "0", "1"], { env: cp.env });
    assertExit(wake, 1);
    assertOneLine(
      wake.stderr,
      new RegExp(`Could not wake exactly 1 on checkpoint 0 within 50 ms .*; ${listed.source}`),
    );
    const count = await cli(["waiters", "50", "5", "3"], { env: cp.env });
    assertExit(count, 1);
    assertOneLine(count.stderr, new RegExp(`Fewer than 3 waited on checkpoint 5 .*; ${listed.source}`));

    for (
      const attempt of [
        () => cp.wait(0, 50),
        () => cp.wake(0, 1, 50),
        () => Promise.resolve().then(() => cp.waitSync(0, 50)),
      ]
    ) {
      const error = await attempt().then(() => undefined, (e) => e);
      assert.ok(error instanceof CheckpointTimedOut && error instanceof Deno.errors.TimedOut, String(error));
      assert.deepEqual(error.snapshot.waiters, { 3: 1, 5: 2 });
      assert.match(error.message, listed);
    }
  } finally {
    await stop(waiters);
  }
});

Deno.test("nobody waiting anywhere is said in so many words", async () => {
  using cp = Checkpoint.create();
  const r = await cli(["wake", "20", "9", "1"], { env: cp.env });
  assertExit(r, 1);
  assertOneLine(r.stderr, /Could not wake exactly 1 on checkpoint 9 within 20 ms .*; nobody waits anywhere$/);
});

Deno.test("a wake that woke more than NR_WAKE says how many it woke and why that fails", async () => {
  using cp = Checkpoint.create();
  const waiters = [
    startCli(["wait", "30000", "1"], { env: cp.env }),
    startActor(["wait", "1", "30000"], { env: cp.env }),
  ];
  await cp.waitForWaiters(1, 2, scaled(10000));
  const r = await cli(["wake", "100", "1", "1"], { env: cp.env });
  assertExit(r, 1);
  assertOneLine(
    r.stderr,
    /Could not wake exactly 1 on checkpoint 1 within 100 ms .*: woke 2, and LTP counts waking more than 1 as a failure/,
  );
  for (const w of waiters) assertExit(await w.result, 0);

  const again = [cp.wait(2, scaled(10000)), cp.wait(2, scaled(10000))];
  await cp.waitForWaiters(2, 2, scaled(5000));
  const error = await cp.wake(2, 1, 50).then(() => undefined, (e) => e);
  assert.ok(error instanceof CheckpointTimedOut);
  assert.equal(error.woken, 2);
  await Promise.all(again);
});

Deno.test("a waiter on the other layout's word is named, with the fix, both ways round", async () => {
  for (
    const [waiterLayout, wakerLayout, fix] of [["seed", "ltp", /set LTP_IPC_LAYOUT=seed/], [
      "ltp",
      "seed",
      /unset LTP_IPC_LAYOUT/,
    ]]
  ) {
    using cp = Checkpoint.create({ layout: wakerLayout as "seed" | "ltp" });
    const waiter = startCli(["--layout", waiterLayout as string, "wait", "30000", "0"], {
      env: { LTP_IPC_PATH: cp.path },
    });
    const byte = waiterLayout === "seed" ? 4 : 76;
    try {
      await Checkpoint.open(cp.path, { layout: waiterLayout as "seed" | "ltp" }).waitForWaiters(0, 1, scaled(10000));
      const r = await cli(["--layout", wakerLayout as string, "wake", "50", "0", "1"], {
        env: { LTP_IPC_PATH: cp.path },
      });
      assertExit(r, 1);
      assertOneLine(
        r.stderr,
        new RegExp(
          `1 process waits on checkpoint 0 of the ${waiterLayout} layout \\(byte ${byte}\\): the two sides disagree`,
        ),
      );
      assert.match(r.stderr, fix as RegExp);
      if (waiterLayout === "seed") {
        const status = await cli(["status"], { env: { LTP_IPC_PATH: cp.path } });
        assert.match(status.stdout, /elsewhere: 1 waiting on checkpoint 0 of the seed layout \(byte 4\)/);
      }
      const error = await cp.wake(0, 1, 20).then(() => undefined, (e) => e);
      assert.ok(error instanceof CheckpointTimedOut);
      assert.deepEqual(error.snapshot.otherLayout, { layout: waiterLayout, waiters: { 0: 1 } });
    } finally {
      await stop([waiter]);
    }
  }
});

Deno.test("status names each waiting process with --allow-read=/proc, async Deno waiters included", {
  ignore: NO_PEER,
}, async () => {
  using cp = Checkpoint.create();
  const c = await startPeer(["wait", cp.path, "ltp", "7", `${scaled(30000)}`]);
  const deno = startActor(["wait", "7", "30000"], { env: cp.env });
  const tool = startCli(["wait", "30000", "7"], { env: cp.env });
  const waiters = [c, deno, tool];
  try {
    await cp.waitForWaiters(7, 3, scaled(10000));
    const flags = CHILD_FLAGS.map((f) => f.startsWith("--allow-read=") ? `${f},/proc` : f);
    const r = await run(Deno.execPath(), ["run", ...flags, CLI, "status", "--json"], { env: cp.env });
    assertExit(r, 0);
    const status = JSON.parse(r.stdout);
    assert.deepEqual(status.waiters, { 7: 3 });
    const pids = status.processes[7].map((p: { pid: number }) => p.pid).sort();
    assert.deepEqual(pids, waiters.map((w) => w.child.pid).sort());
    assert.ok(status.processes[7].every((p: { comm: string }) => p.comm.length > 0));
    assert.equal(status.note, undefined);

    const text = await run(Deno.execPath(), ["run", ...flags, CLI, "status"], { env: cp.env });
    assert.match(text.stdout, new RegExp(`checkpoint 7: 3 waiting: pid \\d+ \\(\\S+\\), pid \\d+ \\(deno\\)`));
    assert.match(text.stdout, new RegExp(`pid ${deno.child.pid} \\(deno\\)`));

    const plain = JSON.parse((await cli(["status", "--json"], { env: cp.env })).stdout);
    assert.equal(plain.processes, undefined);
    assert.match(plain.note, /--allow-read=\/proc/);
  } finally {
    await stop(waiters);
  }
});
