/**
 * A reinstalled tool never talks to an agent an earlier install started (agent/server.ts, agent/client.sh): the
 * launcher carries an identity made anew at each install, an agent serves only its own install's calls, retires for a
 * newer install's (its folder moved away, its running calls left to end) and sends an older one's calls cold. With
 * real processes: the tool installed as the README says, its launcher run by /bin/sh.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { exists } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { alive, run, start } from "../testing/process.ts";
import { eventually, scaled } from "../testing/timing.ts";

forgetCallerEnv();

const BASE = `/tmp/tst_checkpoint-${Deno.uid()}`;
/** Agents of these tests end on their own soon after their last call, whatever the test did. */
const AGENT_ENV = { TST_CHECKPOINT_AGENT: "1", TST_CHECKPOINT_AGENT_IDLE: "10" };

function install(root: string, ...flags: string[]): Promise<void> {
  return run(Deno.execPath(), ["run", "--allow-all", `${ROOT}/tools/install.ts`, "--root", root, ...flags])
    .then((out) => assertExit(out, 0));
}

/** The pid of the agent serving the region at `path` now (from its folder's `clients`), or undefined. */
function agentOf(path: string): number | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${BASE}/${path.replaceAll("/", "%")}/clients`)).agent;
  } catch {
    return undefined;
  }
}

/** Whether an agent serves the region at `path`: it has named itself and published its slots. */
function served(path: string): boolean {
  return agentOf(path) !== undefined && exists(`${BASE}/${path.replaceAll("/", "%")}/slots`);
}

/** The names in BASE of retired agents' folders for the region at `path`. */
function retired(path: string): string[] {
  try {
    return [...Deno.readDirSync(BASE)].map((e) => e.name).filter((name) =>
      name.startsWith(".retired.") && name.endsWith(`.${path.replaceAll("/", "%")}`)
    );
  } catch {
    return [];
  }
}

/** Removes the region, then waits for every agent named to end (killing what has not). */
async function endAll(cp: Checkpoint, pids: (number | undefined)[]): Promise<void> {
  try {
    cp.remove();
  } catch { /* removed already */ }
  for (const pid of pids) {
    if (pid === undefined) continue;
    try {
      await eventually(() => !alive(pid), scaled(5000));
    } finally {
      if (alive(pid)) Deno.kill(pid, "SIGKILL");
    }
  }
}

Deno.test("a reinstalled tool's calls go to a fresh agent; the old one ends its running calls, then itself", async () => {
  const root = Deno.makeTempDirSync({ dir: "/tmp", prefix: "ltp-checkpoint-reinstall-test-" });
  const cp = Checkpoint.create({ layout: "ltp" });
  const pids: (number | undefined)[] = [];
  try {
    await install(root);
    const tool = `${root}/bin/tst_checkpoint`;
    const env = { ...AGENT_ENV, ...cp.env };
    // the first call for a region starts its agent, which comes up while that call runs cold
    assertExit(await run(tool, ["wake", "1000", "5", "0"], { env }), 0);
    await eventually(() => served(cp.path), scaled(10_000));
    const first = agentOf(cp.path)!;
    pids.push(first);
    // a call of the first install parked in its agent
    const waiter = start(tool, ["wait", "30000", "5"], { env });
    await eventually(() => cp.waiters(5) === 1, scaled(10_000));
    assert.equal(agentOf(cp.path), first);
    const oldLauncher = `${root}/old_tst_checkpoint`;
    Deno.copyFileSync(tool, oldLauncher);

    await install(root);
    assertExit(await run(tool, ["wake", "1000", "6", "0"], { env }), 0);
    await eventually(() => served(cp.path) && agentOf(cp.path) !== first, scaled(10_000));
    const second = agentOf(cp.path);
    pids.push(second);
    assert.ok(second !== undefined && second !== first, `the reinstalled tool's call went to agent ${second}`);
    // the old agent has moved its folder away and still holds its running call
    assert.ok(alive(first), "the old agent ended under its running call");
    assert.equal(retired(cp.path).length, 1, `no retired folder: ${retired(cp.path)}`);
    assert.equal(cp.waiters(5), 1, "the old agent's waiter left the kernel");

    // the old install's launcher is not served by the new agent (its call runs cold), which stays
    assertExit(await run("/bin/sh", [oldLauncher, "wake", "1000", "7", "0"], { env }), 0);
    assert.equal(agentOf(cp.path), second);

    // a wake through the new agent reaches the old agent's waiter; the old agent then ends and leaves nothing
    assertExit(await run(tool, ["wake", "5000", "5", "1"], { env }), 0);
    assertExit(await waiter.result, 0);
    await eventually(() => !alive(first), scaled(5000));
    await eventually(() => retired(cp.path).length === 0, scaled(5000));
    assert.equal(agentOf(cp.path), second);
  } finally {
    await endAll(cp, pids);
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("a reinstall that allows a folder works as printed while an agent of the old install still runs", async () => {
  const root = Deno.makeTempDirSync({ dir: "/tmp", prefix: "ltp-checkpoint-reinstall-test-" });
  // a folder outside /dev/shm and /tmp, which only the reinstall allows
  const home = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ltp-checkpoint-reinstall-test-" });
  const cp = Checkpoint.create({ layout: "ltp", dir: home });
  const pids: (number | undefined)[] = [];
  try {
    await install(root);
    const tool = `${root}/bin/tst_checkpoint`;
    const env = { ...AGENT_ENV, ...cp.env };
    const refused = await run(tool, ["wake", "1000", "3", "0"], { env });
    assert.equal(refused.code, 2, `the first install may use ${home}: ${refused.stderr}`);
    // an agent of the first install now serves this region, with the first install's permissions
    await eventually(() => served(cp.path), scaled(10_000));
    pids.push(agentOf(cp.path));

    await install(root, `--allow-read=${home}`, `--allow-write=${home}`);
    assertExit(await run(tool, ["wake", "1000", "3", "0"], { env }), 0);
    await eventually(() => served(cp.path) && agentOf(cp.path) !== pids[0], scaled(10_000));
    pids.push(agentOf(cp.path));
    assert.ok(pids[1] !== undefined && pids[1] !== pids[0], "the reinstalled tool's call did not start a fresh agent");
    // the old agent had no running call: it ends at once
    await eventually(() => !alive(pids[0]!), scaled(5000));
  } finally {
    await endAll(cp, pids);
    Deno.removeSync(root, { recursive: true });
    Deno.removeSync(home, { recursive: true });
  }
});

/** The code folders in ROOT/lib/tst_checkpoint: one per install, named by its identity. */
function codeFolders(root: string): string[] {
  return [...Deno.readDirSync(`${root}/lib/tst_checkpoint`)].map((e) => e.name).sort();
}

/** The identity of the launcher at `bin` (its tc_id line). */
function idOf(bin: string): string {
  return Deno.readTextFileSync(bin).match(/^tc_id=(\S+)$/m)![1];
}

Deno.test("each install's code has a folder of its own: the launcher's rename switches installs, the last one's code stays", async () => {
  const root = Deno.makeTempDirSync({ dir: "/tmp", prefix: "ltp-checkpoint-reinstall-test-" });
  const cp = Checkpoint.create({ layout: "ltp" });
  const tool = `${root}/bin/tst_checkpoint`;
  const env = { ...AGENT_ENV, ...cp.env };
  const pids = new Set<number | undefined>();
  let stopped = false;
  let loop: ReturnType<typeof start> | undefined;
  try {
    await install(root);
    // calls back to back for as long as the reinstalls last: none may find its install's code missing
    loop = start("/bin/sh", [
      "-c",
      `while [ ! -e "$0.stop" ]; do "$0" wake 1000 0 0 2>&1 || exit 1; done`,
      tool,
    ], { env });
    const first = idOf(tool);
    assert.deepEqual(codeFolders(root), [first]);
    const oldLauncher = `${root}/old_tst_checkpoint`;
    Deno.copyFileSync(tool, oldLauncher);
    assertExit(await run(tool, ["wake", "1000", "1", "0"], { env }), 0);
    pids.add(agentOf(cp.path));

    await install(root);
    const second = idOf(tool);
    // the replaced launcher's code stays for the calls it has begun
    assert.deepEqual(codeFolders(root), [first, second].sort());
    assertExit(await run("/bin/sh", [oldLauncher, "wake", "1000", "1", "0"], { env }), 0);
    assertExit(await run(tool, ["wake", "1000", "1", "0"], { env }), 0);
    pids.add(agentOf(cp.path));

    await install(root);
    const third = idOf(tool);
    // no launcher names the first install's code any more
    assert.deepEqual(codeFolders(root), [second, third].sort());
    assertExit(await run(tool, ["wake", "1000", "1", "0"], { env }), 0);
    pids.add(agentOf(cp.path));

    Deno.writeTextFileSync(`${tool}.stop`, "");
    stopped = true;
    const out = await loop.result;
    assert.doesNotMatch(out.stdout, /its code is gone/);
    assertExit(out, 0);
  } finally {
    if (!stopped) Deno.writeTextFileSync(`${tool}.stop`, "");
    await loop?.result;
    await endAll(cp, [...pids]);
    Deno.removeSync(root, { recursive: true });
  }
});
