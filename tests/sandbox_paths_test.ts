/**
 * Paths whose real target the sandbox's check cannot see from the string: a NUL byte (the string Deno checks is
 * not the C string the kernel sees), a real path longer than PATH_MAX, and /proc's magic links, with openat2 and
 * without it (tests/nosys.c answers ENOSYS, or EPERM as container runtimes do, as on a kernel before Linux 5.6,
 * qemu-user or a seccomp filter). Each is refused in one line, and nothing is created outside DIR.
 */
import assert from "node:assert/strict";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { filesBelow } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { compiled, noPeer } from "../testing/peer.ts";
import { kill, run, start } from "../testing/process.ts";
import { escapedFrom, sandboxFlags, script, tryInit, workspace } from "../testing/sandbox.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const DENO = Deno.execPath();

// ---------------------------------------------------------------------------
// A NUL byte

Deno.test("a path with a NUL byte is refused with one clear error, and nothing is created where the C string stops", async () => {
  using w = workspace();
  // lexically OUTSIDE/NUL\0/../../in/x is DIR/x; as a C string it is OUTSIDE/NUL
  const path = `${w.outside}/NUL\0/../../in/x`;
  const r = await run(DENO, ["run", "--quiet", ...sandboxFlags(w.dir), script(w.root, "nul", tryInit([path]))]);
  assert.deepEqual(await escapedFrom(w), [], r.stdout);
  assertExit(r, 0);
  assert.equal(r.stderr, "", "no crash");
  assertOneLine(r.stdout, /^(InvalidData|NotCapable|TypeError): /);
});

// ---------------------------------------------------------------------------
// Real paths longer than PATH_MAX, or through /proc's magic links

const LONG_NAME = "L".repeat(250);
const LEVELS = 20; // 20 × 251 bytes: the real path is far beyond PATH_MAX (4096)

/**
 * Makes OUTSIDE/L/L/.../L, LEVELS deep, with a symlink `hop` halfway down
 * pointing to the bottom, and returns a symlink target that leads to the
 * bottom in fewer than 4096 bytes.
 */
async function deepFolder(outside: string): Promise<string> {
  const race = await compiled("sandbox_race.c");
  const half = LEVELS / 2;
  const rest = Array(LEVELS - half).fill(LONG_NAME).join("/");
  assertExit(await run(race, ["descend", outside, LONG_NAME, String(LEVELS)]), 0);
  assertExit(await run(race, ["descend", outside, LONG_NAME, String(half), "ln", "-s", rest, "hop"]), 0);
  return `${outside}/${Array(half).fill(LONG_NAME).join("/")}/hop`;
}

Deno.test("a symlink in DIR to a folder whose real path exceeds PATH_MAX is refused: the check is never skipped", async () => {
  using w = workspace();
  Deno.symlinkSync(await deepFolder(w.outside), `${w.dir}/link`);
  const path = `${w.dir}/link/x`;
  const flags = sandboxFlags(w.dir);
  const r = await run(DENO, ["run", "--quiet", ...flags, script(w.root, "deep", tryInit([path]))]);
  const viaCli = await run(DENO, ["run", "--quiet", ...flags, CLI, "init"], { env: { LTP_IPC_PATH: path } });
  assert.deepEqual(
    await escapedFrom(w),
    [],
    `module: ${r.stdout}${r.stderr}; CLI: exit ${viaCli.code} ${viaCli.stderr}`,
  );
  assertExit(r, 0);
  assertOneLine(r.stdout, /^(NotCapable|InvalidData): /);
  assertExit(viaCli, 2);
  assertOneLine(viaCli.stderr, /TBROK/);
});

/** A `sleep` whose working folder is `outside`, or the bottom of deepFolder(outside); killed by `using`. */
async function sleeperIn(outside: string, deep: boolean) {
  const race = await compiled("sandbox_race.c");
  const sleeper = start(race, ["descend", outside, LONG_NAME, String(deep ? LEVELS : 0), "sleep", "60"]);
  const pid = sleeper.child.pid;
  const end = performance.now() + scaled(5000);
  while (Deno.readTextFileSync(`/proc/${pid}/comm`).trim() !== "sleep") {
    if (performance.now() > end) throw new Error("the sleeper did not start");
    await new Promise((r) => setTimeout(r, 5));
  }
  return {
    pid,
    async [Symbol.asyncDispose]() {
      kill(sleeper.child, "SIGKILL");
      await sleeper.result;
    },
  };
}

Deno.test("magic links under /proc are refused: /proc/PID/cwd and /proc/self/root, even with /proc allowed", async () => {
  using w = workspace();
  await deepFolder(w.outside);
  await using deepSleeper = await sleeperIn(w.outside, true);
  await using sleeper = await sleeperIn(w.outside, false);
  const paths = [
    `/proc/${deepSleeper.pid}/cwd/x`, // lands at the bottom of OUTSIDE's deep folder
    `/proc/${sleeper.pid}/cwd/x`, // lands in OUTSIDE
    `/proc/self/root${w.dir}/x`, // lands in DIR, through a magic link all the same
  ];
  // Deno's check is lexical: /proc/... is "granted" for every path above
  const flags = sandboxFlags(w.dir, "/proc");
  const r = await run(DENO, ["run", "--quiet", ...flags, script(w.root, "proc", tryInit(paths))]);
  assertExit(r, 0);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, paths.length, r.stdout + r.stderr);
  const accepted = paths.filter((_, i) => !/^(NotCapable|InvalidData): /.test(lines[i]));
  assert.deepEqual({ accepted, created: await escapedFrom(w) }, { accepted: [], created: [] }, r.stdout);
});

// ---------------------------------------------------------------------------
// The same through /proc on a kernel without openat2

const OPENAT2 = 437, ENOSYS = 38, EPERM = 1;

/** Runs `body` (after an import of the module) under tests/nosys.c's filter, with the sandbox's flags for `dirs`. */
async function withoutOpenat2(errno: number, folder: string, dirs: string[], body: string, cwd?: string) {
  const nosys = await compiled("nosys.c");
  const flags = ["--allow-ffi", `--allow-read=${dirs}`, `--allow-write=${dirs}`, "--no-prompt", "--quiet"];
  return await run(nosys, [`${errno}`, `${OPENAT2}`, DENO, "run", ...flags, script(folder, "nosys", body)], { cwd });
}

for (const [name, errno] of [["ENOSYS", ENOSYS], ["EPERM", EPERM]] as const) {
  Deno.test({
    name: `without openat2 (${name}), paths through /proc are refused even with /proc allowed, and nothing is created`,
    ignore: noPeer(),
    async fn() {
      using w = workspace();
      const sleeper = new Deno.Command("sleep", { args: ["60"], cwd: w.outside, stdin: "null" }).spawn();
      try {
        const up = "/..".repeat(w.dir.split("/").filter(Boolean).length);
        const paths = [
          `/proc/self/root${w.dir}/a`, // lands in DIR, through a magic link all the same
          `/proc/../proc/self/root${w.dir}/b`, // the same once `..` is resolved
          `${w.dir}${up}/proc/self/root${w.dir}/c`, // from DIR up to / and down into /proc
          `/proc/${sleeper.pid}/cwd/d`, // lands in OUTSIDE
          `/proc/self/cwd/e`, // the working folder is DIR
        ];
        const plain = `${w.dir}/plain`;
        const r = await withoutOpenat2(errno, w.root, [w.dir, "/proc"], tryInit([...paths, plain]), w.dir);
        const lines = r.stdout.trim().split("\n");
        assert.equal(lines.length, paths.length + 1, r.stdout + r.stderr);
        const accepted = paths.filter((_, i) => !/^NotCapable: .*\/proc/.test(lines[i]));
        const created = [...await filesBelow(w.dir), ...await filesBelow(w.outside)];
        assert.deepEqual({ accepted, created }, { accepted: [], created: [plain] }, r.stdout);
        assert.equal(lines.at(-1), `made ${JSON.stringify(plain)}`, "a plain path still works");
      } finally {
        sleeper.kill("SIGKILL");
        await sleeper.status;
      }
    },
  });
}
