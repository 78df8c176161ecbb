/**
 * `status --all` under a low open-files limit, with real processes: a folder full of planted page-sized files that
 * start with the magic holds no more of the listing's descriptors than an empty one, so a real region with a
 * waiter is listed, and no entry is called a mount point because a read of fdinfo failed.
 */
import assert from "node:assert/strict";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { CLI, PAGE } from "../testing/paths.ts";
import { noPeer, peer } from "../testing/peer.ts";
import { bounded, CHILD_FLAGS, kill, run, start } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const PLANTED = 1100;
const LIMIT = 64;

/** `deno run` of `args` (after Deno's flags) under `ulimit -n LIMIT`, bounded in time. */
function limited(args: string[]) {
  const script = `ulimit -n ${LIMIT} && exec "$0" "$@"`;
  return bounded(start("/bin/sh", ["-c", script, Deno.execPath(), "run", ...CHILD_FLAGS, ...args]), scaled(30_000));
}

/** `status --all ARGS` by the CLI under `ulimit -n LIMIT`. */
function statusAll(args: string[]) {
  return limited([CLI, "status", "--all", ...args]);
}

/** How many processes wait on `path`'s checkpoint 0 (ltp layout), as the kernel counts: by the CLI, unlimited. */
async function waiting(path: string): Promise<number> {
  const r = await run(Deno.execPath(), ["run", ...CHILD_FLAGS, CLI, "status", "--json"], {
    env: { LTP_IPC_PATH: path },
  });
  return JSON.parse(r.stdout).waiters[0] ?? 0;
}

Deno.test(
  `status --all under ulimit -n ${LIMIT} with ${PLANTED} planted files lists the real region and its waiter, and says nothing is mounted`,
  { ignore: noPeer() },
  async () => {
    using dir = tempDir();
    const d = dir.path;
    // look-alikes: a page that starts with the magic, which the old scan kept open until the end
    const planted = new Uint8Array(PAGE);
    planted.set(new TextEncoder().encode("LTPM"));
    for (let i = 0; i < PLANTED; i++) Deno.writeFileSync(`${d}/planted_${String(i).padStart(4, "0")}`, planted);
    const c = await peer();
    const region = `${d}/ltp_victim_1`;
    assert.equal((await run(c, ["create", region])).code, 0);
    const waiter = start(c, ["wait", region, "ltp", "0", String(scaled(60_000))]);
    try {
      const end = performance.now() + scaled(10_000);
      while (await waiting(region) < 1) {
        assert.ok(performance.now() < end, "the C waiter never waited");
        await new Promise((r) => setTimeout(r, 20));
      }

      const text = await statusAll([d]);
      assert.equal(text.timedOut, false);
      assert.equal(text.code, 0, text.stderr);
      const blocks = text.stdout.split("\n\n");
      const victim = blocks.find((b) => b.startsWith(`path:     ${region}\n`));
      assert.ok(victim, `the region is not listed:\n${text.stdout.slice(-2000)}`);
      assert.match(victim, /^ {2}checkpoint 0: 1 waiting/m);
      assert.doesNotMatch(text.stdout, /mounted/);
      assert.doesNotMatch(text.stdout, /too many open files/);

      const json = await statusAll(["--json", d]);
      assert.equal(json.code, 0, json.stderr);
      const regions: { path: string; waiters: Record<number, number> }[] = JSON.parse(json.stdout);
      assert.equal(regions.find((r) => r.path === region)?.waiters[0], 1);
    } finally {
      kill(waiter.child, "SIGKILL");
      await waiter.result;
    }
  },
);

Deno.test(
  "status --all with no descriptor left for its look at the entries says so, and never calls them mounted",
  { ignore: noPeer() },
  async () => {
    using dir = tempDir();
    const d = dir.path;
    const c = await peer();
    for (let i = 0; i < 3; i++) assert.equal((await run(c, ["create", `${d}/ltp_r_${i}`])).code, 0);
    // every descriptor taken but two: the folder's and one for an entry, none for that entry's fdinfo
    const script = Deno.makeTempFileSync({ dir: "/tmp", prefix: "ltp-checkpoint-fds-", suffix: ".ts" });
    try {
      Deno.writeTextFileSync(
        script,
        `import { formatListing, listRegions } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
const held = [];
const fill = () => {
  for (;;) {
    try {
      held.push(Deno.openSync(${JSON.stringify(d)}));
    } catch {
      break;
    }
  }
};
fill();
// a descriptor Deno itself held for a moment (loading, caching) is free again a little later: taken too
await new Promise((resolve) => setTimeout(resolve, 200));
fill();
held.pop()!.close();
held.pop()!.close();
const listing = listRegions([${JSON.stringify(d)}]);
for (const f of held) f.close();
console.log(formatListing(listing));
`,
      );
      const r = await limited([script]);
      assert.equal(r.timedOut, false);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /mounted/);
      assert.match(r.stdout, /: 3 entries not looked at: too many open files in this process \(see ulimit -n\)$/m);
    } finally {
      Deno.removeSync(script);
    }
  },
);
