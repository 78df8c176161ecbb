/**
 * Hostile input: whatever is at the path, in the environment or in the
 * arguments, the CLI answers with one line and LTP's exit code, and the file
 * system is left as it was (bytes and modification times).
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { contentOf, snapshot, tempDir } from "../testing/files.ts";
import { CLI, PAGE } from "../testing/paths.ts";
import { cli, run } from "../testing/process.ts";

forgetCallerEnv();

function page(head: string): Uint8Array {
  const bytes = new Uint8Array(PAGE);
  bytes.set(new TextEncoder().encode(head));
  return bytes;
}

/**
 * Runs every command on each file of `d` in `cases` ([name, what the message says, whether init must refuse it too])
 * and asserts one line, exit 2, and no file changed.
 */
async function assertRefused(d: string, cases: [string, RegExp, boolean][]): Promise<void> {
  const every = [...Deno.readDirSync(d)].map((e) => `${d}/${e.name}`).concat(`${d}/nowhere`, "/dev/null");
  const before = every.map(snapshot);
  for (const [name, message, initRefuses] of cases) {
    const env = { LTP_IPC_PATH: `${d}/${name}` };
    const commands = [["wait", "10", "0"], ["wake", "10", "0", "0"], ["waiters", "10", "0", "0"], ["status"]];
    if (initRefuses) commands.push(["init"]);
    for (const args of commands) {
      const r = await cli(args, { env });
      assert.equal(r.code, 2, `${name} ${args[0]}: exit ${r.code}, ${r.stderr}`);
      assertOneLine(r.stderr, args[0] === "init" ? /TBROK: / : message);
      assert.equal(r.stdout, "", `${name} ${args[0]}`);
    }
  }
  assert.deepEqual(every.map(snapshot), before);
}

Deno.test("hostile files at LTP_IPC_PATH: one line, exit 2, nothing changed", async () => {
  using dir = tempDir();
  const d = dir.path;
  Deno.writeTextFileSync(`${d}/important`, "a file that matters");
  Deno.symlinkSync(`${d}/important`, `${d}/link-to-file`);
  Deno.symlinkSync("/dev/null", `${d}/link-to-null`);
  Deno.symlinkSync(`${d}/nowhere`, `${d}/dangling`);
  Deno.mkdirSync(`${d}/dir`);
  assertExit(await run("mkfifo", [`${d}/fifo`]), 0);
  Deno.writeFileSync(`${d}/data`, page("#!/bin/sh\necho precious\n"));
  Deno.writeFileSync(`${d}/empty`, new Uint8Array(0));
  Deno.writeTextFileSync(`${d}/one-byte`, "x");
  Deno.writeFileSync(`${d}/swapped`, page("MPTL"));
  await assertRefused(d, [
    ["link-to-file", /symbolic link/, true],
    ["link-to-null", /symbolic link/, true],
    ["dangling", /symbolic link/, true],
    ["dir", /is a directory, not a checkpoint region/, true],
    ["fifo", /is a fifo, not a checkpoint region/, true],
    ["data", /bad magic/, true],
    ["empty", /holds 0 bytes, less than one page/, false],
    ["one-byte", /holds 1 bytes, less than one page/, true],
    ["swapped", /bad magic: "MPTL"/, true],
  ]);
});

Deno.test({
  name: "a device, and another user's page of zeros, at LTP_IPC_PATH: one line, exit 2, nothing changed (needs root)",
  ignore: Deno.uid() !== 0,
  async fn() {
    using dir = tempDir();
    const d = dir.path;
    assertExit(await run("mknod", [`${d}/device`, "c", "1", "3"]), 0);
    Deno.writeFileSync(`${d}/foreign-zeros`, new Uint8Array(PAGE));
    Deno.chownSync(`${d}/foreign-zeros`, 12345, 12345);
    await assertRefused(d, [
      ["device", /is a character device, not a checkpoint region/, true],
      ["foreign-zeros", /bad magic/, true],
    ]);
    const init = await cli(["init"], { env: { LTP_IPC_PATH: `${d}/foreign-zeros` } });
    assertOneLine(
      init.stderr,
      /belongs to uid 12345, so another user could have planted it: remove it, or choose another path/,
    );
  },
});

/**
 * Makes a region at `path`, lets `prepare` change it, and asserts that the CLI waits and wakes on it and changes
 * no byte; `init` adopts it (already a region: nothing to change) or, when `initRefuses` matches, refuses it.
 */
async function assertUsable(path: string, prepare: (path: string) => void, initRefuses?: RegExp): Promise<void> {
  Checkpoint.init(path).close();
  prepare(path);
  const before = contentOf(path); // mtime changes: futexes on a shared mapping dirty the page, in C too
  const env = { LTP_IPC_PATH: path };
  assertExit(await cli(["wait", "10", "0"], { env }), 1);
  assertExit(await cli(["wake", "10", "0", "0"], { env }), 0);
  const init = await cli(["init"], { env });
  if (initRefuses) {
    assertExit(init, 2);
    assertOneLine(init.stderr, initRefuses);
  } else assertExit(init, 0);
  assert.equal(contentOf(path), before);
}

Deno.test("a region of mode 0666 is used as LTP's C library makes it, and init adopts it", async () => {
  using dir = tempDir();
  await assertUsable(`${dir.path}/shared`, (p) => Deno.chmodSync(p, 0o666));
});

Deno.test({
  name: "a region of another owner is used as LTP's C library makes it; init never adopts it (needs root)",
  ignore: Deno.uid() !== 0,
  async fn() {
    using dir = tempDir();
    await assertUsable(
      `${dir.path}/foreign`,
      (p) => Deno.chownSync(p, 12345, 12345),
      /TBROK: .*foreign belongs to uid 12345, so another user could have planted it: remove it, or choose another path$/,
    );
  },
});

Deno.test("a region with a second name (hard link) is used, but init never adopts it: someone could have linked it", async () => {
  using dir = tempDir();
  await assertUsable(
    `${dir.path}/linked`,
    (p) => Deno.linkSync(p, `${dir.path}/second-name`),
    /TBROK: .*linked has 2 names \(hard links\), .*: remove it, or choose another path$/,
  );
  // an empty file with two names is not adopted either, and stays empty
  Deno.writeFileSync(`${dir.path}/empty`, new Uint8Array(0));
  Deno.linkSync(`${dir.path}/empty`, `${dir.path}/empty-too`);
  const init = await cli(["init"], { env: { LTP_IPC_PATH: `${dir.path}/empty` } });
  assertExit(init, 2);
  assertOneLine(init.stderr, /has 2 names/);
  assert.equal(Deno.statSync(`${dir.path}/empty`).size, 0);
});

Deno.test({
  name: "root's init never adopts another user's file, not even an empty one in a folder of root's (needs root)",
  ignore: Deno.uid() !== 0,
  async fn() {
    using dir = tempDir();
    const path = `${dir.path}/planted`;
    Deno.writeFileSync(path, new Uint8Array(0));
    Deno.chownSync(path, 65534, 65534);
    Deno.chmodSync(path, 0o666);
    const before = snapshot(path);
    const init = await cli(["init"], { env: { LTP_IPC_PATH: path } });
    assertExit(init, 2);
    assertOneLine(init.stderr, /planted belongs to uid 65534, so another user could have planted it/);
    assert.equal(snapshot(path), before);
  },
});

Deno.test("odd paths: spaces work; a newline and bytes that are not UTF-8 get one clear line", async () => {
  using dir = tempDir();
  const spaced = `${dir.path}/with some spaces`;
  assertExit(await cli(["init"], { env: { LTP_IPC_PATH: spaced } }), 0);
  assertExit(await cli(["wait", "10", "0"], { env: { LTP_IPC_PATH: spaced } }), 1);

  const newline = await cli(["init"], { env: { LTP_IPC_PATH: `${dir.path}/new\nline/x` } });
  assertExit(newline, 2);
  assertOneLine(newline.stderr, /new\\x0aline/);

  // Deno.Command takes only strings: a shell puts the raw byte 0xff in the variable
  const script = `LTP_IPC_PATH="$(printf '${dir.path}/bad\\377name')" exec "${Deno.execPath()}" run --quiet ` +
    `--allow-all "${CLI}" wait 10 0`;
  const r = await run("sh", ["-c", script]);
  assertExit(r, 2);
  assertOneLine(r.stderr, /LTP_IPC_PATH is not valid UTF-8/);
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["with some spaces"]);

  const empty = await cli(["wait", "10", "0"], { env: { LTP_IPC_PATH: "" } });
  assertExit(empty, 2);
  assertOneLine(empty.stderr, /LTP_IPC_PATH is set but empty/);
});

Deno.test("LTP_TIMEOUT_MUL values LTP refuses are exit 2 in one line", async () => {
  using cp = Checkpoint.create();
  for (const value of ["abc", "0", "-1", "1e9", "NaN", "0.01", "10001", " "]) {
    const r = await cli(["wait", "10", "0"], { env: { ...cp.env, LTP_TIMEOUT_MUL: value } });
    assertExit(r, 2);
    assertOneLine(r.stderr, /LTP_TIMEOUT_MUL must be a decimal number from 0.099 to 10000/);
  }
  assertExit(await cli(["wake", "10", "0", "0"], { env: { ...cp.env, LTP_TIMEOUT_MUL: "2.5" } }), 0);
});

Deno.test("the extremes 0 and 4294967295 of each number", async () => {
  using cp = Checkpoint.create();
  const env = cp.env;
  const rows: [string[], number, RegExp | ""][] = [
    [["wake", "4294967295", "0", "0"], 0, ""],
    [["wake", "10", "0", "0"], 0, ""],
    [["wait", "10", "4294967295"], 1, /4294967295 is out of range/],
    [["wake", "10", "4294967295", "0"], 1, /out of range/],
    [["wake", "10", "0", "4294967295"], 1, /Could not wake exactly 4294967295/],
    [["waiters", "10", "0", "4294967295"], 1, /Fewer than 4294967295/],
    [["waiters", "10", "0", "0"], 0, ""],
    [["wait", "0", "0"], 2, /timeout must be >= 1/],
  ];
  for (const [args, code, stderr] of rows) {
    const r = await cli(args, { env });
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    if (stderr) assertOneLine(r.stderr, stderr);
    else assert.equal(r.stderr, "");
  }
});
