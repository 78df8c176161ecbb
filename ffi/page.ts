/**
 * A file shared between processes through its first page, and the futex
 * words in that page. The rest of the project sees offsets and numbers,
 * never a pointer.
 * @module
 */
import {
  AT_FDCWD,
  EAGAIN,
  EFAULT,
  ENOSPC,
  EOPNOTSUPP,
  ETIMEDOUT,
  INT_MAX,
  MAP_SHARED,
  O_CLOEXEC,
  O_DIRECTORY,
  O_PATH,
  PROT_READ,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import { type Bytes, sys, sys64 } from "./libc.ts";
import {
  close,
  type FileId,
  type FileInfo,
  fstat,
  futexCmpRequeue,
  futexWait,
  futexWake,
  holdsAt,
  openat2,
  pread,
  pwrite,
  realPathOf,
  unlinkat,
} from "./syscalls.ts";

/**
 * An open regular file with, once mapped, its first page mapped shared and
 * read-only: futexes need no write access, and a page never written keeps
 * the file's timestamps as they were. Futex calls pass the value each word
 * had when the page was read; the kernel compares it and answers EAGAIN if
 * it changed, so the mapping itself is never dereferenced here and a
 * truncated file gives an error (EFAULT), never SIGBUS.
 */
export class SharedPage {
  #fd: number;
  #address = 0n;
  #length = 0;
  #values: Uint32Array = new Uint32Array(0);
  /** The file's path, for messages. */
  readonly path: string;

  /** Takes over the open descriptor `fd` of the file at `path`. */
  constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /** Facts about the open file. */
  stat(): FileInfo {
    return fstat(this.#fd, this.path);
  }

  /**
   * Removes this file from the folder the kernel says it is in now, if its
   * name there is still this file (`id`), reaching that folder through no
   * symlink: for a file created where it must not stay. True when removed.
   */
  unlinkWhereItIs(id: FileId): boolean {
    const where = realPathOf(this.#fd);
    if (!where?.startsWith("/") || where.endsWith(" (deleted)")) return false;
    const slash = where.lastIndexOf("/");
    const flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
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
      return holdsAt(dirfd, name, id) && unlinkat(dirfd, name, where);
    } finally {
      close(dirfd);
    }
  }

  /** Up to `length` bytes from `offset` (fewer at the end of the file). */
  read(length: number, offset: number): Uint8Array {
    const out = new Uint8Array(length);
    const r = pread(this.#fd, out, offset);
    if (r < 0) throw syscallError(`Cannot read ${this.path}`, -r);
    return out.subarray(0, r);
  }

  /** Writes all of `bytes` at `offset`. */
  write(bytes: Bytes, offset: number): void {
    const r = pwrite(this.#fd, bytes, offset);
    if (r !== bytes.length) throw syscallError(`Cannot write ${this.path}`, r < 0 ? -r : ENOSPC);
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
    const r = sys64("mmap", 0, length, PROT_READ, MAP_SHARED, this.#fd, 0);
    if (r < 0) throw syscallError(`Cannot map ${this.path}`, -r);
    this.#address = BigInt(r);
    this.#length = length;
    const page = this.read(length, 0);
    if (page.length !== length) throw syscallError(`Cannot read ${this.path}`, EFAULT);
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
    if (bytes.length !== 4) throw syscallError(`Cannot read ${this.path} at byte ${offset}`, EFAULT);
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

  /**
   * FUTEX_WAIT for at most `ms`: 0 when woken, else -errno (ETIMEDOUT, EINTR,
   * ...). A retry after the word changed waits only for the time left: a
   * process changing the word cannot stretch the wait.
   */
  futexWait(offset: number, ms: number): number {
    const address = this.address(offset);
    const deadline = performance.now() + ms;
    for (let left = ms;; left = deadline - performance.now()) {
      if (left <= 0) return -ETIMEDOUT;
      const r = futexWait(address, this.word(offset), left);
      if (r !== -EAGAIN || !this.refresh(offset)) return r;
    }
  }

  /** FUTEX_WAKE of every waiter; returns how many were woken. */
  futexWake(offset: number): number {
    const r = futexWake(this.address(offset), INT_MAX);
    if (r < 0) throw syscallError(`Cannot wake on ${this.path}`, -r);
    return r;
  }

  /**
   * How many wait on the word now, waking none: FUTEX_CMP_REQUEUE onto the
   * same word, waking 0 and requeueing all, returns that count. The kernel
   * refuses (EAGAIN) when the word changed since it was read: the retries
   * end at `deadline` (as performance.now() reads it), however often another
   * process writes the word.
   *
   * @throws {Deno.errors.WouldBlock} When the word kept changing until `deadline`.
   */
  futexWaiters(offset: number, deadline: number): number {
    const address = this.address(offset);
    for (;;) {
      const r = futexCmpRequeue(address, 0, INT_MAX, address, this.word(offset));
      if (r >= 0) return r;
      if (r !== -EAGAIN) throw syscallError(`Cannot count waiters on ${this.path}`, -r);
      if (performance.now() > deadline) {
        throw new Deno.errors.WouldBlock(
          `Cannot count the waiters at byte ${offset} of ${this.path} in time: another process keeps changing the word`,
        );
      }
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
      close(this.#fd);
      this.#fd = -1;
    }
  }
}
