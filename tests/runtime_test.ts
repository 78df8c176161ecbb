import assert from "node:assert/strict";
import { MIN_DENO, unsupportedRuntime } from "../src/runtime.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { CLI, ROOT } from "../testing/paths.ts";
import { run } from "../testing/process.ts";

forgetCallerEnv();

Deno.test("the oldest supported Deno is the one CI runs the suite on (tools/oldest)", () => {
  const pinned = JSON.parse(Deno.readTextFileSync(`${ROOT}/tools/oldest/package.json`)).dependencies.deno;
  assert.equal(pinned, MIN_DENO);
});

Deno.test("Deno 1.x is refused in one line naming the release needed; every Deno 2 is accepted", () => {
  assert.match(unsupportedRuntime("1.46.3")!, /^ltp-checkpoint needs Deno 2\.0\.0 or later; this is Deno 1\.46\.3/);
  for (const version of ["2.0.0", "2.3.1", "2.9.6", "3.0.0"]) assert.equal(unsupportedRuntime(version), undefined);
});

Deno.test("a runtime whose version cannot be read is refused, not taken for a Deno 2", () => {
  // the default when globalThis.Deno has no version (another runtime)
  assert.match(unsupportedRuntime("unknown")!, /^ltp-checkpoint needs Deno 2\.0\.0 or later; this is Deno unknown/);
  for (const version of ["", "0.9.0"]) assert.notEqual(unsupportedRuntime(version), undefined, version);
});

/** A Deno 1 binary: tools/deno1's, which CI installs; absent on a developer's machine. */
const DENO1 = `${ROOT}/tools/deno1/node_modules/.bin/deno`;
const HAVE_DENO1 = (() => {
  try {
    return Deno.statSync(DENO1).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "on Deno 1.x, importing the module and running the CLI each print one line, no TypeError, no stack trace" +
    (HAVE_DENO1 ? "" : " (needs tools/deno1: npm ci --prefix tools/deno1)"),
  ignore: !HAVE_DENO1 && !Deno.env.get("CI"),
  async fn() {
    using dir = tempDir();
    const user = `${dir.path}/user.ts`;
    Deno.writeTextFileSync(user, `import { Checkpoint } from "${ROOT}/mod.ts";\nCheckpoint.create();\n`);
    const env = { NO_COLOR: "1", DENO_DIR: `${dir.path}/cache` };
    const flags = ["--quiet", "--unstable-ffi", "--allow-ffi", "--allow-env", "--allow-read", "--allow-write"];
    const imported = await run(DENO1, ["run", ...flags, user], { env });
    assert.notEqual(imported.code, 0);
    assertOneLine(imported.stderr, /needs Deno 2\.0\.0 or later; this is Deno 1\.\d+\.\d+/);
    assert.doesNotMatch(imported.stderr, /TypeError|\bat /);

    const cli = await run(DENO1, ["run", ...flags, CLI, "wait", "10", "0"], { env });
    assertExit(cli, 2);
    assertOneLine(cli.stderr, /^tst_checkpoint: TBROK: ltp-checkpoint needs Deno 2\.0\.0 or later; this is Deno 1\./);
  },
});
