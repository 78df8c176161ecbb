import assert from "node:assert/strict";
import { Checkpoint, ChildFailed } from "../mod.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";

forgetCallerEnv();

/** Long enough that a call ending in a timeout instead of ChildFailed is the failure these tests would show. */
const LONG_MS = 60_000;

/** A child script in `dir`: attaches through LTP_IPC_PATH and runs `body` with `cp`. */
function childScript(dir: string, body: string): string {
  const path = `${dir}/child.ts`;
  Deno.writeTextFileSync(
    path,
    `import { Checkpoint } from "${ROOT}/mod.ts";
     using cp = Checkpoint.open();
     ${body}`,
  );
  return path;
}

/** Deno's arguments for the child, without --allow-env unless `env` is true. */
function denoArgs(script: string, env: boolean): string[] {
  return [
    "run",
    "--quiet",
    "--no-prompt",
    "--allow-ffi",
    ...(env ? ["--allow-env"] : []),
    "--allow-read=/dev/shm,/tmp",
    "--allow-write=/dev/shm,/tmp",
    script,
  ];
}

const CALLS: Record<string, (cp: Checkpoint) => Promise<void>> = {
  "waitForWaiters()": (cp) => cp.waitForWaiters(0, 1, LONG_MS),
  "wait()": (cp) => cp.wait(1, LONG_MS),
  "wake()": (cp) => cp.wake(0, 1, LONG_MS),
};
const DOING: Record<string, string> = {
  "waitForWaiters()": "Waiting for 1 waiter on checkpoint 0",
  "wait()": "Waiting on checkpoint 1",
  "wake()": "Waking 1 on checkpoint 0",
};

for (const [call, start] of Object.entries(CALLS)) {
  Deno.test(`a child that dies at start-up (no --allow-env) fails the parent's pending ${call} at once, naming it`, async () => {
    using dir = tempDir();
    using cp = Checkpoint.create();
    await using child = cp.spawn(
      Deno.execPath(),
      denoArgs(childScript(dir.path, "await cp.wait(0);"), false),
    );
    const error = await start(cp).then(() => undefined, (e) => e);
    assert.ok(error instanceof ChildFailed, `not a ChildFailed: ${error}`);
    assert.equal(error.child, "deno run child.ts");
    assert.equal(error.pid, child.pid);
    assert.equal(error.status.code, 1);
    assert.ok(!error.message.includes("\n"), "one line");
    assert.ok(!error.message.includes("\x1b"), "no terminal sequences");
    assert.ok(
      error.message.startsWith(
        `${
          DOING[call]
        } failed: the child deno run child.ts (pid ${child.pid}) exited with code 1; its last lines: error: `,
      ),
      error.message,
    );
    assert.match(error.message, /--allow-env=LTP_IPC_PATH/);
    assert.match(error.lastLines[0], /^error: .*--allow-env=LTP_IPC_PATH/);
    assert.ok(error.lastLines.length <= 6);
    // and every later call of the region, the blocking ones included, until the child is disposed
    await assert.rejects(cp.wake(5, 0, LONG_MS), ChildFailed);
    assert.throws(() => cp.waitSync(5, 10), ChildFailed);
    assert.match(child.stderr, /NotCapable/);
  });
}

Deno.test("a child that works meets the parent and leaves the region usable", async () => {
  using dir = tempDir();
  using cp = Checkpoint.create();
  const script = childScript(
    dir.path,
    `console.log("parked"); await cp.wait(0); await cp.wake(1); console.log("done");`,
  );
  await using child = cp.spawn(Deno.execPath(), denoArgs(script, true), {
    name: "worker",
  });
  await cp.waitForWaiters(0, 1, LONG_MS);
  await cp.wake(0, 1, LONG_MS);
  await cp.wait(1, LONG_MS);
  const status = await child.status;
  assert.ok(status.success, child.stderr);
  assert.equal(child.stdout, "parked\ndone\n");
  assert.equal(child.name, "worker");
  // a child that ended well fails nothing
  await cp.wake(2, 0, 10);
  cp.wakeSync(2, 0, 10);
});

Deno.test("a child whose failure has been disposed of fails the region's calls no more", async () => {
  using cp = Checkpoint.create();
  {
    await using child = cp.spawn("sh", [
      "-c",
      "echo 'on stdout'; echo 'gone' >&2; exit 3",
    ]);
    const error = await cp.waitForWaiters(0, 1, LONG_MS).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(error instanceof ChildFailed, `${error}`);
    assert.equal(error.child, "sh …");
    assert.equal(error.pid, child.pid);
    assert.deepEqual(error.lastLines, ["on stdout", "gone"]);
    assert.match(
      error.message,
      /\(pid \d+\) exited with code 3; its last lines: on stdout\\ngone$/,
    );
  }
  await cp.wake(0, 0, 10);
  cp.waitForWaitersSync(0, 0, 10);
});

Deno.test("a child's last lines are escaped and bounded", async () => {
  using cp = Checkpoint.create();
  const script = `for i in 1 2 3 4 5 6 7 8 9; do echo "line $i"; done; printf '\\033]0;title\\007x%0300d\\n' 0; exit 1`;
  await using child = cp.spawn("sh", ["-c", script], { name: "noisy\nchild" });
  const error = await cp.wait(0, LONG_MS).then(() => undefined, (e) => e);
  assert.ok(error instanceof ChildFailed, `${error}`);
  assert.equal(error.lastLines.length, 6);
  assert.equal(error.lastLines[0], "line 5");
  const last = error.lastLines[5];
  assert.ok(last.startsWith("\\x1b]0;title\\x07x000"), last);
  assert.ok(last.length < 260 && last.endsWith("…"), last);
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\x00-\x1f]/.test(error.message), error.message);
  assert.match(error.message, /the child noisy\\x0achild \(pid/);
  assert.equal((await child.status).code, 1);
});

Deno.test("using kills a child that still runs, and that is no failure", async () => {
  using cp = Checkpoint.create();
  let status: Promise<Deno.CommandStatus>;
  {
    using child = cp.spawn("sleep", ["600"]);
    status = child.status;
  }
  assert.equal((await status).signal, "SIGKILL");
  await cp.wake(0, 0, 10);
});

Deno.test("await using kills a child that still runs and waits for its end", async () => {
  using cp = Checkpoint.create();
  let child;
  {
    await using started = cp.spawn("sleep", ["600"]);
    child = started;
  }
  const ended = await Promise.race([child.status, Promise.resolve(undefined)]);
  assert.equal(ended?.signal, "SIGKILL");
});

Deno.test("closing the region kills the children it started", async () => {
  const cp = Checkpoint.create();
  const child = cp.spawn("sleep", ["600"]);
  cp.close();
  assert.equal((await child.status).signal, "SIGKILL");
  assert.throws(() => cp.spawn("true"), Deno.errors.BadResource);
});

Deno.test("a child that cannot be started throws at spawn(), naming the program", () => {
  using cp = Checkpoint.create();
  assert.throws(() => cp.spawn("/nonexistent/program"), Deno.errors.NotFound);
});
