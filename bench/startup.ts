/**
 * What one call of the installed `tst_checkpoint` costs a shell test, side by
 * side in one run (runs interleaved, medians):
 *
 * 1. exec → parked: from fork() until the kernel counts the waiter, as a test
 *    that waits for its child to park sees it (bench/park.c watches): LTP's C
 *    wait (tests/peer.c), Deno's floor (bench/park_floor.ts: libc, one open,
 *    one mmap, one FUTEX_WAIT, run with the installed tool's own `deno run`
 *    flags) and the installed `tst_checkpoint wait 10000 ID`; with the peak
 *    memory of each waiter;
 * 2. one `tst_checkpoint wake` call against `deno run` of an empty file with
 *    the tool's flags: wall time and peak memory;
 *
 * then the project's targets for them, each met or missed.
 *
 *   ./deno run --allow-all bench/startup.ts [--quick]   (also part of ./deno task bench)
 */
import { Checkpoint } from "../mod.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { peer } from "../testing/peer.ts";
import { run } from "../testing/process.ts";
import { median, mib, ms, printRows, printTargets, type Row, runLine, type Target } from "./report.ts";

/** How the bench installs the tool into ROOT/bin/tst_checkpoint: the README's install, standing alone. */
const install = (root: string) => ["run", "--allow-all", `${ROOT}/tools/install.ts`, "--root", root];
const FLOOR = `${ROOT}/bench/park_floor.ts`;
/** The checkpoint every waiter parks on, and where its word lies in the ltp layout. */
const ID = 7, OFFSET = 76 + 4 * ID;

/** The words of a line of sh as sh splits them: bare, 'single-quoted', "double-quoted" (no expansions), "$@". */
function shellWords(line: string): string[] {
  return [...line.matchAll(/"\$@"|'([^']*)'|"([^"$`\\]*)"|([^\s'"]+)/g)]
    .map((m) => m[0] === '"$@"' ? "$@" : m[1] ?? m[2] ?? m[3]);
}

/**
 * What the installed launcher runs: the variables it exports (`export NAME=VALUE`) and its last line
 * `exec DENO run FLAGS... SCRIPT "$@"`, split into the Deno binary, the flags and the script; so that the floor
 * and the empty run get exactly the tool's Deno, flags and environment.
 */
function launcher(path: string): { env: Record<string, string>; deno: string[]; flags: string[]; script: string } {
  const lines = Deno.readTextFileSync(path).split("\n");
  const env: Record<string, string> = {};
  for (const line of lines.filter((l) => l.startsWith("export "))) {
    const [assignment] = shellWords(line.slice("export ".length));
    const at = assignment.indexOf("=");
    if (at > 0) env[assignment.slice(0, at)] = assignment.slice(at + 1);
  }
  const words = shellWords(lines.find((line) => line.startsWith("exec ")) ?? "");
  const at = words.indexOf("run");
  if (at < 2 || words.at(-1) !== "$@" || words.length < at + 3) {
    throw new Error(`cannot read the deno run command of ${path}: the bench expects 'exec DENO run FLAGS SCRIPT "$@"'`);
  }
  return { env, deno: words.slice(1, at + 1), flags: words.slice(at + 1, -2), script: words.at(-2)! };
}

async function compilePark(dir: string): Promise<string> {
  const out = `${dir}/park`;
  const gcc = await run("gcc", ["-O2", "-Wall", "-Werror", "-o", out, `${ROOT}/bench/park.c`]);
  if (gcc.code !== 0) throw new Error(`gcc failed: ${gcc.stderr}`);
  return out;
}

interface Stats {
  park_ns: number;
  wall_ns: number;
  max_rss_kb: number;
  status: number;
}

/** Measures the rows and targets of this file; `log` gets each row as it is measured. */
export async function startup(
  quick: boolean,
  log: (row: Row) => void = () => {},
): Promise<{ rows: Row[]; targets: Target[] }> {
  const runs = quick ? 10 : 50;
  using dir = tempDir();
  using cp = Checkpoint.create({ layout: "ltp" });
  const [watcher, peerBin] = await Promise.all([compilePark(dir.path), peer()]);
  const root = `${dir.path}/root`;
  const installed = await run(Deno.execPath(), install(root));
  if (installed.code !== 0) throw new Error(`install failed: ${installed.stderr}`);
  const tool = `${root}/bin/tst_checkpoint`;
  const { env, deno, flags, script } = launcher(tool);
  const empty = `${dir.path}/empty.ts`;
  Deno.writeTextFileSync(empty, "");
  // a launcher that runs plain `deno` (as `deno install`'s does) finds the one running this bench
  const path = `${Deno.execPath().replace(/\/[^/]*$/, "")}:${Deno.env.get("PATH") ?? ""}`;
  const options = { env: { ...env, ...cp.env, LTP_IPC_LAYOUT: "ltp", PATH: path }, cwd: dir.path };

  const measure = async (watcher: string[], argv: string[]): Promise<Stats> => {
    const out = await run(watcher[0], [...watcher.slice(1), ...argv], options);
    const stats = out.code === 0 ? JSON.parse(out.stdout) as Stats : undefined;
    if (!stats || stats.status !== 0 || stats.park_ns === -1) {
      throw new Error(`${argv.join(" ")} failed: ${out.stdout}${out.stderr}`);
    }
    return stats;
  };
  /**
   * Measures each command `runs` times, interleaved, in an order that turns each round; one run first, untimed.
   * Gives each command's median, and its ratio to another as the median of each round's ratio: the runs of a round
   * are back to back, so they share the machine's load of that moment.
   */
  const sideBySide = async <K extends string>(watcher: string[], commands: Record<K, string[]>) => {
    const keys = Object.keys(commands) as K[];
    const stats = Object.fromEntries(keys.map((k) => [k, [] as Stats[]])) as Record<K, Stats[]>;
    for (const k of keys) await measure(watcher, commands[k]); // compiles and caches each, outside the figures
    for (let i = 0; i < runs; i++) {
      for (let j = 0; j < keys.length; j++) {
        const k = keys[(i + j) % keys.length];
        stats[k].push(await measure(watcher, commands[k]));
      }
    }
    return {
      of: (k: K, field: keyof Stats) => median(stats[k].map((s) => s[field])),
      vs: (k: K, base: K, field: keyof Stats) => median(stats[k].map((s, i) => s[field] / stats[base][i][field])),
    };
  };
  const times = (x: number) => `${x.toFixed(2)}×`;

  const rows: Row[] = [];
  const row = (...cells: [string, string, string, string]) => {
    const r: Row = [...cells, ""];
    rows.push(r), log(r);
  };

  const parked = await sideBySide([watcher, cp.path, `${OFFSET}`], {
    c: [peerBin, "wait", cp.path, "ltp", `${ID}`, "10000"],
    floor: [...deno, ...flags, FLOOR, `${ID}`],
    tool: [tool, "wait", "10000", `${ID}`],
  });
  const who = {
    c: "C: LTP's tst_checkpoint_wait (tests/peer.c)",
    floor: "floor: Deno, one futex wait, the tool's flags",
    tool: `installed tst_checkpoint wait 10000 ${ID}`,
  };
  const waiterRows = [["exec → parked (the kernel counts it)", "park_ns", ms], [
    "peak RSS of a waiter",
    "max_rss_kb",
    mib,
  ]];
  for (const [what, field, unit] of waiterRows as [string, keyof Stats, (x: number) => string][]) {
    for (const k of ["c", "floor", "tool"] as const) {
      const vs = k === "floor" ? "1.00× (baseline)" : times(parked.vs(k, "floor", field));
      row(what, who[k], unit(parked.of(k, field)), vs);
    }
  }

  const wake = ["wake", "1", "5", "0"];
  const called = await sideBySide([peerBin, "run"], {
    empty: [...deno, ...flags, empty],
    tool: [tool, ...wake],
    direct: [...deno, ...flags, script, ...wake],
  });
  const whoCalls = {
    empty: "deno run empty.ts, the tool's flags",
    tool: `installed tst_checkpoint ${wake.join(" ")}`,
    direct: "the same, its deno run line without the launcher",
  };
  const callRows = [["one call, wall time", "wall_ns", ms], ["one call, peak RSS", "max_rss_kb", mib]];
  for (const [what, field, unit] of callRows as [string, keyof Stats, (x: number) => string][]) {
    for (const k of ["empty", "tool", "direct"] as const) {
      const vs = k === "empty" ? "1.00× (baseline)" : times(called.vs(k, "empty", field));
      row(what, whoCalls[k], unit(called.of(k, field)), vs);
    }
  }

  const p = {
    tool: parked.of("tool", "park_ns"),
    floor: parked.of("floor", "park_ns"),
    vs: parked.vs("tool", "floor", "park_ns"),
  };
  const w = {
    tool: called.of("tool", "wall_ns"),
    empty: called.of("empty", "wall_ns"),
    vs: called.vs("tool", "empty", "wall_ns"),
  };
  const m = {
    tool: parked.of("tool", "max_rss_kb"),
    floor: parked.of("floor", "max_rss_kb"),
    vs: parked.vs("tool", "floor", "max_rss_kb"),
  };
  const targets: Target[] = [
    {
      what: "the installed `tst_checkpoint wait` parks within 1.10× Deno's floor",
      met: p.vs <= 1.1,
      measured: `${times(p.vs)}: ${ms(p.tool)} against ${ms(p.floor)} (C: ${ms(parked.of("c", "park_ns"))})`,
      miss: `a shell test's wait parks ${ms(p.tool - p.floor)} later than Deno allows; a tight shell test ` +
        "such as LTP's cn_pec.sh, whose helper reads nothing until the wait is parked, may overflow its netlink " +
        "buffer on a busy machine",
    },
    {
      what: "a `tst_checkpoint wake` call costs at most 1.10× an empty `deno run` (wall time)",
      met: w.vs <= 1.1,
      measured: `${times(w.vs)}: ${ms(w.tool)} against ${ms(w.empty)}`,
      miss: `every checkpoint call of a shell test costs ${ms(w.tool - w.empty)} more than Deno's own ` +
        "start-up: a test with many calls runs longer, and the moments it means to line up drift apart",
    },
    {
      what: "a waiting `tst_checkpoint` holds at most 1.10× the memory of the FFI floor (the floor's waiter)",
      met: m.vs <= 1.1,
      measured: `${times(m.vs)}: ${mib(m.tool)} against ${mib(m.floor)} (C: ${mib(parked.of("c", "max_rss_kb"))})`,
      miss: `each waiting shell process holds ${mib(m.tool - m.floor)} more than Deno needs, charged to the ` +
        "memory cgroup of a test that runs it inside one (LTP's memcg tests)",
    },
  ];
  return { rows, targets };
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  console.error(runLine(quick));
  const { rows, targets } = await startup(quick, (r) => console.error(r.join("  ")));
  console.log(runLine(quick));
  printRows(rows);
  printTargets(targets);
}
