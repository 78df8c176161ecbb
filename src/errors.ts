/**
 * The module's own errors: a timeout that carries what the region looked
 * like, and a missing permission that carries the flags that would grant it.
 * @module
 */
import type { Snapshot } from "./snapshot.ts";

/** The phrase that ends every missing-permission message. */
export function runAgainWith(flags: string[]): string {
  return `run again with ${flags.join(" ")}`;
}

/**
 * A missing Deno permission: a `Deno.errors.NotCapable` whose message ends
 * with the fix, "run again with FLAGS", and whose `flags` hold those flags,
 * so that a tool installed with fixed flags (the CLI) can say how to
 * reinstall instead.
 */
export class PermissionNeeded extends Deno.errors.NotCapable {
  /** The flags that would grant what is missing. */
  readonly flags: string[];

  /**
   * @param what What was refused, such as "Access to /x is not allowed".
   * @param flags The flags that would allow it.
   * @param fix The advice before the flags, when there is more to say than "run again with".
   */
  constructor(what: string, flags: string[], fix = "") {
    super(`${what}: ${fix}${runAgainWith(flags)}`);
    this.name = "NotCapable";
    this.flags = flags;
  }
}

/**
 * A wait, wake or waitForWaiters that timed out, with what the region
 * looked like at that moment. Its message says the same in one line.
 *
 * @example Find out who waits where
 * ```ts
 * import assert from "node:assert/strict";
 * import { Checkpoint, CheckpointTimedOut } from "@ltp/checkpoint";
 *
 * using cp = Checkpoint.create();
 * const error = await cp.wake(0, 1, 10).catch((e) => e);
 * assert.ok(error instanceof CheckpointTimedOut);
 * assert.deepEqual(error.snapshot.waiters, {}); // nobody waits anywhere
 * ```
 */
export class CheckpointTimedOut extends Deno.errors.TimedOut {
  /** Who waited where when the time was up (frozen: waits that time out together share one). */
  readonly snapshot: Snapshot;
  /** For a wake: how many it woke in all (LTP's rule: more than asked for is a failure too). */
  readonly woken?: number;

  /**
   * Made by the module's timeouts; user code only reads it.
   *
   * @param message The one-line description.
   * @param snapshot Who waited where.
   * @param woken For a wake, how many it woke.
   */
  constructor(message: string, snapshot: Snapshot, woken?: number) {
    super(message);
    this.name = "TimedOut";
    this.snapshot = snapshot;
    this.woken = woken;
  }
}
