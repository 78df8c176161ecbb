/**
 * Kernels older than this one: a seccomp filter (tests/nosys.c) answers ENOSYS, or EPERM as container runtimes do,
 * for futex_waitv (Linux 5.16) and openat2 (Linux 5.6), and the module takes its documented fallbacks.
 */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { ROOT } from "../testing/paths.ts";
import { compiled, noPeer } from "../testing/peer.ts";
import { CHILD_FLAGS, startCli } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

const FUTEX_WAITV = 449, OPENAT2 = 437, ENOSYS = 38, EPERM = 1;

async function withoutSyscalls(errno: number, source: string, env: Record<string, string>) {
  const nosys = await compiled("nosys.c");
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(script, source);
    const args = [`${errno}`, `${FUTEX_WAITV},${OPENAT2}`, Deno.execPath(), "run", ...CHILD_FLAGS, script];
    return await new Deno.Command(nosys, { args, env, stdout: "piped", stderr: "piped" }).output();
  } finally {
    await Deno.remove(script);
  }
}

for (const [name, errno] of [["ENOSYS", ENOSYS], ["EPERM", EPERM]] as const) {
  Deno.test(`without futex_waitv and openat2 (${name}), a region opens, and waits, aborts and close work`, {
    ignore: noPeer(),
  }, async () => {
    using cp = Checkpoint.create();
    const waker = startCli(["wake", "10000", "1", "1"], { env: cp.env });
    const r = await withoutSyscalls(
      errno,
      `import { Checkpoint } from "${ROOT}/mod.ts";
       const cp = Checkpoint.open();
       const controller = new AbortController();
       const aborted = cp.wait(0, ${scaled(10000)}, { signal: controller.signal }).catch((e) => e.name);
       await cp.waitForWaiters(0, 1, ${scaled(5000)});
       controller.abort();
       console.log(await aborted);
       await cp.wait(1, ${scaled(10000)});
       console.log("woken");
       const closed = cp.wait(2, ${scaled(10000)}).catch((e) => e.name);
       cp.close();
       console.log(await closed);`,
      cp.env,
    );
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    assert.deepEqual(out.trim().split("\n"), ["AbortError", "woken", "BadResource"]);
    assertExit(await waker.result, 0);
  });
}

Deno.test("the tests' own check: the filter really hides futex_waitv", { ignore: noPeer() }, async () => {
  const probe = await withoutSyscalls(
    ENOSYS,
    `const lib = Deno.dlopen("libc.so.6", { syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
       errno: { name: "__errno_location", parameters: [], result: "pointer" } });
     const r = lib.symbols.syscall(${FUTEX_WAITV}n, 0n, 0n, 0n, 0n, 0n);
     console.log(r, new Deno.UnsafePointerView(lib.symbols.errno()!).getInt32());`,
    {},
  );
  assert.equal(new TextDecoder().decode(probe.stdout).trim(), `-1n ${ENOSYS}`);
});
