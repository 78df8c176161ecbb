/**
 * Async waits on a SharedPage's futex words that stay in the kernel for
 * their whole length and leave it the moment they are given up.
 *
 * A call is one futex_waitv on Deno's thread pool: entry 0 is a private
 * word of ours, each other entry one pending wait on its checkpoint word
 * (each entry counts as one waiter to any waker). Setting and waking the
 * private word ends the call within microseconds; it is then armed again
 * with the waits as they are, so that taking a wait in or out leaves the
 * others out of the kernel for microseconds only.
 *
 * futex_waitv returns the index of the last entry woken. A wake takes a
 * word's waiters in the order they were queued, so the entries on that
 * word up to that one were all woken, and a wake that raced with a cancel
 * is kept, never lost. Entries on other words of the same call cannot be
 * told: so a call holds one word while there are places enough.
 *
 * Places: Deno runs 32 thread-pool calls at once, for every async
 * operation of the process; waits hold at most `maxCalls` of them
 * (setWaitPolicy()). While a place is free, a new wait gets a call of its
 * own; else it joins a call on its own word that has room. A wait on a
 * word that has no call then either waits for a place, and calls take
 * turns in the kernel (the default), or, with `mixWords`, joins the call
 * with the fewest entries, which then holds several words. The residual
 * race of mixing: when two words of one call are woken within the moment
 * between the first wake and the call's return (microseconds; longer only
 * when the machine is too busy to run the woken thread, or when one
 * process wakes both back to back), only the last is told; the other's
 * waker has counted its wake and that wait goes on, as if the wake were
 * lost. So mixing is only for more distinct words than places, only when
 * asked for (a caller that must never lose a wake does not ask), and when a
 * place frees, a call holding several words is split again.
 *
 * The call's own deadline (the earliest of its waits') ends it on time, so
 * a wait in the kernel needs no timer; a wait queued for room has none, and
 * one timer, at the earliest deadline among those, ends them.
 *
 * With `uring` (setWaitPolicy()), where the kernel has io_uring's futex
 * waits (Linux 6.7 and later, io_uring not turned off), each wait is
 * instead one IORING_OP_FUTEX_WAIT of ffi/uring.ts, with a completion of
 * its own: any number of waits on any number of words, each counted by the
 * kernel from its start to its end, each wake told to the wait it woke, and
 * one thread-pool call for them all. Elsewhere the calls above serve.
 * @module
 */
import {
  CLOCK_MONOTONIC,
  EAGAIN,
  ECANCELED,
  ENOSYS,
  EPERM,
  FUTEX2_PRIVATE,
  FUTEX2_SIZE_U32,
  FUTEX_PRIVATE_FLAG,
  FUTEX_WAIT,
  FUTEX_WAITV_MAX,
} from "./constants.ts";
import { addressOf, libc, sys, sysAsync } from "./libc.ts";
import { syscallError } from "./errno.ts";
import type { SharedPage } from "./page.ts";
import { futexWake } from "./syscalls.ts";
import { FutexRing, setMonotonic } from "./uring.ts";

/** The most thread-pool calls the waits hold at once, and whether a call may hold several words (setWaitPolicy()). */
let maxCalls = 16;
let mixWords = false;
/** How long a call stays in the kernel at a stretch when others wait for a place. */
const TURN_MS = 10;
/** Deno's thread pool has 32 places; some stay free for the process's other async operations. */
const MOST_CALLS = 30;
/** One entry of each call is the cancel word. */
const MAX_ENTRIES = FUTEX_WAITV_MAX - 1;
const SIZE_U32 = BigInt(FUTEX2_SIZE_U32);
/** The longest a call stays in the kernel before it goes back in, so that no deadline overflows a timespec. */
const MAX_KERNEL_MS = 2 ** 31;
/** The longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Slices of the fallback for kernels before 5.16. */
const SLICE_MS = 25;
/** Unexplained failures in a row after which a batch's waits fail rather than spin. */
const MAX_FAILURES = 100;
/** Entry counts as bigints, made once. */
const COUNTS = Array.from({ length: MAX_ENTRIES + 2 }, (_, i) => BigInt(i));

/** How a pending wait ended: woken, or given up (cancelled, or its deadline passed). */
export type WaitEnd = "woken" | "cancelled";

/** One wait on the word at `offset` of `file`; `done` is called once, when it has left the kernel. */
export class PendingWait {
  cancelled = false;
  batch?: Batch;
  /** Its tag in the io_uring while it is there, else 0. */
  tag = 0;
  /** Times in a row the kernel found its word changed. */
  changes = 0;
  /** The word's address in this process (another mapping of the same page gives another address). */
  readonly address: bigint;
  /** The word itself, as the kernel knows it: the file and the offset. */
  readonly word: string;

  constructor(
    readonly file: SharedPage,
    readonly offset: number,
    readonly deadline: number,
    readonly done: (end: WaitEnd | Error) => void,
  ) {
    this.address = file.address(offset);
    this.word = `${fileKey(file)}:${offset}`;
  }

  settle(end: WaitEnd | Error): void {
    this.batch = undefined; // its batch may serve other waits from now on
    this.done(end);
  }

  /** Asks the wait to leave the kernel; `done` then says whether a wake got there first. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.batch?.kick();
    if (this.tag !== 0) ring?.cancel(this.tag);
  }
}

/** Each page's file as "dev:ino", found once. */
const fileKeys = new WeakMap<SharedPage, string>();

function fileKey(file: SharedPage): string {
  let key = fileKeys.get(file);
  if (key === undefined) {
    const { dev, ino } = file.stat();
    fileKeys.set(file, key = `${dev}:${ino}`);
  }
  return key;
}

let waitvNumber: bigint | undefined;

/** futex_waitv(vector, count, 0, timeout, CLOCK_MONOTONIC) on the thread pool, with bigints made in advance. */
function waitv(vector: bigint, count: bigint, timeout: bigint): Promise<number | bigint> {
  const { symbols, numbers } = libc();
  waitvNumber ??= BigInt(numbers.futex_waitv);
  return symbols.syscallAsync(waitvNumber, vector, count, 0n, timeout, COUNTS[CLOCK_MONOTONIC], 0n);
}

let supported: boolean | undefined;

/** Whether this kernel has futex_waitv (Linux 5.16 and later) and lets us use it. */
function hasWaitv(): boolean {
  // no entries: EINVAL where it exists, ENOSYS where it does not (EPERM where a seccomp filter forbids it)
  if (supported === undefined) {
    const r = sys("futex_waitv", 0, 0, 0, 0, 0);
    supported = r !== -ENOSYS && r !== -EPERM;
  }
  return supported;
}

/**
 * Sets how many thread-pool calls the waits may hold at once (`calls`, 1
 * to 30; 16 until set), and what happens to a wait on a word that has no
 * call when every place is taken: with `mixWords` it joins the call with
 * the fewest entries, so that every wait is counted by the kernel all
 * along, at the price of the residual race above; without (the default),
 * it waits for a place, and calls on more words than places take turns of
 * TURN_MS in the kernel (a call out of turn is not seen by wakers, which
 * retry, as LTP's wake does, until it is back). Mixing can lose a wake (see
 * above): the resident agent, which must keep a thousand clients counted
 * at once, asks for `uring` and, where io_uring's futex waits cannot be
 * had, takes 28 calls without mixing and sends any wait beyond them to run
 * in a process of its own.
 *
 * With `uring`, every wait from now on is one io_uring futex wait where the
 * kernel allows it (the ring is made here, once); `calls` and `mixWords`
 * then serve only where it does not. Returns whether the io_uring waits
 * are in force.
 */
export function setWaitPolicy(policy: { calls: number; mixWords: boolean; uring?: boolean }): boolean {
  maxCalls = Math.max(1, Math.min(MOST_CALLS, Math.floor(policy.calls)));
  mixWords = policy.mixWords;
  if (policy.uring && ring === undefined) ring = FutexRing.open(ringEnded) ?? null;
  useRing = policy.uring === true && ring !== null;
  return useRing;
}

/** The io_uring of the waits: undefined until asked for, null where it cannot be had. */
let ring: FutexRing | null | undefined;
let useRing = false;
/** Waits in the ring by tag; tags are never reused. */
const inRing = new Map<number, PendingWait>();
let nextTag = 1;

/** Puts `wait` into the ring with its word's value as last read. */
function ringWait(wait: PendingWait): void {
  wait.tag = nextTag++;
  inRing.set(wait.tag, wait);
  try {
    ring!.wait(wait.tag, wait.address, wait.file.word(wait.offset), wait.deadline);
  } catch (error) {
    ringSettle(wait, error instanceof Error ? error : new Error(String(error)));
  }
}

function ringSettle(wait: PendingWait, end: WaitEnd | Error): void {
  inRing.delete(wait.tag);
  wait.tag = 0;
  wait.settle(end);
}

/** A wait's end in the ring: 0 woken, -ECANCELED cancelled or at its deadline, -EAGAIN its word changed. */
function ringEnded(tag: number, result: number): void {
  const wait = inRing.get(tag);
  if (wait === undefined) return;
  if (result === 0) return ringSettle(wait, "woken");
  if (result === -ECANCELED) return ringSettle(wait, "cancelled");
  if (result === -EAGAIN) {
    // its word changed since it was read: read it again and go back in, unless it is over
    try {
      if (++wait.changes > MAX_FAILURES) throw new Error(`The futex word of ${wait.file.path} keeps changing`);
      wait.file.refresh(wait.offset);
    } catch (error) {
      return ringSettle(wait, error instanceof Error ? error : new Error(String(error)));
    }
    if (wait.cancelled || wait.deadline <= performance.now()) return ringSettle(wait, "cancelled");
    inRing.delete(tag);
    return ringWait(wait);
  }
  ringSettle(wait, syscallError(`Cannot wait on ${wait.file.path}`, -result));
}

/** Batches in the kernel (or on their way there), and those waiting for a place, oldest first. */
const active = new Set<Batch>();
const queued: Batch[] = [];

/** A batch in the kernel for `word` with room: one that holds that word alone first. */
function batchOf(word: string): Batch | undefined {
  let mixed: Batch | undefined;
  for (const batch of active) {
    if (batch.waits.length >= MAX_ENTRIES || !batch.holds(word)) continue;
    if (!batch.mixed) return batch;
    mixed ??= batch;
  }
  return mixed;
}

/** The batch in the kernel with the fewest waits and room, for a word that has none. */
function emptiest(): Batch | undefined {
  let best: Batch | undefined;
  for (const batch of active) {
    if (batch.waits.length < MAX_ENTRIES && (!best || batch.waits.length < best.waits.length)) best = batch;
  }
  return best;
}

/** Batches that have ended, kept for the next waits: their buffers and addresses are made once. */
const spares: Batch[] = [];
const MAX_SPARES = 16;

function newBatch(waits: PendingWait[]): Batch {
  const batch = spares.pop() ?? new Batch();
  for (const wait of waits) {
    batch.waits.push(wait);
    wait.batch = batch;
  }
  return batch;
}

/**
 * The one timer of the module: at the earliest deadline among queued
 * waits, which have no kernel call to end them. It runs only while some
 * batch is queued, so it never outlives the waits (a `deno test` sanitizer
 * would call it leaked).
 */
let queueTimer: ReturnType<typeof setTimeout> | undefined;
let queueTimerAt = Infinity;

function watchQueued(deadline: number): void {
  if (deadline >= queueTimerAt) return;
  clearTimeout(queueTimer);
  queueTimerAt = deadline;
  queueTimer = setTimeout(expireQueued, Math.min(Math.max(0, Math.ceil(deadline - performance.now())), MAX_TIMER_MS));
}

function unwatchQueued(): void {
  if (queueTimer === undefined) return;
  clearTimeout(queueTimer);
  queueTimer = undefined;
  queueTimerAt = Infinity;
}

/** Settles the queued waits whose deadline has passed, and watches for the next. */
function expireQueued(): void {
  queueTimer = undefined;
  queueTimerAt = Infinity;
  const now = performance.now();
  let earliest = Infinity;
  for (const batch of [...queued]) {
    for (const wait of batch.waits) {
      if (wait.deadline <= now) wait.cancelled = true;
      else earliest = Math.min(earliest, wait.deadline);
    }
    batch.kick(); // a queued batch settles its cancelled waits at once
  }
  if (queued.length > 0) watchQueued(earliest);
}

class Batch {
  /** Its waits, oldest first: while a call is in the kernel, its entries are the first `#armed` of them. */
  waits: PendingWait[] = [];
  #armed = 0;
  #inFlight = false;
  /** In the kernel for its whole deadline, not for a turn. */
  #unbounded = false;
  #failures = 0;
  /** The call's end, as a performance.now() time. */
  #end = 0;
  readonly #cancel = new Int32Array(1);
  readonly #vector = new BigUint64Array(3 * (MAX_ENTRIES + 1));
  readonly #timeout = new BigInt64Array(2);
  readonly #cancelAddress = addressOf(this.#cancel);
  readonly #vectorAddress = addressOf(this.#vector);
  readonly #timeoutAddress = addressOf(this.#timeout);
  readonly #onResult = (r: number | bigint) => this.#ended(Number(r));
  readonly #onError = (error: unknown) => this.#fail(error instanceof Error ? error : new Error(String(error)));

  constructor() {
    this.#vector[1] = this.#cancelAddress;
    this.#vector[2] = BigInt(FUTEX2_SIZE_U32 | FUTEX2_PRIVATE);
  }

  /** Whether it holds a wait on `word`. */
  holds(word: string): boolean {
    for (const wait of this.waits) if (wait.word === word) return true;
    return false;
  }

  /** Whether it holds waits on more than one word. */
  get mixed(): boolean {
    const first = this.waits[0]?.word;
    for (const wait of this.waits) if (wait.word !== first) return true;
    return false;
  }

  /** Takes `wait` in: into the call in the kernel, or into the queue with the batch. */
  join(wait: PendingWait): void {
    wait.batch = this;
    this.waits.push(wait);
    if (this.#inFlight) this.kick();
    else watchQueued(wait.deadline);
  }

  /** Ends the kernel call now, so that it starts again with the waits as they are. */
  kick(): void {
    if (!this.#inFlight) {
      if (!active.has(this)) this.#drop(); // a queued batch: settle cancelled waits now
      return;
    }
    if (Atomics.load(this.#cancel, 0) === 1) return;
    Atomics.store(this.#cancel, 0, 1);
    futexWake(this.#cancelAddress, 1, FUTEX_PRIVATE_FLAG);
  }

  /** Settles the cancelled waits; true when some remain. */
  #drop(): boolean {
    const waits = this.waits;
    let kept = 0;
    for (const wait of waits) {
      if (wait.cancelled) wait.settle("cancelled");
      else waits[kept++] = wait;
    }
    waits.length = kept;
    if (kept > 0) return true;
    const i = queued.indexOf(this);
    if (i >= 0) {
      queued.splice(i, 1);
      if (queued.length === 0) unwatchQueued();
    }
    // once only, though a batch may be found empty twice on its way out
    if ((active.delete(this) || i >= 0) && spares.length < MAX_SPARES) spares.push(this);
    return false;
  }

  /** Moves the waits on all but its first word into calls of their own, as free places allow. */
  #split(): void {
    while (active.size < maxCalls && this.mixed) {
      const first = this.waits[0].word;
      const other = this.waits.find((wait) => wait.word !== first)!.word;
      const moved = this.waits.filter((wait) => wait.word === other);
      this.waits = this.waits.filter((wait) => wait.word !== other);
      newBatch(moved).start();
    }
  }

  /** Enters the kernel for the waits as they are now. */
  #arm(): void {
    if (!this.#drop()) return next();
    const waits = this.waits;
    const vector = this.#vector;
    Atomics.store(this.#cancel, 0, 0);
    let deadline = Infinity;
    for (let i = 0; i < waits.length; i++) {
      const at = 3 * (i + 1);
      const wait = waits[i];
      vector[at] = BigInt(wait.file.word(wait.offset));
      vector[at + 1] = wait.address;
      vector[at + 2] = SIZE_U32;
      if (wait.deadline < deadline) deadline = wait.deadline;
    }
    // while others wait for a place, this turn ends early; a very long wait goes back in every few days
    const end = Math.min(deadline, performance.now() + (queued.length > 0 ? TURN_MS : MAX_KERNEL_MS));
    this.#unbounded = queued.length === 0;
    setMonotonic(this.#timeout, end);
    this.#end = end;
    this.#armed = waits.length;
    this.#inFlight = true;
    waitv(this.#vectorAddress, COUNTS[waits.length + 1], this.#timeoutAddress).then(this.#onResult, this.#onError);
  }

  /** `r`: the index of the last entry woken, or -1 (a cancel, the deadline, a changed word, a signal). */
  #ended(r: number): void {
    this.#inFlight = false;
    const waits = this.waits;
    const now = performance.now();
    if (r < 0 && Atomics.load(this.#cancel, 0) !== 1 && now < this.#end - 1) {
      // unexplained: a word changed (EAGAIN) or a signal came; read their values again
      try {
        if (++this.#failures > MAX_FAILURES) throw new Error("futex_waitv keeps failing");
        for (const wait of waits.slice(0, this.#armed)) wait.file.refresh(wait.offset);
      } catch (error) {
        return this.#fail(error instanceof Error ? error : new Error(String(error)));
      }
    } else this.#failures = 0;
    if (r >= 1 && r <= this.#armed) {
      // a wake takes a word's waiters in the order they were queued: the entries on the last one's word up to it
      // were all woken
      const word = waits[r - 1].word;
      let kept = 0;
      for (let i = 0; i < waits.length; i++) {
        if (i < r && waits[i].word === word) waits[i].settle("woken");
        else waits[kept++] = waits[i];
      }
      waits.length = kept;
    }
    let earliest = Infinity;
    for (const wait of waits) {
      if (wait.deadline <= now + 1) wait.cancelled = true;
      else if (wait.deadline < earliest) earliest = wait.deadline;
    }
    if (queued.length > 0 && this.#drop()) {
      // its turn is over: to the back of the queue
      active.delete(this);
      queued.push(this);
      watchQueued(earliest);
      return next();
    }
    if (this.#drop()) this.#split();
    this.#arm();
  }

  /** The call failed: its waits fail with `error`, the others go on. */
  #fail(error: Error): void {
    this.#inFlight = false;
    const failed = this.waits.splice(0, this.#armed);
    for (const wait of failed) wait.settle(error);
    this.#arm();
  }

  /** Takes a place in the kernel. */
  start(): void {
    active.add(this);
    this.#arm();
  }

  /** Waits for a place; calls in the kernel for their whole deadline must now take turns. */
  enqueue(): void {
    queued.push(this);
    for (const wait of this.waits) watchQueued(wait.deadline);
    for (const batch of active) if (batch.#unbounded) batch.kick();
  }
}

/** Gives free places to queued batches, oldest first; else splits a call that holds several words. */
function next(): void {
  while (active.size < maxCalls && queued.length > 0) queued.shift()!.start();
  if (queued.length === 0) unwatchQueued();
  if (active.size >= maxCalls) return;
  for (const batch of active) {
    if (batch.mixed) return batch.kick(); // it splits when it ends
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
  const { file, offset } = wait;
  while (!wait.cancelled) {
    const slice = Math.min(SLICE_MS, wait.deadline - performance.now());
    if (slice <= 0) break;
    ts[0] = 0n;
    ts[1] = BigInt(Math.round(slice * 1e6));
    if (await sysAsync("futex", file.address(offset), FUTEX_WAIT, file.word(offset), ts, 0, 0) === 0) {
      return wait.settle("woken");
    }
    if (!wait.cancelled) file.refresh(offset);
  }
  wait.settle("cancelled");
}

/** Puts `wait` in the kernel until it is woken, cancelled, or its deadline (performance.now()) passes. */
export function waitOn(wait: PendingWait): void {
  if (useRing) return ringWait(wait);
  if (!hasWaitv()) {
    waitInSlices(wait).catch((error) => wait.settle(error instanceof Error ? error : new Error(String(error))));
    return;
  }
  // while a place is free each wait has a call of its own, which nothing interrupts until it ends
  if (active.size < maxCalls) return newBatch([wait]).start();
  const joined = batchOf(wait.word) ?? (mixWords ? emptiest() : undefined);
  if (joined) return joined.join(wait);
  const waiting = queued.find((batch) => batch.waits.length < MAX_ENTRIES && batch.holds(wait.word));
  if (waiting) return waiting.join(wait);
  newBatch([wait]).enqueue();
}
