import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { start } from "../testing/process.ts";

forgetCallerEnv();

Deno.test("the JSDoc examples leave nothing behind: not in the temporary folder, not in /dev/shm", async () => {
  using dir = tempDir();
  const tmp = `${dir.path}/tmp`;
  Deno.mkdirSync(tmp);
  const started = start(Deno.execPath(), ["test", "--allow-all", "--doc", "mod.ts", "src/", "cli/", "cli.ts"], {
    cwd: ROOT,
    env: { TMPDIR: tmp, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  });
  const r = await started.result;
  assertExit(r, 0);
  assert.match(r.stdout, /\d+ passed \| 0 failed/);
  assert.deepEqual(listing(tmp), [], "the examples left these in TMPDIR");
  // an example's region is named after the process that made it: this run's (other runs may share /dev/shm)
  const pid = started.child.pid;
  const left = listing("/dev/shm").filter((name) =>
    name.startsWith(`ltp_checkpoint_${pid}_`) || name === `example_${pid}`
  );
  assert.deepEqual(left, [], "the examples left these in /dev/shm");
});
