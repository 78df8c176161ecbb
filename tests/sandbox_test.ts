/**
 * The sandbox promise: with `--allow-read=DIR --allow-write=DIR` (and
 * `--allow-ffi`, which Deno cannot scope) the module and the CLI touch
 * nothing outside DIR, races included. Around it: they never prompt, every
 * failure is one line with LTP's exit code, inspecting a region changes
 * nothing, and init never shrinks data that another process wrote.
 *
 * The races are bounded in time (scaled by LTP_TIMEOUT_MUL) and count what
 * went wrong; their other side is tests/sandbox_race.c.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import {
  assertExit,
  assertOneLine,
  CHILD_FLAGS,
  CLI,
  cli,
  compiled as compiledProgram,
  HAVE_GCC,
  ROOT,
  run,
  scaled,
  start,
  tempDir,
} from "./helpers.ts";

const DENO = Deno.execPath();
const NOBODY = 65534;
const IS_ROOT = Deno.uid() === 0;

function commandExists(name: string): boolean {
  return new Deno.Command("sh", { args: ["-c", 'command -v "$1" >/dev/null', "sh", name] }).outputSync().success;
}

const HAVE_SETPRIV = commandExists("setpriv");

// ---------------------------------------------------------------------------
// Set-up shared by the tests

/** The C helpers, compiled once per run into a private folder that is removed when the tests end. */
let compiledOnce: Promise<{ race: string; markerLib: string }> | undefined;

function compiled(): Promise<{ race: string; markerLib: string }> {
  compiledOnce ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "ltp-checkpoint-sandbox-bin-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    await Deno.chmod(dir, 0o755); // the attacker of the cross-user race runs as nobody
    const gcc = async (args: string[]) => {
      const r = await run("gcc", ["-O2", "-Wall", "-Werror", ...args]);
      if (r.code !== 0) throw new Error(`gcc ${args.join(" ")} failed: ${r.stderr}`);
    };
    const race = `${dir}/sandbox_race`;
    const markerLib = `${dir}/sandbox_marker.so`;
    await gcc(["-o", race, `${ROOT}/tests/sandbox_race.c`]);
    await gcc(["-shared", "-fPIC", "-o", markerLib, `${ROOT}/tests/sandbox_marker.c`]);
    return { race, markerLib };
  })();
  return compiledOnce;
}

/** A private folder holding DIR (the sandbox), OUTSIDE (beside it) and the scripts; removed by `using`. */
function workspace() {
  const root = tempDir();
  const dir = `${root.path}/in`;
  const outside = `${root.path}/out`;
  Deno.mkdirSync(dir);
  Deno.mkdirSync(outside);
  return { root: root.path, dir, outside, [Symbol.dispose]: () => root[Symbol.dispose]() };
}

/** Deno's flags for a child confined to `dirs`: what the README promises holds. */
function sandboxFlags(...dirs: string[]): string[] {
  return [
    "--allow-ffi",
    `--allow-read=${dirs.join(",")}`,
    `--allow-write=${dirs.join(",")}`,
    "--allow-env",
    "--no-prompt",
  ];
}

/** Writes a script that imports the module into `folder` (never inside DIR or OUTSIDE) and returns its path. */
function script(folder: string, name: string, body: string): string {
  const path = `${folder}/${name}.ts`;
  Deno.writeTextFileSync(path, `import { Checkpoint } from "${ROOT}/mod.ts";\n${body}`);
  return path;
}

/**
 * A script that tries `Checkpoint.init()` on each path and prints one line per path: `made` or the error. The
 * paths are written into the script: a NUL byte cannot travel in an argument.
 */
function tryInit(paths: string[]): string {
  return `
for (const path of ${JSON.stringify(paths)}) {
  try {
    Checkpoint.init(path).close();
    console.log("made " + JSON.stringify(path));
  } catch (e) {
    console.log(e instanceof Error ? e.name + ": " + JSON.stringify(e.message) : "not an Error: " + e);
  }
}`;
}

/** A script that calls `Checkpoint.init(FOLDER/mN)` for MS milliseconds and prints what happened as JSON. */
const INIT_LOOP = `
const [folder, ms] = Deno.args;
const end = performance.now() + Number(ms);
let made = 0;
const errors: Record<string, number> = {};
for (let i = 0; performance.now() < end; i++) {
  try {
    Checkpoint.init(folder + "/m" + i).close();
    made++;
  } catch (e) {
    const name = e instanceof Error ? e.name : "not an Error";
    errors[name] = (errors[name] ?? 0) + 1;
  }
}
console.log(JSON.stringify({ made, errors }));`;

/** Every file (not folder or symlink) below `folder`, however deep: `find` copes with paths beyond PATH_MAX. */
async function filesBelow(folder: string): Promise<string[]> {
  const r = await run("find", [folder, "-type", "f"]);
  assertExit(r, 0);
  return r.stdout.split("\n").filter(Boolean);
}

/** Files created in OUTSIDE or DIR (none are expected), shortened: deep paths run to thousands of bytes. */
async function escapedFrom(w: { dir: string; outside: string }): Promise<string[]> {
  const found = [...await filesBelow(w.outside), ...await filesBelow(w.dir)];
  return found.map((path) =>
    path.length > 200 ? `${path.slice(0, 60)}...(${path.length} bytes)...${path.slice(-20)}` : path
  );
}

/** Fails on anything that looks like a stack trace or an uncaught error. */
function assertNoStackTrace(text: string, what: string): void {
  const bad = text.split("\n").filter((line) => line.startsWith("    at ") || line.startsWith("error: Uncaught"));
  assert.deepEqual(bad, [], `${what} shows a stack trace:\n${text}`);
}

/** Sends `signal` to a child that may have ended already. */
function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* it has ended */ }
}

/** Waits for a child for at most `ms`; then SIGTERM, and SIGKILL 2 s later. `timedOut` says whether it had to. */
async function bounded(started: ReturnType<typeof start>, ms: number) {
  let timedOut = false;
  let timer = setTimeout(() => {
    timedOut = true;
    kill(started.child, "SIGTERM");
    timer = setTimeout(() => kill(started.child, "SIGKILL"), 2000);
  }, ms);
  try {
    return { ...(await started.result), timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `cmd` as user nobody: util-linux's setpriv where it exists, else runuser. */
function asNobody(cmd: string, args: string[]): [string, string[]] {
  return HAVE_SETPRIV
    ? ["setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", cmd, ...args]]
    : ["runuser", ["-u", "nobody", "--", cmd, ...args]];
}

/** Nanosecond access, modification and change times, as `stat` prints them. */
async function times(path: string): Promise<{ atime: string; mtime: string; ctime: string }> {
  const r = await run("stat", ["--format=%x|%y|%z", path]);
  assertExit(r, 0);
  const [atime, mtime, ctime] = r.stdout.trim().split("|");
  return { atime, mtime, ctime };
}

// ---------------------------------------------------------------------------
// 1. A folder of the path swapped for a symlink while init runs

/**
 * DIR/d/sub is a folder, DIR/d/link a symlink to OUTSIDE; a C process
 * exchanges the two names in a tight loop while a sandboxed module child and
 * the sandboxed CLI run init on fresh names in DIR/d/sub. Whatever lands
 * outside DIR is an escape. `attacker` nobody: the swapper runs as nobody
 * and owns DIR/d, while the module and the CLI run as root.
 */
async function raceFolderSwap(attacker: "self" | "nobody") {
  const { race } = await compiled();
  using w = workspace();
  const folder = `${w.dir}/d`;
  const sub = `${folder}/sub`;
  const link = `${folder}/link`;
  Deno.mkdirSync(sub, { recursive: true });
  Deno.symlinkSync(w.outside, link);
  if (attacker === "nobody") {
    Deno.chmodSync(w.root, 0o711);
    Deno.chmodSync(w.dir, 0o711);
    Deno.chownSync(folder, NOBODY, NOBODY);
    Deno.chownSync(sub, NOBODY, NOBODY); // never chown the link: chown follows it to OUTSIDE
  }
  const ms = scaled(3000);
  const flags = sandboxFlags(w.dir);
  const [cmd, args] = attacker === "nobody"
    ? asNobody(race, ["swap", sub, link, String(ms / 1000 + 5)])
    : [race, ["swap", sub, link, String(ms / 1000 + 5)]];
  const swapper = start(cmd, args);
  const moduleChild = start(DENO, ["run", "--quiet", ...flags, script(w.root, "loop", INIT_LOOP), sub, String(ms)]);
  const cliCodes: Record<number, number> = {};
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    const r = await run(DENO, ["run", "--quiet", ...flags, CLI, "init"], { env: { LTP_IPC_PATH: `${sub}/c${i}` } });
    cliCodes[r.code] = (cliCodes[r.code] ?? 0) + 1;
    assertNoStackTrace(r.stderr, "the CLI");
  }
  const moduleResult = await moduleChild.result;
  kill(swapper.child, "SIGTERM");
  const swaps = await swapper.result;

  assertExit(swaps, 0);
  assert.ok(Number(swaps.stdout) > 0, `the swapper made no exchange: ${swaps.stdout}`);
  assertExit(moduleResult, 0);
  const loop = JSON.parse(moduleResult.stdout);
  const escaped = await filesBelow(w.outside);
  const summary = `${escaped.length} files created in OUTSIDE (${escaped.slice(0, 3).join(", ")}...); ` +
    `module: ${moduleResult.stdout.trim()}; CLI exit codes: ${JSON.stringify(cliCodes)}; ${swaps.stdout.trim()} swaps`;
  assert.deepEqual(escaped.length, 0, summary);
  // not vacuous: while the real folder was in place, inits went through
  assert.ok(loop.made > 0, `the module never made a region: ${summary}`);
  assert.ok((cliCodes[0] ?? 0) > 0, `the CLI never made a region: ${summary}`);
}

Deno.test(
  "a folder swapped for a symlink to OUTSIDE while init runs: the sandboxed module and CLI create nothing outside DIR",
  () => raceFolderSwap("self"),
);

Deno.test({
  name: "across users: root's module and CLI create nothing outside DIR while nobody swaps a folder it owns " +
    "(root only; ignore: Deno.uid() !== 0)",
  ignore: !IS_ROOT,
  fn: () => raceFolderSwap("nobody"),
});

// ---------------------------------------------------------------------------
// 1b. The folder moved out of DIR between the check and the create

/** A script that alternates init(FOLDER/mN) and create({ dir: FOLDER }) for MS milliseconds; prints JSON. */
const MOVED_LOOP = `
const [folder, ms] = Deno.args;
const end = performance.now() + Number(ms);
let made = 0;
const errors: Record<string, number> = {};
for (let i = 0; performance.now() < end; i++) {
  try {
    if (i % 2) Checkpoint.create({ dir: folder }).close();
    else Checkpoint.init(folder + "/m" + i).close();
    made++;
  } catch (e) {
    const name = e instanceof Error ? e.name : "not an Error";
    errors[name] = (errors[name] ?? 0) + 1;
  }
}
console.log(JSON.stringify({ made, errors }));`;

/** Files below `folder` whose group is `gid`, and how many files there are in all. */
async function filesOfGroup(folder: string, gid: number): Promise<{ marked: string[]; all: number }> {
  const all = await filesBelow(folder);
  return { marked: all.filter((path) => Deno.lstatSync(path).gid === gid), all: all.length };
}

/**
 * DIR/d, owned by nobody, gets a fresh folder DIR/d/sub again and again,
 * which nobody moves out to OUTSIDE/g<i> soon after (tests/sandbox_race.c
 * move: it marks each folder it moved out, so that a file created in it
 * afterwards has nobody's group). Root's sandboxed module (init and
 * create({ dir })) and CLI make regions in DIR/d/sub meanwhile: a file of
 * nobody's group left anywhere was created outside DIR and kept.
 * `withoutOpenat2`: the module and the CLI run under tests/nosys.c, as on
 * a kernel before 5.6, where the folder is checked after the create.
 */
async function raceMovedFolder(withoutOpenat2: boolean) {
  const { race } = await compiled();
  const wrap = withoutOpenat2 ? [await compiledProgram("nosys.c"), "38", "437"] : [];
  using w = workspace();
  const folder = `${w.dir}/d`;
  const sub = `${folder}/sub`;
  Deno.mkdirSync(folder);
  for (const path of [w.root, w.dir]) Deno.chmodSync(path, 0o711);
  for (const path of [folder, w.outside]) Deno.chownSync(path, NOBODY, NOBODY);
  const ms = scaled(3000);
  const flags = sandboxFlags(w.dir);
  const mover = start(...asNobody(race, ["move", sub, w.outside, String(ms / 1000 + 5)]));
  const deno = (args: string[], env?: Record<string, string>) =>
    withoutOpenat2 ? run(wrap[0], [...wrap.slice(1), DENO, ...args], { env }) : run(DENO, args, { env });
  const moduleChild = deno(["run", "--quiet", ...flags, script(w.root, "moved", MOVED_LOOP), sub, String(ms)]);
  const cliCodes: Record<number, number> = {};
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    const r = await deno(["run", "--quiet", ...flags, CLI, "init"], { LTP_IPC_PATH: `${sub}/c${i}` });
    cliCodes[r.code] = (cliCodes[r.code] ?? 0) + 1;
    assertNoStackTrace(r.stderr, "the CLI");
  }
  const moduleResult = await moduleChild;
  kill(mover.child, "SIGTERM");
  const moves = await mover.result;

  assertExit(moves, 0);
  assertExit(moduleResult, 0);
  const loop = JSON.parse(moduleResult.stdout);
  const { marked, all } = await filesOfGroup(w.root, NOBODY);
  const moved = (await filesBelow(w.outside)).length - marked.length;
  const summary = `${marked.length} files created outside DIR and kept (${marked.slice(0, 3).join(", ")}); ` +
    `${all} files in all, ${moved} of them made inside and moved out with their folder; ` +
    `module: ${moduleResult.stdout.trim()}; CLI exit codes: ${JSON.stringify(cliCodes)}; ` +
    `${moves.stdout.trim()} folders moved out`;
  assert.deepEqual(marked.length, 0, summary);
  // not vacuous: regions were made, and folders holding them were moved out soon after
  assert.ok(loop.made > 0 && moved > 0, `nothing was made, or nothing moved out: ${summary}`);
  assert.deepEqual(Object.keys(cliCodes).filter((code) => code !== "0" && code !== "2"), [], summary);
  assert.ok(Number(moves.stdout) > 100, `the mover hardly moved: ${summary}`);
}

Deno.test({
  name: "a folder that nobody moves out of DIR while root's module and CLI create in it: nothing made outside DIR " +
    "is kept (needs root)",
  ignore: !IS_ROOT || !HAVE_SETPRIV,
  fn: () => raceMovedFolder(false),
});

Deno.test({
  name: "the same without openat2 (a seccomp filter, as before Linux 5.6): nothing made outside DIR is kept " +
    "(needs root)",
  ignore: !IS_ROOT || !HAVE_SETPRIV || !HAVE_GCC,
  fn: () => raceMovedFolder(true),
});

Deno.test("close() and remove() never unlink outside DIR: a folder moved out after the create keeps its region", async () => {
  using w = workspace();
  Deno.mkdirSync(`${w.dir}/a`);
  Deno.mkdirSync(`${w.dir}/b`);
  const body = `
    const [dir] = Deno.args;
    const created = Checkpoint.create({ dir: dir + "/a" });
    const inited = Checkpoint.init(dir + "/b/r");
    console.log("ready");
    await Deno.stdin.read(new Uint8Array(1)); // the folders are moved out meanwhile
    created.close();
    inited.remove();`;
  const child = new Deno.Command(DENO, {
    args: ["run", "--quiet", ...sandboxFlags(w.dir), script(w.root, "moved-away", body), w.dir],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const ready = await lines.read();
  Deno.renameSync(`${w.dir}/a`, `${w.outside}/a`);
  Deno.renameSync(`${w.dir}/b`, `${w.outside}/b`);
  const writer = child.stdin.getWriter();
  await writer.write(new Uint8Array([10]));
  await writer.close();
  while (!(await lines.read()).done);
  const { code } = await child.status;
  assert.deepEqual({ ready: ready.value, code }, { ready: "ready\n", code: 0 }, await stderr);
  assert.equal((await filesBelow(w.outside)).length, 2, "both regions are still where their folders went");
});

// ---------------------------------------------------------------------------
// 2. A NUL byte: the string Deno checks is not the C string the kernel sees

Deno.test("a path with a NUL byte is refused with one clear error, and nothing is created where the C string stops", async () => {
  using w = workspace();
  // lexically OUTSIDE/NUL\0/../../in/x is DIR/x; as a C string it is OUTSIDE/NUL
  const path = `${w.outside}/NUL\0/../../in/x`;
  const r = await run(DENO, ["run", "--quiet", ...sandboxFlags(w.dir), script(w.root, "nul", tryInit([path]))]);
  assert.deepEqual(await escapedFrom(w), [], r.stdout);
  assertExit(r, 0);
  assert.equal(r.stderr, "", "no crash");
  assertOneLine(r.stdout, /^(InvalidData|NotCapable|TypeError): /);
});

// ---------------------------------------------------------------------------
// 3. Real paths the check cannot see: longer than PATH_MAX, or through /proc's magic links

const LONG_NAME = "L".repeat(250);
const LEVELS = 20; // 20 × 251 bytes: the real path is far beyond PATH_MAX (4096)

/**
 * Makes OUTSIDE/L/L/.../L, LEVELS deep, with a symlink `hop` halfway down
 * pointing to the bottom, and returns a symlink target that leads to the
 * bottom in fewer than 4096 bytes.
 */
async function deepFolder(outside: string): Promise<string> {
  const { race } = await compiled();
  const half = LEVELS / 2;
  const rest = Array(LEVELS - half).fill(LONG_NAME).join("/");
  assertExit(await run(race, ["descend", outside, LONG_NAME, String(LEVELS)]), 0);
  assertExit(await run(race, ["descend", outside, LONG_NAME, String(half), "ln", "-s", rest, "hop"]), 0);
  return `${outside}/${Array(half).fill(LONG_NAME).join("/")}/hop`;
}

Deno.test("a symlink in DIR to a folder whose real path exceeds PATH_MAX is refused: the check is never skipped", async () => {
  using w = workspace();
  Deno.symlinkSync(await deepFolder(w.outside), `${w.dir}/link`);
  const path = `${w.dir}/link/x`;
  const flags = sandboxFlags(w.dir);
  const r = await run(DENO, ["run", "--quiet", ...flags, script(w.root, "deep", tryInit([path]))]);
  const viaCli = await run(DENO, ["run", "--quiet", ...flags, CLI, "init"], { env: { LTP_IPC_PATH: path } });
  assert.deepEqual(
    await escapedFrom(w),
    [],
    `module: ${r.stdout}${r.stderr}; CLI: exit ${viaCli.code} ${viaCli.stderr}`,
  );
  assertExit(r, 0);
  assertOneLine(r.stdout, /^(NotCapable|InvalidData): /);
  assertExit(viaCli, 2);
  assertOneLine(viaCli.stderr, /TBROK/);
});

/** A `sleep` whose working folder is `outside`, or the bottom of deepFolder(outside); killed by `using`. */
async function sleeperIn(outside: string, deep: boolean) {
  const { race } = await compiled();
  const sleeper = start(race, ["descend", outside, LONG_NAME, String(deep ? LEVELS : 0), "sleep", "60"]);
  const pid = sleeper.child.pid;
  const end = performance.now() + scaled(5000);
  while (Deno.readTextFileSync(`/proc/${pid}/comm`).trim() !== "sleep") {
    if (performance.now() > end) throw new Error("the sleeper did not start");
    await new Promise((r) => setTimeout(r, 5));
  }
  return {
    pid,
    async [Symbol.asyncDispose]() {
      kill(sleeper.child, "SIGKILL");
      await sleeper.result;
    },
  };
}

Deno.test("magic links under /proc are refused: /proc/PID/cwd and /proc/self/root, even with /proc allowed", async () => {
  using w = workspace();
  await deepFolder(w.outside);
  await using deepSleeper = await sleeperIn(w.outside, true);
  await using sleeper = await sleeperIn(w.outside, false);
  const paths = [
    `/proc/${deepSleeper.pid}/cwd/x`, // lands at the bottom of OUTSIDE's deep folder
    `/proc/${sleeper.pid}/cwd/x`, // lands in OUTSIDE
    `/proc/self/root${w.dir}/x`, // lands in DIR, through a magic link all the same
  ];
  // Deno's check is lexical: /proc/... is "granted" for every path above
  const flags = sandboxFlags(w.dir, "/proc");
  const r = await run(DENO, ["run", "--quiet", ...flags, script(w.root, "proc", tryInit(paths))]);
  assertExit(r, 0);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, paths.length, r.stdout + r.stderr);
  const accepted = paths.filter((_, i) => !/^(NotCapable|InvalidData): /.test(lines[i]));
  assert.deepEqual({ accepted, created: await escapedFrom(w) }, { accepted: [], created: [] }, r.stdout);
});

// ---------------------------------------------------------------------------
// 4. LTP_CHECKPOINT_LIBC is only a fallback

/** Runs Checkpoint.create() in a child that may read `folder` and names `libc` in LTP_CHECKPOINT_LIBC. */
function createWithLibcOverride(folder: string, libc: string, env: Record<string, string> = {}) {
  const body = `using cp = Checkpoint.create(); console.log("created " + cp.path);`;
  const flags = [
    "--allow-ffi",
    "--allow-env",
    `--allow-read=/dev/shm,${folder}`,
    "--allow-write=/dev/shm",
    "--no-prompt",
  ];
  const child = start(DENO, ["run", "--quiet", ...flags, script(folder, "create", body)], {
    env: { LTP_CHECKPOINT_LIBC: libc, ...env },
  });
  return bounded(child, scaled(15000));
}

Deno.test("LTP_CHECKPOINT_LIBC naming a FIFO is never opened while libc.so.6 loads: create() works and does not hang", async () => {
  using w = workspace();
  const fifo = `${w.root}/libc.fifo`;
  assertExit(await run("mkfifo", [fifo]), 0);
  const r = await createWithLibcOverride(w.root, fifo);
  assert.ok(!r.timedOut, "create() hung on the FIFO (killed)");
  assertExit(r, 0);
  assert.match(r.stdout, /^created \/dev\/shm\//);
});

Deno.test("LTP_CHECKPOINT_LIBC naming a library never runs its constructor while libc.so.6 loads", async () => {
  const { markerLib } = await compiled();
  using w = workspace();
  // the library does leave its mark when something loads it
  const probe = `${w.root}/probe-mark`;
  assertExit(await run("true", [], { env: { LD_PRELOAD: markerLib, SANDBOX_TEST_MARKER: probe } }), 0);
  assert.ok(Deno.statSync(probe).isFile, "the marker library works");

  const mark = `${w.root}/mark`;
  const r = await createWithLibcOverride(w.root, markerLib, { SANDBOX_TEST_MARKER: mark });
  assert.ok(!r.timedOut, "create() hung (killed)");
  assertExit(r, 0);
  assert.match(r.stdout, /^created \/dev\/shm\//);
  assert.throws(() => Deno.statSync(mark), Deno.errors.NotFound, "the library's constructor ran");
});

// (5. The suite trusts no planted file: tests/helpers.ts builds the C peer privately; nothing to test here.)

// ---------------------------------------------------------------------------
// 6. Nothing ever prompts, even on a terminal

/** Runs a shell command on a pseudo-terminal (util-linux's script), bounded; the output with colours and \r removed. */
async function onTerminal(command: string, env: Record<string, string> = {}) {
  const r = await bounded(start("script", ["-qec", command, "/dev/null"], { env }), scaled(10000));
  // deno-lint-ignore no-control-regex
  const text = r.stdout.replace(/\x1b\[[0-9;]*m/g, "").replaceAll("\r", "");
  return { ...r, text };
}

function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

Deno.test("without --allow-ffi on a terminal, the module and the CLI say so in one line and never prompt", async () => {
  using w = workspace();
  using region = Checkpoint.create();
  const body = `try {
    Checkpoint.create().close();
    console.log("created a region without --allow-ffi");
  } catch (e) {
    console.error(e instanceof Error ? e.name + ": " + e.message : e);
    Deno.exit(1);
  }`;
  const noFfi = "--allow-env --allow-read=/dev/shm,/tmp --allow-write=/dev/shm,/tmp"; // and no --no-prompt
  const deno = `${quote(DENO)} run --quiet --no-config ${noFfi}`;
  const cases = {
    "module create()": `${deno} ${quote(script(w.root, "noffi", body))}`,
    "CLI init": `env -u LTP_IPC_PATH ${deno} ${quote(CLI)} init`,
    "CLI wait": `LTP_IPC_PATH=${quote(region.path)} ${deno} ${quote(CLI)} wait 10 0`,
  };
  const results = await Promise.all(Object.values(cases).map((command) => onTerminal(command)));
  const problems = Object.keys(cases).flatMap((name, i) => {
    const { timedOut, code, text } = results[i];
    const lines = text.split("\n").filter(Boolean);
    if (timedOut) return [`${name} hung (killed after ${scaled(10000)} ms): ${text}`];
    if (/Allow\?|Deno requests/.test(text)) return [`${name} prompted: ${text}`];
    if (lines.length !== 1 || !/--allow-ffi/.test(lines[0])) {
      return [`${name}: not one line naming --allow-ffi: ${text}`];
    }
    if (code === 0) return [`${name}: exit 0`];
    return [];
  });
  assert.deepEqual(problems, []);
});

// ---------------------------------------------------------------------------
// 7. Every failure is one line, with LTP's exit code

/** The CLI with a shell redirection such as `>/dev/full` applied to it. */
function cliRedirected(redirect: string, args: string[], env: Record<string, string> = {}) {
  const shell = `${env.LTP_IPC_PATH ? "" : "unset LTP_IPC_PATH; "}exec "$0" "$@" ${redirect}`;
  return start("sh", ["-c", shell, DENO, "run", ...CHILD_FLAGS, CLI, ...args], { env });
}

Deno.test("misuse and bad numbers print the usage on stderr, never on stdout; --help prints on stdout", async () => {
  const misuse = [[], ["wait"], ["wake", "10", "0"], ["foo", "1", "2"], ["wait", "abc", "0"], ["wake", "1", "0", "-1"]];
  const problems: string[] = [];
  for (const args of misuse) {
    const r = await cli(args);
    const what = `tst_checkpoint ${args.join(" ")}`;
    if (r.code !== 1) problems.push(`${what}: exit ${r.code}`);
    if (r.stdout !== "") problems.push(`${what} printed on stdout (eval "$(tst_checkpoint ...)" would run it)`);
    if (!/Usage: tst_checkpoint/.test(r.stderr)) problems.push(`${what}: no usage on stderr`);
    assertNoStackTrace(r.stderr, what);
  }
  assert.deepEqual(problems, []);
  const bad = await cli(["wait", "abc", "0"]);
  assert.match(bad.stderr, /ERROR: Invalid TIMEOUT 'abc'/);
  const help = await cli(["--help"]);
  assertExit(help, 0);
  assert.match(help.stdout, /^Usage: tst_checkpoint/);
  assert.equal(help.stderr, "");
});

Deno.test("output that cannot be written (/dev/full) gives one line, exit 1 for misuse and 2 otherwise, no stack trace", async () => {
  using cp = Checkpoint.create();
  const rows: [string, string[], number][] = [
    ["2>/dev/full", ["wait"], 1],
    ["2>/dev/full", ["wait", "abc", "0"], 1],
    [">/dev/full", ["--help"], 2],
    [">/dev/full", ["status"], 2],
    [">/dev/full", ["status", "--json"], 2],
  ];
  const problems: string[] = [];
  for (const [redirect, args, code] of rows) {
    const r = await cliRedirected(redirect, args, cp.env).result;
    const what = `tst_checkpoint ${args.join(" ")} ${redirect}`;
    if (r.code !== code) problems.push(`${what}: exit ${r.code}, not ${code}`);
    assertNoStackTrace(r.stdout + r.stderr, what);
    if (redirect.startsWith("2") && r.stdout !== "") problems.push(`${what} printed on stdout: ${r.stdout}`);
    const lines = r.stderr.split("\n").filter(Boolean).length;
    if (redirect.startsWith(">") && lines !== 1) problems.push(`${what}: ${lines} lines on stderr: ${r.stderr}`);
  }
  assert.deepEqual(problems, []);
});

Deno.test("init whose export line cannot be printed (>/dev/full) removes the region it made and exits 2", async () => {
  const before = new Set(Array.from(Deno.readDirSync("/dev/shm"), (e) => e.name));
  const started = cliRedirected(">/dev/full", ["init"], {});
  const prefix = `ltp_checkpoint_${started.child.pid}_`; // sh execs Deno: the same pid
  const r = await started.result;
  const left = Array.from(Deno.readDirSync("/dev/shm"), (e) => e.name).filter((n) =>
    n.startsWith(prefix) && !before.has(n)
  );
  for (const name of left) Deno.removeSync(`/dev/shm/${name}`);
  assertExit(r, 2);
  assertOneLine(r.stderr, /\S/);
  assertNoStackTrace(r.stderr, "init >/dev/full");
  assert.deepEqual(left, [], "a region nobody can learn the path of was left behind");
});

Deno.test("a reader that closes the pipe early (tst_checkpoint ... | true) gets no stack trace", async () => {
  using cp = Checkpoint.create();
  for (const args of [["--help"], ["status"], ["status", "--json"]]) {
    const shell = `"$0" "$@" | true; exit "\${PIPESTATUS[0]}"`;
    const r = await run("bash", ["-c", shell, DENO, "run", ...CHILD_FLAGS, CLI, ...args], { env: cp.env });
    const what = `tst_checkpoint ${args.join(" ")} | true`;
    assert.ok(r.code === 0 || r.code === 2, `${what}: exit ${r.code}: ${r.stderr}`);
    assertNoStackTrace(r.stderr, what);
    assert.ok(r.stderr.split("\n").filter(Boolean).length <= 1, `${what}: ${r.stderr}`);
  }
});

// ---------------------------------------------------------------------------
// 8. Parallel inits of one new path

/** Asserts that `path` is a one-page region. */
function assertRegion(path: string): void {
  const bytes = Deno.readFileSync(path);
  assert.equal(bytes.length, 4096, path);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "LTPM", path);
}

Deno.test("parallel inits of one new path all succeed: module children released together, and CLIs started together", async () => {
  using w = workspace();
  const children = 8;
  const rounds = 120;
  // a barrier: every child waits on checkpoint i, then all are woken at once to init DIR/r<i>
  using barrier = Checkpoint.init(`${w.root}/barrier`, { layout: "ltp" });
  const body = `
    const [dir, rounds] = Deno.args;
    using barrier = Checkpoint.open(dir + "/../barrier", { layout: "ltp" });
    const failures = [];
    for (let i = 0; i < Number(rounds); i++) {
      barrier.waitSync(i, 20000);
      try {
        Checkpoint.init(dir + "/r" + i).close();
      } catch (e) {
        failures.push(i + ": " + e.name + ": " + e.message);
      }
    }
    console.log(JSON.stringify(failures));`;
  const file = script(w.root, "parallel", body);
  const flags = ["--allow-ffi", "--allow-env", `--allow-read=${w.root}`, `--allow-write=${w.root}`, "--no-prompt"];
  const started = Array.from(
    { length: children },
    () => start(DENO, ["run", "--quiet", ...flags, file, w.dir, String(rounds)]),
  );
  let released = 0;
  try {
    for (; released < rounds; released++) {
      await barrier.waitForWaiters(released, children, scaled(20000));
      await barrier.wake(released, children, scaled(5000));
    }
  } finally {
    if (released < rounds) started.forEach((s) => kill(s.child, "SIGKILL"));
  }
  const results = await Promise.all(started.map((s) => bounded(s, scaled(20000))));
  const failures = results.flatMap((r) => r.code === 0 ? JSON.parse(r.stdout) : [`exit ${r.code}: ${r.stderr}`]);
  assert.deepEqual(
    failures.length,
    0,
    `${failures.length} of ${children * rounds} inits failed: ${failures.slice(0, 3)}`,
  );
  for (let i = 0; i < rounds; i++) assertRegion(`${w.dir}/r${i}`);

  for (let round = 0; round < 2; round++) {
    const path = `${w.dir}/cli${round}`;
    const results = await Promise.all(Array.from({ length: 12 }, () => cli(["init"], { env: { LTP_IPC_PATH: path } })));
    const failed = results.filter((r) => r.code !== 0).map((r) => `exit ${r.code}: ${r.stderr.trim()}`);
    assert.deepEqual(failed, [], `round ${round}`);
    assertRegion(path);
  }
});

// ---------------------------------------------------------------------------
// 9. Inspection changes nothing

/**
 * Runs every command that only looks at a region (CLI status, status --json,
 * waiters, wake, a wait that times out; the module's open, waiters, wake and
 * waitSync) and returns the region's times and bytes before and after.
 */
async function inspect(path: string) {
  const bytes = Deno.readFileSync(path); // first: reading may set the access time
  // an access time older than the modification time: any read (relatime included) would update it
  assertExit(await run("touch", ["-a", "-d", "2001-02-03 04:05:06.789", path]), 0);
  const before = await times(path);
  const env = { LTP_IPC_PATH: path };
  const commands: [string[], number][] = [
    [["status"], 0],
    [["status", "--json"], 0],
    [["waiters", "50", "0", "0"], 0],
    [["wake", "50", "0", "0"], 0],
    [["wait", "20", "0"], 1],
  ];
  for (const [args, code] of commands) assertExit(await cli(args, { env }), code);
  {
    using cp = Checkpoint.open(path);
    assert.equal(cp.waiters(0), 0);
    await cp.wake(0, 0, 50);
    assert.throws(() => cp.waitSync(0, 20), Deno.errors.TimedOut);
  }
  const after = await times(path);
  const now = Deno.readFileSync(path);
  return { before, after, bytesChanged: now.length !== bytes.length || !now.every((b, i) => b === bytes[i]) };
}

Deno.test("inspecting a region changes neither its bytes nor its times: CLI status, waiters, wake, wait and the module", async () => {
  using dir = tempDir();
  const path = `${dir.path}/region`;
  Checkpoint.init(path).close();
  const { before, after, bytesChanged } = await inspect(path);
  // the access time too: O_NOATIME is allowed on one's own file
  assert.deepEqual({ ...after, bytesChanged }, { ...before, bytesChanged: false });
});

Deno.test({
  name: "inspecting a 0666 region of another owner changes neither its bytes nor its mtime/ctime " +
    "(root only; ignore: Deno.uid() !== 0)",
  ignore: !IS_ROOT,
  fn: async () => {
    using dir = tempDir();
    const path = `${dir.path}/region`;
    Checkpoint.init(path).close();
    Deno.chmodSync(path, 0o666);
    Deno.chownSync(path, NOBODY, NOBODY);
    const { before, after, bytesChanged } = await inspect(path);
    assert.deepEqual(
      { mtime: after.mtime, ctime: after.ctime, bytesChanged },
      { mtime: before.mtime, ctime: before.ctime, bytesChanged: false },
    );
  },
});

// ---------------------------------------------------------------------------
// 10. init never shrinks or overwrites data another process wrote

Deno.test("init never shrinks a file another process is writing: a bounded race against a writer", async () => {
  const { race } = await compiled();
  using w = workspace();
  const count = 2000;
  const ms = scaled(4000);
  // the writer fills DIR/f<i> with 8192 bytes as soon as it appears; the module child makes each one empty, then inits it
  const writer = start(race, ["writer", w.dir, String(count), String(ms / 1000 + 10)]);
  const body = `
    const [dir, count, ms] = Deno.args;
    const end = performance.now() + Number(ms);
    let made = 0, refused = 0, i = 0;
    for (; i < Number(count) && performance.now() < end; i++) {
      Deno.writeFileSync(dir + "/f" + i, new Uint8Array(0));
      try {
        Checkpoint.init(dir + "/f" + i).close();
        made++;
      } catch {
        refused++;
      }
    }
    console.log(JSON.stringify({ files: i, made, refused }));`;
  const child = await run(DENO, [
    "run",
    "--quiet",
    ...sandboxFlags(w.dir),
    script(w.root, "writer-race", body),
    w.dir,
    String(count),
    String(ms),
  ]);
  await new Promise((r) => setTimeout(r, 50)); // let the writer finish the last file
  kill(writer.child, "SIGTERM"); // unless it wrote all `count` files and ended
  const wrote = await writer.result;
  assertExit(child, 0);
  assertExit(wrote, 0);
  const written = Number(wrote.stdout);
  assert.ok(written > 0, `the writer wrote nothing: ${wrote.stdout}`);
  let shrunk = 0;
  let stamped = 0;
  for (let i = 0; i < written; i++) {
    const bytes = Deno.readFileSync(`${w.dir}/f${i}`);
    if (bytes.length < 8192) shrunk++;
    else if (!bytes.every((b) => b === 0x78)) stamped++;
  }
  assert.equal(
    shrunk,
    0,
    `${shrunk} of ${written} files the writer filled with 8192 bytes are shorter now ` +
      `(module: ${child.stdout.trim()}; ${stamped} more keep their length but not all the writer's bytes)`,
  );
});

// ---------------------------------------------------------------------------
// 11. A failed init or create() removes what it made

/** Whether this process may make a private mount namespace (root, and unshare there). */
const CAN_UNSHARE = IS_ROOT && commandExists("unshare") &&
  new Deno.Command("unshare", { args: ["-m", "--propagation", "private", "true"], stderr: "null" }).outputSync()
    .success;

Deno.test({
  name: "on a full file system, init, create() and the CLI's init fail in one line each and leave no file behind " +
    "(needs root, for a small tmpfs in a private mount namespace)",
  ignore: !CAN_UNSHARE,
  fn: async () => {
    using w = workspace();
    const body = `${tryInit([`${w.dir}/r`])}
try {
  Checkpoint.create({ dir: ${JSON.stringify(w.dir)} }).close();
  console.log("made");
} catch (e) {
  console.log(e.name + ": " + JSON.stringify(e.message.replace(/ltp_checkpoint_\\S+ /, "ltp_checkpoint_* ")));
}`;
    // a one-page tmpfs over DIR, filled: creating a file works, growing it to a page fails (ENOSPC)
    const shell = `mount -t tmpfs -o size=4k none "$1" && head -c 4096 /dev/zero >"$1/filler" || exit 99
      "$2" run --quiet ${sandboxFlags(w.dir).join(" ")} "$3"
      LTP_IPC_PATH="$1/c" "$2" run --quiet ${sandboxFlags(w.dir).join(" ")} "$4" init 2>&1; echo "CLI exit $?"
      ls -A "$1"`;
    const file = script(w.root, "full", body);
    const r = await run("unshare", ["-m", "--propagation", "private", "sh", "-c", shell, "sh", w.dir, DENO, file, CLI]);
    assertExit(r, 0);
    const grow = (name: string) => `Cannot grow ${w.dir}/${name} to 4096 bytes: no space left on device`;
    assert.deepEqual(r.stdout.trim().split("\n"), [
      `Error: ${JSON.stringify(grow("r"))}`,
      `Error: ${JSON.stringify(grow("ltp_checkpoint_*"))}`,
      `tst_checkpoint: TBROK: ${grow("c")}`,
      "CLI exit 2",
      "filler",
    ]);
  },
});
