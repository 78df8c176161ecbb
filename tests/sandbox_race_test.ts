/**
 * Races against another process: with `--allow-read=DIR --allow-write=DIR` the module and the CLI create nothing
 * outside DIR while a folder of the path is swapped for a symlink or moved out, unlink nothing outside DIR, and
 * init never shrinks a file that another process is writing. Each race is bounded in time (scaled by
 * LTP_TIMEOUT_MUL), counts what went wrong, and checks that it was not vacuous; the other side is
 * tests/sandbox_race.c.
 */
import assert from "node:assert/strict";
import { assertExit, assertNoStackTrace } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { filesBelow } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { compiled, haveGcc } from "../testing/peer.ts";
import { asNobody, commandExists, kill, NOBODY, run, start } from "../testing/process.ts";
import { sandboxFlags, script, workspace } from "../testing/sandbox.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const DENO = Deno.execPath();
const IS_ROOT = Deno.uid() === 0;

// ---------------------------------------------------------------------------
// A folder of the path swapped for a symlink while init runs

/** A script that calls `Checkpoint.init(FOLDER/mN)` for MS milliseconds and prints what happened as JSON. */
const INIT_LOOP = `
const [folder, ms] = Deno.args;
const end = performance.now() + Number(ms);
let made = 0;
const errors: Record<string, number> = {};
for (let i = 0; performance.now() < end; i++) {
  try {
    Checkpoint.init(folder + "/m" + i).close();
    made++;
  } catch (e) {
    const name = e instanceof Error ? e.name : "not an Error";
    errors[name] = (errors[name] ?? 0) + 1;
  }
}
console.log(JSON.stringify({ made, errors }));`;

/**
 * DIR/d/sub is a folder, DIR/d/link a symlink to OUTSIDE; a C process
 * exchanges the two names in a tight loop while a sandboxed module child and
 * the sandboxed CLI run init on fresh names in DIR/d/sub. Whatever lands
 * outside DIR is an escape. `attacker` nobody: the swapper runs as nobody
 * and owns DIR/d, while the module and the CLI run as root.
 */
async function raceFolderSwap(attacker: "self" | "nobody") {
  const race = await compiled("sandbox_race.c");
  using w = workspace();
  const folder = `${w.dir}/d`;
  const sub = `${folder}/sub`;
  const link = `${folder}/link`;
  Deno.mkdirSync(sub, { recursive: true });
  Deno.symlinkSync(w.outside, link);
  if (attacker === "nobody") {
    Deno.chmodSync(w.root, 0o711);
    Deno.chmodSync(w.dir, 0o711);
    Deno.chownSync(folder, NOBODY, NOBODY);
    Deno.chownSync(sub, NOBODY, NOBODY); // never chown the link: chown follows it to OUTSIDE
  }
  const ms = scaled(3000);
  const flags = sandboxFlags(w.dir);
  const [cmd, args] = attacker === "nobody"
    ? asNobody(race, ["swap", sub, link, String(ms / 1000 + 5)])
    : [race, ["swap", sub, link, String(ms / 1000 + 5)]];
  const swapper = start(cmd, args);
  const moduleChild = start(DENO, ["run", "--quiet", ...flags, script(w.root, "loop", INIT_LOOP), sub, String(ms)]);
  const cliCodes: Record<number, number> = {};
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    const r = await run(DENO, ["run", "--quiet", ...flags, CLI, "init"], { env: { LTP_IPC_PATH: `${sub}/c${i}` } });
    cliCodes[r.code] = (cliCodes[r.code] ?? 0) + 1;
    assertNoStackTrace(r.stderr, "the CLI");
  }
  const moduleResult = await moduleChild.result;
  kill(swapper.child, "SIGTERM");
  const swaps = await swapper.result;

  assertExit(swaps, 0);
  assert.ok(Number(swaps.stdout) > 0, `the swapper made no exchange: ${swaps.stdout}`);
  assertExit(moduleResult, 0);
  const loop = JSON.parse(moduleResult.stdout);
  const escaped = await filesBelow(w.outside);
  const summary = `${escaped.length} files created in OUTSIDE (${escaped.slice(0, 3).join(", ")}...); ` +
    `module: ${moduleResult.stdout.trim()}; CLI exit codes: ${JSON.stringify(cliCodes)}; ${swaps.stdout.trim()} swaps`;
  assert.deepEqual(escaped.length, 0, summary);
  if (attacker === "nobody") {
    // a folder of another user's is never trusted (tests/confinement_test.ts): every init refused before it creates
    assert.equal(loop.made, 0, summary);
    assert.deepEqual(Object.keys(cliCodes), ["2"], summary);
    return;
  }
  // not vacuous: while the real folder was in place, inits went through
  assert.ok(loop.made > 0, `the module never made a region: ${summary}`);
  assert.ok((cliCodes[0] ?? 0) > 0, `the CLI never made a region: ${summary}`);
}

Deno.test(
  "a folder swapped for a symlink to OUTSIDE while init runs: the sandboxed module and CLI create nothing outside DIR",
  () => raceFolderSwap("self"),
);

Deno.test({
  name: "across users: root's module and CLI create nothing outside DIR while nobody swaps a folder it owns " +
    "(root only; ignore: Deno.uid() !== 0)",
  ignore: !IS_ROOT,
  fn: () => raceFolderSwap("nobody"),
});

// ---------------------------------------------------------------------------
// The folder moved out of DIR between the check and the create

/** A script that alternates init(FOLDER/mN) and create({ dir: FOLDER }) for MS milliseconds; prints JSON. */
const MOVED_LOOP = `
const [folder, ms] = Deno.args;
const end = performance.now() + Number(ms);
let made = 0;
const errors: Record<string, number> = {};
for (let i = 0; performance.now() < end; i++) {
  try {
    if (i % 2) Checkpoint.create({ dir: folder }).close();
    else Checkpoint.init(folder + "/m" + i).close();
    made++;
  } catch (e) {
    const name = e instanceof Error ? e.name : "not an Error";
    errors[name] = (errors[name] ?? 0) + 1;
  }
}
console.log(JSON.stringify({ made, errors }));`;

/** Files below `folder` whose group is `gid`, and how many files there are in all. */
async function filesOfGroup(folder: string, gid: number): Promise<{ marked: string[]; all: number }> {
  const all = await filesBelow(folder);
  return { marked: all.filter((path) => Deno.lstatSync(path).gid === gid), all: all.length };
}

/**
 * DIR/d, owned by nobody, gets a fresh folder DIR/d/sub again and again,
 * which nobody moves out to OUTSIDE/g<i> soon after (tests/sandbox_race.c
 * move: it marks each folder it moved out, so that a file created in it
 * afterwards has nobody's group). Root's sandboxed module (init and
 * create({ dir })) and CLI make regions in DIR/d/sub meanwhile: a file of
 * nobody's group left anywhere was created outside DIR and kept.
 * `withoutOpenat2`: the module and the CLI run under tests/nosys.c, as on
 * a kernel before 5.6, where the folder is checked after the create.
 */
async function raceMovedFolder(withoutOpenat2: boolean) {
  const race = await compiled("sandbox_race.c");
  const wrap = withoutOpenat2 ? [await compiled("nosys.c"), "38", "437"] : [];
  using w = workspace();
  const folder = `${w.dir}/d`;
  const sub = `${folder}/sub`;
  Deno.mkdirSync(folder);
  for (const path of [w.root, w.dir]) Deno.chmodSync(path, 0o711);
  for (const path of [folder, w.outside]) Deno.chownSync(path, NOBODY, NOBODY);
  const ms = scaled(3000);
  const flags = sandboxFlags(w.dir);
  const mover = start(...asNobody(race, ["move", sub, w.outside, String(ms / 1000 + 5)]));
  const deno = (args: string[], env?: Record<string, string>) =>
    withoutOpenat2 ? run(wrap[0], [...wrap.slice(1), DENO, ...args], { env }) : run(DENO, args, { env });
  const moduleChild = deno(["run", "--quiet", ...flags, script(w.root, "moved", MOVED_LOOP), sub, String(ms)]);
  const cliCodes: Record<number, number> = {};
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    const r = await deno(["run", "--quiet", ...flags, CLI, "init"], { LTP_IPC_PATH: `${sub}/c${i}` });
    cliCodes[r.code] = (cliCodes[r.code] ?? 0) + 1;
    assertNoStackTrace(r.stderr, "the CLI");
  }
  const moduleResult = await moduleChild;
  kill(mover.child, "SIGTERM");
  const moves = await mover.result;

  assertExit(moves, 0);
  assertExit(moduleResult, 0);
  const loop = JSON.parse(moduleResult.stdout);
  const { marked, all } = await filesOfGroup(w.root, NOBODY);
  const moved = (await filesBelow(w.outside)).length - marked.length;
  const summary = `${marked.length} files created outside DIR and kept (${marked.slice(0, 3).join(", ")}); ` +
    `${all} files in all, ${moved} of them made inside and moved out with their folder; ` +
    `module: ${moduleResult.stdout.trim()}; CLI exit codes: ${JSON.stringify(cliCodes)}; ` +
    `${moves.stdout.trim()} folders moved out`;
  assert.deepEqual(marked.length, 0, summary);
  // DIR/d is nobody's, never trusted (tests/confinement_test.ts): every create refused before anything is made
  const left = [...await filesBelow(w.dir), ...await filesBelow(w.outside)].length;
  assert.deepEqual({ made: loop.made, left }, { made: 0, left: 0 }, summary);
  assert.deepEqual(Object.keys(cliCodes).filter((code) => code !== "0" && code !== "2"), [], summary);
  assert.ok(Number(moves.stdout) > 100, `the mover hardly moved: ${summary}`);
}

Deno.test({
  name: "a folder that nobody moves out of DIR while root's module and CLI create in it: nothing made outside DIR " +
    "is kept (needs root)",
  ignore: !IS_ROOT || !commandExists("setpriv"),
  fn: () => raceMovedFolder(false),
});

Deno.test({
  name: "the same without openat2 (a seccomp filter, as before Linux 5.6): nothing made outside DIR is kept " +
    "(needs root)",
  ignore: !IS_ROOT || !commandExists("setpriv") || !haveGcc(),
  fn: () => raceMovedFolder(true),
});

Deno.test("close() and remove() never unlink outside DIR: a folder moved out after the create keeps its region", async () => {
  using w = workspace();
  Deno.mkdirSync(`${w.dir}/a`);
  Deno.mkdirSync(`${w.dir}/b`);
  const body = `
    const [dir] = Deno.args;
    const created = Checkpoint.create({ dir: dir + "/a" });
    const inited = Checkpoint.init(dir + "/b/r");
    console.log("ready");
    await Deno.stdin.read(new Uint8Array(1)); // the folders are moved out meanwhile
    created.close();
    inited.remove();`;
  const child = new Deno.Command(DENO, {
    args: ["run", "--quiet", ...sandboxFlags(w.dir), script(w.root, "moved-away", body), w.dir],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const ready = await lines.read();
  Deno.renameSync(`${w.dir}/a`, `${w.outside}/a`);
  Deno.renameSync(`${w.dir}/b`, `${w.outside}/b`);
  const writer = child.stdin.getWriter();
  await writer.write(new Uint8Array([10]));
  await writer.close();
  while (!(await lines.read()).done);
  const { code } = await child.status;
  assert.deepEqual({ ready: ready.value, code }, { ready: "ready\n", code: 0 }, await stderr);
  assert.equal((await filesBelow(w.outside)).length, 2, "both regions are still where their folders went");
});

// ---------------------------------------------------------------------------
// init never shrinks or overwrites data another process wrote

Deno.test("init never shrinks a file another process is writing: a bounded race against a writer", async () => {
  const race = await compiled("sandbox_race.c");
  using w = workspace();
  const count = 2000;
  const ms = scaled(4000);
  // the writer fills DIR/f<i> with 8192 bytes as soon as it appears; the module child makes each one empty, then inits it
  const writer = start(race, ["writer", w.dir, String(count), String(ms / 1000 + 10)]);
  const body = `
    const [dir, count, ms] = Deno.args;
    const end = performance.now() + Number(ms);
    let made = 0, refused = 0, i = 0;
    for (; i < Number(count) && performance.now() < end; i++) {
      Deno.writeFileSync(dir + "/f" + i, new Uint8Array(0));
      try {
        Checkpoint.init(dir + "/f" + i).close();
        made++;
      } catch {
        refused++;
      }
    }
    console.log(JSON.stringify({ files: i, made, refused }));`;
  const child = await run(DENO, [
    "run",
    "--quiet",
    ...sandboxFlags(w.dir),
    script(w.root, "writer-race", body),
    w.dir,
    String(count),
    String(ms),
  ]);
  await new Promise((r) => setTimeout(r, 50)); // let the writer finish the last file
  kill(writer.child, "SIGTERM"); // unless it wrote all `count` files and ended
  const wrote = await writer.result;
  assertExit(child, 0);
  assertExit(wrote, 0);
  const written = Number(wrote.stdout);
  assert.ok(written > 0, `the writer wrote nothing: ${wrote.stdout}`);
  let shrunk = 0;
  let stamped = 0;
  for (let i = 0; i < written; i++) {
    const bytes = Deno.readFileSync(`${w.dir}/f${i}`);
    if (bytes.length < 8192) shrunk++;
    else if (!bytes.every((b) => b === 0x78)) stamped++;
  }
  assert.equal(
    shrunk,
    0,
    `${shrunk} of ${written} files the writer filled with 8192 bytes are shorter now ` +
      `(module: ${child.stdout.trim()}; ${stamped} more keep their length but not all the writer's bytes)`,
  );
});
