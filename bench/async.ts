/**
 * Async waits, side by side in one run, medians of interleaved runs:
 *
 * 1. the async round trip on one CPU (both processes pinned: the waiter is
 *    late every time) against LTP's protocol done raw with thread-pool waits
 *    (bench/floor.ts protocol-async), the floor of any async wait;
 * 2. 5000 waits in one process timing out together at 3 s, on one id and
 *    spread over 1000 ids: when the last has settled (from the first
 *    wait() call), and the event loop's worst lag meanwhile; every error
 *    must still say who waited where;
 * 3. the CPU of a process whose 10 waits time out, against an idle process
 *    over the same time.
 *
 *   deno run --allow-all bench/async.ts [--quick]
 *
 * Its own children: `async.ts mass COUNT IDS MS` (COUNT waits on ids 0 to
 * IDS-1 timing out after MS; prints JSON) and `async.ts cpu COUNT MS WINDOW`
 * (COUNT waits timing out after MS, or none, within WINDOW ms; prints the
 * process's CPU time over WINDOW in ns).
 */
import process from "node:process";
import { Checkpoint, CheckpointTimedOut } from "../mod.ts";
import { ACTOR } from "../testing/paths.ts";
import { CHILD_FLAGS, run, start } from "../testing/process.ts";
import { median, ms, printRows, printTargets, ratio, type Row, runLine, type Target, us } from "./report.ts";

const SELF = new URL(import.meta.url).pathname;
const FLOOR = new URL("./floor.ts", import.meta.url).pathname;
const MASS = 5000, MASS_IDS = 1000, MASS_MS = 3000, MASS_TARGET_MS = 3500;
const FEW = 10, FEW_MS = 1000, FEW_WINDOW_MS = 1500;
/** Children see timeouts as written and one layout, whatever the caller's environment holds. */
const ENV = { LTP_TIMEOUT_MUL: "1", LTP_IPC_LAYOUT: "ltp" };

/** One ping-pong, both sides pinned to CPU 0; the ping side prints its median round trip in ns. */
async function roundTrip(kind: "raw" | "module", rounds: number): Promise<number> {
  using cp = Checkpoint.create({ layout: "ltp" });
  const side = (role: string) =>
    kind === "raw"
      ? [FLOOR, role, cp.path, cp.layout, `${rounds}`, "protocol-async"]
      : [ACTOR, role, "async", `${rounds}`];
  const pinned = (role: string) => ["-c", "0", Deno.execPath(), "run", ...CHILD_FLAGS, ...side(role)];
  const env = { ...cp.env, ...ENV };
  const pong = start("taskset", pinned("pong"), { env });
  const ping = await run("taskset", pinned("ping"), { env });
  const pongEnd = await pong.result;
  if (ping.code !== 0 || pongEnd.code !== 0) {
    throw new Error(`${kind} ping-pong failed: ${ping.stderr}${pongEnd.stderr}`);
  }
  return Number(ping.stdout);
}

/** Runs this file as one of its children and parses what it prints. */
async function child(args: string[]): Promise<string> {
  const out = await run(Deno.execPath(), ["run", ...CHILD_FLAGS, SELF, ...args], { env: ENV });
  if (out.code !== 0) throw new Error(`async.ts ${args.join(" ")} failed: ${out.stderr}`);
  return out.stdout;
}

/** Measures the rows and targets of this file; `log` gets each row as it is measured. */
export async function asyncWaits(
  quick: boolean,
  log: (row: Row) => void = () => {},
): Promise<{ rows: Row[]; targets: Target[] }> {
  const rows: Row[] = [];
  const row = (...r: Row) => (rows.push(r), log(r));
  const repeats = quick ? 3 : 5;

  const trips = { raw: [] as number[], module: [] as number[] };
  for (let i = 0; i < repeats; i++) {
    for (const kind of ["raw", "module"] as const) trips[kind].push(await roundTrip(kind, quick ? 1000 : 3000));
  }
  const [raw, mod] = [median(trips.raw), median(trips.module)];
  const what = "async round trip, both on one CPU";
  row(what, "LTP's protocol raw, thread-pool waits", us(raw), "1.00× (baseline)", "");
  row(what, "Deno ↔ Deno, wake() and wait()", us(mod), ratio(mod, raw), "");

  const mass = { one: [] as number[], many: [] as number[], lagOne: [] as number[], lagMany: [] as number[] };
  for (let i = 0; i < (quick ? 1 : 3); i++) {
    for (const [ids, key] of [[1, "one"], [MASS_IDS, "many"]] as const) {
      const { settledMs, worstLagMs } = JSON.parse(await child(["mass", `${MASS}`, `${ids}`, `${MASS_MS}`]));
      mass[key].push(settledMs);
      mass[key === "one" ? "lagOne" : "lagMany"].push(worstLagMs);
    }
  }
  const [one, many] = [median(mass.one), median(mass.many)];
  const massWhat = `${MASS} waits timing out at ${MASS_MS / 1000} s, all settled`;
  row(massWhat, "on one id", `${(one / 1000).toFixed(2)} s`, ratio(one, MASS_MS), "");
  row(massWhat, `on ${MASS_IDS} ids`, `${(many / 1000).toFixed(2)} s`, ratio(many, MASS_MS), "");
  const lagWhat = "worst event-loop lag while they settle";
  row(lagWhat, "on one id", `${median(mass.lagOne).toFixed(1)} ms`, "", "");
  row(lagWhat, `on ${MASS_IDS} ids`, `${median(mass.lagMany).toFixed(1)} ms`, "", "");

  const cpu = { idle: [] as number[], few: [] as number[] };
  for (let i = 0; i < (quick ? 2 : 5); i++) {
    // one after the other, so that each has a CPU to itself as far as the machine allows
    cpu.idle.push(Number(await child(["cpu", "0", `${FEW_MS}`, `${FEW_WINDOW_MS}`])));
    cpu.few.push(Number(await child(["cpu", `${FEW}`, `${FEW_MS}`, `${FEW_WINDOW_MS}`])));
  }
  const [idle, few] = [median(cpu.idle), median(cpu.few)];
  const cpuWhat = `CPU of a process over ${FEW_WINDOW_MS / 1000} s`;
  row(cpuWhat, "Deno, no waits (idle)", ms(idle), "baseline", "");
  row(cpuWhat, `Deno, ${FEW} waits timing out at ${FEW_MS / 1000} s`, ms(few), `+${ms(Math.max(0, few - idle))}`, "");

  const targets: Target[] = [
    {
      what: "one CPU: async round trip ≤ 1.5× LTP's protocol raw with thread-pool waits",
      met: mod <= 1.5 * raw,
      measured: `${ratio(mod, raw)}: ${us(mod)} against ${us(raw)}`,
      miss: `each awaited handoff costs ${us(mod - 1.5 * raw)} more than aimed at in the module's own code: ` +
        "a deno test of thousands of handoffs runs that much longer",
    },
    {
      what: `${MASS} waits timing out at ${MASS_MS / 1000} s settle by ${
        MASS_TARGET_MS / 1000
      } s (one id, ${MASS_IDS} ids)`,
      met: Math.max(one, many) <= MASS_TARGET_MS,
      measured: `${(one / 1000).toFixed(2)} s, ${(many / 1000).toFixed(2)} s`,
      miss: "many timeouts at once hold the event loop: timers, I/O and the test's own failure report come that late",
    },
    {
      what: `${FEW} waits timing out cost ≤ 20 ms CPU over an idle process`,
      met: few - idle <= 20e6,
      measured: `+${ms(few - idle)}`,
      miss: "a process's first timeouts are costly (a thread-pool thread per concurrent wait, the first snapshot run " +
        "cold): a test that times out often takes CPU from the code it tests",
    },
  ];
  return { rows, targets };
}

/** `mass`: COUNT waits timing out together; prints when the last settled and the worst event-loop lag meanwhile. */
async function massChild(count: number, ids: number, timeoutMs: number): Promise<void> {
  using cp = Checkpoint.create({ layout: "ltp" });
  let worstLagMs = 0;
  let last = performance.now();
  const lag = setInterval(() => {
    const now = performance.now();
    worstLagMs = Math.max(worstLagMs, now - last - 10);
    last = now;
  }, 10);
  const started = performance.now();
  const ends = await Promise.all(
    Array.from({ length: count }, (_, i) => cp.wait(i % ids, timeoutMs).then(() => "woken", (e) => e)),
  );
  const settledMs = performance.now() - started;
  clearInterval(lag);
  // each must still say who waited where
  const bad = ends.filter((e) => !(e instanceof CheckpointTimedOut) || !/waiting now: |nobody waits/.test(e.message));
  if (bad.length > 0) throw new Error(`${bad.length} waits ended otherwise, such as ${bad[0]}`);
  console.log(JSON.stringify({ settledMs, worstLagMs }));
}

/** `cpu`: the process's CPU over `windowMs` while COUNT waits time out after MS (COUNT 0: idle). */
async function cpuChild(count: number, timeoutMs: number, windowMs: number): Promise<void> {
  using cp = Checkpoint.create({ layout: "ltp" });
  const sleep = (t: number) => new Promise((resolve) => setTimeout(resolve, t));
  await sleep(1); // Deno loads its timers on first use: outside the measurement, for both alike
  const before = process.cpuUsage();
  const ends = Array.from({ length: count }, (_, id) => cp.wait(id, timeoutMs).then(() => "woken", (e) => e.name));
  await sleep(windowMs);
  const used = process.cpuUsage(before);
  const timedOut = (await Promise.all(ends)).filter((end) => end === "TimedOut").length;
  if (timedOut !== count) throw new Error(`${count - timedOut} of ${count} waits did not time out within the window`);
  console.log((used.user + used.system) * 1000);
}

if (import.meta.main) {
  const [op, ...args] = Deno.args;
  if (op === "mass") await massChild(Number(args[0]), Number(args[1]), Number(args[2]));
  else if (op === "cpu") await cpuChild(Number(args[0]), Number(args[1]), Number(args[2]));
  else {
    const quick = Deno.args.includes("--quick");
    console.error(runLine(quick));
    const { rows, targets } = await asyncWaits(quick, (r) => console.error(r.join("  ")));
    console.log(runLine(quick));
    printRows(rows);
    printTargets(targets);
  }
}
