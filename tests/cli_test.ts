/** tst_checkpoint as a subprocess: LTP's grammar, texts and exit codes, init, install and sandbox. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, snapshot, tempDir } from "../testing/files.ts";
import { CLI, PAGE, ROOT } from "../testing/paths.ts";
import { cli, INSTALL_FLAGS, run, startCli } from "../testing/process.ts";

forgetCallerEnv();

const USAGE_LINES = [
  "Usage: tst_checkpoint init [--cleanup]",
  "   or: tst_checkpoint wait TIMEOUT ID",
  "   or: tst_checkpoint wake TIMEOUT ID NR_WAKE",
];
const NO_REGION = { LTP_IPC_PATH: "/dev/shm/ltp-checkpoint-test-never-created" };

function assertUsage(text: string): void {
  assert.deepEqual(text.split("\n").slice(0, 3), USAGE_LINES);
  assert.match(text, /TIMEOUT - timeout in ms\n.*ID - checkpoint id\n.*NR_WAKE - number of processes to wake up/);
}

/** Misuse: the message, then the usage, all on stderr (so that `eval "$(...)"` runs nothing), exit 1. */
function assertMisuse(r: { code: number; stdout: string; stderr: string }, message: string): void {
  assertExit(r, 1);
  assert.equal(r.stdout, "");
  assert.ok(r.stderr.startsWith(message), r.stderr);
  assertUsage(r.stderr.slice(message.length));
}

Deno.test("no command or the wrong number of arguments: one ERROR line naming what it takes, then the usage", async () => {
  const cases: [string[], string][] = [
    [[], "ERROR: No COMMAND given"],
    [["wait"], "ERROR: wait takes TIMEOUT ID (got 0 arguments)"],
    [["wait", "1"], "ERROR: wait takes TIMEOUT ID (got 1 argument)"],
    [["wait", "1", "2", "3"], "ERROR: wait takes TIMEOUT ID (got 3 arguments)"],
    [["wake", "1", "2"], "ERROR: wake takes TIMEOUT ID NR_WAKE (got 2 arguments)"],
    [["waiters", "1"], "ERROR: waiters takes TIMEOUT ID COUNT (got 1 argument)"],
    [["init", "x"], "ERROR: init takes no arguments (got 1)"],
    [["remove", "x", "y"], "ERROR: remove takes no arguments (got 2)"],
    [["status", "/dev/shm"], "ERROR: status takes no arguments (got 1)"],
  ];
  for (const [args, message] of cases) assertMisuse(await cli(args, { env: NO_REGION }), `${message}\n`);
});

Deno.test("options are checked before the command: an unknown one is named first", async () => {
  for (const args of [["-x", "status"], ["status", "-x"], ["-x", "foo"], ["-x"], ["foo", "-x", "1"]]) {
    assertMisuse(await cli(args, { env: NO_REGION }), "ERROR: Unknown option '-x'\n");
  }
  assertMisuse(await cli(["--bogus=1", "wait", "1", "0"], { env: NO_REGION }), "ERROR: Unknown option '--bogus=1'\n");
  assertMisuse(await cli(["wait", "--json", "1", "0"], { env: NO_REGION }), "ERROR: --json applies to status only\n");
  assertMisuse(
    await cli(["wake", "--cleanup", "1", "0", "1"], { env: NO_REGION }),
    "ERROR: --cleanup applies to init only\n",
  );
  assertMisuse(await cli(["wait", "--all", "1", "0"], { env: NO_REGION }), "ERROR: --all applies to status only\n");
});

Deno.test("what the user typed is escaped in the ERROR line (control, C1 and bidi characters)", async () => {
  const r = await cli(["foo\x1b[31m\u202e\x85"], { env: NO_REGION });
  assertMisuse(r, "ERROR: Invalid COMMAND 'foo\\x1b[31m\\u{202e}\\x85'\n");
  const option = await cli(["--\u2028"], { env: NO_REGION });
  assertMisuse(option, "ERROR: Unknown option '--\\u{2028}'\n");
});

Deno.test("numbers strtoul cannot read, or beyond UINT_MAX, are refused before anything else, as LTP words it", async () => {
  const bad = ["abc", "-1", "-", "+", "4294967296", "", " ", "x7", "99999999999999999999"];
  for (const text of bad) {
    for (
      const [args, name] of [
        [["wait", text, "0"], "TIMEOUT"],
        [["wait", "10", text], "ID"],
        [["wake", "10", "0", text], "NR_WAKE"],
      ] as const
    ) {
      assertMisuse(await cli([...args], { env: NO_REGION }), `ERROR: Invalid ${name} '${text}'\n`);
    }
  }
});

Deno.test("an unknown command is named, with the usage", async () => {
  assertMisuse(await cli(["foo", "1", "2"], { env: NO_REGION }), "ERROR: Invalid COMMAND 'foo'\n");
});

Deno.test("--help (on stdout) and --version exit 0", async () => {
  const help = await cli(["--help"]);
  assertExit(help, 0);
  assertUsage(help.stdout);
  assert.match(help.stdout, /Exit codes/);
  const version = await cli(["--version"]);
  assertExit(version, 0);
  assert.match(version.stdout, /^tst_checkpoint \d+\.\d+\.\d+\n$/);
});

Deno.test("the exit codes, row by row: 0 done, 1 timed out or misuse, 2 broken set-up", async () => {
  using dir = tempDir();
  using seed = Checkpoint.create();
  using ltp = Checkpoint.create({ layout: "ltp" });
  const bad = (name: string, head: string) => {
    const bytes = new Uint8Array(PAGE);
    bytes.set(new TextEncoder().encode(head));
    Deno.writeFileSync(`${dir.path}/${name}`, bytes);
    return { LTP_IPC_PATH: `${dir.path}/${name}` };
  };
  const rows: [string, string[], Record<string, string>, number, RegExp | ""][] = [
    ["woke NR_WAKE (none waiting, 0 to wake)", ["wake", "10", "0", "0"], seed.env, 0, ""],
    [
      "wait timed out",
      ["wait", "10", "0"],
      seed.env,
      1,
      /Nobody woke checkpoint 0 within 10 ms/,
    ],
    ["wake timed out", ["wake", "10", "0", "1"], seed.env, 1, /Could not wake exactly 1/],
    ["id out of range (1005, ltp layout)", ["wait", "10", "1005"], ltp.env, 1, /1005 is out of range/],
    ["id out of range (1023, seed layout)", ["wake", "10", "1023", "0"], seed.env, 1, /1023 is out of range/],
    ["LTP_IPC_PATH unset", ["wait", "10", "0"], {}, 2, /TBROK: LTP_IPC_PATH is not set/],
    ["file missing", ["wait", "10", "0"], NO_REGION, 2, /TBROK: .*never-created does not exist/],
    ["bad magic: wrong bytes", ["wait", "10", "0"], bad("wrong", "XXXX"), 2, /TBROK: .*wrong.*bad magic/],
    ["bad magic: all zeros", ["wait", "10", "0"], bad("zeros", ""), 2, /TBROK: .*zeros.*bad magic/],
    ["bad magic: byte-swapped", ["wait", "10", "0"], bad("swapped", "MPTL"), 2, /TBROK: .*swapped.*bad magic/],
    // control bytes in the magic are escaped once, as the README shows them
    ["bad magic: control bytes", ["wait", "10", "0"], bad("ctrl", "\x01\x1b[3"), 2, /bad magic: "\\x01\\x1b\[3"/],
    ["TIMEOUT 0", ["wait", "0", "0"], seed.env, 2, /TBROK: timeout must be >= 1! \(0\)/],
    ["bad LTP_TIMEOUT_MUL", ["wait", "10", "0"], { ...seed.env, LTP_TIMEOUT_MUL: "abc" }, 2, /LTP_TIMEOUT_MUL/],
  ];
  for (const [name, args, env, code, stderr] of rows) {
    const r = await cli(args, { env, clearEnv: true });
    assert.equal(r.code, code, `${name}: exit ${r.code}, stderr ${r.stderr}`);
    if (stderr === "") assert.equal(r.stderr, "", name);
    else assertOneLine(r.stderr, stderr);
    assert.equal(r.stdout, "", name);
  }
});

Deno.test("init prepares LTP_IPC_PATH silently, and without it prints an export line for eval", async () => {
  using dir = tempDir();
  const path = `${dir.path}/region`;
  const r = await cli(["init"], { env: { LTP_IPC_PATH: path } });
  assertExit(r, 0);
  assert.equal(r.stdout, "");
  assert.equal(Deno.statSync(path).size, PAGE);
  assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);

  const flags = `--quiet --allow-ffi --allow-env --allow-read=/dev/shm,/tmp --allow-write=/dev/shm,/tmp`;
  const tool = `${Deno.execPath()} run ${flags} ${CLI}`;
  const script = `eval "$(${tool} init --layout ltp)" && ${tool} status --json && rm "$LTP_IPC_PATH"`;
  const shell = await run("sh", ["-c", script], { env: { LTP_IPC_PATH: "" } });
  assertExit(shell, 0);
  const status = JSON.parse(shell.stdout);
  assert.match(status.path, /^\/dev\/shm\/ltp_checkpoint_/);
  assert.equal(status.layout, "ltp");
  assert.equal(status.capacity, 1005);
});

Deno.test("init refuses a file that holds other data, leaving it unchanged", async () => {
  using dir = tempDir();
  const path = `${dir.path}/data`;
  Deno.writeTextFileSync(path, "keep me");
  const before = snapshot(path);
  const r = await cli(["init"], { env: { LTP_IPC_PATH: path } });
  assertExit(r, 2);
  assertOneLine(r.stderr, /holds other data/);
  assert.equal(snapshot(path), before);
});

Deno.test("the README's alternative, deno install -g, runs LTP's shell helpers while the checkout stays", async () => {
  using root = tempDir();
  const install = await run(Deno.execPath(), [
    "install",
    "-g",
    "-f",
    "--quiet",
    "--root",
    root.path,
    "--name",
    "tst_checkpoint",
    ...INSTALL_FLAGS,
    CLI,
  ]);
  assertExit(install, 0);
  const readme = Deno.readTextFileSync(`${ROOT}/README.md`).replace(/\s+/g, " ");
  assert.ok(
    readme.includes(`--name tst_checkpoint ${INSTALL_FLAGS.join(" ")} cli.ts`),
    "the README's install command differs",
  );
  const denoDir = Deno.execPath().replace(/\/[^/]*$/, "");
  const PATH = `${root.path}/bin:${denoDir}:${Deno.env.get("PATH")}`;
  const r = await run("sh", [`${ROOT}/tests/fixtures/ltp_style.sh`], { env: { PATH, LTP_IPC_PATH: "" } });
  assertExit(r, 0);
  assert.match(r.stdout, /TPASS: all children woken together/);
  assert.match(r.stdout, /TPASS: handshake/);
  assert.match(r.stdout, /TPASS: a wake before its wait/);
  assert.match(r.stdout, /TPASS: a wait with nobody to wake it times out \(exit 1\)/);
});

Deno.test("sandboxed: a region outside the allowed folders is refused in one line, with no prompt, creating nothing", async () => {
  using dir = tempDir();
  const outside = `${dir.path}/region`;
  const flags = [
    "--no-prompt",
    "--allow-ffi",
    "--allow-env=LTP_IPC_PATH",
    "--allow-read=/dev/shm",
    "--allow-write=/dev/shm",
  ];
  for (const args of [["init"], ["wait", "10", "0"], ["wake", "10", "0", "0"]]) {
    const r = await run(Deno.execPath(), ["run", "--quiet", ...flags, CLI, ...args], {
      env: { LTP_IPC_PATH: outside },
    });
    assertExit(r, 2);
    assertOneLine(r.stderr, new RegExp(`${outside} is not allowed: run again with --allow-read=${dir.path}`));
  }
  assert.deepEqual(Array.from(Deno.readDirSync(dir.path)), []);

  // on a terminal too: `script` gives the tool a pty, where a permission request would prompt
  const command = [Deno.execPath(), "run", "--quiet", ...flags, CLI, "init"].join(" ");
  const tty = await run("script", ["-qec", command, "/dev/null"], { env: { LTP_IPC_PATH: outside } });
  assertExit(tty, 2);
  assert.doesNotMatch(tty.stdout, /Allow\?|\[y\/n/);
  assert.match(tty.stdout, /is not allowed/);
  assert.deepEqual(Array.from(Deno.readDirSync(dir.path)), []);
});

Deno.test("a path with a newline is reported on one line", async () => {
  const r = await cli(["wait", "10", "0"], { env: { LTP_IPC_PATH: "/dev/shm/two\nlines" } });
  assertExit(r, 2);
  assertOneLine(r.stderr, /two\\x0alines does not exist/);
});

Deno.test("status lists the waiters per checkpoint, and is brief when none wait", async () => {
  using cp = Checkpoint.create();
  const idle = await cli(["status"], { env: cp.env });
  assertExit(idle, 0);
  assert.match(idle.stdout, /waiters: {2}none\n$/);
  assert.match(
    idle.stdout,
    new RegExp(
      `path: +${cp.path}\nlayout: +ltp \\(LTP_IPC_LAYOUT\\)\nmade by: +this project \\(tst_checkpoint init.*\ncapacity: +1005`,
    ),
  );
  assert.match(idle.stdout, /owner: +uid \d+, mode 0600/);

  const waiting = [
    startCli(["wait", "10000", "3"], { env: cp.env }),
    startCli(["wait", "10000", "3"], { env: cp.env }),
  ];
  waiting.push(startCli(["wait", "10000", "700"], { env: cp.env }));
  await cp.waitForWaiters(3, 2, 10000);
  await cp.waitForWaiters(700, 1, 10000);
  const busy = await cli(["status"], { env: cp.env });
  assert.match(
    busy.stdout,
    /waiters:\n {2}checkpoint 3: 2 waiting\n {2}checkpoint 700: 1 waiting\nnote: +.*--allow-read=\/proc\n$/,
  );
  const json = JSON.parse((await cli(["status", "--json"], { env: cp.env })).stdout);
  assert.deepEqual(json.waiters, { 3: 2, 700: 1 });
  assert.equal(json.mode, 0o600);
  await cp.wake(3, 2, 10000);
  await cp.wake(700, 1, 10000);
  for (const w of waiting) assertExit(await w.result, 0);
});

Deno.test("remove removes a region, and only a region: anything else is left as it is, exit 2 in one line", async () => {
  using dir = tempDir();
  const region = `${dir.path}/region`;
  Checkpoint.init(region).close();
  const removed = await cli(["remove"], { env: { LTP_IPC_PATH: region, LTP_IPC_LAYOUT: "seed" } });
  assertExit(removed, 0);
  assert.equal(removed.stdout + removed.stderr, "");
  assert.deepEqual(listing(dir.path), []);

  const data = `${dir.path}/data`;
  Deno.writeFileSync(data, new Uint8Array(PAGE).fill(7));
  Deno.symlinkSync(data, `${dir.path}/link`);
  Deno.mkdirSync(`${dir.path}/folder`);
  const before = ["data", "link", "folder"].map((name) => snapshot(`${dir.path}/${name}`));
  const rows: [Record<string, string>, RegExp][] = [
    [{ LTP_IPC_PATH: data }, /TBROK: .*data is not a checkpoint region \(bad magic/],
    [{ LTP_IPC_PATH: `${dir.path}/link` }, /TBROK: .*link is a symbolic link/],
    [{ LTP_IPC_PATH: `${dir.path}/folder` }, /TBROK: .*folder is a directory, not a checkpoint region/],
    [{ LTP_IPC_PATH: region }, /TBROK: Nothing to remove: .*region does not exist$/],
    [{}, /TBROK: LTP_IPC_PATH is not set/],
  ];
  for (const [env, pattern] of rows) {
    const r = await cli(["remove"], { env, clearEnv: true });
    assertExit(r, 2);
    assertOneLine(r.stderr, pattern);
  }
  assert.deepEqual(["data", "link", "folder"].map((name) => snapshot(`${dir.path}/${name}`)), before);
});

/** What init --cleanup prints after the export: the region is removed at exit, and a signal ends the shell with its status. */
const TRAPS = [
  "trap 'tst_checkpoint remove --if-exists' EXIT",
  "trap 'exit 129' HUP",
  "trap 'exit 130' INT",
  "trap 'exit 143' TERM",
];

Deno.test("init --cleanup adds traps that remove the region when the shell exits, and asks for nothing else", async () => {
  const fresh = await cli(["init", "--cleanup"], { env: { LTP_IPC_PATH: "" } });
  assertExit(fresh, 0);
  const [exported, ...traps] = fresh.stdout.split("\n");
  const path = exported.match(/^export LTP_IPC_PATH='(.+)'$/)?.[1];
  assert.ok(path, fresh.stdout);
  assert.deepEqual(traps, [...TRAPS, ""]);
  assertExit(await cli(["remove"], { env: { LTP_IPC_PATH: path } }), 0);

  using dir = tempDir();
  const named = await cli(["init", "--cleanup"], { env: { LTP_IPC_PATH: `${dir.path}/r` } });
  assertExit(named, 0);
  assert.equal(named.stdout, TRAPS.map((line) => `${line}\n`).join(""));
  const plain = await cli(["init"], { env: { LTP_IPC_PATH: `${dir.path}/r` } });
  assert.equal(plain.stdout, "");
});

Deno.test("status --json escapes what JSON.stringify leaves raw, and parses back to the same path", async () => {
  using dir = tempDir();
  const path = `${dir.path}/r\u2028\u202e\x85`;
  using cp = Checkpoint.init(path);
  const r = await cli(["status", "--json"], { env: cp.env });
  assertExit(r, 0);
  assert.doesNotMatch(r.stdout, /[\u2028\u202e\x85]/);
  assert.match(r.stdout, /r\\u2028\\u202e\\u0085/);
  assert.equal(JSON.parse(r.stdout).path, path);
  cp.remove();
});

Deno.test("status --all lists the regions of the folders given, as text or as a JSON array", async () => {
  using dir = tempDir();
  using cp = Checkpoint.init(`${dir.path}/region`);
  Deno.writeTextFileSync(`${dir.path}/other`, "not a region");
  const text = await cli(["status", "--all", dir.path]);
  assertExit(text, 0);
  assert.match(text.stdout, new RegExp(`path: +${cp.path}\n`));
  assert.doesNotMatch(text.stdout, /other/);
  const json = await cli(["status", "--json", "--all", dir.path]);
  assertExit(json, 0);
  const regions = JSON.parse(json.stdout);
  assert.ok(Array.isArray(regions));
  assert.deepEqual(regions.map((r: { path: string }) => r.path), [cp.path]);
  cp.remove();

  // what the array cannot hold goes to stderr; an installed tool's hints say how to reinstall
  const reinstall = "cd /x && ./deno run -A tools/install.ts --root /y";
  const skipped = await cli(["status", "--all", "--json", "/var"], {
    env: { TST_CHECKPOINT_REINSTALL: reinstall },
  });
  assertExit(skipped, 0);
  assert.deepEqual(JSON.parse(skipped.stdout), []);
  assertOneLine(
    skipped.stderr,
    /^tst_checkpoint: note: \/var skipped: reinstall with: cd \/x && .* --allow-read=\/var$/,
  );
});

Deno.test('a region made by `eval "$(tst_checkpoint init)"` is named after the shell, live while it lives', async () => {
  using dir = tempDir();
  const tool = `${Deno.execPath()} run --quiet --allow-ffi --allow-env --allow-read=${dir.path},/proc ` +
    `--allow-write=${dir.path} ${CLI}`;
  const script = `eval "$(TMPDIR=${dir.path} ${tool} init)" && ${tool} status --all --json ${dir.path}; ` +
    `LTP_IPC_PATH="$LTP_IPC_PATH" ${tool} remove; echo "shell $$"`;
  const r = await run("sh", ["-c", script]);
  assertExit(r, 0);
  const [json, shell] = r.stdout.trim().split("\n");
  const [region] = JSON.parse(json);
  assert.equal(region.makerPid, Number(shell.split(" ")[1]), json);
  assert.equal(region.makerAlive, true, json);
  assert.equal(region.stale, false, json);
  assert.deepEqual(listing(dir.path), []);
});

Deno.test("a deno run user's hint names the flags to add, its folder normalised", async () => {
  using dir = tempDir();
  const flags = ["--no-prompt", "--allow-ffi", "--allow-env", "--allow-read=/dev/shm", "--allow-write=/dev/shm"];
  const name = dir.path.slice(dir.path.lastIndexOf("/") + 1);
  const r = await run(Deno.execPath(), ["run", "--quiet", ...flags, CLI, "init"], {
    env: { LTP_IPC_PATH: `${dir.path}/./../${name}//region` },
  });
  assertExit(r, 2);
  assertOneLine(
    r.stderr,
    new RegExp(`not allowed: run again with --allow-read=${dir.path} --allow-write=${dir.path}$`),
  );
});
