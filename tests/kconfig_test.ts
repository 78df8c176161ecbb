/**
 * src/kconfig.ts and src/gunzip.ts: LTP's slow-kernel factor, from kernel configs of our own (plain and gzip,
 * through KCONFIG_PATH, missing, unreadable), never the machine's: where the search would go on to the machine's
 * files, a child runs with read permission for the test's folder only.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { Checkpoint } from "../mod.ts";
import { gunzip } from "../src/gunzip.ts";
import { SLOW_OPTIONS, slownessOf, slowOptionIn } from "../src/kconfig.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { CHILD_FLAGS, cli, runScript } from "../testing/process.ts";
import { scaled, shownMs, timeoutMul } from "../testing/timing.ts";

forgetCallerEnv();

const PLAIN =
  "#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_64BIT=y\n# CONFIG_LOCKDEP is not set\nCONFIG_HZ=250\n";
const KASAN = `${PLAIN}CONFIG_KASAN=y\nCONFIG_KASAN_GENERIC=y\n`;
const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("slowOptionIn finds each of LTP's slow options set to y, and nothing in a plain config", () => {
  assert.equal(slowOptionIn(PLAIN), undefined);
  for (const name of SLOW_OPTIONS) assert.equal(slowOptionIn(`${PLAIN}${name}=y\n`), name);
  assert.equal(SLOW_OPTIONS.length, 13);
});

Deno.test("slowOptionIn names the first slow option in LTP's order, not in the file's", () => {
  assert.equal(slowOptionIn("CONFIG_DEBUG_OBJECTS=y\nCONFIG_KASAN=y\nCONFIG_LOCKDEP=y\n"), "CONFIG_LOCKDEP");
});

Deno.test("slowOptionIn counts only =y: m, n, a prefix of another name, a comment or a later line unsetting it do not", () => {
  assert.equal(slowOptionIn("CONFIG_KASAN=m\nCONFIG_LOCKDEP=n\n"), undefined);
  assert.equal(slowOptionIn("CONFIG_KASAN_GENERIC=y\nCONFIG_LOCKDEP_SUPPORT=y\nCONFIG_DEBUG_NET_X=y\n"), undefined);
  assert.equal(slowOptionIn("# CONFIG_KASAN=y\n"), undefined);
  assert.equal(slowOptionIn("CONFIG_KASAN=y\n# CONFIG_KASAN is not set\n"), undefined);
  assert.equal(slowOptionIn("# CONFIG_KASAN is not set\nCONFIG_KASAN=y"), "CONFIG_KASAN", "last line, no newline");
  assert.equal(slowOptionIn("CONFIG_KASAN=y\r\n"), "CONFIG_KASAN");
});

Deno.test("slownessOf reads plain and gzip configs alike and says why in LTP's words", () => {
  for (const data of [bytes(KASAN), new Uint8Array(gzipSync(bytes(KASAN)))]) {
    assert.deepEqual(slownessOf(data, "/x"), { factor: 4, reason: "×4: CONFIG_KASAN", path: "/x" });
  }
  assert.deepEqual(slownessOf(new Uint8Array(gzipSync(bytes(PLAIN))), "/y"), { factor: 1, reason: "", path: "/y" });
});

Deno.test("gunzip gives back what gzip was given, at every level, and refuses a cut or damaged stream", () => {
  const samples = [
    new Uint8Array(0),
    bytes(KASAN.repeat(2000)),
    new Uint8Array(70_000).map((_, i) => (i * 7919) & 255),
    new Uint8Array(100_000).fill(65),
  ];
  for (const level of [0, 1, 6, 9]) {
    for (const data of samples) {
      const gz = new Uint8Array(gzipSync(data, { level }));
      assert.deepEqual(gunzip(gz), data, `level ${level}, ${data.length} bytes`);
      if (data.length > 0) {
        assert.throws(() => gunzip(gz.subarray(0, gz.length >> 1)), Deno.errors.InvalidData);
      }
    }
  }
  assert.throws(() => gunzip(bytes(KASAN)), Deno.errors.InvalidData);
  const gz = new Uint8Array(gzipSync(bytes(KASAN.repeat(50))));
  for (let i = 0; i < 400; i++) {
    const damaged = gz.slice();
    damaged[10 + (i % 100)] ^= 1 << (i % 8);
    try {
      gunzip(damaged);
    } catch (error) {
      assert.ok(error instanceof Deno.errors.InvalidData, String(error));
    }
  }
});

/** What kernelSlowness() and timeoutScale() say in a child allowed to read `dir` only, with `env`. */
async function slownessIn(dir: string, env: Record<string, string>, extraFlags: string[] = []) {
  const r = await runScript(
    `import { kernelSlowness, timeoutScale } from "${ROOT}/src/kconfig.ts";
     console.log(JSON.stringify([kernelSlowness(), timeoutScale(), timeoutScale()]));`,
    ["--allow-ffi", "--allow-env", `--allow-read=${dir},${ROOT}`, "--no-prompt", ...extraFlags],
    { env: { LTP_TIMEOUT_MUL: "", ...env } },
  );
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test("KCONFIG_PATH naming a plain or a gzip config with a slow option gives ×4, and the note comes once", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/config`, KASAN);
  Deno.writeFileSync(`${dir.path}/config.gz`, gzipSync(bytes(`${KASAN}CONFIG_PROVE_LOCKING=y\n`)));
  for (const [name, option] of [["config", "CONFIG_KASAN"], ["config.gz", "CONFIG_PROVE_LOCKING"]]) {
    const path = `${dir.path}/${name}`;
    const [kernel, scale] = await slownessIn(dir.path, { KCONFIG_PATH: path });
    assert.deepEqual(kernel, { factor: 4, reason: `×4: ${option}`, path });
    assert.deepEqual(scale, { factor: 4, kernelFactor: 4, reason: `×4: ${option}` });
  }
  const [, scale] = await slownessIn(dir.path, { KCONFIG_PATH: `${dir.path}/config`, LTP_TIMEOUT_MUL: "1.5" });
  assert.deepEqual(scale, { factor: 6, kernelFactor: 4, reason: "×4: CONFIG_KASAN, ×1.5: LTP_TIMEOUT_MUL" });
});

Deno.test("KCONFIG_PATH naming nothing says so and looks on (here: nowhere it may read, which it says too)", async () => {
  using dir = tempDir();
  const [kernel, first, second] = await slownessIn(dir.path, { KCONFIG_PATH: `${dir.path}/missing` });
  assert.equal(kernel.factor, 1);
  assert.equal(kernel.reason, "");
  assert.match(kernel.note, new RegExp(`^KCONFIG_PATH=${dir.path}/missing names nothing: .*usual places`));
  assert.match(kernel.note, /needs --allow-read=\/proc\/config\.gz/);
  assert.equal(first.note, kernel.note);
  assert.equal(second.note, undefined, "said once");
});

Deno.test("a config that cannot be read leaves the factor at 1 with one note, and never blocks or throws", async () => {
  using dir = tempDir();
  Deno.mkdirSync(`${dir.path}/folder`);
  Deno.writeFileSync(`${dir.path}/broken.gz`, new Uint8Array(gzipSync(bytes(KASAN))).subarray(0, 40));
  const fifo = `${dir.path}/fifo`;
  assert.equal((await new Deno.Command("mkfifo", { args: [fifo] }).output()).code, 0);
  for (
    const [name, why] of [["folder", /it is a directory/], ["broken.gz", /gzip/], ["fifo", /it is a fifo/]] as const
  ) {
    const path = `${dir.path}/${name}`;
    const [kernel] = await slownessIn(dir.path, { KCONFIG_PATH: path });
    assert.equal(kernel.factor, 1);
    assert.match(
      kernel.note,
      new RegExp(`^Timeouts are not scaled for a slow kernel: cannot read KCONFIG_PATH=${path}: `),
    );
    assert.match(kernel.note, why);
  }
});

Deno.test("a sandboxed module without read permission for the config keeps the factor 1 and says which flag", async () => {
  using dir = tempDir();
  using other = tempDir();
  Deno.writeTextFileSync(`${other.path}/config`, KASAN);
  const [kernel] = await slownessIn(dir.path, { KCONFIG_PATH: `${other.path}/config` });
  assert.deepEqual(kernel, {
    factor: 1,
    reason: "",
    note:
      `Timeouts are not scaled for a slow kernel: reading KCONFIG_PATH=${other.path}/config needs --allow-read=${other.path}/config`,
  });
});

Deno.test("a sandboxed module's timeouts say once on stderr why they are not scaled for a slow kernel", async () => {
  using dir = tempDir();
  using other = tempDir();
  Deno.writeTextFileSync(`${other.path}/config`, KASAN);
  const r = await runScript(
    `import { Checkpoint } from "${ROOT}/mod.ts";
     using cp = Checkpoint.create({ dir: "${dir.path}" });
     for (const id of [0, 1]) {
       try { cp.waitSync(id, 50); } catch (error) { if (!(error instanceof Deno.errors.TimedOut)) throw error; }
     }
     console.log("done");`,
    ["--allow-ffi", "--allow-env", `--allow-read=${dir.path},${ROOT}`, `--allow-write=${dir.path}`, "--no-prompt"],
    { env: { LTP_TIMEOUT_MUL: "", KCONFIG_PATH: `${other.path}/config` } },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "done\n");
  assert.equal(
    r.stderr,
    `ltp-checkpoint: note: Timeouts are not scaled for a slow kernel: reading KCONFIG_PATH=${other.path}/config ` +
      `needs --allow-read=${other.path}/config\n`,
  );
});

Deno.test("the CLI's wait 300 on a kernel whose config has CONFIG_KASAN=y gives up after 1200 ms, not 300", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/config`, KASAN);
  using cp = Checkpoint.create({ layout: "ltp" });
  const start = performance.now();
  const r = await cli(["wait", "300", "0"], { env: { ...cp.env, KCONFIG_PATH: `${dir.path}/config` } });
  const elapsed = performance.now() - start;
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`within ${shownMs(1200)} ms (300 ms ×4: CONFIG_KASAN`), r.stderr);
  assert.ok(elapsed >= 1200 * timeoutMul(), `gave up after ${Math.round(elapsed)} ms`);
  assert.ok(elapsed < scaled(1200 + 10_000), `gave up after ${Math.round(elapsed)} ms`);
  assert.ok(CHILD_FLAGS.includes("--allow-read=/dev/shm,/tmp"), "the config in /tmp is readable by the CLI");
});
