/**
 * Processes that keep rewriting the words of a 0666 region (anyone may, and LTP's C library makes its regions so)
 * cannot stretch a call past its own time: with real scribbler processes, the CLI's `wait 1000 0`, `waiters 1000 0 1`,
 * `wake 1000 0 1` and `status`, and the module's counts, return within their budget plus a second, beyond what a Deno
 * start costs under the same load. The bounds are generous and scaled by LTP_TIMEOUT_MUL: they catch a retry without a
 * deadline (the kernel answers EAGAIN each time a word changed since it was read), not slowness.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { compiled, noPeer, peer } from "../testing/peer.ts";
import { cli, kill, run, start, type Started } from "../testing/process.ts";
import { eventually, scaled } from "../testing/timing.ts";

forgetCallerEnv();

/** The ltp layout's checkpoint 0: the word every call below looks at. */
const WORD_0 = 76;
const SCRIBBLERS = 12;

/**
 * Starts SCRIBBLERS scribblers on `path`: a third on checkpoint 0's word alone, the rest on every word. At the
 * lowest priority: they still rewrite the words whenever a CPU is free, and do not starve the call under test of
 * CPU, whose slowness on a loaded machine is not what is tested.
 */
async function scribble(path: string): Promise<Started[]> {
  const program = await compiled("scribbler.c");
  const started: Started[] = [];
  for (let i = 0; i < SCRIBBLERS; i++) {
    started.push(start("nice", ["-n", "19", program, ...(i % 3 === 0 ? [path, String(WORD_0)] : [path])]));
  }
  // the word changes under our eyes once they have begun
  const word = () => new DataView(Deno.readFileSync(path).buffer).getUint32(WORD_0, true);
  await eventually(() => word() !== word(), scaled(10_000));
  return started;
}

async function stop(scribblers: Started[]): Promise<void> {
  for (const s of scribblers) kill(s.child, "SIGKILL");
  await Promise.all(scribblers.map((s) => s.result));
}

/** A CLI call's result and wall time in ms. */
async function timed(args: string[], env: Record<string, string>) {
  const t0 = performance.now();
  const r = await cli(args, { env, signal: AbortSignal.timeout(scaled(60_000)) });
  return { ...r, ms: performance.now() - t0 };
}

Deno.test(
  `with ${SCRIBBLERS} scribblers on a 0666 region, wait, waiters, wake and status end within their budget plus a second`,
  { ignore: noPeer() },
  async () => {
    using dir = tempDir();
    const path = `${dir.path}/ltp_scribbled_1`;
    assert.equal((await run(await peer(), ["create", path])).code, 0);
    const env = { LTP_IPC_PATH: path };
    const scribblers = await scribble(path);
    try {
      // what a Deno start of the CLI costs with the scribblers running, in a call with nothing to wait for: not the
      // calls' to answer for
      const startup = (await timed(["waiters", "1000", "0", "0"], env)).ms;
      const calls: [string[], number, number[]][] = [
        [["wait", "1000", "0"], scaled(1000), [1]],
        [["waiters", "1000", "0", "1"], scaled(1000), [1]],
        // nobody waits: FUTEX_WAKE compares no word, but the wake's retries must still end at its deadline
        [["wake", "1000", "0", "1"], scaled(1000), [1]],
        // a snapshot (half a second at most) and the /proc scan (1.5 s at most); a word that never holds still is
        // a TBROK saying so
        [["status"], scaled(2000), [0, 2]],
      ];
      for (const [args, budget, codes] of calls) {
        const r = await timed(args, env);
        assert.ok(codes.includes(r.code), `${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
        if (r.code === 2) assert.match(r.stderr, /keeps changing the word/);
        assert.equal(r.stderr.trim().split("\n").length <= 1, true, r.stderr);
        const bound = startup + budget + scaled(1000);
        assert.ok(r.ms < bound, `${args.join(" ")} took ${Math.round(r.ms)} ms, more than ${Math.round(bound)}`);
      }
    } finally {
      await stop(scribblers);
    }
  },
);

Deno.test(
  "with scribblers on a region, the module's waiters(), snapshot(), status() and waitForWaitersSync() end in time",
  { ignore: noPeer() },
  async () => {
    using dir = tempDir();
    const path = `${dir.path}/ltp_scribbled_2`;
    assert.equal((await run(await peer(), ["create", path])).code, 0);
    const scribblers = await scribble(path);
    try {
      using cp = Checkpoint.open(path, { layout: "ltp" });
      /** Runs `call`, which may give up with WouldBlock (a word that never held still), within `budget` + 1 s. */
      const within = (what: string, budget: number, call: () => unknown) => {
        const t0 = performance.now();
        try {
          call();
        } catch (error) {
          if (!(error instanceof Deno.errors.WouldBlock) && !(error instanceof Deno.errors.TimedOut)) throw error;
        }
        const ms = performance.now() - t0;
        assert.ok(ms < scaled(budget + 1000), `${what} took ${Math.round(ms)} ms`);
      };
      within("waiters(0)", 500, () => cp.waiters(0));
      within("snapshot()", 500, () => cp.snapshot());
      within("status()", 2000, () => cp.status());
      within("waitForWaitersSync(0, 1, 1000)", scaled(1000) + 500, () => cp.waitForWaitersSync(0, 1, 1000));
      within("waitSync(0, 1000)", scaled(1000) + 500, () => cp.waitSync(0, 1000));
    } finally {
      await stop(scribblers);
    }
  },
);
