/** ffi/path.ts: path logic on text alone, in process. */
import assert from "node:assert/strict";
import { dirname, isProc, normalise } from "../ffi/path.ts";

Deno.test("normalise resolves ., .. and repeated slashes as written", () => {
  assert.equal(normalise("/a/./b/../c"), "/a/c");
  assert.equal(normalise("//dev///shm/"), "/dev/shm");
  assert.equal(normalise("/a/b/.."), "/a");
  assert.equal(normalise("a/./b"), "a/b");
});

Deno.test("normalise keeps .. above the root at the root, and leading .. of a relative path", () => {
  assert.equal(normalise("/.."), "/");
  assert.equal(normalise("/../../tmp"), "/tmp");
  assert.equal(normalise("../a/../../b"), "../../b");
  assert.equal(normalise("a/../.."), "..");
});

Deno.test("normalise gives . for a path that resolves to nothing, and / for the root", () => {
  assert.equal(normalise(""), ".");
  assert.equal(normalise("./"), ".");
  assert.equal(normalise("a/.."), ".");
  assert.equal(normalise("/"), "/");
  assert.equal(normalise("/./"), "/");
});

Deno.test("dirname gives the folder part: . for a bare name, / for a name in the root", () => {
  assert.equal(dirname("/dev/shm/ltp_x"), "/dev/shm");
  assert.equal(dirname("/ltp_x"), "/");
  assert.equal(dirname("ltp_x"), ".");
  assert.equal(dirname("a/b"), "a");
});

Deno.test("isProc holds for /proc and below it, and for nothing that merely starts alike", () => {
  assert.equal(isProc("/proc"), true);
  assert.equal(isProc("/proc/self/root"), true);
  assert.equal(isProc("/proc2"), false);
  assert.equal(isProc("/procfs/x"), false);
  assert.equal(isProc("/tmp/proc"), false);
  assert.equal(isProc("proc/1"), false);
});
