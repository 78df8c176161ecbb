/**
 * Files, one shared page and futexes, through raw syscalls. The rest of the
 * project sees paths, numbers and this module's classes, never a pointer.
 * @module
 */
import { addressOf, type Bytes, cString, libc, sys, sysAsync } from "./libc.ts";

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
const O_RDONLY = 0o0;
const O_RDWR = 0o2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_NOATIME = 0o1000000;
export const O_PATH = 0o10000000;
// O_NOFOLLOW and O_DIRECTORY differ between x86_64 and aarch64
export const O_NOFOLLOW = () => Deno.build.arch === "aarch64" ? 0o100000 : 0o400000;
export const O_DIRECTORY = () => Deno.build.arch === "aarch64" ? 0o40000 : 0o200000;
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_NO_SYMLINKS = 0x04;
const RESOLVE_BENEATH = 0x08;
const PROT_READ = 0x1;
const MAP_SHARED = 0x1;
export const FUTEX_WAIT = 0;
export const FUTEX_WAKE = 1;
const FUTEX_CMP_REQUEUE = 4;
export const FUTEX_PRIVATE_FLAG = 128;
/** futex_waitv's flag for a word only this process uses. */
export const FUTEX2_PRIVATE = 128;
const INT_MAX = 0x7fffffff;
export const PATH_MAX = 4096;

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EAGAIN = 11;
const EEXIST = 17;
const EXDEV = 18;
export const ENOTDIR = 20;
export const ENOSYS = 38;
export const ELOOP = 40;
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
  /** How many names (hard links) the file has. */
  nlink: number;
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
    // st_nlink follows st_ino on x86_64 (64 bits) and st_mode in the generic layout of aarch64 (32 bits)
    nlink: Deno.build.arch === "aarch64" ? view.getUint32(20, true) : Number(view.getBigUint64(16, true)),
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

// Buffers for the synchronous calls below, allocated once (a fresh 4 KiB
// buffer costs more than the readlink itself): they run one at a time
const link = new Uint8Array(PATH_MAX);
let linkAddress: bigint | undefined;
/** struct open_how { u64 flags; u64 mode; u64 resolve; } */
const how = new BigUint64Array(3);
let howAddress: bigint | undefined;

/** Where a symlink points, or undefined when it cannot be read or does not fit in PATH_MAX. */
function readlink(path: string): string | undefined {
  const name = cString(path);
  const n = sys("readlinkat", AT_FDCWD, addressOf(name), linkAddress ??= addressOf(link), link.length);
  if (n < 0 || n >= link.length) return undefined;
  return pathText(link.subarray(0, n));
}

/** A path's bytes as text (UTF-8); ASCII without a TextDecoder, whose first use costs a CLI call ~0.5 ms. */
function pathText(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return new TextDecoder().decode(bytes);
  return String.fromCharCode(...bytes);
}

/** openat2 (Linux 5.6): the descriptor, or -errno; -ENOSYS or -EPERM where the kernel or a seccomp filter lacks it. */
function openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number {
  how[0] = BigInt(flags);
  how[1] = BigInt(mode);
  how[2] = BigInt(resolve);
  const name = cString(path);
  return sys("openat2", dirfd, addressOf(name), howAddress ??= addressOf(how), how.byteLength);
}

/** `path` with `.`, `..` and repeated slashes resolved as written, nothing looked up: `/a/./b/../c` is `/a/c`. */
export function normalise(path: string): string {
  const parts: string[] = [];
  const absolute = path.startsWith("/");
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && parts.length > 0 && parts.at(-1) !== "..") parts.pop();
    else if (part !== ".." || !absolute) parts.push(part);
  }
  return (absolute ? "/" : "") + parts.join("/") || ".";
}

function isProc(path: string): boolean {
  return path === "/proc" || path.startsWith("/proc/");
}

/** Whether `name` in the folder `dirfd` is the file `id` (a symlink is not followed). */
function holdsAt(dirfd: number, name: string, id: { dev: bigint; ino: bigint }): boolean {
  const there = statAt(dirfd, name);
  return there?.dev === id.dev && there.ino === id.ino;
}

/** Removes `name` from the folder `dirfd`; true when it was there. */
function unlinkAt(dirfd: number, name: string, what: string): boolean {
  const r = sys("unlinkat", dirfd, addressOf(cString(name)), 0);
  if (r === -ENOENT) return false;
  if (r < 0) throw syscallError(`Cannot remove ${what}`, -r);
  return true;
}

// the rest of a path beneath the root is a real path (from /proc/self/fd): a symlink in it was swapped in since
const RESOLVE_WITHIN = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;

/**
 * A folder that files are opened, created and removed in, confined to an
 * allowed folder. Opened by path and asked where it really is (`realPath`),
 * then held `within()` the outermost allowed folder that contains it: that
 * root is held open, and the folder's path beneath it is resolved afresh for
 * every open, create, stat and removal with openat2's RESOLVE_BENEATH, so
 * the kernel refuses (EXDEV, or not found) once the folder has been moved
 * out of the root. Without openat2 the folder itself is held, and checked to
 * be still at its real path before a removal and after a create.
 */
export class Folder {
  #fd: number;
  /** The folder's path beneath the root held in #fd; undefined when #fd is the folder itself (no openat2). */
  #rest: string | undefined;

  private constructor(fd: number, readonly realPath: string, rest?: string) {
    this.#fd = fd;
    this.#rest = rest;
  }

  /**
   * Opens `path` (symlinks in it are followed, unless `noFollow` for its
   * last component; magic links such as /proc/PID/root are refused) and asks
   * the kernel where it landed. Without openat2 a path through /proc is
   * refused, as written (after `..` is resolved) and as the kernel names the
   * folder, and the folder must be the one at its real path.
   */
  static open(path: string, options: { noFollow?: boolean } = {}): Folder {
    const flags = O_PATH | O_DIRECTORY() | O_CLOEXEC | (options.noFollow ? O_NOFOLLOW() : 0);
    let fd = openat2(AT_FDCWD, path, flags, 0, RESOLVE_NO_MAGICLINKS);
    // before Linux 5.6, or where a seccomp filter forbids it: a plain open, checked below
    const plain = fd === -ENOSYS || fd === -EPERM;
    if (plain && isProc(normalise(path))) throw throughProc(path);
    if (plain) fd = sys("openat", AT_FDCWD, addressOf(cString(path)), flags);
    if (fd === -ELOOP) {
      throw new Deno.errors.NotCapable(
        `The folder ${path} is reached through a magic link (such as /proc/PID/root): use a plain path`,
      );
    }
    if (fd < 0) throw syscallError(`Cannot open the folder ${path}`, -fd);
    const real = readlink(`/proc/self/fd/${fd}`);
    const folder = new Folder(fd, real ?? "", plain ? undefined : ".");
    if (real === undefined || !real.startsWith("/") || real.endsWith(" (deleted)")) {
      folder.close();
      throw new Deno.errors.NotCapable(
        `Cannot tell where the folder ${path} really is (/proc must be mounted, and its real path fit in ${PATH_MAX} bytes)`,
      );
    }
    if (plain && !folder.#isAt(real)) {
      folder.close();
      throw throughProc(path);
    }
    return folder;
  }

  /**
   * This folder, held from now on beneath `root` (an ancestor of its real
   * path, or that path itself), which is opened through no symlink: so it is
   * the folder at that path at that moment. Closes this object unless it is
   * returned: without openat2 it is, unchanged.
   */
  within(root: string): Folder {
    if (this.#rest === undefined) return this;
    const flags = O_PATH | O_DIRECTORY() | O_CLOEXEC;
    const fd = openat2(AT_FDCWD, root, flags, 0, RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS);
    if (fd === -ELOOP || fd === -ENOENT || fd === -ENOTDIR) {
      throw new Deno.errors.Interrupted(`${root} changed while ${this.realPath} was being opened; try again`);
    }
    if (fd < 0) throw syscallError(`Cannot open the folder ${root}`, -fd);
    const rest = this.realPath === root ? "." : this.realPath.slice(root === "/" ? 1 : root.length + 1);
    this.close();
    return new Folder(fd, this.realPath, rest);
  }

  /**
   * Whether `real`, looked up afresh, is this very folder: without openat2 a
   * magic link may lead elsewhere (another mount namespace) while
   * /proc/self/fd names a path that looks harmless, and a folder may have
   * been moved since it was opened.
   */
  #isAt(real: string): boolean {
    if (isProc(real)) return false;
    try {
      const { dev, ino } = fstat(this.#fd, real);
      const there = lstat(real);
      return there?.type === "directory" && there.dev === dev && there.ino === ino;
    } catch {
      return false;
    }
  }

  /**
   * Runs `use` with a descriptor of the folder as it is now: resolved afresh
   * beneath the root, or the held folder if it is still at its real path.
   * Gives `missing` when the folder is no longer there (moved out of the
   * root, or away).
   */
  #now<T>(use: (dirfd: number) => T, missing: T): T {
    if (this.#rest === undefined) return this.#isAt(this.realPath) ? use(this.#fd) : missing;
    const dirfd = openat2(this.#fd, this.#rest, O_PATH | O_DIRECTORY() | O_CLOEXEC, 0, RESOLVE_WITHIN);
    if (dirfd === -ENOENT || dirfd === -ENOTDIR || dirfd === -EXDEV || dirfd === -ELOOP) return missing;
    if (dirfd < 0) throw syscallError(`Cannot open the folder ${this.realPath}`, -dirfd);
    try {
      return use(dirfd);
    } finally {
      sys("close", dirfd);
    }
  }

  /** Facts about `name` in this folder (a symlink is not followed); undefined when it is not there. */
  stat(name: string): FileInfo | undefined {
    return this.#now((dirfd) => statAt(dirfd, name), undefined);
  }

  /** Removes `name` from this folder; true when it was there. */
  unlink(name: string): boolean {
    return this.#now((dirfd) => unlinkAt(dirfd, name, `${this.realPath}/${name}`), false);
  }

  /**
   * Removes `name` from this folder if it still holds the file `id` (its
   * dev and ino): the folder is resolved afresh, and the name looked at
   * just before it is unlinked. True when it was removed.
   */
  removeIf(name: string, id: { dev: bigint; ino: bigint }): boolean {
    return this.#now((dirfd) => holdsAt(dirfd, name, id) && unlinkAt(dirfd, name, `${this.realPath}/${name}`), false);
  }

  /**
   * Opens `name` in this folder: never through a symlink, never blocking on a
   * FIFO, never taking a terminal, and without touching its access time where
   * the kernel allows that (the owner, or root). `create` adds O_CREAT|O_EXCL;
   * then EEXIST gives undefined, so that the caller may look again. A file
   * created while its folder was out of the root is removed again, and
   * refused.
   */
  open(name: string, path: string, options: { write: boolean; create?: boolean }): RegionFile | undefined {
    let flags = (options.write ? O_RDWR : O_RDONLY) | O_NOFOLLOW() | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (options.create) flags |= O_CREAT | O_EXCL;
    const mode = options.create ? 0o600 : 0;
    const rest = this.#rest;
    const cname = cString(name);
    const at = (flags: number) =>
      rest === undefined
        ? sys("openat", this.#fd, addressOf(cname), flags, mode)
        : openat2(this.#fd, `${rest}/${name}`, flags, mode, RESOLVE_WITHIN);
    let fd = at(flags | O_NOATIME);
    if (fd === -EPERM) fd = at(flags);
    if (fd === -EEXIST && options.create) return undefined;
    if (fd === -EXDEV) {
      throw new Deno.errors.NotCapable(
        `${path} is no longer within the allowed folders: its folder ${this.realPath} was moved`,
      );
    }
    if (fd < 0) throw syscallError(`Cannot open ${path}`, -fd);
    const file = new RegionFile(fd, path);
    if (options.create) this.#confirmCreated(file, name);
    return file;
  }

  /**
   * The kernel's scoped lookup checks where the folder is on the way to it,
   * not when the new file is linked into it: a folder moved out in between
   * gets the file. So the name is looked up again, beneath the root
   * (checked to the end, as for any open); where it does not hold the new
   * file, that file is removed from wherever it is and the create refused.
   */
  #confirmCreated(file: RegionFile, name: string): void {
    const made = file.stat();
    if (this.#holds(name, made)) return;
    let removed = false;
    try {
      removed = this.#rest === undefined
        ? holdsAt(this.#fd, name, made) && unlinkAt(this.#fd, name, file.path)
        : file.unlinkWhereItIs(made);
    } catch {
      // said below
    }
    file.close();
    throw new Deno.errors.NotCapable(
      `${file.path} was created while its folder ${this.realPath} was moved out of the allowed folders; ` +
        (removed ? "removed again" : "it could not be removed again"),
    );
  }

  /** Whether `name`, resolved afresh within the root (or in the folder still at its real path), is the file `id`. */
  #holds(name: string, id: { dev: bigint; ino: bigint }): boolean {
    if (this.#rest === undefined) return this.#isAt(this.realPath) && holdsAt(this.#fd, name, id);
    const fd = openat2(this.#fd, `${this.#rest}/${name}`, O_PATH | O_NOFOLLOW() | O_CLOEXEC, 0, RESOLVE_WITHIN);
    if (fd < 0) return false;
    try {
      const { dev, ino } = fstat(fd, name);
      return dev === id.dev && ino === id.ino;
    } finally {
      sys("close", fd);
    }
  }

  /** Closes the descriptor; safe to call twice. */
  close(): void {
    if (this.#fd >= 0) sys("close", this.#fd);
    this.#fd = -1;
  }
}

function throughProc(path: string): Deno.errors.NotCapable {
  return new Deno.errors.NotCapable(
    `${path} leads through /proc or another mount namespace, which this kernel cannot check (no openat2): use a plain path`,
  );
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

  /**
   * Removes this file from the folder the kernel says it is in now, if its
   * name there is still this file (`id`), reaching that folder through no
   * symlink: for a file created where it must not stay. True when removed.
   */
  unlinkWhereItIs(id: { dev: bigint; ino: bigint }): boolean {
    const where = readlink(`/proc/self/fd/${this.#fd}`);
    if (!where?.startsWith("/") || where.endsWith(" (deleted)")) return false;
    const slash = where.lastIndexOf("/");
    const flags = O_PATH | O_DIRECTORY() | O_CLOEXEC;
    const dirfd = openat2(
      AT_FDCWD,
      where.slice(0, slash) || "/",
      flags,
      0,
      RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
    );
    if (dirfd < 0) return false;
    try {
      const name = where.slice(slash + 1);
      return holdsAt(dirfd, name, id) && unlinkAt(dirfd, name, where);
    } finally {
      sys("close", dirfd);
    }
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
