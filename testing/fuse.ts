/** tests/fuse_staller.c: a FUSE file whose reads never end, where FUSE can be mounted. */

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
