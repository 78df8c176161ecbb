/** tests/fuse_staller.c: a FUSE file whose reads never end, where FUSE can be mounted. */
import assert from "node:assert/strict";
import { compiled } from "./peer.ts";

/**
 * Starts tests/fuse_staller.c with `args` in a private mount namespace of its own; `release` closes its stdin,
 * which ends the FUSE server, so that whatever waits on it gets an error (safe to call twice).
 */
export async function startStaller(args: string[]): Promise<{ staller: Deno.ChildProcess; release: () => void }> {
  const staller = new Deno.Command("unshare", {
    args: ["-m", "--propagation", "private", await compiled("fuse_staller.c"), ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const release = () => {
    try {
      staller.stdin.close();
    } catch {
      // closed already
    }
  };
  return { staller, release };
}

/**
 * Whether tests/fuse_staller.c, started with piped stdout and stderr, says it serves its FUSE file ("ready");
 * where FUSE cannot be mounted, it calls `release`, and records the reason as an ignored step of `t`.
 */
export async function fuseServing(
  staller: Deno.ChildProcess,
  t: Deno.TestContext,
  release: () => void,
): Promise<boolean> {
  const reader = staller.stdout.getReader();
  const first = await reader.read();
  reader.releaseLock();
  if (
    new TextDecoder().decode(first.value ?? new Uint8Array()).startsWith(
      "ready",
    )
  ) return true;
  release();
  const out = await staller.output();
  await t.step({
    name: `FUSE cannot be mounted here: ${new TextDecoder().decode(out.stderr).trim()}`,
    ignore: true,
    fn() {},
  });
  return false;
}

/**
 * The output of `child`, a process that may block on the staller's file system; fails with `what` when it has not
 * ended within `ms`, after `release`, which lets the blocked process go so that it can be reaped.
 */
export async function outputWithin(
  child: Deno.ChildProcess,
  release: () => void,
  ms: number,
  what: string,
): Promise<Deno.CommandOutput> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  const outcome = await Promise.race([child.output(), late]);
  clearTimeout(timer);
  if (outcome !== "late") return outcome;
  release();
  await child.output();
  assert.fail(what);
}

/** Ends a staller, whatever state it is in. */
export async function endStaller(staller: Deno.ChildProcess, release: () => void): Promise<void> {
  release();
  try {
    staller.kill("SIGKILL");
  } catch {
    // ended already
  }
  await staller.output().catch(() => {});
}
