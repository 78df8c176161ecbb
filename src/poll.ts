/**
 * Retrying until something happens or a deadline passes: LTP's wake loop,
 * made fast for a partner that is close and cheap for one that is late.
 * Yield for the first few tens of microseconds, then sleep in steps that
 * double up to a cap. One policy serves the sync and async paths.
 */
import { sleep, sleepAsync, yieldCpu } from "../ffi/file.ts";

/** How long to keep yielding the CPU before the first sleep. */
export const SPIN_MS = 0.05;
/** The first sleep and the longest; LTP always sleeps 1 ms. */
export const FIRST_SLEEP_MS = 0.02;
export const MAX_SLEEP_MS = 2;

/** The pauses between tries: 0 means yield once. */
class Backoff {
  #start = performance.now();
  #sleep = FIRST_SLEEP_MS;

  next(deadline: number): number {
    const now = performance.now();
    if (now - this.#start < SPIN_MS) return 0;
    const pause = Math.min(this.#sleep, deadline - now);
    this.#sleep = Math.min(this.#sleep * 2, MAX_SLEEP_MS);
    return pause;
  }
}

/** Calls `tryOnce` until it returns true or `deadline` (performance.now()) passes; false then. */
export function pollSync(tryOnce: () => boolean, deadline: number): boolean {
  const backoff = new Backoff();
  for (;;) {
    if (tryOnce()) return true;
    if (performance.now() >= deadline) return false;
    const pause = backoff.next(deadline);
    if (pause > 0) sleep(pause);
    else yieldCpu();
  }
}

/** As pollSync, without blocking the event loop for longer than a yield; an abort rejects with its reason. */
export async function poll(tryOnce: () => boolean, deadline: number, signal?: AbortSignal): Promise<boolean> {
  const backoff = new Backoff();
  for (;;) {
    signal?.throwIfAborted();
    if (tryOnce()) return true;
    if (performance.now() >= deadline) return false;
    const pause = backoff.next(deadline);
    if (pause >= 1) await new Promise((resolve) => setTimeout(resolve, pause));
    else if (pause > 0) await sleepAsync(pause);
    else yieldCpu();
  }
}
