/**
 * The release gate, imported first by the module and so by the CLI, before
 * anything an older Deno lacks: Deno 1.x gets one line naming the release
 * needed, not a TypeError from deep inside. Run as the CLI (cli.ts, or the
 * installed bundle of it, cli.js), that line is LTP's TBROK and the exit
 * code 2 (a broken set-up); imported, it is a thrown error whose stack is
 * the message alone.
 * @module
 */
import { unsupportedRuntime } from "./runtime.ts";

const why = unsupportedRuntime();
if (why !== undefined) {
  if (/\/cli\.[jt]s$/.test(globalThis.Deno?.mainModule ?? "")) {
    console.error(`tst_checkpoint: TBROK: ${why}`);
    Deno.exit(2);
  }
  const error = new Error(why);
  error.name = "NotSupported";
  error.stack = why;
  throw error;
}
