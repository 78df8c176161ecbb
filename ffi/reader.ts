/**
 * The bounded reader: syscalls that another process can stall for ever (an
 * open or read of its /proc files while it is stuck in exec holding its
 * exec lock, a fault on a FUSE page nobody serves) are made on another
 * thread, in batches, while the caller waits with `Atomics.wait` until the
 * batch is done or its time is up. A read that has started cannot be
 * interrupted; what can be left behind is the thread making it. So the
 * reader is a Worker whose every call is a nonblocking FFI call (a thread of
 * Deno's pool, which never keeps the process from ending), terminated at the
 * end of each use: an idle Worker would keep the process alive.
 *
 * The Worker's code is the self-contained source of `readerMain` in a
 * `data:` URL: loading it needs no read permission, and a bundle carries it
 * inline. It opens libc itself (--allow-ffi, which the caller has).
 *
 * What a call reads lands in the reader's shared buffer, never in the
 * caller's memory: a call left behind may complete later, so a buffer it
 * was given is never reused (it is kept, never freed, for as long as the
 * process lives).
 * @module
 */
import { AT_FDCWD, NR, O_CLOEXEC, type SyscallName } from "./constants.ts";
import { addressOf, cString, sys } from "./libc.ts";

/** One syscall of a batch: its name and up to six arguments (addresses as numbers). */
export interface Call {
  name: SyscallName;
  args: number[];
}

/**
 * How a batch ended: every result (each `-1` on any failure, errno being lost
 * on the pool), or the calls still under way when it made no progress
 * (`stalled`) or when the deadline came (`late`).
 */
export type BatchResult =
  | { kind: "done"; results: number[] }
  | { kind: "stalled"; pending: number[] }
  | { kind: "late"; pending: number[] };

// the shared header, Int32 entries
const STATE = 0; // IDLE, REQUEST, DONE, QUIT
const COUNT = 1; // calls in the batch
const PROGRESS = 3; // calls made since the reader started: moves while the reader is alive
const READY = 4; // 1 once libc is loaded, -1 when it could not be
const HEADER_INTS = 8;
const IDLE = 0;
const REQUEST = 1;
const DONE = 2;
const QUIT = 3;

/** The most calls in one batch. */
export const MAX_CALLS = 256;
/** Bytes of the data area: where reads land and where the caller may put names. */
export const DATA_BYTES = 1 << 17;
const CALLS_AT = HEADER_INTS * 4;
const RESULTS_AT = CALLS_AT + MAX_CALLS * 7 * 8;
const DONE_AT = RESULTS_AT + MAX_CALLS * 8; // Int32 per call: 1 once made
const DATA_AT = DONE_AT + MAX_CALLS * 4;
const BUFFER_BYTES = DATA_AT + DATA_BYTES;

/**
 * A batch none of whose calls returns for this long is taken for stalled:
 * reads of /proc return in microseconds, even maps' 64 KiB chunks, and this
 * leaves room for a busy machine's scheduler (a process taken for stalled is
 * not read again).
 */
const STALL_MS = 500;

/**
 * The Worker's code, sent as source text: it may refer to nothing outside
 * itself. It loads libc, then makes each batch's calls at once as
 * nonblocking FFI calls (the pool runs them side by side), marking each
 * done as it returns, until told to quit.
 */
function readerMain(): void {
  // deno-lint-ignore no-explicit-any
  const scope = self as any;
  scope.onmessage = async (event: MessageEvent<{ buffer: SharedArrayBuffer; names: string[] }>) => {
    const { buffer, names } = event.data;
    const header = new Int32Array(buffer, 0, 8);
    const calls = new Float64Array(buffer, 32, 256 * 7);
    const results = new Float64Array(buffer, 32 + 256 * 7 * 8, 256);
    const done = new Int32Array(buffer, 32 + 256 * 7 * 8 + 256 * 8, 256);
    const i64 = "i64" as const;
    const symbols = {
      syscall: { parameters: [i64, i64, i64, i64, i64, i64, i64], result: i64, nonblocking: true },
    } as const;
    let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
    for (const name of names) {
      try {
        lib = Deno.dlopen(name, symbols);
        break;
      } catch {
        // the next name
      }
    }
    Atomics.store(header, 4, lib ? 1 : -1);
    Atomics.notify(header, 0);
    if (!lib) return scope.close();
    for (;;) {
      let state = Atomics.load(header, 0);
      for (; state !== 1 && state !== 3; state = Atomics.load(header, 0)) Atomics.wait(header, 0, state);
      if (state === 3) break;
      const count = Atomics.load(header, 1);
      await Promise.all(Array.from({ length: count }, async (_, i) => {
        const a = calls.subarray(i * 7, i * 7 + 7);
        try {
          const r = await lib!.symbols.syscall(
            BigInt(a[0]),
            BigInt(a[1]),
            BigInt(a[2]),
            BigInt(a[3]),
            BigInt(a[4]),
            BigInt(a[5]),
            BigInt(a[6]),
          );
          results[i] = Number(r);
        } catch {
          // an argument that is no integer: a failed call, not a stalled one
          results[i] = -1;
        }
        Atomics.store(done, i, 1);
        Atomics.add(header, 3, 1);
        Atomics.notify(header, 0);
      }));
      Atomics.store(header, 0, 2);
      Atomics.notify(header, 0);
    }
    lib.close();
    scope.close();
  };
}

const READER_URL = `data:application/javascript,${encodeURIComponent(`(${readerMain.toString()})();`)}`;

/**
 * Descriptors that must be free before a Worker starts: Deno panics when it
 * cannot make one's threads and event loop (about seven descriptors), and
 * the caller's scan needs a few more.
 */
const FREE_DESCRIPTORS = 16;
const DEV_NULL = cString("/dev/null");

/** Whether `FREE_DESCRIPTORS` descriptors can be opened now. */
function descriptorsFree(): boolean {
  const fds: number[] = [];
  try {
    for (let i = 0; i < FREE_DESCRIPTORS; i++) {
      const fd = sys("openat", AT_FDCWD, Number(addressOf(DEV_NULL)), O_CLOEXEC);
      if (fd < 0) return false;
      fds.push(fd);
    }
    return true;
  } finally {
    for (const fd of fds) sys("close", fd);
  }
}

/** Shared buffers that a call left behind may still write into: kept for the life of the process. */
const abandoned: SharedArrayBuffer[] = [];

/** The libc names the Worker tries, as ffi/libc.ts does. */
function libcNames(): string[] {
  const names = ["libc.so.6", `libc.musl-${Deno.build.arch}.so.1`, "libc.so"];
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "LTP_CHECKPOINT_LIBC" }).state === "granted") {
      const override = Deno.env.get("LTP_CHECKPOINT_LIBC");
      if (override) names.push(override);
    }
  } catch {
    // no override
  }
  return names;
}

/**
 * A reader for one scan: `run()` batches until `close()`, all by the
 * deadline given. Its Worker starts at the first batch and ends at close()
 * or when a call stalls (then the next batch starts a new one).
 */
export class BoundedReader {
  #worker: Worker | undefined;
  #buffer = new SharedArrayBuffer(BUFFER_BYTES);
  #header = new Int32Array(this.#buffer, 0, HEADER_INTS);
  #calls = new Float64Array(this.#buffer, CALLS_AT, MAX_CALLS * 7);
  #results = new Float64Array(this.#buffer, RESULTS_AT, MAX_CALLS);
  #done = new Int32Array(this.#buffer, DONE_AT, MAX_CALLS);
  #data = new Uint8Array(this.#buffer, DATA_AT, DATA_BYTES);
  #dataAddress = 0;
  #unusable: string | undefined;
  readonly #deadline: number;

  /** @param deadline When every batch must be done by, as `performance.now()` reads it. */
  constructor(deadline: number) {
    this.#deadline = deadline;
  }

  /** The data area, where reads land: valid until the next batch that stalls. */
  get data(): Uint8Array {
    return this.#data;
  }

  /** The address of byte `at` of the data area, for a call's arguments. */
  address(at: number): number {
    // a shared buffer's memory stays where it is, like any other; only its type differs
    if (this.#dataAddress === 0) this.#dataAddress = Number(addressOf(this.#data as unknown as BufferSource));
    return this.#dataAddress + at;
  }

  /** Why the reader could not be used (its Worker could not load libc), once that is known. */
  get unusable(): string | undefined {
    return this.#unusable;
  }

  /**
   * Makes `calls` side by side on the reader's thread: every result, or the
   * calls not done when none had returned for a while (`stalled`) or at the
   * deadline (`late`). Calls that another process can stall should each
   * concern a different process: a stalled call holds a thread of Deno's
   * pool for as long as it stalls. After either end the reader's Worker is
   * gone, and the data area is a fresh one.
   */
  run(calls: Call[]): BatchResult {
    if (calls.length > MAX_CALLS) throw new RangeError(`At most ${MAX_CALLS} calls in a batch`);
    if (this.#unusable) return { kind: "late", pending: calls.map((_, i) => i) };
    const header = this.#header;
    for (let i = 0; i < calls.length; i++) {
      const { name, args } = calls[i];
      this.#calls[i * 7] = NR[name];
      for (let j = 0; j < 6; j++) this.#calls[i * 7 + 1 + j] = args[j] ?? 0;
    }
    this.#done.fill(0, 0, calls.length);
    this.#start();
    if (this.#unusable) return { kind: "late", pending: calls.map((_, i) => i) };
    Atomics.store(header, COUNT, calls.length);
    Atomics.store(header, STATE, REQUEST);
    Atomics.notify(header, STATE);
    let progress = Atomics.load(header, PROGRESS);
    let movedAt = performance.now();
    for (;;) {
      const now = performance.now();
      const left = this.#deadline - now;
      const state = Atomics.load(header, STATE);
      if (state === DONE) break;
      if (Atomics.load(header, READY) < 0) {
        this.#unusable = `the reader thread could not load libc (tried ${libcNames().join(", ")})`;
        this.#abandon();
        return { kind: "late", pending: calls.map((_, i) => i) };
      }
      const moved = Atomics.load(header, PROGRESS);
      if (moved !== progress) {
        progress = moved;
        movedAt = now;
      }
      // the reader's start counts against the deadline only
      const stalled = Atomics.load(header, READY) === 1 && now - movedAt >= STALL_MS;
      if (left <= 0 || stalled) {
        const pending = calls.map((_, i) => i).filter((i) => Atomics.load(this.#done, i) === 0);
        this.#abandon();
        return { kind: stalled ? "stalled" : "late", pending };
      }
      Atomics.wait(header, STATE, state, Math.min(left, STALL_MS / 5));
    }
    Atomics.store(header, STATE, IDLE);
    return { kind: "done", results: Array.from(this.#results.subarray(0, calls.length)) };
  }

  /** Starts the Worker now, so that it boots while the caller prepares its first batch. */
  start(): void {
    this.#start();
  }

  /** Ends the Worker, if one runs; the reader may be used again (a new Worker starts). */
  close(): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#worker = undefined;
    Atomics.store(this.#header, STATE, QUIT);
    Atomics.notify(this.#header, STATE);
    worker.terminate();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #start(): void {
    if (this.#worker || this.#unusable) return;
    if (!descriptorsFree()) {
      this.#unusable =
        `fewer than ${FREE_DESCRIPTORS} file descriptors are free to start the reader thread (ulimit -n)`;
      return;
    }
    const worker = new Worker(READER_URL, { type: "module" });
    // a reader that fails says so through READY, not as an uncaught error at exit
    worker.onerror = (event) => event.preventDefault();
    worker.postMessage({ buffer: this.#buffer, names: libcNames() });
    this.#worker = worker;
  }

  /** Leaves the Worker and its buffer behind: a call may still be under way in it. */
  #abandon(): void {
    const worker = this.#worker;
    this.#worker = undefined;
    worker?.terminate();
    abandoned.push(this.#buffer);
    this.#buffer = new SharedArrayBuffer(BUFFER_BYTES);
    this.#header = new Int32Array(this.#buffer, 0, HEADER_INTS);
    this.#calls = new Float64Array(this.#buffer, CALLS_AT, MAX_CALLS * 7);
    this.#results = new Float64Array(this.#buffer, RESULTS_AT, MAX_CALLS);
    this.#done = new Int32Array(this.#buffer, DONE_AT, MAX_CALLS);
    this.#data = new Uint8Array(this.#buffer, DATA_AT, DATA_BYTES);
    this.#dataAddress = 0;
  }
}
