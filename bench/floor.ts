/**
 * Deno's floor for a cross-process handoff: a raw futex ping-pong through the
 * project's own libc binding (ffi/libc.ts: Deno.dlopen of `syscall`, every
 * argument an i64 passed as a bigint) and nothing else of the module: no clock
 * reads but the round trip's own, no conversions (every bigint is made once,
 * before the loop).
 *
 *   floor.ts ping PATH LAYOUT ROUNDS [word|protocol|protocol-async]   prints the median round trip in ns
 *   floor.ts pong PATH LAYOUT ROUNDS [word|protocol|protocol-async]
 *
 * word (the default): the turn is carried in checkpoint 0's word itself, mapped
 *   PROT_READ|PROT_WRITE (the module never writes a word; the floor does).
 *   ping: word = 1, FUTEX_WAKE, FUTEX_WAIT while word == 1; pong: FUTEX_WAIT
 *   while word == 0, word = 0, FUTEX_WAKE. tests/peer.c's floor-ping and
 *   floor-pong do the same in C.
 * protocol: LTP's checkpoint protocol, done raw: nobody writes a word, so a
 *   wake must find its waiter in the kernel. ping: wake 0, wait 1; pong: wait
 *   0, wake 1; a wake repeats FUTEX_WAKE(INT_MAX) with a sched_yield between
 *   tries until it woke one (LTP sleeps 1 ms instead), a wait is FUTEX_WAIT.
 *   What any implementation of the protocol pays in Deno, before its own code.
 * protocol-async: the same, each wait a `nonblocking` FUTEX_WAIT on Deno's
 *   thread pool (awaited): what any async wait that leaves the main thread
 *   pays, before its own code.
 *
 * Needs --allow-ffi. Exit 1 when the partner does not answer within 10 s.
 */
import { libc as loadLibc } from "../ffi/libc.ts";

const [role, path, layout, roundsText, mode = "word"] = Deno.args;
if (
  (role !== "ping" && role !== "pong") || !path || (layout !== "ltp" && layout !== "seed") ||
  (mode !== "word" && mode !== "protocol" && mode !== "protocol-async")
) {
  console.error("usage: floor.ts ping|pong PATH ltp|seed ROUNDS [word|protocol|protocol-async]");
  Deno.exit(2);
}
const rounds = Number(roundsText);

const { symbols: libc, numbers } = loadLibc();
const NR = {
  openat: BigInt(numbers.openat),
  close: BigInt(numbers.close),
  mmap: BigInt(numbers.mmap),
  futex: BigInt(numbers.futex),
  sched_yield: BigInt(numbers.sched_yield),
};
const AT_FDCWD = -100n, O_RDWR = 2n, PROT_RW = 3n, MAP_SHARED = 1n;
const FUTEX_WAIT = 0n, FUTEX_WAKE = 1n, INT_MAX = 0x7fffffffn;
const PAGE = 4096;
const addressOf = (buffer: BufferSource) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));

const name = new TextEncoder().encode(`${path}\0`);
const fd = libc.syscall64(NR.openat, AT_FDCWD, addressOf(name), O_RDWR, 0n, 0n, 0n);
if (fd < 0n) throw new Error(`cannot open ${path}`);
const base = libc.syscall64(NR.mmap, 0n, BigInt(PAGE), PROT_RW, MAP_SHARED, fd, 0n);
if (base < 0n) throw new Error(`cannot map ${path}`);
libc.syscall64(NR.close, fd, 0n, 0n, 0n, 0n, 0n);

const offset = layout === "ltp" ? 76 : 4;
const words = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(base)!, PAGE), offset, 2);
const address = [base + BigInt(offset), base + BigInt(offset + 4)];
// a bound on each wait, so that a partner that died cannot hang the benchmark
const timeout = new BigInt64Array([10n, 0n]);
const timeoutAddress = addressOf(timeout);
const giveUp = () => {
  console.error(`floor.ts ${role}: the partner did not answer within 10 s`);
  Deno.exit(1);
};

/** The turn in the word: FUTEX_WAIT while word 0 holds `value`. */
const waitWhile = (value: 0 | 1, asBigint: bigint) => {
  while (Atomics.load(words, 0) === value) {
    // -1 with the word unchanged: timed out (a changed word is EAGAIN, and the loop ends)
    const r = libc.syscall64(NR.futex, address[0], FUTEX_WAIT, asBigint, timeoutAddress, 0n, 0n);
    if (r < 0n && Atomics.load(words, 0) === value) giveUp();
  }
};
const setAndWake = (value: 0 | 1) => {
  Atomics.store(words, 0, value);
  libc.syscall64(NR.futex, address[0], FUTEX_WAKE, 1n, 0n, 0n, 0n);
};

/** LTP's protocol: the words stay 0. */
const wake = (id: 0 | 1) => {
  for (let tries = 0; libc.syscall64(NR.futex, address[id], FUTEX_WAKE, INT_MAX, 0n, 0n, 0n) !== 1n; tries++) {
    if (tries > 10_000_000) giveUp();
    libc.syscall64(NR.sched_yield, 0n, 0n, 0n, 0n, 0n, 0n);
  }
};
const wait = (id: 0 | 1) => {
  if (libc.syscall64(NR.futex, address[id], FUTEX_WAIT, 0n, timeoutAddress, 0n, 0n) !== 0n) giveUp();
};
const waitAsync = async (id: 0 | 1) => {
  if (await libc.syscallAsync(NR.futex, address[id], FUTEX_WAIT, 0n, timeoutAddress, 0n, 0n) !== 0n) giveUp();
};

const times = new Float64Array(rounds);
for (let i = 0; i < rounds; i++) {
  const start = performance.now();
  if (mode === "word") {
    if (role === "ping") (setAndWake(1), waitWhile(1, 1n));
    else (waitWhile(0, 0n), setAndWake(0));
  } else if (mode === "protocol") {
    if (role === "ping") (wake(0), wait(1));
    else (wait(0), wake(1));
  } else {
    if (role === "ping") (wake(0), await waitAsync(1));
    else (await waitAsync(0), wake(1));
  }
  times[i] = performance.now() - start;
}
if (role === "ping") console.log(Math.round(times.sort()[rounds >> 1] * 1e6));
