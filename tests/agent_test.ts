/**
 * The resident agent behind the installed tool (agent/server.ts, agent/client.sh), with real processes: the tool
 * installed as the README says, its launcher run by /bin/sh, against the same calls made cold
 * (TST_CHECKPOINT_AGENT=0).
 */
import { exists } from "../testing/files.ts";
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { ROOT } from "../testing/paths.ts";
import { alive, asNobody, bounded, commandExists, kill, NOBODY, type Result, run, start } from "../testing/process.ts";
import { compiled, noPeer } from "../testing/peer.ts";
import { eventually, scaled } from "../testing/timing.ts";

forgetCallerEnv();

const UID = Deno.uid()!;
const BASE = `/tmp/tst_checkpoint-${UID}`;
/** Agents of these tests end on their own soon after their last call, whatever the test did. */
const AGENT_ENV = { TST_CHECKPOINT_AGENT: "1", TST_CHECKPOINT_AGENT_IDLE: "10" };

/** The installed launcher, for the steps below (installed once, as the README says, by the test that runs them). */
let installed = "";

function tool(): Promise<string> {
  return Promise.resolve(installed);
}

/** The behaviours below, each a step of one test that installs the tool once and removes it after. */
const behaviours: { name: string; ignore?: boolean; fn: () => Promise<void> }[] = [];

function behaviour(name: string, fn: () => Promise<void>): void;
function behaviour(definition: { name: string; ignore?: boolean; fn: () => Promise<void> }): void;
function behaviour(
  what: string | { name: string; ignore?: boolean; fn: () => Promise<void> },
  fn?: () => Promise<void>,
): void {
  behaviours.push(typeof what === "string" ? { name: what, fn: fn! } : what);
}

/** The folder of the agent for the region at `path`. */
function agentDir(path: string): string {
  return `${BASE}/${path.replaceAll("/", "%")}`;
}

/** The agent's own account of itself: its pid and the calls it runs now; undefined when there is none. */
function agentOf(path: string): { agent: number; clients: { pid: number; args: string[] }[] } | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${agentDir(path)}/clients`));
  } catch {
    return undefined;
  }
}

/** Ends the agent of `path` (the region is removed first, so it should end by itself) and checks nothing is left. */
async function agentEnds(path: string): Promise<void> {
  const pid = agentOf(path)?.agent;
  try {
    Deno.removeSync(path);
  } catch { /* removed already */ }
  if (pid === undefined) return;
  try {
    await eventually(() => !alive(pid), scaled(5000));
  } finally {
    if (alive(pid)) Deno.kill(pid, "SIGKILL");
  }
  await eventually(() => !exists(agentDir(path)), scaled(5000));
}

/** A region of the shell library's kind (mode 0666, so that a child run as nobody may use it). */
function region(): Checkpoint {
  const cp = Checkpoint.create({ layout: "ltp" });
  Deno.chmodSync(cp.path, 0o666);
  return cp;
}

function call(args: string[], env: Record<string, string>): Promise<Result> {
  return tool().then((bin) => run(bin, args, { env: { ...AGENT_ENV, ...env } }));
}

/**
 * The agent of the region at `env`'s LTP_IPC_PATH, started by a first call (`wake 1000 0 0`, run through `prefix`,
 * such as a seccomp filter) and ready to serve: a first call runs cold while the agent it started comes up in the
 * background. Resolves to the agent's pid.
 */
async function agentReady(env: Record<string, string>, prefix: string[] = []): Promise<number> {
  const path = env.LTP_IPC_PATH;
  const [cmd, ...args] = [...prefix, await tool(), "wake", "1000", "0", "0"];
  await run(cmd, args, { env: { ...AGENT_ENV, ...env } }); // whatever it answers (a path that is no region)
  // alive: a SIGKILLed agent's folder still names it until the fresh agent has cleared it
  const serving = () => {
    const pid = agentOf(path)?.agent;
    return pid !== undefined && alive(pid) && exists(`${agentDir(path)}/slots`);
  };
  await eventually(serving, scaled(10000));
  return agentOf(path)!.agent;
}

function cold(args: string[], env: Record<string, string>): Promise<Result> {
  return tool().then((bin) => run(bin, args, { env: { ...env, TST_CHECKPOINT_AGENT: "0" } }));
}

behaviour("calls through the agent print and exit exactly as the same calls made cold", async () => {
  const cp = region();
  const missing = `${cp.path}.missing`;
  const notRegion = `${cp.path}.junk`;
  Deno.writeTextFileSync(notRegion, "not a region");
  try {
    const cases: [string[], Record<string, string>][] = [
      [["wake", "1000", "3", "0"], cp.env],
      [["wait", "50", "3"], cp.env],
      [["wait", "0", "3"], cp.env],
      [["wait", "abc", "3"], cp.env],
      [[], cp.env],
      [["frob", "1", "2"], cp.env],
      [["wake", "50", "5000", "1"], cp.env],
      [["waiters", "50", "4", "1"], cp.env],
      [["status"], cp.env],
      [["status", "--json"], cp.env],
      [["init", "--cleanup"], cp.env],
      [["--version"], cp.env],
      [["wait", "50", "3"], { ...cp.env, LTP_TIMEOUT_MUL: "junk" }],
      [["wait", "50", "3"], { ...cp.env, LTP_IPC_LAYOUT: "seed" }],
      [["wake", "100", "1", "0"], { LTP_IPC_PATH: notRegion }],
      [["wake", "100", "1", "0"], { LTP_IPC_PATH: missing }],
    ];
    for (const env of [cp.env, { LTP_IPC_PATH: notRegion }, { LTP_IPC_PATH: missing }]) await agentReady(env);
    for (const [args, env] of cases) {
      const agent = await call(args, env);
      const expected = await cold(args, env);
      assert.deepEqual(agent, expected, `tst_checkpoint ${args.join(" ")} with ${JSON.stringify(env)}`);
    }
    assert.ok(agentOf(cp.path), "the calls went through an agent");
  } finally {
    await agentEnds(cp.path);
    await agentEnds(notRegion);
    await agentEnds(missing);
  }
});

behaviour("with TST_CHECKPOINT_AGENT=0, or an argument the channel cannot carry, no agent is started", async () => {
  const cp = region();
  try {
    assertExit(await cold(["wake", "100", "1", "0"], cp.env), 0);
    const odd = ["wait", "1\n2", "3"];
    assert.deepEqual(await call(odd, cp.env), await cold(odd, cp.env));
    assert.ok(!exists(agentDir(cp.path)));
  } finally {
    await agentEnds(cp.path);
  }
});

behaviour(
  "a waiting client is counted while it waits; killed, its wait leaves the kernel and the next wake reaches the next waiter",
  async () => {
    const bin = await tool();
    const cp = region();
    try {
      await agentReady(cp.env);
      for (const end of ["SIGKILL", "SIGTERM"] as const) {
        const doomed = start(bin, ["wait", "60000", "5"], { env: { ...AGENT_ENV, ...cp.env } });
        await eventually(() => cp.waiters(5) === 1, scaled(10000));
        // the agent names its client (written just after the wait enters the kernel)
        await eventually(
          () => agentOf(cp.path)?.clients.some((c) => c.pid === doomed.child.pid) === true,
          scaled(5000),
        );
        kill(doomed.child, end);
        await doomed.result;
        await eventually(() => cp.waiters(5) === 0, scaled(2000));
      }
      const next = start(bin, ["wait", "60000", "5"], { env: { ...AGENT_ENV, ...cp.env } });
      await eventually(() => cp.waiters(5) === 1, scaled(10000));
      assertExit(await call(["wake", "10000", "5", "1"], cp.env), 0);
      assertExit(await next.result, 0);
    } finally {
      await agentEnds(cp.path);
    }
  },
);

behaviour({
  name: "timeout(1) ends a waiting client and its wait",
  ignore: !commandExists("timeout"),
  fn: async () => {
    const bin = await tool();
    const cp = region();
    try {
      await agentReady(cp.env);
      const out = await run("timeout", ["1", bin, "wait", "60000", "6"], { env: { ...AGENT_ENV, ...cp.env } });
      assert.equal(out.code, 124);
      await eventually(() => cp.waiters(6) === 0, scaled(2000));
    } finally {
      await agentEnds(cp.path);
    }
  },
});

behaviour({
  name:
    "an agent started in a process group dies with it; the next call starts a fresh agent and clears the old one's folder",
  ignore: !commandExists("setsid"),
  fn: async () => {
    const bin = await tool();
    const cp = region();
    try {
      // setsid runs sh as the leader of a new process group (its pid is the group's id); the agent its first call
      // starts joins that group, and the wait that follows goes through it
      const script = `"$0" wake 1000 7 0 && until [ -e "$1/slots" ]; do sleep 0.01; done && "$0" wait 60000 7`;
      const group = start("setsid", ["sh", "-c", script, bin, agentDir(cp.path)], {
        env: { ...AGENT_ENV, ...cp.env },
      });
      await eventually(() => cp.waiters(7) === 1 && agentOf(cp.path)?.clients.length === 1, scaled(10000));
      const first = agentOf(cp.path)!.agent;
      Deno.kill(-group.child.pid, "SIGKILL");
      await group.result;
      await eventually(() => !alive(first) && cp.waiters(7) === 0, scaled(2000));
      // SIGKILL left its folder (unless another agent starting meanwhile has removed it as a dead one's); the next
      // call starts a fresh agent
      assert.notEqual(await agentReady(cp.env), first);
      // the old claims are gone; the call's own is removed once the agent sees it end
      await eventually(
        () => ![...Deno.readDirSync(agentDir(cp.path))].some((e) => e.name.endsWith(".lock")),
        scaled(5000),
      );
    } finally {
      await agentEnds(cp.path);
    }
  },
});

behaviour(
  "an agent's start leaves alone a fresh folder whose lock is free: another agent may be starting there",
  async () => {
    const cp = region();
    const planted = `${BASE}/%planted%${crypto.randomUUID()}`;
    Deno.mkdirSync(BASE, { recursive: true });
    Deno.mkdirSync(planted);
    Deno.writeTextFileSync(`${planted}/slots`, "1\n");
    try {
      // the call starts an agent, whose start sweeps dead agents' folders
      await agentReady(cp.env);
      assert.equal(Deno.readTextFileSync(`${planted}/slots`), "1\n");
    } finally {
      Deno.removeSync(planted, { recursive: true });
      await agentEnds(cp.path);
    }
  },
);

behaviour(
  "status names a client waiting through the agent, and status --all lists the agent, then what a dead one left",
  async () => {
    const bin = await tool();
    const cp = region();
    try {
      await agentReady(cp.env);
      const waiter = start(bin, ["wait", "60000", "4"], { env: { ...AGENT_ENV, ...cp.env } });
      await eventually(() => cp.waiters(4) === 1 && agentOf(cp.path)?.clients.length === 1, scaled(10000));
      const agent = agentOf(cp.path)!.agent;
      const status = await call(["status"], cp.env);
      assertExit(status, 0);
      assert.match(
        status.stdout,
        new RegExp(
          `checkpoint 4: 1 waiting: pid ${waiter.child.pid} \\(sh: tst_checkpoint wait 60000 4, through agent ${agent}\\)`,
        ),
      );
      const all = await call(["status", "--all", "/dev/shm"], {});
      assertExit(all, 0);
      assert.ok(
        all.stdout.includes(`agent ${agent} serves ${cp.path} (1 call; its channel: ${agentDir(cp.path)})`),
        all.stdout,
      );
      Deno.kill(agent, "SIGKILL");
      await bounded(waiter, scaled(10000));
      const after = await run(bin, ["status", "--all", "/dev/shm"], { env: { TST_CHECKPOINT_AGENT: "0" } });
      assert.ok(
        after.stdout.includes(`${agentDir(cp.path)}: a channel left behind by agent ${agent}, which has exited`),
        after.stdout,
      );
      // the next call's fresh agent clears what the dead one left
      assertExit(await call(["wake", "1000", "4", "0"], cp.env), 0);
    } finally {
      await agentEnds(cp.path);
    }
  },
);

behaviour("a client whose agent is killed while it waits says so in one line and exits 2", async () => {
  const bin = await tool();
  const cp = region();
  try {
    await agentReady(cp.env);
    const waiter = start(bin, ["wait", "60000", "8"], { env: { ...AGENT_ENV, ...cp.env } });
    await eventually(() => cp.waiters(8) === 1 && agentOf(cp.path)?.clients.length === 1, scaled(10000));
    Deno.kill(agentOf(cp.path)!.agent, "SIGKILL");
    const out = await bounded(waiter, scaled(10000));
    assert.ok(!out.timedOut);
    assertExit(out, 2);
    assertOneLine(out.stderr, /^tst_checkpoint: TBROK: its agent .* ended during the call/);
    // the next call is served again
    assertExit(await call(["wake", "1000", "8", "0"], cp.env), 0);
  } finally {
    await agentEnds(cp.path);
  }
});

behaviour(
  "init in a command substitution returns at once though it started the agent, which then ends with its region",
  async () => {
    const bin = await tool();
    const path = `/dev/shm/ltp_agent_test_${Deno.pid}_${Math.random().toString(36).slice(2)}`;
    try {
      const sub = start("sh", ["-c", `x=$("$0" init --cleanup) && printf '%s\\n' "$x"`, bin], {
        env: { ...AGENT_ENV, LTP_IPC_PATH: path },
      });
      const out = await bounded(sub, scaled(10000));
      assert.ok(!out.timedOut, "the substitution was not held open");
      assertExit(out, 0);
      assert.match(out.stdout, /^trap /);
      await eventually(() => agentOf(path) !== undefined, scaled(10000));
      const pid = agentOf(path)!.agent;
      assert.ok(alive(pid));
      // its descriptors: none of the caller's (no pipe, no terminal)
      for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
        let target: string;
        try {
          target = Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`);
        } catch {
          continue; // one of the agent's own, closed meanwhile
        }
        assert.ok(!target.startsWith("pipe:"), `fd ${fd.name} is ${target}`);
      }
      assertExit(await call(["remove"], { LTP_IPC_PATH: path }), 0);
      await eventually(() => !alive(pid) && !exists(agentDir(path)), scaled(3000));
      // BASE stays: removed, another user could make one of that name for a client that had just checked it
      const base = Deno.lstatSync(BASE);
      assert.ok(base.isDirectory && base.uid === UID && (base.mode! & 0o777) === 0o700);
    } finally {
      await agentEnds(path);
    }
  },
);

behaviour(
  "20 clients parked on 20 ids (no more than the agent's calls) are counted at once, and each wake reaches its own",
  async () => {
    const bin = await tool();
    const cp = region();
    const ids = Array.from({ length: 20 }, (_, i) => i);
    await agentReady(cp.env);
    const waiters = ids.map((id) => start(bin, ["wait", "120000", `${id}`], { env: { ...AGENT_ENV, ...cp.env } }));
    try {
      await eventually(() => ids.every((id) => cp.waiters(id) === 1), scaled(60000));
      // back to back from one process: each word has a call of its own, so no wake is lost
      for (const id of ids) await cp.wake(id, 1, scaled(10000));
      for (const w of waiters) assertExit(await w.result, 0);
    } finally {
      for (const w of waiters) kill(w.child, "SIGKILL");
      await Promise.all(waiters.map((w) => w.result));
      await agentEnds(cp.path);
    }
  },
);

behaviour("300 clients parked on 300 ids are all counted at once; killed, every wait leaves the kernel", async () => {
  const bin = await tool();
  const cp = region();
  const ids = Array.from({ length: 300 }, (_, i) => i);
  await agentReady(cp.env);
  const waiters = ids.map((id) => start(bin, ["wait", "120000", `${id}`], { env: { ...AGENT_ENV, ...cp.env } }));
  try {
    await eventually(() => ids.every((id) => cp.waiters(id) === 1), scaled(60000));
    // all at once, and for as long as they wait
    for (let look = 0; look < 20; look++) {
      assert.equal(ids.filter((id) => cp.waiters(id) === 1).length, ids.length);
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const w of waiters) kill(w.child, "SIGKILL");
    await Promise.all(waiters.map((w) => w.result));
    await eventually(() => ids.every((id) => cp.waiters(id) === 0), scaled(5000));
  } finally {
    for (const w of waiters) kill(w.child, "SIGKILL");
    await Promise.all(waiters.map((w) => w.result));
    await agentEnds(cp.path);
  }
});

behaviour({
  name: "as nobody: a channel folder planted by another user is not used, and calls still work (cold)",
  ignore: UID !== 0 || !commandExists("setpriv") && !commandExists("runuser"),
  fn: async () => {
    const bin = await tool();
    const cp = region();
    const planted = `/tmp/tst_checkpoint-${NOBODY}`;
    if (exists(planted)) return; // nobody's own: not ours to touch
    Deno.mkdirSync(planted, { mode: 0o777 });
    Deno.chmodSync(planted, 0o777);
    const log = `${planted}.log`;
    Deno.writeTextFileSync(log, "");
    Deno.chmodSync(log, 0o666);
    const logged = logsStarts(bin, log);
    try {
      const [cmd, args] = asNobody(logged, ["wake", "1000", "3", "0"]);
      assertExit(await run(cmd, args, { env: { ...AGENT_ENV, ...cp.env } }), 0);
      assert.deepEqual([...Deno.readDirSync(planted)], [], "nothing was made in the planted folder");
      assert.equal(starts(log), 0, "an agent was started, which could not serve there");
    } finally {
      Deno.removeSync(planted, { recursive: true });
      Deno.removeSync(log);
      Deno.removeSync(logged);
      cp.remove();
    }
  },
});

behaviour({
  name: "as nobody: calls go through nobody's own agent",
  ignore: UID !== 0 || !commandExists("setpriv") && !commandExists("runuser"),
  fn: async () => {
    const bin = await tool();
    const cp = region();
    const base = `/tmp/tst_checkpoint-${NOBODY}`;
    const dir = `${base}/${cp.path.replaceAll("/", "%")}`;
    const made = !exists(base);
    try {
      const [cmd, args] = asNobody(bin, ["wake", "1000", "3", "0"]);
      // the first call starts nobody's agent
      assertExit(await run(cmd, args, { env: { ...AGENT_ENV, ...cp.env } }), 0);
      await eventually(() => exists(`${dir}/clients`), scaled(10000));
      const info = Deno.statSync(base);
      assert.equal(info.uid, NOBODY);
      assert.equal(info.mode! & 0o777, 0o700);
      const pid = JSON.parse(Deno.readTextFileSync(`${dir}/clients`)).agent;
      cp.remove();
      await eventually(() => !alive(pid) && !exists(dir), scaled(5000));
    } finally {
      try {
        cp.remove();
      } catch { /* removed */ }
      // the agent keeps nobody's BASE; this test made it
      if (made) Deno.removeSync(base, { recursive: true });
    }
  },
});

/** The launcher's identity (its tc_id line), which a request names. */
function launcherId(bin: string): string {
  return Deno.readTextFileSync(bin).match(/^tc_id=(\S+)$/m)![1];
}

/** A copy of the launcher at `bin` that appends a line to `log` each time it starts an agent. */
function logsStarts(bin: string, log: string): string {
  const copy = `${bin}.logged`;
  const text = Deno.readTextFileSync(bin);
  assert.ok(text.includes("tc_agent() { exec "));
  Deno.writeTextFileSync(copy, text.replace("tc_agent() { exec ", `tc_agent() { echo started >>'${log}'; exec `));
  Deno.chmodSync(copy, 0o755);
  return copy;
}

/** How many agents the launcher made by logsStarts() has started. */
function starts(log: string): number {
  try {
    return Deno.readTextFileSync(log).split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
}

behaviour(
  "a call that finds an agent starting (its pid, alive, and no slots yet) runs cold and starts no other",
  async () => {
    const bin = await tool();
    const cp = region();
    const dir = agentDir(cp.path);
    const log = `${bin}.starts`;
    const logged = logsStarts(bin, log);
    // stands for the starting agent: a live process, then one that has ended
    const starting = start("sleep", ["60"]);
    try {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      Deno.writeTextFileSync(`${dir}/pid`, `${starting.child.pid}\n`);
      assertExit(await run(logged, ["wake", "1000", "1", "0"], { env: { ...AGENT_ENV, ...cp.env } }), 0);
      assert.equal(starts(log), 0, "a second agent was started beside a starting one");
      kill(starting.child, "SIGKILL");
      await starting.result;
      assertExit(await run(logged, ["wake", "1000", "1", "0"], { env: { ...AGENT_ENV, ...cp.env } }), 0);
      assert.equal(starts(log), 1, "no agent was started where the one starting had died");
      await eventually(() => agentOf(cp.path) !== undefined, scaled(10000));
    } finally {
      kill(starting.child, "SIGKILL");
      await starting.result;
      Deno.removeSync(logged);
      try {
        Deno.removeSync(log);
      } catch { /* none made */ }
      await agentEnds(cp.path);
    }
  },
);

behaviour("a call from a working folder whose name holds a newline is served, as cold", async () => {
  const bin = await tool();
  const cp = region();
  const top = Deno.makeTempDirSync({ dir: "/tmp", prefix: "ltp-agent-test-" });
  const odd = `${top}/a\nb`;
  Deno.mkdirSync(odd);
  try {
    await agentReady(cp.env);
    for (const args of [["wake", "100", "0", "0"], ["wait", "50", "1"], ["waiters", "100", "1", "0"]]) {
      const out = await bounded(start(bin, args, { env: { ...AGENT_ENV, ...cp.env }, cwd: odd }), scaled(10000));
      assert.ok(!out.timedOut, `tst_checkpoint ${args.join(" ")} hung in ${JSON.stringify(odd)}`);
      const { timedOut: _, ...result } = out;
      assert.deepEqual(result, await cold(args, cp.env));
    }
    assert.ok(agentOf(cp.path), "the calls went through an agent");
  } finally {
    Deno.removeSync(top, { recursive: true });
    await agentEnds(cp.path);
  }
});

behaviour("a request that does not parse is answered c (run cold) at once, never waited on", async () => {
  const bin = await tool();
  const cp = region();
  try {
    await agentReady(cp.env);
    const dir = agentDir(cp.path);
    const id = launcherId(bin);
    const pid = `${Deno.pid}`;
    const bad = [
      `TCA3 ${id}\n${pid}\n1\nx\n`, // a count that is not a number
      `TCA3 ${id}\n${pid}\n1\n/tmp/x\ny\n3\nwake\n100\n0\n0\n.\n`, // a working folder's name with a newline
      `TCA3 ${id}\n${pid}\n1\n0\n0\n.\nmore\n`, // lines beyond the last
      `TCA3 ${id}\n${pid}\n1\n0\n0\nX\n`, // no last line where it should be
      `TCA2 ${id}\n${pid}\n1\n/\n0\n0\n.\n`, // the request of an older client
      `TCA3 ${id}\n${pid}\n1\n1\n${"1".repeat(300 * 1024)}\n0\n.\n`, // too long
    ];
    for (const request of bad) {
      const lock = `${dir}/0.lock`;
      await eventually(() => !exists(lock), scaled(5000));
      Deno.writeTextFileSync(lock, `${pid}\n`, { createNew: true });
      // as the client opens them: neither open blocks
      const reply = await Deno.open(`${dir}/0.rep`, { read: true, write: true });
      const req = await Deno.open(`${dir}/0.req`, { read: true, write: true });
      try {
        const writing = req.write(new TextEncoder().encode(request)).catch(() => 0);
        const buffer = new Uint8Array(16);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const answer = await Promise.race([
          reply.read(buffer).then((n) => new TextDecoder().decode(buffer.subarray(0, n ?? 0))),
          new Promise<string>((resolve) => timer = setTimeout(() => resolve("no answer"), scaled(10000))),
        ]);
        clearTimeout(timer);
        assert.equal(answer, "c\n", JSON.stringify(request.slice(0, 80)));
        await writing;
      } finally {
        req.close();
        reply.close();
      }
    }
    assertExit(await call(["wake", "100", "0", "0"], cp.env), 0);
  } finally {
    await agentEnds(cp.path);
  }
});

behaviour(
  "status runs cold: a stopped agent does not hold it, and it still names the agent's waiting client",
  async () => {
    const bin = await tool();
    const cp = region();
    await agentReady(cp.env);
    const waiter = start(bin, ["wait", "60000", "2"], { env: { ...AGENT_ENV, ...cp.env } });
    let agent: number | undefined;
    try {
      await eventually(() => cp.waiters(2) === 1 && agentOf(cp.path)?.clients.length === 1, scaled(10000));
      agent = agentOf(cp.path)!.agent;
      Deno.kill(agent, "SIGSTOP");
      for (const args of [["status"], ["status", "--json"], ["status", "--all", "/dev/shm"]]) {
        const out = await bounded(start(bin, args, { env: { ...AGENT_ENV, ...cp.env } }), scaled(20000));
        assert.ok(!out.timedOut, `tst_checkpoint ${args.join(" ")} waited on a stopped agent`);
        assertExit(out, 0);
        if (args.length === 1) assert.match(out.stdout, new RegExp(`pid ${waiter.child.pid} .*through agent ${agent}`));
      }
    } finally {
      if (agent !== undefined) Deno.kill(agent, "SIGCONT");
      kill(waiter.child, "SIGKILL");
      await waiter.result;
      await agentEnds(cp.path);
    }
  },
);

behaviour("the agent watches its region through a descriptor it holds, not by its path", async () => {
  const cp = region();
  try {
    const pid = await agentReady(cp.env);
    const { ino } = Deno.statSync(cp.path);
    // its first look after the call opens it
    await eventually(() => {
      for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
        try {
          if (Deno.statSync(`/proc/${pid}/fd/${fd.name}`).ino === ino) return true;
        } catch { /* closed meanwhile */ }
      }
      return false;
    }, scaled(5000));
  } finally {
    await agentEnds(cp.path);
  }
});

behaviour({
  name:
    "without io_uring (seccomp), 40 clients on 40 ids: at most 28 wait in the agent, the rest cold, and no wake is lost",
  ignore: noPeer(),
  fn: async () => {
    const bin = await tool();
    const cp = region();
    const nosys = await compiled("nosys.c");
    // the agent, started by this call, inherits the filter: io_uring_setup (425) fails with EPERM
    const agent = await agentReady(cp.env, [nosys, "1", "425"]);
    assert.ok(!/^Seccomp:\s+0$/m.test(Deno.readTextFileSync(`/proc/${agent}/status`)), "the agent has no filter");
    const ids = Array.from({ length: 40 }, (_, i) => i);
    const waiters = ids.map((id) => start(bin, ["wait", "120000", `${id}`], { env: { ...AGENT_ENV, ...cp.env } }));
    try {
      await eventually(() => ids.every((id) => cp.waiters(id) === 1), scaled(60000));
      assert.equal(agentOf(cp.path)!.agent, agent);
      assert.ok(agentOf(cp.path)!.clients.length <= 28, `${agentOf(cp.path)!.clients.length} wait in the agent`);
      // back to back from one process: words sharing a call would lose wakes here
      for (const id of ids) cp.wakeSync(id, 1, scaled(10000));
      for (const w of waiters) {
        const out = await bounded(w, scaled(20000));
        assert.ok(!out.timedOut, "a wake was lost");
        assertExit(out, 0);
      }
    } finally {
      for (const w of waiters) kill(w.child, "SIGKILL");
      await Promise.all(waiters.map((w) => w.result));
      await agentEnds(cp.path);
    }
  },
});

Deno.test("the installed tool's resident agent", async (t) => {
  // a folder every user may read, for the steps run as nobody
  const root = Deno.makeTempDirSync({ dir: "/tmp", prefix: "ltp-checkpoint-agent-test-" });
  try {
    Deno.chmodSync(root, 0o755);
    const out = await run(Deno.execPath(), ["run", "--allow-all", `${ROOT}/tools/install.ts`, "--root", root]);
    assertExit(out, 0);
    installed = `${root}/bin/tst_checkpoint`;
    for (const step of behaviours) await t.step({ ...step, ignore: step.ignore ?? false });
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
