/**
 * What `status` and `status --all` print of names and people, with real processes: a file name that is not UTF-8
 * (each byte of an invalid sequence as `\xNN`, never U+FFFD; `--json` keeps its bytes), a long list of waiting
 * processes (cut with "and N more" in the text, whole in `--json`), and another user's stale region this user cannot
 * remove (whose it is, never a command that would fail).
 */
import assert from "node:assert/strict";
import { forgetCallerEnv } from "../testing/env.ts";
import { readableSources, tempDir } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { noPeer, peer } from "../testing/peer.ts";
import { CHILD_FLAGS, commandExists, kill, run, start, type Started } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

/** The CLI with /proc readable too, so that waiting processes are named. */
function status(args: string[], env: Record<string, string> = {}) {
  const flags = CHILD_FLAGS.map((f) => f === "--allow-read=/dev/shm,/tmp" ? "--allow-read=/dev/shm,/tmp,/proc" : f);
  return run(Deno.execPath(), ["run", ...flags, CLI, "status", ...args], {
    env,
    signal: AbortSignal.timeout(scaled(60_000)),
  });
}

Deno.test(
  "a region whose name is not UTF-8 is listed with \\xNN, its bytes kept in --json",
  { ignore: noPeer() },
  async () => {
    using dir = tempDir();
    const d = dir.path;
    const c = await peer();
    // a name of bytes that Deno's calls would take as text: the shell gives them to the C peer
    const made = await run("sh", ["-c", `exec "$0" create "$1/ltp_bad_$(printf '\\377\\376')_1"`, c, d]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal((await run(c, ["create", `${d}/ltp_good_1`])).code, 0);

    const text = await status(["--all", d]);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(!text.stdout.includes("\ufffd"), text.stdout);
    assert.match(text.stdout, new RegExp(`^path: {5}${d}/ltp_bad_\\\\xff\\\\xfe_1$`, "m"));
    assert.match(text.stdout, new RegExp(`^path: {5}${d}/ltp_good_1$`, "m"));
    // the command is the shell's own quoting of the bytes: it removes that very file (where the region is called
    // stale: a process whose /proc files are slow to answer on a busy machine keeps it from being so)
    const block = text.stdout.split("\n\n").find((b) => b.includes("ltp_bad_"))!;
    if (block.includes("\nstale:")) {
      assert.ok(block.includes(`LTP_IPC_PATH=$'${d}/ltp_bad_\\xff\\xfe_1' tst_checkpoint remove`), block);
    }

    const json = await status(["--all", "--json", d]);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(!json.stdout.includes("\\ufffd") && !json.stdout.includes("\ufffd"), json.stdout);
    const regions: { path: string; pathBytes?: number[] }[] = JSON.parse(json.stdout);
    const entry = regions.find((r) => r.pathBytes !== undefined)!;
    assert.equal(entry.path, `${d}/ltp_bad_\\xff\\xfe_1`);
    assert.deepEqual(entry.pathBytes, [...new TextEncoder().encode(`${d}/ltp_bad_`), 0xff, 0xfe, 0x5f, 0x31]);
    assert.equal(regions.find((r) => r.path === `${d}/ltp_good_1`)?.pathBytes, undefined);
  },
);

Deno.test("status names at most 10 waiting processes a checkpoint, then 'and N more'; --json names all", {
  ignore: noPeer(),
}, async () => {
  using dir = tempDir();
  const path = `${dir.path}/ltp_crowd_1`;
  const c = await peer();
  assert.equal((await run(c, ["create", path])).code, 0);
  const waiters: Started[] = [];
  try {
    for (let i = 0; i < 25; i++) waiters.push(start(c, ["wait", path, "ltp", "0", String(scaled(60_000))]));
    const env = { LTP_IPC_PATH: path };
    const ready = await run(Deno.execPath(), ["run", ...CHILD_FLAGS, CLI, "waiters", "30000", "0", "25"], { env });
    assert.equal(ready.code, 0, ready.stderr);

    const json = await status(["--json"], env);
    assert.equal(json.code, 0, json.stderr);
    const named: unknown[] = JSON.parse(json.stdout).processes[0];
    assert.ok(named.length > 10, json.stdout);

    const text = await status([], env);
    assert.equal(text.code, 0, text.stderr);
    const line = text.stdout.split("\n").find((l) => l.startsWith("  checkpoint 0: 25 waiting"))!;
    assert.ok(line, text.stdout);
    assert.equal(line.match(/pid \d+ /g)?.length, 10, line);
    assert.ok(line.endsWith(`, and ${named.length - 10} more`), line);
  } finally {
    for (const w of waiters) kill(w.child, "SIGKILL");
    await Promise.all(waiters.map((w) => w.result));
  }
});

Deno.test({
  name: "another user's stale region is said to be theirs, with no remove command this user cannot run (needs root)",
  ignore: Deno.uid() !== 0 || noPeer() || !commandExists("unshare") || !commandExists("setpriv"),
  async fn() {
    using dir = tempDir();
    // sticky, as /tmp and /dev/shm are: only the file's owner (or root) may remove it
    Deno.chmodSync(dir.path, 0o1777);
    const region = `${dir.path}/ltp_other_1`;
    assert.equal((await run(await peer(), ["create", region])).code, 0);
    // a maker that no process of the new pid namespace below is: exited
    const bytes = Deno.readFileSync(region);
    new DataView(bytes.buffer).setInt32(8, 99999, true);
    Deno.writeFileSync(region, bytes);
    const denoDir = `${dir.path}/deno-dir`;
    Deno.mkdirSync(denoDir);
    Deno.chmodSync(denoDir, 0o777);
    const src = readableSources(); // the checkout may be private
    const script = `${dir.path}/script.ts`;
    Deno.writeTextFileSync(
      script,
      `import { formatListing, listRegions } from "${src}/mod.ts";
       const listing = listRegions([${JSON.stringify(dir.path)}], { layout: "ltp" });
       console.log(JSON.stringify({ text: formatListing(listing), regions: listing.regions }));`,
    );
    // a pid namespace of its own, so that user nobody sees every process that could use the region and may call it
    // stale; root's own listing of the same region gives the command
    const asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    for (const [who, prefix] of [["nobody", ["setpriv", ...asNobody]], ["root", []]] as const) {
      const r = await run(
        "unshare",
        ["--pid", "--fork", "--mount-proc", ...prefix, `${src}/deno`, "run", "--quiet", "--allow-all", script],
        { signal: AbortSignal.timeout(scaled(60_000)), env: { DENO_DIR: denoDir }, cwd: "/" },
      );
      assert.equal(r.code, 0, r.stderr);
      const { text, regions } = JSON.parse(r.stdout);
      assert.equal(regions.length, 1, text);
      assert.equal(regions[0].stale, true, text);
      if (who === "nobody") {
        assert.equal(regions[0].removeCommand, undefined);
        assert.deepEqual(regions[0].removableBy, { uid: 0, name: "root" });
        assert.match(
          text,
          /^stale: {4}its maker has exited and nobody waits; it belongs to uid 0 \(root\): they or root can remove it$/m,
        );
        assert.doesNotMatch(text, /tst_checkpoint remove/);
      } else {
        assert.equal(regions[0].removableBy, undefined);
        assert.match(text, /to remove it: LTP_IPC_PATH=.* tst_checkpoint remove$/m);
      }
    }
  },
});
