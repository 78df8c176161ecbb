import assert from "node:assert/strict";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { run } from "../testing/process.ts";

forgetCallerEnv();

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
