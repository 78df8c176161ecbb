import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run, start } from "../testing/process.ts";
import { scaled, timeoutMul } from "../testing/timing.ts";

forgetCallerEnv();

/** The README's blocks marked `<!-- deno-test: NAME -->`, by NAME: what it tells a test author to write and run. */
function readmeBlocks(): Map<string, string> {
  const readme = Deno.readTextFileSync(`${ROOT}/README.md`);
  return new Map(
    Array.from(readme.matchAll(/<!-- deno-test: (\S+) -->\s*```[^\n]*\n([\s\S]*?)```/g), (m) => [m[1], m[2]]),
  );
}

/** A port nobody listens on now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return (listener.addr as Deno.NetAddr).port;
}

/**
 * A copy of the checkout as a fresh clone has it (its files as they are now, without hidden folders or installed
 * packages), with the pinned Deno that `./deno` would install linked in rather than fetched again.
 */
function freshClone(from: string, into: string): void {
  Deno.mkdirSync(into, { recursive: true });
  for (const entry of Deno.readDirSync(from)) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    if (entry.isDirectory) freshClone(`${from}/${entry.name}`, `${into}/${entry.name}`);
    else if (entry.isFile) Deno.copyFileSync(`${from}/${entry.name}`, `${into}/${entry.name}`);
  }
}

Deno.test("the README's deno test recipe runs as printed from a fresh clone, and its failing example fails as shown", async () => {
  const blocks = readmeBlocks();
  const port = freePort();
  const host = `127.0.0.1:${port}`;
  const block = (name: string) => {
    const text = blocks.get(name);
    if (text === undefined) throw new Error(`README.md has no block marked <!-- deno-test: ${name} --> any more`);
    return text.replaceAll("127.0.0.1:8000", host).replaceAll("port: 8000", `port: ${port}`);
  };
  using dir = tempDir();
  const clone = `${dir.path}/clone`;
  freshClone(ROOT, clone);
  Deno.symlinkSync(`${ROOT}/tools/node_modules`, `${clone}/tools/node_modules`);
  Deno.writeTextFileSync(`${clone}/serve.ts`, block("serve.ts"));
  Deno.mkdirSync(`${clone}/job`);
  const test = block("checkpoint_test.ts");
  Deno.writeTextFileSync(`${clone}/job/checkpoint_test.ts`, test);
  Deno.writeTextFileSync(`${clone}/job/child.ts`, block("child.ts"));
  // as a new user's shell has it: no deno on PATH, nothing of the caller's LTP_IPC_*
  const env = {
    PATH: "/usr/bin:/bin",
    HOME: dir.path,
    DENO_DIR: `${dir.path}/deno_dir`,
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
    LTP_TIMEOUT_MUL: `${timeoutMul()}`,
  };
  const server = start("sh", ["-c", `exec ${block("serve").trim()}`], { cwd: clone, env, clearEnv: true });
  try {
    const end = performance.now() + scaled(20000);
    for (;;) {
      const answer = await fetch(`http://${host}/mod.ts`).catch(() => undefined);
      if (answer) {
        assert.equal(answer.headers.get("content-type"), "application/typescript");
        await answer.body?.cancel();
        break;
      }
      if (performance.now() > end) throw new Error(`the README's server did not answer: ${await server.result}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const traversal = await fetch(`http://${host}/..%2F..%2Fetc%2Fpasswd`);
    assert.equal(traversal.status, 404);
    await traversal.body?.cancel();

    const command = block("command").trim();
    assert.match(command, /^\.\/deno test /);
    const passed = await run("sh", ["-c", `exec ${command}`], { cwd: clone, env, clearEnv: true });
    assertExit(passed, 0);
    assert.match(passed.stdout, /1 passed/);
    assert.deepEqual(listing(`${clone}/job`), ["checkpoint_test.ts", "child.ts"], "the region was not removed");

    // the failing example: the same test with the child's --allow-env left out
    const withoutEnv = test.replace(/^ *"--allow-env=[^"]*",\n/m, "");
    assert.notEqual(withoutEnv, test, "the README's CHILD_FLAGS have no --allow-env line to leave out");
    Deno.writeTextFileSync(`${clone}/job/checkpoint_test.ts`, withoutEnv);
    const failed = await run("sh", ["-c", `exec ${command}`], { cwd: clone, env, clearEnv: true });
    assert.notEqual(failed.code, 0);
    // the pid, and the lines and columns in the module's own files (served over http), which any edit of them moves
    const same = (text: string) =>
      text.replace(/\(pid \d+\)/g, "(pid N)").replace(/(http:\/\/[^ )]+\.ts):\d+:\d+/g, "$1:L:C");
    const output = same(failed.stdout + failed.stderr);
    // every line the README shows, but the stack's, which names the reader's own checkout
    const shown = block("failing-output").trim().split("\n").filter((line) => !line.includes("file:///"));
    assert.equal(shown.length, 2);
    for (const line of shown.map(same)) {
      assert.ok(output.includes(line), `the README shows\n${line}\nbut the run printed\n${output}`);
    }
    assert.match(output, /^ {4}at async file:\/\/\/\S+\/clone\/job\/checkpoint_test\.ts:14:3$/m);
    assert.deepEqual(listing(`${clone}/job`), ["checkpoint_test.ts", "child.ts"], "the region was not removed");
  } finally {
    server.child.kill("SIGTERM");
    await server.result;
  }
});
