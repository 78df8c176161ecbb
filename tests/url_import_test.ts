import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run, start } from "../testing/process.ts";
import { scaled, timeoutMul } from "../testing/timing.ts";

forgetCallerEnv();

/** The README's blocks marked `<!-- deno-test: NAME -->`, by NAME: what the README tells a test author to write. */
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

Deno.test("mod.ts imports by URL from a script in another folder, with only --allow-import added", async () => {
  const served: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = new URL(request.url).pathname;
    if (path.includes("..") || !path.endsWith(".ts")) return new Response("not found", { status: 404 });
    served.push(path);
    try {
      const body = await Deno.readFile(`${ROOT}${path}`);
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    using dir = tempDir();
    const host = `127.0.0.1:${server.addr.port}`;
    Deno.writeTextFileSync(
      `${dir.path}/script.ts`,
      `import { Checkpoint } from "http://${host}/mod.ts";
       using cp = Checkpoint.create({ layout: "ltp" });
       cp.wakeSync(0, 0, 10);
       console.log(cp.capacity);`,
    );
    const r = await run(Deno.execPath(), [
      "run",
      "--quiet",
      "--no-prompt",
      `--allow-import=${host}`,
      "--allow-ffi",
      "--allow-read=/dev/shm",
      "--allow-write=/dev/shm",
      "script.ts",
    ], { cwd: dir.path, env: { DENO_DIR: `${dir.path}/deno_dir` } });
    assertExit(r, 0);
    assert.equal(r.stdout, "1005\n");
    assert.ok(served.includes("/mod.ts") && served.includes("/ffi/libc.ts"), served.join(" "));
  } finally {
    await server.shutdown();
  }
});

Deno.test("the README's deno test example runs as written: its server, its parent test and child, its flags", async () => {
  const blocks = readmeBlocks();
  const block = (name: string) => {
    const text = blocks.get(name);
    if (text === undefined) throw new Error(`README.md has no block marked <!-- deno-test: ${name} --> any more`);
    return text.replaceAll("127.0.0.1:8000", host).replaceAll("port: 8000", `port: ${port}`);
  };
  const port = freePort();
  const host = `127.0.0.1:${port}`;
  using dir = tempDir();
  const job = `${dir.path}/job`;
  Deno.mkdirSync(job);
  Deno.writeTextFileSync(`${dir.path}/serve.ts`, block("serve.ts"));
  Deno.writeTextFileSync(`${job}/checkpoint_test.ts`, block("checkpoint_test.ts"));
  Deno.writeTextFileSync(`${job}/child.ts`, block("child.ts"));
  // the commands run through sh as a user's would, with `deno` on PATH and nothing of the caller's LTP_IPC_*
  const env = {
    PATH: `${Deno.execPath().replace(/\/[^/]*$/, "")}:/usr/bin:/bin`,
    DENO_DIR: `${dir.path}/deno_dir`,
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
    LTP_TIMEOUT_MUL: `${timeoutMul()}`,
  };
  const serveCommand = block("serve").trim();
  assert.match(serveCommand, / serve\.ts$/);
  // the server runs from the checkout it serves; serve.ts itself stays in the test's folder
  const server = start("sh", ["-c", `exec ${serveCommand.replace(/serve\.ts$/, `${dir.path}/serve.ts`)}`], {
    cwd: ROOT,
    env,
    clearEnv: true,
  });
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

    const r = await run("sh", ["-c", `exec ${block("command").trim()}`], { cwd: job, env, clearEnv: true });
    assertExit(r, 0);
    assert.match(r.stdout, /1 passed/);
    assert.deepEqual(listing(job), ["checkpoint_test.ts", "child.ts"], "the region was not removed");
  } finally {
    server.child.kill("SIGTERM");
    await server.result;
  }
});
