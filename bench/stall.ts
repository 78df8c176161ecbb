/**
 * What the bounded reader costs, and what a stalled process costs, as medians:
 *
 * 1. the reader's start (a Worker from a data: URL, libc opened) and one call;
 * 2. futexWaiters() in process (the scan's own cost, reader included);
 * 3. `tst_checkpoint status` of a region with one C waiter, a fresh process
 *    each time (with /proc allowed, so that it scans);
 * 4. the same beside a process stalled in exec on a FUSE FLUSH
 *    (tests/fuse_staller.c --flush; root only).
 *
 *   ./deno run --allow-all bench/stall.ts
 */
import { futexWaiters } from "../ffi/proc.ts";
import { BoundedReader } from "../ffi/reader.ts";
import { lstat } from "../ffi/syscalls.ts";
import { Checkpoint } from "../mod.ts";
import { CLI } from "../testing/paths.ts";
import { compiled } from "../testing/peer.ts";
import { median } from "./report.ts";

const RUNS = 11;

async function timed(fn: () => unknown): Promise<number> {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return median(times);
}

function row(what: string, value: number): void {
  console.log(`${what.padEnd(64)} ${value.toFixed(1).padStart(8)} ms`);
}

const status = () =>
  new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-ffi",
      "--allow-env",
      "--allow-read=/proc,/dev/shm",
      "--allow-write=/dev/shm",
      CLI,
      "status",
    ],
    env: { LTP_IPC_PATH: cp.path, LTP_IPC_LAYOUT: cp.layout },
    stdout: "null",
    stderr: "null",
  }).output();

using cp = Checkpoint.create();
const children: Deno.ChildProcess[] = [];
try {
  row(
    "reader: start and one call",
    await timed(() => {
      using reader = new BoundedReader(performance.now() + 5000);
      reader.run([{ name: "close", args: [-1] }]);
    }),
  );
  const waiter = new Deno.Command(await compiled("peer.c"), {
    args: ["wait", cp.path, cp.layout, "1", "600000"],
    stdout: "null",
  }).spawn();
  children.push(waiter);
  await cp.waitForWaiters(1, 1, 10000);
  const info = lstat(cp.path)!;
  row("futexWaiters() in process", await timed(() => futexWaiters([info])));
  row("tst_checkpoint status, one C waiter", await timed(status));
  if (Deno.uid() === 0) {
    const mount = Deno.makeTempDirSync({ prefix: "ltp-checkpoint-bench-" });
    const staller = new Deno.Command("unshare", {
      args: ["-m", "--propagation", "private", await compiled("fuse_staller.c"), "--flush", mount],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      const reader = staller.stdout.getReader();
      const ready = new TextDecoder().decode((await reader.read()).value ?? new Uint8Array()).startsWith("ready");
      reader.releaseLock();
      if (ready) row("tst_checkpoint status, beside a process stalled in exec", await timed(status));
      else console.log("FUSE cannot be mounted here: no stalled process");
    } finally {
      staller.stdin.close();
      await staller.output();
      Deno.removeSync(mount);
    }
  }
} finally {
  for (const child of children) {
    child.kill("SIGKILL");
    await child.status;
  }
}
