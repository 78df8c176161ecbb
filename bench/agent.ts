/**
 * The installed tool with its resident agent (agent/), side by side with a
 * C reference that does on each call what LTP's C `tst_checkpoint` does, in
 * one run (runs interleaved, medians):
 *
 * 1. one call (`wake 1000 ID 0`, nobody waiting): wall time, as
 *    tests/peer.c's `run` times it;
 * 2. exec → parked (`wait 10000 ID` until the kernel counts it), as
 *    bench/park.c times it;
 * 3. 100 waiters parked on 100 ids: the PSS of every process of each tool
 *    (for ours: the 100 `sh` clients and the agent), against the RSS of one
 *    idle Deno (an empty `deno run` with the launcher's flags, asleep);
 * 4. a parked client killed by SIGKILL: the time until the kernel no longer
 *    counts its wait (the agent cancels it when the client's FIFO closes);
 * 5. exactness through the agent: 100 clients on 100 ids woken back to back
 *    from one process (a wake each, counted by the kernel), rounds of it, and
 *    1000 clients on 1000 ids counted at once and woken the same way; a
 *    client whose wake was counted and that did not end is a lost wake;
 *
 * then the targets, each met or missed. The cold tool
 * (TST_CHECKPOINT_AGENT=0) is shown beside them for scale.
 *
 * The C reference is written here from LTP's documented behaviour, not
 * copied: it reads the kernel config as LTP does on every call (`zcat
 * /proc/config.gz` where that exists, two TINFO lines on stderr), attaches
 * to LTP_IPC_PATH, and waits (FUTEX_WAIT) or wakes (FUTEX_WAKE in a 1 ms
 * loop) as LTP's library does.
 *
 * Given LTP's own tool (`--ltp PATH`: the built `tst_checkpoint`, or an LTP
 * tree with `testcases/lib` built), it runs beside the others and is the
 * baseline of the ratios and targets.
 *
 *   ./deno run --allow-all bench/agent.ts [--quick] [--ltp PATH]
 * @module
 */
import { Checkpoint } from "../mod.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { peer } from "../testing/peer.ts";
import { kill, run, start } from "../testing/process.ts";
import { median, mib, ms, printRows, printTargets, type Row, runLine, type Target } from "./report.ts";

const ID = 7;
const OFFSET = 76 + 4 * ID;
const WAITERS = 100;
/** Clients parked at once on distinct ids (an LTP region holds 1005). */
const MANY = 1000;

/** A C `tst_checkpoint` doing per call what LTP's does (see the module doc). */
const LTP_LIKE_TOOL = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void tbrok(const char *what) { fprintf(stderr, "tst_checkpoint: TBROK: %s\n", what); exit(2); }

/* LTP reads the kernel config on each call, looking for options that slow a kernel down */
static void read_kconfig(void)
{
	const char *path = getenv("KCONFIG_PATH");
	char line[4096];
	FILE *f;
	if (!path && access("/proc/config.gz", R_OK) == 0) {
		fprintf(stderr, "tst_kconfig.c: TINFO: Parsing kernel config '/proc/config.gz'\n");
		f = popen("zcat /proc/config.gz", "r");
	} else {
		if (!path)
			return;
		fprintf(stderr, "tst_kconfig.c: TINFO: Parsing kernel config '%s'\n", path);
		f = fopen(path, "r");
	}
	if (!f)
		return;
	int slow = 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "CONFIG_KASAN=y", 14) || !strncmp(line, "CONFIG_PROVE_LOCKING=y", 22))
			slow = 1;
	if (path)
		fclose(f);
	else
		pclose(f);
	if (!slow)
		fprintf(stderr, "tst_kconfig.c: TINFO: No slow kernel config option found\n");
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 1;
	unsigned long timeout = strtoul(argv[2], NULL, 10), id = strtoul(argv[3], NULL, 10);
	read_kconfig();
	const char *path = getenv("LTP_IPC_PATH");
	if (!path)
		tbrok("LTP_IPC_PATH is not defined");
	int fd = open(path, O_RDWR);
	if (fd < 0)
		tbrok("File does not exist");
	size_t page = getpagesize();
	char *region = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (region == MAP_FAILED || memcmp(region, "LTPM", 4))
		tbrok("Invalid shared memory region (bad magic)");
	uint32_t *word = (uint32_t *)(region + 76) + id;
	if (!strcmp(argv[1], "wait")) {
		struct timespec ts = { timeout / 1000, (timeout % 1000) * 1000000 };
		return syscall(SYS_futex, word, FUTEX_WAIT, *word, &ts) ? 1 : 0;
	}
	unsigned long nr = argc > 4 ? strtoul(argv[4], NULL, 10) : 1, woken = 0;
	for (unsigned long i = 0; i < timeout; i++) {
		woken += syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL);
		if (woken == nr)
			return 0;
		usleep(1000);
	}
	return 1;
}
`;

interface Stats {
  wall_ns?: number;
  park_ns?: number;
  status: number;
}

async function gcc(dir: string, name: string, source: string): Promise<string> {
  const file = `${dir}/${name}.c`;
  if (!source.startsWith("/")) Deno.writeTextFileSync(file, source);
  const out = `${dir}/${name}`;
  const r = await run("gcc", ["-O2", "-Wall", "-o", out, source.startsWith("/") ? source : file]);
  if (r.code !== 0) throw new Error(`gcc ${name} failed: ${r.stderr}`);
  return out;
}

/** Proportional set size of a process in KiB (0 once it has gone). */
function pss(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Whether the process holds an io_uring (the agent's waits go through one where the kernel allows it). */
function usesRing(pid: number): boolean {
  for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`) === "anon_inode:[io_uring]") return true;
    } catch { /* closed meanwhile */ }
  }
  return false;
}

function rss(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
}

async function until(check: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Measures; `log` gets each row as it is measured. */
export async function agentBench(quick: boolean, log: (row: Row) => void = () => {}, ltp?: string): Promise<
  { rows: Row[]; targets: Target[] }
> {
  const runs = quick ? 10 : 30;
  using dir = tempDir();
  const cp = Checkpoint.create({ layout: "ltp" });
  const [c, park, peerBin] = await Promise.all([
    gcc(dir.path, "ltp_like_tool", LTP_LIKE_TOOL),
    gcc(dir.path, "park", `${ROOT}/bench/park.c`),
    peer(),
  ]);
  const root = `${dir.path}/root`;
  const installed = await run(Deno.execPath(), ["run", "--allow-all", `${ROOT}/tools/install.ts`, "--root", root]);
  if (installed.code !== 0) throw new Error(`install failed: ${installed.stderr}`);
  const tool = `${root}/bin/tst_checkpoint`;
  const env = { ...cp.env, TST_CHECKPOINT_AGENT: "1" };
  const coldEnv = { ...cp.env, TST_CHECKPOINT_AGENT: "0" };
  const rows: Row[] = [];
  const row = (...cells: [string, string, string, string]) => {
    const r: Row = [...cells, ""];
    rows.push(r), log(r);
  };
  // the baseline: LTP's own tool where one was given, else the C reference
  const base = ltp === undefined ? "c" : "ltp";
  const keys = [...ltp === undefined ? [] : ["ltp"], "c", "agent", "cold"];
  const who: Record<string, string> = {
    ltp: `LTP's own tst_checkpoint`,
    c: "C, as LTP's tool (zcat of the config)",
    agent: "installed tst_checkpoint, agent",
    cold: "installed tst_checkpoint, cold",
  };
  const program: Record<string, string> = { ltp: ltp ?? "", c, agent: tool, cold: tool };
  /** Each contestant's command line for `args`. */
  const contestants = (args: string[]) =>
    Object.fromEntries(keys.map((k) => [k, { argv: [program[k], ...args], env: k === "cold" ? coldEnv : env }]));
  /** One row per contestant: its median and its ratio to the baseline. */
  const rowsOf = (what: string, figures: { of: (k: string) => number; vs: (k: string, b: string) => number }) => {
    for (const k of keys) {
      row(what, who[k], ms(figures.of(k)), k === base ? "1.00× (baseline)" : `${figures.vs(k, base).toFixed(2)}×`);
    }
  };
  const agentPid = () =>
    JSON.parse(Deno.readTextFileSync(`/tmp/tst_checkpoint-${Deno.uid()}/${cp.path.replaceAll("/", "%")}/clients`))
      .agent as number;

  try {
    /** Runs each command `runs` times, interleaved; per command the figures, per round their ratios to `base`. */
    const sideBySide = async (
      watcher: string[],
      commands: Record<string, { argv: string[]; env: Record<string, string> }>,
      field: "wall_ns" | "park_ns",
    ) => {
      const keys = Object.keys(commands);
      const figures: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
      const once = async (k: string) => {
        const out = await run(watcher[0], [...watcher.slice(1), ...commands[k].argv], { env: commands[k].env });
        const stats = JSON.parse(out.stdout) as Stats;
        if (stats.status !== 0 || stats[field] === -1) throw new Error(`${k} failed: ${out.stdout}${out.stderr}`);
        return stats[field]!;
      };
      for (const k of keys) await once(k); // starts the agent, fills caches: outside the figures
      // the agent the first call started in the background, up before anything is timed
      await until(() => {
        try {
          return agentPid() > 0;
        } catch {
          return false;
        }
      }, "the agent up");
      for (let i = 0; i < runs; i++) {
        for (let j = 0; j < keys.length; j++) {
          figures[keys[(i + j) % keys.length]].push(await once(keys[(i + j) % keys.length]));
        }
      }
      return {
        of: (k: string) => median(figures[k]),
        vs: (k: string, base: string) => median(figures[k].map((x, i) => x / figures[base][i])),
      };
    };

    const call = await sideBySide([peerBin, "run"], contestants(["wake", "1000", `${ID}`, "0"]), "wall_ns");
    rowsOf("one call (wake 1000 7 0)", call);
    const parked = await sideBySide([park, cp.path, `${OFFSET}`], contestants(["wait", "10000", `${ID}`]), "park_ns");
    rowsOf("exec → parked", parked);

    // memory: 100 waiters on 100 ids, each tool's processes all parked at once
    const ids = Array.from({ length: WAITERS }, (_, i) => 100 + i);
    const parkAll = async (argv: (id: number) => string[]) => {
      const children = ids.map((id) => start(argv(id)[0], argv(id).slice(1), { env }));
      await until(() => ids.every((id) => cp.waiters(id) === 1), "100 waiters parked");
      return children;
    };
    const endAll = async (children: ReturnType<typeof start>[]) => {
      for (const child of children) child.child.kill("SIGKILL");
      await Promise.all(children.map((child) => child.result));
      await until(() => ids.every((id) => cp.waiters(id) === 0), "waits gone");
    };
    /** The PSS of 100 parked waiters of a C tool, in KiB. */
    const cParked = async (program: string) => {
      const waiters = await parkAll((id) => [program, "wait", "60000", `${id}`]);
      const sum = waiters.reduce((total, w) => total + pss(w.child.pid), 0);
      await endAll(waiters);
      return sum;
    };
    const cPss = await cParked(c);
    const ltpPss = ltp === undefined ? 0 : await cParked(ltp);
    const basePss = ltp === undefined ? cPss : ltpPss;
    const ours = await parkAll((id) => [tool, "wait", "60000", `${id}`]);
    const agent = agentPid();
    const clientsPss = ours.reduce((sum, w) => sum + pss(w.child.pid), 0);
    const agentPss = pss(agent);
    await endAll(ours);
    // an idle Deno with the launcher's own flags
    const idleScript = `${dir.path}/idle.ts`;
    Deno.writeTextFileSync(idleScript, "setTimeout(() => {}, 60_000);");
    const idle = start(Deno.execPath(), ["run", "--no-config", "--no-prompt", idleScript]);
    await new Promise((r) => setTimeout(r, 1000));
    const idleRss = rss(idle.child.pid);
    idle.child.kill("SIGKILL");
    await idle.result;
    if (ltp !== undefined) row(`${WAITERS} waiters parked, PSS of all`, who.ltp, mib(ltpPss), "1.00× (baseline)");
    row(
      `${WAITERS} waiters parked, PSS of all`,
      who.c,
      mib(cPss),
      base === "c" ? "1.00× (baseline)" : `${(cPss / basePss).toFixed(2)}×`,
    );
    row(
      `${WAITERS} waiters parked, PSS of all`,
      "installed tst_checkpoint: sh clients + agent",
      `${mib(clientsPss + agentPss)} (${mib(clientsPss)} + ${mib(agentPss)})`,
      `${((clientsPss + agentPss) / basePss).toFixed(2)}×`,
    );
    row("an idle Deno", "deno run, asleep", mib(idleRss), "");

    // a client that ends takes its wait with it: a parked client SIGKILLed, until the kernel no longer counts it
    const released: number[] = [];
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < runs; i++) {
      const client = start(tool, ["wait", "60000", `${ID}`], { env });
      await until(() => cp.waiters(ID) === 1, "a client parked");
      const t0 = performance.now();
      client.child.kill("SIGKILL");
      // polled every 50 µs, without a timer: a busy poll would take the CPU the agent needs on a 2-CPU machine
      while (cp.waiters(ID) !== 0 && performance.now() - t0 < 5000) Atomics.wait(nap, 0, 0, 0.05);
      released.push((performance.now() - t0) * 1e6);
      await client.result;
    }
    row("a parked client SIGKILLed → its wait out of the kernel", "agent", ms(median(released)), "");
    row("the same, the slowest", "agent", ms(Math.max(...released)), "");

    // exactness: clients on distinct ids woken back to back by this one process, each wake counted by the kernel
    let backend = "";
    const wakeAll = async (wanted: number[]) => {
      const clients = wanted.map((id) => {
        const client = start(tool, ["wait", "60000", `${id}`], { env });
        return { ...client, code: client.result.then((r) => r.code) };
      });
      await until(() => wanted.every((id) => cp.waiters(id) === 1), `${wanted.length} clients parked`, 120_000);
      backend ||= usesRing(agentPid()) ? "io_uring" : "futex_waitv";
      // all counted at once: every id looked at again, several times
      let uncounted = 0;
      for (let look = 0; look < 3; look++) uncounted += wanted.filter((id) => cp.waiters(id) !== 1).length;
      const agentParked = pss(agentPid());
      for (const id of wanted) cp.wakeSync(id, 1, 10_000);
      const woken = new Set<number>();
      clients.forEach((client, i) => client.code.then((code) => code === 0 && woken.add(i)));
      await until(() => woken.size === wanted.length, "woken", 10_000).catch(() => {});
      for (const client of clients) kill(client.child, "SIGKILL");
      await Promise.all(clients.map((client) => client.result));
      await until(() => wanted.every((id) => cp.waiters(id) === 0), "waits gone");
      return { lost: wanted.length - woken.size, uncounted, agentParked };
    };
    const rounds = quick ? 2 : 5;
    const lostEach: number[] = [];
    let agentParked = 0;
    for (let round = 0; round < rounds; round++) {
      const result = await wakeAll(ids);
      lostEach.push(result.lost);
      agentParked = Math.max(agentParked, result.agentParked);
    }
    const lost = lostEach.reduce((a, b) => a + b, 0);
    row(
      `${WAITERS} ids woken back to back, ${rounds} rounds`,
      `agent (${backend})`,
      `${lost} lost`,
      lostEach.join(" "),
    );
    const many = Array.from({ length: MANY }, (_, i) => i);
    const thousand = await wakeAll(many);
    row(
      `${MANY} clients on ${MANY} ids`,
      `agent (${backend})`,
      `${thousand.uncounted} uncounted, ${thousand.lost} lost`,
      "",
    );
    row(
      `the agent, ${WAITERS} clients on ${WAITERS} ids`,
      `PSS, largest of the rounds (${backend})`,
      mib(agentParked),
      "",
    );
    row(`the agent, ${MANY} clients on ${MANY} ids`, `PSS (${backend})`, mib(thousand.agentParked), "");

    const budget = 2 * basePss + idleRss;
    const against = ltp === undefined ? "LTP's C tool (the C reference)" : "LTP's own C tool";
    const targets: Target[] = [
      {
        what: `one call through the agent: ≤ 1.0× ${against}`,
        met: call.vs("agent", base) <= 1,
        measured: `${call.vs("agent", base).toFixed(2)}×: ${ms(call.of("agent"))} against ${ms(call.of(base))}`,
        miss: "each checkpoint call of a shell test costs more than LTP's own tool",
      },
      {
        what: `exec → parked through the agent: ≤ 1.0× ${against}`,
        met: parked.vs("agent", base) <= 1,
        measured: `${parked.vs("agent", base).toFixed(2)}×: ${ms(parked.of("agent"))} against ${ms(parked.of(base))}`,
        miss: "a shell test's wait is counted later than with LTP's tool (cn_pec.sh's helper may overflow)",
      },
      {
        what: `${WAITERS} parked waiters: PSS ≤ 2 × ${against}'s + one idle Deno's RSS`,
        met: clientsPss + agentPss <= budget,
        measured: `${mib(clientsPss + agentPss)} against ${mib(budget)} (2 × ${mib(basePss)} + ${mib(idleRss)})`,
        miss: "a test with many waiters holds more memory than the budget",
      },
      {
        what: "a parked client killed by SIGKILL: its wait out of the kernel within 10 ms, every time",
        met: Math.max(...released) <= 10e6,
        measured: `slowest ${ms(Math.max(...released))}, median ${ms(median(released))} (${runs} kills)`,
        miss: "a wake may reach the ghost of a killed client for a while instead of the next real waiter",
      },
      {
        what: `${WAITERS} ids woken back to back through the agent: no wake lost`,
        met: lost === 0,
        measured: `${lost} lost in ${rounds} rounds (${backend})`,
        miss: "a wake counted by the kernel did not end its client's wait",
      },
      {
        what: `${MANY} clients on ${MANY} ids: all counted at once, each woken`,
        met: thousand.uncounted === 0 && thousand.lost === 0,
        measured: `${thousand.uncounted} uncounted, ${thousand.lost} lost (${backend})`,
        miss: "a parked client is not counted by the kernel, or its wake is lost",
      },
    ];
    return { rows, targets };
  } finally {
    cp.remove(); // the agent ends with its region
  }
}

/**
 * LTP's own `tst_checkpoint` from `--ltp PATH` (the built tool, or an LTP
 * tree built with `make autotools && ./configure && make -C lib && make -C
 * testcases/lib`), or undefined.
 */
function ltpTool(args: string[]): string | undefined {
  const at = args.indexOf("--ltp");
  if (at < 0) return undefined;
  const given = args[at + 1];
  if (given === undefined) throw new Error("--ltp needs a path: LTP's built tst_checkpoint, or an LTP tree");
  const tool = Deno.statSync(given).isDirectory ? `${given}/testcases/lib/tst_checkpoint` : given;
  if (!Deno.statSync(tool).isFile) throw new Error(`--ltp: ${tool} is not LTP's built tst_checkpoint`);
  return tool;
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  let ltp: string | undefined;
  try {
    ltp = ltpTool(Deno.args);
  } catch (error) {
    console.error(`bench/agent.ts: ${error instanceof Error ? error.message : error}`);
    Deno.exit(2);
  }
  console.log(runLine(quick));
  if (ltp !== undefined) console.log(`LTP's own tool: ${ltp}`);
  const { rows, targets } = await agentBench(quick, undefined, ltp);
  printRows(rows);
  printTargets(targets);
}
