/**
 * Async waits that stay in the kernel for their whole length and leave it
 * the moment they are given up. Each batch is one futex_waitv call on
 * Deno's thread pool: entry 0 is a private word of ours, the others are
 * the checkpoint words of pending waits (a word may repeat; each entry
 * counts as one waiter to any waker). Setting and waking the private word
 * ends the call within microseconds, and the call's result says which
 * entries were woken first, so a wake that raced with a cancel is kept,
 * never lost.
 *
 * Deno runs about 32 thread-pool calls at once. While fewer than
 * MAX_BATCHES waits are pending each has a call of its own, and nothing
 * disturbs it until it ends; beyond that, new waits join a batch (one of
 * the same word first), which briefly leaves the kernel to take them in.
 * @module
 */
import { addressOf, sys, sysAsync } from "./libc.ts";
import { FUTEX_PRIVATE_FLAG, FUTEX_WAIT, FUTEX_WAKE } from "./file.ts";

const MAX_BATCHES = 16;
/** futex_waitv takes at most 128 entries; one is the cancel word. */
const MAX_ENTRIES = 127;
const FUTEX2_SIZE_U32 = 0x02;
const FUTEX2_PRIVATE = 128;
const CLOCK_MONOTONIC = 1;
const ENOSYS = 38;
/** Slices of the fallback for kernels before 5.16. */
const SLICE_MS = 25;
/** Unexplained failures in a row after which a batch's waits fail rather than spin. */
const MAX_FAILURES = 100;

/** How a pending wait ended. */
export type WaitEnd = "woken" | "cancelled";

/** What a wait needs from its region: the word's address, and its value as last read. */
export interface Word {
  address: bigint;
  value(): number;
  /** Reads the value again; throws when the file can no longer be read. */
  refresh(): void;
}

/** One pending wait. */
export class PendingWait {
  readonly ended: Promise<WaitEnd>;
  settle!: (end: WaitEnd | Error) => void;
  cancelled = false;
  batch?: Batch;

  constructor(readonly word: Word, readonly deadline: number) {
    this.ended = new Promise((resolve, reject) => {
      this.settle = (end) => end instanceof Error ? reject(end) : resolve(end);
    });
  }

  /** Asks the wait to leave the kernel; `ended` then says whether a wake got there first. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.batch?.kick();
  }
}

let supported: boolean | undefined;

/** Whether this kernel has futex_waitv (Linux 5.16 and later). */
export function hasWaitv(): boolean {
  // no entries: EINVAL where it exists, ENOSYS where it does not
  return supported ??= sys("futex_waitv", 0, 0, 0, 0, 0) !== -ENOSYS;
}

/** CLOCK_MONOTONIC minus performance.now(), in ns: both count from boot-stable clocks. */
let clockOffset: bigint | undefined;

function monotonicNs(perfMs: number): bigint {
  if (clockOffset === undefined) {
    const ts = new BigInt64Array(2);
    const before = performance.now();
    sys("clock_gettime", CLOCK_MONOTONIC, addressOf(ts));
    clockOffset = ts[0] * 1_000_000_000n + ts[1] - BigInt(Math.round(before * 1e6));
  }
  return BigInt(Math.round(perfMs * 1e6)) + clockOffset;
}

const batches = new Set<Batch>();

class Batch {
  waits: PendingWait[] = [];
  #inFlight = false;
  #failures = 0;
  readonly #cancel = new Int32Array(1);
  readonly #vector = new BigUint64Array(3 * (MAX_ENTRIES + 1));
  readonly #timeout = new BigInt64Array(2);

  add(wait: PendingWait): void {
    wait.batch = this;
    this.waits.push(wait);
    if (this.#inFlight) this.kick();
    else this.#arm();
  }

  /** Ends the kernel call now, so that it starts again with the waits as they are. */
  kick(): void {
    if (!this.#inFlight || Atomics.load(this.#cancel, 0) === 1) return;
    Atomics.store(this.#cancel, 0, 1);
    sys("futex", addressOf(this.#cancel), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0);
  }

  #arm(): void {
    this.waits = this.waits.filter((wait) => {
      if (wait.cancelled) wait.settle("cancelled");
      return !wait.cancelled;
    });
    if (this.waits.length === 0) {
      batches.delete(this);
      return;
    }
    const entries = [...this.waits];
    const vector = this.#vector;
    Atomics.store(this.#cancel, 0, 0);
    vector[0] = 0n;
    vector[1] = addressOf(this.#cancel);
    vector[2] = BigInt(FUTEX2_SIZE_U32 | FUTEX2_PRIVATE);
    entries.forEach((wait, i) => {
      vector[3 * i + 3] = BigInt(wait.word.value());
      vector[3 * i + 4] = wait.word.address;
      vector[3 * i + 5] = BigInt(FUTEX2_SIZE_U32);
    });
    const deadline = Math.min(...entries.map((wait) => wait.deadline));
    const ns = monotonicNs(deadline);
    this.#timeout[0] = ns / 1_000_000_000n;
    this.#timeout[1] = ns % 1_000_000_000n;
    this.#inFlight = true;
    sysAsync("futex_waitv", addressOf(vector), entries.length + 1, 0, addressOf(this.#timeout), CLOCK_MONOTONIC)
      .then((r) => this.#ended(entries, r, deadline), (error) => this.#fail(entries, error));
  }

  /** `r`: the index of the last entry woken, or -1 (a cancel, the deadline, a changed word, a signal). */
  #ended(entries: PendingWait[], r: number, deadline: number): void {
    this.#inFlight = false;
    const woken = new Set<PendingWait>();
    if (r >= 1) {
      // a wake takes a word's waiters in the order they were queued, so
      // every entry of that word up to the last one woken was woken too
      const { address } = entries[r - 1].word;
      for (let i = 0; i < r; i++) if (entries[i].word.address === address) woken.add(entries[i]);
    }
    const explained = r >= 0 || Atomics.load(this.#cancel, 0) === 1 || performance.now() >= deadline - 1;
    try {
      if (!explained) {
        // the word changed (EAGAIN) or a signal came: read the values again
        if (++this.#failures > MAX_FAILURES) throw new Error("futex_waitv keeps failing");
        for (const wait of entries) wait.word.refresh();
      } else this.#failures = 0;
    } catch (error) {
      return this.#fail(entries, error);
    }
    const now = performance.now();
    this.waits = this.waits.filter((wait) => {
      if (woken.has(wait)) wait.settle("woken");
      else if (wait.cancelled || wait.deadline <= now + 1) wait.settle("cancelled");
      else return true;
      return false;
    });
    this.#arm();
  }

  #fail(entries: PendingWait[], error: unknown): void {
    this.#inFlight = false;
    this.waits = this.waits.filter((wait) => !entries.includes(wait));
    for (const wait of entries) wait.settle(error instanceof Error ? error : new Error(String(error)));
    this.#arm();
  }
}

/**
 * Where the kernel lacks futex_waitv: FUTEX_WAIT in slices of SLICE_MS,
 * so that a cancelled wait lingers in the kernel for at most one slice (a
 * wake landing on that slice is counted by its waker and lost), and steps
 * out for microseconds between slices.
 */
async function waitInSlices(wait: PendingWait): Promise<void> {
  const ts = new BigInt64Array(2);
  const { word } = wait;
  while (!wait.cancelled) {
    const slice = Math.min(SLICE_MS, wait.deadline - performance.now());
    if (slice <= 0) break;
    ts[0] = 0n;
    ts[1] = BigInt(Math.round(slice * 1e6));
    if (await sysAsync("futex", word.address, FUTEX_WAIT, word.value(), addressOf(ts), 0, 0) === 0) {
      return wait.settle("woken");
    }
    word.refresh();
  }
  wait.settle("cancelled");
}

/** Starts waiting on `word` until `deadline` (performance.now()). */
export function waitOn(word: Word, deadline: number): PendingWait {
  const wait = new PendingWait(word, deadline);
  if (!hasWaitv()) {
    waitInSlices(wait).catch(wait.settle);
    return wait;
  }
  let batch: Batch | undefined;
  if (batches.size >= MAX_BATCHES) {
    let fewest: Batch | undefined;
    for (const b of batches) {
      if (b.waits.length >= MAX_ENTRIES) continue;
      if (b.waits.every((w) => w.word.address === word.address)) {
        batch = b;
        break;
      }
      if (!fewest || b.waits.length < fewest.waits.length) fewest = b;
    }
    batch ??= fewest;
  }
  if (!batch) {
    batch = new Batch();
    batches.add(batch);
  }
  batch.add(wait);
  return wait;
}
