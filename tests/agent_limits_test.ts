/**
 * The installed launcher under resource limits (ulimit), with real processes: a limit a Deno start cannot run under
 * (open files, stack, address space) or one the tool cannot write a region's page under (file size) is one TBROK line
 * that names it, exit 2, never a crash inside Deno; at the limits it measured it runs; and an agent that already
 * serves the region takes the calls, since the caller then starts no Deno.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { ROOT } from "../testing/paths.ts";
import { alive, type Result, run, start } from "../testing/process.ts";
import { eventually, scaled } from "../testing/timing.ts";

forgetCallerEnv();

const BASE = `/tmp/tst_checkpoint-${Deno.uid()}`;
const AGENT_ENV = { TST_CHECKPOINT_AGENT: "1", TST_CHECKPOINT_AGENT_IDLE: "10" };
const GIB = 1024 * 1024; // in ulimit -v's KiB
/** Limits below what a Deno start (or a region's page) needs, as issue reports gave them, and what each is called. */
const LOW: [string, string, string][] = [
  ["-n", "16", "open-files"],
  ["-s", "64", "stack"],
  ["-v", `${2 * GIB}`, "address-space"],
  ["-f", "0", "file-size"],
];
/** At or above what the launcher asks for, on every Deno the project supports. */
const ENOUGH: [string, string][] = [["-n", "32"], ["-s", "512"], ["-v", `${68 * GIB}`], ["-f", "8"]];

/** Runs the launcher by /bin/sh under `ulimit flag value`. */
function under(tool: string, flag: string, value: string, args: string[], env: Record<string, string>) {
  return run("/bin/sh", ["-c", `ulimit ${flag} ${value} && exec "$0" "$@"`, tool, ...args], { env });
}

function agentOf(path: string): number | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${BASE}/${path.replaceAll("/", "%")}/clients`)).agent;
  } catch {
    return undefined;
  }
}

function assertTbrok(out: Result, flag: string, value: string, what: string): void {
  assertExit(out, 2);
  assertOneLine(
    out.stderr,
    new RegExp(`^tst_checkpoint: TBROK: the ${what} limit \\(ulimit ${flag} ${value}\\) is below`),
  );
}

let tool = "";

Deno.test("the installed tool under resource limits", async (t) => {
  const root = Deno.makeTempDirSync({ dir: "/tmp", prefix: "ltp-checkpoint-limits-test-" });
  try {
    assertExit(await run(Deno.execPath(), ["run", "--allow-all", `${ROOT}/tools/install.ts`, "--root", root]), 0);
    tool = `${root}/bin/tst_checkpoint`;

    await t.step("a limit Deno cannot start under is one TBROK line naming it, exit 2, agent or not", async () => {
      const cp = Checkpoint.create({ layout: "ltp" });
      try {
        for (const [flag, value, what] of LOW) {
          for (const agent of ["0", "1"]) {
            const out = await under(tool, flag, value, ["wake", "1000", "1", "0"], {
              ...cp.env,
              ...AGENT_ENV,
              TST_CHECKPOINT_AGENT: agent,
            });
            assertTbrok(out, flag, value, what);
            assert.equal(agentOf(cp.path), undefined, `an agent was started under ulimit ${flag} ${value}`);
          }
        }
      } finally {
        cp.remove();
      }
    });

    await t.step("at the limits the launcher asks for, calls run, init included", async () => {
      for (const [flag, value] of ENOUGH) {
        const path = `/dev/shm/ltp_checkpoint_limits_${Deno.pid}_${flag.slice(1)}`;
        try {
          const env = { LTP_IPC_PATH: path, TST_CHECKPOINT_AGENT: "0" };
          assertExit(await under(tool, flag, value, ["init"], env), 0);
          assert.equal(Deno.statSync(path).size, 4096);
          assertExit(await under(tool, flag, value, ["wake", "1000", "1", "0"], env), 0);
          assertExit(await under(tool, flag, value, ["status"], env), 0);
        } finally {
          try {
            Deno.removeSync(path);
          } catch { /* not made */ }
        }
      }
    });

    await t.step("an agent that serves the region takes calls under limits no Deno could start under", async () => {
      const cp = Checkpoint.create({ layout: "ltp" });
      const env = { ...cp.env, ...AGENT_ENV };
      let agent: number | undefined;
      try {
        // the first call for a region starts its agent, which comes up while that call runs cold
        assertExit(await run(tool, ["wake", "1000", "1", "0"], { env }), 0);
        await eventually(() => agentOf(cp.path) !== undefined, scaled(10_000));
        agent = agentOf(cp.path);
        for (const [flag, value] of LOW.slice(0, 3)) {
          // a waiter counted by the kernel, and woken, through the agent
          const waiter = start("/bin/sh", [
            "-c",
            `ulimit ${flag} ${value} && exec "$0" "$@"`,
            tool,
            "wait",
            "20000",
            "2",
          ], {
            env,
          });
          await eventually(() => cp.waiters(2) === 1, scaled(10_000));
          assertExit(await under(tool, flag, value, ["wake", "5000", "2", "1"], env), 0);
          assertExit(await waiter.result, 0);
          assert.equal(agentOf(cp.path), agent);
        }
        // the client writes its claim: under -f 0 it cannot, and no Deno can start to write anything either
        assertTbrok(await under(tool, "-f", "0", ["wake", "1000", "1", "0"], env), "-f", "0", "file-size");
      } finally {
        cp.remove();
        if (agent !== undefined) {
          try {
            await eventually(() => !alive(agent!), scaled(5000));
          } finally {
            if (alive(agent)) Deno.kill(agent, "SIGKILL");
          }
        }
      }
    });

    await t.step("an open-files limit too low for an agent's channel runs the call cold and starts none", async () => {
      const cp = Checkpoint.create({ layout: "ltp" });
      // a copy of the launcher that notes each agent it starts
      const logged = `${tool}.logged`;
      const log = `${tool}.log`;
      const text = Deno.readTextFileSync(tool);
      assert.ok(text.includes("tc_agent() { exec "));
      Deno.writeTextFileSync(logged, text.replace("tc_agent() { exec ", `tc_agent() { echo started >>'${log}'; exec `));
      Deno.chmodSync(logged, 0o755);
      const started = () => {
        try {
          return Deno.readTextFileSync(log).split("\n").filter(Boolean).length;
        } catch {
          return 0;
        }
      };
      // the agent's own limit, which the launcher carries
      const least = Number(text.match(/^tc_nofile=([0-9]+)$/m)![1]);
      try {
        // between what the client needs and what an agent needs: the client goes cold without starting one
        for (const value of ["40", `${least - 1}`]) {
          assertExit(await under(logged, "-n", value, ["wake", "1000", "1", "0"], { ...cp.env, ...AGENT_ENV }), 0);
          assert.equal(agentOf(cp.path), undefined);
          assert.equal(started(), 0, `an agent was started under ulimit -n ${value}, which it refuses`);
        }
        // at the agent's own limit, an agent starts and serves
        assertExit(await under(logged, "-n", `${least}`, ["wake", "1000", "1", "0"], { ...cp.env, ...AGENT_ENV }), 0);
        assert.equal(started(), 1);
        await eventually(() => agentOf(cp.path) !== undefined, scaled(10_000));
      } finally {
        const agent = agentOf(cp.path);
        cp.remove();
        if (agent !== undefined) {
          try {
            await eventually(() => !alive(agent), scaled(5000));
          } finally {
            if (alive(agent)) Deno.kill(agent, "SIGKILL");
          }
        }
      }
    });
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
