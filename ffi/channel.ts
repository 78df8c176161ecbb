/**
 * The kernel calls of the resident agent's channel: FIFOs and a lock in a
 * private folder, a poll over many descriptors on Deno's thread pool that
 * an eventfd ends at once, and the clean start of a process that outlives
 * its caller (inherited descriptors closed, its working folder left). Results
 * are `-errno` where a failure is an answer, not an error. Nothing here
 * knows the channel's protocol.
 * @module
 */
import {
  AT_FDCWD,
  AT_REMOVEDIR,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  ESRCH,
  F_GETFD,
  FD_CLOEXEC,
  LOCK_EX,
  LOCK_NB,
  LOCK_SH,
  LOCK_UN,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_RDONLY,
  POLLFD_SIZE,
  S_IFIFO,
  SEEK_SET,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import { type Bytes, cString, sys, sysAsync } from "./libc.ts";
import { close, DirectoryReader, openat } from "./syscalls.ts";

/** mkdirat: 0, or -errno. */
export function mkdirAt(dirfd: number, name: string, mode: number): number {
  return sys("mkdirat", dirfd, cString(name), mode);
}

/** A FIFO named `name` in the folder `dirfd`: 0, or -errno. */
export function mkfifoAt(dirfd: number, name: string, mode: number): number {
  return sys("mknodat", dirfd, cString(name), S_IFIFO | mode, 0);
}

/** The folder `name` in `dirfd` (a symlink refused), opened: the descriptor, or -errno. */
export function openFolder(dirfd: number, name: string): number {
  return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/** Takes an exclusive flock on `fd` without waiting: false when another process holds it. */
export function tryLock(fd: number): boolean {
  return sys("flock", fd, LOCK_EX | LOCK_NB) === 0;
}

/**
 * Whether another process holds an exclusive flock on the open file `fd`
 * (a folder). A shared lock is taken and dropped at once to tell.
 */
export function lockedByAnother(fd: number): boolean {
  if (sys("flock", fd, LOCK_SH | LOCK_NB) !== 0) return true;
  sys("flock", fd, LOCK_UN);
  return false;
}

/** fchmod: 0, or -errno. */
export function fchmod(fd: number, mode: number): number {
  return sys("fchmod", fd, mode);
}

/** Removes `name` from `dirfd` (a folder with `folder`): 0, or -errno. */
export function removeAt(dirfd: number, name: string, folder = false): number {
  return sys("unlinkat", dirfd, cString(name), folder ? AT_REMOVEDIR : 0);
}

/** Renames `from` to `to`, both in `dirfd`, replacing `to`: 0, or -errno. */
export function renameAt(dirfd: number, from: string, to: string): number {
  return sys("renameat2", dirfd, cString(from), dirfd, cString(to), 0);
}

/** One read(2) into `buffer`: the bytes read, 0 at EOF, or -errno (EAGAIN on an empty non-blocking FIFO). */
export function readSome(fd: number, buffer: Bytes): number {
  for (;;) {
    const r = sys("read", fd, buffer, buffer.length);
    if (r !== -EINTR) return r;
  }
}

/** Writes as much of `bytes` as `fd` takes now: how many bytes were written. */
export function writeSome(fd: number, bytes: Bytes): number {
  let done = 0;
  while (done < bytes.length) {
    const r = sys("write", fd, bytes.subarray(done), bytes.length - done);
    if (r === -EINTR) continue;
    if (r <= 0) break;
    done += r;
  }
  return done;
}

/** The names in the open folder `fd`, from its start, without `.` and `..`. */
export function namesIn(fd: number): string[] {
  sys("lseek", fd, 0, SEEK_SET);
  const reader = new DirectoryReader(32768);
  const decoder = new TextDecoder();
  const names: string[] = [];
  while (reader.read(fd) > 0) {
    while (reader.next()) {
      const name = decoder.decode(reader.name());
      if (name !== "." && name !== "..") names.push(name);
    }
  }
  return names;
}

/** The descriptors this process has open now, by number. */
function openDescriptors(): number[] {
  const dir = openat(AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return [];
  const reader = new DirectoryReader(4096);
  const fds: number[] = [];
  while (reader.read(dir) > 0) {
    while (reader.next()) {
      const fd = reader.number();
      if (fd >= 0 && fd !== dir) fds.push(fd);
    }
  }
  close(dir);
  return fds;
}

/**
 * Closes every descriptor above 2 that this process inherited: those not
 * marked close-on-exec (Deno marks every one it opens), which a caller
 * that started it may be waiting on (a command substitution's pipe).
 */
export function closeInherited(): void {
  for (const fd of openDescriptors()) {
    if (fd <= 2) continue;
    const flags = sys("fcntl", fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) === 0) close(fd);
  }
}

/** Moves this process to `/`, so that it holds no caller's working folder (which could then not be unmounted). */
export function leaveWorkingFolder(): void {
  sys("chdir", cString("/"));
}

/**
 * Whether a process with this pid exists, as kill(pid, 0) tells it (any
 * answer but ESRCH: one of another user's is there too). Not ffi/proc.ts's
 * /proc lookup, which a hidepid mount can blind.
 */
export function signalable(pid: number): boolean {
  return sys("kill", pid, 0) !== -ESRCH;
}

/**
 * A poll(2) over many descriptors on Deno's thread pool, which `wake()`
 * ends at once from the main thread (an eventfd polled with them).
 */
export class Poller {
  readonly #event: number;
  readonly #one = new BigUint64Array([1n]);
  readonly #drain = new BigUint64Array(1);
  readonly #timeout = new BigInt64Array(2);
  #fds: ReturnType<typeof Int32Array.from> = new Int32Array(2);
  #count = 0;

  constructor() {
    this.#event = sys("eventfd2", 0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#event < 0) throw syscallError("Cannot make an eventfd", -this.#event);
  }

  /** Sets what to poll: pairs of descriptor and events (POLLIN, POLLOUT). */
  watch(entries: readonly (readonly [fd: number, events: number])[]): void {
    this.#count = entries.length + 1;
    this.#fds = new Int32Array(this.#count * (POLLFD_SIZE / 4));
    const events = new Int16Array(this.#fds.buffer);
    this.#fds[0] = this.#event;
    events[2] = 1; // POLLIN
    entries.forEach(([fd, wanted], i) => {
      this.#fds[2 * (i + 1)] = fd;
      events[4 * (i + 1) + 2] = wanted;
    });
  }

  /**
   * Polls until something is ready, `wake()` is called or `ms` pass; then
   * returns the events of each entry given to watch(), in its order.
   */
  async poll(ms: number): Promise<Int16Array> {
    const events = new Int16Array(this.#fds.buffer);
    for (let i = 0; i < this.#count; i++) events[4 * i + 3] = 0;
    // the kernel writes the time left back into the timespec
    this.#timeout[0] = BigInt(Math.floor(ms / 1000));
    this.#timeout[1] = BigInt((ms % 1000) * 1e6);
    await sysAsync("ppoll", this.#fds, this.#count, this.#timeout, 0);
    if (events[3] !== 0) sys("read", this.#event, this.#drain, 8);
    const out = new Int16Array(this.#count - 1);
    for (let i = 1; i < this.#count; i++) out[i - 1] = events[4 * i + 3];
    return out;
  }

  /** Ends the poll under way (or the next one) at once. */
  wake(): void {
    sys("write", this.#event, this.#one, 8);
  }
}
