/** listRegions() and formatListing(): every region of some folders, its maker, its waiters, stale or not. */
import assert from "node:assert/strict";
import { Checkpoint, formatListing, listRegions, type RegionEntry } from "../mod.ts";
import { shellQuote } from "../src/text.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { readableSources, tempDir } from "../testing/files.ts";
import { endStaller, fuseServing, outputWithin, startStaller } from "../testing/fuse.ts";
import { PAGE, ROOT } from "../testing/paths.ts";
import { noPeer, peer, startPeer } from "../testing/peer.ts";
import { run } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

/** A process that lives until killed, for a live maker's pid. */
function sleeper(): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: ["600"], stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true", { stdin: "null", stdout: "null", stderr: "null" }).spawn();
  await child.status;
  return child.pid;
}

/** Writes `pid` as LTP's C library's lib_pid (int32 at byte 8) of a region `peer create` made. */
function setLibPid(path: string, pid: number): void {
  const bytes = Deno.readFileSync(path);
  new DataView(bytes.buffer).setInt32(8, pid, true);
  Deno.writeFileSync(path, bytes);
}

/**
 * Everything a path's lstat shows, access time included, and a digest of its bytes: what "nothing changed"
 * compares. Reading the bytes may set the access time once (relatime): take it twice before comparing.
 */
function facts(path: string): string {
  const i = Deno.lstatSync(path);
  let h = 0x811c9dc5;
  if (i.isFile) { for (const b of Deno.readFileSync(path)) h = Math.imul(h ^ b, 0x01000193) >>> 0; }
  // ctime: Deno 2.1 and later (2.0's FileInfo has none)
  const { ctime } = i as { ctime?: Date | null };
  return JSON.stringify([path, i.mode, i.size, i.mtime, i.atime, ctime, i.isSymlink, h]);
}

function byName(regions: RegionEntry[], dir: string): Record<string, RegionEntry> {
  return Object.fromEntries(regions.map((r) => [r.path.slice(dir.length + 1), r]));
}

Deno.test(
  "listRegions names every region once with its maker, liveness and waiters, marks only the dead maker's idle one stale, and changes nothing",
  {
    ignore: noPeer(),
  },
  async () => {
    using dir = tempDir();
    const d = dir.path;
    const live = sleeper();
    const children: { child: Deno.ChildProcess }[] = [{ child: live }];
    try {
      const c = await peer();
      const dead = await deadPid();
      // LTP's C library: a live maker, an exited one, an exited one with a waiter, an exited one left open to all
      const cRegions = [["ltp_live_1", live.pid], ["ltp_dead_2", dead], ["ltp_waited_3", dead], ["ltp_open_4", dead]];
      for (const [name, pid] of cRegions as [string, number][]) {
        assert.equal((await run(c, ["create", `${d}/${name}`])).code, 0);
        setLibPid(`${d}/${name}`, pid);
      }
      // only its owner may use this one: whoever runs the tests sees every process that could have it in use
      Deno.chmodSync(`${d}/ltp_dead_2`, 0o600);
      // LTP's shell library: the shell's pid in the name
      assert.equal((await run(c, ["create-shell", `${d}/ltp_shelltest_${live.pid}`])).code, 0);
      assert.equal((await run(c, ["create-shell", `${d}/ltp_shelldead_${dead}`])).code, 0);
      // this project
      using ours = Checkpoint.create({ dir: d });
      // look-alikes: short, other magic, a symlink to a region, a FIFO, a folder
      Deno.writeFileSync(`${d}/ltp_short_1`, new TextEncoder().encode("LTPM"));
      const other = new Uint8Array(PAGE);
      other.set(new TextEncoder().encode("LTPX"));
      Deno.writeFileSync(`${d}/ltp_other_1`, other);
      Deno.symlinkSync(`${d}/ltp_live_1`, `${d}/ltp_link_1`);
      assert.equal((await run("mkfifo", [`${d}/ltp_fifo_1`])).code, 0);
      Deno.mkdirSync(`${d}/ltp_dir_1`);

      const waiter = await startPeer(["wait", `${d}/ltp_waited_3`, "ltp", "4", `${scaled(30000)}`]);
      children.push(waiter);
      using watched = Checkpoint.open(`${d}/ltp_waited_3`, { layout: "ltp" });
      await watched.waitForWaiters(4, 1, scaled(10000));

      const names = Array.from(Deno.readDirSync(d), (e) => e.name).sort();
      names.forEach((n) => facts(`${d}/${n}`));
      const before = names.map((n) => facts(`${d}/${n}`));
      const listing = listRegions([d], { layout: "ltp" });
      assert.deepEqual(names.map((n) => facts(`${d}/${n}`)), before, "bytes and timestamps unchanged");

      const oursName = ours.path.slice(d.length + 1);
      const got = byName(listing.regions, d);
      assert.deepEqual(
        Object.keys(got).sort(),
        [
          "ltp_dead_2",
          "ltp_live_1",
          "ltp_open_4",
          `ltp_shelldead_${dead}`,
          `ltp_shelltest_${live.pid}`,
          "ltp_waited_3",
          oursName,
        ].sort(),
      );
      const summary = (r: RegionEntry) => [r.maker, r.makerPid, r.makerAlive, r.stale];
      assert.deepEqual(summary(got.ltp_live_1), ["ltp-c", live.pid, true, false]);
      assert.deepEqual(summary(got.ltp_dead_2), ["ltp-c", dead, false, true]);
      // one that any user may use: root sees every process; another user cannot look into root's, which could use
      // it, so it is stale only where none was hidden, and otherwise says why not
      const open = got.ltp_open_4;
      assert.deepEqual(summary(open).slice(0, 3), ["ltp-c", dead, false]);
      if (Deno.uid() === 0) assert.equal(open.stale, true);
      else assert.equal(open.stale, open.makerUnknown === undefined, JSON.stringify(open));
      assert.deepEqual(
        summary(got.ltp_waited_3),
        ["ltp-c", dead, false, false],
        "a region someone waits on is not stale",
      );
      assert.deepEqual(summary(got[`ltp_shelltest_${live.pid}`]), ["ltp-shell", live.pid, true, false]);
      assert.deepEqual(summary(got[`ltp_shelldead_${dead}`]), ["ltp-shell", dead, false, true]);
      assert.deepEqual(summary(got[oursName]), ["tst_checkpoint", Deno.pid, true, false]);
      assert.equal(got.ltp_dead_2.removeCommand, `LTP_IPC_PATH=${d}/ltp_dead_2 tst_checkpoint remove`);
      assert.equal(got.ltp_live_1.removeCommand, undefined);
      assert.deepEqual(got.ltp_waited_3.waiters, { 4: 1 });
      assert.deepEqual(got.ltp_waited_3.processes, { 4: [{ pid: waiter.child.pid, comm: "peer" }] });
      assert.equal(got.ltp_live_1.mode, 0o666);
      assert.equal(got[`ltp_shelltest_${live.pid}`].mode, 0o600);

      const text = formatListing(listing);
      assert.match(text, new RegExp(`made by:  LTP's C library, pid ${dead} \\(exited\\)`));
      assert.match(text, new RegExp(`stale:    .*LTP_IPC_PATH=${d}/ltp_dead_2 tst_checkpoint remove`));
      assert.match(text, /checkpoint 4: 1 waiting: pid \d+ \(peer\)/);
      assert.equal(text.split("\n\n").length, 7, "one block per region");
    } finally {
      for (const { child } of children) {
        try {
          child.kill("SIGKILL");
        } catch {
          // ended already
        }
        await child.status;
      }
    }
  },
);

Deno.test("listRegions escapes a region's name in the text and quotes it exactly in the remove command", async () => {
  using dir = tempDir();
  const name = "ltp_\x1b[31mred\n'x_1";
  const page = new Uint8Array(PAGE);
  page.set(new TextEncoder().encode("LTPM"));
  Deno.writeFileSync(`${dir.path}/${name}`, page, { mode: 0o600 });
  const listing = listRegions([dir.path], { layout: "ltp" });
  assert.equal(listing.regions.length, 1);
  const text = formatListing(listing);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(text, /\x1b/);
  assert.match(text, /ltp_\\x1b\[31mred\\x0a'x_1/);
  // bash reads the quoted word back as the very bytes
  const quoted = shellQuote(new TextEncoder().encode(`${dir.path}/${name}`));
  const echoed = await run("bash", ["-c", `printf %s ${quoted}`]);
  assert.equal(echoed.stdout, `${dir.path}/${name}`);
});

Deno.test("listRegions says which folders it may not read or open, and lists the rest", async () => {
  using dir = tempDir();
  Deno.symlinkSync(dir.path, `${dir.path}/link`);
  const listing = listRegions([`${dir.path}/missing`, `${dir.path}/link`, dir.path], { layout: "ltp" });
  assert.deepEqual(listing.regions, []);
  assert.equal(listing.notes.length, 2, listing.notes.join("\n"));
  assert.match(listing.notes[0], /missing skipped: .*does not exist/);
  assert.match(listing.notes[1], /link skipped: .*is a symbolic link/);
  assert.equal(formatListing(listing).split("\n")[0], "no checkpoint regions found");
  const page = new Uint8Array(PAGE);
  page.set(new TextEncoder().encode("LTPM"));
  Deno.writeFileSync(`${dir.path}/ltp_once_1`, page);
  const twice = listRegions([dir.path, `${dir.path}/`, `${dir.path}/.`], { layout: "ltp" });
  assert.deepEqual(twice.regions.map((r) => r.path), [`${dir.path}/ltp_once_1`], "a folder named thrice lists once");

  const script = `
    import { listRegions } from "${ROOT}/mod.ts";
    console.log(JSON.stringify(listRegions([${JSON.stringify(dir.path)}, "/dev/shm"], { layout: "ltp" }).notes));
  `;
  const file = `${dir.path}/script.ts`;
  Deno.writeTextFileSync(file, script);
  const r = await run(Deno.execPath(), ["run", "--quiet", "--allow-ffi", `--allow-read=${dir.path},${ROOT}`, file]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), ["/dev/shm skipped: run again with --allow-read=/dev/shm"]);

  // a file denied on its own is never opened, and a symlinked folder named with a trailing slash is checked where
  // it leads, before anything in it is opened
  using outside = tempDir();
  Deno.writeFileSync(`${outside.path}/ltp_out_1`, page);
  Deno.symlinkSync(outside.path, `${dir.path}/out`);
  Deno.writeTextFileSync(
    file,
    `import { listRegions } from "${ROOT}/mod.ts";
     const l = listRegions([${JSON.stringify(dir.path)}, ${JSON.stringify(`${dir.path}/out/`)}], { layout: "ltp" });
     console.log(JSON.stringify({ paths: l.regions.map((r) => r.path), notes: l.notes }));`,
  );
  const denied = await run(Deno.execPath(), [
    "run",
    "--quiet",
    "--allow-ffi",
    `--allow-read=${dir.path},${ROOT}`,
    `--deny-read=${dir.path}/ltp_once_1`,
    file,
  ]);
  assert.equal(denied.code, 0, denied.stderr);
  const seen = JSON.parse(denied.stdout);
  assert.deepEqual(seen.paths, [], "the denied file is not listed");
  // a symlink in the folder's path is refused before it is followed: what it leads to is never looked at
  assert.match(seen.notes.join("\n"), new RegExp(`out/ skipped: ${dir.path}/out is a symbolic link`));
});

Deno.test({
  name: "listRegions shows another user's region it may not open by path, owner and mode, in a note (needs root)",
  ignore: Deno.uid() !== 0,
  async fn() {
    using dir = tempDir();
    Deno.chmodSync(dir.path, 0o755);
    const page = new Uint8Array(PAGE);
    page.set(new TextEncoder().encode("LTPM"));
    Deno.writeFileSync(`${dir.path}/ltp_root_1`, page, { mode: 0o600 });
    Deno.chmodSync(`${dir.path}/ltp_root_1`, 0o600);
    Deno.writeFileSync(`${dir.path}/ltp_open_1`, page);
    Deno.chmodSync(`${dir.path}/ltp_open_1`, 0o666);
    const denoDir = `${dir.path}/deno-dir`;
    Deno.mkdirSync(denoDir);
    Deno.chmodSync(denoDir, 0o777);
    const script = `${dir.path}/script.ts`;
    const src = readableSources(); // the checkout may be private
    Deno.writeTextFileSync(
      script,
      `import { listRegions } from "${src}/mod.ts";
       console.log(JSON.stringify(listRegions([${JSON.stringify(dir.path)}], { layout: "ltp" })));`,
    );
    const asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    const r = await run("setpriv", [...asNobody, `${src}/deno`, "run", "--quiet", "--allow-all", script], {
      signal: AbortSignal.timeout(scaled(60_000)),
      env: { DENO_DIR: denoDir },
      cwd: "/",
    });
    assert.equal(r.code, 0, r.stderr);
    const listing = JSON.parse(r.stdout);
    assert.deepEqual(listing.regions.map((e: RegionEntry) => [e.path, e.uid, e.mode]), [
      [`${dir.path}/ltp_open_1`, 0, 0o666],
    ]);
    assert.deepEqual(listing.notes, [
      `files named ltp_* that this user may not open, maybe regions: ${dir.path}/ltp_root_1 (uid 0, mode 0600)`,
    ]);
  },
});

Deno.test("listRegions finds the regions among 5,000 other files", () => {
  using dir = tempDir();
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < 5000; i++) Deno.writeFileSync(`${dir.path}/f${i}`, i % 2 ? page : page.subarray(0, 100));
  page.set(new TextEncoder().encode("LTPM"));
  for (let i = 0; i < 3; i++) Deno.writeFileSync(`${dir.path}/ltp_t_${i}`, page);
  const listing = listRegions([dir.path], { layout: "ltp", budgetMs: scaled(60000) });
  assert.deepEqual(listing.regions.map((r) => r.path).sort(), [0, 1, 2].map((i) => `${dir.path}/ltp_t_${i}`));
  assert.deepEqual(listing.notes, []);
});

/**
 * Runs `listRegions(folders)` in the mount namespace of `staller` (where its FUSE file system is mounted), failing
 * when it has not returned within 20 s; resolves to its listing.
 */
async function listingBeside(staller: Deno.ChildProcess, release: () => void, folders: string[], dir: string) {
  const script = `${dir}/script.ts`;
  Deno.writeTextFileSync(
    script,
    `import { listRegions } from "${ROOT}/mod.ts";
     console.log(JSON.stringify(listRegions(${JSON.stringify(folders)}, { layout: "ltp" })));`,
  );
  const child = new Deno.Command("nsenter", {
    args: ["-t", `${staller.pid}`, "-m", Deno.execPath(), "run", "--quiet", "--allow-all", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const outcome = await outputWithin(child, release, scaled(20000), "listRegions blocked on the FUSE file");
  assert.equal(outcome.code, 0, new TextDecoder().decode(outcome.stderr));
  return JSON.parse(new TextDecoder().decode(outcome.stdout));
}

Deno.test({
  name: "listRegions never looks into a file with a FUSE file system mounted on it that never answers (needs root)",
  ignore: Deno.uid() !== 0 || noPeer(),
  async fn(t) {
    using dir = tempDir();
    const page = new Uint8Array(PAGE);
    Deno.writeFileSync(`${dir.path}/ltp_trap_1`, page);
    page.set(new TextEncoder().encode("LTPM"));
    Deno.writeFileSync(`${dir.path}/ltp_real_1`, page);
    const { staller, release } = await startStaller(["--file", `${dir.path}/ltp_trap_1`]);
    try {
      if (!await fuseServing(staller, t, release)) return;
      // the mount exists in the staller's mount namespace only: list from there
      const listing = await listingBeside(staller, release, [dir.path], dir.path);
      assert.deepEqual(listing.regions.map((r: RegionEntry) => r.path), [`${dir.path}/ltp_real_1`]);
      assert.deepEqual(listing.notes, [`${dir.path}: 1 entry has a file system mounted on it, not looked into`]);
    } finally {
      await endStaller(staller, release);
    }
  },
});

Deno.test({
  name: "the agents' listing never looks into a FUSE file system mounted in an agent's channel, and reads the rest " +
    "(needs root)",
  ignore: Deno.uid() !== 0 || noPeer(),
  async fn(t) {
    using dir = tempDir();
    // two channels of root's, as agents for regions in dir leave them: one with a FUSE file on its clients file
    const base = "/tmp/tst_checkpoint-0";
    Deno.mkdirSync(base, { recursive: true, mode: 0o700 });
    const key = (name: string) => `${base}/${`${dir.path}/${name}`.replaceAll("/", "%")}`;
    const channels = [key("ltp_left_1"), key("ltp_trap_1")];
    const gone = await deadPid();
    try {
      for (const [i, channel] of channels.entries()) {
        Deno.mkdirSync(channel, { mode: 0o700 });
        const region = `${dir.path}/${i === 0 ? "ltp_left_1" : "ltp_trap_1"}`;
        Deno.writeTextFileSync(`${channel}/clients`, JSON.stringify({ agent: gone, region, clients: [] }));
      }
      const { staller, release } = await startStaller(["--file", `${channels[1]}/clients`]);
      try {
        if (!await fuseServing(staller, t, release)) return;
        const listing = await listingBeside(staller, release, [dir.path], dir.path);
        assert.deepEqual(listing.notes, [
          `${channels[0]}: a channel left behind by agent ${gone}, which has exited (the next call for its region ` +
          `clears it)`,
        ]);
      } finally {
        await endStaller(staller, release);
      }
    } finally {
      for (const channel of channels) Deno.removeSync(channel, { recursive: true });
    }
  },
});
