/**
 * Files, one shared page and futexes, through raw syscalls. The rest of the
 * project sees paths, numbers and this module's classes, never a pointer.
 * @module
 */
import { addressOf, cString, libc, sys, sysAsync } from "./libc.ts";

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const O_RDWR = 0o2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
// O_NOFOLLOW differs: 0o400000 on x86_64, 0o100000 on aarch64
const O_NOFOLLOW = () => Deno.build.arch === "aarch64" ? 0o100000 : 0o400000;
const PROT_READ_WRITE = 0x3;
const MAP_SHARED = 0x1;
const FUTEX_WAIT = 0;
const FUTEX_WAKE = 1;
const FUTEX_CMP_REQUEUE = 4;
const INT_MAX = 0x7fffffff;

const ENOENT = 2;
export const EINTR = 4;
export const EAGAIN = 11;
export const ETIMEDOUT = 110;

const ERRNO_TEXT: Record<number, [string, new (message: string) => Error]> = {
  1: ["operation not permitted", Deno.errors.PermissionDenied],
  2: ["no such file or directory", Deno.errors.NotFound],
  13: ["permission denied", Deno.errors.PermissionDenied],
  14: ["bad address (was the file truncated?)", Deno.errors.InvalidData],
  17: ["file exists", Deno.errors.AlreadyExists],
  20: ["a component of the path is not a directory", Deno.errors.NotFound],
  21: ["is a directory", Deno.errors.IsADirectory],
  28: ["no space left on device", Error],
  30: ["read-only file system", Deno.errors.PermissionDenied],
  36: ["file name too long", Deno.errors.InvalidData],
  40: ["is a symbolic link", Deno.errors.InvalidData],
};

/** An error for a failed syscall, naming what was done and to which path. */
export function syscallError(what: string, err: number): Error {
  const [text, Kind] = ERRNO_TEXT[err] ?? [`errno ${err}`, Error];
  return new Kind(`${what}: ${text}`);
}

export type FileType =
  | "file"
  | "directory"
  | "symlink"
  | "fifo"
  | "socket"
  | "character device"
  | "block device"
  | "unknown";

export interface FileInfo {
  dev: bigint;
  ino: bigint;
  type: FileType;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  uid: number;
  size: number;
}

const TYPES: Record<number, FileType> = {
  0o100000: "file",
  0o040000: "directory",
  0o120000: "symlink",
  0o010000: "fifo",
  0o140000: "socket",
  0o020000: "character device",
  0o060000: "block device",
};

const statBuffer = new Uint8Array(256);

function readStat(): FileInfo {
  const at = libc().stat;
  const view = new DataView(statBuffer.buffer);
  const mode = view.getUint32(at.mode, true);
  return {
    dev: view.getBigUint64(at.dev, true),
    ino: view.getBigUint64(at.ino, true),
    type: TYPES[mode & 0o170000] ?? "unknown",
    mode: mode & 0o7777,
    uid: view.getUint32(at.uid, true),
    size: Number(view.getBigInt64(at.size, true)),
  };
}

/** Facts about the path itself (a symlink is not followed); undefined when nothing is there. */
export function lstat(path: string): FileInfo | undefined {
  const r = sys("newfstatat", AT_FDCWD, addressOf(cString(path)), addressOf(statBuffer), AT_SYMLINK_NOFOLLOW);
  if (r === -ENOENT) return undefined;
  if (r < 0) throw syscallError(`Cannot stat ${path}`, -r);
  return readStat();
}

export function geteuid(): number {
  return sys("geteuid");
}

/** Removes a file; true when it was there. */
export function unlink(path: string): boolean {
  const r = sys("unlinkat", AT_FDCWD, addressOf(cString(path)), 0);
  if (r === -ENOENT) return false;
  if (r < 0) throw syscallError(`Cannot remove ${path}`, -r);
  return true;
}

export function pageSize(): number {
  return libc().pageSize;
}

/** Gives up the CPU once. */
export function yieldCpu(): void {
  sys("sched_yield");
}

/** Writes `ms` into a struct timespec (two longs: seconds, nanoseconds). */
function setTimespec(spec: BigInt64Array, ms: number): void {
  const ns = BigInt(Math.max(0, Math.round(ms * 1e6)));
  spec[0] = ns / 1_000_000_000n;
  spec[1] = ns % 1_000_000_000n;
}

function timespec(ms: number): BigInt64Array<ArrayBuffer> {
  const spec = new BigInt64Array(2);
  setTimespec(spec, ms);
  return spec;
}

// One timespec for the synchronous calls, allocated once: they run one at a
// time on this thread, and a poll loop makes thousands of them
const syncSpec = new BigInt64Array(2);
let syncSpecAddress: bigint | undefined;

function syncTimespec(ms: number): bigint {
  setTimespec(syncSpec, ms);
  return syncSpecAddress ??= addressOf(syncSpec);
}

export function sleep(ms: number): void {
  sys("nanosleep", syncTimespec(ms), 0);
}

export async function sleepAsync(ms: number): Promise<void> {
  const ts = timespec(ms);
  await sysAsync("nanosleep", addressOf(ts), 0);
  ts.fill(0n); // keeps ts alive until the call is done
}

/** An open regular file with, once mapped, one shared page of it. */
export class RegionFile {
  #fd: number;
  #address = 0n;
  #length = 0;
  readonly path: string;
  readonly #word = new Uint32Array(1);

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /**
   * Opens read-write without following a symlink in the last component and
   * without blocking (a FIFO) or taking a terminal. `create` adds O_CREAT|O_EXCL.
   */
  static open(path: string, create?: { mode: number }): RegionFile {
    let flags = O_RDWR | O_NOFOLLOW() | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (create) flags |= O_CREAT | O_EXCL;
    const fd = sys("openat", AT_FDCWD, addressOf(cString(path)), flags, create?.mode ?? 0);
    if (fd < 0) throw syscallError(`Cannot open ${path}`, -fd);
    return new RegionFile(fd, path);
  }

  stat(): FileInfo {
    const r = sys("fstat", this.#fd, addressOf(statBuffer));
    if (r < 0) throw syscallError(`Cannot stat ${this.path}`, -r);
    return readStat();
  }

  read(length: number, offset: number): Uint8Array {
    const out = new Uint8Array(length);
    const r = sys("pread64", this.#fd, addressOf(out), length, offset);
    if (r < 0) throw syscallError(`Cannot read ${this.path}`, -r);
    return out.subarray(0, r);
  }

  write(bytes: Uint8Array<ArrayBuffer>, offset: number): void {
    const r = sys("pwrite64", this.#fd, addressOf(bytes), bytes.length, offset);
    if (r !== bytes.length) throw syscallError(`Cannot write ${this.path}`, r < 0 ? -r : 28);
  }

  truncate(length: number): void {
    const r = sys("ftruncate", this.#fd, length);
    if (r < 0) throw syscallError(`Cannot resize ${this.path}`, -r);
  }

  /** Maps the first `length` bytes shared, read-write. */
  map(length: number): void {
    // user-space addresses fit in 48 bits, so a number holds them exactly
    const r = sys("mmap", 0, length, PROT_READ_WRITE, MAP_SHARED, this.#fd, 0);
    if (r < 0) throw syscallError(`Cannot map ${this.path}`, -r);
    this.#address = BigInt(r);
    this.#length = length;
  }

  /** The futex word's current value, read from the file so that a short file never raises SIGBUS. */
  #value(offset: number): number {
    const r = sys("pread64", this.#fd, addressOf(this.#word), 4, offset);
    if (r !== 4) throw syscallError(`Cannot read ${this.path} at byte ${offset}`, r < 0 ? -r : 14);
    return this.#word[0];
  }

  #at(offset: number): bigint {
    if (!this.#address) throw new Deno.errors.BadResource(`${this.path} is closed`);
    return this.#address + BigInt(offset);
  }

  /** FUTEX_WAIT for at most `ms`: 0 when woken, else -errno (ETIMEDOUT, EINTR, ...). */
  futexWait(offset: number, ms: number): number {
    const r = sys("futex", this.#at(offset), FUTEX_WAIT, this.#value(offset), syncTimespec(ms), 0, 0);
    return r < 0 ? r : 0;
  }

  /**
   * FUTEX_WAIT on a worker thread for at most `ms` (keep it short: it cannot
   * be cancelled). True when woken; false for any other end.
   */
  async futexWaitAsync(offset: number, ms: number): Promise<boolean> {
    const ts = timespec(ms);
    const r = await sysAsync("futex", this.#at(offset), FUTEX_WAIT, this.#value(offset), addressOf(ts), 0, 0);
    ts.fill(0n); // keeps ts alive until the call is done
    return r === 0;
  }

  /** FUTEX_WAKE of every waiter; returns how many were woken. */
  futexWake(offset: number): number {
    const r = sys("futex", this.#at(offset), FUTEX_WAKE, INT_MAX, 0, 0, 0);
    if (r < 0) throw syscallError(`Cannot wake on ${this.path}`, -r);
    return r;
  }

  /**
   * How many wait on the word now, waking none: FUTEX_CMP_REQUEUE onto the
   * same word, waking 0 and requeueing all, returns that count.
   */
  futexWaiters(offset: number): number {
    const address = this.#at(offset);
    for (;;) {
      const r = sys("futex", address, FUTEX_CMP_REQUEUE, 0, INT_MAX, address, this.#value(offset));
      if (r !== -EAGAIN) {
        if (r < 0) throw syscallError(`Cannot count waiters on ${this.path}`, -r);
        return r;
      }
    }
  }

  /** Unmaps and closes; safe to call twice. */
  close(): void {
    if (this.#address) {
      sys("munmap", this.#address, this.#length);
      this.#address = 0n;
    }
    if (this.#fd >= 0) {
      sys("close", this.#fd);
      this.#fd = -1;
    }
  }
}
