/**
 * `Checkpoint.create({ dir })`: a private, self-removing region in a folder
 * of the caller's choice, for a job allowed nothing but its own folder; and
 * where create() goes without `dir`: /dev/shm, else the temporary folder,
 * else one line naming both ways out.
 */
import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { runScript } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

/** A child's flags: FFI and `dirs` only, plus `extra`. */
function only(dirs: string[], extra: string[] = []): string[] {
  return ["--allow-ffi", `--allow-read=${dirs}`, `--allow-write=${dirs}`, "--no-prompt", ...extra];
}

/** Runs `body` after an import of the module; the caller's LTP_IPC_* and TMPDIR never reach it. */
function child(body: string, flags: string[], env: Record<string, string> = {}) {
  const clean = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) => !name.startsWith("LTP_IPC_") && name !== "TMPDIR"),
  );
  return runScript(`import { Checkpoint } from "${ROOT}/mod.ts";\n${body}`, flags, {
    env: { ...clean, ...env },
    clearEnv: true,
  });
}

/** A script that prints the error of `call` as `Name: message`, or `made PATH`. */
function attempt(call: string): string {
  return `try {
    const cp = ${call};
    console.log("made " + cp.path);
    cp.close();
  } catch (e) {
    console.log(e.name + ": " + e.message);
  }`;
}

Deno.test("create({ dir }) with only that folder allowed: wait and wake work, close() and using leave it empty", async () => {
  using job = tempDir();
  const ms = scaled(10000);
  const r = await child(
    `const dir = ${JSON.stringify(job.path)};
    const cp = Checkpoint.create({ dir });
    const facts = { inDir: cp.path.startsWith(dir + "/ltp_checkpoint_"), mode: Deno.statSync(cp.path).mode! & 0o777 };
    const waiting = cp.wait(0, ${ms});
    await cp.waitForWaiters(0, 1, ${ms});
    await cp.wake(0, 1, ${ms});
    await waiting;
    cp.close();
    const afterClose = [...Deno.readDirSync(dir)].length;
    {
      using scoped = Checkpoint.create({ dir });
      scoped.wakeSync(1, 0, ${ms});
    }
    console.log(JSON.stringify({ ...facts, afterClose, afterUsing: [...Deno.readDirSync(dir)].length }));`,
    only([job.path]),
  );
  assertExit(r, 0);
  assert.deepEqual(JSON.parse(r.stdout), { inDir: true, mode: 0o600, afterClose: 0, afterUsing: 0 });
  assert.deepEqual(listing(job.path), []);
});

Deno.test("without dir, and neither /dev/shm nor the temporary folder allowed, create() and init() say so in one line", async () => {
  using job = tempDir();
  const r = await child(
    `${attempt("Checkpoint.create()")}\n${attempt("Checkpoint.init()")}`,
    only([job.path], ["--allow-env=LTP_IPC_PATH"]),
  );
  assertExit(r, 0);
  const line = "NotCapable: A new region needs a folder it may write: give create({ dir }) or init(path) one that " +
    "is allowed, or run again with --allow-read=/dev/shm --allow-write=/dev/shm";
  assert.deepEqual(r.stdout.trim().split("\n"), [line, line]);
  assert.deepEqual(listing(job.path), []);
});

Deno.test("without dir and with /dev/shm not allowed, create() uses the temporary folder: TMPDIR, else /tmp", async () => {
  using job = tempDir();
  const viaTmpdir = await child(attempt("Checkpoint.create()"), only([job.path], ["--allow-env=TMPDIR"]), {
    TMPDIR: job.path,
  });
  assertExit(viaTmpdir, 0);
  assert.match(viaTmpdir.stdout, new RegExp(`^made ${job.path}/ltp_checkpoint_\\S+\\n$`));
  // TMPDIR that may not be read counts as unset: /tmp
  const viaTmp = await child(attempt("Checkpoint.create()"), only(["/tmp"]), { TMPDIR: job.path });
  assertExit(viaTmp, 0);
  const path = viaTmp.stdout.match(/^made (\/tmp\/ltp_checkpoint_\S+)\n$/)?.[1];
  assert.ok(path, viaTmp.stdout);
  assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound, `${path} was left behind`);
  assert.deepEqual(listing(job.path), []);
});

Deno.test("create({ dir }) refuses a missing folder, a symlink to one, a file, and a folder not allowed, each in one line", async () => {
  using job = tempDir();
  using other = tempDir();
  Deno.mkdirSync(`${job.path}/real`);
  Deno.symlinkSync(`${job.path}/real`, `${job.path}/link`);
  Deno.writeTextFileSync(`${job.path}/file`, "");
  const dirs = [`${job.path}/missing`, `${job.path}/link`, `${job.path}/file`, `${other.path}/./x/..`];
  const r = await child(
    dirs.map((dir) => attempt(`Checkpoint.create({ dir: ${JSON.stringify(dir)} })`)).join("\n"),
    only([job.path]),
  );
  assertExit(r, 0);
  assert.deepEqual(r.stdout.trim().split("\n"), [
    `NotFound: The folder ${job.path}/missing does not exist: create it first`,
    `InvalidData: ${job.path}/link is a symbolic link: name the folder it points to instead`,
    `InvalidData: ${job.path}/file is a file, not a folder`,
    `NotCapable: Access to ${other.path}/./x/.. is not allowed: run again with --allow-read=${other.path} ` +
    `--allow-write=${other.path}`,
  ]);
  assert.deepEqual(listing(job.path), ["file", "link", "real"]);
  assert.deepEqual(listing(`${job.path}/real`), []);
  assert.deepEqual(listing(other.path), []);
});

Deno.test("a file denied on its own (--deny-write) is refused through a symlinked folder too", async () => {
  using dir = tempDir();
  Deno.mkdirSync(`${dir.path}/x`);
  Deno.symlinkSync("x", `${dir.path}/link`);
  const body = `import { Checkpoint } from "${ROOT}/mod.ts";
    try { Checkpoint.init(${JSON.stringify(`${dir.path}/link/secret`)}).close(); console.log("made"); }
    catch (e) { console.log(e.name); }`;
  const flags = [
    "--allow-ffi",
    `--allow-read=${dir.path}`,
    `--allow-write=${dir.path}`,
    `--deny-write=${dir.path}/x/secret`,
  ];
  const r = await runScript(body, flags);
  assertExit(r, 0);
  assert.equal(r.stdout.trim(), "NotCapable", r.stderr);
  assert.deepEqual(listing(`${dir.path}/x`), []);
});
