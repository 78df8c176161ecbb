/**
 * `tst_checkpoint`: LTP's checkpoint tool for shell tests, a drop-in for the
 * C binary, built on this module's public API. The one entry of the CLI:
 * `deno run cli.ts`, and the installed tool's bundle of it.
 *
 * Exit codes as LTP's: 0 success; 1 timeout, misuse or an id out of range;
 * 2 a broken set-up. Every failure is one line on stderr (misuse adds the usage).
 * @module
 */
import { run } from "./cli/command.ts";

if (import.meta.main) Deno.exit(await run(Deno.args));
