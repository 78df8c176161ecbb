/** Parallel inits of one new path all succeed: module children released together, and CLIs started together. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { bounded, cli, kill, start } from "../testing/process.ts";
import { script, workspace } from "../testing/sandbox.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const DENO = Deno.execPath();

/** Asserts that `path` is a one-page region. */
function assertRegion(path: string): void {
  const bytes = Deno.readFileSync(path);
  assert.equal(bytes.length, 4096, path);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "LTPM", path);
}

Deno.test("parallel inits of one new path all succeed: module children released together, and CLIs started together", async () => {
  using w = workspace();
  const children = 8;
  const rounds = 120;
  // a barrier: every child waits on checkpoint i, then all are woken at once to init DIR/r<i>
  using barrier = Checkpoint.init(`${w.root}/barrier`, { layout: "ltp" });
  const body = `
    const [dir, rounds] = Deno.args;
    using barrier = Checkpoint.open(dir + "/../barrier", { layout: "ltp" });
    const failures = [];
    for (let i = 0; i < Number(rounds); i++) {
      barrier.waitSync(i, 20000);
      try {
        Checkpoint.init(dir + "/r" + i).close();
      } catch (e) {
        failures.push(i + ": " + e.name + ": " + e.message);
      }
    }
    console.log(JSON.stringify(failures));`;
  const file = script(w.root, "parallel", body);
  const flags = ["--allow-ffi", "--allow-env", `--allow-read=${w.root}`, `--allow-write=${w.root}`, "--no-prompt"];
  const started = Array.from(
    { length: children },
    () => start(DENO, ["run", "--quiet", ...flags, file, w.dir, String(rounds)]),
  );
  let released = 0;
  try {
    for (; released < rounds; released++) {
      await barrier.waitForWaiters(released, children, scaled(20000));
      await barrier.wake(released, children, scaled(5000));
    }
  } finally {
    if (released < rounds) started.forEach((s) => kill(s.child, "SIGKILL"));
  }
  const results = await Promise.all(started.map((s) => bounded(s, scaled(20000))));
  const failures = results.flatMap((r) => r.code === 0 ? JSON.parse(r.stdout) : [`exit ${r.code}: ${r.stderr}`]);
  assert.deepEqual(
    failures.length,
    0,
    `${failures.length} of ${children * rounds} inits failed: ${failures.slice(0, 3)}`,
  );
  for (let i = 0; i < rounds; i++) assertRegion(`${w.dir}/r${i}`);

  for (let round = 0; round < 2; round++) {
    const path = `${w.dir}/cli${round}`;
    const results = await Promise.all(Array.from({ length: 12 }, () => cli(["init"], { env: { LTP_IPC_PATH: path } })));
    const failed = results.filter((r) => r.code !== 0).map((r) => `exit ${r.code}: ${r.stderr.trim()}`);
    assert.deepEqual(failed, [], `round ${round}`);
    assertRegion(path);
  }
});
