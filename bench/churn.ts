/**
 * Exec → parked beside a process churn: the installed tool through its
 * agent, the same tool cold (TST_CHECKPOINT_AGENT=0), and the C reference of
 * bench/agent.ts (which does per call what LTP's C tool does), in one run,
 * interleaved, while a fork storm runs beside them.
 *
 * The storm is reproducible and bounded: 2 forkers per CPU, each forking a
 * child that exits at once and reaping it, in a loop, for as long as the
 * measurements last (each forker stops on its own after a time limit). It
 * stands for LTP's hackbench loop, which cn_pec.sh runs beside its waits: a
 * wait that parks late makes cn_pec's listener lose events.
 *
 * Each measurement is bench/park.c's: fork and exec `tst_checkpoint wait
 * 10000 ID`, then look every millisecond with FUTEX_CMP_REQUEUE (the call
 * the module's waiters() makes) until the kernel counts a waiter on the
 * word. Medians and p90 per tool, with their ratios to the C reference.
 *
 *   ./deno run --allow-all bench/churn.ts [--quick]
 * @module
 */
import { Checkpoint } from "../mod.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run, start } from "../testing/process.ts";
import { median, ms, printRows, printTargets, type Row, runLine, type Target } from "./report.ts";

const ID = 7;
const OFFSET = 76 + 4 * ID;

/** The fork storm: `storm SECONDS` forks children that exit at once until the time is up; prints its fork count. */
const STORM = String.raw`
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 60;
	struct timespec t0, t;
	long forks = 0;
	signal(SIGTERM, on_term);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			waitpid(pid, NULL, 0);
			forks++;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
			break;
	}
	printf("%ld\n", forks);
	return 0;
}
`;

/**
 * The C reference, from bench/agent.ts: one source for both benchmarks, read from there (it does not export it).
 */
function referenceSource(): string {
  const text = Deno.readTextFileSync(`${ROOT}/bench/agent.ts`);
  const match = /const LTP_LIKE_TOOL = String\.raw`([^`]*)`;/.exec(text);
  if (!match) throw new Error("bench/agent.ts no longer holds LTP_LIKE_TOOL");
  return match[1];
}

async function gcc(dir: string, name: string, source: string): Promise<string> {
  const file = source.startsWith("/") ? source : `${dir}/${name}.c`;
  if (!source.startsWith("/")) Deno.writeTextFileSync(file, source);
  const out = `${dir}/${name}`;
  const r = await run("gcc", ["-O2", "-Wall", "-o", out, file]);
  if (r.code !== 0) throw new Error(`gcc ${name} failed: ${r.stderr}`);
  return out;
}

/** The value below which `p` of the figures lie (nearest rank). */
function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

/** Measures; `log` gets each row as it is measured. */
export async function churnBench(quick: boolean, log: (row: Row) => void = () => {}): Promise<
  { rows: Row[]; targets: Target[]; forksPerSecond: number }
> {
  const runs = quick ? 15 : 40;
  using dir = tempDir();
  const cp = Checkpoint.create({ layout: "ltp" });
  const [c, park, storm] = await Promise.all([
    gcc(dir.path, "ltp_like_tool", referenceSource()),
    gcc(dir.path, "park", `${ROOT}/bench/park.c`),
    gcc(dir.path, "storm", STORM),
  ]);
  const root = `${dir.path}/root`;
  const installed = await run(Deno.execPath(), ["run", "--allow-all", `${ROOT}/tools/install.ts`, "--root", root]);
  if (installed.code !== 0) throw new Error(`install failed: ${installed.stderr}`);
  const tool = `${root}/bin/tst_checkpoint`;
  const env = { ...cp.env, TST_CHECKPOINT_AGENT: "1" };
  const commands: Record<string, { argv: string[]; env: Record<string, string> }> = {
    c: { argv: [c, "wait", "10000", `${ID}`], env },
    agent: { argv: [tool, "wait", "10000", `${ID}`], env },
    cold: { argv: [tool, "wait", "10000", `${ID}`], env: { ...cp.env, TST_CHECKPOINT_AGENT: "0" } },
  };
  const keys = Object.keys(commands);
  const figures: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const once = async (k: string) => {
    const out = await run(park, [cp.path, `${OFFSET}`, ...commands[k].argv], { env: commands[k].env });
    const stats = JSON.parse(out.stdout) as { park_ns: number; status: number };
    if (stats.status !== 0 || stats.park_ns < 0) throw new Error(`${k} failed: ${out.stdout}${out.stderr}`);
    return stats.park_ns;
  };
  const forkers: ReturnType<typeof start>[] = [];
  try {
    for (const k of keys) await once(k); // starts the agent, fills caches: outside the figures
    const cpus = navigator.hardwareConcurrency;
    // bounded: each forker stops by itself after this long, should this process die without stopping it
    const limit = quick ? 120 : 600;
    const began = performance.now();
    for (let i = 0; i < 2 * cpus; i++) forkers.push(start(storm, [`${limit}`]));
    await new Promise((r) => setTimeout(r, 500)); // the storm under way
    for (let i = 0; i < runs; i++) {
      for (let j = 0; j < keys.length; j++) {
        const k = keys[(i + j) % keys.length];
        figures[k].push(await once(k));
      }
    }
    for (const f of forkers) f.child.kill("SIGTERM");
    const forks = (await Promise.all(forkers.map((f) => f.result))).reduce((n, r) => n + Number(r.stdout), 0);
    const forksPerSecond = forks / ((performance.now() - began) / 1000);
    forkers.length = 0;

    const rows: Row[] = [];
    const row = (...cells: [string, string, string, string]) => {
      const r: Row = [...cells, ""];
      rows.push(r), log(r);
    };
    const names: Record<string, string> = {
      c: "C, as LTP's tool",
      agent: "installed tst_checkpoint, agent",
      cold: "installed tst_checkpoint, cold",
    };
    const med = (k: string) => median(figures[k]);
    const p90 = (k: string) => percentile(figures[k], 0.9);
    for (const k of keys) {
      const vs = k === "c" ? "1.00× (baseline)" : `${(med(k) / med("c")).toFixed(2)}×`;
      row("exec → parked beside a fork storm, median", names[k], ms(med(k)), vs);
    }
    for (const k of keys) {
      const vs = k === "c" ? "1.00× (baseline)" : `${(p90(k) / p90("c")).toFixed(2)}×`;
      row("exec → parked beside a fork storm, p90", names[k], ms(p90(k)), vs);
    }
    const targets: Target[] = [{
      what: "exec → parked beside a fork storm through the agent: p90 no worse than LTP's C tool's",
      met: p90("agent") <= p90("c"),
      measured: `${(p90("agent") / p90("c")).toFixed(2)}×: ${ms(p90("agent"))} against ${ms(p90("c"))} ` +
        `(medians ${ms(med("agent"))} against ${ms(med("c"))}; ${Math.round(forksPerSecond)} forks/s beside them)`,
      miss: "under a process churn a shell test's wait parks later than with LTP's tool (cn_pec.sh may lose events)",
    }];
    return { rows, targets, forksPerSecond };
  } finally {
    for (const f of forkers) f.child.kill("SIGKILL");
    await Promise.all(forkers.map((f) => f.result));
    cp.remove(); // the agent ends with its region
  }
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  console.log(runLine(quick));
  const { rows, targets } = await churnBench(quick);
  printRows(rows);
  printTargets(targets);
}
