/** Faults: killed waiters, signals, an unlinked or truncated region, a test that ends mid-wait. */
import assert from "node:assert/strict";
import { Checkpoint } from "../mod.ts";
import { assertExit } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { noPeer, startPeer } from "../testing/peer.ts";
import { cli, run, startActor, startCli } from "../testing/process.ts";
import { eventually, scaled, timeoutMul } from "../testing/timing.ts";

forgetCallerEnv();

// the C peer does not read LTP_TIMEOUT_MUL: the test scales what it gives it
const PEER_TIMEOUT = `${scaled(30000)}`;

Deno.test("a waiter killed mid-wait leaves the waker's count honest", { ignore: noPeer() }, async () => {
  using cp = Checkpoint.create();
  const waiters = await Promise.all([0, 1, 2].map(() => startPeer(["wait", cp.path, cp.layout, "1", PEER_TIMEOUT])));
  await cp.waitForWaiters(1, 3, 10000);
  waiters[0].child.kill("SIGKILL");
  assert.equal((await waiters[0].result).code, 137);
  await eventually(() => cp.waiters(1) === 2);

  // three cannot be woken any more: LTP's rule, a timeout, on time
  const start = performance.now();
  await assert.rejects(() => cp.wake(1, 3, 300), Deno.errors.TimedOut);
  const elapsed = performance.now() - start;
  assert.ok(elapsed >= 300 * timeoutMul() && elapsed < scaled(2000), `the wake gave up after ${elapsed} ms`);
  for (const w of waiters.slice(1)) assertExit(await w.result, 0); // it woke the two that were left

  // and when enough others arrive, it succeeds
  const more = await Promise.all([0, 1].map(() => startPeer(["wait", cp.path, cp.layout, "2", PEER_TIMEOUT])));
  const doomed = await startPeer(["wait", cp.path, cp.layout, "2", PEER_TIMEOUT]);
  await cp.waitForWaiters(2, 3, 10000);
  doomed.child.kill("SIGKILL");
  await doomed.result;
  await eventually(() => cp.waiters(2) === 2);
  await cp.wake(2, 2, 10000);
  for (const w of more) assertExit(await w.result, 0);
});

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`the CLI interrupted by ${signal} while it waits exits at once with ${code} and no stack trace`, async () => {
    using cp = Checkpoint.create();
    const waiter = startCli(["wait", "30000", "0"], { env: cp.env });
    await cp.waitForWaiters(0, 1, 10000);
    const start = performance.now();
    waiter.child.kill(signal);
    const r = await waiter.result;
    assert.ok(performance.now() - start < scaled(2000));
    assert.equal(r.code, code);
    assert.equal(r.stderr, "");
    // and through a shell, as LTP's scripts see it
    const sh = startCli(["wait", "30000", "0"], { env: cp.env });
    await cp.waitForWaiters(0, 1, 10000);
    sh.child.kill(signal);
    assert.equal((await sh.result).code, code);
  });
}

Deno.test("waiters on an unlinked region still complete; a later open is refused clearly", {
  ignore: noPeer(),
}, async () => {
  using dir = tempDir();
  const path = `${dir.path}/region`;
  const cp = Checkpoint.init(path);
  const env = { LTP_IPC_PATH: path };
  const waiters = [
    await startPeer(["wait", path, cp.layout, "4", PEER_TIMEOUT]),
    startCli(["wait", "30000", "4"], { env }),
    startActor(["wait", "4", "30000"], { env }),
  ];
  await cp.waitForWaiters(4, 3, 10000);
  Deno.removeSync(path);
  await cp.wake(4, 3, 10000); // through the mapping, which outlives the name
  for (const w of waiters) assertExit(await w.result, 0);
  cp.close();
  assert.throws(() => Checkpoint.open(path), Deno.errors.NotFound);
  const r = await cli(["wake", "10", "4", "1"], { env });
  assertExit(r, 2);
  assert.match(r.stderr, /does not exist/);
});

Deno.test("a region truncated below a page is refused by open, and one truncated under a mapping fails cleanly", async () => {
  using dir = tempDir();
  const path = `${dir.path}/region`;
  Checkpoint.init(path).close();
  Deno.truncateSync(path, 100);
  assert.throws(() => Checkpoint.open(path), /holds 100 bytes, less than one page/);
  const r = await cli(["wait", "10", "0"], { env: { LTP_IPC_PATH: path } });
  assertExit(r, 2);

  // truncated while mapped: the module never touches the mapping itself, so no SIGBUS
  Deno.removeSync(path);
  Checkpoint.init(path).close();
  const script = `
    import { Checkpoint } from "${ROOT}/mod.ts";
    const cp = Checkpoint.open(${JSON.stringify(path)});
    Deno.truncateSync(${JSON.stringify(path)}, 0);
    for (const call of [() => cp.waitSync(0, 50), () => cp.wakeSync(0, 1, 50), () => cp.waiters(0)]) {
      try { call(); console.log("no error"); } catch (e) { console.log(e.name); }
    }`;
  const child = await run(Deno.execPath(), ["eval", script]);
  assertExit(child, 0);
  const lines = child.stdout.trim().split("\n");
  assert.equal(lines.length, 3, child.stdout + child.stderr);
  assert.ok(lines.every((l) => l !== "no error"), child.stdout);
});

Deno.test("a deno test that ends with a wait pending does not hang, and sanitizeOps reports the wait", async () => {
  using dir = tempDir();
  // the region is in the test's folder, not create()d in /dev/shm: the child never closes it
  const write = (name: string, options: string) => {
    Deno.writeTextFileSync(
      `${dir.path}/${name}`,
      `import { Checkpoint } from "${ROOT}/mod.ts";
       const cp = Checkpoint.init(${JSON.stringify(`${dir.path}/${name}.region`)});
       Deno.test({ name: "forgets to await its wait", ${options} fn() { cp.wait(0, 30000).catch(() => {}); } });`,
    );
    return `${dir.path}/${name}`;
  };
  const test = (file: string) =>
    run(Deno.execPath(), ["test", "--allow-all", "--no-check", file], { env: { NO_COLOR: "1" } });

  const start = performance.now();
  // explicit: Deno 2.0 to 2.7 sanitize ops by default, 2.8 and later do not
  const plain = await test(write("plain_test.ts", "sanitizeOps: false, sanitizeResources: false,"));
  assertExit(plain, 0);
  const elapsed = performance.now() - start;
  assert.ok(elapsed < scaled(15000), `deno test took ${elapsed} ms with a 30 s wait pending`);

  const sanitized = await test(write("sanitized_test.ts", "sanitizeOps: true,"));
  assert.notEqual(sanitized.code, 0, "the pending wait went unnoticed");
  assert.match(sanitized.stdout + sanitized.stderr, /non.?blocking ffi call/i);
});
