/**
 * Nothing is made where another user can move it, and nothing is walked before it is checked: a region is reached
 * beneath the allowed folder one folder at a time, each this user's or root's and written by no one else unless
 * sticky, through no symlink and into no other file system. The other side of the races is tests/confinement.c.
 */
import assert from "node:assert/strict";
import { shellQuote } from "../src/text.ts";
import { assertExit, assertNoStackTrace, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { filesBelow, tempDir } from "../testing/files.ts";
import { endStaller, fuseServing, startStaller } from "../testing/fuse.ts";
import { CLI } from "../testing/paths.ts";
import { compiled, noPeer } from "../testing/peer.ts";
import { asNobody, commandExists, kill, NOBODY, run, start } from "../testing/process.ts";
import { sandboxFlags, script, workspace } from "../testing/sandbox.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const DENO = Deno.execPath();
const IS_ROOT = Deno.uid() === 0;

/** Init and remove, create and close, in FOLDER for MS milliseconds; prints what happened as JSON. */
const CYCLE_LOOP = `
const [folder, ms] = Deno.args;
const end = performance.now() + Number(ms);
let made = 0;
const errors: Record<string, number> = {};
const messages = new Set<string>();
for (let i = 0; performance.now() < end; i++) {
  try {
    if (i % 2) Checkpoint.create({ dir: folder }).close();
    else Checkpoint.init(folder + "/m" + i).remove();
    made++;
  } catch (e) {
    const name = e instanceof Error ? e.name : "not an Error";
    errors[name] = (errors[name] ?? 0) + 1;
    if (messages.size < 4 && e instanceof Error) messages.add(e.message.replace(/m\\d+$/, "mN"));
  }
}
console.log(JSON.stringify({ made, errors, messages: [...messages] }));`;

Deno.test({
  name: "another user cycles its folder in DIR out and back: root's module and CLI refuse it, naming its owner, " +
    "and leave nothing outside DIR and nothing inside (needs root)",
  ignore: !IS_ROOT || !commandExists("setpriv") || noPeer(),
  async fn() {
    const cycler = await compiled("confinement.c");
    using w = workspace();
    const folder = `${w.dir}/d`;
    Deno.mkdirSync(folder);
    // DIR as /tmp is: sticky and open to all, so that nobody may rename a folder of its own in it
    Deno.chmodSync(w.root, 0o711);
    Deno.chmodSync(w.dir, 0o1777);
    for (const path of [folder, w.outside]) Deno.chownSync(path, NOBODY, NOBODY);
    const ms = scaled(3000);
    const flags = sandboxFlags(w.dir);
    const mover = start(...asNobody(cycler, ["cycle", folder, `${w.outside}/d`, String(ms / 1000 + 5)]));
    const moduleChild = run(DENO, [
      "run",
      "--quiet",
      ...flags,
      script(w.root, "cycle", CYCLE_LOOP),
      folder,
      String(ms),
    ]);
    const cliLines = new Map<string, number>();
    const cliCodes: Record<number, number> = {};
    const end = performance.now() + ms;
    for (let i = 0; performance.now() < end; i++) {
      const env = { LTP_IPC_PATH: `${folder}/c${i}` };
      for (const command of ["init", "remove"]) {
        const r = await run(DENO, ["run", "--quiet", ...flags, CLI, command], { env });
        cliCodes[r.code] = (cliCodes[r.code] ?? 0) + 1;
        assertNoStackTrace(r.stderr, "the CLI");
        const line = r.stderr.trim().replace(/c\d+/, "cN");
        cliLines.set(line, (cliLines.get(line) ?? 0) + 1);
      }
    }
    const moduleResult = await moduleChild;
    kill(mover.child, "SIGTERM");
    const moves = await mover.result;
    assertExit(moves, 0);
    assertExit(moduleResult, 0);
    const loop = JSON.parse(moduleResult.stdout);
    const outside = await filesBelow(w.outside);
    const inside = await filesBelow(w.dir);
    const summary =
      `${outside.length} files left outside DIR, ${inside.length} inside; module: ${moduleResult.stdout.trim()}; ` +
      `CLI: ${JSON.stringify(cliCodes)} ${JSON.stringify([...cliLines])}; ${moves.stdout.trim()} moves out`;
    assert.deepEqual({ outside: outside.length, inside: inside.length }, { outside: 0, inside: 0 }, summary);
    assert.ok(Number(moves.stdout) > 100, `the cycler hardly moved: ${summary}`);
    // every attempt refused, and each message true: the owner named, or the folder missing at that instant
    assert.equal(loop.made, 0, summary);
    assert.deepEqual(Object.keys(cliCodes), ["2"], summary);
    const truthful = /belongs to uid 65534.*another user|does not exist|was moved out while it was being opened/;
    for (const line of [...cliLines.keys(), ...loop.messages]) assert.match(line, truthful, summary);
    assert.ok([...cliLines.keys()].some((line) => /belongs to uid 65534/.test(line)), summary);
  },
});

Deno.test("a folder others may write is refused unless sticky; the allowed folder's own folders are fine", async () => {
  using w = workspace();
  Deno.mkdirSync(`${w.dir}/open`);
  Deno.chmodSync(`${w.dir}/open`, 0o777);
  Deno.mkdirSync(`${w.dir}/sticky`);
  Deno.chmodSync(`${w.dir}/sticky`, 0o1777);
  Deno.mkdirSync(`${w.dir}/mine/deeper`, { recursive: true });
  const flags = sandboxFlags(w.dir);
  const init = (path: string) => run(DENO, ["run", "--quiet", ...flags, CLI, "init"], { env: { LTP_IPC_PATH: path } });
  const open = await init(`${w.dir}/open/r`);
  assertExit(open, 2);
  assertOneLine(open.stderr, /The folder .*\/open \(uid \d+.*mode 0777\) may be written by other users.*chmod \+t/);
  for (const path of [`${w.dir}/sticky/r`, `${w.dir}/mine/deeper/r`]) assertExit(await init(path), 0);
  assert.deepEqual((await filesBelow(w.dir)).sort(), [`${w.dir}/mine/deeper/r`, `${w.dir}/sticky/r`]);
  assert.deepEqual(await filesBelow(w.outside), []);
});

Deno.test("a symlink below the allowed folder is refused before anything is walked through it", async () => {
  using w = workspace();
  Deno.mkdirSync(`${w.dir}/real/sub`, { recursive: true });
  Deno.symlinkSync(`${w.dir}/real`, `${w.dir}/link`);
  const flags = sandboxFlags(w.dir);
  const r = await run(DENO, ["run", "--quiet", ...flags, CLI, "init"], {
    env: { LTP_IPC_PATH: `${w.dir}/link/sub/r` },
  });
  assertExit(r, 2);
  assertOneLine(r.stderr, /link is a symbolic link: name the folder it points to instead/);
  const listed = await run(DENO, ["run", "--quiet", "--allow-all", CLI, "status", "--all", `${w.dir}/link/sub/`]);
  assertExit(listed, 0);
  assert.match(listed.stdout, /link\/sub\/ skipped: .*link is a symbolic link/);
  assert.deepEqual(await filesBelow(w.dir), []);
});

Deno.test("the defaults still work where /dev/shm and /tmp are mounts of their own: with -A and with those folders", async () => {
  const body = `
    const cp = Checkpoint.create();
    console.log(cp.path.startsWith("/dev/shm/") ? "shm" : cp.path);
    cp.close();`;
  using dir = tempDir();
  for (
    const flags of [
      ["--allow-all"],
      ["--allow-ffi", "--allow-env", "--allow-read=/dev/shm,/tmp,/proc", "--allow-write=/dev/shm,/tmp"],
    ]
  ) {
    const r = await run(DENO, ["run", "--quiet", ...flags, script(dir.path, "defaults", body)]);
    assertExit(r, 0);
    assert.equal(r.stdout.trim(), "shm", r.stderr);
    const tmp = await run(DENO, ["run", "--quiet", ...flags, CLI, "init"], {
      env: { LTP_IPC_PATH: `/tmp/ltp_cf_${Deno.pid}` },
    });
    assertExit(tmp, 0);
    assertExit(
      await run(DENO, ["run", "--quiet", ...flags, CLI, "remove"], {
        env: { LTP_IPC_PATH: `/tmp/ltp_cf_${Deno.pid}` },
      }),
      0,
    );
  }
});

Deno.test("status --all refuses a folder through /proc (another mount namespace's view) in one note", async () => {
  const r = await run(DENO, ["run", "--quiet", "--allow-all", CLI, "status", "--all", `/proc/${Deno.pid}/root/tmp/`]);
  assertExit(r, 0);
  assert.match(r.stdout, /root\/tmp\/ skipped: .* leads through \/proc/);
  assert.doesNotMatch(r.stdout, /^path:/m);
});

/** Runs `command` in a private mount namespace where a tmpfs is mounted on `mountPoint`. */
function inPrivateMount(mountPoint: string, command: string[]): Promise<import("../testing/process.ts").Result> {
  const quoted = command.map((arg) => shellQuote(arg)).join(" ");
  return run("unshare", [
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount -t tmpfs none ${mountPoint} && ${quoted}`,
  ]);
}

for (const withoutOpenat2 of [false, true]) {
  Deno.test({
    name: "another file system below the allowed folder is entered only where root alone could have mounted it " +
      `(as /dev/shm in /dev), never where others may write${
        withoutOpenat2 ? ", without openat2 too (the mount id compared)" : ""
      } (needs root)`,
    ignore: !IS_ROOT || !commandExists("unshare"),
    async fn() {
      using w = workspace();
      Deno.mkdirSync(`${w.dir}/m`);
      Deno.mkdirSync(`${w.dir}/open/m`, { recursive: true });
      Deno.chmodSync(`${w.dir}/open`, 0o1777);
      const wrap = withoutOpenat2 ? [await compiled("nosys.c"), "38", "437"] : [];
      const cli = [...wrap, DENO, "run", "--quiet", ...sandboxFlags(w.dir), CLI];
      const rootOnly = await inPrivateMount(`${w.dir}/m`, ["env", `LTP_IPC_PATH=${w.dir}/m/r`, ...cli, "init"]);
      assertExit(rootOnly, 0);
      const shared = await inPrivateMount(`${w.dir}/open/m`, ["env", `LTP_IPC_PATH=${w.dir}/open/m/r`, ...cli, "init"]);
      assertExit(shared, 2);
      assertOneLine(
        shared.stderr,
        /open\/m is another file system \(tmpfs\) mounted below the allowed folder: refused/,
      );
      assert.deepEqual(await filesBelow(w.dir), [], "the tmpfs, and the region in it, went with its namespace");
    },
  });
}

Deno.test({
  name:
    "a FUSE file system on the region, or behind a symlink, is refused in one line and never waited on (needs root)",
  ignore: !IS_ROOT || noPeer() || !commandExists("nsenter"),
  async fn(t) {
    using w = workspace();
    Deno.mkdirSync(`${w.dir}/sub`);
    const trap = `${w.dir}/sub/ltp_trap`;
    Deno.writeFileSync(trap, new Uint8Array(4096));
    Deno.symlinkSync(`${w.dir}/sub`, `${w.dir}/link`);
    const { staller, release } = await startStaller(["--file", trap]);
    try {
      if (!await fuseServing(staller, t, release)) return;
      const inMount = (env: string[], args: string[]) =>
        run("nsenter", [
          "-t",
          `${staller.pid}`,
          "-m",
          "env",
          ...env,
          DENO,
          "run",
          "--quiet",
          "--allow-all",
          CLI,
          ...args,
        ], {
          signal: AbortSignal.timeout(scaled(20000)),
        });
      for (const command of [["status"], ["init"], ["remove"], ["wait", "1000", "0"]]) {
        const on = await inMount([`LTP_IPC_PATH=${trap}`], command);
        assertExit(on, 2);
        assertOneLine(on.stderr, /ltp_trap has another file system mounted on it: refused, never looked into/);
        const through = await inMount([`LTP_IPC_PATH=${w.dir}/link/ltp_trap`], command);
        assertExit(through, 2);
        assertOneLine(through.stderr, /link is a symbolic link/);
      }
      const listed = await inMount([], ["status", "--all", `${w.dir}/link/`]);
      assertExit(listed, 0);
      assert.match(listed.stdout, /skipped: .*link is a symbolic link/);
    } finally {
      await endStaller(staller, release);
    }
  },
});
