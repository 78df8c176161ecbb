/**
 * The CLI's release check, imported before the module: on Deno 1.x it prints
 * LTP's TBROK line and exits 2 (a broken set-up), before the module's own
 * check would end the process with a thrown error.
 * @module
 */
import { unsupportedRuntime } from "./runtime.ts";

const why = unsupportedRuntime();
if (why !== undefined) {
  console.error(`tst_checkpoint: TBROK: ${why}`);
  Deno.exit(2);
}
