/** LTP_CHECKPOINT_LIBC is only a fallback: while libc.so.6 loads, the file it names is never opened or run. */
import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { compiled } from "../testing/peer.ts";
import { bounded, run, start } from "../testing/process.ts";
import { script, workspace } from "../testing/sandbox.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const DENO = Deno.execPath();

/** Runs Checkpoint.create() in a child that may read `folder` and names `libc` in LTP_CHECKPOINT_LIBC. */
function createWithLibcOverride(folder: string, libc: string, env: Record<string, string> = {}) {
  const body = `using cp = Checkpoint.create(); console.log("created " + cp.path);`;
  const flags = [
    "--allow-ffi",
    "--allow-env",
    `--allow-read=/dev/shm,${folder}`,
    "--allow-write=/dev/shm",
    "--no-prompt",
  ];
  const child = start(DENO, ["run", "--quiet", ...flags, script(folder, "create", body)], {
    env: { LTP_CHECKPOINT_LIBC: libc, ...env },
  });
  return bounded(child, scaled(15000));
}

Deno.test("LTP_CHECKPOINT_LIBC naming a FIFO is never opened while libc.so.6 loads: create() works and does not hang", async () => {
  using w = workspace();
  const fifo = `${w.root}/libc.fifo`;
  assertExit(await run("mkfifo", [fifo]), 0);
  const r = await createWithLibcOverride(w.root, fifo);
  assert.ok(!r.timedOut, "create() hung on the FIFO (killed)");
  assertExit(r, 0);
  assert.match(r.stdout, /^created \/dev\/shm\//);
});

Deno.test("LTP_CHECKPOINT_LIBC naming a library never runs its constructor while libc.so.6 loads", async () => {
  const markerLib = await compiled("sandbox_marker.c", { shared: true });
  using w = workspace();
  // the library does leave its mark when something loads it
  const probe = `${w.root}/probe-mark`;
  assertExit(await run("true", [], { env: { LD_PRELOAD: markerLib, SANDBOX_TEST_MARKER: probe } }), 0);
  assert.ok(Deno.statSync(probe).isFile, "the marker library works");

  const mark = `${w.root}/mark`;
  const r = await createWithLibcOverride(w.root, markerLib, { SANDBOX_TEST_MARKER: mark });
  assert.ok(!r.timedOut, "create() hung (killed)");
  assertExit(r, 0);
  assert.match(r.stdout, /^created \/dev\/shm\//);
  assert.throws(() => Deno.statSync(mark), Deno.errors.NotFound, "the library's constructor ran");
});
