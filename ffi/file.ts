/**
 * Files, one shared page and futexes, through raw syscalls. The rest of the
 * project sees paths, numbers and this module's classes, never a pointer.
 * @module
 */
import { addressOf, type Bytes, cString, libc, sys, sysAsync } from "./libc.ts";

export const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const O_RDONLY = 0o0;
const O_RDWR = 0o2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
const O_NOATIME = 0o1000000;
const O_PATH = 0o10000000;
// O_NOFOLLOW and O_DIRECTORY differ between x86_64 and aarch64
export const O_NOFOLLOW = () => Deno.build.arch === "aarch64" ? 0o100000 : 0o400000;
export const O_DIRECTORY = () => Deno.build.arch === "aarch64" ? 0o40000 : 0o200000;
const RESOLVE_NO_MAGICLINKS = 0x02;
const PROT_READ = 0x1;
const MAP_SHARED = 0x1;
export const FUTEX_WAIT = 0;
export const FUTEX_WAKE = 1;
const FUTEX_CMP_REQUEUE = 4;
export const FUTEX_PRIVATE_FLAG = 128;
/** futex_waitv's flag for a word only this process uses. */
export const FUTEX2_PRIVATE = 128;
const INT_MAX = 0x7fffffff;
const PATH_MAX = 4096;

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EAGAIN = 11;
const EEXIST = 17;
export const ENOSYS = 38;
const ELOOP = 40;
const EOPNOTSUPP = 95;
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
  40: ["a symbolic link where none is allowed", Deno.errors.InvalidData],
  95: ["not supported by this file system", Deno.errors.NotSupported],
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
  return statAt(AT_FDCWD, path);
}

/** Facts about what a descriptor holds. */
function fstat(fd: number, what: string): FileInfo {
  const r = sys("fstat", fd, addressOf(statBuffer));
  if (r < 0) throw syscallError(`Cannot stat ${what}`, -r);
  return readStat();
}

function statAt(dirfd: number, name: string): FileInfo | undefined {
  const r = sys("newfstatat", dirfd, addressOf(cString(name)), addressOf(statBuffer), AT_SYMLINK_NOFOLLOW);
  if (r === -ENOENT) return undefined;
  if (r < 0) throw syscallError(`Cannot stat ${name}`, -r);
  return readStat();
}

export function geteuid(): number {
  return sys("geteuid");
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

function timespec(ms: number): ReturnType<typeof BigInt64Array.from> {
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

/** Where a symlink points, or undefined when it cannot be read or does not fit in PATH_MAX. */
function readlink(path: string): string | undefined {
  const out = new Uint8Array(PATH_MAX);
  const n = sys("readlinkat", AT_FDCWD, addressOf(cString(path)), addressOf(out), out.length);
  if (n < 0 || n >= out.length) return undefined;
  return new TextDecoder().decode(out.subarray(0, n));
}

/**
 * A folder held open by a file descriptor: everything below is looked up
 * relative to it, so renaming or swapping its path for a symlink afterwards
 * changes nothing. `realPath` is where the kernel says it is.
 */
export class Folder {
  #fd: number;

  private constructor(fd: number, readonly realPath: string) {
    this.#fd = fd;
  }

  /**
   * Opens `path` (symlinks in it are followed, magic links such as
   * /proc/PID/root are refused) and asks the kernel where it landed.
   */
  static open(path: string): Folder {
    const flags = O_PATH | O_DIRECTORY() | O_CLOEXEC;
    const how = new BigUint64Array([BigInt(flags), 0n, BigInt(RESOLVE_NO_MAGICLINKS)]);
    const name = addressOf(cString(path));
    let fd = sys("openat2", AT_FDCWD, name, addressOf(how), how.byteLength);
    // before Linux 5.6, or where a seccomp filter forbids it: a plain open, checked below
    const plain = fd === -ENOSYS || fd === -EPERM;
    if (plain) fd = sys("openat", AT_FDCWD, name, flags);
    if (fd === -ELOOP) {
      throw new Deno.errors.NotCapable(
        `The folder ${path} is reached through a magic link (such as /proc/PID/root): use a plain path`,
      );
    }
    if (fd < 0) throw syscallError(`Cannot open the folder ${path}`, -fd);
    const real = readlink(`/proc/self/fd/${fd}`);
    const folder = new Folder(fd, real ?? "");
    if (real === undefined || !real.startsWith("/") || real.endsWith(" (deleted)")) {
      folder.close();
      throw new Deno.errors.NotCapable(
        `Cannot tell where the folder ${path} really is (/proc must be mounted, and its real path fit in ${PATH_MAX} bytes)`,
      );
    }
    if (plain && !folder.#isAt(real)) {
      folder.close();
      throw new Deno.errors.NotCapable(
        `${path} leads through /proc or another mount namespace, which this kernel cannot check`,
      );
    }
    return folder;
  }

  /**
   * Whether `real`, looked up afresh, is this very folder: without openat2 a
   * magic link may lead elsewhere (another mount namespace) while
   * /proc/self/fd names a path that looks harmless.
   */
  #isAt(real: string): boolean {
    if (real === "/proc" || real.startsWith("/proc/")) return false;
    try {
      const { dev, ino } = fstat(this.#fd, real);
      const there = lstat(real);
      return there?.type === "directory" && there.dev === dev && there.ino === ino;
    } catch {
      return false;
    }
  }

  /** Facts about `name` in this folder (a symlink is not followed); undefined when it is not there. */
  stat(name: string): FileInfo | undefined {
    return statAt(this.#fd, name);
  }

  /** Removes `name` from this folder; true when it was there. */
  unlink(name: string): boolean {
    const r = sys("unlinkat", this.#fd, addressOf(cString(name)), 0);
    if (r === -ENOENT) return false;
    if (r < 0) throw syscallError(`Cannot remove ${this.realPath}/${name}`, -r);
    return true;
  }

  /**
   * Opens `name` in this folder: never through a symlink, never blocking on a
   * FIFO, never taking a terminal, and without touching its access time where
   * the kernel allows that (the owner, or root). `create` adds O_CREAT|O_EXCL;
   * then EEXIST gives undefined, so that the caller may look again.
   */
  open(name: string, path: string, options: { write: boolean; create?: boolean }): RegionFile | undefined {
    let flags = (options.write ? O_RDWR : O_RDONLY) | O_NOFOLLOW() | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (options.create) flags |= O_CREAT | O_EXCL;
    const cname = addressOf(cString(name));
    let fd = sys("openat", this.#fd, cname, flags | O_NOATIME, 0o600);
    if (fd === -EPERM) fd = sys("openat", this.#fd, cname, flags, 0o600);
    if (fd === -EEXIST && options.create) return undefined;
    if (fd < 0) throw syscallError(`Cannot open ${path}`, -fd);
    return new RegionFile(fd, path);
  }

  /** Closes the descriptor; safe to call twice. */
  close(): void {
    if (this.#fd >= 0) sys("close", this.#fd);
    this.#fd = -1;
  }
}

/**
 * An open regular file with, once mapped, its first page mapped shared and
 * read-only: futexes need no write access, and a page never written keeps
 * the file's timestamps as they were. Futex calls pass the value each word
 * had when the page was read; the kernel compares it and answers EAGAIN if
 * it changed, so the mapping itself is never dereferenced here and a
 * truncated file gives an error (EFAULT), never SIGBUS.
 */
export class RegionFile {
  #fd: number;
  #address = 0n;
  #length = 0;
  #values: Uint32Array = new Uint32Array(0);
  readonly path: string;

  constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  stat(): FileInfo {
    return fstat(this.#fd, this.path);
  }

  read(length: number, offset: number): Uint8Array {
    const out = new Uint8Array(length);
    const r = sys("pread64", this.#fd, addressOf(out), length, offset);
    if (r < 0) throw syscallError(`Cannot read ${this.path}`, -r);
    return out.subarray(0, r);
  }

  write(bytes: Bytes, offset: number): void {
    const r = sys("pwrite64", this.#fd, addressOf(bytes), bytes.length, offset);
    if (r !== bytes.length) throw syscallError(`Cannot write ${this.path}`, r < 0 ? -r : 28);
  }

  /**
   * Makes the file at least `length` bytes long, never shorter: fallocate
   * leaves bytes that are there, and those someone writes meanwhile, as
   * they are. Where the file system lacks it, only a file we just created
   * (`ours`) is resized with ftruncate.
   */
  grow(length: number, ours: boolean): void {
    let r = sys("fallocate", this.#fd, 0, 0, length);
    if (r === -EOPNOTSUPP && ours) r = sys("ftruncate", this.#fd, length);
    if (r < 0) throw syscallError(`Cannot grow ${this.path} to ${length} bytes`, -r);
  }

  /** Maps the first `length` bytes shared and read-only; reads and returns them (the futex words' values). */
  map(length: number): Uint8Array {
    // user-space addresses fit in 48 bits, so a number holds them exactly
    const r = sys("mmap", 0, length, PROT_READ, MAP_SHARED, this.#fd, 0);
    if (r < 0) throw syscallError(`Cannot map ${this.path}`, -r);
    this.#address = BigInt(r);
    this.#length = length;
    const page = this.read(length, 0);
    if (page.length !== length) throw syscallError(`Cannot read ${this.path}`, 14);
    this.#values = new Uint32Array(page.buffer, page.byteOffset, length / 4);
    return page;
  }

  /** The 32-bit word at `offset` as it was read, in native byte order (x86_64 and aarch64: little-endian). */
  word(offset: number): number {
    return this.#values[offset >> 2];
  }

  /** Reads the word at `offset` again, after the kernel said it changed; true when it had. */
  refresh(offset: number): boolean {
    const bytes = this.read(4, offset);
    if (bytes.length !== 4) throw syscallError(`Cannot read ${this.path} at byte ${offset}`, 14);
    const value = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
    const changed = value !== this.#values[offset >> 2];
    this.#values[offset >> 2] = value;
    return changed;
  }

  /** The address of the word at `offset` in this process. */
  address(offset: number): bigint {
    if (!this.#address) throw new Deno.errors.BadResource(`${this.path} is closed`);
    return this.#address + BigInt(offset);
  }

  /** FUTEX_WAIT for at most `ms`: 0 when woken, else -errno (ETIMEDOUT, EINTR, ...). */
  futexWait(offset: number, ms: number): number {
    const address = this.address(offset);
    for (;;) {
      const r = sys("futex", address, FUTEX_WAIT, this.word(offset), syncTimespec(ms), 0, 0);
      if (r !== -EAGAIN || !this.refresh(offset)) return r < 0 ? r : 0;
    }
  }

  /** FUTEX_WAKE of every waiter; returns how many were woken. */
  futexWake(offset: number): number {
    const r = sys("futex", this.address(offset), FUTEX_WAKE, INT_MAX, 0, 0, 0);
    if (r < 0) throw syscallError(`Cannot wake on ${this.path}`, -r);
    return r;
  }

  /**
   * How many wait on the word now, waking none: FUTEX_CMP_REQUEUE onto the
   * same word, waking 0 and requeueing all, returns that count.
   */
  futexWaiters(offset: number): number {
    const address = this.address(offset);
    for (;;) {
      const r = sys("futex", address, FUTEX_CMP_REQUEUE, 0, INT_MAX, address, this.word(offset));
      if (r >= 0) return r;
      if (r !== -EAGAIN) throw syscallError(`Cannot count waiters on ${this.path}`, -r);
      this.refresh(offset);
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
