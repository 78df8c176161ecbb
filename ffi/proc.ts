/**
 * Who waits on which futex words of a file, read from /proc: a blocked
 * thread's syscall file names its futex call and arguments, and its process's
 * maps turn the word's address into an offset in the file. Deno's own file
 * APIs refuse /proc without --allow-all, so everything goes through raw
 * syscalls; the caller checks the read permission for /proc first. Nothing
 * outside /proc is opened, no symlink is followed, nothing is written.
 * @module
 */
import { addressOf, cString, libc, sys } from "./libc.ts";
import {
  AT_FDCWD,
  ENOENT,
  EPERM,
  FUTEX2_PRIVATE,
  FUTEX_PRIVATE_FLAG,
  FUTEX_WAIT,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  syscallError,
} from "./file.ts";

/** A thread blocked on a futex word of the file. */
export interface FutexWaiter {
  /** The process (its thread group id). */
  pid: number;
  /** The blocked thread. */
  tid: number;
  /** The process's name, from /proc/PID/comm. */
  comm: string;
  /** The byte offset in the file of the word it waits on. */
  offset: number;
}

/** What a scan of /proc found. */
export interface FutexWaiters {
  /** One record per waiting entry: a futex_waitv vector that holds a word twice gives two. */
  waiters: FutexWaiter[];
  /** Processes that could not be inspected (another user's, or not dumpable); kernel threads are not counted. */
  hidden: number;
}

const ESRCH = 3;
const EIO = 5;
const EACCES = 13;

const FUTEX_WAIT_BITSET = 9;
const FUTEX_CLOCK_REALTIME = 256;
// struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 __reserved; }, at most 128 per call
const WAITV_ENTRY = 24;
const WAITV_UADDR = 8;
const WAITV_FLAGS = 16;
const FUTEX_WAITV_MAX = 128;
// include/linux/sched.h; /proc/PID/stat's ninth field
const PF_KTHREAD = 0x00200000;

// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
const DIRENT_RECLEN = 16;
const DIRENT_NAME = 19;

const NEWLINE = 0x0a;
const SPACE = 0x20;

/** Why the inspection of one process ended early. */
const GONE = 1;
const DENIED = 2;

/** A thread blocked in futex() (one word) or futex_waitv() (a vector of `count` entries) at `address`. */
interface Blocked {
  tid: number;
  vector: boolean;
  address: number;
  count: number;
}

/** Reads numbers from /proc's text in place, without making strings. */
class Cursor {
  #bytes: Uint8Array = new Uint8Array(0);
  #end = 0;
  at = 0;
  /** The low 32 bits of the last hex number read: exact even where the number is too large to be. */
  low32 = 0;

  /** Reads `bytes[at, end)`. */
  reset(bytes: Uint8Array, at: number, end: number): this {
    this.#bytes = bytes;
    this.at = at;
    this.#end = end;
    return this;
  }

  /** The byte at `at`, or -1 at the end. */
  #peek(): number {
    return this.at < this.#end ? this.#bytes[this.at] : -1;
  }

  #skipSpaces(): void {
    while (this.#peek() === SPACE) this.at++;
  }

  /** Skips a separator, such as the `-` of `START-END`. */
  skip(): void {
    this.at++;
  }

  /** Skips spaces, then one word. */
  skipWord(): void {
    this.#skipSpaces();
    for (let b = this.#peek(); b !== SPACE && b !== NEWLINE && b !== -1; b = this.#peek()) this.at++;
  }

  /** Skips spaces, then reads a decimal number, maybe negative; NaN when there is none. */
  decimal(): number {
    this.#skipSpaces();
    const sign = this.#peek() === 0x2d ? -1 : 1;
    if (sign < 0) this.at++;
    const start = this.at;
    let value = 0;
    for (let d = this.#peek() - 0x30; d >= 0 && d <= 9; d = this.#peek() - 0x30) {
      value = value * 10 + d;
      this.at++;
    }
    return this.at === start ? NaN : sign * value;
  }

  /**
   * Skips spaces and a `0x`, then reads hex digits. Exact up to 2^53, which
   * holds every user-space address; `low32` is exact for any length.
   */
  hex(): number {
    this.#skipSpaces();
    if (this.#peek() === 0x30 && this.at + 1 < this.#end && this.#bytes[this.at + 1] === 0x78) this.at += 2;
    let value = 0;
    let low = 0;
    for (;; this.at++) {
      const c = this.#peek() | 0x20; // lower case; digits keep their value
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
      if (d < 0) break;
      value = value * 16 + d;
      low = ((low << 4) | d) >>> 0;
    }
    this.low32 = low;
    return value;
  }

  /** Skips spaces, then tells whether the next word is exactly `word`. */
  isWord(word: Uint8Array): boolean {
    this.#skipSpaces();
    if (this.at + word.length > this.#end) return false;
    for (let i = 0; i < word.length; i++) {
      if (this.#bytes[this.at + i] !== word[i]) return false;
    }
    this.at += word.length;
    const after = this.#peek();
    return after === SPACE || after === NEWLINE || after === -1;
  }
}

/** The file whose words we look for, as /proc/PID/maps prints its device and inode. */
interface Target {
  major: number;
  minor: number;
  inode: Uint8Array;
}

/** Buffers and paths reused by every scan: a scan makes thousands of reads. */
class Scratch {
  readonly dents = new Uint8Array(32768);
  readonly tasks = new Uint8Array(16384);
  readonly maps = new Uint8Array(65536);
  /** For the small files: syscall, comm, stat. */
  readonly text = new Uint8Array(1024);
  readonly vector = new Uint8Array(FUTEX_WAITV_MAX * WAITV_ENTRY);
  readonly vectorView = new DataView(this.vector.buffer);
  /** `TID/syscall`, rewritten for each thread. */
  readonly taskPath = new Uint8Array(64);
  readonly names = {
    proc: cString("/proc"),
    task: cString("task"),
    maps: cString("maps"),
    mem: cString("mem"),
    comm: cString("comm"),
    stat: cString("stat"),
  };
  readonly syscallSuffix = new TextEncoder().encode("/syscall\0");
  readonly cursor = new Cursor();
  readonly decoder = new TextDecoder();
  /** START, END and file OFFSET of each mapping of the target in the process at hand. */
  readonly ranges: number[] = [];
  readonly at: Record<"dents" | "tasks" | "maps" | "text" | "vector" | "taskPath", number>;
  readonly nameAt: Record<keyof Scratch["names"], number>;
  readonly fileFlags: number;
  readonly dirFlags: number;
  readonly nr: { futex: number; futexWaitv: number };

  constructor() {
    const numbers = libc().numbers;
    // user-space addresses fit in 48 bits, so numbers hold them exactly
    const at = (buffer: BufferSource) => Number(addressOf(buffer));
    this.at = {
      dents: at(this.dents),
      tasks: at(this.tasks),
      maps: at(this.maps),
      text: at(this.text),
      vector: at(this.vector),
      taskPath: at(this.taskPath),
    };
    const n = this.names;
    this.nameAt = {
      proc: at(n.proc),
      task: at(n.task),
      maps: at(n.maps),
      mem: at(n.mem),
      comm: at(n.comm),
      stat: at(n.stat),
    };
    this.fileFlags = O_CLOEXEC | O_NOFOLLOW();
    this.dirFlags = this.fileFlags | O_DIRECTORY();
    this.nr = { futex: numbers.futex, futexWaitv: numbers.futex_waitv };
  }
}

let scratch: Scratch | undefined;

/** The number a directory entry names, or -1 for `.`, `self` and anything else not numeric. */
function numericName(dents: Uint8Array, at: number): number {
  let value = 0;
  let i = at + DIRENT_NAME;
  for (; dents[i] !== 0; i++) {
    const d = dents[i] - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return i === at + DIRENT_NAME ? -1 : value;
}

function reclen(dents: Uint8Array, at: number): number {
  return dents[at + DIRENT_RECLEN] | (dents[at + DIRENT_RECLEN + 1] << 8);
}

/** What a failed call on /proc/PID means for that process; other errors are real failures and throw. */
function outcome(err: number, pid: number, file?: string): number {
  if (err === ENOENT || err === ESRCH) return GONE;
  if (err === EACCES || err === EPERM) return DENIED;
  throw syscallError(`Cannot read /proc/${pid}${file ? `/${file}` : ""}`, err);
}

/** Reads a small file under the process's folder into `text`: its length, or -errno. */
function readSmall(s: Scratch, dir: number, nameAt: number): number {
  const fd = sys("openat", dir, nameAt, s.fileFlags);
  if (fd < 0) return fd;
  const n = sys("pread64", fd, s.at.text, s.text.length, 0);
  sys("close", fd);
  return n;
}

/**
 * Parses a syscall file: `NR ARG1 ... ARG6 SP PC` inside a call (NR decimal,
 * the rest 0x-hex), `-1 SP PC` when blocked outside one, `running` otherwise.
 */
function parseSyscall(s: Scratch, length: number, tid: number): Blocked | undefined {
  const c = s.cursor.reset(s.text, 0, length);
  const nr = c.decimal();
  if (nr !== s.nr.futex && nr !== s.nr.futexWaitv) return undefined;
  const address = c.hex();
  c.hex();
  const arg2 = c.low32; // an int (op) or unsigned int (nr_futexes): the register's upper half is noise
  if (nr === s.nr.futexWaitv) return { tid, vector: true, address, count: Math.min(arg2, FUTEX_WAITV_MAX) };
  // the kernel's FUTEX_CMD_MASK: the op without its private and clock flags
  const cmd = arg2 & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
  if (arg2 & FUTEX_PRIVATE_FLAG || (cmd !== FUTEX_WAIT && cmd !== FUTEX_WAIT_BITSET)) return undefined;
  return { tid, vector: false, address, count: 1 };
}

/** The threads of the process blocked in a futex call that could concern a file; or GONE or DENIED. */
function blockedThreads(s: Scratch, dir: number, pid: number): Blocked[] | number {
  const tasks = sys("openat", dir, s.nameAt.task, s.dirFlags);
  if (tasks < 0) return outcome(-tasks, pid, "task");
  const found: Blocked[] = [];
  try {
    for (;;) {
      const n = sys("getdents64", tasks, s.at.tasks, s.tasks.length);
      if (n < 0) return outcome(-n, pid, "task");
      if (n === 0) return found;
      for (let at = 0; at < n; at += reclen(s.tasks, at)) {
        const tid = numericName(s.tasks, at);
        if (tid < 0) continue;
        // the name is NUL-terminated in place: copy it, then append /syscall
        const end = s.tasks.indexOf(0, at + DIRENT_NAME);
        s.taskPath.set(s.tasks.subarray(at + DIRENT_NAME, end));
        s.taskPath.set(s.syscallSuffix, end - at - DIRENT_NAME);
        const length = readSmall(s, tasks, s.at.taskPath);
        if (length < 0) {
          const why = outcome(-length, pid, `task/${tid}/syscall`);
          if (why === DENIED) return why;
          continue; // this thread ended; its siblings may not have
        }
        const blocked = parseSyscall(s, length, tid);
        if (blocked) found.push(blocked);
      }
    }
  } finally {
    sys("close", tasks);
  }
}

/** Fills `s.ranges` with the process's mappings of the target; 0, or GONE or DENIED. */
function readMappings(s: Scratch, dir: number, pid: number, target: Target): number {
  s.ranges.length = 0;
  const fd = sys("openat", dir, s.nameAt.maps, s.fileFlags);
  if (fd < 0) return outcome(-fd, pid, "maps");
  try {
    // Read in chunks, carrying a cut line over: maps can run to megabytes.
    // Each pread starts where the last ended, which seq_file serves without rewinding.
    let kept = 0;
    for (let offset = 0;;) {
      const n = sys("pread64", fd, s.at.maps + kept, s.maps.length - kept, offset);
      if (n < 0) return outcome(-n, pid, "maps");
      if (n === 0) return 0;
      offset += n;
      const filled = kept + n;
      const lastLine = s.maps.lastIndexOf(NEWLINE, filled - 1) + 1;
      parseMaps(s, lastLine, target);
      s.maps.copyWithin(0, lastLine, filled);
      kept = filled - lastLine;
    }
  } finally {
    sys("close", fd);
  }
}

/** Parses whole lines `START-END PERMS OFFSET MAJ:MIN INODE [PATH]` (hex but the inode) in `s.maps[0, end)`. */
function parseMaps(s: Scratch, end: number, target: Target): void {
  const c = s.cursor.reset(s.maps, 0, end);
  while (c.at < end) {
    const start = c.hex();
    c.skip();
    const stop = c.hex();
    c.skipWord();
    const offset = c.hex();
    const major = c.hex();
    c.skip();
    const minor = c.hex();
    // the inode is compared as digits: it can exceed 2^53 (overlayfs's xino)
    if (major === target.major && minor === target.minor && c.isWord(target.inode)) {
      s.ranges.push(start, stop, offset);
    }
    c.at = s.maps.indexOf(NEWLINE, c.at) + 1;
  }
}

/** The offset in the file of a word at `address` in the process, or -1 when it lies elsewhere. */
function fileOffset(ranges: number[], address: number): number {
  for (let i = 0; i < ranges.length; i += 3) {
    if (address >= ranges[i] && address < ranges[i + 1]) return address - ranges[i] + ranges[i + 2];
  }
  return -1;
}

/**
 * The shared words of a futex_waitv vector, read from the process's memory;
 * empty when the vector is gone (the thread moved on), or GONE or DENIED.
 */
function vectorWords(s: Scratch, mem: number, pid: number, blocked: Blocked): number[] | number {
  const length = blocked.count * WAITV_ENTRY;
  const n = sys("pread64", mem, s.at.vector, length, blocked.address);
  if (n === -EIO || (n >= 0 && n < length)) return [];
  if (n < 0) return outcome(-n, pid, "mem");
  const words: number[] = [];
  const v = s.vectorView;
  for (let at = 0; at < length; at += WAITV_ENTRY) {
    // a private word is keyed to its process, so no other process wakes it
    if (v.getUint32(at + WAITV_FLAGS, true) & FUTEX2_PRIVATE) continue;
    words.push(v.getUint32(at + WAITV_UADDR, true) + v.getUint32(at + WAITV_UADDR + 4, true) * 2 ** 32);
  }
  return words;
}

/** Adds the process's waiters on the target to `waiters`; 0, or GONE or DENIED. */
function inspect(s: Scratch, dir: number, pid: number, target: Target, waiters: FutexWaiter[]): number {
  const blocked = blockedThreads(s, dir, pid);
  if (typeof blocked === "number") return blocked;
  if (blocked.length === 0) return 0;
  const mapped = readMappings(s, dir, pid, target);
  if (mapped !== 0 || s.ranges.length === 0) return mapped;
  const found: { tid: number; offset: number }[] = [];
  let mem = -1;
  try {
    for (const b of blocked) {
      let words: number[] | number = [b.address];
      if (b.vector) {
        if (mem < 0) {
          mem = sys("openat", dir, s.nameAt.mem, s.fileFlags);
          if (mem < 0) return outcome(-mem, pid, "mem");
        }
        words = vectorWords(s, mem, pid, b);
        if (typeof words === "number") return words;
      }
      for (const word of words) {
        const offset = fileOffset(s.ranges, word);
        if (offset >= 0) found.push({ tid: b.tid, offset });
      }
    }
  } finally {
    if (mem >= 0) sys("close", mem);
  }
  if (found.length === 0) return 0;
  const length = readSmall(s, dir, s.nameAt.comm);
  if (length < 0) return outcome(-length, pid, "comm");
  const comm = s.decoder.decode(s.text.subarray(0, s.text[length - 1] === NEWLINE ? length - 1 : length));
  for (const f of found) waiters.push({ pid, tid: f.tid, comm, offset: f.offset });
  return 0;
}

/** Whether the process is a kernel thread, which waits on no user memory; false when unknown. */
function isKernelThread(s: Scratch, dir: number): boolean {
  const length = readSmall(s, dir, s.nameAt.stat);
  if (length <= 0) return false;
  // `PID (COMM) STATE PPID PGRP SESSION TTY TPGID FLAGS ...`: COMM may hold spaces and parentheses
  const c = s.cursor.reset(s.text, s.text.lastIndexOf(0x29, length - 1) + 1, length);
  for (let i = 0; i < 6; i++) c.skipWord();
  return (c.decimal() & PF_KTHREAD) !== 0;
}

/**
 * The threads blocked on futex words of a file, found through /proc: in
 * `futex()` with FUTEX_WAIT or FUTEX_WAIT_BITSET on a shared word, or in
 * `futex_waitv()` with shared entries, on an address that lies in a mapping
 * of the file. Private waits are left out: only their own process can wake
 * them. Costs a few syscalls per thread on the machine; maps and memory are
 * read only for processes with a thread in such a call. On x86_64 a 32-bit
 * process's futex() is missed: its syscall file gives i386 numbers.
 *
 * A process that ends during the scan is left out. One that may not be
 * inspected (another user's, or not dumpable) is counted in `hidden`: root
 * sees every process.
 *
 * @param dev The file's `st_dev`, as the kernel's stat returns it.
 * @param ino The file's `st_ino`.
 * @returns The waiters, one per waiting entry, by pid, and how many processes were hidden.
 * @throws {Deno.errors.PermissionDenied} When /proc itself cannot be read.
 * @example Who waits on a region file
 * ```ts ignore
 * import { lstat } from "./file.ts";
 * const info = lstat("/dev/shm/ltp_test_1234");
 * if (info) {
 *   const { waiters, hidden } = futexWaiters(info.dev, info.ino);
 *   for (const w of waiters) console.log(`${w.pid} (${w.comm}) waits at byte ${w.offset}`);
 *   if (hidden) console.log(`${hidden} processes could not be inspected`);
 * }
 * ```
 */
export function futexWaiters(dev: bigint, ino: bigint): FutexWaiters {
  const s = scratch ??= new Scratch();
  // glibc's major() and minor(): the new_encode_dev layout, widened to 64 bits
  const target: Target = {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)),
    inode: new TextEncoder().encode(ino.toString()),
  };
  const result: FutexWaiters = { waiters: [], hidden: 0 };
  const proc = sys("openat", AT_FDCWD, s.nameAt.proc, s.dirFlags);
  if (proc < 0) throw syscallError("Cannot open /proc", -proc);
  try {
    for (;;) {
      const n = sys("getdents64", proc, s.at.dents, s.dents.length);
      if (n < 0) throw syscallError("Cannot list /proc", -n);
      if (n === 0) return result;
      for (let at = 0; at < n; at += reclen(s.dents, at)) {
        const pid = numericName(s.dents, at);
        if (pid < 0) continue;
        // one folder fd per process: a pid reused mid-scan cannot mix two processes' files
        const dir = sys("openat", proc, s.at.dents + at + DIRENT_NAME, s.dirFlags);
        if (dir < 0) {
          // denied when /proc is mounted with hidepid=noaccess
          if (outcome(-dir, pid) === DENIED) result.hidden++;
          continue;
        }
        try {
          if (inspect(s, dir, pid, target, result.waiters) === DENIED && !isKernelThread(s, dir)) result.hidden++;
        } finally {
          sys("close", dir);
        }
      }
    }
  } finally {
    sys("close", proc);
  }
}
