/** tests/fuse_staller.c: a FUSE file whose reads never end, where FUSE can be mounted. */
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
