import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run } from "../testing/process.ts";

forgetCallerEnv();

Deno.test("a wait pending when its region closes names its checkpoint and the line that called it", async () => {
  const cp = Checkpoint.create();
  const line = Number(new Error().stack!.match(/forgotten_await_test\.ts:(\d+):/)![1]) + 1;
  const pending = cp.wait(3, 60_000);
  cp.close();
  const error = await pending.then(() => undefined, (e) => e);
  assert.ok(error instanceof Deno.errors.BadResource, `${error}`);
  const site = `${import.meta.url}:${line}:`;
  assert.ok(
    error.message.startsWith(`${cp.path} was closed while a wait was pending: wait(3), called at `),
    error.message,
  );
  assert.ok(error.message.includes(site), error.message);
  assert.ok(!error.message.includes("\n"));
  // what prints the error shows the user's frame first, none of the module's
  const frames = String(error.stack).split("\n").slice(1);
  assert.ok(frames[0].includes(site), error.stack);
  assert.ok(!frames.some((f: string) => f.includes(`${new URL("../src/", import.meta.url)}`)), error.stack);
});

Deno.test("a test that forgot to await a wait fails, and deno test's report names that test's file and line", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(
    `${dir.path}/forgot_test.ts`,
    `import { Checkpoint } from "${ROOT}/mod.ts";

Deno.test("forgets an await", () => {
  using cp = Checkpoint.create();
  cp.wait(7, 60_000);
});
`,
  );
  const r = await run(Deno.execPath(), ["test", "--allow-all", "forgot_test.ts"], {
    cwd: dir.path,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  });
  assert.notEqual(r.code, 0, "the run passed");
  const out = r.stdout + r.stderr;
  // Deno 2.0 to 2.7 may report the wait as a leaked op instead, when the sanitizer looks before the close lands
  if (/non blocking ffi call was started in this test/.test(out)) return;
  assert.match(
    out,
    new RegExp(`was closed while a wait was pending: wait\\(7\\), called at file://${dir.path}/forgot_test\\.ts:5:6`),
    out,
  );
});
