/** The class: one LTP checkpoint region mapped into this process. */
import { EAGAIN, EINTR, ETIMEDOUT } from "../ffi/constants.ts";
import { syscallError } from "../ffi/errno.ts";
import type { Folder } from "../ffi/folder.ts";
import type { SharedPage } from "../ffi/page.ts";
import { pageSize } from "../ffi/syscalls.ts";
import type { PendingWait } from "../ffi/waitv.ts";
import { waitAsync } from "./async_wait.ts";
import { callSite, thrownFrom, userFrames } from "./call_site.ts";
import { CheckpointChild, type ChildFailed, type SpawnOptions } from "./child.ts";
import { closed, removeAtExit } from "./cleanup.ts";
import { readEnv } from "./env.ts";
import { CheckpointTimedOut } from "./errors.ts";
import { capacityOf, type Layout, LAYOUT_OFFSETS, layoutInForce, type LayoutSource, LIB_PID_OFFSET } from "./layout.ts";
import { poll, pollSync } from "./poll.ts";
import { createRegion, initRegion, newRegionPath, openRegion, type Region } from "./region.ts";
import { explain, type Snapshot, takeSnapshot } from "./snapshot.ts";
import { type CheckpointStatus, statusOf } from "./status.ts";
import { plural } from "./text.ts";
import { checkCount, checkId, deadlineOf, DEFAULT_TIMEOUT_MS } from "./validate.ts";

/** Options of {@linkcode Checkpoint.init}, {@linkcode Checkpoint.open} and {@linkcode Checkpoint.create}. */
export interface CheckpointOptions {
  /** The region's layout; when absent, `LTP_IPC_LAYOUT`, else `"ltp"` (LTP mainline's). */
  layout?: Layout;
}

/** Options of {@linkcode Checkpoint.create}. */
export interface CreateOptions extends CheckpointOptions {
  /**
   * The folder to make the region in. Default: /dev/shm where it may be
   * used, else the temporary folder (`TMPDIR`, else /tmp).
   */
  dir?: string;
}

/** Options of the async waits and wakes. */
export interface WaitOptions {
  /** Aborting it rejects the pending call promptly with the signal's reason. */
  signal?: AbortSignal;
}

/** How long a snapshot serves the timeouts that follow it: waits that time out together share one. */
const SNAPSHOT_SHARED_MS = 20;
/**
 * How long counting may retry while other processes keep writing the words
 * (LTP's C library makes its regions 0666): a whole snapshot, and one count
 * of `waiters()`.
 */
const COUNT_BUDGET_MS = 500;
/** One try of a wait for waiters: a word that keeps changing makes it fail, and the poll tries again until its deadline. */
const COUNT_TRY_MS = 20;

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

/**
 * An LTP checkpoint region mapped into this process.
 *
 * @example Act only once a child is parked at a checkpoint, with no sleep
 * ```ts
 * import assert from "node:assert/strict";
 * import { Checkpoint } from "@ltp/checkpoint";
 *
 * using cp = Checkpoint.create({ layout: "ltp" });
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", `
 *     import { Checkpoint } from "${import.meta.resolve("@ltp/checkpoint")}";
 *     using cp = Checkpoint.open();
 *     await cp.wait(1);`],
 *   env: cp.env,
 * }).spawn();
 * await cp.waitForWaiters(1, 1); // the child is in its wait now
 * assert.equal(cp.waiters(1), 1);
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
  /** The pid in the header of a region made by LTP's C library (`context.lib_pid`); 0 for other regions. */
  readonly libPid: number;
  #file: SharedPage;
  #folder: Folder;
  #name: string;
  #offset: number;
  #removeOnClose: boolean;
  #pending = new Set<PendingWait>();
  #closed = false;
  #lastSnapshot?: { at: number; snapshot: Snapshot };
  /** Children started by spawn() and not yet disposed. */
  #children?: Set<CheckpointChild>;
  /** Those of them that failed: while there are any, `#failure` is aborted with the first one's error. */
  #failed?: Map<CheckpointChild, ChildFailed>;
  #failure?: AbortController;

  /** @ignore Regions are made by {@linkcode Checkpoint.init}, {@linkcode Checkpoint.open} and {@linkcode Checkpoint.create}. */
  private constructor(
    { file, folder, name }: Region,
    { layout, source }: { layout: Layout; source: LayoutSource },
    removeOnClose: boolean,
  ) {
    this.#file = file;
    this.#folder = folder;
    this.#name = name;
    this.path = file.path;
    this.layout = layout;
    this.layoutSource = source;
    this.#offset = LAYOUT_OFFSETS[layout];
    this.capacity = capacityOf(layout, pageSize());
    this.libPid = file.word(LIB_PID_OFFSET) | 0;
    this.#removeOnClose = removeOnClose;
    if (layout === "seed" && source !== "option" && this.libPid !== 0) {
      this.close();
      throw new Deno.errors.InvalidData(
        `${this.path} was made by LTP's C library (pid ${this.libPid} in its header), whose checkpoints start ` +
          `at byte 76, but LTP_IPC_LAYOUT=seed asks for byte 4: unset LTP_IPC_LAYOUT ` +
          `(or choose the seed layout in code or with --layout seed if it is really meant)`,
      );
    }
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
   * @throws {Deno.errors.InvalidData} When the path holds something that is not a region, or when
   *   LTP_IPC_LAYOUT=seed meets a region LTP's C library made.
   * @throws {Deno.errors.PermissionDenied} When the file belongs to another user or has more than one name
   *   (a file another user could have planted).
   * @example Prepare the file named by LTP_IPC_PATH
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * const cp = Checkpoint.init(`/dev/shm/example_${Deno.pid}`);
   * assert.ok(cp.capacity >= 1005); // 1005 on a 4096-byte page
   * cp.remove();
   * ```
   */
  static init(path?: string, options?: CheckpointOptions): Checkpoint {
    const layout = layoutInForce(options?.layout);
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
   * @throws {Deno.errors.InvalidData} When the file is not a regular file, is shorter than a page or lacks the
   *   magic, or when LTP_IPC_LAYOUT=seed meets a region LTP's C library made.
   * @throws {Deno.errors.NotCapable} Without read and write permission for the path.
   * @example Attach in a child started with the parent's `env`
   * ```ts ignore
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.open();
   * await cp.wait(0);
   * ```
   */
  static open(path?: string, options?: CheckpointOptions): Checkpoint {
    const layout = layoutInForce(options?.layout);
    return new Checkpoint(openRegion(pathFrom(path)), layout, false);
  }

  /**
   * A fresh private region (mode 0600, a new unique name), removed again by
   * `close()`, `using` or the end of the process.
   *
   * @param options The layout, and the folder to make it in: default
   *   /dev/shm, or the temporary folder where /dev/shm may not be used.
   * @returns The mapped region.
   * @throws {Deno.errors.NotCapable} Without read and write permission for the folder; without `dir`, when
   *   neither /dev/shm nor the temporary folder is allowed.
   * @throws {Deno.errors.NotFound} When `dir` does not exist.
   * @throws {Deno.errors.InvalidData} When `dir` is a symbolic link or not a folder.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create({ layout: "seed" });
   * assert.ok(cp.capacity >= 1023); // 1023 on a 4096-byte page
   * ```
   * @example In a folder of the job's own
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * const dir = Deno.makeTempDirSync();
   * try {
   *   using cp = Checkpoint.create({ dir });
   *   assert.ok(cp.path.startsWith(dir));
   * } finally {
   *   Deno.removeSync(dir); // empty again: the region went with `cp`
   * }
   * ```
   */
  static create(options?: CreateOptions): Checkpoint {
    const layout = layoutInForce(options?.layout);
    const cp = new Checkpoint(createRegion(options?.dir), layout, true);
    removeAtExit(cp);
    return cp;
  }

  /**
   * What a child process needs to attach, `LTP_IPC_PATH` and `LTP_IPC_LAYOUT`: pass it as `env` to `Deno.Command`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * assert.equal(cp.env.LTP_IPC_PATH, cp.path);
   * ```
   */
  get env(): Record<string, string> {
    // the layout too, so that a child never inherits a stale LTP_IPC_LAYOUT of its parent's caller
    return { LTP_IPC_PATH: this.path, LTP_IPC_LAYOUT: this.layout };
  }

  #wordOf(id: number): number {
    checkId(id, this.capacity, this.path, this.layout);
    return this.#offset + 4 * id;
  }

  /** `what` failed within `ms` (the scaled time, and why): the error, with `detail` and what the region looks like now. */
  #timedOut(what: string, id: number, ms: string, detail = "", woken?: number): CheckpointTimedOut {
    const now = performance.now();
    if (this.#lastSnapshot === undefined || now - this.#lastSnapshot.at > SNAPSHOT_SHARED_MS) {
      let taken;
      try {
        taken = this.snapshot();
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
        const other = this.layout === "ltp" ? "seed" : "ltp";
        const none: Snapshot = { layout: this.layout, waiters: {}, otherLayout: { layout: other, waiters: {} } };
        return new CheckpointTimedOut(
          `${what} within ${ms} (${this.path})${detail}; who waits is not known: ${error.message}`,
          none,
          woken,
        );
      }
      // shared by the errors of waits that time out together, so read-only
      Object.freeze(taken.waiters);
      Object.freeze(taken.otherLayout.waiters);
      Object.freeze(taken.otherLayout);
      this.#lastSnapshot = { at: now, snapshot: Object.freeze(taken) };
    }
    const snapshot = this.#lastSnapshot.snapshot;
    return new CheckpointTimedOut(
      `${what} within ${ms} (${this.path})${detail}; ${explain(snapshot, id)}`,
      snapshot,
      woken,
    );
  }

  /**
   * Polls `tryOnce` until it succeeds; CheckpointTimedOut saying `failure`
   * after the timeout; `ChildFailed` as soon as a child of the region has
   * failed, saying what was being `done`.
   */
  async #until(
    tryOnce: () => boolean,
    timeoutMs: number,
    failure: (ms: string) => CheckpointTimedOut,
    done: () => string,
    userSignal?: AbortSignal,
  ): Promise<void> {
    const { ms, deadline } = deadlineOf(timeoutMs);
    const signal = this.#signalOf(userSignal);
    let met: boolean;
    try {
      met = await poll(tryOnce, deadline, signal);
    } catch (e) {
      throw signal?.aborted && e === signal.reason ? this.#abortReason(signal, done) : e;
    }
    if (!met) throw failure(ms);
  }

  /** The user's signal, or one that also aborts when a child of the region fails. */
  #signalOf(signal: AbortSignal | undefined): AbortSignal | undefined {
    const failure = this.#failure?.signal;
    if (failure === undefined) return signal;
    return signal === undefined ? failure : AbortSignal.any([signal, failure]);
  }

  /** What an aborted call throws: the user's reason, or the failed child's error saying what was being `done`. */
  #abortReason(signal: AbortSignal, done: () => string): unknown {
    const failure = this.#failure?.signal;
    if (failure?.aborted && signal.reason === failure.reason) {
      const [child] = this.#failed!.keys();
      // its stack from the caller's awaiting frames on (V8's async frames): where the user's test waited; taken
      // apart from the error, whose own stack, once read, is the one Deno prints whatever it is set to
      return thrownFrom(
        child.failure(this.#failed!.get(child)!.status, done()),
        userFrames(callSite(this.#abortReason)),
      );
    }
    return signal.reason;
  }

  /**
   * Starts a child process on this region: its `env` carries the region's
   * `LTP_IPC_PATH` and `LTP_IPC_LAYOUT` (over any given), and its stdout and
   * stderr are kept. Should it end unsuccessfully (not killed by this
   * process), every pending and later `wait()`, `wake()`, `wakeAndWait()`
   * and `waitForWaiters()` of this region rejects at once with
   * {@linkcode ChildFailed}, naming the child, its exit status and its last
   * lines, until the child is disposed. (The blocking calls only check, as
   * they start, for a failure already seen.) `await using` kills the child
   * if it still runs at the end of the scope and waits for it; `using`, or
   * the region's `close()`, kills it.
   *
   * @param command The program, found on `PATH` unless it is a path.
   * @param args Its arguments.
   * @param options Its environment, working folder, stdin and name.
   * @returns The running child.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {Deno.errors.NotFound} When the program cannot be found.
   * @throws {Deno.errors.NotCapable} Without `--allow-run` for the program.
   * @example A child that dies at start-up fails the wait at once
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * await using child = cp.spawn(Deno.execPath(), ["eval", "console.error('no region for me'); Deno.exit(3)"]);
   * // rejects once the child has died, not after 10 s
   * // Waiting for 1 waiter on checkpoint 0 failed: the child deno eval … (pid 4242) exited with code 3; its last lines: no region for me
   * await assert.rejects(cp.waitForWaiters(0, 1), /exited with code 3; its last lines: no region for me/);
   * ```
   */
  spawn(command: string | URL, args: string[] = [], options: SpawnOptions = {}): CheckpointChild {
    if (this.#closed) throw new Deno.errors.BadResource(`${this.path} is closed`);
    this.#failure ??= new AbortController();
    const child = new CheckpointChild(command, args, { ...options, env: { ...options.env, ...this.env } }, {
      failed: (child, error) => {
        if (!this.#children?.has(child)) return;
        (this.#failed ??= new Map()).set(child, error);
        this.#failure!.abort(error);
      },
      disposed: (child) => {
        this.#children?.delete(child);
        if (this.#failed?.delete(child) && this.#failed.size === 0) this.#failure = new AbortController();
      },
    });
    (this.#children ??= new Set()).add(child);
    return child;
  }

  /** The blocking twin of #until. */
  #untilSync(tryOnce: () => boolean, timeoutMs: number, failure: (ms: string) => CheckpointTimedOut): void {
    const { ms, deadline } = deadlineOf(timeoutMs);
    if (!pollSync(tryOnce, deadline)) throw failure(ms);
  }

  /**
   * Waits until another process wakes checkpoint `id` (LTP's FUTEX_WAIT,
   * retried with the time left when interrupted).
   *
   * The event loop keeps running. The wait stays in the kernel, counted by
   * any waker or {@linkcode Checkpoint.waiters}, until it is woken, times
   * out or is aborted; then it leaves the kernel at once, so it never takes
   * a later wake. If a wake and an abort cross, the wake wins and the
   * promise resolves. (On kernels before 5.16, which lack futex_waitv, it
   * waits in slices of 25 ms instead: an aborted wait then lingers for up
   * to one slice, and a wake landing there is lost.)
   *
   * @param id The checkpoint, from 0 to `capacity - 1`.
   * @param [timeoutMs=10000] Milliseconds, at least 1, scaled as LTP scales its own (×4 on a slow kernel, × `LTP_TIMEOUT_MUL`).
   * @param options An abort signal.
   * @returns Resolves when woken.
   * @throws {CheckpointTimedOut} When nobody woke it in time.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or the timeout is out of range.
   * @throws {TypeError} When `id` or the timeout is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed, or closed while the wait is pending (an `await`
   *   forgotten).
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @throws The signal's reason, when `options.signal` aborts it.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * await assert.rejects(cp.wait(0, 10), Deno.errors.TimedOut);
   * ```
   */
  async wait(id: number, timeoutMs: number = DEFAULT_TIMEOUT_MS, options?: WaitOptions): Promise<void> {
    // where it was called, for the error of a close under it (an `await` forgotten); formatted only then
    const site = callSite(this.wait);
    const offset = this.#wordOf(id);
    const { ms, deadline } = deadlineOf(timeoutMs);
    const signal = this.#signalOf(options?.signal);
    if (signal?.aborted) throw this.#abortReason(signal, () => `Waiting on checkpoint ${id}`);
    if (await waitAsync(this.#file, offset, deadline, signal, this.#pending)) return;
    if (this.#closed) {
      const frames = userFrames(site);
      const where = frames.length > 0 ? `, called at ${frames[0]}` : "";
      throw thrownFrom(
        new Deno.errors.BadResource(
          `${this.path} was closed while a wait was pending: wait(${id})${where} (is an await missing?)`,
        ),
        frames,
      );
    }
    if (signal?.aborted) throw this.#abortReason(signal, () => `Waiting on checkpoint ${id}`);
    throw this.#timedOut(`Nobody woke checkpoint ${id}`, id, ms);
  }

  /**
   * Waits as {@linkcode Checkpoint.wait} does, blocking the thread (timers
   * and signal listeners included) until woken or timed out.
   *
   * @param id The checkpoint.
   * @param [timeoutMs=10000] Milliseconds, at least 1, scaled as LTP scales its own (×4 on a slow kernel, × `LTP_TIMEOUT_MUL`).
   * @throws {CheckpointTimedOut} When nobody woke it in time.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * assert.throws(() => cp.waitSync(0, 10), Deno.errors.TimedOut);
   * ```
   */
  waitSync(id: number, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    const word = this.#wordOf(id);
    this.#throwIfChildFailed(() => `Waiting on checkpoint ${id}`);
    const { ms, deadline } = deadlineOf(timeoutMs);
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      const r = this.#file.futexWait(word, left);
      if (r === 0) return;
      if (r === -ETIMEDOUT) break;
      if (r !== -EINTR && r !== -EAGAIN) throw syscallError(`Cannot wait on ${this.path}`, -r);
    }
    throw this.#timedOut(`Nobody woke checkpoint ${id}`, id, ms);
  }

  /** For the blocking calls, which cannot see a child end while they block: a failure seen already. */
  #throwIfChildFailed(done: () => string): void {
    const failure = this.#failure?.signal;
    if (failure?.aborted) throw this.#abortReason(failure, done);
  }

  /** A wake's single try, and the error it ends with when tries run out. */
  #waker(id: number, nrWake: number) {
    const word = this.#wordOf(id);
    checkCount("nrWake", nrWake, 0);
    let woken = 0;
    return {
      tryOnce: () => (woken += this.#file.futexWake(word)) === nrWake,
      failure: (ms: string) => {
        const detail = woken > nrWake
          ? `: woke ${woken}, and LTP counts waking more than ${nrWake} as a failure (more processes wait than expected)`
          : `: woke ${woken}`;
        return this.#timedOut(`Could not wake exactly ${nrWake} on checkpoint ${id}`, id, ms, detail, woken);
      },
    };
  }

  /**
   * Wakes `nrWake` processes waiting on checkpoint `id`, retrying until that
   * many have been woken in all, so a wake may come before its wait (LTP's
   * rule: waking more than `nrWake` never succeeds and ends in a timeout).
   *
   * @param id The checkpoint.
   * @param [nrWake=1] How many waiters to wake; 0 succeeds while nobody waits.
   * @param [timeoutMs=10000] Milliseconds, at least 1, scaled as LTP scales its own (×4 on a slow kernel, × `LTP_TIMEOUT_MUL`).
   * @param options An abort signal.
   * @returns Resolves once exactly `nrWake` were woken.
   * @throws {CheckpointTimedOut} When fewer (or more) were woken in time; `woken` says how many.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @throws The signal's reason, when `options.signal` aborts it.
   * @example
   * ```ts
   * import { Checkpoint } from "@ltp/checkpoint";
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
    const { tryOnce, failure } = this.#waker(id, nrWake);
    await this.#until(tryOnce, timeoutMs, failure, () => `Waking ${nrWake} on checkpoint ${id}`, options?.signal);
  }

  /**
   * Wakes as {@linkcode Checkpoint.wake} does, blocking the thread.
   *
   * @param id The checkpoint.
   * @param [nrWake=1] How many waiters to wake.
   * @param [timeoutMs=10000] Milliseconds, at least 1, scaled as LTP scales its own (×4 on a slow kernel, × `LTP_TIMEOUT_MUL`).
   * @throws {CheckpointTimedOut} When fewer (or more) were woken in time; `woken` says how many.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @example
   * ```ts
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * cp.wakeSync(3, 0, 10);
   * ```
   */
  wakeSync(id: number, nrWake: number = 1, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    const { tryOnce, failure } = this.#waker(id, nrWake);
    this.#throwIfChildFailed(() => `Waking ${nrWake} on checkpoint ${id}`);
    this.#untilSync(tryOnce, timeoutMs, failure);
  }

  /**
   * Wakes one waiter on `id`, then waits on `id` (LTP's
   * `TST_CHECKPOINT_WAKE_AND_WAIT`), each with the full timeout.
   *
   * @param id The checkpoint.
   * @param [timeoutMs=10000] Milliseconds, at least 1, for each half, scaled as LTP scales its own.
   * @param options An abort signal.
   * @returns Resolves when woken back.
   * @throws {CheckpointTimedOut} When either half timed out.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @throws The signal's reason, when `options.signal` aborts it.
   * @example
   * ```ts ignore
   * import { Checkpoint } from "@ltp/checkpoint";
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
   * @param [timeoutMs=10000] Milliseconds, at least 1, for each half, scaled as LTP scales its own.
   * @throws {CheckpointTimedOut} When either half timed out.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @example
   * ```ts ignore
   * import { Checkpoint } from "@ltp/checkpoint";
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
   * invisible to LTP's code (FUTEX_CMP_REQUEUE of the word onto itself).
   * Pending async waits of this process count too.
   *
   * @param id The checkpoint.
   * @returns The number of waiters.
   * @throws {Deno.errors.WouldBlock} When another process kept changing the word for half a second.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * assert.equal(cp.waiters(0), 0);
   * ```
   */
  waiters(id: number): number {
    return this.#file.futexWaiters(this.#wordOf(id), performance.now() + COUNT_BUDGET_MS);
  }

  #atLeast(id: number, count: number) {
    const word = this.#wordOf(id);
    checkCount("count", count, 0);
    return {
      tryOnce: () => {
        try {
          return this.#file.futexWaiters(word, performance.now() + COUNT_TRY_MS) >= count;
        } catch (error) {
          if (error instanceof Deno.errors.WouldBlock) return false;
          throw error;
        }
      },
      failure: (ms: string) => this.#timedOut(`Fewer than ${count} waited on checkpoint ${id}`, id, ms),
    };
  }

  /**
   * Resolves once at least `count` processes wait on checkpoint `id`: the
   * way to know that a child has really arrived, with no sleep.
   *
   * @param id The checkpoint.
   * @param count How many waiters to wait for.
   * @param [timeoutMs=10000] Milliseconds, at least 1, scaled as LTP scales its own (×4 on a slow kernel, × `LTP_TIMEOUT_MUL`).
   * @param options An abort signal.
   * @returns Resolves when that many wait.
   * @throws {CheckpointTimedOut} When fewer arrived in time.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @throws The signal's reason, when `options.signal` aborts it.
   * @example
   * ```ts ignore
   * import { Checkpoint } from "@ltp/checkpoint";
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
    const { tryOnce, failure } = this.#atLeast(id, count);
    const done = () => `Waiting for ${plural(count, "waiter", "waiters")} on checkpoint ${id}`;
    await this.#until(tryOnce, timeoutMs, failure, done, options?.signal);
  }

  /**
   * The blocking twin of {@linkcode Checkpoint.waitForWaiters}.
   *
   * @param id The checkpoint.
   * @param count How many waiters to wait for.
   * @param [timeoutMs=10000] Milliseconds, at least 1, scaled as LTP scales its own (×4 on a slow kernel, × `LTP_TIMEOUT_MUL`).
   * @throws {CheckpointTimedOut} When fewer arrived in time.
   * @throws {RangeError} When `id` is at or beyond `capacity`, or a number is out of range.
   * @throws {TypeError} When an argument is not a number of the right kind.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @throws {ChildFailed} When a child started with {@linkcode Checkpoint.spawn} failed first.
   * @example
   * ```ts
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * cp.waitForWaitersSync(0, 0, 10); // nobody needed
   * ```
   */
  waitForWaitersSync(id: number, count: number, timeoutMs: number = DEFAULT_TIMEOUT_MS): void {
    const { tryOnce, failure } = this.#atLeast(id, count);
    this.#throwIfChildFailed(() => `Waiting for ${plural(count, "waiter", "waiters")} on checkpoint ${id}`);
    this.#untilSync(tryOnce, timeoutMs, failure);
  }

  /**
   * Who waits where right now, counted by the kernel for every word of the
   * page (one system call a word: about 1000, a millisecond or two, on a
   * 4 KiB page), waking nobody.
   * Timeouts attach one to their error.
   *
   * @returns Waiters per id, in this layout and as the other layout numbers them.
   * @throws {Deno.errors.WouldBlock} When another process kept changing a word for half a second.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * assert.deepEqual(cp.snapshot().waiters, {});
   * ```
   */
  snapshot(): Snapshot {
    const deadline = performance.now() + COUNT_BUDGET_MS;
    return takeSnapshot(this.layout, pageSize(), (offset) => this.#file.futexWaiters(offset, deadline));
  }

  /**
   * The region, who waits where and, where /proc may be read
   * (`--allow-read=/proc`) and the kernel lets this process see them, which
   * processes wait: what `tst_checkpoint status` prints.
   *
   * @returns The region's facts, the waiters and the processes found.
   * @throws {Deno.errors.WouldBlock} When another process kept changing a word for half a second.
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create({ layout: "ltp" });
   * const { layout, layoutSource, waiters } = cp.status();
   * assert.deepEqual([layout, layoutSource, waiters], ["ltp", "option", {}]);
   * ```
   */
  status(): CheckpointStatus {
    const { uid, mode, dev, ino } = this.#file.stat();
    const { path, layout, layoutSource, capacity, libPid } = this;
    return statusOf({ path, layout, layoutSource, capacity, libPid, uid, mode, dev, ino }, this.snapshot());
  }

  /**
   * The region file's owner and permission bits, as they are now.
   *
   * @returns The owner's uid and the mode, such as `0o600`.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * using cp = Checkpoint.create();
   * assert.equal(cp.stat().mode & 0o777, 0o600);
   * ```
   */
  stat(): { uid: number; mode: number } {
    const { uid, mode } = this.#file.stat();
    return { uid, mode };
  }

  /**
   * Unmaps the region (and removes a region made by `create()`); safe to
   * call twice. Pending async waits on it reject with `BadResource`;
   * children it started that still run are killed.
   */
  close(): void {
    if (this.#closed) return;
    if (this.#children) { for (const child of this.#children) child[Symbol.dispose](); }
    try {
      if (this.#removeOnClose) this.#unlink();
    } finally {
      this.#closed = true;
      closed(this);
      for (const pending of this.#pending) pending.cancel();
      this.#folder.close();
      this.#file.close();
    }
  }

  /** Removes the file from its folder if the name still holds this region. */
  #unlink(): void {
    this.#folder.removeIf(this.#name, this.#file.stat());
  }

  /**
   * Removes the region file, if its name still holds this region, and
   * closes it. Processes attached to it go on; none can attach any more.
   * (Deno's own `Deno.remove` refuses paths under /dev without
   * `--allow-all`; this needs only the permissions the region needed.)
   *
   * @throws {Deno.errors.BadResource} When the region is closed.
   * @example
   * ```ts
   * import { Checkpoint } from "@ltp/checkpoint";
   *
   * const cp = Checkpoint.init(`/dev/shm/example_${Deno.pid}`);
   * cp.remove();
   * ```
   */
  remove(): void {
    if (this.#closed) throw new Deno.errors.BadResource(`${this.path} is closed`);
    this.#removeOnClose = true;
    this.close();
  }

  /** The same as {@linkcode Checkpoint.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
