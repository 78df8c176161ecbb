/** Checks of the numbers the class is given, and timeouts turned into deadlines. */
import { escapeControls } from "./escape.ts";
import { timeoutScale } from "./kconfig.ts";
import type { Layout } from "./layout.ts";

/** LTP's default checkpoint timeout, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 10000;

/** The largest number LTP's tool and the class take: its C type's, unsigned int. */
export const UINT32_MAX = 0xffffffff;

/** Refuses a `value` that is not a whole number from `min` to UINT32_MAX. */
export function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value)) throw new TypeError(`${name} must be an integer, got ${value}`);
  if (value < min || value > UINT32_MAX) {
    throw new RangeError(`${name} must be from ${min} to ${UINT32_MAX}, got ${value}`);
  }
}

/** Refuses an id that is not a whole number; one at or beyond `capacity` is a RangeError naming the region. */
export function checkId(id: number, capacity: number, path: string, layout: Layout): void {
  if (!Number.isInteger(id) || id < 0) throw new TypeError(`Checkpoint id must be a whole number, got ${id}`);
  if (id >= capacity) {
    throw new RangeError(
      `Checkpoint id ${id} is out of range: ${path} holds ids 0 to ${capacity - 1} (${layout} layout)`,
    );
  }
}

/**
 * A timeout scaled as LTP's `tst_multiply_timeout()` scales it (×4 on a
 * slow kernel, × LTP_TIMEOUT_MUL): `ms`, the time as messages show it
 * ("1200 ms (300 ms ×4: CONFIG_KASAN)" where the kernel's factor applies),
 * and the deadline on performance.now().
 */
export function deadlineOf(timeoutMs: number): { ms: string; deadline: number } {
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs)) {
    throw new TypeError(`timeout must be a number of milliseconds, got ${timeoutMs}`);
  }
  if (!(timeoutMs >= 1 && timeoutMs <= UINT32_MAX)) {
    throw new RangeError(`timeout must be from 1 to ${UINT32_MAX} ms, got ${timeoutMs}`);
  }
  const { factor, reason, note, kernelFactor } = timeoutScale();
  // said once per process: a KCONFIG_PATH that names nothing (LTP warns of it), or a config that cannot be read,
  // a sandbox's (the factor stays 1); the CLI says the first of these itself, on each of its calls
  if (note !== undefined) console.warn(`ltp-checkpoint: note: ${escapeControls(note)}`);
  const ms = timeoutMs * factor;
  // 50 × 1.1 is shown as 55, not 55.00000000000001
  const shown = `${Math.round(ms * 1000) / 1000} ms`;
  // LTP_TIMEOUT_MUL is the caller's own setting; a factor of the kernel's is said with its reason
  return { ms: kernelFactor === 1 ? shown : `${shown} (${timeoutMs} ms ${reason})`, deadline: performance.now() + ms };
}
