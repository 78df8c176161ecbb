/**
 * The libc symbol table and its loader, and the raw doors through it:
 * `sys()` and `sysAsync()` (every call goes through `syscall()`, except what
 * differs between C libraries or needs no number table), `sys64()` for
 * mmap, `addressOf()` and `cString()`. Loaded at import where `--allow-ffi` is
 * granted (see the end of this file), else on first use, so importing never
 * needs it.
 * @module
 */
import { NR, type SyscallName } from "./constants.ts";

const SYSCALL_PARAMS = ["i64", "i64", "i64", "i64", "i64", "i64", "i64"] as const;

const symbols = {
  // long syscall(long number, ...); variadic, declared with fixed 64-bit slots. Its result is read as 32 bits, which
  // comes back without an allocation: with a 64-bit one (a BigInt) the runtime now and then made a failing call of
  // its own on this thread between the syscall and the read of errno, so that EEXIST or EAGAIN read as ENOENT
  syscall: { parameters: SYSCALL_PARAMS, result: "i32" },
  // the same with its whole 64-bit result, for the one call that returns an address (mmap)
  syscall64: { name: "syscall", parameters: SYSCALL_PARAMS, result: "i64" },
  // the same, on Deno's blocking thread pool: for bounded waits and sleeps
  syscallAsync: {
    name: "syscall",
    parameters: SYSCALL_PARAMS,
    result: "i64",
    nonblocking: true,
  },
  // int *__errno_location(void); glibc and musl both export it
  __errno_location: { parameters: [], result: "pointer" },
  // int getpagesize(void);
  getpagesize: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const LIBC_NAMES = [
  "libc.so.6",
  `libc.musl-${Deno.build.arch}.so.1`,
  "libc.so",
];
/** Names another libc to load where none of LIBC_NAMES loads; needs no permission to be ignored. */
const LIBC_ENV = "LTP_CHECKPOINT_LIBC";

interface Libc {
  symbols: Deno.DynamicLibrary<typeof symbols>["symbols"];
  /** A second handle's `syscall`, on releases whose fast calls may crash at exit (see `sys()`). */
  twin?: Deno.DynamicLibrary<typeof symbols>["symbols"]["syscall"];
  /** This machine's syscall numbers. */
  numbers: Readonly<Record<SyscallName, number>>;
  pageSize: number;
  /** The main thread's errno, read in place: no call and no allocation between a syscall and its errno. */
  errno: Int32Array;
}

let loaded: Libc | undefined;

/**
 * The library named in LTP_CHECKPOINT_LIBC, for systems where none of the
 * usual names loads: only a regular file (a FIFO would hang dlopen), and
 * only when --allow-env and --allow-read already allow it.
 */
function libcOverride(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: LIBC_ENV }).state !== "granted") return undefined;
    const name = Deno.env.get(LIBC_ENV);
    if (!name) return undefined;
    if (Deno.permissions.querySync({ name: "read", path: name }).state !== "granted") {
      throw new Deno.errors.NotCapable(`Loading ${LIBC_ENV}=${name} needs --allow-read=${name}`);
    }
    if (!Deno.statSync(name).isFile) throw new Deno.errors.InvalidData(`${LIBC_ENV}=${name} is not a regular file`);
    return name;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** The loaded libc. Throws a clear error on an unsupported platform or without `--allow-ffi`. */
export function libc(): Libc {
  if (loaded) return loaded;
  const { os, arch } = Deno.build;
  if (os !== "linux" || (arch !== "x86_64" && arch !== "aarch64")) {
    throw new Deno.errors.NotSupported(
      `Checkpoints need Linux on x86_64 or aarch64 (futexes); this is ${os} on ${arch}`,
    );
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new Deno.errors.NotCapable(
      "Checkpoints need libc through FFI: run again with --allow-ffi (it cannot be scoped to a path)",
    );
  }
  let firstError: unknown;
  const attempt = (name: string) => {
    try {
      const lib = Deno.dlopen(name, symbols);
      const errno = lib.symbols.__errno_location();
      if (!errno) throw new Error(`${name} gives no errno`);
      return {
        symbols: lib.symbols,
        twin: FAST_CALLS_CRASH_AT_EXIT ? Deno.dlopen(name, symbols).symbols.syscall : undefined,
        numbers: NR,
        pageSize: lib.symbols.getpagesize(),
        errno: new Int32Array(Deno.UnsafePointerView.getArrayBuffer(errno, 4)),
      };
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) throw error;
      firstError ??= error;
    }
  };
  for (const name of LIBC_NAMES) {
    loaded = attempt(name);
    if (loaded) return loaded;
  }
  const override = libcOverride();
  loaded = override === undefined ? undefined : attempt(override);
  if (loaded) return loaded;
  throw new Error(
    `Cannot load libc (tried ${[...LIBC_NAMES, ...override ? [override] : []].join(", ")}); name it in ${LIBC_ENV}`,
    { cause: firstError },
  );
}

/**
 * A syscall argument: a number, or a buffer passed as its address. A buffer
 * given as such is kept reachable until the call returns; an address taken
 * with `addressOf()` keeps nothing alive, so a buffer made for one call and
 * known to it only by its address (a path's `cString()`) may be collected
 * before the kernel reads it.
 */
type Arg = number | bigint | BufferSource;

/** The buffers of the synchronous call running now: reachable until it returns. */
const inCall: BufferSource[] = [];

function word(arg: Arg, held: BufferSource[]): bigint {
  if (typeof arg === "number" || typeof arg === "bigint") return BigInt(arg);
  held.push(arg);
  return addressOf(arg);
}

/** The six argument words of a call (0 for those not given), its buffers added to `held`. */
function words(args: Arg[], held: BufferSource[]): [bigint, bigint, bigint, bigint, bigint, bigint] {
  return [0, 1, 2, 3, 4, 5].map((i) => word(args[i] ?? 0, held)) as [bigint, bigint, bigint, bigint, bigint, bigint];
}

/**
 * Deno up to 2.3.1 frees each FFI symbol's fast-call signature at exit before
 * it stops V8's background compiler, which may still be compiling a caller:
 * a V8 abort or a silent SIGSEGV as the process ends. There `sys()` calls
 * through two handles in turn, and a call site that sees two functions is
 * never made a fast call (the `callback` option no longer prevents one in
 * Deno 2); later releases keep the one handle and its fast path.
 */
const FAST_CALLS_CRASH_AT_EXIT = (() => {
  const [major, minor, patch] = Deno.version.deno.split(".").map((n) => parseInt(n, 10));
  return major === 2 && (minor < 3 || (minor === 3 && patch < 2));
})();
let flip = false;

/**
 * A synchronous raw syscall whose result fits in 32 bits (every one but
 * mmap): returns the result, or `-errno` on failure. Nothing runs between
 * the call and the read of errno that could set it.
 */
export function sys(name: SyscallName, a: Arg = 0, b: Arg = 0, c: Arg = 0, d: Arg = 0, e: Arg = 0, f: Arg = 0): number {
  const lib = libc();
  const syscall = lib.twin !== undefined && (flip = !flip) ? lib.twin : lib.symbols.syscall;
  try {
    const r = syscall(
      BigInt(lib.numbers[name]),
      word(a, inCall),
      word(b, inCall),
      word(c, inCall),
      word(d, inCall),
      word(e, inCall),
      word(f, inCall),
    );
    return r === -1 ? -lib.errno[0] : r;
  } finally {
    inCall.length = 0;
  }
}

/**
 * `sys()` for a call that returns an address (mmap). Its failure's errno is
 * read after the BigInt result is made, which may have changed it: a
 * failure is certain, its reason less so.
 */
export function sys64(name: SyscallName, ...args: Arg[]): number {
  const lib = libc();
  try {
    const r = lib.symbols.syscall64(BigInt(lib.numbers[name]), ...words(args, inCall));
    return r === -1n ? -lib.errno[0] : Number(r);
  } finally {
    inCall.length = 0;
  }
}

/**
 * The same syscall on a worker thread. errno is not readable from here, so it
 * returns the raw result: -1 for any failure. Only for calls with a time bound.
 */
export async function sysAsync(name: SyscallName, ...args: Arg[]): Promise<number> {
  const lib = libc();
  const held: BufferSource[] = [];
  // the closure keeps the buffers reachable until the call on the worker thread has returned
  const r = await lib.symbols.syscallAsync(BigInt(lib.numbers[name]), ...words(args, held)).finally(() =>
    held.length = 0
  );
  return Number(r);
}

/**
 * The address of a buffer, for a pointer kept beyond one call (a ring's, a
 * vector's entries); keep the buffer alive while it is used. A buffer for
 * one call is passed to `sys()` itself.
 */
export function addressOf(buffer: BufferSource): bigint {
  libc(); // taking a pointer without --allow-ffi would prompt: say so first
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/**
 * A byte array backed by a plain ArrayBuffer, named so that every supported
 * TypeScript accepts it (5.6 in Deno 2.0 has no generic typed arrays).
 */
export type Bytes = ReturnType<typeof Uint8Array.from>;

/**
 * A NUL-terminated copy of a path for the C side, in UTF-8. An ASCII path,
 * as nearly every one is, is copied as it is: a process's first TextEncoder
 * adds to the start-up of every CLI call.
 */
export function cString(s: string): Bytes {
  const out = new Uint8Array(s.length + 1);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return utf8CString(s);
    out[i] = c;
  }
  return out;
}

function utf8CString(s: string): Bytes {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

// Loaded at import where FFI is allowed, never closed: a library first
// opened inside a test counts as leaked to the resource sanitizer of Deno
// 2.0 to 2.7, and closing it while a thread-pool call runs would crash.
if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") {
  try {
    libc();
  } catch {
    // reported, with its cause, on first use
  }
}
