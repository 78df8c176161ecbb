/**
 * Cross-process checkpoints compatible with the Linux Test Project (LTP).
 *
 * Processes meet at numbered checkpoints: one waits on checkpoint N until
 * another wakes it. The checkpoints are futexes in one shared page of a file
 * whose path travels in `LTP_IPC_PATH`, so an exec()'d child (a shell script,
 * a C program using LTP, another Deno script) can attach and take part.
 *
 * Needs `--allow-ffi` (libc's mmap and futex), and read and write permission
 * for the region file, which the module checks itself before opening it.
 * Runs on every Deno 2 release (2.0.0 and later) on Linux, x86_64 and
 * aarch64; Deno 1.x is refused at import with one line naming the release
 * needed.
 *
 * @example Wake a child process that waits at checkpoint 0
 * ```ts
 * import assert from "node:assert/strict";
 * import { Checkpoint } from "@ltp/checkpoint";
 *
 * using cp = Checkpoint.create();
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", `
 *     import { Checkpoint } from "${import.meta.resolve("@ltp/checkpoint")}";
 *     using cp = Checkpoint.open(); // LTP_IPC_PATH, from cp.env
 *     await cp.wait(0);`],
 *   env: cp.env,
 * }).spawn();
 * await cp.wake(0); // returns once the child has been woken
 * assert.ok((await child.status).success);
 * ```
 * @module
 */
import "./src/gate.ts";

export { Checkpoint, type CheckpointOptions, type CreateOptions, type WaitOptions } from "./src/checkpoint.ts";
export { CheckpointTimedOut } from "./src/errors.ts";
export { type CheckpointChild, ChildFailed, type SpawnOptions } from "./src/child.ts";
export { type Layout, LAYOUT_OFFSETS, type LayoutSource } from "./src/layout.ts";
export { DEFAULT_TIMEOUT_MS } from "./src/validate.ts";
export type { Snapshot, Waiters } from "./src/snapshot.ts";
export type { CheckpointStatus, WaitingProcess } from "./src/status.ts";
export { formatListing, listRegions, type RegionEntry, type RegionListing } from "./src/listing.ts";
export type { Maker } from "./src/maker.ts";
export { MIN_DENO } from "./src/runtime.ts";
