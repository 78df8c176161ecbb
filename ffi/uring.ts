/**
 * Futex waits through io_uring (Linux 6.7 and later): each wait is one
 * IORING_OP_FUTEX_WAIT on a shared word, with a completion of its own, so
 * any number of waits on any number of words is told apart exactly, and
 * each is one waiter to any other process's FUTEX_WAKE or
 * FUTEX_CMP_REQUEUE for as long as it is queued.
 *
 * Submissions are made from the main thread with a synchronous
 * io_uring_enter, which does not block. Completions are reaped by one
 * nonblocking io_uring_enter(GETEVENTS) on Deno's thread pool at a time,
 * in slices of REAP_SLICE_MS, and only while some submission has not
 * completed: every submission ends in exactly one completion, so the
 * reaper stops by itself when the last one is in.
 *
 * A wait with a deadline is linked to an IORING_OP_LINK_TIMEOUT at that
 * (absolute, CLOCK_MONOTONIC) time, so it needs no timer; it then ends
 * with -ECANCELED, as a wait cancelled by IORING_OP_ASYNC_CANCEL does. A
 * wake that races a cancel or the deadline wins: the wait ends with 0, and
 * the waker's count is right.
 * @module
 */
import {
  CLOCK_MONOTONIC,
  EAGAIN,
  FUTEX2_PRIVATE,
  FUTEX2_SIZE_U32,
  FUTEX_BITSET_MATCH_ANY,
  IO_URING_CQE,
  IO_URING_GETEVENTS_ARG,
  IO_URING_PARAMS,
  IO_URING_SQE,
  IORING_ENTER_EXT_ARG,
  IORING_ENTER_GETEVENTS,
  IORING_FEAT_EXT_ARG,
  IORING_FEAT_NODROP,
  IORING_FEAT_SINGLE_MMAP,
  IORING_OFF_SQ_RING,
  IORING_OFF_SQES,
  IORING_OP_ASYNC_CANCEL,
  IORING_OP_FUTEX_WAIT,
  IORING_OP_LINK_TIMEOUT,
  IORING_SETUP_CLAMP,
  IORING_SETUP_CQSIZE,
  IORING_TIMEOUT_ABS,
  IOSQE_IO_LINK,
  MAP_POPULATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import { addressOf, libc, sys, sys64 } from "./libc.ts";

/** Submissions that may be waiting to enter the kernel at once; each is submitted as it is written. */
const SQ_ENTRIES = 64;
/** Completions the ring holds before the kernel keeps more aside (IORING_FEAT_NODROP). */
const CQ_ENTRIES = 4096;
/** The longest one reaping call stays in the kernel before it is made again. */
const REAP_SLICE_MS = 1000;

/** user_data: a wait's tag times 2; its linked timeout and its cancel are odd and end in nothing anyone awaits. */
const AUX = 1n;

/** How a wait ended: 0 woken, -ECANCELED cancelled or timed out, -EAGAIN the word no longer held the value, else -errno. */
export type RingEnd = (tag: number, result: number) => void;

/** CLOCK_MONOTONIC minus performance.now(), in ms: both count on the same clock. */
let clockOffset: number | undefined;

/** Writes the CLOCK_MONOTONIC time of `perfMs` (a performance.now() time) into a timespec. */
export function setMonotonic(spec: BigInt64Array, perfMs: number): void {
  if (clockOffset === undefined) {
    const ts = new BigInt64Array(2);
    const before = performance.now();
    sys("clock_gettime", CLOCK_MONOTONIC, ts);
    clockOffset = Number(ts[0]) * 1e3 + Number(ts[1]) / 1e6 - before;
  }
  const ms = perfMs + clockOffset;
  const seconds = Math.floor(ms / 1e3);
  spec[0] = BigInt(seconds);
  spec[1] = BigInt(Math.min(999_999_999, Math.round((ms - seconds * 1e3) * 1e6)));
}

function view(address: number, length: number): ArrayBuffer {
  return Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(BigInt(address))!, length);
}

/** One io_uring of futex waits; closing it, or the process's end, ends them all. */
export class FutexRing {
  #fd: number;
  readonly #mapped: [number, number][];
  readonly #sqHead: Uint32Array;
  readonly #sqTail: Uint32Array;
  readonly #sqArray: Uint32Array;
  readonly #sqMask: number;
  readonly #cqHead: Uint32Array;
  readonly #cqTail: Uint32Array;
  readonly #cqMask: number;
  readonly #cqes: DataView;
  readonly #sqes: DataView;
  readonly #onEnd: RingEnd;
  /** Submitted and not yet completed. */
  #outstanding = 0;
  /** Written to the ring but not yet taken by the kernel. */
  #unsubmitted = 0;
  #reaping = false;
  readonly #timeout = new BigInt64Array(2);
  readonly #timeoutAddress = addressOf(this.#timeout);
  readonly #slice = new BigInt64Array([BigInt(REAP_SLICE_MS / 1000), BigInt((REAP_SLICE_MS % 1000) * 1e6)]);
  readonly #reapArg = new BigUint64Array(IO_URING_GETEVENTS_ARG.size / 8);
  readonly #reapArgs: bigint[];

  private constructor(fd: number, params: DataView, mapped: [number, number][], onEnd: RingEnd) {
    const [[ring, ringLength], [sqes]] = mapped;
    const u32 = (offset: number) => params.getUint32(offset, true);
    const words = new Uint32Array(view(ring, ringLength));
    this.#fd = fd;
    this.#mapped = mapped;
    this.#sqHead = words.subarray(u32(IO_URING_PARAMS.sq_head) / 4, u32(IO_URING_PARAMS.sq_head) / 4 + 1);
    this.#sqTail = words.subarray(u32(IO_URING_PARAMS.sq_tail) / 4, u32(IO_URING_PARAMS.sq_tail) / 4 + 1);
    this.#sqMask = words[u32(IO_URING_PARAMS.sq_ring_mask) / 4];
    const sqEntries = u32(IO_URING_PARAMS.sq_entries);
    this.#sqArray = words.subarray(u32(IO_URING_PARAMS.sq_array) / 4, u32(IO_URING_PARAMS.sq_array) / 4 + sqEntries);
    this.#cqHead = words.subarray(u32(IO_URING_PARAMS.cq_head) / 4, u32(IO_URING_PARAMS.cq_head) / 4 + 1);
    this.#cqTail = words.subarray(u32(IO_URING_PARAMS.cq_tail) / 4, u32(IO_URING_PARAMS.cq_tail) / 4 + 1);
    this.#cqMask = words[u32(IO_URING_PARAMS.cq_ring_mask) / 4];
    const cqEntries = u32(IO_URING_PARAMS.cq_entries);
    this.#cqes = new DataView(view(ring + u32(IO_URING_PARAMS.cq_cqes), cqEntries * IO_URING_CQE.size));
    this.#sqes = new DataView(view(sqes, sqEntries * IO_URING_SQE.size));
    this.#onEnd = onEnd;
    this.#reapArg[IO_URING_GETEVENTS_ARG.ts / 8] = addressOf(this.#slice);
    this.#reapArgs = [
      BigInt(libc().numbers.io_uring_enter),
      BigInt(fd),
      0n,
      1n,
      BigInt(IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG),
      addressOf(this.#reapArg),
      BigInt(IO_URING_GETEVENTS_ARG.size),
    ];
  }

  /**
   * A ring whose futex waits work here, or undefined where they cannot be
   * had: io_uring missing or turned off (ENOSYS, EPERM from
   * kernel.io_uring_disabled or a seccomp filter), a kernel before 6.7
   * (the futex op refused), or a ring that cannot be mapped.
   */
  static open(onEnd: RingEnd): FutexRing | undefined {
    const params = new Uint8Array(IO_URING_PARAMS.size);
    const p = new DataView(params.buffer);
    p.setUint32(IO_URING_PARAMS.cq_entries, CQ_ENTRIES, true);
    p.setUint32(IO_URING_PARAMS.flags, IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP, true);
    const fd = sys("io_uring_setup", SQ_ENTRIES, params);
    if (fd < 0) return undefined;
    const features = p.getUint32(IO_URING_PARAMS.features, true);
    const needed = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
    const u32 = (offset: number) => p.getUint32(offset, true);
    const ringLength = Math.max(
      u32(IO_URING_PARAMS.sq_array) + u32(IO_URING_PARAMS.sq_entries) * 4,
      u32(IO_URING_PARAMS.cq_cqes) + u32(IO_URING_PARAMS.cq_entries) * IO_URING_CQE.size,
    );
    const sqesLength = u32(IO_URING_PARAMS.sq_entries) * IO_URING_SQE.size;
    const mapped: [number, number][] = [];
    const fail = () => {
      for (const [address, length] of mapped) sys("munmap", address, length);
      sys("close", fd);
      return undefined;
    };
    if ((features & needed) !== needed) return fail();
    const prot = PROT_READ | PROT_WRITE;
    const ring = sys64("mmap", 0, ringLength, prot, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (ring < 0) return fail();
    mapped.push([ring, ringLength]);
    const sqes = sys64("mmap", 0, sqesLength, prot, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sqes < 0) return fail();
    mapped.push([sqes, sqesLength]);
    const made = new FutexRing(fd, p, mapped, onEnd);
    return made.#probe() ? made : fail();
  }

  /**
   * Whether this kernel runs IORING_OP_FUTEX_WAIT: a wait for a value the
   * word does not hold ends at once, with -EAGAIN where the op exists and
   * -EINVAL or -EOPNOTSUPP where it does not.
   */
  #probe(): boolean {
    const word = new Uint32Array([1]);
    this.#write(2n, IORING_OP_FUTEX_WAIT, 0, FUTEX2_SIZE_U32 | FUTEX2_PRIVATE, addressOf(word), 0n, 0);
    const r = sys("io_uring_enter", this.#fd, 1, 1, IORING_ENTER_GETEVENTS, 0, 0);
    this.#unsubmitted = 0;
    if (r !== 1) return false;
    let result = 0;
    this.#drain((_, res) => result = res);
    return result === -EAGAIN;
  }

  /**
   * Unmaps and closes the ring, once nothing is due from it (a mapping
   * unmapped under the reaper would be read after it is gone); safe to call twice.
   */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#outstanding > 0 || this.#reaping) throw new Deno.errors.Busy("The io_uring still has futex waits");
    for (const [address, length] of this.#mapped) sys("munmap", address, length);
    sys("close", this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Submissions not yet completed (the reaper runs while there are some). */
  get outstanding(): number {
    return this.#outstanding;
  }

  /**
   * Queues a wait of tag `tag` (a positive integer) on the shared 32-bit
   * word at `address` while it holds `value`, until `deadline` (a
   * performance.now() time, or Infinity). Its end comes to `onEnd`.
   */
  wait(tag: number, address: bigint, value: number, deadline: number): void {
    const timed = deadline !== Infinity;
    this.#room(timed ? 2 : 1);
    const data = BigInt(tag) << 1n;
    this.#write(
      data,
      IORING_OP_FUTEX_WAIT,
      timed ? IOSQE_IO_LINK : 0,
      FUTEX2_SIZE_U32,
      address,
      BigInt(value >>> 0),
      0,
    );
    if (timed) {
      // the kernel copies the timespec as it takes the submission, which submit() does at once
      setMonotonic(this.#timeout, deadline);
      this.#write(data | AUX, IORING_OP_LINK_TIMEOUT, 0, 0, this.#timeoutAddress, 0n, 1, IORING_TIMEOUT_ABS);
    }
    this.#submit();
  }

  /** Asks the kernel to end the wait of tag `tag`; it ends with -ECANCELED, or 0 when a wake got there first. */
  cancel(tag: number): void {
    this.#room(1);
    const data = BigInt(tag) << 1n;
    this.#write(data | AUX, IORING_OP_ASYNC_CANCEL, 0, 0, data, 0n, 0);
    this.#submit();
  }

  /** Makes sure `count` submissions fit in the ring, which only a kernel that takes none can prevent. */
  #room(count: number): void {
    // its memory is unmapped once closed: never read it then
    if (this.#fd < 0) throw new Deno.errors.BadResource("The io_uring is closed");
    if (this.#sqTail[0] - Atomics.load(this.#sqHead, 0) + count > this.#sqMask + 1) {
      this.#submit();
      if (this.#sqTail[0] - Atomics.load(this.#sqHead, 0) + count > this.#sqMask + 1) {
        throw new Error("The io_uring takes no more futex waits");
      }
    }
  }

  #write(
    data: bigint,
    opcode: number,
    flags: number,
    fd: number,
    addr: bigint,
    addr2: bigint,
    len: number,
    opFlags = 0,
  ): void {
    const tail = this.#sqTail[0];
    const index = tail & this.#sqMask;
    const at = index * IO_URING_SQE.size;
    const sqe = this.#sqes;
    for (let i = 0; i < IO_URING_SQE.size; i += 8) sqe.setBigUint64(at + i, 0n);
    sqe.setUint8(at + IO_URING_SQE.opcode, opcode);
    sqe.setUint8(at + IO_URING_SQE.flags, flags);
    sqe.setInt32(at + IO_URING_SQE.fd, fd, true);
    sqe.setBigUint64(at + IO_URING_SQE.addr, addr, true);
    sqe.setBigUint64(at + IO_URING_SQE.addr2, addr2, true);
    sqe.setUint32(at + IO_URING_SQE.len, len, true);
    sqe.setUint32(at + IO_URING_SQE.op_flags, opFlags, true);
    sqe.setBigUint64(at + IO_URING_SQE.user_data, data, true);
    if (opcode === IORING_OP_FUTEX_WAIT) {
      sqe.setBigUint64(at + IO_URING_SQE.addr3, BigInt(FUTEX_BITSET_MATCH_ANY), true);
    }
    this.#sqArray[index] = index;
    Atomics.store(this.#sqTail, 0, (tail + 1) >>> 0);
    this.#unsubmitted++;
  }

  /** Hands what is written to the kernel; what it does not take yet goes with the next call. */
  #submit(): void {
    if (this.#unsubmitted === 0) return;
    const r = sys("io_uring_enter", this.#fd, this.#unsubmitted, 0, 0, 0, 0);
    if (r < 0 && this.#outstanding === 0) {
      // the kernel took none and no completion will come to try again: take them back and say so
      Atomics.store(this.#sqTail, 0, (this.#sqTail[0] - this.#unsubmitted) >>> 0);
      this.#unsubmitted = 0;
      throw syscallError("Cannot submit a futex wait to io_uring", -r);
    }
    if (r > 0) {
      this.#unsubmitted -= r;
      this.#outstanding += r;
    }
    if (this.#outstanding > 0 && !this.#reaping) this.#reap();
  }

  /** Passes each completion in the ring to `onEnd`; returns how many there were. */
  #drain(onEnd: RingEnd): number {
    let head = this.#cqHead[0];
    const tail = Atomics.load(this.#cqTail, 0);
    let count = 0;
    while (head !== tail) {
      const at = (head & this.#cqMask) * IO_URING_CQE.size;
      const data = this.#cqes.getBigUint64(at + IO_URING_CQE.user_data, true);
      const result = this.#cqes.getInt32(at + IO_URING_CQE.res, true);
      head = (head + 1) >>> 0;
      Atomics.store(this.#cqHead, 0, head);
      count++;
      if ((data & AUX) !== 0n) continue;
      try {
        onEnd(Number(data >> 1n), result);
      } catch (error) {
        // a failing callback is the caller's error, reported as any callback's is; the ring goes on
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    return count;
  }

  /** Collects completions while some are due. */
  async #reap(): Promise<void> {
    this.#reaping = true;
    const [n, fd, submit, min, flags, arg, size] = this.#reapArgs;
    const { syscallAsync } = libc().symbols;
    try {
      for (;;) {
        this.#outstanding -= this.#drain(this.#onEnd);
        this.#submit();
        if (this.#outstanding <= 0) break;
        await syscallAsync(n, fd, submit, min, flags, arg, size);
      }
    } finally {
      this.#reaping = false;
    }
  }
}
