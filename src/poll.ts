/**
 * Retrying until something happens or a deadline passes: LTP's wake loop,
 * made fast for a partner that is close and cheap for one that is late.
 * Yield the CPU at first (1 ms on the sync path, where a woken waiter
 * often preempts its waker and the next try must wait for it to be back in
 * the kernel; 50 µs on the async path, where yielding blocks the event
 * loop), then sleep for a share of the time waited so far: a partner that arrives T late is met within about
 * T × share, and a long wait costs a few hundred wakeups where LTP's 1 ms
 * sleeps cost thousands. The share is larger on the async path because an
 * event-loop wakeup costs Deno several times the CPU of a blocking sleep
 * (bench/async.ts measures it).
 */
import { sleep, sleepAsync, yieldCpu } from "../ffi/syscalls.ts";

const MIN_SLEEP_MS = 0.02;
/** Sync and CLI: a late partner is met within a tenth of its lateness, at most 16 ms. */
export const SYNC_BACKOFF = { spinMs: 1, share: 0.1, maxMs: 16 };
/** Async: within a quarter of its lateness, at most 50 ms. */
export const ASYNC_BACKOFF = { spinMs: 0.05, share: 0.25, maxMs: 50 };

/** The pauses between tries, in ms from `start` (both as performance.now() gives them): 0 means yield once. */
export class Backoff {
  constructor(readonly policy: { spinMs: number; share: number; maxMs: number }, readonly start: number) {}

  next(now: number, deadline: number): number {
    const waited = now - this.start;
    if (waited < this.policy.spinMs) return 0;
    const pause = Math.min(Math.max(waited * this.policy.share, MIN_SLEEP_MS), this.policy.maxMs);
    return Math.min(pause, deadline - now);
  }
}

/** Calls `tryOnce` until it returns true or `deadline` (performance.now()) passes; false then. */
export function pollSync(tryOnce: () => boolean, deadline: number): boolean {
  if (tryOnce()) return true;
  const backoff = new Backoff(SYNC_BACKOFF, performance.now());
  for (;;) {
    const now = performance.now();
    if (now >= deadline) return false;
    const pause = backoff.next(now, deadline);
    if (pause > 0) sleep(pause);
    else yieldCpu();
    if (tryOnce()) return true;
  }
}

/**
 * As pollSync, without blocking the event loop for longer than a yield; an
 * abort rejects with its reason. The first try is made at once, before any
 * promise, clock read or allocation: most wakes find their waiter there.
 */
export async function poll(tryOnce: () => boolean, deadline: number, signal?: AbortSignal): Promise<boolean> {
  signal?.throwIfAborted();
  if (tryOnce()) return true;
  const backoff = new Backoff(ASYNC_BACKOFF, performance.now());
  for (;;) {
    const now = performance.now();
    if (now >= deadline) return false;
    const pause = backoff.next(now, deadline);
    if (pause >= 1) await pauseUnlessAborted(pause, signal);
    else if (pause > 0) await sleepAsync(pause);
    else yieldCpu();
    signal?.throwIfAborted();
    if (tryOnce()) return true;
  }
}

/** A timer that an abort cuts short, so that a long pause never delays an abort. */
function pauseUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
