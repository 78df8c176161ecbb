/**
 * `tst_checkpoint`: LTP's checkpoint tool for shell tests, a drop-in for the
 * C binary, built on this module's public API. The one entry of the CLI:
 * `deno run cli.ts`, and the installed tool's bundle of it.
 *
 * Exit codes as LTP's: 0 success; 1 timeout, misuse or an id out of range;
 * 2 a broken set-up. Every failure is one line on stderr (misuse adds the usage).
 * @module
 */
// first: on a Deno too old, its one line comes before anything else is evaluated
import "./src/gate.ts";
import { run } from "./cli/command.ts";
import { setProcessName } from "./ffi/syscalls.ts";

if (import.meta.main) {
  // ps, and status's list of waiters, then show the tool LTP's tests call rather than "deno"; asked first, as
  // FFI without permission would prompt, and cosmetic, so a refusal is not an error
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") setProcessName("tst_checkpoint");
  Deno.exit(await run(Deno.args));
}
