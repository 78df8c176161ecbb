/** Inspecting a region (CLI status, waiters, wake, a wait that times out; the module's open) changes nothing. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { cli, NOBODY, run } from "../testing/process.ts";

forgetCallerEnv();

/** Nanosecond access, modification and change times, as `stat` prints them. */
async function times(path: string): Promise<{ atime: string; mtime: string; ctime: string }> {
  const r = await run("stat", ["--format=%x|%y|%z", path]);
  assertExit(r, 0);
  const [atime, mtime, ctime] = r.stdout.trim().split("|");
  return { atime, mtime, ctime };
}

/**
 * Runs every command that only looks at a region (CLI status, status --json,
 * waiters, wake, a wait that times out; the module's open, waiters, wake and
 * waitSync) and returns the region's times and bytes before and after.
 */
async function inspect(path: string) {
  const bytes = Deno.readFileSync(path); // first: reading may set the access time
  // an access time older than the modification time: any read (relatime included) would update it
  assertExit(await run("touch", ["-a", "-d", "2001-02-03 04:05:06.789", path]), 0);
  const before = await times(path);
  const env = { LTP_IPC_PATH: path };
  const commands: [string[], number][] = [
    [["status"], 0],
    [["status", "--json"], 0],
    [["waiters", "50", "0", "0"], 0],
    [["wake", "50", "0", "0"], 0],
    [["wait", "20", "0"], 1],
  ];
  for (const [args, code] of commands) assertExit(await cli(args, { env }), code);
  {
    using cp = Checkpoint.open(path);
    assert.equal(cp.waiters(0), 0);
    await cp.wake(0, 0, 50);
    assert.throws(() => cp.waitSync(0, 20), Deno.errors.TimedOut);
  }
  const after = await times(path);
  const now = Deno.readFileSync(path);
  return { before, after, bytesChanged: now.length !== bytes.length || !now.every((b, i) => b === bytes[i]) };
}

Deno.test("inspecting a region changes neither its bytes nor its times: CLI status, waiters, wake, wait and the module", async () => {
  using dir = tempDir();
  const path = `${dir.path}/region`;
  Checkpoint.init(path).close();
  const { before, after, bytesChanged } = await inspect(path);
  // the access time too: O_NOATIME is allowed on one's own file
  assert.deepEqual({ ...after, bytesChanged }, { ...before, bytesChanged: false });
});

Deno.test({
  name: "inspecting a 0666 region of another owner changes neither its bytes nor its mtime/ctime " +
    "(root only; ignore: Deno.uid() !== 0)",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    using dir = tempDir();
    const path = `${dir.path}/region`;
    Checkpoint.init(path).close();
    Deno.chmodSync(path, 0o666);
    Deno.chownSync(path, NOBODY, NOBODY);
    const { before, after, bytesChanged } = await inspect(path);
    assert.deepEqual(
      { mtime: after.mtime, ctime: after.ctime, bytesChanged },
      { mtime: before.mtime, ctime: before.ctime, bytesChanged: false },
    );
  },
});
