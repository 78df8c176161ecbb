/**
 * Messages read as a user reads them: another user's private region names its owner, mode and the fix; a leased
 * region says it is leased, in one line; a listing of a folder that does not exist says so.
 */
import assert from "node:assert/strict";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { readableSources, tempDir } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { compiled, noPeer } from "../testing/peer.ts";
import { asNobody, kill, NOBODY, run } from "../testing/process.ts";

forgetCallerEnv();

const DENO = Deno.execPath();
const IS_ROOT = Deno.uid() === 0;

function cli(args: string[], env: Record<string, string> = {}) {
  return run(DENO, ["run", "--quiet", "--allow-all", CLI, ...args], { env });
}

Deno.test({
  name: "another user's 0600 region: its owner, its mode and the fix, not a bare 'permission denied' (needs root)",
  ignore: !IS_ROOT,
  async fn() {
    const path = `/dev/shm/ltp_messages_${Deno.pid}`;
    const src = readableSources();
    using cache = tempDir();
    Deno.chownSync(cache.path, NOBODY, NOBODY);
    try {
      assertExit(await cli(["init"], { LTP_IPC_PATH: path }), 0);
      for (const command of [["status"], ["wake", "1000", "0", "0"]]) {
        const r = await run(
          ...asNobody(`${src}/deno`, ["run", "--quiet", "--allow-all", `${src}/cli.ts`, ...command]),
          { env: { LTP_IPC_PATH: path, DENO_DIR: cache.path } },
        );
        assertExit(r, 2);
        assertOneLine(
          r.stderr,
          /^tst_checkpoint: TBROK: Cannot open \/dev\/shm\/ltp_messages_\d+: it belongs to uid 0 \(root\) with mode 0600, which lets no other user (read|write) it: run as that user \(or root\), or have them make it 0666 as LTP's C library does: chmod 0666 \/dev\/shm\/ltp_messages_\d+$/,
        );
      }
    } finally {
      Deno.removeSync(path);
    }
  },
});

Deno.test({
  name: "a region another process holds a lease on: one TBROK line that says so, exit 2, never a wait",
  ignore: noPeer(),
  async fn() {
    using dir = tempDir();
    const path = `${dir.path}/region`;
    assertExit(await cli(["init"], { LTP_IPC_PATH: path }), 0);
    // a lease is taken by the file's owner: this user
    const holder = new Deno.Command(await compiled("confinement.c"), {
      args: ["lease", path, "60"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = holder.stdout.getReader();
      const first = await reader.read();
      reader.releaseLock();
      assert.match(new TextDecoder().decode(first.value), /^leased/);
      for (const command of [["status"], ["wake", "1000", "0", "0"], ["remove"]]) {
        const r = await cli(command, { LTP_IPC_PATH: path });
        assertExit(r, 2);
        assertOneLine(
          r.stderr,
          /^tst_checkpoint: TBROK: Cannot open .*\/region: the file is leased by another process/,
        );
      }
    } finally {
      kill(holder, "SIGTERM");
      await holder.output();
    }
    assertExit(await cli(["remove"], { LTP_IPC_PATH: path }), 0);
  },
});

Deno.test("status --all of a folder that does not exist says so (exit 0: a listing's notes are no error)", async () => {
  const r = await cli(["status", "--all", "/nonexistent/folder"]);
  assertExit(r, 0);
  assert.match(r.stdout, /^note: +\/nonexistent\/folder skipped: The folder \/nonexistent does not exist$/m);
  assert.doesNotMatch(r.stdout + r.stderr, /reinstall|--allow-read/);
});
