/**
 * The CLI as shell scripts use it: `init --cleanup` under `set -e`, with an
 * explicit `remove`, and ended by a signal, in dash and bash; numbers as
 * LTP's tool reads them.
 */
import assert from "node:assert/strict";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { exists, tempDir } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { CHILD_FLAGS, cli, commandExists, run } from "../testing/process.ts";
import { Checkpoint } from "../mod.ts";
import { forgetCallerEnv } from "../testing/env.ts";

forgetCallerEnv();

const SHELLS = ["dash", "bash"].filter(commandExists);

/** A folder holding a `tst_checkpoint` that runs this checkout's CLI, for scripts to find on PATH. */
function toolOnPath(dir: string): string {
  const bin = `${dir}/bin`;
  Deno.mkdirSync(bin);
  const quoted = [Deno.execPath(), "run", ...CHILD_FLAGS, CLI].map((w) => `'${w}'`).join(" ");
  Deno.writeTextFileSync(
    `${bin}/tst_checkpoint`,
    `#!/bin/sh\nexec ${quoted} "$@"\n`,
    { mode: 0o755 },
  );
  return `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`;
}

/** Runs `script` in `shell` with the tool on PATH; the region's path is written to `dir`/path. */
async function script(shell: string, dir: string, body: string) {
  const source = `eval "$(tst_checkpoint init --cleanup)"\nprintf %s "$LTP_IPC_PATH" > '${dir}/path'\n${body}`;
  const result = await run(shell, ["-c", source], {
    env: { PATH: toolOnPath(dir), LTP_IPC_PATH: "" },
    signal: AbortSignal.timeout(60_000),
  });
  const region = Deno.readTextFileSync(`${dir}/path`);
  assert.match(region, /ltp_checkpoint_/);
  return { ...result, gone: !exists(region) };
}

for (const shell of SHELLS) {
  Deno.test(`${shell}: init --cleanup removes the region at exit, silently after an explicit remove, under set -e`, async () => {
    using dir = tempDir();
    const plain = await script(
      shell,
      dir.path,
      "set -e\ntst_checkpoint wake 1000 0 0\nexit 0",
    );
    assertExit(plain, 0);
    assert.ok(plain.gone, "the region is removed when the shell exits");

    using again = tempDir();
    const removed = await script(
      shell,
      again.path,
      "set -e\ntst_checkpoint remove\nexit 0",
    );
    assertExit(removed, 0);
    assert.equal(
      removed.stderr,
      "",
      "the trap says nothing about a region already gone",
    );
    assert.ok(removed.gone);
  });

  Deno.test(`${shell}: a script with init --cleanup ended by TERM, INT or HUP exits with the signal's status and removes its region`, async () => {
    for (
      const [signal, status] of [["TERM", 143], ["INT", 130], [
        "HUP",
        129,
      ]] as const
    ) {
      using dir = tempDir();
      const ended = await script(
        shell,
        dir.path,
        `kill -${signal} $$\nsleep 30\nexit 0`,
      );
      assert.equal(ended.code, status, `${signal}: ${ended.stderr}`);
      assert.ok(ended.gone, `${signal}: the region is removed`);
    }
  });
}

Deno.test("remove --if-exists: a region already gone is no error; anything else still is", async () => {
  using dir = tempDir();
  const path = `${dir.path}/r`;
  assertExit(
    await cli(["remove", "--if-exists"], { env: { LTP_IPC_PATH: path } }),
    0,
  );
  Deno.writeTextFileSync(
    path,
    "not a region, and long enough to be looked at".repeat(100),
  );
  const refused = await cli(["remove", "--if-exists"], {
    env: { LTP_IPC_PATH: path },
  });
  assertExit(refused, 2);
  assert.ok(exists(path), "a file that is not a region is left as it is");
});

Deno.test("numbers are read as LTP's tool reads them (strtoul): blanks, a sign and trailing text are taken", async () => {
  using dir = tempDir();
  using cp = Checkpoint.init(`${dir.path}/r`);
  for (const timeout of [" 100", "+100", "\t100"]) {
    const r = await cli(["wake", timeout, "0", "0"], { env: cp.env });
    assertExit(r, 0);
    assert.equal(r.stderr, "", JSON.stringify(timeout));
  }
  const trailing = await cli(["wake", "100abc", "0", "0"], { env: cp.env });
  assertExit(trailing, 0);
  assertOneLine(
    trailing.stderr,
    /^tst_checkpoint: note: TIMEOUT '100abc' read as 100, ignoring 'abc'/,
  );
  const zero = await cli(["wait", "-0", "0"], { env: cp.env });
  assertExit(zero, 2);
  assertOneLine(zero.stderr, /TBROK: timeout must be >= 1! \(0\)$/);
  for (const bad of ["", " ", "-1", "abc", "+", "4294967296"]) {
    const r = await cli(["wait", bad, "0"], { env: cp.env });
    assertExit(r, 1);
    assert.match(
      r.stderr,
      new RegExp(`^ERROR: Invalid TIMEOUT '${bad.replace("+", "\\+")}'\n`),
      JSON.stringify(bad),
    );
  }
  cp.remove();
});

Deno.test("a KCONFIG_PATH that names nothing is said on every wait or wake, as LTP warns of it, and changes no exit code", async () => {
  using dir = tempDir();
  using cp = Checkpoint.init(`${dir.path}/r`);
  const env = { ...cp.env, KCONFIG_PATH: `${dir.path}/no-such-config` };
  for (let call = 0; call < 2; call++) {
    const r = await cli(["wake", "100", "0", "0"], { env });
    assertExit(r, 0);
    assertOneLine(r.stderr, /^tst_checkpoint: note: KCONFIG_PATH=.*no-such-config names nothing/);
  }
  const quiet = await cli(["status"], { env });
  assertExit(quiet, 0);
  assert.equal(quiet.stderr, "", "status reads no kernel config");
  cp.remove();
});
