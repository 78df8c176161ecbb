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
 *
 * @example Wake a child process that waits at checkpoint 0
 * ```ts
 * import { Checkpoint } from "./mod.ts";
 *
 * using cp = Checkpoint.create();
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", `
 *     import { Checkpoint } from "${new URL("./mod.ts", import.meta.url)}";
 *     using cp = Checkpoint.open(); // LTP_IPC_PATH, from cp.env
 *     await cp.wait(0);`],
 *   env: cp.env,
 * }).spawn();
 * await cp.wake(0); // returns once the child has been woken
 * await child.status;
 * ```
 * @module
 */
import { EAGAIN, EINTR, ETIMEDOUT, pageSize, type RegionFile, syscallError, unlink } from "./ffi/file.ts";
import { readEnv, timeoutMultiplier } from "./src/env.ts";
import { poll, pollSync } from "./src/poll.ts";
import { initRegion, LAYOUT_OFFSETS, newRegionPath, openRegion } from "./src/region.ts";

/**
 * Where the futexes start in the region: `seed` right after the magic (the
 * seed patch's `tst_checkpoint`), `ltp` after LTP mainline's `struct
 * ipc_region` header (byte 76 on 64-bit Linux).
 */
export type Layout = "seed" | "ltp";

/** Options of {@linkcode Checkpoint.init}, {@linkcode Checkpoint.open} and {@linkcode Checkpoint.create}. */
export interface CheckpointOptions {
  /** The region's layout; when absent, `LTP_IPC_LAYOUT`, else `"ltp"` (LTP mainline's). */
  layout?: Layout;
}

/** Options of the async waits and wakes. */
export interface WaitOptions {
  /** Aborting it rejects the pending call promptly with the signal's reason. */
  signal?: AbortSignal;
}

/** LTP's default checkpoint timeout, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 10000;

/**
 * How long an async wait stays in the kernel at a stretch. A call on Deno's
 * thread pool cannot be cancelled, so this bounds how long an aborted or
 * timed-out wait lingers, and how long it can keep a process alive.
 */
const WAIT_SLICE_MS = 25;
const MAX_TIMER_MS = 2 ** 31 - 1;
const UINT32_MAX = 0xffffffff;

/** Where the layout in force came from: code or the command line, the environment, or the default. */
export type LayoutSource = "option" | "LTP_IPC_LAYOUT" | "default";

function layoutFrom(options?: CheckpointOptions): { layout: Layout; source: LayoutSource } {
  if (options?.layout !== undefined) return { layout: checkLayout(options.layout), source: "option" };
  const fromEnv = readEnv("LTP_IPC_LAYOUT");
  if (fromEnv) return { layout: checkLayout(fromEnv), source: "LTP_IPC_LAYOUT" };
  return { layout: "ltp", source: "default" };
}

function checkLayout(layout: string): Layout {
  if (layout !== "seed" && layout !== "ltp") {
    throw new TypeError(`Unknown checkpoint layout '${layout}': use "ltp" or "seed" (LTP_IPC_LAYOUT)`);
  }
  return layout;
}

function pathFrom(path: string | undefined): string {
  if (path !== undefined && path !== "") return path;
  const fromEnv = readEnv("LTP_IPC_PATH", true);
  if (fromEnv === undefined) {
    throw new Deno.errors.NotFound(
      'LTP_IPC_PATH is not set: create a region first: eval "$(tst_checkpoint init)" in a shell, Checkpoint.init() in Deno',
    );
  }
  if (fromEnv === "") throw new Deno.errors.NotFound("LTP_IPC_PATH is set but empty: point it at a region file");
  return fromEnv;
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value)) throw new TypeError(`${name} must be an integer, got ${value}`);
  if (value < min || value > UINT32_MAX) {
    throw new RangeError(`${name} must be from ${min} to ${UINT32_MAX}, got ${value}`);
  }
}

/** The timeout in ms after LTP_TIMEOUT_MUL, as a deadline on performance.now(). */
function deadlineOf(timeoutMs: number): { ms: number; deadline: number } {
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs)) {
    throw new TypeError(`timeout must be a number of milliseconds, got ${timeoutMs}`);
  }
  if (timeoutMs < 1) throw new RangeError(`timeout must be at least 1 ms, got ${timeoutMs}`);
  const ms = timeoutMs * timeoutMultiplier();
  return { ms, deadline: performance.now() + ms };
}

/**
 * An LTP checkpoint region mapped into this process.
 *
 * @example Act only once a child is parked at a checkpoint, with no sleep
 * ```ts
 * import { Checkpoint } from "./mod.ts";
 *
 * using cp = Checkpoint.create({ layout: "ltp" });
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", `
 *     import { Checkpoint } from "${new URL("./mod.ts", import.meta.url)}";
 *     using cp = Checkpoint.open();
 *     await cp.wait(1);`],
 *   env: cp.env,
 * }).spawn();
 * await cp.waitForWaiters(1, 1); // the child is in its wait now
 * console.log(cp.waiters(1)); // 1
 * await cp.wake(1);
 * await child.status;
 * ```
 */
export class Checkpoint implements Disposable {
  /** The region file's path. */
  readonly path: string;
  /** Where the futexes start in it. */
  readonly layout: Layout;
  /** Where {@linkcode Checkpoint.layout} came from. */
  readonly layoutSource: LayoutSource;
  /** How many checkpoints it holds: ids run from 0 to capacity - 1. */
  readonly capacity: number;
  #file: RegionFile;
  #offset: number;
  #removeOnClose: boolean;

  private constructor(file: RegionFile, { layout, source }: ReturnType<typeof layoutFrom>, removeOnClose: boolean) {
    this.#file = file;
    this.path = file.path;
    this.layout = layout;
    this.layoutSource = source;
    this.#offset = LAYOUT_OFFSETS[layout];
    this.capacity = Math.floor((pageSize() - this.#offset) / 4);
    this.#removeOnClose = removeOnClose;
  }

  /**
   * Makes a region ready and maps it. Creates the file (mode 0600, never
   * through a symlink), or adopts an existing regular file of at most one page
   * that is all zeros or already carries the magic; sizes it to one page and
   * writes the magic. Anything else is refused, its bytes untouched.
   *
   * @param path The file; default `LTP_IPC_PATH`, else a new unique file under
   *   /dev/shm (the temporary folder where there is no /dev/shm).
   * @param options The layout.
   * @returns The mapped region.
   * @throws {Deno.errors.NotCapable} Without read and write permission for the path.
   * @throws {Deno.errors.InvalidData} When the path holds something that is not a region.
   * @throws {Deno.errors.PermissionDenied} When the file would change and belongs to another user.
   * @example Prepare the file named by LTP_IPC_PATH
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * const path = `/dev/shm/example_${Deno.pid}`;
   * const cp = Checkpoint.init(path);
   * console.log(cp.capacity); // 1023 on a 4096-byte page
   * cp.close();
   * Deno.removeSync(path);
   * ```
   */
  static init(path?: string, options?: CheckpointOptions): Checkpoint {
    const layout = layoutFrom(options);
    const target = path || readEnv("LTP_IPC_PATH", true) || newRegionPath();
    return new Checkpoint(initRegion(target), layout, false);
  }

  /**
   * Attaches to an existing region, as LTP's `tst_reinit()` does.
   *
   * @param path The file; default `LTP_IPC_PATH`.
   * @param options The layout.
   * @returns The mapped region.
   * @throws {Deno.errors.NotFound} When `LTP_IPC_PATH` is unset or the file is missing.
   * @throws {Deno.errors.InvalidData} When the file is not a regular file, is shorter than a page or lacks the magic.
   * @throws {Deno.errors.NotCapable} Without read and write permission for the path.
   * @example Attach in a child started with the parent's `env`
   * ```ts ignore
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.open();
   * await cp.wait(0);
   * ```
   */
  static open(path?: string, options?: CheckpointOptions): Checkpoint {
    const layout = layoutFrom(options);
    return new Checkpoint(openRegion(pathFrom(path)), layout, false);
  }

  /**
   * A fresh private region for a test, removed again by `close()` or `using`.
   *
   * @param options The layout.
   * @returns The mapped region.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create({ layout: "ltp" });
   * console.log(cp.capacity); // 1005 on a 4096-byte page
   * ```
   */
  static create(options?: CheckpointOptions): Checkpoint {
    const layout = layoutFrom(options);
    return new Checkpoint(initRegion(newRegionPath()), layout, true);
  }

  /**
   * What a child process needs to attach: pass it as `env` to `Deno.Command`.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * console.log(cp.env.LTP_IPC_PATH === cp.path); // true
   * ```
   */
  get env(): Record<string, string> {
    return this.layout === "ltp"
      ? { LTP_IPC_PATH: this.path }
      : { LTP_IPC_PATH: this.path, LTP_IPC_LAYOUT: this.layout };
  }

  #wordOf(id: number): number {
    if (!Number.isInteger(id) || id < 0) throw new TypeError(`Checkpoint id must be a whole number, got ${id}`);
    if (id >= this.capacity) {
      throw new RangeError(
        `Checkpoint id ${id} is out of range: ${this.path} holds ids 0 to ${this.capacity - 1} (${this.layout} layout)`,
      );
    }
    return this.#offset + 4 * id;
  }

  #timedOut(what: string, ms: number): Deno.errors.TimedOut {
    return new Deno.errors.TimedOut(`${what} within ${ms} ms (${this.path})`);
  }

  /** Polls `tryOnce` until it succeeds; TimedOut saying `failure` after the timeout. */
  async #until(tryOnce: () => boolean, timeoutMs: number, failure: string, signal?: AbortSignal): Promise<void> {
    const { ms, deadline } = deadlineOf(timeoutMs);
    if (!await poll(tryOnce, deadline, signal)) throw this.#timedOut(failure, ms);
  }

  /** The blocking twin of #until. */
  #untilSync(tryOnce: () => boolean, timeoutMs: number, failure: string): void {
    const { ms, deadline } = deadlineOf(timeoutMs);
    if (!pollSync(tryOnce, deadline)) throw this.#timedOut(failure, ms);
  }

  /**
   * Waits until another process wakes checkpoint `id` (LTP's FUTEX_WAIT,
   * retried with the time left when interrupted).
   *
   * The event loop keeps running. The wait enters the kernel in slices of
   * 25 ms, so an abort or a timeout leaves no call behind for longer than one
   * slice; a wake that lands on such an abandoned slice is counted by its
   * waker and lost.
   *
   * @param id The checkpoint, from 0 to `capacity - 1`.
   * @param timeoutMs Milliseconds, at least 1, multiplied by `LTP_TIMEOUT_MUL`.
   * @param options An abort signal.
   * @returns Resolves when woken.
   * @throws {Deno.errors.TimedOut} When nobody woke it in time.
   * @throws {RangeError} When `id` is at or beyond `capacity`.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * await cp.wait(0, 10).catch((e) => console.log(e.name)); // TimedOut
   * ```
   */
  async wait(id: number, timeoutMs: number = DEFAULT_TIMEOUT_MS, options?: WaitOptions): Promise<void> {
    const word = this.#wordOf(id);
    const { ms, deadline } = deadlineOf(timeoutMs);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const file = this.#file;
    return await new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let settled = false;
      const settle = (error?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = () => settle(signal!.reason);
      // The timer both ends the wait on time and shows a pending wait to
      // `deno test`'s sanitizers, which cannot see calls on the thread pool.
      const arm = () => {
        const left = deadline - performance.now();
        if (left <= 0) return settle(this.#timedOut(`Nobody woke checkpoint ${id}`, ms));
        timer = setTimeout(arm, Math.min(Math.ceil(left), MAX_TIMER_MS));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      arm();
      (async () => {
        while (!settled) {
          const slice = Math.min(WAIT_SLICE_MS, deadline - performance.now());
          if (slice <= 0) return arm();
          if (await file.futexWaitAsync(word, slice)) return settle();
        }
      })().catch(settle);
    });
  }

  /**
   * Waits as {@linkcode Checkpoint.wait} does, blocking the thread (timers
   * and signal listeners included) until woken or timed out.
   *
   * @param id The checkpoint.
   * @param timeoutMs Milliseconds, at least 1, multiplied by `LTP_TIMEOUT_MUL`.
   * @throws {Deno.errors.TimedOut} When nobody woke it in time.
   * @throws {RangeError} When `id` is at or beyond `capacity`.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * try {
   *   cp.waitSync(0, 10);
   * } catch (e) {
   *   console.log(e instanceof Deno.errors.TimedOut); // true
   * }
   * ```
   */
  waitSync(id: number, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    const word = this.#wordOf(id);
    const { ms, deadline } = deadlineOf(timeoutMs);
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      const r = this.#file.futexWait(word, left);
      if (r === 0) return;
      if (r === -ETIMEDOUT) break;
      if (r !== -EINTR && r !== -EAGAIN) throw syscallError(`Cannot wait on ${this.path}`, -r);
    }
    throw this.#timedOut(`Nobody woke checkpoint ${id}`, ms);
  }

  #waker(id: number, nrWake: number): () => boolean {
    const word = this.#wordOf(id);
    checkCount("nrWake", nrWake, 0);
    let woken = 0;
    return () => (woken += this.#file.futexWake(word)) === nrWake;
  }

  /**
   * Wakes `nrWake` processes waiting on checkpoint `id`, retrying until that
   * many have been woken in all, so a wake may come before its wait (LTP's
   * rule: waking more than `nrWake` never succeeds and ends in a timeout).
   *
   * @param id The checkpoint.
   * @param nrWake How many waiters to wake; 0 succeeds while nobody waits.
   * @param timeoutMs Milliseconds, at least 1, multiplied by `LTP_TIMEOUT_MUL`.
   * @param options An abort signal.
   * @returns Resolves once exactly `nrWake` were woken.
   * @throws {Deno.errors.TimedOut} When fewer (or more) were woken in time.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * await cp.wake(0, 0, 10); // nobody waits, nobody to wake: done
   * ```
   */
  async wake(
    id: number,
    nrWake: number = 1,
    timeoutMs: number = DEFAULT_TIMEOUT_MS,
    options?: WaitOptions,
  ): Promise<void> {
    const tryOnce = this.#waker(id, nrWake);
    await this.#until(tryOnce, timeoutMs, `Could not wake exactly ${nrWake} on checkpoint ${id}`, options?.signal);
  }

  /**
   * Wakes as {@linkcode Checkpoint.wake} does, blocking the thread.
   *
   * @param id The checkpoint.
   * @param nrWake How many waiters to wake.
   * @param timeoutMs Milliseconds, at least 1, multiplied by `LTP_TIMEOUT_MUL`.
   * @throws {Deno.errors.TimedOut} When fewer (or more) were woken in time.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * cp.wakeSync(3, 0, 10);
   * ```
   */
  wakeSync(id: number, nrWake: number = 1, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    this.#untilSync(this.#waker(id, nrWake), timeoutMs, `Could not wake exactly ${nrWake} on checkpoint ${id}`);
  }

  /**
   * Wakes one waiter on `id`, then waits on `id` (LTP's
   * `TST_CHECKPOINT_WAKE_AND_WAIT`), each with the full timeout.
   *
   * @param id The checkpoint.
   * @param timeoutMs Milliseconds, at least 1, for each half.
   * @param options An abort signal.
   * @returns Resolves when woken back.
   * @throws {Deno.errors.TimedOut} When either half timed out.
   * @example
   * ```ts ignore
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.open();
   * await cp.wakeAndWait(0);
   * ```
   */
  async wakeAndWait(id: number, timeoutMs: number = DEFAULT_TIMEOUT_MS, options?: WaitOptions): Promise<void> {
    await this.wake(id, 1, timeoutMs, options);
    await this.wait(id, timeoutMs, options);
  }

  /**
   * The blocking twin of {@linkcode Checkpoint.wakeAndWait}.
   *
   * @param id The checkpoint.
   * @param timeoutMs Milliseconds, at least 1, for each half.
   * @throws {Deno.errors.TimedOut} When either half timed out.
   * @example
   * ```ts ignore
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.open();
   * cp.wakeAndWaitSync(0);
   * ```
   */
  wakeAndWaitSync(id: number, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    this.wakeSync(id, 1, timeoutMs);
    this.waitSync(id, timeoutMs);
  }

  /**
   * How many processes wait on checkpoint `id` right now. Wakes nobody and is
   * invisible to LTP's code (FUTEX_CMP_REQUEUE of the word onto itself). An
   * async {@linkcode Checkpoint.wait} steps out of the kernel for microseconds
   * every 25 ms and may be missed by one count: poll, or use
   * {@linkcode Checkpoint.waitForWaiters}.
   *
   * @param id The checkpoint.
   * @returns The number of waiters.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * console.log(cp.waiters(0)); // 0
   * ```
   */
  waiters(id: number): number {
    return this.#file.futexWaiters(this.#wordOf(id));
  }

  #atLeast(id: number, count: number): () => boolean {
    const word = this.#wordOf(id);
    checkCount("count", count, 0);
    return () => this.#file.futexWaiters(word) >= count;
  }

  /**
   * Resolves once at least `count` processes wait on checkpoint `id`: the
   * way to know that a child has really arrived, with no sleep.
   *
   * @param id The checkpoint.
   * @param count How many waiters to wait for.
   * @param timeoutMs Milliseconds, at least 1, multiplied by `LTP_TIMEOUT_MUL`.
   * @param options An abort signal.
   * @returns Resolves when that many wait.
   * @throws {Deno.errors.TimedOut} When fewer arrived in time.
   * @example
   * ```ts ignore
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.open();
   * await cp.waitForWaiters(0, 1); // the child is parked at checkpoint 0
   * await cp.wake(0);
   * ```
   */
  async waitForWaiters(
    id: number,
    count: number,
    timeoutMs: number = DEFAULT_TIMEOUT_MS,
    options?: WaitOptions,
  ): Promise<void> {
    const reached = this.#atLeast(id, count);
    await this.#until(reached, timeoutMs, `Fewer than ${count} waited on checkpoint ${id}`, options?.signal);
  }

  /**
   * The blocking twin of {@linkcode Checkpoint.waitForWaiters}.
   *
   * @param id The checkpoint.
   * @param count How many waiters to wait for.
   * @param timeoutMs Milliseconds, at least 1, multiplied by `LTP_TIMEOUT_MUL`.
   * @throws {Deno.errors.TimedOut} When fewer arrived in time.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * cp.waitForWaitersSync(0, 0, 10); // nobody needed
   * ```
   */
  waitForWaitersSync(id: number, count: number, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    this.#untilSync(this.#atLeast(id, count), timeoutMs, `Fewer than ${count} waited on checkpoint ${id}`);
  }

  /**
   * The region file's owner and permission bits, as they are now.
   *
   * @returns The owner's uid and the mode, such as `0o600`.
   * @example
   * ```ts
   * import { Checkpoint } from "./mod.ts";
   *
   * using cp = Checkpoint.create();
   * console.log(cp.stat().mode.toString(8)); // 600
   * ```
   */
  stat(): { uid: number; mode: number } {
    const { uid, mode } = this.#file.stat();
    return { uid, mode };
  }

  /** Unmaps the region (and removes a region made by `create()`); safe to call twice. */
  close(): void {
    this.#file.close();
    if (this.#removeOnClose) {
      this.#removeOnClose = false;
      unlink(this.path);
    }
  }

  /** The same as {@linkcode Checkpoint.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
