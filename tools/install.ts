/**
 * Installs `tst_checkpoint` so that it stands alone: it keeps working after
 * the checkout is moved or deleted.
 *
 *   ./deno run -A tools/install.ts [--root DIR] [--confine] [--allow-read=DIR,...] [--allow-write=DIR,...] [--no-agent]
 *
 * Folders are taken as a shell user means them: `~` and `~/x` are the
 * home folder, a relative one is taken from the folder the command was run
 * in (`deno task install` runs in the checkout; INIT_CWD says where it was
 * run), and a folder given to --allow-* must exist.
 *
 * Into ROOT (default: $DENO_INSTALL_ROOT, else ~/.deno) it puts, in a
 * folder of this install's own, CODE = ROOT/lib/tst_checkpoint/ID (ID: the
 * install's identity, new each time):
 * - CODE/cli.js: the CLI as one bundled, minified file
 *   (`deno bundle`, Deno 2.4 and later), or else the CLI's source files;
 *   and agent.js, the resident agent (agent/server.ts), the same way;
 * - CODE/deno: the running Deno, when it lives inside the
 *   checkout (as the pinned one in tools/ does), as a hard link where the
 *   file system allows, else a copy; a Deno outside the checkout is used
 *   where it is;
 * - ROOT/bin/tst_checkpoint: a launcher that hands each call to the
 *   region's resident agent (agent/client.sh, which starts the agent when
 *   there is none), or runs the CLI in that Deno with the narrow permissions
 *   where no agent can take the call (TST_CHECKPOINT_AGENT=0 in a call's
 *   environment, or an install with --no-agent); it turns its own broken
 *   set-up (that Deno or the code gone) into one line and exit 2, LTP's TBROK.
 *
 * The folders given are added to the launcher's --allow-read/--allow-write
 * (besides /dev/shm, /tmp, and /proc for reading, so that `status` names
 * waiting processes); with --confine they are the only ones (a folder to
 * write is readable too), and the agent, which meets its callers in /tmp,
 * is left out.
 *
 * An install that other users can reach (ROOT/bin open to them, as
 * /usr/local/bin is) must be one they can run: a Deno or a ROOT/lib closed to
 * them is refused (a warning in the installer's own home, where who it is
 * for cannot be told); root installing where only root can reach is told so.
 *
 * The launcher names its CODE, and its rename into place is the one step
 * that switches installs, so a test that runs the tool meanwhile runs the
 * old one or the new one, whole. Then the code folders of earlier installs
 * are removed, all but the one the replaced launcher named: a call that
 * started just before (its shell reads the old launcher as it goes) still
 * finds its code; an agent of that install runs on what it has loaded
 * (and its Deno binary's pages stay while it runs) until it retires.
 * @module
 */
import { normalise } from "../ffi/path.ts";
import { shellQuote } from "../src/text.ts";
import { AGENT_MIN_NOFILE } from "../agent/limits.ts";

const CHECKOUT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const NAME = "tst_checkpoint";
/**
 * Variables the CLI reads; the launcher sets the last three for its hints: how to reinstall, the checkout when it is
 * gone, and the folders it may write.
 */
const ENV = [
  "LTP_IPC_PATH",
  "LTP_IPC_LAYOUT",
  "LTP_TIMEOUT_MUL",
  "KCONFIG_PATH",
  "TMPDIR",
  "TST_CHECKPOINT_REINSTALL",
  "TST_CHECKPOINT_GONE",
  "TST_CHECKPOINT_WRITE",
];
/** The regions' folders, /proc (who waits; the kernel's config and release) and where else LTP finds a kernel config. */
const READ = [
  "/dev/shm",
  "/tmp",
  "/proc",
  "/boot",
  "/lib/modules",
  "/lib/kernel",
];
const WRITE = ["/dev/shm", "/tmp"];

const USAGE =
  `Usage: ./deno run -A tools/install.ts [--root DIR] [--confine] [--allow-read=DIR,...] [--allow-write=DIR,...] [--no-agent]
Installs ${NAME} into ROOT/bin (default ROOT: $DENO_INSTALL_ROOT, else ~/.deno), standing alone.
For every user: --root /usr/local (as root). --confine: allowed only the folders given (no /dev/shm, /tmp, /proc).`;

class Misuse extends Error {}
/** A refusal that is not about the command's form: said in one line, without the usage. */
class Refused extends Error {}

/** The folder the command was run in: `deno task` runs in the checkout, and says in INIT_CWD where it was started. */
function runFolder(): string {
  const cwd = Deno.cwd();
  const init = Deno.env.get("INIT_CWD");
  return init?.startsWith("/") && cwd === Deno.realPathSync(CHECKOUT) ? init : cwd;
}

/**
 * `path` as a shell user means it (`~` and `~/x` in the home folder, a relative one from the folder the command was
 * run in), with `.`, `..` and repeated slashes resolved; `what` names it in a refusal.
 */
function absolute(path: string, what: string): string {
  if (path === "") throw new Refused(`${what}: an empty folder name`);
  if (path === "~" || path.startsWith("~/")) {
    const home = Deno.env.get("HOME");
    if (!home?.startsWith("/")) {
      throw new Refused(
        `${what}: HOME is not set to expand ~: give the folder in full`,
      );
    }
    path = home + path.slice(1);
  } else if (path.startsWith("~")) {
    throw new Refused(
      `${what}: ~user is not expanded here: give the folder in full`,
    );
  }
  return normalise(path.startsWith("/") ? path : `${runFolder()}/${path}`);
}

/** A folder given to `flag`, checked: absolute, there, a folder; with its real path when a symlink leads to it. */
function allowedFolder(text: string, flag: string): string[] {
  const what = `${flag}=${text}`;
  const dir = absolute(text, what);
  if (dir.includes(",")) {
    throw new Refused(
      `${what}: ${dir} holds a comma, which Deno's permission flags cannot take`,
    );
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Refused(`${what}: ${dir} does not exist: create it first`);
    }
    throw new Refused(
      `${what}: cannot look at ${dir}: ${error instanceof Error ? error.message : error}`,
    );
  }
  if (!info.isDirectory) throw new Refused(`${what}: ${dir} is not a folder`);
  // the module checks a region's real path as well as the path as written
  const real = Deno.realPathSync(dir);
  return real === dir ? [dir] : [dir, real];
}

function parseArgs(args: string[]) {
  const out = {
    root: undefined as string | undefined,
    read: [] as string[],
    write: [] as string[],
    agent: true,
    confine: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [name, value] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [
      arg,
      undefined,
    ];
    if (name === "-h" || name === "--help") throw new Misuse("");
    if (name === "--no-agent" && value === undefined) out.agent = false;
    else if (name === "--confine" && value === undefined) out.confine = true;
    else if (name === "--root") {
      out.root = value ?? args[++i];
      if (!out.root) throw new Misuse("--root needs a folder");
    } else if (name === "--allow-read" || name === "--allow-write") {
      if (!value) {
        throw new Misuse(`${name} needs one or more folders: ${name}=DIR,...`);
      }
      const dirs = value.split(",").flatMap((dir) => allowedFolder(dir, name));
      (name === "--allow-read" ? out.read : out.write).push(...dirs);
    } else throw new Misuse(`Unknown option '${arg}'`);
  }
  if (out.confine && out.read.length + out.write.length === 0) {
    throw new Misuse(
      "--confine needs the folders to allow: --allow-read=DIR,... and/or --allow-write=DIR,...",
    );
  }
  out.read = [...new Set(out.read)];
  out.write = [...new Set(out.write)];
  return out;
}

/** Places `from` at `to`: a hard link where the file system allows it, else a copy. */
function linkOrCopy(from: string, to: string): void {
  try {
    Deno.linkSync(from, to);
    // a link shares the checkout's mode: one that not every user may run (a umask of 077) is copied instead
    if (((Deno.statSync(to).mode ?? 0) & 0o005) === 0o005) return;
    Deno.removeSync(to);
  } catch {
    // another file system, or fs.protected_hardlinks for a file this user cannot write
  }
  Deno.copyFileSync(from, to);
  Deno.chmodSync(to, 0o755);
}

/** Runs the installing Deno; its output, or an error naming the step. */
function deno(args: string[], what: string): string {
  const out = new Deno.Command(Deno.execPath(), { args, stdin: "null" })
    .outputSync();
  if (!out.success) {
    throw new Error(
      `${what} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** Whether the running Deno has `deno bundle` (2.4 and later). */
function canBundle(): boolean {
  const [major, minor] = Deno.version.deno.split(".").map(Number);
  return major > 2 || (major === 2 && minor >= 4);
}

/**
 * The code of `entry` (a file of the checkout) in `stage`, as `bundleName`
 * where Deno can bundle, else as its source files; returns their names
 * there, the one to run first.
 */
function placeCode(stage: string, entry: string, bundleName: string): string[] {
  if (canBundle()) {
    // minified: half the bytes for Deno to read and compile at every call (measured: a call 3% faster). Deno keeps
    // no code cache for a script that ends with Deno.exit(); ending without it measured slower still.
    const args = [
      "bundle",
      "--quiet",
      "--no-config",
      "--minify",
      "-o",
      `${stage}/${bundleName}`,
      `${CHECKOUT}/${entry}`,
    ];
    deno(args, "deno bundle");
    return [bundleName];
  }
  const graph = JSON.parse(
    deno(
      ["info", "--json", "--no-config", `${CHECKOUT}/${entry}`],
      "deno info",
    ),
  );
  const prefix = `file://${CHECKOUT}/`;
  const files = [entry];
  for (
    const module of graph.modules as { specifier: string; error?: string }[]
  ) {
    if (module.error) {
      throw new Error(
        `The code of ${entry} is incomplete: ${module.error}`,
      );
    }
    if (!module.specifier.startsWith(prefix)) {
      throw new Error(
        `${entry} imports ${module.specifier}, outside the checkout`,
      );
    }
    const relative = decodeURIComponent(module.specifier.slice(prefix.length));
    Deno.mkdirSync(`${stage}/${relative}`.replace(/\/[^/]*$/, ""), {
      recursive: true,
    });
    Deno.copyFileSync(`${CHECKOUT}/${relative}`, `${stage}/${relative}`);
    if (relative !== entry) files.push(relative);
  }
  return files;
}

/** How to install again: `here` from the checkout, `again` from a new one where `checkout` is gone. */
interface Reinstall {
  checkout: string;
  here: string;
  again: string;
}

/** How to install again from a new checkout, `again` being its command. */
function againText(again: string): string {
  return again.startsWith("git clone ")
    ? `install again with: ${again}`
    : `install again from a new checkout of ltp-checkpoint with: ${again}`;
}

/** The folders from the top down to `path`, and `path`: each one a user passes on the way to it. */
function chain(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`);
}

/**
 * The smallest limits the installed tool runs under, in `ulimit`'s units. Below the first three it dies inside Deno
 * (a panic, a V8 fatal error, a stack overflow), which LTP reads as a failed test. Measured with runs of the CLI
 * (the smallest each that it ran under, with a margin): open files 20 (Deno 2.0.0 and 2.9.6, a new DENO_DIR), stack
 * 448 KiB (2.9.6), address space 34 GiB on 2.9.6 and 66 GiB on 2.0.0 (V8 reserves its heaps' address space at start).
 * A file-size limit is met otherwise: under one, Deno is given a DENO_DIR it cannot make, so that it keeps its caches
 * in memory rather than die of SIGXFSZ writing their files; a region's page (8 blocks) is all the tool writes.
 */
function limits(): {
  flag: string;
  what: string;
  unit: number;
  least: number;
  needs: string;
}[] {
  const [major, minor] = Deno.version.deno.split(".").map(Number);
  const addressSpace = major > 2 || (major === 2 && minor >= 9) ? 36 : 68;
  const start = "Deno needs to start";
  return [
    { flag: "n", what: "open-files", unit: 1, least: 32, needs: start },
    { flag: "s", what: "stack", unit: 1024, least: 512, needs: start },
    {
      flag: "v",
      what: "address-space",
      unit: 1024,
      least: addressSpace * 1024 * 1024,
      needs: start,
    },
    {
      flag: "f",
      what: "file-size",
      unit: 512,
      least: 8,
      needs: "a region's page needs",
    },
  ];
}

/**
 * Shell functions: tc_limits reads the process's limits (soft, in bytes or a count; `unlimited`) into tc_ln, tc_ls,
 * tc_lv and tc_lf, from /proc/self/limits (no process started) or else `ulimit`; tc_low is true, with its TBROK
 * line in tc_why, when one is below what the tool needs (and sets DENO_DIR under a file-size limit, see limits()).
 */
const CHECKS = limits()
  .map((l) => `tc_need ${l.flag} "$tc_l${l.flag}" ${l.unit} ${l.least} ${l.what} ${shellQuote(l.needs)}`)
  .join(" ||\n    ");
const LIMIT_CHECK = `tc_limits() {
  tc_ln= tc_ls= tc_lv= tc_lf=
  { while read -r tc_l1 tc_l2 tc_l3 tc_l4 tc_l5; do
    case "$tc_l1 $tc_l2 $tc_l3" in
    'Max open files') tc_ln=$tc_l4 ;;
    'Max stack size') tc_ls=$tc_l4 ;;
    'Max address space') tc_lv=$tc_l4 && break ;; # the last of the four: a read costs a syscall a byte
    'Max file size') tc_lf=$tc_l4 ;;
    esac
  done </proc/self/limits; } 2>/dev/null
  [ -n "$tc_ln" ] && return
  # no /proc, or too few descriptors for the shell to redirect (it saves them above 9): a command substitution needs none
  tc_ln=$(ulimit -n) tc_ls=$(ulimit -s) tc_lv=$(ulimit -v) tc_lf=$(ulimit -f)
  case $tc_ls in '' | *[!0-9]*) ;; *) tc_ls=$((tc_ls * 1024)) ;; esac
  case $tc_lv in '' | *[!0-9]*) ;; *) tc_lv=$((tc_lv * 1024)) ;; esac
  case $tc_lf in '' | *[!0-9]*) ;; *) tc_lf=$((tc_lf * 512)) ;; esac
}
tc_need() {
  case $2 in '' | *[!0-9]*) return 1 ;; esac
  [ $(($2 / $3)) -lt $4 ] || return 1
  tc_why="${NAME}: TBROK: the $5 limit (ulimit -$1 $(($2 / $3))) is below what $6 ($4): raise it"
}
tc_low() {
  tc_limits
  case $tc_lf in unlimited) ;; *) export DENO_DIR=/dev/null/deno ;; esac
  ${CHECKS}
}
`;

/** `text` as a shell command's stderr line, then exit 2: LTP's TBROK. */
function broken(...parts: string[]): string {
  return `{ printf '${"%s".repeat(parts.length)}\\n' ${parts.join(" ")} >&2; exit 2; }`;
}

/**
 * The launcher: with `agent` (the agent's files, its entry first), the
 * agent's client (agent/client.sh) before the cold path, which it takes
 * when the call cannot go through an agent.
 */
function launcher(
  id: string,
  denoPath: string,
  code: string[],
  agent: string[],
  read: string[],
  write: string[],
  reinstall: Reinstall,
): string {
  const flags = [
    "--no-config",
    "--no-prompt",
    // the CLI ends with Deno.exit(), before Deno writes a code cache, so without this flag every call would make
    // one again and throw it away (measured: 5% of a call); with it nothing is made
    "--no-code-cache",
    "--allow-ffi",
    `--allow-env=${ENV.join(",")}`,
    ...read.length ? [`--allow-read=${read.join(",")}`] : [],
    ...write.length ? [`--allow-write=${write.join(",")}`] : [],
  ];
  const gone = shellQuote(
    `${NAME}: TBROK: the Deno it was installed with is gone (${denoPath}): `,
  );
  const closed = [
    shellQuote(
      `${NAME}: TBROK: the Deno it was installed with (${denoPath}) cannot be run by uid `,
    ),
    `"$(id -u)"`,
    shellQuote(" ("),
    `"$tc_at"`,
    shellQuote(
      " is closed to it): install it with a Deno every user can run, e.g. the checkout's ./deno (copied in): ",
    ),
  ];
  const codeGone = [
    shellQuote(`${NAME}: TBROK: its code is gone (`),
    `"$f"`,
    shellQuote("): "),
  ];
  const run = `${shellQuote(denoPath)} run ${flags.map((word) => shellQuote(word)).join(" ")}`;
  // the agent runs with the launcher's own Deno and flags
  const client = agent.length === 0 ? "" : `tc_vars=${shellQuote(ENV.join(" "))}
tc_id=${id}
tc_nofile=${AGENT_MIN_NOFILE}
tc_agent() { exec ${run} ${shellQuote(agent[0])} "$@"; }
${Deno.readTextFileSync(`${CHECKOUT}/agent/client.sh`).replace(/^#.*\n/gm, "")}`;
  return `#!/bin/sh
# ${NAME}: LTP's checkpoint tool, installed by tools/install.ts; it needs nothing of the checkout.
# To allow more folders, reinstall: ${reinstall.here} --allow-read=DIR --allow-write=DIR
${
    agent.length
      ? "# Calls go through a resident agent (agent/client.sh); TST_CHECKPOINT_AGENT=0 turns it off for a call.\n"
      : ""
  }\
# 0 when each path is there and this user may pass it, 1 when one is not there, 2 when one ($tc_at) is closed to it
tc_reach() { for tc_at do [ -e "$tc_at" ] || return 1; [ -x "$tc_at" ] || return 2; done; }
# the hints name the checkout while it is there (a folder closed to this user may hide it: said as there)
tc_reach ${
    chain(`${reinstall.checkout}/tools`).map((word) => shellQuote(word)).join(
      " ",
    )
  }
if [ $? = 1 ]; then
  export TST_CHECKPOINT_REINSTALL=${shellQuote(reinstall.again)} TST_CHECKPOINT_GONE=${shellQuote(reinstall.checkout)}
  tc_fix=${
    shellQuote(
      `its checkout ${reinstall.checkout} is gone: ${againText(reinstall.again)}`,
    )
  }
else
  export TST_CHECKPOINT_REINSTALL=${shellQuote(reinstall.here)}
  unset TST_CHECKPOINT_GONE
  tc_fix=${shellQuote(`reinstall it: ${reinstall.here}`)}
fi
export TST_CHECKPOINT_WRITE=${shellQuote(write.join(","))}
tc_reach ${chain(denoPath).map((word) => shellQuote(word)).join(" ")}
case $? in
1) ${broken(gone, `"$tc_fix"`)} ;;
2) ${broken(...closed, `"$tc_fix"`)} ;;
esac
for f in ${[...code, ...agent].map((word) => shellQuote(word)).join(" ")}; do [ -f "$f" ] || ${
    broken(...codeGone, `"$tc_fix"`)
  }; done
export DENO_NO_UPDATE_CHECK=1
${LIMIT_CHECK}${client}tc_low && { printf '%s\\n' "$tc_why" >&2; exit 2; }
exec ${run} ${shellQuote(code[0])} "$@"
`;
}

/** The first folder on the way to `path` (or `path` itself) that other users may not pass, and its mode and owner. */
function closedToOthers(
  path: string,
): { at: string; mode: number; uid: number | null } | undefined {
  for (const at of chain(Deno.realPathSync(path))) {
    const info = Deno.statSync(at);
    if (!((info.mode ?? 0) & 0o001)) {
      return { at, mode: (info.mode ?? 0) & 0o7777, uid: info.uid };
    }
  }
  return undefined;
}

function closedText(
  closed: { at: string; mode: number; uid: number | null },
): string {
  return `${closed.at} is mode ${closed.mode.toString(8).padStart(4, "0")}, of uid ${closed.uid}`;
}

/** `path`, or the nearest folder above it that exists. */
function existing(path: string): string {
  for (let at = path; at !== "/"; at = at.replace(/\/[^/]*$/, "") || "/") {
    try {
      Deno.statSync(at);
      return at;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return "/";
}

/** Makes the folders missing on the way to `dir`, each open to all (0755) whatever the umask. */
function makeOpen(dir: string): void {
  for (const at of chain(dir)) {
    try {
      Deno.mkdirSync(at);
      Deno.chmodSync(at, 0o755);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }
}

/** The folders in `dir` 0755 and the files 0644. */
function openUp(dir: string): void {
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) openUp(path);
    Deno.chmodSync(path, entry.isDirectory ? 0o755 : 0o644);
  }
  Deno.chmodSync(dir, 0o755);
}

/** The URL the checkout was cloned from, if git knows one. */
function originOf(checkout: string): string | undefined {
  try {
    const out = new Deno.Command("git", {
      args: ["-C", checkout, "remote", "get-url", "origin"],
      stdin: "null",
      stderr: "null",
    }).outputSync();
    const url = new TextDecoder().decode(out.stdout).trim();
    return out.success && url && !url.includes("\n") ? url : undefined;
  } catch {
    return undefined; // no git
  }
}

/**
 * A new identity at each install, so that no call of its launcher goes to an agent an earlier install started: the
 * time first, so that a newer install's is the greater (an agent retires for a newer one). It names the install's
 * code folder too.
 */
function newId(): string {
  return `${String(Date.now()).padStart(15, "0")}-${crypto.randomUUID().slice(0, 8)}`;
}
const ID = /^[0-9]{15}-[0-9a-f]{8}$/;

/** The code folder (an install's ID) the launcher at `bin` names, "" for an older launcher's lib itself, or undefined. */
function namedBy(bin: string, lib: string): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(bin);
  } catch {
    return undefined;
  }
  const at = text.indexOf(`${lib}/`);
  if (at < 0) return undefined;
  const next = text.slice(at + lib.length + 1).match(/^[^/'\s]*/)![0];
  return ID.test(next) ? next : "";
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Installs; returns the launcher's path. */
function install(args: string[]): string {
  const { root: given, read, write, agent: withAgent, confine } = parseArgs(
    args,
  );
  const home = Deno.env.get("HOME");
  const rootText = given ??
    (Deno.env.get("DENO_INSTALL_ROOT") || (home ? `${home}/.deno` : undefined));
  if (!rootText) {
    throw new Misuse(
      "No install root: give --root DIR (or set DENO_INSTALL_ROOT or HOME)",
    );
  }
  const root = absolute(rootText, `--root ${rootText}`);
  if (root.includes("\n")) {
    throw new Refused(`--root ${rootText}: a folder name with a newline`);
  }
  // the agent meets its callers in /tmp, which a confined install does not allow
  const agent = withAgent && !confine;
  const lib = `${root}/lib/${NAME}`;
  const bin = `${root}/bin/${NAME}`;
  // the options as resolved, for the commands that install again
  const options = [
    `--root ${shellQuote(root)}`,
    ...confine ? ["--confine"] : [],
    ...read.map((dir) => `--allow-read=${shellQuote(dir)}`),
    ...write.map((dir) => `--allow-write=${shellQuote(dir)}`),
    ...withAgent ? [] : ["--no-agent"],
  ].join(" ");
  // an install other users can reach is meant for them: what it runs must be theirs to run too (the folders it makes
  // are open to all, so the folders there already decide). In the installer's own home that cannot be told: a warning.
  const forOthers = closedToOthers(existing(`${root}/bin`)) === undefined;
  const inHome = home !== undefined && home.startsWith("/") && home !== "/" &&
    (root === normalise(home) || root.startsWith(`${normalise(home)}/`));
  const refuse = (text: string) => {
    if (!inHome) throw new Refused(text);
    console.error(`install: warning: ${text}`);
  };
  const libClosed = closedToOthers(existing(`${root}/lib`));
  if (forOthers && libClosed) {
    refuse(
      `other users can reach ${root}/bin but not ${root}/lib (${closedText(libClosed)}): ` +
        `open it to them (chmod o+x ${shellQuote(libClosed.at)}) or give --root a folder they can read`,
    );
  }
  const exec = Deno.realPathSync(Deno.execPath());
  const inCheckout = exec.startsWith(`${Deno.realPathSync(CHECKOUT)}/`);
  const denoClosed = inCheckout ? undefined : closedToOthers(exec);
  if (forOthers && denoClosed) {
    refuse(
      `other users can reach ${root}/bin but cannot run this Deno (${closedText(denoClosed)}): ` +
        `install with a Deno every user can run, e.g. the checkout's ./deno (copied into ${lib}): ` +
        `cd ${shellQuote(CHECKOUT)} && ./deno run -A tools/install.ts ${options}`,
    );
  }
  if (!forOthers && Deno.uid() === 0) {
    const closed = closedToOthers(existing(`${root}/bin`))!;
    console.error(
      `install: note: only root can run it (${closedText(closed)}); for every user: --root /usr/local`,
    );
  }

  makeOpen(`${root}/bin`);
  makeOpen(lib);
  const id = newId();
  const code = `${lib}/${id}`;
  const stage = `${lib}/.${id}.new`;
  Deno.mkdirSync(stage);
  try {
    Deno.chmodSync(stage, 0o755);
    const cliCode = placeCode(stage, "cli.ts", "cli.js");
    const agentCode = agent ? placeCode(stage, "agent/server.ts", "agent.js") : [];
    // whatever the umask: readable by all, as the code of an installed tool is
    openUp(stage);
    if (inCheckout) linkOrCopy(exec, `${stage}/deno`);
    const origin = originOf(CHECKOUT);
    const reinstall: Reinstall = {
      checkout: CHECKOUT,
      here: `cd ${shellQuote(CHECKOUT)} && ./deno run -A tools/install.ts ${options}`,
      again:
        `${origin ? `git clone ${shellQuote(origin)} ${shellQuote(CHECKOUT)} && cd ${shellQuote(CHECKOUT)} && ` : ""}` +
        `./deno run -A tools/install.ts ${options}`,
    };
    const files = cliCode.map((name) => `${code}/${name}`);
    const agentFiles = agentCode.map((name) => `${code}/${name}`);
    const allowRead = confine ? [...new Set([...read, ...write])] : [...new Set([...READ, ...read])];
    const allowWrite = confine ? write : [...new Set([...WRITE, ...write])];
    const text = launcher(
      id,
      inCheckout ? `${code}/deno` : exec,
      files,
      agentFiles,
      allowRead,
      allowWrite,
      reinstall,
    );

    Deno.renameSync(stage, code);
    const previous = namedBy(bin, lib);
    const tmp = `${bin}.new.${Deno.pid}`;
    Deno.writeTextFileSync(tmp, text, { mode: 0o755 });
    Deno.chmodSync(tmp, 0o755);
    // the one step from the old install to this one
    Deno.renameSync(tmp, bin);
    for (const entry of Deno.readDirSync(lib)) {
      // the replaced launcher's code stays (an older layout's files are lib's own, not in an ID folder)
      if (entry.name === id || entry.name === previous || previous === "" && !ID.test(entry.name)) continue;
      if (entry.name.startsWith(".")) continue; // another install's, under way
      removeIfThere(`${lib}/${entry.name}`);
    }
    // proves the install runs, and fills Deno's code cache for the first real call
    const check = new Deno.Command(bin, { args: ["--version"], stdin: "null" })
      .outputSync();
    if (!check.success) {
      throw new Error(
        `${bin} --version failed: ${new TextDecoder().decode(check.stderr).trim()}`,
      );
    }
  } catch (error) {
    removeIfThere(stage);
    if (namedBy(bin, lib) !== id) removeIfThere(code);
    throw error;
  }
  return bin;
}

if (import.meta.main) {
  try {
    const bin = install(Deno.args);
    const on = (Deno.env.get("PATH") ?? "").split(":").includes(
      bin.replace(/\/[^/]*$/, ""),
    );
    console.log(
      `Installed ${bin}${on ? "" : `; add ${bin.replace(/\/[^/]*$/, "")} to PATH`}`,
    );
  } catch (error) {
    if (error instanceof Misuse && !error.message) {
      console.log(USAGE);
      Deno.exit(0);
    }
    if (error instanceof Misuse || error instanceof Refused) {
      console.error(
        `install: ${error.message}${error instanceof Misuse ? " (--help: usage)" : ""}`,
      );
      Deno.exit(1);
    }
    console.error(`install: ${error instanceof Error ? error.message : error}`);
    Deno.exit(2);
  }
}
