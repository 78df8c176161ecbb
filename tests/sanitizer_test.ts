/**
 * A user's own `deno test`, run for real by the Deno running this suite, with its sanitizers on as Deno 2.0 to 2.7
 * have them by default (set explicitly, so that the test means the same on every release) and the narrow flags a
 * user gives: --allow-ffi and one folder to read and write.
 */
import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { start, startActor } from "../testing/process.ts";
import { eventually, scaled } from "../testing/timing.ts";

forgetCallerEnv();

const SANITIZED = "sanitizeOps: true, sanitizeResources: true";

/** Runs `source` as DIR/user_test.ts under `deno test` with only --allow-ffi and DIR; killed if it hangs. */
function userTest(dir: string, source: string) {
  const file = `${dir}/user_test.ts`;
  Deno.writeTextFileSync(
    file,
    `import { Checkpoint } from "${ROOT}/mod.ts";\nconst dir = ${JSON.stringify(dir)};\n${source}`,
  );
  const flags = ["--no-check", "--allow-ffi", `--allow-read=${dir}`, `--allow-write=${dir}`];
  const test = start(Deno.execPath(), ["test", ...flags, file], { env: { NO_COLOR: "1" }, cwd: dir });
  const hang = setTimeout(() => test.child.kill("SIGKILL"), scaled(60000));
  return test.result.then((r) => {
    clearTimeout(hang);
    assert.notEqual(r.code, 137, `deno test hung and was killed:\n${r.stdout}${r.stderr}`);
    return { ...r, output: r.stdout + r.stderr };
  });
}

/** The region the user's test made in `dir`, once it is there. */
async function regionIn(dir: string): Promise<string> {
  const isRegion = (name: string) => name.startsWith("ltp_checkpoint_");
  await eventually(() => listing(dir).some(isRegion), scaled(30000));
  return `${dir}/${listing(dir).find(isRegion)}`;
}

Deno.test("a user's test that creates, waits, wakes, aborts, times out and closes passes deno test's sanitizers", async () => {
  using dir = tempDir();
  const t = scaled(20000);
  const run = userTest(
    dir.path,
    `Deno.test({ name: "meets another process", ${SANITIZED}, async fn() {
       using cp = Checkpoint.create({ dir, layout: "ltp" });
       await cp.wait(0, ${t}); // woken by another process
       await cp.wake(1, 1, ${t}); // wakes it back
     } });
     Deno.test({ name: "an aborted wait, a timed-out wait, a wait woken in-process", ${SANITIZED}, async fn() {
       using cp = Checkpoint.create({ dir, layout: "ltp" });
       const controller = new AbortController();
       const aborted = cp.wait(2, ${t}, { signal: controller.signal }).catch((e) => e.name);
       await cp.waitForWaiters(2, 1, ${t});
       controller.abort();
       if (await aborted !== "AbortError") throw new Error("the abort did not reject the wait");
       if (await cp.wait(3, 20).catch((e) => e.name) !== "TimedOut") throw new Error("the wait did not time out");
       const woken = cp.wait(4, ${t});
       cp.wakeSync(4, 1, ${t});
       await woken;
     } });`,
  );
  const env = { LTP_IPC_PATH: await regionIn(dir.path), LTP_IPC_LAYOUT: "ltp" };
  const waker = await startActor(["wake", "0", "1", "20000"], { env }).result;
  assertExit(waker, 0);
  assertExit(await startActor(["wait", "1", "20000"], { env }).result, 0);
  const r = await run;
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /ok \| 2 passed \| 0 failed/);
  assert.deepEqual(listing(dir.path), ["user_test.ts"], "the regions were left behind");
});

Deno.test("a wait pending at the end of a user's test: the op sanitizer names it, and deno test ends at once", async () => {
  using dir = tempDir();
  const r = await userTest(
    dir.path,
    `Deno.test({ name: "forgets its wait", ${SANITIZED}, fn() {
       Checkpoint.init(dir + "/region").wait(0, 600000).catch(() => {});
     } });
     Deno.test({ name: "comes after", ${SANITIZED}, fn() {} });`,
  );
  assert.notEqual(r.code, 0, r.output);
  assert.match(r.output, /forgets its wait .* FAILED/);
  assert.match(
    r.output,
    /An async operation to do a non blocking ffi call was started in this test, but never completed/,
  );
  assert.doesNotMatch(r.output, /timer/i, "a wait shows as its kernel call alone");
  assert.match(r.output, /comes after .* ok/);
});

Deno.test("a wait pending when its region is closed at the end of a user's test fails that test run", async () => {
  using dir = tempDir();
  const r = await userTest(
    dir.path,
    `Deno.test({ name: "forgets its wait, then closes", ${SANITIZED}, fn() {
       using cp = Checkpoint.create({ dir });
       cp.wait(0, 600000);
     } });`,
  );
  assert.notEqual(r.code, 0, r.output);
  // the wait rejects, unhandled; or, on a slow machine, its call is still on its way out when the sanitizer looks
  assert.match(
    r.output,
    /BadResource: .*ltp_checkpoint_\S+ was closed while a wait was pending|non blocking ffi call was started in this test/,
  );
  assert.deepEqual(listing(dir.path), ["user_test.ts"], "the region was left behind");
});
