/** Child processes for tests and benchmarks: commands, the CLI, Deno children, users, bounds. */
import { childEnv } from "./env.ts";
import { ACTOR, CLI } from "./paths.ts";

/** What a child printed and how it ended. */
export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for run() and start(). */
export interface RunOptions {
  /** Added to this process's environment without the caller's LTP_IPC_* and TMPDIR (testing/env.ts). */
  env?: Record<string, string>;
  /** `env` is the child's whole environment. */
  clearEnv?: boolean;
  cwd?: string;
  /** Kills the child when aborted, e.g. `AbortSignal.timeout(scaled(30_000))`. */
  signal?: AbortSignal;
}

/** A started child and its result. */
export interface Started {
  child: Deno.ChildProcess;
  result: Promise<Result>;
}

function decode(out: Deno.CommandOutput): Result {
  const text = new TextDecoder();
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr),
  };
}

/** Deno.Command's options for `options`: the environment built for this child alone. */
function commandOptions(
  args: string[],
  options: RunOptions,
): Deno.CommandOptions {
  const env = options.clearEnv ? options.env : childEnv(options.env);
  return { args, stdin: "null", ...options, env, clearEnv: true };
}

/** Runs a command to its end. */
export async function run(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<Result> {
  return decode(
    await new Deno.Command(cmd, commandOptions(args, options)).output(),
  );
}

/** Starts a command; `result` resolves when it ends. */
export function start(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Started {
  const child = new Deno.Command(cmd, {
    ...commandOptions(args, options),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { child, result: child.output().then(decode) };
}

/** Deno's flags for a child that uses the module: FFI, env, and files in /dev/shm and /tmp only. */
export const CHILD_FLAGS: string[] = [
  "--allow-ffi",
  "--allow-env",
  "--allow-read=/dev/shm,/tmp",
  "--allow-write=/dev/shm,/tmp",
  "--no-prompt",
  "--quiet",
];

/** The flags of the README's `deno install` command for tst_checkpoint. */
export const INSTALL_FLAGS: string[] = [
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

/** The CLI, started. */
export function startCli(args: string[], options: RunOptions = {}): Started {
  return start(Deno.execPath(), ["run", ...CHILD_FLAGS, CLI, ...args], options);
}

/** A Deno child using the module: see tests/fixtures/actor.ts for the arguments. */
export function startActor(args: string[], options: RunOptions = {}): Started {
  return start(
    Deno.execPath(),
    ["run", ...CHILD_FLAGS, ACTOR, ...args],
    options,
  );
}

/** Runs `source` as a script file with exactly the given Deno flags (`deno eval` would allow everything). */
export async function runScript(
  source: string,
  flags: string[],
  options: RunOptions = {},
): Promise<Result> {
  const file = Deno.makeTempFileSync({
    dir: "/tmp",
    prefix: "ltp-checkpoint-script-",
    suffix: ".ts",
  });
  try {
    Deno.writeTextFileSync(file, source);
    // Deno 2.9.0 to 2.9.5 refuse a repeated --quiet
    const quiet = flags.includes("--quiet") ? [] : ["--quiet"];
    return await run(
      Deno.execPath(),
      ["run", ...quiet, ...flags, file],
      options,
    );
  } finally {
    Deno.removeSync(file);
  }
}

/** Sends `signal` to a child that may have ended already. */
export function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* it has ended */ }
}

/** Waits for a child for at most `ms`; then SIGTERM, and SIGKILL 2 s later. `timedOut` says whether it had to. */
export async function bounded(
  started: Started,
  ms: number,
): Promise<Result & { timedOut: boolean }> {
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

/** Whether `name` is a command on PATH. */
export function commandExists(name: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", 'command -v "$1" >/dev/null', "sh", name],
  }).outputSync().success;
}

/** The unprivileged user the tests run attackers and owners as. */
export const NOBODY = 65534;

/** `cmd args` as user nobody: util-linux's setpriv where it exists, else runuser. */
export function asNobody(cmd: string, args: string[]): [string, string[]] {
  return commandExists("setpriv")
    ? ["setpriv", [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      cmd,
      ...args,
    ]]
    : ["runuser", ["-u", "nobody", "--", cmd, ...args]];
}

/** Whether the process `pid` runs (a zombie does not). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}
