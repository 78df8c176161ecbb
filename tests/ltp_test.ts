/**
 * LTP's own regions, met with no layout set anywhere: a region made the way
 * LTP's C library makes it (`peer create`: struct ipc_region's header, futexes
 * from byte 76) and one made the way LTP's shell library makes it (`peer
 * create-shell`: magic and zeros), used by every pairing of the C peer (LTP's
 * algorithm), the CLI and the module (the actor), and by Deno children that an
 * LTP C test exec()s. The seed layout on request, across the same pairings.
 * And the guard: LTP_IPC_LAYOUT=seed left in the environment must not read a
 * region of LTP's C library at byte 4.
 *
 * Every child gets its environment built here, without LTP_IPC_LAYOUT and
 * LTP_IPC_PATH unless a test sets them: the layout must come from the default.
 */
import assert from "node:assert/strict";
import { Checkpoint, type Layout } from "../mod.ts";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { EMPTY_KCONFIG, forgetCallerEnv } from "../testing/env.ts";
import { contentOf } from "../testing/files.ts";
import { ACTOR, CLI } from "../testing/paths.ts";
import { noPeer, peer, startPeer } from "../testing/peer.ts";
import { CHILD_FLAGS, cli, type Result, run, startActor, startCli } from "../testing/process.ts";
import { scaled, timeoutMul } from "../testing/timing.ts";

forgetCallerEnv();

/** The environment a CLI or module child needs for `path`: LTP_IPC_LAYOUT only when a layout is asked for. */
function regionEnv(path: string, layout?: Layout): { env: Record<string, string> } {
  return { env: layout ? { LTP_IPC_PATH: path, LTP_IPC_LAYOUT: layout } : { LTP_IPC_PATH: path } };
}

/** Region files of one test, in /dev/shm as LTP names them, all removed by `using`. */
class Regions implements Disposable {
  #paths: string[] = [];
  path(): string {
    const path = `/dev/shm/ltp_ltptest_${Deno.pid}_${this.#paths.length}`;
    this.#paths.push(path);
    return path;
  }
  [Symbol.dispose](): void {
    for (const path of this.#paths) {
      try {
        Deno.removeSync(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
  }
}

type Maker = "c" | "shell" | "init-seed";

/** Makes a region at `path`: as LTP's C library does, as its shell library does, or by our init in the seed layout. */
async function make(maker: Maker, path: string): Promise<void> {
  if (maker === "init-seed") return Checkpoint.init(path, { layout: "seed" }).close();
  assertExit(await run(await peer(), [maker === "c" ? "create" : "create-shell", path], {}), 0);
}

/** A region made by LTP's C library's rules, and its bytes as made. */
async function madeByC(regions: Regions): Promise<{ path: string; before: string }> {
  const path = regions.path();
  await make("c", path);
  return { path, before: contentOf(path) };
}

/** The bytes of a file; Deno's own file API reads /dev/shm under --allow-all. */
function bytes(path: string): Uint8Array {
  return Deno.readFileSync(path);
}

let pageSize: Promise<number> | undefined;
/** The machine's page size, as LTP's shell library asks for it. */
function page(): Promise<number> {
  pageSize ??= run("getconf", ["PAGESIZE"]).then((r) => Number(r.stdout.trim()));
  return pageSize;
}

const OFFSETS = { seed: 4, ltp: 76 } as const;
async function capacity(layout: Layout): Promise<number> {
  return Math.floor((await page() - OFFSETS[layout]) / 4);
}

type Role = "c" | "cli" | "module";
const ROLES: Role[] = ["c", "cli", "module"];
const NAMES: Record<Role, string> = { c: "C peer", cli: "CLI", module: "module" };

/**
 * Starts a process of `role` that waits on `id` (nr === undefined) or wakes `nr` there. `layout` undefined means
 * nothing is set: the C peer uses LTP mainline's layout, as LTP's C code does, and the others their default.
 */
async function actor(role: Role, path: string, layout: Layout | undefined, id: number, nr?: number) {
  const timeout = `${scaled(10000)}`;
  const waking = nr !== undefined;
  if (role === "c") {
    const at = [path, layout ?? "ltp", `${id}`];
    return await startPeer(waking ? ["wake", ...at, `${nr}`, timeout] : ["wait", ...at, timeout], {});
  }
  const env = regionEnv(path, layout);
  if (role === "cli") return startCli(waking ? ["wake", timeout, `${id}`, `${nr}`] : ["wait", timeout, `${id}`], env);
  return startActor(waking ? ["wake", `${id}`, `${nr}`, timeout] : ["wait", `${id}`, timeout], env);
}

/** Why a finished child is not what was expected, or undefined. */
function mismatch(what: string, r: Result, code: number): string | undefined {
  return r.code === code ? undefined : `${what}: exit ${r.code} (expected ${code}); stderr: ${r.stderr.trim()}`;
}

/**
 * Runs every waiter × waker pairing at once, each on its own region made by `maker`, and asserts that every
 * process succeeded. `id` should prove the layout: 1004 is the last id of `ltp`, 1022 the last of `seed` (and out of
 * range for `ltp`).
 */
async function everyPairing(maker: Maker, layout: Layout | undefined, id: number): Promise<void> {
  using regions = new Regions();
  const failures = await Promise.all(ROLES.flatMap((waits) =>
    ROLES.map(async (wakes) => {
      const path = regions.path();
      await make(maker, path);
      const waiter = await actor(waits, path, layout, id);
      const waker = await actor(wakes, path, layout, id, 1);
      const [k, w] = [await waker.result, await waiter.result];
      const pairing = `${NAMES[waits]} waiter, ${NAMES[wakes]} waker`;
      return [mismatch(`${pairing}: waker`, k, 0), mismatch(`${pairing}: waiter`, w, 0)];
    })
  ));
  assert.deepEqual(failures.flat().filter(Boolean), []);
}

Deno.test("peer create makes a region byte for byte as LTP's C library does", { ignore: noPeer() }, async () => {
  using regions = new Regions();
  const path = regions.path();
  const creator = await startPeer(["create", path], {});
  assertExit(await creator.result, 0);
  const region = bytes(path);
  const view = new DataView(region.buffer);
  assert.equal(region.length, await page());
  assert.equal(Deno.statSync(path).mode! & 0o777, 0o666);
  assert.equal(new TextDecoder().decode(region.subarray(0, 4)), "LTPM");
  assert.equal(view.getInt32(4, true), 0, "padding");
  assert.equal(view.getInt32(8, true), creator.child.pid, "context.lib_pid");
  assert.equal(view.getInt32(12, true), creator.child.pid, "context.main_pid");
  const [sec, nsec] = [view.getBigInt64(16, true), view.getBigInt64(24, true)];
  const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
  assert.ok(sec > 0n || nsec > 0n, "start_time is set");
  assert.ok(Number(sec) <= uptime + 1, `start_time ${sec} s is CLOCK_MONOTONIC's, not the wall clock's`);
  assert.ok(nsec >= 0n && nsec < 1_000_000_000n, `tv_nsec ${nsec}`);
  assert.ok(region.subarray(32).every((b) => b === 0), "the rest of the page is zero");

  // O_EXCL: a second create fails and leaves the region as it was
  const again = await run(await peer(), ["create", path], {});
  assertExit(again, 2);
  assert.match(again.stderr, /File exists/);
  assert.deepEqual(bytes(path), region);
});

Deno.test("peer create-shell makes a region as LTP's shell library does: magic, zeros, mode 0600", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  const path = regions.path();
  assertExit(await run(await peer(), ["create-shell", path], {}), 0);
  const expected = new Uint8Array(await page());
  expected.set(new TextEncoder().encode("LTPM"));
  assert.deepEqual(bytes(path), expected);
  assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
});

Deno.test("nothing set: every pairing of C peer, CLI and module meets on a region of LTP's C library", {
  ignore: noPeer(),
}, () => everyPairing("c", undefined, 1004));

// The C-peer × CLI pairings here are LTP's shell tests with a C helper: the shell library's region, the CLI as
// TST_CHECKPOINT_WAIT/WAKE, a C program attached with tst_reinit() (byte 76).
Deno.test("nothing set: every pairing of C peer, CLI and module meets on a region of LTP's shell library", {
  ignore: noPeer(),
}, () => everyPairing("shell", undefined, 1004));

Deno.test("seed on request: every pairing meets on a region made by our init with the seed layout", {
  ignore: noPeer(),
}, () => everyPairing("init-seed", "seed", 1022));

Deno.test("seed on request: every pairing meets on a region of LTP's shell library", {
  ignore: noPeer(),
}, () => everyPairing("shell", "seed", 1022));

/**
 * The argv of a Deno child that an LTP C test exec()s: the actor or the CLI, allowed to read the kernel config the
 * tests point KCONFIG_PATH at (without it the module says once that its timeouts are not scaled).
 */
function denoChild(program: "module" | "cli", args: string[]): string[] {
  const flags = CHILD_FLAGS.map((flag) => flag.startsWith("--allow-read=") ? `${flag},${EMPTY_KCONFIG}` : flag);
  return [Deno.execPath(), "run", ...flags, program === "cli" ? CLI : ACTOR, ...args];
}

Deno.test("an LTP C test's exec()'d Deno children attach through LTP_IPC_PATH, as waiter and as waker", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  const t = `${scaled(10000)}`;
  const cases: [string, string[]][] = [
    ["parent wakes, module child waits", ["wake", "3", ...denoChild("module", ["wait", "3", t])]],
    ["parent waits, module child wakes", ["wait", "3", ...denoChild("module", ["wake", "3", "1", t])]],
    ["parent wakes, CLI child waits", ["wake", "1004", ...denoChild("cli", ["wait", t, "1004"])]],
    ["parent waits, CLI child wakes", ["wait", "1004", ...denoChild("cli", ["wake", t, "1004", "1"])]],
  ];
  const results = await Promise.all(cases.map(async ([name, args]) => {
    const path = regions.path();
    // LTP_TIMEOUT_MUL reaches the parent (and its child) from the test's environment, as it would in LTP
    const r = await (await startPeer(["parent", path, "ltp", ...args], {})).result;
    return [name, r] as const;
  }));
  for (const [name, r] of results) {
    assert.equal(r.code, 0, `${name}: exit ${r.code}; stderr: ${r.stderr}`);
    assert.equal(r.stderr, "", name);
  }
});

Deno.test("the child of an LTP C test finds the default layout, and the header's pid", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  const path = regions.path();
  // the child reports what it sees, then wakes the parent; sh's $PPID is the parent, which made the region
  const script = `echo "$PPID"; "$@" info && exec "$@" wake 0 1 ${scaled(10000)}`;
  const r = await (await startPeer(
    ["parent", path, "ltp", "wait", "0", "sh", "-c", script, "sh", ...denoChild("module", [])],
    {},
  )).result;
  assertExit(r, 0);
  const [ppid, info] = r.stdout.trim().split("\n");
  assert.deepEqual(JSON.parse(info), {
    layout: "ltp",
    layoutSource: "default",
    capacity: await capacity("ltp"),
    libPid: Number(ppid),
  });
});

// Waits for the lead's status fields (layoutSource, libPid) and text lines.
Deno.test("status names the layout's source and whether LTP's C library made the region", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  const cMade = regions.path();
  const creator = await startPeer(["create", cMade], {});
  assertExit(await creator.result, 0);
  const libPid = creator.child.pid;
  const shellMade = regions.path();
  await make("shell", shellMade);
  const initMade = regions.path();
  const init = await cli(["init"], regionEnv(initMade, "seed"));
  assertExit(init, 0);
  assert.equal(init.stdout, "", "init prints nothing when LTP_IPC_PATH names the file");
  const expected = new Uint8Array(await page());
  expected.set(new TextEncoder().encode("LTPM"));
  assert.deepEqual(bytes(initMade), expected);

  const cases = [
    { path: cMade, env: regionEnv(cMade), flags: [], layout: "ltp", source: "default", shown: "ltp (default)", libPid },
    {
      path: cMade,
      env: regionEnv(cMade, "seed"), // an explicit --layout wins over LTP_IPC_LAYOUT, and is allowed
      flags: ["--layout", "seed"],
      layout: "seed",
      source: "option",
      shown: "seed (--layout)",
      libPid,
    },
    { path: shellMade, env: regionEnv(shellMade), flags: [], layout: "ltp", source: "default", shown: "ltp (default)" },
    {
      path: shellMade,
      env: regionEnv(shellMade, "seed"),
      flags: [],
      layout: "seed",
      source: "LTP_IPC_LAYOUT",
      shown: "seed (LTP_IPC_LAYOUT)",
    },
    {
      path: shellMade,
      env: regionEnv(shellMade),
      flags: ["--layout", "seed"],
      layout: "seed",
      source: "option",
      shown: "seed (--layout)",
    },
    {
      path: initMade,
      env: regionEnv(initMade, "seed"),
      flags: [],
      layout: "seed",
      source: "LTP_IPC_LAYOUT",
      shown: "seed (LTP_IPC_LAYOUT)",
    },
  ] as const;
  const outputs = await Promise.all(cases.map(async (c) => {
    const [json, text] = await Promise.all([
      cli([...c.flags, "status", "--json"], c.env),
      cli([...c.flags, "status"], c.env),
    ]);
    return { c, json, text };
  }));
  for (const { c, json, text } of outputs) {
    const what = `${c.path} ${c.flags.join(" ")} ${c.env.env.LTP_IPC_LAYOUT ?? ""}`;
    assertExit(json, 0);
    assertExit(text, 0);
    const status = JSON.parse(json.stdout);
    assert.deepEqual(
      {
        layout: status.layout,
        layoutSource: status.layoutSource,
        capacity: status.capacity,
        libPid: status.libPid,
        mode: status.mode,
      },
      {
        layout: c.layout,
        layoutSource: c.source,
        capacity: await capacity(c.layout),
        libPid: "libPid" in c ? c.libPid : 0,
        mode: c.path === cMade ? 0o666 : 0o600,
      },
      what,
    );
    const lines = text.stdout.split("\n");
    assert.ok(lines.includes(`layout:   ${c.shown}`), `${what}: no 'layout:   ${c.shown}' in\n${text.stdout}`);
    if ("libPid" in c) {
      assert.ok(
        lines.some((line) => line.includes("LTP's C library") && line.includes(`${c.libPid}`)),
        `${what}: no line names LTP's C library and pid ${c.libPid} in\n${text.stdout}`,
      );
    } else {
      assert.doesNotMatch(text.stdout, /LTP's C library.*\b[1-9]\d*\b/, `${what}: claims a C library's pid`);
    }
  }
});

Deno.test("guard: LTP_IPC_LAYOUT=seed left in the environment is refused on a region of LTP's C library", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  const { path, before } = await madeByC(regions);
  const env = regionEnv(path, "seed");
  // were they let through, the wait would time out (exit 1) and the wake of nobody succeed (exit 0)
  const t = `${scaled(1000)}`;
  const runs = await Promise.all([
    cli(["wait", t, "0"], env),
    cli(["wake", t, "0", "0"], env),
    cli(["init"], env),
    startActor(["wait", "0", t], env).result,
    startActor(["init"], env).result,
  ]);
  const [cliWait, cliWake, cliInit, moduleWait, moduleInit] = runs;
  for (const r of [cliWait, cliWake, cliInit]) {
    assertExit(r, 2);
    assertOneLine(r.stderr, /LTP's C library/);
    assert.match(r.stderr, /LTP_IPC_LAYOUT/);
  }
  for (const r of [moduleWait, moduleInit]) {
    assertExit(r, 2);
    assertOneLine(r.stderr, /^InvalidData: .*LTP's C library/);
  }
  assert.equal(contentOf(path), before, "the region is untouched");
});

Deno.test("guard: an exec()'d child with a stale LTP_IPC_LAYOUT=seed breaks the C parent's test at once", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  // the parent's wake gives up after 1 s (LTP_TIMEOUT_MUL 0.1) once its child has refused the region
  const options = { env: { LTP_IPC_LAYOUT: "seed", LTP_TIMEOUT_MUL: `${0.1 * timeoutMul()}` } };
  const t = `${scaled(10000)}`;
  const results = await Promise.all([
    denoChild("cli", ["wait", t, "0"]),
    denoChild("module", ["wait", "0", t]),
  ].map(async (child) => (await startPeer(["parent", regions.path(), "ltp", "wake", "0", ...child], options)).result));
  for (const r of results) {
    assertExit(r, 1);
    assert.match(r.stderr, /LTP's C library/);
    assert.match(r.stderr, /child exited 2/);
    assert.match(r.stderr, /wake on checkpoint 0: Connection timed out/); // ETIMEDOUT
  }
});

Deno.test("guard: the seed layout chosen explicitly is allowed on a region of LTP's C library", {
  ignore: noPeer(),
}, async () => {
  using regions = new Regions();
  const { path, before } = await madeByC(regions);
  const t = `${scaled(10000)}`;
  // --layout seed wins over a stale LTP_IPC_LAYOUT=seed, which then is no reason to refuse; id 1022 exists only in seed
  const env = regionEnv(path, "seed");
  const w = startCli(["--layout", "seed", "wait", t, "1022"], env);
  const k = await startPeer(["wake", path, "seed", "1022", "1", t], {});
  assertExit(await k.result, 0);
  assertExit(await w.result, 0);

  // in code: open and init with { layout: "seed" }; init adopts the region and leaves its header alone
  using opened = Checkpoint.open(path, { layout: "seed" });
  assert.equal(opened.layoutSource, "option");
  assert.equal(opened.capacity, await capacity("seed"));
  using adopted = Checkpoint.init(path, { layout: "seed" });
  assert.equal(adopted.layoutSource, "option");
  const c = await startPeer(["wait", path, "seed", "1021", t], {});
  await opened.waitForWaiters(1021, 1, scaled(10000));
  await adopted.wake(1021, 1, scaled(10000));
  assertExit(await c.result, 0);
  assert.equal(contentOf(path), before, "the header is untouched");
});
