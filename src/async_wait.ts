/**
 * An async wait on one checkpoint word: the kernel-side wait of
 * ffi/waitv.ts, with its deadline, abort signal and what `deno test`'s
 * sanitizers see of it.
 * @module
 */
import type { RegionFile } from "../ffi/file.ts";
import { type PendingWait, waitOn } from "../ffi/waitv.ts";

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Waits on the word at `offset` of `file` until woken (true), or until
 * `deadline` (performance.now()) passes or the wait is cancelled (false).
 * The wait is in `pending` while it lasts, so that the region's close()
 * can cancel it. An abort of `signal` cancels it too: the caller tells an
 * abort by `signal.aborted`.
 */
export async function waitAsync(
  file: RegionFile,
  offset: number,
  deadline: number,
  signal: AbortSignal | undefined,
  pending: Set<PendingWait>,
): Promise<boolean> {
  const wait = waitOn({
    address: file.address(offset),
    value: () => file.word(offset),
    refresh: () => file.refresh(offset),
  }, deadline);
  pending.add(wait);
  const cancel = () => wait.cancel();
  // The timer ends the wait on time, and shows a pending wait to `deno
  // test`'s sanitizers, which cannot see calls on the thread pool.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    const left = deadline - performance.now();
    if (left <= 0) cancel();
    else timer = setTimeout(arm, Math.min(Math.ceil(left), MAX_TIMER_MS));
  };
  arm();
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    return await wait.ended === "woken";
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", cancel);
    pending.delete(wait);
  }
}
