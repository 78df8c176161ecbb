/** A failed init or create() removes what it made: on a full file system, nothing is left behind. */
import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { CLI } from "../testing/paths.ts";
import { commandExists, run } from "../testing/process.ts";
import { sandboxFlags, script, tryInit, workspace } from "../testing/sandbox.ts";

forgetCallerEnv();

const DENO = Deno.execPath();
const IS_ROOT = Deno.uid() === 0;

/** Whether this process may make a private mount namespace (root, and unshare there). */
const CAN_UNSHARE = IS_ROOT && commandExists("unshare") &&
  new Deno.Command("unshare", { args: ["-m", "--propagation", "private", "true"], stderr: "null" }).outputSync()
    .success;

Deno.test({
  name: "on a full file system, init, create() and the CLI's init fail in one line each and leave no file behind " +
    "(needs root, for a small tmpfs in a private mount namespace)",
  ignore: !CAN_UNSHARE,
  fn: async () => {
    using w = workspace();
    const body = `${tryInit([`${w.dir}/r`])}
try {
  Checkpoint.create({ dir: ${JSON.stringify(w.dir)} }).close();
  console.log("made");
} catch (e) {
  console.log(e.name + ": " + JSON.stringify(e.message.replace(/ltp_checkpoint_\\S+ /, "ltp_checkpoint_* ")));
}`;
    // a one-page tmpfs over DIR, filled: creating a file works, growing it to a page fails (ENOSPC)
    const shell = `mount -t tmpfs -o size=4k none "$1" && head -c 4096 /dev/zero >"$1/filler" || exit 99
      "$2" run --quiet ${sandboxFlags(w.dir).join(" ")} "$3"
      LTP_IPC_PATH="$1/c" "$2" run --quiet ${sandboxFlags(w.dir).join(" ")} "$4" init 2>&1; echo "CLI exit $?"
      ls -A "$1"`;
    const file = script(w.root, "full", body);
    const r = await run("unshare", ["-m", "--propagation", "private", "sh", "-c", shell, "sh", w.dir, DENO, file, CLI]);
    assertExit(r, 0);
    const grow = (name: string) => `Cannot grow ${w.dir}/${name} to 4096 bytes: no space left on device`;
    assert.deepEqual(r.stdout.trim().split("\n"), [
      `Error: ${JSON.stringify(grow("r"))}`,
      `Error: ${JSON.stringify(grow("ltp_checkpoint_*"))}`,
      `tst_checkpoint: TBROK: ${grow("c")}`,
      "CLI exit 2",
      "filler",
    ]);
  },
});
