/**
 * Installs `tst_checkpoint` so that it stands alone: it keeps working after
 * the checkout is moved or deleted.
 *
 *   ./deno run -A tools/install.ts [--root DIR] [--allow-read=DIR,...] [--allow-write=DIR,...] [--no-agent]
 *
 * Into ROOT (default: $DENO_INSTALL_ROOT, else ~/.deno) it puts:
 * - ROOT/lib/tst_checkpoint/cli.js: the CLI as one bundled, minified file
 *   (`deno bundle`, Deno 2.4 and later), or else the CLI's source files;
 *   and agent.js, the resident agent (agent/server.ts), the same way;
 * - ROOT/lib/tst_checkpoint/deno: the running Deno, when it lives inside the
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
 * waiting processes). Each step replaces what was there by a rename, so a
 * test that runs the tool meanwhile sees the old one or the new one.
 * @module
 */
import { normalise } from "../ffi/path.ts";

const CHECKOUT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const NAME = "tst_checkpoint";
/** Variables the CLI reads; TST_CHECKPOINT_REINSTALL tells it how it was installed, for its hints. */
const ENV = ["LTP_IPC_PATH", "LTP_IPC_LAYOUT", "LTP_TIMEOUT_MUL", "TMPDIR", "TST_CHECKPOINT_REINSTALL"];
const READ = ["/dev/shm", "/tmp", "/proc"];
const WRITE = ["/dev/shm", "/tmp"];

const USAGE =
  `Usage: ./deno run -A tools/install.ts [--root DIR] [--allow-read=DIR,...] [--allow-write=DIR,...] [--no-agent]
Installs ${NAME} into ROOT/bin (default ROOT: $DENO_INSTALL_ROOT, else ~/.deno), standing alone.`;

class Misuse extends Error {}

/** `path` made absolute against the current folder, with `.`, `..` and repeated slashes resolved. */
function absolute(path: string): string {
  return normalise(path.startsWith("/") ? path : `${Deno.cwd()}/${path}`);
}

/** `text` as one shell word: as it is where that is safe, else single-quoted. */
function quote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

function parseArgs(args: string[]) {
  const out = { root: undefined as string | undefined, read: [] as string[], write: [] as string[], agent: true };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [name, value] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [
      arg,
      undefined,
    ];
    if (name === "-h" || name === "--help") throw new Misuse("");
    if (name === "--no-agent" && value === undefined) out.agent = false;
    else if (name === "--root") {
      out.root = value ?? args[++i];
      if (!out.root) throw new Misuse("--root needs a folder");
    } else if (name === "--allow-read" || name === "--allow-write") {
      if (!value) throw new Misuse(`${name} needs one or more folders: ${name}=DIR,...`);
      (name === "--allow-read" ? out.read : out.write).push(...value.split(",").map(absolute));
    } else throw new Misuse(`Unknown option '${arg}'`);
  }
  return out;
}

/** Places `from` at `to`: a hard link where the file system allows it, else a copy. */
function linkOrCopy(from: string, to: string): void {
  try {
    Deno.linkSync(from, to);
  } catch {
    // another file system, or fs.protected_hardlinks for a file this user cannot write
    Deno.copyFileSync(from, to);
    Deno.chmodSync(to, 0o755);
  }
}

/** Runs the installing Deno; its output, or an error naming the step. */
function deno(args: string[], what: string): string {
  const out = new Deno.Command(Deno.execPath(), { args, stdin: "null" }).outputSync();
  if (!out.success) throw new Error(`${what} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
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
  const graph = JSON.parse(deno(["info", "--json", "--no-config", `${CHECKOUT}/${entry}`], "deno info"));
  const prefix = `file://${CHECKOUT}/`;
  const files = [entry];
  for (const module of graph.modules as { specifier: string; error?: string }[]) {
    if (module.error) throw new Error(`The code of ${entry} is incomplete: ${module.error}`);
    if (!module.specifier.startsWith(prefix)) {
      throw new Error(`${entry} imports ${module.specifier}, outside the checkout`);
    }
    const relative = decodeURIComponent(module.specifier.slice(prefix.length));
    Deno.mkdirSync(`${stage}/${relative}`.replace(/\/[^/]*$/, ""), { recursive: true });
    Deno.copyFileSync(`${CHECKOUT}/${relative}`, `${stage}/${relative}`);
    if (relative !== entry) files.push(relative);
  }
  return files;
}

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
  denoPath: string,
  code: string[],
  agent: string[],
  read: string[],
  write: string[],
  reinstall: string,
): string {
  const flags = [
    "--no-config",
    "--no-prompt",
    // the CLI ends with Deno.exit(), before Deno writes a code cache, so without this flag every call would make
    // one again and throw it away (measured: 5% of a call); with it nothing is made
    "--no-code-cache",
    "--allow-ffi",
    `--allow-env=${ENV.join(",")}`,
    `--allow-read=${[...READ, ...read].join(",")}`,
    `--allow-write=${[...WRITE, ...write].join(",")}`,
  ];
  const gone = quote(
    `${NAME}: TBROK: the Deno it was installed with is gone (${denoPath}): reinstall it: ${reinstall}`,
  );
  const codeGone = [quote(`${NAME}: TBROK: its code is gone (`), `"$f"`, quote(`): reinstall it: ${reinstall}`)];
  const run = `${quote(denoPath)} run ${flags.map(quote).join(" ")}`;
  // the agent runs with the launcher's own Deno and flags
  const client = agent.length === 0 ? "" : `tc_vars=${quote(ENV.join(" "))}
tc_agent() { exec ${run} ${quote(agent[0])} "$@"; }
${Deno.readTextFileSync(`${CHECKOUT}/agent/client.sh`).replace(/^#.*\n/gm, "")}`;
  return `#!/bin/sh
# ${NAME}: LTP's checkpoint tool, installed by tools/install.ts; it needs nothing of the checkout.
# To allow more folders, reinstall: ${reinstall} --allow-read=DIR --allow-write=DIR
${
    agent.length
      ? "# Calls go through a resident agent (agent/client.sh); TST_CHECKPOINT_AGENT=0 turns it off for a call.\n"
      : ""
  }\
[ -x ${quote(denoPath)} ] || ${broken(gone)}
for f in ${[...code, ...agent].map(quote).join(" ")}; do [ -f "$f" ] || ${broken(...codeGone)}; done
export TST_CHECKPOINT_REINSTALL=${quote(reinstall)}
export DENO_NO_UPDATE_CHECK=1
${client}exec ${run} ${quote(code[0])} "$@"
`;
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
  const { root: given, read, write, agent } = parseArgs(args);
  const home = Deno.env.get("HOME");
  const rootText = given ?? (Deno.env.get("DENO_INSTALL_ROOT") || (home ? `${home}/.deno` : undefined));
  if (!rootText) throw new Misuse("No install root: give --root DIR (or set DENO_INSTALL_ROOT or HOME)");
  const root = absolute(rootText);
  for (const dir of [...read, ...write]) {
    if (dir.includes(",")) throw new Misuse(`${dir} holds a comma, which Deno's permission flags cannot take`);
  }
  const lib = `${root}/lib/${NAME}`;
  const bin = `${root}/bin/${NAME}`;
  Deno.mkdirSync(`${root}/bin`, { recursive: true });
  Deno.mkdirSync(`${root}/lib`, { recursive: true });

  const stage = Deno.makeTempDirSync({ dir: `${root}/lib`, prefix: `.${NAME}.new.` });
  const old = stage.replace(/\.new\.([^/]*)$/, ".old.$1");
  try {
    Deno.chmodSync(stage, 0o755);
    const code = placeCode(stage, "cli.ts", "cli.js");
    const agentCode = agent ? placeCode(stage, "agent/server.ts", "agent.js") : [];
    const exec = Deno.realPathSync(Deno.execPath());
    const inCheckout = exec.startsWith(`${Deno.realPathSync(CHECKOUT)}/`);
    if (inCheckout) linkOrCopy(exec, `${stage}/deno`);
    const reinstall = [
      `cd ${quote(CHECKOUT)} && ./deno run -A tools/install.ts --root ${quote(root)}`,
      ...read.map((dir) => `--allow-read=${quote(dir)}`),
      ...write.map((dir) => `--allow-write=${quote(dir)}`),
      ...agent ? [] : ["--no-agent"],
    ].join(" ");
    const files = code.map((name) => `${lib}/${name}`);
    const agentFiles = agentCode.map((name) => `${lib}/${name}`);
    const text = launcher(inCheckout ? `${lib}/deno` : exec, files, agentFiles, read, write, reinstall);

    let hadOld = true;
    try {
      Deno.renameSync(lib, old);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      hadOld = false;
    }
    Deno.renameSync(stage, lib);
    if (hadOld) removeIfThere(old);
    const tmp = `${bin}.new.${Deno.pid}`;
    Deno.writeTextFileSync(tmp, text, { mode: 0o755 });
    Deno.chmodSync(tmp, 0o755);
    Deno.renameSync(tmp, bin);
    // proves the install runs, and fills Deno's code cache for the first real call
    const check = new Deno.Command(bin, { args: ["--version"], stdin: "null" }).outputSync();
    if (!check.success) throw new Error(`${bin} --version failed: ${new TextDecoder().decode(check.stderr).trim()}`);
  } catch (error) {
    removeIfThere(stage);
    throw error;
  }
  return bin;
}

if (import.meta.main) {
  try {
    const bin = install(Deno.args);
    const on = (Deno.env.get("PATH") ?? "").split(":").includes(bin.replace(/\/[^/]*$/, ""));
    console.log(`Installed ${bin}${on ? "" : `; add ${bin.replace(/\/[^/]*$/, "")} to PATH`}`);
  } catch (error) {
    if (error instanceof Misuse && !error.message) {
      console.log(USAGE);
      Deno.exit(0);
    }
    if (error instanceof Misuse) {
      console.error(`ERROR: ${error.message}\n${USAGE}`);
      Deno.exit(1);
    }
    console.error(`install: ${error instanceof Error ? error.message : error}`);
    Deno.exit(2);
  }
}
