/**
 * What it costs a wait() to remember where it was called (for the error of
 * a region closed under it, an `await` forgotten): the stack captured at
 * the call, and formatted only if that error is made. Medians of 5 runs:
 *
 * 1. callSite() from a caller 10 frames deep, per call;
 * 2. `new Error()` (whose stack is captured the same way) and a stack read
 *    in full (`.stack`, what the error costs once it happens), for scale;
 * 3. a whole async wait() woken by a wakeSync() of the same process, per
 *    round, of which the capture is a part.
 *
 *   deno run --allow-all bench/call_site.ts [--quick]
 */
import { Checkpoint } from "../mod.ts";
import { callSite } from "../src/call_site.ts";
import { median } from "./report.ts";

const quick = Deno.args.includes("--quick");
const CALLS = quick ? 100_000 : 1_000_000;
const WAITS = quick ? 2_000 : 20_000;
const RUNS = 5;

/** `fn` called from `depth` frames down. */
function deep<T>(depth: number, fn: () => T): T {
  return depth === 0 ? fn() : deep(depth - 1, fn);
}

/** ns per call of `body`, run `n` times 10 frames deep. */
function perCall(n: number, body: () => unknown): number {
  return deep(10, () => {
    const start = performance.now();
    for (let i = 0; i < n; i++) body();
    return (performance.now() - start) * 1e6 / n;
  });
}

function capture(): unknown {
  return callSite(capture);
}

const rows: [string, number[]][] = [
  ["empty loop", []],
  ["callSite()", []],
  ["new Error()", []],
  ["new Error().stack (formatted)", []],
  ["async wait() woken in-process", []],
];
using cp = Checkpoint.create();
for (let run = 0; run < RUNS; run++) {
  let sink: unknown;
  rows[0][1].push(perCall(CALLS, () => sink = run));
  rows[1][1].push(perCall(CALLS, capture));
  rows[2][1].push(perCall(CALLS, () => sink = new Error()));
  rows[3][1].push(perCall(CALLS / 10, () => sink = new Error().stack));
  const start = performance.now();
  for (let i = 0; i < WAITS; i++) {
    const woken = cp.wait(0);
    cp.wakeSync(0);
    await woken;
  }
  rows[4][1].push((performance.now() - start) * 1e6 / WAITS);
  if (sink === undefined) throw new Error("unreachable");
}

const wait = median(rows[4][1]);
console.log(`Deno ${Deno.version.deno}, ${quick ? "--quick" : "full"}; ns per call, median of ${RUNS} runs:\n`);
console.log("| what | ns | share of a woken wait() |\n| --- | --- | --- |");
for (const [what, samples] of rows) {
  const ns = median(samples);
  console.log(`| ${what} | ${ns.toFixed(0)} | ${(ns / wait * 100).toFixed(1)} % |`);
}
