/** Time limits for tests, derived from LTP_TIMEOUT_MUL so that a slow machine passes with a larger one. */

/** LTP_TIMEOUT_MUL as the tests read it: 1 when unset. */
export function timeoutMul(): number {
  return Number(Deno.env.get("LTP_TIMEOUT_MUL") || 1);
}

/** A test's own time limit in ms, scaled by LTP_TIMEOUT_MUL like every checkpoint timeout. */
export function scaled(ms: number): number {
  return Math.ceil(ms * timeoutMul());
}

/** A timeout of `ms` as the module's messages print it: multiplied by LTP_TIMEOUT_MUL. */
export function shownMs(ms: number): string {
  return String(Math.round(ms * timeoutMul() * 1000) / 1000);
}

/** Polls `check` until true, for at most `ms` (pass a `scaled()` limit). */
export async function eventually(
  check: () => boolean,
  ms: number = scaled(5000),
): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) {
      throw new Error("condition not reached in time");
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
