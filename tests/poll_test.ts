/** src/poll.ts's backoff: the pauses between tries, as a function of the time waited. In-process, no clock. */
import assert from "node:assert/strict";
import { ASYNC_BACKOFF, Backoff, SYNC_BACKOFF } from "../src/poll.ts";

const START = 0; // so that START + waited - START is waited exactly
const FAR = 1e9;

/** The pause asked for after `waited` ms, with the deadline far away. */
function pauseAfter(
  policy: typeof SYNC_BACKOFF,
  waited: number,
  deadline = FAR,
): number {
  return new Backoff(policy, START).next(START + waited, deadline);
}

Deno.test("the backoff yields (0) until its spin time has passed", () => {
  assert.deepEqual([0, 0.5, 0.999].map((ms) => pauseAfter(SYNC_BACKOFF, ms)), [
    0,
    0,
    0,
  ]);
  assert.deepEqual([0, 0.049].map((ms) => pauseAfter(ASYNC_BACKOFF, ms)), [
    0,
    0,
  ]);
  assert.ok(pauseAfter(SYNC_BACKOFF, 1) > 0);
  assert.ok(pauseAfter(ASYNC_BACKOFF, 0.05) > 0);
});

Deno.test("then it sleeps a share of the time waited: a tenth on the sync path, a quarter on the async one", () => {
  assert.equal(pauseAfter(SYNC_BACKOFF, 50), 5);
  assert.equal(pauseAfter(SYNC_BACKOFF, 120), 12);
  assert.equal(pauseAfter(ASYNC_BACKOFF, 40), 10);
  assert.equal(pauseAfter(ASYNC_BACKOFF, 100), 25);
});

Deno.test("its pause is at least 20 µs and at most 16 ms (sync) or 50 ms (async)", () => {
  assert.equal(pauseAfter(SYNC_BACKOFF, 1), 0.1);
  assert.equal(pauseAfter(ASYNC_BACKOFF, 0.05), 0.02);
  assert.equal(pauseAfter(SYNC_BACKOFF, 60_000), 16);
  assert.equal(pauseAfter(ASYNC_BACKOFF, 60_000), 50);
});

Deno.test("its pause never runs past the deadline", () => {
  assert.equal(pauseAfter(SYNC_BACKOFF, 1000, START + 1003), 3);
  assert.equal(pauseAfter(ASYNC_BACKOFF, 1000, START + 1000.5), 0.5);
  assert.equal(
    pauseAfter(SYNC_BACKOFF, 50, START + 60),
    5,
    "a deadline further than the pause changes nothing",
  );
});

Deno.test("the pauses grow with the time waited, never shrink", () => {
  for (const policy of [SYNC_BACKOFF, ASYNC_BACKOFF]) {
    const pauses = [0, 0.01, 0.1, 1, 2, 5, 10, 50, 100, 200, 500, 1000, 10_000]
      .map((ms) => pauseAfter(policy, ms));
    assert.deepEqual(pauses, [...pauses].sort((a, b) => a - b));
  }
});
