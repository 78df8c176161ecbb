/** Without --allow-ffi, even on a terminal, the module and the CLI say so in one line and never prompt. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { shellQuote } from "../src/text.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { CLI } from "../testing/paths.ts";
import { bounded, start } from "../testing/process.ts";
import { script, workspace } from "../testing/sandbox.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const DENO = Deno.execPath();

/** Runs a shell command on a pseudo-terminal (util-linux's script), bounded; the output with colours and \r removed. */
async function onTerminal(command: string, env: Record<string, string> = {}) {
  const r = await bounded(start("script", ["-qec", command, "/dev/null"], { env }), scaled(10000));
  // deno-lint-ignore no-control-regex
  const text = r.stdout.replace(/\x1b\[[0-9;]*m/g, "").replaceAll("\r", "");
  return { ...r, text };
}

Deno.test("without --allow-ffi on a terminal, the module and the CLI say so in one line and never prompt", async () => {
  using w = workspace();
  using region = Checkpoint.create();
  const body = `try {
    Checkpoint.create().close();
    console.log("created a region without --allow-ffi");
  } catch (e) {
    console.error(e instanceof Error ? e.name + ": " + e.message : e);
    Deno.exit(1);
  }`;
  const noFfi = "--allow-env --allow-read=/dev/shm,/tmp --allow-write=/dev/shm,/tmp"; // and no --no-prompt
  const deno = `${shellQuote(DENO)} run --quiet --no-config ${noFfi}`;
  // each case: the command, the exit code it must end with, and what its one line must start with
  const cases: Record<string, [string, number, RegExp]> = {
    "module create()": [`${deno} ${shellQuote(script(w.root, "noffi", body))}`, 1, /^NotCapable: /],
    "CLI init": [`env -u LTP_IPC_PATH ${deno} ${shellQuote(CLI)} init`, 2, /^tst_checkpoint: TBROK: /],
    "CLI wait": [
      `LTP_IPC_PATH=${shellQuote(region.path)} ${deno} ${shellQuote(CLI)} wait 10 0`,
      2,
      /^tst_checkpoint: TBROK: /,
    ],
  };
  const results = await Promise.all(Object.values(cases).map(([command]) => onTerminal(command)));
  const problems = Object.entries(cases).flatMap(([name, [, exit, first]], i) => {
    const { timedOut, code, text } = results[i];
    const lines = text.split("\n").filter(Boolean);
    if (timedOut) return [`${name} hung (killed after ${scaled(10000)} ms): ${text}`];
    if (/Allow\?|Deno requests/.test(text)) return [`${name} prompted: ${text}`];
    if (lines.length !== 1 || !/--allow-ffi/.test(lines[0])) {
      return [`${name}: not one line naming --allow-ffi: ${text}`];
    }
    if (!first.test(lines[0])) return [`${name}: not ${first}: ${text}`];
    if (code !== exit) return [`${name}: exit ${code}, not ${exit}`];
    return [];
  });
  assert.deepEqual(problems, []);
});
