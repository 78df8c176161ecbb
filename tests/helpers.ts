/** Shared by the tests: the C peer, child processes, temporary folders, file snapshots. */
import assert from "node:assert/strict";

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const CLI = `${ROOT}/cli.ts`;
export const ACTOR = `${ROOT}/tests/fixtures/actor.ts`;
export const PAGE = 4096;

export type Layout = "seed" | "ltp";
export const LAYOUTS: Layout[] = ["seed", "ltp"];

/**
 * The suite runs in a known environment, whatever the caller exported: a region path, a layout or a temporary
 * folder of the caller's would otherwise reach every region the tests make and every child they start. Tests that
 * are about these variables set them for their own children. LTP_TIMEOUT_MUL stays: it scales every limit.
 */
for (const name of ["LTP_IPC_PATH", "LTP_IPC_LAYOUT", "TMPDIR"]) Deno.env.delete(name);

/** LTP_TIMEOUT_MUL as the tests read it (1 when unset), so that a slow machine passes with a larger one. */
export const TIMEOUT_MUL = Number(Deno.env.get("LTP_TIMEOUT_MUL") || 1);

/** A test's own time limit in ms, scaled by LTP_TIMEOUT_MUL like every checkpoint timeout. */
export function scaled(ms: number): number {
  return Math.ceil(ms * TIMEOUT_MUL);
}

/** A timeout of `ms` as the module's messages print it: multiplied by LTP_TIMEOUT_MUL. */
export function shownMs(ms: number): string {
  return String(Math.round(ms * TIMEOUT_MUL * 1000) / 1000);
}

/** Whether gcc, which builds the C peer, is installed. */
export const HAVE_GCC = (() => {
  try {
    return new Deno.Command("gcc", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

/**
 * `ignore` for a test that runs the C peer: `Deno.test({ name, ignore: NO_PEER, fn })`. Without gcc such a test is
 * skipped, with a warning, on a developer's machine, and fails in CI (CI set), which must run it.
 */
export const NO_PEER = !HAVE_GCC && !Deno.env.get("CI");
if (NO_PEER) console.warn("gcc is not installed: the tests that need the C peer (tests/peer.c) are skipped");

const built = new Map<string, Promise<string>>();

/**
 * A C program of tests/ (`peer.c`, `nosys.c`), compiled once per test file into a private folder (0700) removed
 * when the file's tests end: never a binary that another user could have planted or replaced.
 */
export function compiled(source: string): Promise<string> {
  let path = built.get(source);
  if (path) return path;
  path = (async () => {
    if (!HAVE_GCC) throw new Error(`gcc is not installed: cannot build tests/${source}`);
    const dir = await Deno.makeTempDir({ prefix: "ltp-checkpoint-bin-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const out = `${dir}/${source.replace(/\.c$/, "")}`;
    const gcc = await new Deno.Command("gcc", {
      args: ["-O2", "-Wall", "-Werror", "-o", out, `${ROOT}/tests/${source}`],
    })
      .output();
    if (!gcc.success) throw new Error(`gcc failed: ${new TextDecoder().decode(gcc.stderr)}`);
    return out;
  })();
  built.set(source, path);
  return path;
}

/** The C peer (tests/peer.c). */
export function peer(): Promise<string> {
  return compiled("peer.c");
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  clearEnv?: boolean;
  cwd?: string;
  /** Kills the child when aborted, e.g. `AbortSignal.timeout(scaled(30_000))`. */
  signal?: AbortSignal;
}

function decode(out: Deno.CommandOutput): Result {
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** Runs a command to its end. */
export async function run(cmd: string, args: string[], options: RunOptions = {}): Promise<Result> {
  return decode(await new Deno.Command(cmd, { args, stdin: "null", ...options }).output());
}

/** Starts a command; `result` resolves when it ends. */
export function start(cmd: string, args: string[], options: RunOptions = {}) {
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped", ...options }).spawn();
  return { child, result: child.output().then(decode) };
}

/** Deno's flags for a child that uses the module: FFI, env, and files in /dev/shm and /tmp only. */
export const CHILD_FLAGS = [
  "--allow-ffi",
  "--allow-env",
  "--allow-read=/dev/shm,/tmp",
  "--allow-write=/dev/shm,/tmp",
  "--no-prompt",
  "--quiet",
];

/** The flags of the README's `deno install` command for tst_checkpoint. */
export const INSTALL_FLAGS = [
  "--no-config",
  "--no-prompt",
  "--allow-ffi",
  "--allow-env=LTP_IPC_PATH,LTP_IPC_LAYOUT,LTP_TIMEOUT_MUL",
  "--allow-read=/dev/shm,/tmp",
  "--allow-write=/dev/shm,/tmp",
];

/** The CLI as a subprocess. */
export function cli(args: string[], options: RunOptions = {}): Promise<Result> {
  return run(Deno.execPath(), ["run", ...CHILD_FLAGS, CLI, ...args], options);
}

export function startCli(args: string[], options: RunOptions = {}) {
  return start(Deno.execPath(), ["run", ...CHILD_FLAGS, CLI, ...args], options);
}

/** A Deno child using the module: see fixtures/actor.ts for the arguments. */
export function startActor(args: string[], options: RunOptions = {}) {
  return start(Deno.execPath(), ["run", ...CHILD_FLAGS, ACTOR, ...args], options);
}

/** The C peer as a subprocess. */
export async function startPeer(args: string[], options: RunOptions = {}) {
  return start(await peer(), args, options);
}

/**
 * A copy of the module's sources (mod.ts, cli.ts, ffi/, src/) and of the running Deno (as `deno`) that every user
 * can read, made once per test file and removed when its tests end: for a child run as another user, who may not
 * be able to read the checkout (a clone in a private folder, with the pinned Deno inside it). Returns the copy's
 * root.
 */
export function readableSources(): string {
  if (sources) return sources;
  const dir = Deno.makeTempDirSync({ prefix: "ltp-checkpoint-src-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  for (const name of ["mod.ts", "cli.ts", "deno.json", "ffi", "src"]) {
    new Deno.Command("cp", { args: ["-r", `${ROOT}/${name}`, dir] }).outputSync();
  }
  // a hard link where the file system allows it (the binary is large), else a copy
  const link = new Deno.Command("ln", { args: [Deno.execPath(), `${dir}/deno`], stderr: "null" }).outputSync();
  if (!link.success) new Deno.Command("cp", { args: [Deno.execPath(), `${dir}/deno`] }).outputSync();
  Deno.chmodSync(dir, 0o755);
  new Deno.Command("chmod", { args: ["-R", "a+rX", dir] }).outputSync();
  return sources = dir;
}
let sources: string | undefined;

/**
 * Whether tests/fuse_staller.c, started with piped stdout and stderr, says it serves its FUSE file ("ready");
 * where FUSE cannot be mounted, it calls `release`, and records the reason as an ignored step of `t`.
 */
export async function fuseServing(
  staller: Deno.ChildProcess,
  t: Deno.TestContext,
  release: () => void,
): Promise<boolean> {
  const reader = staller.stdout.getReader();
  const first = await reader.read();
  reader.releaseLock();
  if (new TextDecoder().decode(first.value ?? new Uint8Array()).startsWith("ready")) return true;
  release();
  const out = await staller.output();
  await t.step({
    name: `FUSE cannot be mounted here: ${new TextDecoder().decode(out.stderr).trim()}`,
    ignore: true,
    fn() {},
  });
  return false;
}

/** A temporary folder, removed by `using`. */
export function tempDir(): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({ prefix: "ltp-checkpoint-test-" });
  return { path, [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }) };
}

/** A short digest of bytes (FNV-1a), so that a failed comparison prints a line, not a page. */
function digest(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return `${bytes.length}b:${h.toString(16)}`;
}

/** What a path holds now: type, mode, mtime, link target and a digest of the bytes; for "nothing changed" checks. */
export function snapshot(path: string): string {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return "absent";
  }
  const kind = info.isFile ? "file" : info.isDirectory ? "dir" : info.isSymlink ? "link" : "other";
  const content = info.isFile ? digest(Deno.readFileSync(path)) : info.isSymlink ? Deno.readLinkSync(path) : "";
  return `${path} ${kind} ${info.mode?.toString(8)} ${info.mtime?.getTime()} ${content}`;
}

/** The bytes of a file as a digest: for regions in use, whose mtime the kernel updates on every futex call. */
export function contentOf(path: string): string {
  return digest(Deno.readFileSync(path));
}

/** The names in a folder, sorted. */
export function listing(dir: string): string[] {
  return Array.from(Deno.readDirSync(dir), (e) => e.name).sort();
}

/** Polls `check` until true, for at most `ms` (pass a `scaled()` limit). */
export async function eventually(check: () => boolean, ms = scaled(5000)): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Asserts that a child ended with `code`, showing its output when it did not. */
export function assertExit(result: Result, code: number): void {
  assert.deepEqual(result.code, code, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

/** Runs `source` as a script file with exactly the given Deno flags (`deno eval` would allow everything). */
export async function runScript(source: string, flags: string[], options: RunOptions = {}): Promise<Result> {
  const file = Deno.makeTempFileSync({ prefix: "ltp-checkpoint-script-", suffix: ".ts" });
  try {
    Deno.writeTextFileSync(file, source);
    // Deno 2.9.0 to 2.9.5 refuse a repeated --quiet
    const quiet = flags.includes("--quiet") ? [] : ["--quiet"];
    return await run(Deno.execPath(), ["run", ...quiet, ...flags, file], options);
  } finally {
    Deno.removeSync(file);
  }
}

/** Asserts that stderr is one line matching `pattern`, with no stack trace. */
export function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `not one line: ${stderr}`);
  assert.match(lines[0], pattern);
}
