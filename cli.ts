/**
 * `tst_checkpoint`: LTP's checkpoint tool for shell tests, a drop-in for the
 * C binary, built on this module's public API.
 *
 * Exit codes as LTP's: 0 success; 1 timeout, misuse or an id out of range;
 * 2 a broken set-up. Every failure is one line on stderr (misuse adds the usage).
 * @module
 */
import "./src/cli_gate.ts";
import { Checkpoint, type Layout } from "./mod.ts";
import { formatStatus } from "./src/status.ts";

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
  status    show the region and who waits on each checkpoint (with
            --allow-read=/proc, which processes)

Options:
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

/** Misuse: the message (if any) and the usage, exit 1. */
class Usage extends Error {}
/** A broken set-up: LTP's TBROK, exit 2. */
class Broken extends Error {}

const encoder = new TextEncoder();

/** Writes `text` and a newline; a full disk or a closed pipe throws Broken. */
function print(stream: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  const bytes = encoder.encode(`${text}\n`);
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
    print(Deno.stdout, HELP);
    return 0;
  }
  if (flags.version) {
    // loaded only here: importing JSON costs every other call memory
    const { default: { version } } = await import("./deno.json", { with: { type: "json" } });
    print(Deno.stdout, `tst_checkpoint ${version}`);
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
      const layout = cp.layout === "ltp" ? "" : `\nexport LTP_IPC_LAYOUT=${cp.layout}`;
      try {
        print(Deno.stdout, `export LTP_IPC_PATH=${shellQuote(cp.path)}${layout}`);
      } catch (error) {
        cp.remove(); // nobody can learn its path now
        throw error;
      }
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
  const status = cp.status();
  print(Deno.stdout, json ? JSON.stringify(status) : formatStatus(status));
}

/** One printable line: control characters (a newline in a path) are escaped. */
function oneLine(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Maps an error to LTP's exit code, printing it as one line. */
function report(error: unknown): number {
  if (error instanceof Usage) {
    // on stderr, unlike LTP: `eval "$(tst_checkpoint init x)"` must run nothing
    warn(error.message ? `${error.message}\n${USAGE}` : USAGE);
    return 1;
  }
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (error instanceof Deno.errors.TimedOut || error instanceof RangeError) {
    warn(`tst_checkpoint: ${message}`);
    return 1;
  }
  warn(`tst_checkpoint: TBROK: ${message}`);
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
