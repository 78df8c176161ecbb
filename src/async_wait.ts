/**
 * An async wait on one checkpoint word: the kernel-side wait of
 * ffi/waitv.ts, with its abort signal.
 *
 * What `deno test`'s sanitizers see of it: nothing but its kernel call, a
 * nonblocking FFI call, which their op sanitizer tracks. A wait that ends
 * before its test does leaves nothing behind (its call has returned before
 * the promise settles); one still pending at the end of a test is reported
 * as "An async operation to do a non blocking ffi call was started in
 * this test, but never completed". The wait needs no timer: the call's own
 * deadline ends it.
 * @module
 */
import type { SharedPage } from "../ffi/page.ts";
import { PendingWait, waitOn } from "../ffi/waitv.ts";

/**
 * Waits on the word at `offset` of `file` until woken (true), or until
 * `deadline` (performance.now()) passes or the wait is cancelled (false).
 * The wait is in `pending` while it lasts, so that the region's close()
 * can cancel it. An abort of `signal` cancels it too: the caller tells an
 * abort by `signal.aborted`.
 */
export function waitAsync(
  file: SharedPage,
  offset: number,
  deadline: number,
  signal: AbortSignal | undefined,
  pending: Set<PendingWait>,
): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const wait = new PendingWait(file, offset, deadline, (end) => {
      pending.delete(wait);
      signal?.removeEventListener("abort", cancel);
      if (end instanceof Error) reject(end);
      else resolve(end === "woken");
    });
    const cancel = () => wait.cancel();
    waitOn(wait);
    pending.add(wait);
    signal?.addEventListener("abort", cancel, { once: true });
  });
}
