/** Every failure of the CLI is one line with LTP's exit code (1 misuse, 2 broken), on stderr, never a stack trace. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { shellQuote } from "../src/text.ts";
import { assertExit, assertNoStackTrace, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { CLI } from "../testing/paths.ts";
import { CHILD_FLAGS, cli, run, start } from "../testing/process.ts";

forgetCallerEnv();

const DENO = Deno.execPath();

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

Deno.test("init whose export line cannot be printed or goes nowhere (>/dev/full, >&-, >/dev/null) removes the region it made and exits 2", async () => {
  for (
    const [redirect, why] of [[">/dev/full", /\S/], [">&-", /goes nowhere/], [">/dev/null", /goes nowhere/]] as const
  ) {
    const before = new Set(Array.from(Deno.readDirSync("/dev/shm"), (e) => e.name));
    const started = cliRedirected(redirect, ["init"], {});
    const prefix = `ltp_checkpoint_${started.child.pid}_`; // sh execs Deno: the same pid
    const r = await started.result;
    const left = Array.from(Deno.readDirSync("/dev/shm"), (e) => e.name).filter((n) =>
      n.startsWith(prefix) && !before.has(n)
    );
    for (const name of left) Deno.removeSync(`/dev/shm/${name}`);
    assertExit(r, 2);
    assertOneLine(r.stderr, why);
    assertNoStackTrace(r.stderr, `init ${redirect}`);
    assert.deepEqual(left, [], `init ${redirect}: a region nobody can learn the path of was left behind`);
  }
});

Deno.test("init on a terminal says on stderr how it is meant to be run, and still prints its export line", async () => {
  const command = [DENO, "run", ...CHILD_FLAGS, CLI, "init"].map((arg) => shellQuote(arg)).join(" ");
  // `script` gives the tool a pty for stdout and stderr alike
  const tty = await run("script", ["-qec", command, "/dev/null"], { env: {} });
  const path = tty.stdout.match(/^export LTP_IPC_PATH='([^']+)'/m)?.[1];
  if (path !== undefined) Deno.removeSync(path);
  assertExit(tty, 0);
  assert.match(tty.stdout, /note: init prints shell commands for the shell to run: eval "\$\(tst_checkpoint init\)"/);
  assert.ok(path !== undefined, tty.stdout);
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
