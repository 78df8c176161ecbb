/**
 * The benchmarks, side by side in one run, as medians and ratios to a
 * baseline measured in the same run:
 *
 * 1. ping-pong round trip: C to C with LTP's algorithm (the baseline), Deno to
 *    Deno (sync, async), Deno to the C peer; unpinned and pinned to one CPU;
 * 2. the CPU a waker spends over a 2 s wait for a late waiter, ours and LTP's;
 * 3. the event loop's worst lag with 100 async waits pending;
 * 4. one CLI call that does real work against `deno run` of an empty script.
 *
 *   ./deno task bench [--quick]
 */
import { Checkpoint } from "../mod.ts";
import {
  ACTOR,
  CHILD_FLAGS,
  CLI,
  INSTALL_FLAGS,
  peer,
  run,
  start,
  startActor,
  startPeer,
  tempDir,
} from "../tests/helpers.ts";

const quick = Deno.args.includes("--quick");
const ROUNDS = quick ? 300 : 2000;
const REPEATS = quick ? 3 : 5;
const CLI_RUNS = quick ? 10 : 30;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const us = (ns: number) => `${(ns / 1000).toFixed(1)} µs`;
const ratio = (x: number, base: number) => `${(x / base).toFixed(3)}×`;
const rows: string[][] = [];
const row = (...cells: string[]) => {
  rows.push(cells);
  console.error(cells.join("  "));
};

// 1. ping-pong: the ping side prints its median round trip in ns
type Side = (path: string, layout: string, rounds: number, role: "ping" | "pong") => string[];
const cSide: Side = (path, layout, rounds, role) => [peerBin, role, path, layout, `${rounds}`];
const denoSide = (mode: "sync" | "async"): Side => (_path, _layout, rounds, role) => [
  Deno.execPath(),
  "run",
  ...CHILD_FLAGS,
  ACTOR,
  role,
  mode,
  `${rounds}`,
];
const peerBin = await peer();

async function pingPong(ping: Side, pong: Side, pinned: boolean): Promise<number> {
  const results: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    using cp = Checkpoint.create();
    const wrap = (argv: string[]) => pinned ? ["taskset", "-c", "0", ...argv] : argv;
    const [pongCmd, ...pongArgs] = wrap(pong(cp.path, cp.layout, ROUNDS, "pong"));
    const [pingCmd, ...pingArgs] = wrap(ping(cp.path, cp.layout, ROUNDS, "ping"));
    const ponger = start(pongCmd, pongArgs, { env: cp.env });
    const pinger = await run(pingCmd, pingArgs, { env: cp.env });
    const pongResult = await ponger.result;
    if (pinger.code !== 0 || pongResult.code !== 0) {
      throw new Error(`ping-pong failed: ${pinger.stderr}${pongResult.stderr}`);
    }
    results.push(Number(pinger.stdout));
  }
  return median(results);
}

console.error(`ping-pong: ${ROUNDS} round trips, median of ${REPEATS} runs`);
for (const pinned of [false, true]) {
  const where = pinned ? "pinned to one CPU" : "unpinned";
  const base = await pingPong(cSide, cSide, pinned);
  row(`round trip, ${where}`, "C ↔ C (LTP's algorithm)", us(base), "1.000× (baseline)");
  for (
    const [name, ping, pong] of [
      ["Deno ↔ Deno, sync", denoSide("sync"), denoSide("sync")],
      ["Deno ↔ Deno, async", denoSide("async"), denoSide("async")],
      ["Deno ↔ C peer, sync", denoSide("sync"), cSide],
    ] as const
  ) {
    const t = await pingPong(ping, pong, pinned);
    row(`round trip, ${where}`, name, us(t), ratio(t, base));
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
const ms = (ns: number) => `${(ns / 1e6).toFixed(1)} ms`;
row("waker CPU over a 2 s wait", "C (LTP: 1 ms sleeps)", ms(cpuBase), "1.000× (baseline)");
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
const lagRuns = async (pending: number) => [await lags(pending), await lags(pending), await lags(pending)];
const [idle, busy] = [await lagRuns(0), await lagRuns(100)];
for (const [i, stat] of ["worst", "p99", "median"].entries()) {
  const [a, b] = [median(idle.map((r) => r[i])), median(busy.map((r) => r[i]))];
  const what = `event-loop lag, ${stat} (1 ms interval, 2 s)`;
  row(what, "idle", `${a.toFixed(2)} ms`, "baseline");
  row(what, "100 async waits pending", `${b.toFixed(2)} ms`, `+${Math.max(0, b - a).toFixed(2)} ms`);
}

// 4. one CLI call against an empty script, both run from an empty folder, the CLI with the install command's flags
{
  using dir = tempDir();
  using cp = Checkpoint.create();
  const empty = `${dir.path}/empty.ts`;
  Deno.writeTextFileSync(empty, "");
  const measure = async (argv: string[]) => {
    const out = await run(peerBin, ["run", Deno.execPath(), "run", ...argv], { env: cp.env, cwd: dir.path });
    const stats = JSON.parse(out.stdout);
    if (stats.status !== 0) throw new Error(`${argv.join(" ")} exited ${stats.status}`);
    return stats as { wall_ns: number; max_rss_kb: number };
  };
  await measure([empty]); // compile both once, outside the measurement
  await measure([...INSTALL_FLAGS, CLI, "wake", "1", "5", "0"]);
  const base = { wall: [] as number[], rss: [] as number[] };
  const tool = { wall: [] as number[], rss: [] as number[] };
  for (let i = 0; i < CLI_RUNS; i++) {
    const a = await measure([empty]);
    const b = await measure([...INSTALL_FLAGS, CLI, "wake", "1", "5", "0"]);
    base.wall.push(a.wall_ns), base.rss.push(a.max_rss_kb);
    tool.wall.push(b.wall_ns), tool.rss.push(b.max_rss_kb);
  }
  const [bw, tw, br, tr] = [median(base.wall), median(tool.wall), median(base.rss), median(tool.rss)];
  row("CLI call, wall time", "deno run empty.ts", ms(bw), "1.000× (baseline)");
  row("CLI call, wall time", "tst_checkpoint wake 1 5 0", ms(tw), ratio(tw, bw));
  row("CLI call, peak RSS", "deno run empty.ts", `${(br / 1024).toFixed(1)} MiB`, "1.000× (baseline)");
  row("CLI call, peak RSS", "tst_checkpoint wake 1 5 0", `${(tr / 1024).toFixed(1)} MiB`, ratio(tr, br));
}

const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
console.log("\n| what | who | median | ratio |\n| --- | --- | --- | --- |");
for (const r of rows) console.log(`| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`);
