/**
 * A process stalled in exec (an O_CLOEXEC file on a FUSE mount whose server never answers FLUSH) makes every read of
 * its /proc files block: status, status --all, status() and listRegions() still return, and name it. And the bounded
 * reader under them leaves a call that does not return behind.
 */
import assert from "node:assert/strict";
import { AT_FDCWD, O_CLOEXEC, O_RDWR } from "../ffi/constants.ts";
import { addressOf, cString, sys } from "../ffi/libc.ts";
import { BoundedReader } from "../ffi/reader.ts";
import { Checkpoint } from "../mod.ts";
import { fuseServing, startStaller } from "../testing/fuse.ts";
import { tempDir } from "../testing/files.ts";
import { CLI, ROOT } from "../testing/paths.ts";
import { noPeer, peer, startPeer } from "../testing/peer.ts";
import { bounded, kill, run, runScript, start } from "../testing/process.ts";
import { eventually, scaled } from "../testing/timing.ts";
import { forgetCallerEnv } from "../testing/env.ts";

forgetCallerEnv();

/** What a restricted run of listRegions() is given: the reader needs nothing beyond these. */
const FLAGS = ["--allow-ffi", "--allow-read=/proc,/dev/shm", "--no-prompt", "--quiet"];
/** Opening a region needs its folder's write permission too, and the CLI its environment. */
const OPEN_FLAGS = [...FLAGS, "--allow-write=/dev/shm"];
/** The budgets of status and of a listing (ffi/proc.ts SCAN_BUDGET_MS, src/listing.ts), and the margin allowed. */
const STATUS_MS = 1500;
const LISTING_MS = 3000;
const MARGIN_MS = 1000;

/** The children of `parent` that have not ended (a zombie has ended, whoever reaps it). */
function liveChildren(parent: number): number[] {
  const live = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${entry.name}/status`);
      if (new RegExp(`^PPid:\\t${parent}$`, "m").test(status) && !/^State:\tZ/m.test(status)) {
        live.push(Number(entry.name));
      }
    } catch {
      // ended
    }
  }
  return live;
}

/** Whether process `pid` runs (a zombie does not). */
function running(pid: number): boolean {
  try {
    return !/^State:\tZ/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

Deno.test({
  name: "a process stalled in exec on a FUSE FLUSH leaves status, status --all, status() and listRegions() " +
    "returning in time and naming it (needs root)",
  ignore: Deno.uid() !== 0 || noPeer(),
  async fn(t) {
    using dir = tempDir();
    const mount = `${dir.path}/mnt`;
    Deno.mkdirSync(mount);
    // a region in /dev/shm with a waiter, so that each call scans /proc
    using cp = Checkpoint.create();
    const waiter = await startPeer(["wait", cp.path, cp.layout, "1", String(scaled(60000))]);
    const { staller, release } = await startStaller(["--flush", mount]);
    let servers: number[] = [];
    const orphan = `/dev/shm/ltp_stall_orphan_${Deno.pid}`;
    try {
      await cp.waitForWaiters(1, 1, scaled(10000));
      // a region whose maker (the C peer, which has ended) is gone and that nobody waits on: stale, were it not
      // for a process that cannot be looked at
      assert.equal((await run(await peer(), ["create", orphan])).code, 0);
      if (!await fuseServing(staller, t, release)) return;
      const stalled = staller.pid; // unshare execs fuse_staller, which execs again: one pid
      servers = liveChildren(stalled);
      assert.equal(servers.length, 1, "fuse_staller's FUSE server");
      const note = `process ${stalled}'s /proc files did not answer in time`;

      const env = { LTP_IPC_PATH: cp.path, LTP_IPC_LAYOUT: cp.layout };
      for (const args of [["status"], ["status", "--all", "/dev/shm"]]) {
        const budget = args.length > 1 ? LISTING_MS : STATUS_MS;
        const begun = performance.now();
        const result = await bounded(
          start(Deno.execPath(), ["run", ...OPEN_FLAGS, "--allow-env", CLI, ...args], { env }),
          scaled(budget + MARGIN_MS + 10000),
        );
        const took = performance.now() - begun;
        assert.ok(!result.timedOut, `${args.join(" ")} hung`);
        assert.equal(result.code, 0, result.stderr);
        assert.ok(result.stdout.includes(note), `${args.join(" ")} does not name ${stalled}:\n${result.stdout}`);
        // the process's own start is counted in too
        assert.ok(took < scaled(budget + MARGIN_MS) + 1000, `${args.join(" ")} took ${Math.round(took)} ms`);
      }

      const statusScript = `
        import { Checkpoint } from "${ROOT}/mod.ts";
        using cp = Checkpoint.open(${JSON.stringify(cp.path)}, { layout: ${JSON.stringify(cp.layout)} });
        const begun = performance.now();
        const status = cp.status();
        const ms = performance.now() - begun;
        // a second call leaves the stalled process alone at once, and still names it
        console.log(JSON.stringify({ note: status.note, ms, again: cp.status().note }));
      `;
      const listingScript = `
        import { listRegions } from "${ROOT}/mod.ts";
        const begun = performance.now();
        const listing = listRegions(["/dev/shm"], { layout: ${JSON.stringify(cp.layout)} });
        const ms = performance.now() - begun;
        const entry = listing.regions.find((r) => r.path === ${JSON.stringify(cp.path)});
        const orphan = listing.regions.find((r) => r.path === ${JSON.stringify(orphan)});
        console.log(JSON.stringify({ note: entry?.note, ms, orphan }));
      `;
      const named = new RegExp(note.replace(/[()'.]/g, "\\$&"));
      for (
        const [script, flags, budget] of [[statusScript, OPEN_FLAGS, STATUS_MS], [
          listingScript,
          FLAGS,
          LISTING_MS,
        ]] as const
      ) {
        const result = await runScript(script, [...flags]);
        assert.equal(result.code, 0, result.stderr);
        const found = JSON.parse(result.stdout);
        assert.match(found.note, named);
        if (found.again !== undefined) assert.match(found.again, named);
        // whether the orphan is in use could not be seen in full: not called stale
        if (script === listingScript) {
          assert.equal(found.orphan.stale, false, JSON.stringify(found.orphan));
          assert.match(found.orphan.makerUnknown, new RegExp(`process ${stalled}'s /proc files did not answer`));
        }
        assert.ok(found.ms < scaled(budget + MARGIN_MS), `took ${Math.round(found.ms)} ms`);
      }
    } finally {
      release();
      const timer = setTimeout(() => kill(staller, "SIGKILL"), scaled(5000));
      await staller.output();
      clearTimeout(timer);
      kill(waiter.child, "SIGKILL");
      await waiter.result;
      // the FUSE server it forked ends with its standard input: nothing is left serving the mount
      await eventually(() => !servers.some(running), scaled(5000));
      try {
        Deno.removeSync(orphan);
      } catch {
        // never made
      }
    }
  },
});

Deno.test("the bounded reader leaves a call that does not return behind, says which, and starts afresh", () => {
  using dir = tempDir();
  const fifo = `${dir.path}/fifo`;
  assert.ok(new Deno.Command("mkfifo", { args: [fifo] }).outputSync().success);
  // opened for reading and writing: the open returns, a read of it waits until someone writes
  const fd = sys("openat", AT_FDCWD, Number(addressOf(cString(fifo))), O_RDWR | O_CLOEXEC);
  assert.ok(fd >= 0);
  const byte = new Uint8Array(1);
  try {
    using reader = new BoundedReader(performance.now() + scaled(10000));
    const stuck = reader.run([{ name: "close", args: [-1] }, { name: "read", args: [fd, reader.address(0), 1] }]);
    assert.deepEqual(stuck, { kind: "stalled", pending: [1] });
    assert.deepEqual(reader.run([{ name: "close", args: [-1] }]), { kind: "done", results: [-1] });
  } finally {
    sys("write", fd, Number(addressOf(byte)), 1); // the stuck read returns, into the buffer left behind
    sys("close", fd);
  }
});

Deno.test("the bounded reader says late, with the calls under way, at its deadline", () => {
  using dir = tempDir();
  const fifo = `${dir.path}/fifo`;
  assert.ok(new Deno.Command("mkfifo", { args: [fifo] }).outputSync().success);
  const fd = sys("openat", AT_FDCWD, Number(addressOf(cString(fifo))), O_RDWR | O_CLOEXEC);
  assert.ok(fd >= 0);
  const byte = new Uint8Array(1);
  try {
    // a deadline before the stall could be told
    using reader = new BoundedReader(performance.now() + 100);
    assert.deepEqual(reader.run([{ name: "read", args: [fd, reader.address(0), 1] }]), { kind: "late", pending: [0] });
  } finally {
    sys("write", fd, Number(addressOf(byte)), 1);
    sys("close", fd);
  }
});
