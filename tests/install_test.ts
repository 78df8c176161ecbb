/** tools/install.ts: a tst_checkpoint that stands alone, its hints, its broken set-up, and the README's example. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run, type RunOptions, start } from "../testing/process.ts";

forgetCallerEnv();

/**
 * What the installer needs of a checkout: the CLI's sources (cli.ts, bundled as cli.js), the agent's (agent/server.ts,
 * bundled as agent.js, and agent/client.sh, read into the launcher), the installer and a ./deno that runs this Deno.
 */
const SOURCES = ["cli.ts", "cli", "mod.ts", "deno.json", "deno", "src", "ffi", "agent", "tools/install.ts"];

/**
 * A copy of the checkout in `dir`, its pinned Deno a hard link to (or copy of) the running one, so that the
 * installer takes the Deno from inside the checkout, as it does from a real one.
 */
function copyCheckout(dir: string): string {
  const copy = `${dir}/checkout`;
  Deno.mkdirSync(`${copy}/tools/node_modules/.bin`, { recursive: true });
  for (const name of SOURCES) {
    const r = new Deno.Command("cp", { args: ["-a", `${ROOT}/${name}`, `${copy}/${name}`] }).outputSync();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
  }
  const bin = `${copy}/tools/node_modules/.bin/deno`;
  try {
    Deno.linkSync(Deno.execPath(), bin);
  } catch {
    Deno.copyFileSync(Deno.execPath(), bin);
    Deno.chmodSync(bin, 0o755);
  }
  return copy;
}

/** Installs from `checkout` into `root` with `args`; returns the launcher. */
async function install(checkout: string, root: string, args: string[] = []): Promise<string> {
  const r = await run(`${checkout}/deno`, ["run", "-A", "tools/install.ts", "--root", root, ...args], {
    cwd: checkout,
  });
  assertExit(r, 0);
  return `${root}/bin/tst_checkpoint`;
}

/** The caller's TST_CHECKPOINT_AGENT, kept where a child's environment is built whole: CI runs the suite once with 0. */
const AGENT_CHOICE = Deno.env.get("TST_CHECKPOINT_AGENT");
const AGENT: Record<string, string> = AGENT_CHOICE === undefined ? {} : { TST_CHECKPOINT_AGENT: AGENT_CHOICE };

/** The environment of a shell test: PATH with the installed tool first, no LTP_* of the caller's. */
function shellEnv(root: string): RunOptions {
  return { clearEnv: true, env: { PATH: `${root}/bin:/usr/bin:/bin`, ...AGENT } };
}

Deno.test("the installed tool stands alone: wait, wake, status and remove after the checkout is deleted", async () => {
  using dir = tempDir();
  const checkout = copyCheckout(dir.path);
  const tool = await install(checkout, `${dir.path}/root`);
  Deno.removeSync(checkout, { recursive: true });

  const cp = Checkpoint.create({ layout: "ltp" });
  try {
    const options = { clearEnv: true, env: { ...cp.env, ...AGENT } };
    // the waiter takes the cold path (the launcher execs Deno, which waits itself): the agent's waits are its own
    // (tests/agent_test.ts)
    const waiter = start(tool, ["wait", "10000", "1"], {
      clearEnv: true,
      env: { ...cp.env, TST_CHECKPOINT_AGENT: "0" },
    });
    await cp.waitForWaiters(1, 1, 10000);
    const status = await run(tool, ["status"], options);
    assertExit(status, 0);
    // /proc is allowed: the waiter is named (exec keeps the launcher's pid; the CLI names itself tst_checkpoint)
    assert.match(status.stdout, new RegExp(`checkpoint 1: 1 waiting: pid ${waiter.child.pid} \\(tst_checkpoint\\)`));
    assertExit(await run(tool, ["wake", "10000", "1", "1"], options), 0);
    assertExit(await waiter.result, 0);
    assertExit(await run(tool, ["remove"], options), 0);
    assert.throws(() => Deno.lstatSync(cp.path), Deno.errors.NotFound);
    const again = await run(tool, ["remove"], options);
    assertExit(again, 2);
    assertOneLine(again.stderr, /^tst_checkpoint: TBROK: Nothing to remove: .* does not exist$/);
  } finally {
    cp.close();
  }
});

Deno.test("the installed tool's broken set-up (its Deno or its code gone) is one line and exit 2", async () => {
  using dir = tempDir();
  const root = `${dir.path}/root`;
  const tool = await install(copyCheckout(dir.path), root);
  using cp = Checkpoint.create();
  // the install's code folder (one per install, named by its identity)
  const lib = `${root}/lib/tst_checkpoint/${[...Deno.readDirSync(`${root}/lib/tst_checkpoint`)][0].name}`;
  // the bundle (Deno 2.4 and later), or else the entry among the sources
  const code = listing(lib).includes("cli.js") ? "cli.js" : "cli.ts";
  Deno.renameSync(`${lib}/${code}`, `${dir.path}/code`);
  const noCode = await run(tool, ["wait", "10", "0"], { env: cp.env });
  assertExit(noCode, 2);
  assertOneLine(
    noCode.stderr,
    /^tst_checkpoint: TBROK: its code is gone \(.*\): reinstall it: cd .*tools\/install\.ts --root /,
  );
  Deno.renameSync(`${dir.path}/code`, `${lib}/${code}`);
  Deno.removeSync(`${lib}/deno`);
  const noDeno = await run(tool, ["wake", "10", "0", "0"], { env: cp.env });
  assertExit(noDeno, 2);
  assertOneLine(
    noDeno.stderr,
    /^tst_checkpoint: TBROK: the Deno it was installed with is gone \(.*\/deno\): reinstall/,
  );
});

Deno.test({
  name: "an installed tool's missing permission says how to reinstall with it, normalised, and that works as printed",
  ignore: (() => {
    try {
      return !Deno.statSync("/var/tmp").isDirectory;
    } catch {
      return true;
    }
  })(),
  fn: async () => {
    using dir = tempDir();
    const outside = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "ltp-checkpoint-test-" });
    try {
      const root = `${dir.path}/root`;
      const tool = await install(copyCheckout(dir.path), root);
      const name = outside.slice(outside.lastIndexOf("/") + 1);
      const env = { LTP_IPC_PATH: `${outside}/../${name}/./region` };
      const refused = await run(tool, ["init"], { env });
      assertExit(refused, 2);
      const hint = `--allow-read=${outside} --allow-write=${outside}`;
      assertOneLine(refused.stderr, new RegExp(`is not allowed: reinstall with: cd .* --root ${root} ${hint}$`));
      assert.deepEqual(Array.from(Deno.readDirSync(outside)), []);

      const command = refused.stderr.trim().replace(/^.*reinstall with: /, "");
      assertExit(await run("sh", ["-c", command]), 0);
      assertExit(await run(tool, ["init"], { env }), 0);
      assertExit(await run(tool, ["remove"], { env }), 0);
      assert.deepEqual(Array.from(Deno.readDirSync(outside)), []);
    } finally {
      Deno.removeSync(outside, { recursive: true });
    }
  },
});

Deno.test("the README's shell example, run as written with the installed tool, leaves no region behind", async () => {
  using dir = tempDir();
  const root = `${dir.path}/root`;
  await install(copyCheckout(dir.path), root);
  const readme = Deno.readTextFileSync(`${ROOT}/README.md`);
  const example = readme.match(/```sh\n(eval "\$\(tst_checkpoint init[^`]*)```/)?.[1];
  assert.ok(example, "the README's shell example is missing");
  const r = await run("sh", ["-c", `${example}echo "region: $LTP_IPC_PATH"`], shellEnv(root));
  assertExit(r, 0);
  assert.match(r.stdout, /child: woken/);
  const path = r.stdout.match(/^region: (\/.+)$/m)?.[1];
  assert.ok(path, r.stdout);
  assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound, `${path} was left behind`);
});

Deno.test("LTP's shell helpers work unchanged with the standalone install first on PATH", async () => {
  using dir = tempDir();
  const root = `${dir.path}/root`;
  await install(copyCheckout(dir.path), root);
  const r = await run("sh", [`${ROOT}/tests/fixtures/ltp_style.sh`], shellEnv(root));
  assertExit(r, 0);
  assert.match(r.stdout, /TPASS: all children woken together/);
  assert.match(r.stdout, /TPASS: handshake/);
  assert.match(r.stdout, /TPASS: a wake before its wait/);
  assert.match(r.stdout, /TPASS: a wait with nobody to wake it times out \(exit 1\)/);
});
