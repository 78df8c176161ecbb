/**
 * The `tst_checkpoint` command itself (cli.ts runs it): its arguments, its
 * commands, its exit codes.
 * @module
 */
import { Checkpoint, formatListing, type Layout, listRegions } from "../mod.ts";
import { readEnv } from "./env.ts";
import { escapeText, safeJson } from "./escape.ts";
import { runAgainWith } from "./hint.ts";
import { newRegionPath } from "./region.ts";
import { formatStatus } from "./status.ts";

const USAGE = `Usage: tst_checkpoint init [--cleanup]
   or: tst_checkpoint wait TIMEOUT ID
   or: tst_checkpoint wake TIMEOUT ID NR_WAKE
   or: tst_checkpoint waiters TIMEOUT ID COUNT
   or: tst_checkpoint status [--json] [--all [FOLDER...]]
   or: tst_checkpoint remove
Arguments:
       TIMEOUT - timeout in ms
       ID - checkpoint id
       NR_WAKE - number of processes to wake up
       COUNT - number of waiters to wait for`;

const HELP = `${USAGE}

Commands:
  init      prepare the region named by LTP_IPC_PATH; without it, create a new
            one and print 'export LTP_IPC_PATH=...': eval "$(tst_checkpoint init)"
  wait      wait until another process wakes checkpoint ID
  wake      wake NR_WAKE processes waiting on checkpoint ID, retrying until
            that many were woken (so a wake may come before its wait)
  waiters   wait until at least COUNT processes wait on checkpoint ID
  status    show the region and who waits on each checkpoint (with
            --allow-read=/proc, which processes)
  remove    remove the region named by LTP_IPC_PATH (only a region: a file
            that is not one is left as it is, exit 2)

Options:
  --cleanup          init also prints "trap 'tst_checkpoint remove' EXIT", so
                     that the shell removes the region when it exits (this
                     replaces the shell's EXIT trap)
  --all              status of every region in each FOLDER (default: /dev/shm
                     and the temporary folder), stale ones marked
  --layout ltp|seed  where the futexes start: ltp (LTP mainline, byte 76, the
                     default) or seed (the seed patch, byte 4); also LTP_IPC_LAYOUT
  --json             status as JSON
  -h, --help         this text
  -V, --version      the version

Environment:
  LTP_IPC_PATH     the region file
  LTP_IPC_LAYOUT   ltp (the default) or seed
  LTP_TIMEOUT_MUL  multiplies every timeout (0.099 to 10000)

Exit codes: 0 done; 1 timed out, misuse or id out of range; 2 broken set-up.
A timeout says who waited where at that moment.`;

/** Misuse: the message and the usage, exit 1. */
class Usage extends Error {}
/** A broken set-up: LTP's TBROK, exit 2. */
class Broken extends Error {}

/** Writes `text` and a newline; a full disk or a closed pipe throws Broken. */
function print(stream: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  // made here, not at import: a wait or wake prints nothing, and a process's first TextEncoder costs ~0.3 ms
  const bytes = new TextEncoder().encode(`${text}\n`);
  try {
    for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
  } catch (cause) {
    throw new Broken(`Cannot write the output: ${cause instanceof Error ? cause.message : cause}`);
  }
}

/** The same on stderr, where a failure has nowhere left to be reported. */
function warn(text: string): void {
  try {
    print(Deno.stderr, text);
  } catch {
    // stderr is gone too: the exit code still tells
  }
}

const UINT_MAX = 4294967295;

/** Whether `text[at]` is an ASCII digit (what `\d` matches); no regular expression: the first one costs a call ~0.2 ms. */
function isDigit(text: string, at: number): boolean {
  const c = text.charCodeAt(at);
  return c >= 48 && c <= 57;
}

/** A decimal number up to UINT_MAX and nothing else (no sign, space or junk, unlike strtoul). */
function parseUint(name: string, text: string): number {
  let digits = text.length > 0;
  for (let i = 0; digits && i < text.length; i++) digits = isDigit(text, i);
  const value = digits ? Number(text) : NaN;
  if (!(value <= UINT_MAX)) throw new Usage(`ERROR: Invalid ${name} '${text}'`);
  return value;
}

/** What each command takes, by LTP's names. */
const ARGUMENTS: Record<string, string[]> = {
  init: [],
  wait: ["TIMEOUT", "ID"],
  wake: ["TIMEOUT", "ID", "NR_WAKE"],
  waiters: ["TIMEOUT", "ID", "COUNT"],
  status: [],
  remove: [],
};

/** The options each applies to; the others apply to every command. */
const ONLY_FOR: Record<string, string> = { "--json": "status", "--all": "status", "--cleanup": "init" };

/**
 * Splits options from positionals, checking every option before the command
 * is looked at; `-1` and other dashes before a digit stay positional, so
 * that a negative number is named as an invalid number.
 */
function parseArgs(args: string[]) {
  const positionals: string[] = [];
  const seen: string[] = [];
  const flags = {
    help: false,
    version: false,
    json: false,
    all: false,
    cleanup: false,
    layout: undefined as Layout | undefined,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    } else if (arg === "-h" || arg === "--help") flags.help = true;
    else if (arg === "-V" || arg === "--version") flags.version = true;
    else if (arg === "--json") flags.json = true;
    else if (arg === "--all") flags.all = true;
    else if (arg === "--cleanup") flags.cleanup = true;
    else if (arg === "--layout" || arg.startsWith("--layout=")) {
      const value = arg === "--layout" ? args[++i] : arg.slice("--layout=".length);
      if (value !== "seed" && value !== "ltp") throw new Usage(`ERROR: Invalid --layout '${value ?? ""}'`);
      flags.layout = value;
    } else if (arg.length > 1 && arg[0] === "-" && !isDigit(arg, 1)) throw new Usage(`ERROR: Unknown option '${arg}'`);
    else positionals.push(arg);
    if (arg in ONLY_FOR) seen.push(arg);
  }
  return { positionals, flags, seen };
}

/** "N argument(s)". */
function count(n: number): string {
  return `${n} argument${n === 1 ? "" : "s"}`;
}

/** Checks the command and its arguments; returns the numbers. */
function parseCommand(command: string | undefined, rest: string[], seen: string[], all: boolean): number[] {
  if (command === undefined) throw new Usage("ERROR: No COMMAND given");
  if (!Object.hasOwn(ARGUMENTS, command)) throw new Usage(`ERROR: Invalid COMMAND '${command}'`);
  for (const option of seen) {
    if (ONLY_FOR[option] !== command) throw new Usage(`ERROR: ${option} applies to ${ONLY_FOR[option]} only`);
  }
  const names = ARGUMENTS[command];
  if (rest.length !== names.length && !all) {
    throw new Usage(
      names.length === 0
        ? `ERROR: ${command} takes no arguments (got ${rest.length})`
        : `ERROR: ${command} takes ${names.join(" ")} (got ${count(rest.length)})`,
    );
  }
  return names.map((name, i) => parseUint(name, rest[i]));
}

/** `text` as one shell word, single-quoted. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** Runs the tool; returns the exit code. Throws Usage for misuse. */
async function main(args: string[]): Promise<number> {
  const { positionals, flags, seen } = parseArgs(args);
  if (flags.help) {
    print(Deno.stdout, HELP);
    return 0;
  }
  if (flags.version) {
    // loaded only here: importing JSON costs every other call memory
    const { default: { version } } = await import("../deno.json", { with: { type: "json" } });
    print(Deno.stdout, `tst_checkpoint ${version}`);
    return 0;
  }
  const [command, ...rest] = positionals;
  const [timeout, id, number] = parseCommand(command, rest, seen, flags.all);
  if (timeout === 0) throw new Broken("timeout must be >= 1! (0)");
  const options = { layout: flags.layout };

  switch (command) {
    case "init":
      init(options, flags.cleanup);
      return 0;
    case "status":
      status(options, flags.json, flags.all ? rest : undefined);
      return 0;
    case "remove":
      remove(flags.layout);
      return 0;
  }
  using cp = Checkpoint.open(undefined, options);
  if (command === "wait") cp.waitSync(id, timeout);
  else if (command === "wake") cp.wakeSync(id, number, timeout);
  else cp.waitForWaitersSync(id, number, timeout);
  return 0;
}

/** Prepares the region; prints what `eval` needs: the export line for a new one, the trap with `cleanup`. */
function init(options: { layout?: Layout }, cleanup: boolean): void {
  // a new region is named after the shell that evals this line, not this short-lived process, so that
  // `status --all` sees its maker alive while that shell lives
  using cp = Checkpoint.init(readEnv("LTP_IPC_PATH", true) || newRegionPath(undefined, Deno.ppid), options);
  const lines: string[] = [];
  // init has read LTP_IPC_PATH already, so permission to read it is granted
  if (cp.path !== Deno.env.get("LTP_IPC_PATH")) {
    lines.push(`export LTP_IPC_PATH=${shellQuote(cp.path)}`);
    if (cp.layout !== "ltp") lines.push(`export LTP_IPC_LAYOUT=${cp.layout}`);
  }
  if (cleanup) lines.push("trap 'tst_checkpoint remove' EXIT");
  if (lines.length === 0) return;
  try {
    print(Deno.stdout, lines.join("\n"));
  } catch (error) {
    if (lines[0].startsWith("export")) cp.remove(); // nobody can learn its path now
    throw error;
  }
}

/** Removes the region at LTP_IPC_PATH; what is not a region is refused by open(), untouched. */
function remove(layout?: Layout): void {
  let cp: Checkpoint;
  try {
    // the layout does not matter to a removal: a stale LTP_IPC_LAYOUT must not stop it
    cp = Checkpoint.open(undefined, { layout: layout ?? "ltp" });
  } catch (error) {
    const path = readEnv("LTP_IPC_PATH");
    if (error instanceof Deno.errors.NotFound && path) throw new Broken(`Nothing to remove: ${path} does not exist`);
    throw error;
  }
  cp.remove();
}

/**
 * One region's status, or with `folders` every region there. (The module
 * loads the code of both for every command; measured, all of the module's
 * top-level code, libc aside, is about 3 ms of a call: a dynamic import would buy nothing.)
 */
function status(options: { layout?: Layout }, json: boolean, folders?: string[]): void {
  if (folders) {
    const listing = listRegions(folders.length ? folders : undefined, options);
    if (!json) return print(Deno.stdout, fixHints(formatListing(listing)));
    for (const region of listing.regions) if (region.note) region.note = fixHints(region.note);
    print(Deno.stdout, safeJson(listing.regions));
    // what the array cannot hold (folders skipped, time running out) still reaches the user
    for (const note of listing.notes) warn(`tst_checkpoint: note: ${escapeText(fixHints(note))}`);
    return;
  }
  using cp = Checkpoint.open(undefined, options);
  const state = cp.status();
  if (state.note) state.note = fixHints(state.note);
  print(Deno.stdout, json ? safeJson(state) : formatStatus(state));
}

/**
 * The installed tool's reinstall command (set by the launcher that
 * tools/install.ts writes), or undefined when run with `deno run`.
 */
function reinstallCommand(): string | undefined {
  try {
    return readEnv(REINSTALL_ENV) || undefined;
  } catch {
    return undefined;
  }
}
const REINSTALL_ENV = "TST_CHECKPOINT_REINSTALL";

/** The fix for missing `flags`, as fits how the tool was run: the flags for `deno run`, the reinstall when installed. */
function fixFor(flags: string[]): string {
  const reinstall = reinstallCommand();
  return reinstall === undefined ? runAgainWith(flags) : `reinstall with: ${reinstall} ${flags.join(" ")}`;
}

/**
 * `text` (a message, a note) with each "run again with FLAGS" of the module
 * fitted to how the tool was run: an installed tool's flags are fixed in its
 * launcher, so it names the command that reinstalls it with them.
 */
function fixHints(text: string): string {
  if (reinstallCommand() === undefined) return text;
  return text.replace(/run again with (--allow-\S+(?: --allow-\S+)*)/g, (_, flags: string) => fixFor(flags.split(" ")));
}

/** A missing permission's fix in an error's message, from the flags it carries. */
function hint(message: string, flags: unknown): string {
  if (!Array.isArray(flags) || !flags.every((f) => typeof f === "string")) return message;
  const tail = runAgainWith(flags);
  return message.endsWith(tail) ? message.slice(0, -tail.length) + fixFor(flags) : message;
}

/** Maps an error to LTP's exit code, printing it as one line, escaped. */
function report(error: unknown): number {
  if (error instanceof Usage) {
    // on stderr, unlike LTP: `eval "$(tst_checkpoint init x)"` must run nothing
    warn(`${escapeText(error.message)}\n${USAGE}`);
    return 1;
  }
  const text = error instanceof Error ? hint(error.message, (error as { flags?: unknown }).flags) : String(error);
  const message = escapeText(text);
  if (error instanceof Deno.errors.TimedOut || error instanceof RangeError) {
    warn(`tst_checkpoint: ${message}`);
    return 1;
  }
  warn(`tst_checkpoint: TBROK: ${message}`);
  return 2;
}

/**
 * Runs `tst_checkpoint` with `args`; returns LTP's exit code, every failure
 * reported on stderr in one line.
 */
export async function run(args: string[]): Promise<number> {
  try {
    return await main(args);
  } catch (error) {
    return report(error);
  }
}
