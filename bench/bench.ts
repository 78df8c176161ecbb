/**
 * The benchmarks, side by side in one run, as medians and ratios to baselines
 * measured in the same run (runs of different set-ups are interleaved, so that
 * a noisy neighbour slows all of them alike):
 *
 * 1. ping-pong round trip, unpinned and with both processes pinned to one CPU:
 *    C to C with LTP's algorithm (the baseline), the floors (a raw futex
 *    ping-pong with the turn in the word, in C and in Deno: bench/floor.ts;
 *    LTP's protocol done raw in Deno, sync and with thread-pool waits), Deno
 *    to Deno (sync, async) and Deno to the C peer; each also as a multiple of
 *    Deno's floor on one CPU (unpinned ones also of the unpinned floor);
 * 2. the CPU a waker spends over a 2 s wait for a late waiter, ours and LTP's;
 * 3. the event loop's worst lag with 100 async waits pending;
 * 4. the CPU an idle process spends over 3 s holding 10 pending async waits;
 * 5. snapshot() and status() (with /proc readable);
 * 6. 1000 async waits in one process released by one wake(1000);
 * 7. the installed CLI: exec → parked of its wait beside Deno's floor and C's,
 *    and one call against `deno run` of an empty file (bench/startup.ts);
 * 8. the async round trip against LTP's protocol done raw through the thread
 *    pool, and waits that time out together (bench/async.ts);
 *
 * then the project's targets, each met, or missed with what the miss means.
 *
 *   ./deno task bench [--quick]
 */
import { Checkpoint } from "../mod.ts";
import { ACTOR } from "../testing/paths.ts";
import { peer, startPeer } from "../testing/peer.ts";
import { CHILD_FLAGS, run, start, startActor } from "../testing/process.ts";
import { median, ms, printRows, printTargets, ratio, type Row, runLine, type Target, us } from "./report.ts";
import { asyncWaits } from "./async.ts";
import { startup } from "./startup.ts";

const quick = Deno.args.includes("--quick");
/** Round trips per ping-pong run; LTP's C algorithm sleeps 1 ms a try, so it gets fewer. */
const ROUNDS = quick ? 1000 : 3000;
const SLOW_ROUNDS = quick ? 200 : 600;
const REPEATS = quick ? 3 : 5;
const FLOOR = new URL("./floor.ts", import.meta.url).pathname;

const rows: Row[] = [];
const log = (r: Row) => console.error(r.join("  "));
const row = (what: string, who: string, value: string, vsBase: string, vsFloor = "") => {
  rows.push([what, who, value, vsBase, vsFloor]);
  log([what, who, value, vsBase, vsFloor]);
};
console.error(runLine(quick));
const peerBin = await peer();

// 1. ping-pong: the ping side prints its median round trip in ns
type Side = (path: string, layout: string, role: "ping" | "pong") => string[];
const denoRun = [Deno.execPath(), "run", ...CHILD_FLAGS];
const sides = {
  ltp: (path, layout, role) => [peerBin, role, path, layout, `${SLOW_ROUNDS}`],
  cFloor: (path, layout, role) => [peerBin, `floor-${role}`, path, layout, `${ROUNDS}`],
  floor: (path, layout, role) => [...denoRun, FLOOR, role, path, layout, `${ROUNDS}`, "word"],
  protocol: (path, layout, role) => [...denoRun, FLOOR, role, path, layout, `${ROUNDS}`, "protocol"],
  protocolAsync: (path, layout, role) => [...denoRun, FLOOR, role, path, layout, `${ROUNDS}`, "protocol-async"],
  c: (path, layout, role) => [peerBin, role, path, layout, `${ROUNDS}`],
  sync: (_path, _layout, role) => [...denoRun, ACTOR, role, "sync", `${ROUNDS}`],
  async: (_path, _layout, role) => [...denoRun, ACTOR, role, "async", `${ROUNDS}`],
} satisfies Record<string, Side>;

const pairs = [
  ["ltp", "C ↔ C (LTP's algorithm)", sides.ltp, sides.ltp],
  ["cFloor", "floor: C ↔ C, raw futex, turn in the word", sides.cFloor, sides.cFloor],
  ["floor", "floor: Deno ↔ Deno, raw futex, turn in the word", sides.floor, sides.floor],
  ["protocol", "Deno ↔ Deno, LTP's protocol raw, sync (yields)", sides.protocol, sides.protocol],
  ["protocolAsync", "Deno ↔ Deno, LTP's protocol raw, thread-pool waits", sides.protocolAsync, sides.protocolAsync],
  ["sync", "Deno ↔ Deno, sync", sides.sync, sides.sync],
  ["async", "Deno ↔ Deno, async", sides.async, sides.async],
  ["peer", "Deno ↔ C peer, sync", sides.sync, sides.c],
] as const;
type Pair = (typeof pairs)[number][0];

async function pingPong(ping: Side, pong: Side, pinned: boolean): Promise<number> {
  using cp = Checkpoint.create();
  const wrap = (argv: string[]) => pinned ? ["taskset", "-c", "0", ...argv] : argv;
  const [pongCmd, ...pongArgs] = wrap(pong(cp.path, cp.layout, "pong"));
  const [pingCmd, ...pingArgs] = wrap(ping(cp.path, cp.layout, "ping"));
  const ponger = start(pongCmd, pongArgs, { env: cp.env });
  const pinger = await run(pingCmd, pingArgs, { env: cp.env });
  const pongResult = await ponger.result;
  if (pinger.code !== 0 || pongResult.code !== 0) {
    throw new Error(`ping-pong failed: ${pinger.stderr}${pongResult.stderr}`);
  }
  return Number(pinger.stdout);
}

console.error(`ping-pong: ${ROUNDS} round trips (LTP's C: ${SLOW_ROUNDS}), median of ${REPEATS} interleaved runs`);
const roundTrips = { unpinned: {} as Record<Pair, number[]>, pinned: {} as Record<Pair, number[]> };
for (let i = 0; i < REPEATS; i++) {
  for (const pinned of [false, true]) {
    for (const [key, , ping, pong] of pairs) {
      (roundTrips[pinned ? "pinned" : "unpinned"][key] ??= []).push(await pingPong(ping, pong, pinned));
    }
  }
}
const rt = { unpinned: {} as Record<Pair, number>, pinned: {} as Record<Pair, number> };
for (const where of ["unpinned", "pinned"] as const) {
  for (const [key] of pairs) rt[where][key] = median(roundTrips[where][key]);
}
// every figure as a multiple of Deno's floor on one CPU; unpinned ones also of the unpinned floor
const floor = rt.pinned.floor;
for (const where of ["unpinned", "pinned"] as const) {
  for (const [key, who] of pairs) {
    const [t, base] = [rt[where][key], rt[where].ltp];
    const what = `round trip, ${where === "pinned" ? "both on one CPU" : "unpinned"}`;
    const vsFloor = where === "pinned" ? ratio(t, floor) : `${ratio(t, floor)} (${ratio(t, rt.unpinned.floor)})`;
    row(what, who, us(t), key === "ltp" ? "1.00× (baseline)" : ratio(t, base), vsFloor);
  }
}

// 2. the CPU a waker burns while its waiter is 2 s late
async function wakerCpu(kind: "c" | "sync" | "async"): Promise<number> {
  using cp = Checkpoint.create();
  const waker = kind === "c"
    ? start(peerBin, ["run", peerBin, "wake", cp.path, cp.layout, "0", "1", "10000"])
    : startActor(["cpu-wake", kind, "0", "10000"], { env: cp.env });
  await new Promise((r) => setTimeout(r, 2000));
  const waiter = await startPeer(["wait", cp.path, cp.layout, "0", "10000"]);
  const out = await waker.result;
  if (out.code !== 0 || (await waiter.result).code !== 0) throw new Error(`waker failed: ${out.stderr}`);
  return kind === "c" ? JSON.parse(out.stdout).cpu_ns : Number(out.stdout);
}
const cpuRuns = quick ? 1 : 3;
const cpu = { c: [] as number[], sync: [] as number[], async: [] as number[] };
for (let i = 0; i < cpuRuns; i++) {
  for (const kind of ["c", "sync", "async"] as const) cpu[kind].push(await wakerCpu(kind));
}
const cpuBase = median(cpu.c);
row("waker CPU over a 2 s wait", "C (LTP: 1 ms sleeps)", ms(cpuBase), "1.00× (baseline)");
row("waker CPU over a 2 s wait", "Deno wakeSync", ms(median(cpu.sync)), ratio(median(cpu.sync), cpuBase));
row("waker CPU over a 2 s wait", "Deno wake (async)", ms(median(cpu.async)), ratio(median(cpu.async), cpuBase));

// 3. event-loop lag: how late a 1 ms interval fires, idle and with 100 waits pending (worst, p99, median)
async function lags(pending: number): Promise<number[]> {
  using cp = Checkpoint.create();
  const waits = Array.from({ length: pending }, () => cp.wait(0, 10000));
  const late: number[] = [];
  let last = performance.now();
  const interval = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - last - 1));
    last = now;
  }, 1);
  await new Promise((r) => setTimeout(r, 2000));
  clearInterval(interval);
  if (pending) {
    const waker = await startPeer(["wake", cp.path, cp.layout, "0", `${pending}`, "10000"]);
    await Promise.all(waits);
    await waker.result;
  }
  late.sort((a, b) => a - b);
  return [late[late.length - 1], late[Math.floor(late.length * 0.99)], median(late)];
}
const lagRuns = quick ? 2 : 3;
const idle: number[][] = [], busy: number[][] = [];
for (let i = 0; i < lagRuns; i++) idle.push(await lags(0)), busy.push(await lags(100));
for (const [i, stat] of ["worst", "p99", "median"].entries()) {
  const [a, b] = [median(idle.map((r) => r[i])), median(busy.map((r) => r[i]))];
  const what = `event-loop lag, ${stat} (1 ms interval, 2 s)`;
  row(what, "idle", `${a.toFixed(2)} ms`, "baseline");
  row(what, "100 async waits pending", `${b.toFixed(2)} ms`, `+${Math.max(0, b - a).toFixed(2)} ms`);
}

// 4. idle cost: a process's CPU over 3 s with 10 async waits pending (ids 0-9), against the same with none
async function holdCpu(count: number): Promise<number> {
  using cp = Checkpoint.create();
  const out = await startActor(["hold", `${count}`, "3000"], { env: cp.env }).result;
  if (out.code !== 0) throw new Error(`hold failed: ${out.stderr}`);
  return Number(out.stdout);
}
const holdRuns = quick ? 1 : 3;
const held = { none: [] as number[], ten: [] as number[] };
for (let i = 0; i < holdRuns; i++) {
  // both idle, so both at once
  const [none, ten] = await Promise.all([holdCpu(0), holdCpu(10)]);
  held.none.push(none), held.ten.push(ten);
}
const [heldNone, heldTen] = [median(held.none), median(held.ten)];
row("CPU of a process over 3 s", "Deno, no waits (idle)", ms(heldNone), "baseline");
row(
  "CPU of a process over 3 s",
  "Deno, 10 async waits pending",
  ms(heldTen),
  `+${ms(Math.max(0, heldTen - heldNone))}`,
);

// 5. snapshot() and status() with /proc readable (this runs with --allow-all) and one waiter to name
const diagnose = { snapshot: [] as number[], status: [] as number[] };
{
  using cp = Checkpoint.create();
  const waiter = await startPeer(["wait", cp.path, cp.layout, "3", "60000"]);
  await cp.waitForWaiters(3, 1, 10000);
  for (let i = 0; i < (quick ? 40 : 200); i++) {
    let t = performance.now();
    cp.snapshot();
    diagnose.snapshot.push(performance.now() - t);
    t = performance.now();
    const status = cp.status();
    diagnose.status.push(performance.now() - t);
    if (status.processes?.[3]?.length !== 1) throw new Error(`status did not name the waiter: ${status.note}`);
  }
  cp.wakeSync(3, 1, 10000);
  await waiter.result;
}
const [snapshotMs, statusMs] = [median(diagnose.snapshot), median(diagnose.status)];
row("diagnostics, one call", "snapshot() (every word of the page)", `${snapshotMs.toFixed(2)} ms`, "");
row("diagnostics, one call", "status() (+ /proc scan, 1 waiter)", `${statusMs.toFixed(2)} ms`, "");

// 6. 1000 async waits on one id in one process, released by one wake(1000): until the child prints "woken"
async function release(count: number): Promise<{ wake: number; woken: number }> {
  using cp = Checkpoint.create();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CHILD_FLAGS, ACTOR, "many", `${count}`, "0", "60000"],
    env: cp.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  await cp.waitForWaiters(0, count, 30000);
  const started = performance.now();
  cp.wakeSync(0, count, 10000);
  const woke = performance.now();
  let text = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    if (text.includes("woken")) break;
  }
  const printed = performance.now();
  const status = await child.status;
  if (!text.includes("woken") || !status.success) throw new Error(`many failed: ${await stderr}`);
  await stderr;
  return { wake: woke - started, woken: printed - started };
}
const releases = { wake: [] as number[], woken: [] as number[] };
for (let i = 0; i < (quick ? 1 : 3); i++) {
  const { wake, woken } = await release(1000);
  releases.wake.push(wake), releases.woken.push(woken);
}
const [releaseWake, releaseWoken] = [median(releases.wake), median(releases.woken)];
row("1000 async waits, one wake(1000)", "wakeSync(0, 1000) returns", `${releaseWake.toFixed(1)} ms`, "");
row("1000 async waits, one wake(1000)", 'the waiting child prints "woken"', `${releaseWoken.toFixed(1)} ms`, "");

// 7. the installed CLI
const cli = await startup(quick, log);
rows.push(...cli.rows);

// 8. async waits against LTP's protocol done raw through Deno's thread pool; mass timeouts (bench/async.ts)
const waits = await asyncWaits(quick, log);
rows.push(...waits.rows);

console.log(runLine(quick));
printRows(rows);

// the project's targets, with what a miss means for a test
const { pinned, unpinned } = rt;
const targets: Target[] = [
  {
    what: "one CPU: sync round trip ≤ 3× Deno's floor",
    met: pinned.sync <= 3 * pinned.floor,
    measured: `${ratio(pinned.sync, pinned.floor)} (LTP's protocol done raw: ${ratio(pinned.protocol, pinned.floor)})`,
    miss: `a sync handoff on a busy machine costs ${us(pinned.sync - 3 * pinned.floor)} more than aimed at: ` +
      "a test of thousands of handoffs (a ping-pong, a ring) runs that much longer each time",
  },
  {
    what: "one CPU: async round trip ≤ 6× Deno's floor",
    met: pinned.async <= 6 * pinned.floor,
    measured: ratio(pinned.async, pinned.floor),
    miss: `an awaited handoff on a busy machine costs ${us(pinned.async - 6 * pinned.floor)} more than aimed at: ` +
      "a deno test with many handoffs runs longer",
  },
  {
    what: "unpinned: sync round trip ≤ LTP's C algorithm's",
    met: unpinned.sync <= unpinned.ltp,
    measured: `${us(unpinned.sync)} against ${us(unpinned.ltp)}`,
    miss: "a Deno side hands off more slowly than LTP's own C, so putting Deno where C was changes a test's timing",
  },
  {
    what: "10 pending async waits cost ≤ 20 ms CPU over 3 s",
    met: heldTen - heldNone <= 20e6,
    measured: `+${ms(heldTen - heldNone)}`,
    miss: "pending waits are not idle: a test that holds waits for minutes takes CPU from the code it tests",
  },
  {
    what: "snapshot() takes a few ms (≤ 5 ms)",
    met: snapshotMs <= 5,
    measured: `${snapshotMs.toFixed(2)} ms`,
    miss: "a timeout's diagnosis (every word of the page) is slow enough to delay a test's failure report",
  },
  {
    what: "1000 waits released well under 2 s (≤ 0.5 s)",
    met: releaseWoken <= 500,
    measured: `${releaseWoken.toFixed(1)} ms`,
    miss: "many waiters released at once resume late: a test whose waiters must go on together sees them spread out",
  },
  ...cli.targets,
  ...waits.targets,
];
printTargets(targets);
