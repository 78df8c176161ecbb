/** Hangs staged with real processes: every timeout says who waits where, and status names the waiters. */
import assert from "node:assert/strict";
import { lstat } from "../ffi/syscalls.ts";
import { libc } from "../ffi/libc.ts";
import { futexWaiters } from "../ffi/proc.ts";
import { Checkpoint, CheckpointTimedOut } from "../mod.ts";
import { safeJson } from "../src/escape.ts";
import { formatStatus } from "../src/status.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { endStaller, fuseServing, outputWithin, startStaller } from "../testing/fuse.ts";
import { CLI, ROOT } from "../testing/paths.ts";
import { compiled, noPeer, startPeer } from "../testing/peer.ts";
import { CHILD_FLAGS, cli, run, startActor, startCli } from "../testing/process.ts";
import { eventually, scaled, shownMs } from "../testing/timing.ts";

forgetCallerEnv();

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
  ignore: noPeer(),
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
    assertOneLine(
      wait.stderr,
      new RegExp(`Nobody woke checkpoint 0 within ${shownMs(50)} ms \\(${cp.path}\\); ${listed.source}`),
    );
    const wake = await cli(["wake", "50", "0", "1"], { env: cp.env });
    assertExit(wake, 1);
    assertOneLine(
      wake.stderr,
      new RegExp(`Could not wake exactly 1 on checkpoint 0 within ${shownMs(50)} ms .*; ${listed.source}`),
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
  assertOneLine(
    r.stderr,
    new RegExp(`Could not wake exactly 1 on checkpoint 9 within ${shownMs(20)} ms .*; nobody waits anywhere$`),
  );
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
    new RegExp(
      `Could not wake exactly 1 on checkpoint 1 within ${
        shownMs(100)
      } ms .*: woke 2, and LTP counts waking more than 1 as a failure`,
    ),
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
  ignore: noPeer(),
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

/** The attacks on the /proc scanner (tests/forger.c, tests/fuse_staller.c), each a process that blocks until killed. */
async function startForger(mode: string, path: string, offset: number, comm: string) {
  const child = new Deno.Command(await compiled("forger.c"), {
    args: [mode, path, `${offset}`, comm],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const started = { child, result: child.status };
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  if (!new TextDecoder().decode(value).startsWith("ready")) {
    await stop([started]);
    throw new Error(`forger ${mode} could not start`);
  }
  return started;
}

/** Whether the process's main thread sits in syscall `nr` (what its record says, forged or not). */
function recordSays(pid: number, nr: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/syscall`).startsWith(`${nr} `);
  } catch {
    return false;
  }
}

// raw C0 but newline, DEL and C1: what must never reach the terminal
// deno-lint-ignore no-control-regex
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;

Deno.test("status names no more processes at an id than the kernel counts without saying so, and escapes their names", {
  ignore: noPeer(),
}, async () => {
  using dir = tempDir();
  using cp = Checkpoint.create({ dir: dir.path });
  const word = 76 + 4 * 2;
  const children = [await startForger("real", cp.path, word, "real-waiter")];
  try {
    for (const comm of ["forged-1", "forged\n\x1b[31m2", "note: forged"]) {
      children.push(await startForger("futex", cp.path, word, comm));
    }
    const { futex } = libc().numbers;
    await cp.waitForWaiters(2, 1, scaled(10000));
    await eventually(() => children.every((c) => recordSays(c.child.pid, futex)));
    const status = cp.status();
    assert.deepEqual(status.waiters, { 2: 1 }, "the kernel counts the real waiter only");
    assert.equal(status.processes?.[2].length, 4);
    assert.match(status.note ?? "", /checkpoint 2: 4 candidates for 1 waiting: some records are not real waits/);
    const text = formatStatus(status);
    assert.match(text, /checkpoint 2: 1 waiting \(4 candidates: some records are not real waits\): /);
    assert.doesNotMatch(text, RAW_CONTROL);
    assert.match(text, /pid \d+ \(forged\\x0a\\x1b\[31m2\)/);
    assert.equal(text.split("\n").filter((l) => l.startsWith("note:")).length, 1, text);
    assert.doesNotMatch(safeJson(status), RAW_CONTROL);
    assert.deepEqual(JSON.parse(safeJson(status)), JSON.parse(JSON.stringify(status)));
  } finally {
    await stop(children);
  }
});

Deno.test("a futex_waitv record with its vector at 0x8000000000000000 or in a file's page is skipped, never read", {
  ignore: noPeer(),
}, async () => {
  using dir = tempDir();
  using cp = Checkpoint.create({ dir: dir.path });
  const children = [await startForger("real", cp.path, 76 + 4, "real-waiter")];
  try {
    children.push(await startForger("waitv-wild", cp.path, 76 + 4, "wild"));
    children.push(await startForger("waitv-file", cp.path, 76 + 4, "in-file"));
    const { futex_waitv } = libc().numbers;
    await cp.waitForWaiters(1, 1, scaled(10000));
    await eventually(() => children.slice(1).every((c) => recordSays(c.child.pid, futex_waitv)));
    const { dev, ino } = lstat(cp.path)!;
    const found = futexWaiters([{ dev, ino }]);
    assert.deepEqual(found.waiters.map((w) => w.pid), [children[0].child.pid]);
    assert.ok(found.skipped >= 2, `skipped ${found.skipped}`);
    const status = cp.status();
    assert.deepEqual(status.processes, { 1: [{ pid: children[0].child.pid, comm: "real-waiter" }] });
    assert.equal(status.note, undefined);
  } finally {
    await stop(children);
  }
});

Deno.test("the scan stops at its time budget and at 16 MiB of one process's maps, and says so in counts", {
  ignore: noPeer(),
}, async () => {
  using dir = tempDir();
  using cp = Checkpoint.create({ dir: dir.path });
  const children = [await startForger("real", cp.path, 76, "real-waiter")];
  try {
    // two processes with 60,000 mappings of a memfd with a long name each, waiting on their own file
    for (let i = 0; i < 2; i++) children.push(await startForger("many-maps", cp.path, 76, "many-maps"));
    await cp.waitForWaiters(0, 1, scaled(10000));
    const { dev, ino } = lstat(cp.path)!;
    const found = futexWaiters([{ dev, ino }], { budgetMs: scaled(30000) });
    assert.deepEqual(found.waiters.map((w) => w.pid), [children[0].child.pid]);
    assert.ok(found.failed >= 2, `maps beyond the bound are failures: ${JSON.stringify(found)}`);
    const none = futexWaiters([{ dev, ino }], { budgetMs: 0 });
    assert.deepEqual(none.waiters, []);
    assert.ok(none.unscanned > 0, "a spent budget leaves processes unscanned, counted");
  } finally {
    await stop(children);
  }
});

Deno.test({
  name: "status returns while a process sits in futex_waitv with its vector in a FUSE page nobody serves (needs root)",
  ignore: Deno.uid() !== 0 || noPeer(),
  async fn(t) {
    using dir = tempDir();
    const mount = `${dir.path}/mnt`;
    Deno.mkdirSync(mount);
    using cp = Checkpoint.create({ dir: dir.path });
    const { staller, release } = await startStaller([mount, cp.path, "80"]);
    try {
      if (!await fuseServing(staller, t, release)) return;
      await cp.waitForWaiters(1, 1, scaled(10000));
      const script = `
        import { Checkpoint } from "${ROOT}/mod.ts";
        using cp = Checkpoint.open(${JSON.stringify(cp.path)}, { layout: "ltp" });
        console.log(JSON.stringify(cp.status()));
      `;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", script],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const outcome = await outputWithin(child, release, scaled(20000), "status blocked on the FUSE page");
      assertExit({ code: outcome.code, stdout: new TextDecoder().decode(outcome.stdout), stderr: "" }, 0);
      const status = JSON.parse(new TextDecoder().decode(outcome.stdout));
      assert.deepEqual(status.waiters, { 1: 1 });
      assert.deepEqual(status.processes[1].map((p: { pid: number }) => p.pid), [staller.pid]);
    } finally {
      await endStaller(staller, release);
    }
  },
});
