/**
 * The typed system calls the rest of ffi/ is built on: stat (one decoder),
 * directory listing (one getdents64 reader), readlink (and the real path of
 * a descriptor), open (openat, openat2, and the one O_NOATIME retry), read,
 * write, unlink, futex, sleep. Each returns plain values; a call that may
 * fail in an expected way returns `-errno` (as the kernel does) or
 * undefined, and says so.
 * @module
 */
import {
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  DIRENT64_NAME,
  DIRENT64_RECLEN,
  DIRENT64_TYPE,
  ENOENT,
  EPERM,
  EXDEV,
  FUTEX_CMP_REQUEUE,
  FUTEX_WAIT,
  FUTEX_WAKE,
  O_CLOEXEC,
  O_NOATIME,
  O_NOFOLLOW,
  O_PATH,
  PATH_MAX,
  PR_SET_NAME,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  STAT,
  STAT_NLINK_64,
  STAT_SIZE,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import { addressOf, type Bytes, cString, libc, sys, sysAsync } from "./libc.ts";

/** A file as the kernel's stat names it: its device and inode. */
export interface FileId {
  /** Its `st_dev`. */
  dev: bigint;
  /** Its `st_ino`. */
  ino: bigint;
}

/** What kind of file a stat describes. */
export type FileType =
  | "file"
  | "directory"
  | "symlink"
  | "fifo"
  | "socket"
  | "character device"
  | "block device"
  | "unknown";

/** The facts of a file that stat gives and the project uses. */
export interface FileInfo {
  dev: bigint;
  ino: bigint;
  type: FileType;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  uid: number;
  size: number;
  /** How many names (hard links) the file has. */
  nlink: number;
  /** When the file last changed (its `st_ctime`, whole seconds since the epoch). */
  ctime: number;
}

const TYPES: Record<number, FileType> = {
  [S_IFREG]: "file",
  [S_IFDIR]: "directory",
  [S_IFLNK]: "symlink",
  [S_IFIFO]: "fifo",
  [S_IFSOCK]: "socket",
  [S_IFCHR]: "character device",
  [S_IFBLK]: "block device",
};

// One buffer for every stat: the calls run one at a time on this thread
const statBuffer = new Uint8Array(STAT_SIZE);
const statView = new DataView(statBuffer.buffer);

/** The stat the last call wrote into statBuffer. */
function decodeStat(): FileInfo {
  const mode = statView.getUint32(STAT.st_mode, true);
  return {
    dev: statView.getBigUint64(STAT.st_dev, true),
    ino: statView.getBigUint64(STAT.st_ino, true),
    type: TYPES[mode & S_IFMT] ?? "unknown",
    mode: mode & 0o7777,
    uid: statView.getUint32(STAT.st_uid, true),
    size: Number(statView.getBigInt64(STAT.st_size, true)),
    nlink: STAT_NLINK_64 ? Number(statView.getBigUint64(STAT.st_nlink, true)) : statView.getUint32(STAT.st_nlink, true),
    ctime: Number(statView.getBigInt64(STAT.st_ctime, true)),
  };
}

/**
 * Facts about what a descriptor holds.
 * @throws {Error} When the kernel refuses (`what` names the file in the message).
 */
export function fstat(fd: number, what: string): FileInfo {
  const r = sys("fstat", fd, statBuffer);
  if (r < 0) throw syscallError(`Cannot stat ${what}`, -r);
  return decodeStat();
}

/**
 * Facts about `name` in the folder `dirfd` (a symlink is not followed);
 * undefined when nothing is there.
 * @throws {Error} When the kernel refuses for another reason than absence.
 */
export function statAt(dirfd: number, name: string): FileInfo | undefined {
  const r = sys("newfstatat", dirfd, cString(name), statBuffer, AT_SYMLINK_NOFOLLOW);
  if (r === -ENOENT) return undefined;
  if (r < 0) throw syscallError(`Cannot stat ${name}`, -r);
  return decodeStat();
}

/** Facts about the path itself (a symlink is not followed); undefined when nothing is there. */
export function lstat(path: string): FileInfo | undefined {
  return statAt(AT_FDCWD, path);
}

/** Whether `name` in the folder `dirfd` is the file `id` (a symlink is not followed). */
export function holdsAt(dirfd: number, name: string, id: FileId): boolean {
  const there = statAt(dirfd, name);
  return there?.dev === id.dev && there.ino === id.ino;
}

/**
 * Reads the entries of a directory with getdents64 into one reused buffer,
 * and walks them in place, without a string per entry:
 * `for (;;) { n = reader.read(fd); ...; while (reader.next()) use(reader) }`.
 */
export class DirectoryReader {
  readonly #bytes: Bytes;
  #address = -1;
  #end = 0;
  #at = 0;
  #next = 0;

  /** @param size The buffer's size: how many bytes of entries one call returns at most. */
  constructor(size: number) {
    this.#bytes = new Uint8Array(size);
  }

  /** Reads the next entries of the open directory `fd`: their length in bytes, 0 at the end, or -errno. */
  read(fd: number): number {
    // user-space addresses fit in 48 bits, so a number holds them exactly
    if (this.#address < 0) this.#address = Number(addressOf(this.#bytes));
    const n = sys("getdents64", fd, this.#address, this.#bytes.length);
    this.#end = Math.max(0, n);
    this.#at = this.#next = 0;
    return n;
  }

  /** Moves to the next of the entries read; false when there is none left. */
  next(): boolean {
    if (this.#next >= this.#end) return false;
    const b = this.#bytes;
    this.#at = this.#next;
    this.#next += b[this.#at + DIRENT64_RECLEN] | (b[this.#at + DIRENT64_RECLEN + 1] << 8);
    return true;
  }

  /** The entry's d_type (DT_REG, DT_UNKNOWN, ...): told without looking at the file. */
  get type(): number {
    return this.#bytes[this.#at + DIRENT64_TYPE];
  }

  /** The address of the entry's NUL-terminated name, for a syscall; valid until the next read. */
  get nameAddress(): number {
    return this.#address + this.#at + DIRENT64_NAME;
  }

  /** The entry's name, in place (no copy): valid until the next read. */
  name(): Uint8Array {
    const start = this.#at + DIRENT64_NAME;
    return this.#bytes.subarray(start, this.#bytes.indexOf(0, start));
  }

  /** The number the entry's name spells in decimal, or -1 for `.`, `self` and any other name. */
  number(): number {
    const b = this.#bytes;
    const start = this.#at + DIRENT64_NAME;
    let value = 0;
    let i = start;
    for (; b[i] !== 0; i++) {
      const d = b[i] - 0x30;
      if (d < 0 || d > 9) return -1;
      value = value * 10 + d;
    }
    return i === start ? -1 : value;
  }
}

// Buffers for the synchronous calls below, allocated once (a fresh 4 KiB
// buffer costs more than the readlink itself): they run one at a time
const link = new Uint8Array(PATH_MAX);
/** struct open_how { u64 flags; u64 mode; u64 resolve; } */
const how = new BigUint64Array(3);

/** Where a symlink points, or undefined when it cannot be read or does not fit in PATH_MAX. */
export function readlink(path: string): string | undefined {
  const n = sys("readlinkat", AT_FDCWD, cString(path), link, link.length);
  if (n <= 0 || n >= link.length) return undefined;
  return pathText(link.subarray(0, n));
}

/**
 * Where the file a descriptor of ours holds is, as the kernel names it
 * (/proc/self/fd/N); undefined when it cannot tell (no /proc). A file
 * removed since ends in ` (deleted)`.
 */
export function realPathOf(fd: number): string | undefined {
  return readlink(`/proc/self/fd/${fd}`);
}

/** A path's bytes as text (UTF-8); ASCII without a TextDecoder, whose first use slows a CLI call. */
function pathText(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return new TextDecoder().decode(bytes);
  return String.fromCharCode(...bytes);
}

/** openat: the descriptor, or -errno. */
export function openat(dirfd: number, path: string | Bytes, flags: number, mode = 0): number {
  return sys("openat", dirfd, typeof path === "string" ? cString(path) : path, flags, mode);
}

/**
 * Opens `name` in the folder `dirfd` with `flags`, but only the very file
 * of that name on the folder's own mount (a symlink refused): the name is
 * pinned first with O_PATH, which asks no file system anything, so that a
 * file system mounted on it, such as a FUSE one that never answers, is
 * refused with -EXDEV before it is asked; the file pinned is then opened
 * through its /proc/self/fd link. The descriptor, or -errno.
 */
export function openOnOwnMount(dirfd: number, name: string, flags: number): number {
  const pinned = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pinned < 0) return pinned;
  try {
    const mount = mountIdOf(pinned);
    if (mount < 0 || mount !== mountIdOf(dirfd)) return -EXDEV;
    return openat(AT_FDCWD, `/proc/self/fd/${pinned}`, flags | O_CLOEXEC);
  } finally {
    close(pinned);
  }
}

/**
 * openat2 (Linux 5.6): the descriptor, or -errno; -ENOSYS or -EPERM where
 * the kernel or a seccomp filter lacks it.
 */
export function openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number {
  how[0] = BigInt(flags);
  how[1] = BigInt(mode);
  how[2] = BigInt(resolve);
  return sys("openat2", dirfd, cString(path), how, how.byteLength);
}

/**
 * Runs `open` with `flags | O_NOATIME`, so that reading leaves the file's
 * access time alone, and where the kernel refuses that (EPERM: only the
 * owner or root may) again with `flags`. Returns what `open` returns.
 */
export function openNoAtime(open: (flags: number) => number, flags: number): number {
  const fd = open(flags | O_NOATIME);
  return fd === -EPERM ? open(flags) : fd;
}

/** Closes a descriptor. */
export function close(fd: number): void {
  sys("close", fd);
}

/** pread64 into all of `buffer`: how many bytes were read, or -errno. */
export function pread(fd: number, buffer: Bytes, offset: number): number {
  return sys("pread64", fd, buffer, buffer.length, offset);
}

/** pwrite64 of all of `bytes`: how many bytes were written, or -errno. */
export function pwrite(fd: number, bytes: Bytes, offset: number): number {
  return sys("pwrite64", fd, bytes, bytes.length, offset);
}

/**
 * Removes `name` from the folder `dirfd`; true when it was there.
 * @throws {Error} When the kernel refuses (`what` names the file in the message).
 */
export function unlinkat(dirfd: number, name: string, what: string): boolean {
  const r = sys("unlinkat", dirfd, cString(name), 0);
  if (r === -ENOENT) return false;
  if (r < 0) throw syscallError(`Cannot remove ${what}`, -r);
  return true;
}

// fdinfo's line, in bytes without a TextEncoder (see cString)
const MNT_ID = cString("\nmnt_id:").subarray(0, -1);
const fdinfo: Bytes = new Uint8Array(1024);

/** The first bytes of the file at `path`, as many as `into` holds: how many were read, or -1 when it cannot be read. */
export function readHead(path: string, into: Bytes): number {
  const fd = openat(AT_FDCWD, path, O_CLOEXEC);
  if (fd < 0) return -1;
  try {
    const n = pread(fd, into, 0);
    return n < 0 ? -1 : n;
  } finally {
    close(fd);
  }
}

/** The id of the mount a descriptor of ours is on, from /proc/self/fdinfo (asks no file system); -1 when unknown. */
export function mountIdOf(fd: number): number {
  const n = readHead(`/proc/self/fdinfo/${fd}`, fdinfo);
  for (let at = 0; at + MNT_ID.length < n; at++) {
    if (!MNT_ID.every((b, i) => fdinfo[at + i] === b)) continue;
    let i = at + MNT_ID.length;
    while (fdinfo[i] === 0x09 || fdinfo[i] === 0x20) i++;
    let id = 0;
    for (; fdinfo[i] >= 0x30 && fdinfo[i] <= 0x39; i++) id = id * 10 + fdinfo[i] - 0x30;
    return id;
  }
  return -1;
}

/** The effective user id of this process. */
export function geteuid(): number {
  return sys("geteuid") >>> 0;
}

/**
 * Names the calling thread, the main one for a process's name as `ps` and
 * /proc/PID/comm show it (the kernel keeps the first 15 bytes).
 * Returns 0, or -errno.
 */
export function setProcessName(name: string): number {
  return sys("prctl", PR_SET_NAME, cString(name));
}

/** The size of a memory page, in bytes. */
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

// One timespec for the synchronous calls, allocated once: they run one at a
// time on this thread, and a poll loop makes thousands of them
const syncSpec = new BigInt64Array(2);
let syncSpecAddress: bigint | undefined;

function syncTimespec(ms: number): bigint {
  setTimespec(syncSpec, ms);
  return syncSpecAddress ??= addressOf(syncSpec);
}

/** Sleeps for `ms`, blocking this thread. */
export function sleep(ms: number): void {
  sys("nanosleep", syncTimespec(ms), 0);
}

/** Sleeps for `ms` on Deno's thread pool. */
export async function sleepAsync(ms: number): Promise<void> {
  const ts = new BigInt64Array(2);
  setTimespec(ts, ms);
  await sysAsync("nanosleep", ts, 0);
}

/** FUTEX_WAIT on the shared word at `address` while it holds `expected`, for at most `ms`: 0 when woken, else -errno. */
export function futexWait(address: bigint, expected: number, ms: number): number {
  const r = sys("futex", address, FUTEX_WAIT, expected, syncTimespec(ms), 0, 0);
  return r < 0 ? r : 0;
}

/** FUTEX_WAKE (with `flags`, such as FUTEX_PRIVATE_FLAG) of up to `count` waiters: how many were woken, or -errno. */
export function futexWake(address: bigint, count: number, flags = 0): number {
  return sys("futex", address, FUTEX_WAKE | flags, count, 0, 0, 0);
}

/**
 * FUTEX_CMP_REQUEUE: wakes up to `wake` waiters on `address` and moves up
 * to `requeue` others to `target`, if the word still holds `expected`; how
 * many were woken and moved, or -errno (EAGAIN when the word changed).
 */
export function futexCmpRequeue(
  address: bigint,
  wake: number,
  requeue: number,
  target: bigint,
  expected: number,
): number {
  return sys("futex", address, FUTEX_CMP_REQUEUE, wake, requeue, target, expected);
}
