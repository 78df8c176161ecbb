/**
 * Random argument vectors and environments against the CLI, confined by
 * --allow-read/--allow-write to one temporary folder. FUZZ_CASES sets how many
 * (300 here, 5000 in `deno task stress`); FUZZ_SEED replays a run.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, snapshot, tempDir } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { run, start } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const CASES = Number(Deno.env.get("FUZZ_CASES") ?? 300);
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 1e9);
const PARALLEL = 4;
const DEADLINE_MS = scaled(4000);

/** mulberry32: small, seeded, good enough to pick from lists. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test(`fuzz: ${CASES} random calls never crash, never hang, never touch a file outside their folder`, async () => {
  // the calls may write in d only; d's parent is private too, so that "d/../escape" is ours to check
  using dir = tempDir();
  const d = `${dir.path}/d`;
  Deno.mkdirSync(d);
  Checkpoint.init(`${d}/region`).close();
  Checkpoint.init(`${d}/ltp-region`, { layout: "ltp" }).close();
  Deno.writeFileSync(`${d}/zeros`, new Uint8Array(100));
  Deno.writeTextFileSync(`${d}/data`, "precious data");
  Deno.symlinkSync("/etc/passwd", `${d}/link`);
  Deno.mkdirSync(`${d}/dir`);
  assertExit(await run("mkfifo", [`${d}/fifo`]), 0);
  const guarded = [
    `${d}/data`,
    `${d}/link`,
    `${d}/fifo`,
    `${d}/dir`,
    "/dev/shm/ltp-fuzz",
    "/etc/passwd",
    "/etc/hostname",
  ];
  const guardedBefore = guarded.map(snapshot);
  const dBefore = listing(d);

  const pick = random(SEED);
  const one = <T>(xs: readonly T[]): T => xs[Math.floor(pick() * xs.length)];
  const words = [
    "init",
    "wait",
    "wake",
    "waiters",
    "status",
    "foo",
    "",
    "--help",
    "--version",
    "--json",
    "--layout",
    "ltp",
    "--layout=seed",
    "--layout=big",
    "--",
    "-h",
    "--bogus",
  ];
  const numbers = [
    "0",
    "1",
    "3",
    "20",
    "1004",
    "1005",
    "1022",
    "1023",
    "4294967295",
    "4294967296",
    "-1",
    "1e3",
    "0x10",
    " 7",
    "7 ",
    "abc",
    "",
    "007",
    "+5",
  ];
  const paths = [
    undefined,
    "",
    `${d}/region`,
    `${d}/ltp-region`,
    `${d}/zeros`,
    `${d}/data`,
    `${d}/link`,
    `${d}/fifo`,
    `${d}/dir`,
    `${d}/missing`,
    `${d}/new\nline`,
    "/etc/passwd",
    "/dev/null",
    "/dev/shm/ltp-fuzz",
    "relative/path",
    "/proc/self/mem",
    `${d}/../escape`,
  ];
  const layouts = [undefined, "seed", "ltp", "big", ""];
  const multipliers = [undefined, "1", "0.1", "abc", "0", "1e9", "NaN", "10000", "-1"];

  using denoDir = tempDir(); // the children's cache: where the user has no home, each would compile cli.ts anew
  const flags = ["--quiet", "--no-prompt", "--allow-ffi", "--allow-env", `--allow-read=${d}`, `--allow-write=${d}`];
  const failures: string[] = [];
  let legitWaits = 0;
  const runCase = async (i: number) => {
    const head = one([...words.slice(0, 6), ...words]);
    const args = [
      head,
      ...Array.from({ length: Math.floor(pick() * 4) }, () => pick() < 0.8 ? one(numbers) : one(words)),
    ];
    const env: Record<string, string> = {};
    const [path, layout, mul] = [one(paths), one(layouts), one(multipliers)];
    if (path !== undefined) env.LTP_IPC_PATH = path;
    if (layout !== undefined) env.LTP_IPC_LAYOUT = layout;
    if (mul !== undefined) env.LTP_TIMEOUT_MUL = mul;
    // cwd and TMPDIR in d keep a relative path, or a region made where there is no /dev/shm, in d; one made in
    // /dev/shm is named after the child's pid
    const shmBefore = new Set(listing("/dev/shm"));
    const p = start(Deno.execPath(), ["run", ...flags, CLI, ...args], {
      env: { ...env, TMPDIR: d, DENO_DIR: denoDir.path },
      cwd: d,
      clearEnv: true,
    });
    const timer = setTimeout(() => p.child.kill("SIGKILL"), DEADLINE_MS);
    p.child.status.then(() => clearTimeout(timer)); // at once: kill() throws on a child that has ended
    const r = await p.result;
    // `init` names a region after its parent (the shell that evals it; here this process), create() after itself
    const ours = (n: string) => [p.child.pid, Deno.pid].some((pid) => n.startsWith(`ltp_checkpoint_${pid}_`));
    const made = listing("/dev/shm").filter((n) => ours(n) && !shmBefore.has(n));
    for (const name of made) Deno.removeSync(`/dev/shm/${name}`);
    // init with no path where /dev/shm is not allowed makes its region in the temporary folder, d
    for (const name of listing(d).filter(ours)) {
      Deno.removeSync(`${d}/${name}`);
    }
    const what = `case ${i}: ${JSON.stringify(args)} env ${JSON.stringify(env)} -> exit ${r.code}, stderr ${
      JSON.stringify(r.stderr)
    }`;
    if (made.length) failures.push(`made ${made} in /dev/shm: ${what}`);
    if (r.code === 137) {
      // still waiting at the deadline: fine only for a real wait with a long timeout on a real region
      const long = ["wait", "wake", "waiters"].includes(args[0]) && Number(args[1]) * Number(mul ?? 1) >= DEADLINE_MS;
      if (long) legitWaits++;
      else failures.push(`hung: ${what}`);
      return;
    }
    if (![0, 1, 2].includes(r.code)) failures.push(`exit code: ${what}`);
    if (/^\s+at |Uncaught|panicked|Stack backtrace/m.test(r.stderr)) failures.push(`stack trace: ${what}`);
    // notes come first (a number whose trailing text is ignored, as LTP's strtoul ignores it: "1e3" is 1), then
    // at most one line; misuse (exit 1) may add the usage after it; nothing else may
    const all = r.stderr.split("\n").filter(Boolean);
    const first = all.findIndex((line) => !line.startsWith("tst_checkpoint: note: "));
    const lines = first < 0 ? [] : all.slice(first);
    const usage = lines.findIndex((line) => line.startsWith("Usage: tst_checkpoint"));
    const message = usage >= 0 && r.code === 1 ? lines.slice(0, usage) : lines;
    if (message.length > 1) failures.push(`more than one line: ${what}`);
  };
  for (let i = 0; i < CASES; i += PARALLEL) {
    await Promise.all(Array.from({ length: Math.min(PARALLEL, CASES - i) }, (_, k) => runCase(i + k)));
  }

  assert.deepEqual(failures, [], `seed ${SEED}: replay with FUZZ_SEED=${SEED}`);
  assert.deepEqual(guarded.map(snapshot), guardedBefore, `seed ${SEED}`);
  // besides regions at the paths in d that did not exist, nothing new in d, nor next to it
  assert.deepEqual(listing(d).filter((name) => !["missing", "new\nline"].includes(name)), dBefore, `seed ${SEED}`);
  assert.deepEqual(listing(dir.path), ["d"], `seed ${SEED}`);
  console.log(`seed ${SEED}: ${CASES} cases, ${legitWaits} long waits stopped at ${DEADLINE_MS} ms`);
});
