import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run } from "../testing/process.ts";

forgetCallerEnv();

/** The names in /dev/shm. */
function shm(): Set<string> {
  return new Set(listing("/dev/shm"));
}

Deno.test("the JSDoc examples leave nothing behind: not in the temporary folder, not in /dev/shm", async () => {
  using dir = tempDir();
  const tmp = `${dir.path}/tmp`;
  Deno.mkdirSync(tmp);
  const before = shm();
  const r = await run(Deno.execPath(), ["test", "--allow-all", "--doc", "mod.ts", "src/", "cli/", "cli.ts"], {
    cwd: ROOT,
    env: { TMPDIR: tmp, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  });
  assertExit(r, 0);
  assert.match(r.stdout, /\d+ passed \| 0 failed/);
  assert.deepEqual(listing(tmp), [], "the examples left these in TMPDIR");
  // what an example makes is named after its process: this run's, or one of its children's, started after `before`
  const left = [...shm()].filter((name) => !before.has(name) && /^(ltp_checkpoint_|example_)/.test(name));
  assert.deepEqual(left, [], "the examples left these in /dev/shm");
});
