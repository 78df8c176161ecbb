/**
 * `tst_checkpoint`: LTP's checkpoint tool for shell tests, a drop-in for the
 * C binary, built on this module's public API.
 *
 * Exit codes as LTP's: 0 success; 1 timeout, misuse or an id out of range;
 * 2 a broken set-up. Every failure is one line on stderr.
 * @module
 */
import { Checkpoint, type Layout } from "./mod.ts";

const USAGE = `Usage: tst_checkpoint init
   or: tst_checkpoint wait TIMEOUT ID
   or: tst_checkpoint wake TIMEOUT ID NR_WAKE
   or: tst_checkpoint waiters TIMEOUT ID COUNT
   or: tst_checkpoint status [--json]
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
  status    show the region and how many wait on each checkpoint

Options:
  --layout seed|ltp  where the futexes start: seed (byte 4, the default) or
                     ltp (LTP mainline, byte 76); also LTP_IPC_LAYOUT
  --json             status as JSON
  -h, --help         this text
  -V, --version      the version

Environment:
  LTP_IPC_PATH     the region file
  LTP_IPC_LAYOUT   seed or ltp
  LTP_TIMEOUT_MUL  multiplies every timeout (0.099 to 10000)

Exit codes: 0 done; 1 timed out, misuse or id out of range; 2 broken set-up.`;

/** Misuse: the message (if any) and the usage, exit 1. */
class Usage extends Error {}
/** A broken set-up: LTP's TBROK, exit 2. */
class Broken extends Error {}

const UINT_MAX = 4294967295;

/** A decimal number up to UINT_MAX and nothing else (no sign, space or junk, unlike strtoul). */
function parseUint(name: string, text: string): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value <= UINT_MAX)) throw new Usage(`ERROR: Invalid ${name} '${text}'`);
  return value;
}

/** Splits options from positionals; `-1` and other non-options stay positional. */
function parseArgs(args: string[]) {
  const positionals: string[] = [];
  const flags = { help: false, version: false, json: false, layout: undefined as Layout | undefined };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    } else if (arg === "-h" || arg === "--help") flags.help = true;
    else if (arg === "-V" || arg === "--version") flags.version = true;
    else if (arg === "--json") flags.json = true;
    else if (arg === "--layout" || arg.startsWith("--layout=")) {
      const value = arg === "--layout" ? args[++i] : arg.slice("--layout=".length);
      if (value !== "seed" && value !== "ltp") throw new Usage(`ERROR: Invalid --layout '${value ?? ""}'`);
      flags.layout = value;
    } else if (arg.startsWith("--")) throw new Usage(`ERROR: Unknown option '${arg}'`);
    else positionals.push(arg);
  }
  return { positionals, flags };
}

const ARITY: Record<string, number> = { init: 0, wait: 2, wake: 3, waiters: 3, status: 0 };

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** Runs the tool; returns the exit code. Throws Usage for misuse. */
async function main(args: string[]): Promise<number> {
  const { positionals, flags } = parseArgs(args);
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  if (flags.version) {
    // loaded only here: importing JSON costs every other call memory
    const { default: { version } } = await import("./deno.json", { with: { type: "json" } });
    console.log(`tst_checkpoint ${version}`);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (command === undefined) throw new Usage("");
  if (!(command in ARITY)) throw new Usage(`ERROR: Invalid COMMAND '${command}'`);
  if (rest.length !== ARITY[command]) throw new Usage("");
  const names = ["TIMEOUT", "ID", command === "wake" ? "NR_WAKE" : "COUNT"];
  const [timeout, id, count] = rest.map((text, i) => parseUint(names[i], text));
  if (timeout === 0) throw new Broken("timeout must be >= 1! (0)");
  const options = { layout: flags.layout };

  if (command === "init") {
    using cp = Checkpoint.init(undefined, options);
    // init has read LTP_IPC_PATH already, so permission to read it is granted
    if (cp.path !== Deno.env.get("LTP_IPC_PATH")) {
      console.log(`export LTP_IPC_PATH=${shellQuote(cp.path)}`);
      if (cp.layout !== "ltp") console.log(`export LTP_IPC_LAYOUT=${cp.layout}`);
    }
    return 0;
  }
  using cp = Checkpoint.open(undefined, options);
  switch (command) {
    case "wait":
      cp.waitSync(id, timeout);
      return 0;
    case "wake":
      cp.wakeSync(id, count, timeout);
      return 0;
    case "waiters":
      cp.waitForWaitersSync(id, count, timeout);
      return 0;
    default:
      printStatus(cp, flags.json);
      return 0;
  }
}

function printStatus(cp: Checkpoint, json: boolean): void {
  const { uid, mode } = cp.stat();
  const waiting: Record<number, number> = {};
  for (let id = 0; id < cp.capacity; id++) {
    const n = cp.waiters(id);
    if (n > 0) waiting[id] = n;
  }
  if (json) {
    console.log(
      JSON.stringify({ path: cp.path, layout: cp.layout, capacity: cp.capacity, uid, mode, waiters: waiting }),
    );
    return;
  }
  const lines = [
    `path:     ${cp.path}`,
    `layout:   ${cp.layout}`,
    `capacity: ${cp.capacity} (ids 0 to ${cp.capacity - 1})`,
    `owner:    uid ${uid}, mode ${mode.toString(8).padStart(4, "0")}`,
  ];
  const ids = Object.keys(waiting);
  lines.push(ids.length === 0 ? "waiters:  none" : "waiters:");
  for (const id of ids) lines.push(`  checkpoint ${id}: ${waiting[Number(id)]} waiting`);
  console.log(lines.join("\n"));
}

/** One printable line: control characters (a newline in a path) are escaped. */
function oneLine(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Maps an error to LTP's exit code, printing it as one line. */
function report(error: unknown): number {
  if (error instanceof Usage) {
    if (error.message) console.error(error.message);
    console.log(USAGE);
    return 1;
  }
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (error instanceof Deno.errors.TimedOut || error instanceof RangeError) {
    console.error(`tst_checkpoint: ${message}`);
    return 1;
  }
  console.error(`tst_checkpoint: TBROK: ${message}`);
  return 2;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    code = report(error);
  }
  Deno.exit(code);
}
