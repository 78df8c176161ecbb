/**
 * The io_uring futex waits (ffi/uring.ts, setWaitPolicy({ uring: true })), with real processes: a waiter process
 * parks its waits through them, and this process and LTP's C wake (tests/peer.c) count and wake them from outside,
 * as any other tool would.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { FutexRing } from "../ffi/uring.ts";
import { childEnv, forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { compiled, noPeer, peer } from "../testing/peer.ts";
import { kill, run } from "../testing/process.ts";
import { eventually, scaled } from "../testing/timing.ts";

forgetCallerEnv();

/** Whether this kernel lets this user have io_uring futex waits (Linux 6.7 and later, io_uring not turned off). */
const URING = (() => {
  const ring = FutexRing.open(() => {});
  ring?.close();
  return ring !== undefined;
})();
const IO_URING_SETUP = 425;
const EPERM = 1;
const ENOSYS = 38;

/**
 * The waiter: parks one wait per id given (an id given twice, two waits), through the module's async waits with
 * the agent's policy; prints `parked uring|fallback`, then `woken ID` or `cancelled ID` as each ends. On stdin:
 * `cancel ID` aborts the waits on ID.
 */
const WAITER = `
import { Checkpoint } from "${new URL("../mod.ts", import.meta.url)}";
import { setWaitPolicy } from "${new URL("../ffi/waitv.ts", import.meta.url)}";
const [ids, timeout] = [JSON.parse(Deno.args[0]), Number(Deno.args[1])];
const uring = setWaitPolicy({ calls: 28, mixWords: true, uring: true });
const cp = Checkpoint.open();
const out = (line) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\\n"));
const aborts = new Map();
const waits = ids.map((id) => {
  const abort = new AbortController();
  aborts.set(id, [...(aborts.get(id) ?? []), abort]);
  return cp.wait(id, timeout, { signal: abort.signal }).then(() => out("woken " + id), () => out("cancelled " + id));
});
out("parked " + (uring ? "uring" : "fallback"));
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
(async () => {
  let rest = "";
  for await (const chunk of lines) {
    const all = (rest + chunk).split("\\n");
    rest = all.pop();
    for (const line of all) for (const abort of aborts.get(Number(line.split(" ")[1])) ?? []) abort.abort();
  }
})();
await Promise.all(waits);
cp.close();
Deno.exit(0);
`;

/** A running waiter: its lines as they come, a way to send it commands, and its end. */
interface Waiter {
  lines: string[];
  child: Deno.ChildProcess;
  send(line: string): Promise<void>;
  ended: Promise<Deno.CommandStatus>;
}

function startWaiter(
  script: string,
  cp: Checkpoint,
  ids: number[],
  timeoutMs: number,
  wrap: string[] = [],
): Waiter {
  const args = ["run", "--allow-all", script, JSON.stringify(ids), `${timeoutMs}`];
  const [cmd, ...rest] = [...wrap, Deno.execPath(), ...args];
  const child = new Deno.Command(cmd, {
    args: rest,
    env: childEnv(cp.env),
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const all = (rest + chunk).split("\n");
      rest = all.pop()!;
      lines.push(...all);
    }
  })();
  const writer = child.stdin.getWriter();
  return {
    lines,
    child,
    send: (line) => writer.write(new TextEncoder().encode(line + "\n")),
    ended: Promise.all([child.status, reading]).then(async ([status]) => {
      await writer.close().catch(() => {});
      return status;
    }),
  };
}

/** Runs `body` with a waiter script in a temporary folder and an LTP region of 1005 ids, both removed after. */
async function withRegion(body: (script: string, cp: Checkpoint) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const script = `${dir.path}/waiter.ts`;
  Deno.writeTextFileSync(script, WAITER);
  using cp = Checkpoint.create({ layout: "ltp" });
  await body(script, cp);
}

/** How many of `ids` the kernel counts one waiter on, now (FUTEX_CMP_REQUEUE onto itself, as waiters() does). */
function counted(cp: Checkpoint, ids: number[]): number {
  return ids.filter((id) => cp.waiters(id) === 1).length;
}

Deno.test({
  name: "1000 io_uring waits on 1000 ids are all counted at once; cancelling one leaves the other 999 counted",
  ignore: !URING,
  fn: () =>
    withRegion(async (script, cp) => {
      const ids = Array.from({ length: 1000 }, (_, i) => i);
      const w = startWaiter(script, cp, ids, scaled(120_000));
      try {
        await eventually(() => w.lines.includes("parked uring"), scaled(30_000));
        await eventually(() => counted(cp, ids) === 1000, scaled(30_000));
        // all of them at once, every time anyone looks
        for (let look = 0; look < 5; look++) assert.equal(counted(cp, ids), 1000);
        await w.send("cancel 500");
        await eventually(() => w.lines.includes("cancelled 500"), scaled(10_000));
        assert.equal(cp.waiters(500), 0);
        assert.equal(counted(cp, ids), 999);
        // each wake, back to back from one process, is told to the wait it woke: none lost, none woken twice
        for (const id of ids) if (id !== 500) cp.wakeSync(id, 1, scaled(10_000));
        await eventually(() => w.lines.filter((l) => l.startsWith("woken ")).length === 999, scaled(30_000));
        assert.equal((await w.ended).code, 0);
        assert.equal(new Set(w.lines.filter((l) => l.startsWith("woken "))).size, 999);
        assert.ok(!w.lines.includes("woken 500"));
      } finally {
        kill(w.child, "SIGKILL");
        await w.ended;
      }
    }),
});

Deno.test({
  name: "LTP's C wake counts io_uring waiters: FUTEX_WAKE(INT_MAX) of a word with 5 waits wakes exactly 5",
  ignore: !URING || noPeer(),
  fn: () =>
    withRegion(async (script, cp) => {
      const w = startWaiter(script, cp, [3, 3, 3, 3, 3, 4], scaled(120_000));
      try {
        await eventually(() => w.lines.includes("parked uring"), scaled(30_000));
        await eventually(() => cp.waiters(3) === 5 && cp.waiters(4) === 1, scaled(30_000));
        const bin = await peer();
        // LTP's wake succeeds only when the sum of its FUTEX_WAKEs is exactly what it was asked for
        const wake = (id: number, nr: number) => run(bin, ["wake", cp.path, "ltp", `${id}`, `${nr}`, "1000"]);
        assert.equal((await wake(3, 5)).code, 0);
        assert.equal((await wake(4, 1)).code, 0);
        assert.equal((await w.ended).code, 0);
        assert.equal(w.lines.filter((l) => l === "woken 3").length, 5);
        assert.ok(w.lines.includes("woken 4"));
      } finally {
        kill(w.child, "SIGKILL");
        await w.ended;
      }
    }),
});

Deno.test({
  name: "an io_uring wait leaves the kernel at its deadline, and all of them when their process is killed",
  ignore: !URING,
  fn: () =>
    withRegion(async (script, cp) => {
      const ids = Array.from({ length: 50 }, (_, i) => i);
      const short = startWaiter(script, cp, [60], 200);
      const w = startWaiter(script, cp, ids, scaled(120_000));
      try {
        await eventually(() => short.lines.includes("cancelled 60"), scaled(10_000));
        assert.equal(cp.waiters(60), 0);
        assert.equal((await short.ended).code, 0);
        await eventually(() => counted(cp, ids) === 50, scaled(30_000));
        kill(w.child, "SIGKILL");
        await w.ended;
        await eventually(() => ids.every((id) => cp.waiters(id) === 0), scaled(10_000));
      } finally {
        kill(short.child, "SIGKILL");
        kill(w.child, "SIGKILL");
        await Promise.all([short.ended, w.ended]);
      }
    }),
});

for (const [errno, name] of [[EPERM, "EPERM"], [ENOSYS, "ENOSYS"]] as const) {
  Deno.test({
    name:
      `where io_uring_setup fails with ${name} (a seccomp filter), the waits fall back to futex_waitv and are counted`,
    ignore: noPeer(),
    fn: () =>
      withRegion(async (script, cp) => {
        const nosys = await compiled("nosys.c");
        const ids = [0, 1, 2];
        const w = startWaiter(script, cp, ids, scaled(120_000), [nosys, `${errno}`, `${IO_URING_SETUP}`]);
        try {
          await eventually(() => w.lines.includes("parked fallback"), scaled(30_000));
          await eventually(() => counted(cp, ids) === 3, scaled(30_000));
          for (const id of ids) cp.wakeSync(id, 1, scaled(10_000));
          assert.equal((await w.ended).code, 0);
          assert.equal(w.lines.filter((l) => l.startsWith("woken ")).length, 3);
        } finally {
          kill(w.child, "SIGKILL");
          await w.ended;
        }
      }),
  });
}

Deno.test("the module's own default stays the thread-pool calls: no io_uring unless asked for", async () => {
  const out = await run(Deno.execPath(), [
    "eval",
    `import { Checkpoint } from "${ROOT}/mod.ts";
     using cp = Checkpoint.create();
     const waiting = cp.wait(0, 10000);
     await cp.waitForWaiters(0, 1, 10000);
     const rings = [...Deno.readDirSync("/proc/self/fd")].filter((fd) => {
       try { return Deno.readLinkSync("/proc/self/fd/" + fd.name) === "anon_inode:[io_uring]"; } catch { return false; }
     });
     cp.wakeSync(0, 1, 10000);
     await waiting;
     console.log(rings.length);`,
  ]);
  assert.equal(out.stderr, "");
  assert.equal(out.stdout.trim(), "0");
});
