/** The `tst_checkpoint` grammar: its usage text and the parsing of its arguments. Pure: no I/O. */
import type { Layout } from "../mod.ts";
import { plural } from "../src/text.ts";
import { UINT32_MAX } from "../src/validate.ts";

export const USAGE = `Usage: tst_checkpoint init [--cleanup]
   or: tst_checkpoint wait TIMEOUT ID
   or: tst_checkpoint wake TIMEOUT ID NR_WAKE
   or: tst_checkpoint waiters TIMEOUT ID COUNT
   or: tst_checkpoint status [--json] [--all [FOLDER...]]
   or: tst_checkpoint remove [--if-exists]
Arguments:
       TIMEOUT - timeout in ms
       ID - checkpoint id
       NR_WAKE - number of processes to wake up
       COUNT - number of waiters to wait for`;

export const HELP = `${USAGE}

Commands:
  init      prepare the region named by LTP_IPC_PATH; without it, create a new
            one and print 'export LTP_IPC_PATH=...': eval "$(tst_checkpoint init)"
  wait      wait until another process wakes checkpoint ID
  wake      wake NR_WAKE processes waiting on checkpoint ID, retrying until
            that many were woken (so a wake may come before its wait)
  waiters   wait until at least COUNT processes wait on checkpoint ID
  status    show the region, who waits on each checkpoint and, where /proc
            may be read, which processes
  remove    remove the region named by LTP_IPC_PATH (only a region: a file
            that is not one is left as it is, exit 2)

Options:
  --cleanup          init also prints traps that remove the region when the
                     shell exits, or is ended by HUP, INT or TERM (with status
                     129, 130 or 143); they replace the shell's own traps
  --if-exists        remove: a region already gone is no error
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
export class Usage extends Error {}

/** The commands, and what each takes, by LTP's names. */
const ARGUMENTS: Record<string, string[]> = {
  init: [],
  wait: ["TIMEOUT", "ID"],
  wake: ["TIMEOUT", "ID", "NR_WAKE"],
  waiters: ["TIMEOUT", "ID", "COUNT"],
  status: [],
  remove: [],
};

/** The options each applies to; the others apply to every command. */
const ONLY_FOR: Record<string, string> = {
  "--json": "status",
  "--all": "status",
  "--cleanup": "init",
  "--if-exists": "remove",
};

/** Whether `text[at]` is an ASCII digit. */
function isDigit(text: string, at: number): boolean {
  const c = text.charCodeAt(at);
  return c >= 48 && c <= 57;
}

/** C's isspace() in the C locale. */
function isSpace(text: string, at: number): boolean {
  const c = text.charCodeAt(at);
  return c === 32 || (c >= 9 && c <= 13);
}

/**
 * A number as LTP's tool reads it, with `strtoul(text, &end, 10)`: blanks,
 * then a sign, then decimal digits; what follows is ignored. Refused, as
 * LTP refuses it: nothing parsed, or a value beyond UINT32_MAX (so a negative
 * number other than -0). `ignored` is the text after the number, if any.
 */
export function parseUint(
  name: string,
  text: string,
): { value: number; ignored?: string } {
  let i = 0;
  while (i < text.length && isSpace(text, i)) i++;
  const negative = text[i] === "-";
  if (negative || text[i] === "+") i++;
  const from = i;
  while (i < text.length && isDigit(text, i)) i++;
  const value = i > from ? Number(text.slice(from, i)) : NaN;
  if (!(value <= UINT32_MAX) || (negative && value !== 0)) {
    throw new Usage(`ERROR: Invalid ${name} '${text}'`);
  }
  return i < text.length ? { value, ignored: text.slice(i) } : { value };
}

/** The options given. */
export interface Flags {
  help: boolean;
  version: boolean;
  json: boolean;
  all: boolean;
  cleanup: boolean;
  ifExists: boolean;
  layout?: Layout;
}

/** A command line, checked. */
export interface Parsed {
  flags: Flags;
  /** The command; undefined with --help or --version alone. */
  command?: string;
  /** Its other words: the folders of `status --all`. */
  rest: string[];
  /** TIMEOUT, ID and NR_WAKE or COUNT, as numbers. */
  numbers: number[];
  /** Notes on numbers read as LTP's tool reads them, ignoring what follows their digits. */
  notes: string[];
}

/**
 * Splits options from positionals, checking every option before the command
 * is looked at; `-1` and other dashes before a digit stay positional, so
 * that a negative number is named as an invalid number.
 */
function split(args: string[]) {
  const positionals: string[] = [];
  const seen: string[] = [];
  const flags: Flags = {
    help: false,
    version: false,
    json: false,
    all: false,
    cleanup: false,
    ifExists: false,
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
    else if (arg === "--if-exists") flags.ifExists = true;
    else if (arg === "--layout" || arg.startsWith("--layout=")) {
      const value = arg === "--layout" ? args[++i] : arg.slice("--layout=".length);
      if (value !== "seed" && value !== "ltp") {
        throw new Usage(`ERROR: Invalid --layout '${value ?? ""}'`);
      }
      flags.layout = value;
    } else if (arg.length > 1 && arg[0] === "-" && !isDigit(arg, 1)) {
      throw new Usage(`ERROR: Unknown option '${arg}'`);
    } else positionals.push(arg);
    if (arg in ONLY_FOR) seen.push(arg);
  }
  return { positionals, flags, seen };
}

/** Parses a command line; throws Usage for misuse. --help and --version win over everything after them is checked. */
export function parse(args: string[]): Parsed {
  const { positionals, flags, seen } = split(args);
  if (flags.help || flags.version) {
    return { flags, rest: [], numbers: [], notes: [] };
  }
  const [command, ...rest] = positionals;
  if (command === undefined) throw new Usage("ERROR: No COMMAND given");
  if (!Object.hasOwn(ARGUMENTS, command)) {
    throw new Usage(`ERROR: Invalid COMMAND '${command}'`);
  }
  for (const option of seen) {
    if (ONLY_FOR[option] !== command) {
      throw new Usage(`ERROR: ${option} applies to ${ONLY_FOR[option]} only`);
    }
  }
  const names = ARGUMENTS[command];
  if (rest.length !== names.length && !flags.all) {
    throw new Usage(
      names.length === 0
        ? `ERROR: ${command} takes no arguments (got ${rest.length})`
        : `ERROR: ${command} takes ${names.join(" ")} (got ${plural(rest.length, "argument", "arguments")})`,
    );
  }
  const notes: string[] = [];
  const numbers = names.map((name, i) => {
    const { value, ignored } = parseUint(name, rest[i]);
    if (ignored !== undefined) {
      notes.push(
        `${name} '${rest[i]}' read as ${value}, ignoring '${ignored}' (as LTP's tool does)`,
      );
    }
    return value;
  });
  return { flags, command, rest, numbers, notes };
}
