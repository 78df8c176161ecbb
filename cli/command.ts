/**
 * The `tst_checkpoint` command (cli.ts runs it): its commands and exit
 * codes, built on the module's public API. Also run by the resident agent
 * for its clients, one {@linkcode CallContext} per call.
 * @module
 */
import { forkedFrom } from "../ffi/proc.ts";
import { realPathOf } from "../ffi/syscalls.ts";
import { Checkpoint, formatListing, type Layout, listRegions } from "../mod.ts";
import { readEnv, withEnv } from "../src/env.ts";
import { kconfigPathNote } from "../src/kconfig.ts";
import { escapeControls, safeJson } from "../src/escape.ts";
import { newRegionPath } from "../src/region.ts";
import { formatStatus } from "../src/status.ts";
import { shellQuote } from "../src/text.ts";
import { HELP, parse, type Parsed, USAGE, Usage } from "./args.ts";
import { Hints } from "./hints.ts";

/** One caller's call, run inside another process (the resident agent) rather than a process of its own. */
export interface CallContext {
  /** The caller's environment, read in place of this process's (LTP_IPC_PATH, LTP_IPC_LAYOUT, LTP_TIMEOUT_MUL, ...). */
  env: Record<string, string>;
  /** The caller's parent: the shell that evals `init`, after which a new region is named. */
  ppid: number;
  /** Receives what the command prints on stdout, newline included. */
  stdout(text: string): void;
  /** The same for stderr. */
  stderr(text: string): void;
  /** Aborting it ends a pending wait, wake or waiters at once (the caller has gone). */
  signal?: AbortSignal;
}

/** A broken set-up: LTP's TBROK, exit 2. */
class Broken extends Error {}

/** Where a call's output goes. */
interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Writes `text` to a stream of this process; a full disk or a closed pipe throws Broken. */
function writeAll(stream: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  // made here, not at import: a wait or wake prints nothing
  const bytes = new TextEncoder().encode(text);
  try {
    for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
  } catch (cause) {
    throw new Broken(`Cannot write the output: ${cause instanceof Error ? cause.message : cause}`);
  }
}

const PROCESS_OUTPUT: Output = {
  stdout: (text) => writeAll(Deno.stdout, text),
  stderr: (text) => writeAll(Deno.stderr, text),
};

/** Writes a line on stderr, where a failure has nowhere left to be reported. */
function warn(out: Output, text: string): void {
  try {
    out.stderr(`${text}\n`);
  } catch {
    // stderr is gone too: the exit code still tells
  }
}

/** What one call needs besides its arguments. */
interface Call {
  out: Output;
  hints: Hints;
  ppid: number;
  /** Waits and wakes block the thread (a process of its own) or run on the event loop (the agent). */
  blocking: boolean;
  /** Whether stdout is a terminal: `init` then says how it is meant to be used. */
  terminal: boolean;
  /** Whether the call is another process's, run here. */
  context: boolean;
  signal?: AbortSignal;
}

/**
 * Starts the command. Everything it reads of the environment it reads
 * before this returns; what is left (a wait, a wake) is the promise.
 */
function start({ flags, command, rest, numbers, notes }: Parsed, call: Call): Promise<void> | void {
  const { out } = call;
  for (const note of notes) warn(out, `tst_checkpoint: note: ${escapeControls(note)}`);
  if (flags.help) return out.stdout(`${HELP}\n`);
  if (flags.version) {
    // loaded only here: importing JSON costs every other call memory
    return import("../deno.json", { with: { type: "json" } }).then(({ default: { version } }) =>
      out.stdout(`tst_checkpoint ${version}\n`)
    );
  }
  const [timeout, id, number] = numbers;
  if (timeout === 0) throw new Broken("timeout must be >= 1! (0)");
  const options = { layout: flags.layout };
  switch (command) {
    case "init":
      return init(options, flags.cleanup, call);
    case "status":
      return status(options, flags.json, flags.all ? rest : undefined, call);
    case "remove":
      return remove(flags.layout, flags.ifExists);
  }
  const cp = Checkpoint.open(undefined, options);
  const note = kconfigPathNote();
  if (note !== undefined) warn(out, `tst_checkpoint: note: ${escapeControls(note)}`);
  if (!call.blocking) {
    const signal = { signal: call.signal };
    const pending = command === "wait"
      ? cp.wait(id, timeout, signal)
      : command === "wake"
      ? cp.wake(id, number, timeout, signal)
      : cp.waitForWaiters(id, number, timeout, signal);
    return pending.finally(() => cp.close());
  }
  try {
    if (command === "wait") cp.waitSync(id, timeout);
    else if (command === "wake") cp.wakeSync(id, number, timeout);
    else cp.waitForWaitersSync(id, number, timeout);
  } finally {
    cp.close();
  }
}

/** Prepares the region; prints what `eval` needs: the export line for a new one, the trap with `cleanup`. */
function init(options: { layout?: Layout }, cleanup: boolean, call: Call): void {
  const { out, ppid, terminal } = call;
  // a new region is named after the shell that evals this line, not this short-lived process, so that
  // `status --all` sees its maker alive while that shell lives: the script itself where init ran in a subshell of
  // it (`$(tst_checkpoint init || ...)`, a pipe, `( ... )`), which ends long before the script does
  const given = readEnv("LTP_IPC_PATH", true);
  const maker = Deno.permissions.querySync({ name: "read", path: "/proc" }).state === "granted"
    ? forkedFrom(ppid)
    : ppid;
  using cp = Checkpoint.init(given || newRegionPath(undefined, maker), options);
  const lines: string[] = [];
  if (cp.path !== given) {
    lines.push(`export LTP_IPC_PATH=${shellQuote(cp.path, true)}`);
    if (cp.layout !== "ltp") lines.push(`export LTP_IPC_LAYOUT=${cp.layout}`);
  }
  if (cleanup) lines.push(...CLEANUP_TRAPS);
  if (lines.length === 0) return;
  // Deno opens /dev/null in place of a closed stdout: either way the new region's path would be lost
  if (lines[0].startsWith("export") && !call.context && realPathOf(1) === "/dev/null") {
    cp.remove();
    throw new Broken(
      "init's output goes nowhere (stdout is closed or /dev/null), so nobody could learn the new region's path: run it as eval \"$(tst_checkpoint init)\"",
    );
  }
  if (terminal) {
    warn(out, `tst_checkpoint: note: init prints shell commands for the shell to run: eval "$(tst_checkpoint init)"`);
  }
  try {
    out.stdout(`${lines.join("\n")}\n`);
  } catch (error) {
    if (lines[0].startsWith("export")) cp.remove(); // nobody can learn its path now
    throw error;
  }
}

/**
 * The traps of `init --cleanup`: the region is removed when the shell exits,
 * and a shell ended by a signal exits with that signal's status, as it
 * would without them; a region already removed is no error.
 */
const CLEANUP_TRAPS = [
  "trap 'tst_checkpoint remove --if-exists' EXIT",
  "trap 'exit 129' HUP",
  "trap 'exit 130' INT",
  "trap 'exit 143' TERM",
];

/** Removes the region at LTP_IPC_PATH; what is not a region is refused by open(), untouched. */
function remove(layout: Layout | undefined, ifExists: boolean): void {
  let cp: Checkpoint;
  try {
    // the layout does not matter to a removal: a stale LTP_IPC_LAYOUT must not stop it
    cp = Checkpoint.open(undefined, { layout: layout ?? "ltp" });
  } catch (error) {
    const path = readEnv("LTP_IPC_PATH");
    if (error instanceof Deno.errors.NotFound && path) {
      if (ifExists) return;
      throw new Broken(`Nothing to remove: ${path} does not exist`);
    }
    throw error;
  }
  cp.remove();
}

/** One region's status, or with `folders` every region there. */
function status(options: { layout?: Layout }, json: boolean, folders: string[] | undefined, { out, hints }: Call) {
  if (folders) {
    const listing = listRegions(folders.length ? folders : undefined, options);
    if (!json) return out.stdout(`${hints.fit(formatListing(listing))}\n`);
    for (const region of listing.regions) if (region.note) region.note = hints.fit(region.note);
    out.stdout(`${safeJson(listing.regions)}\n`);
    // what the array cannot hold (folders skipped, time running out) still reaches the user
    for (const note of listing.notes) warn(out, `tst_checkpoint: note: ${escapeControls(hints.fit(note))}`);
    return;
  }
  using cp = Checkpoint.open(undefined, options);
  const state = cp.status();
  if (state.note) state.note = hints.fit(state.note);
  out.stdout(`${json ? safeJson(state) : formatStatus(state)}\n`);
}

/** Maps an error to LTP's exit code, printing it as one line, escaped. */
function report(error: unknown, { out, hints }: Pick<Call, "out" | "hints">): number {
  if (error instanceof Usage) {
    // on stderr, unlike LTP: `eval "$(tst_checkpoint init x)"` must run nothing
    warn(out, `${escapeControls(error.message)}\n${USAGE}`);
    return 1;
  }
  const message = escapeControls(error instanceof Error ? hints.message(error) : String(error));
  if (error instanceof Deno.errors.TimedOut || error instanceof RangeError) {
    warn(out, `tst_checkpoint: ${message}`);
    return 1;
  }
  warn(out, `tst_checkpoint: TBROK: ${message}`);
  return 2;
}

/**
 * Runs `tst_checkpoint` with `args`; resolves to LTP's exit code, every
 * failure reported on stderr in one line. Without `context` the call is
 * this process's own (its environment, stdout and stderr; waits block);
 * with it, the call is the context's caller's, and waits run on the event
 * loop.
 */
export function run(args: string[], context?: CallContext): Promise<number> {
  const env = context
    ? (use: () => Promise<void> | void) => withEnv(context.env, use)
    : (use: () => Promise<void> | void) => use();
  const out = context ?? PROCESS_OUTPUT;
  let hints = new Hints(undefined);
  try {
    const pending = env(() => {
      hints = Hints.ofProcess(readEnv);
      return start(parse(args), {
        out,
        hints,
        ppid: context?.ppid ?? Deno.ppid,
        blocking: context === undefined,
        terminal: context === undefined && Deno.stdout.isTerminal(),
        context: context !== undefined,
        signal: context?.signal,
      });
    });
    return Promise.resolve(pending).then(() => 0, (error) => report(error, { out, hints }));
  } catch (error) {
    return Promise.resolve(report(error, { out, hints }));
  }
}
