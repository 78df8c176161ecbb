import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { startCli } from "../testing/process.ts";

forgetCallerEnv();

Deno.test("a waiting CLI process is named tst_checkpoint, in /proc and in status(), not deno", async () => {
  using cp = Checkpoint.create();
  const waiter = startCli(["wait", "60000", "0"], { env: cp.env });
  await cp.waitForWaiters(0, 1);
  const comm = Deno.readTextFileSync(`/proc/${waiter.child.pid}/comm`);
  const named = JSON.stringify(cp.status());
  await cp.wake(0);
  assert.equal((await waiter.result).code, 0);
  assert.equal(comm, "tst_checkpoint\n");
  assert.match(named, /"tst_checkpoint"/);
});
