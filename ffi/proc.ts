/**
 * Who waits on which futex words of some files, read from /proc: a blocked
 * thread's syscall file names its futex call and arguments, and its process's
 * maps turn the word's address into an offset in a file. Deno's own file
 * APIs refuse /proc without --allow-all, so everything goes through raw
 * syscalls; the caller checks the read permission for /proc first. Nothing
 * outside /proc is opened, no symlink is followed, nothing is written.
 *
 * What another process shows here is its own word, not the truth (a seccomp
 * user-notification makes a thread look blocked in any call with any
 * arguments), so the scan never reads where that process could stall it:
 * a futex_waitv vector is read from /proc/PID/mem only when it lies wholly in
 * the process's private anonymous memory (heap, stack, anonymous mappings),
 * which no unprivileged user can make a kernel read wait on (unprivileged
 * userfaultfd handles user-mode faults only). Never a file's page: one on
 * FUSE whose daemon does not answer blocks the reader in the kernel.
 * @module
 */
import { escapeBytes } from "../src/escape.ts";
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

/** A file to look for, as the kernel's stat names it. */
export interface FileId {
  /** Its `st_dev`. */
  dev: bigint;
  /** Its `st_ino`. */
  ino: bigint;
}

/** A thread whose syscall record says it is blocked on a futex word of one of the files. */
export interface FutexWaiter {
  /** Which file: its index in the list scanned. */
  file: number;
  /** The process (its thread group id). */
  pid: number;
  /** The blocked thread. */
  tid: number;
  /** The process's name, from /proc/PID/comm, made printable by escapeBytes. */
  comm: string;
  /** The byte offset in the file of the word it waits on. */
  offset: number;
}

/** What a scan of /proc found, and what it could not look at. */
export interface FutexWaiters {
  /** One record per waiting entry: a futex_waitv vector that holds a word twice gives two. */
  waiters: FutexWaiter[];
  /** Processes that could not be inspected (another user's, or not dumpable); kernel threads are not counted. */
  hidden: number;
  /** Processes not inspected because the scan's time ran out. */
  unscanned: number;
  /** futex_waitv records not read: the vector lay outside private anonymous memory, or could not be read there. */
  skipped: number;
  /** Processes whose files gave an unexpected error or were too large (maps beyond MAPS_MAX_BYTES). */
  failed: number;
}

/** How long a scan may take by default: a second and a half, then the rest is counted, not read. */
export const SCAN_BUDGET_MS = 1500;
/** The most of one process's maps read: 16 MiB, some 150,000 lines without paths; vm.max_map_count is ~65,000. */
const MAPS_MAX_BYTES = 16 << 20;

const ESRCH = 3;
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
const FAILED = 3;
const LATE = 4;

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

/** A file whose words we look for, as /proc/PID/maps prints its device and inode. */
interface Target {
  major: number;
  minor: number;
  inode: Uint8Array;
}

const ANONYMOUS_NAMES = ["[heap]", "[stack]", "[anon:"].map((name) => new TextEncoder().encode(name));

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
  /** START, END, file OFFSET and target index of each mapping of a target in the process at hand. */
  readonly ranges: number[] = [];
  /** START and END of its readable private anonymous mappings, adjacent ones merged. */
  readonly anonymous: number[] = [];
  /** The scan's end, as performance.now() reads it. */
  deadline = 0;
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

/** What a failed call on /proc/PID means for that process: gone, denied, or failed (EIO, EINVAL, ...). */
function outcome(err: number): number {
  if (err === ENOENT || err === ESRCH) return GONE;
  if (err === EACCES || err === EPERM) return DENIED;
  return FAILED;
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

/** The threads of the process blocked in a futex call that could concern a file; or why not. */
function blockedThreads(s: Scratch, dir: number): Blocked[] | number {
  const tasks = sys("openat", dir, s.nameAt.task, s.dirFlags);
  if (tasks < 0) return outcome(-tasks);
  const found: Blocked[] = [];
  try {
    for (;;) {
      const n = sys("getdents64", tasks, s.at.tasks, s.tasks.length);
      if (n < 0) return outcome(-n);
      if (n === 0) return found;
      if (performance.now() > s.deadline) return LATE;
      for (let at = 0; at < n; at += reclen(s.tasks, at)) {
        const tid = numericName(s.tasks, at);
        if (tid < 0) continue;
        // the name is NUL-terminated in place: copy it, then append /syscall
        const end = s.tasks.indexOf(0, at + DIRENT_NAME);
        s.taskPath.set(s.tasks.subarray(at + DIRENT_NAME, end));
        s.taskPath.set(s.syscallSuffix, end - at - DIRENT_NAME);
        const length = readSmall(s, tasks, s.at.taskPath);
        if (length < 0) {
          const why = outcome(-length);
          if (why !== GONE) return why;
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

/**
 * Fills `s.ranges` with the process's mappings of the targets and
 * `s.anonymous` with its private anonymous ones; 0, or why not. Maps are
 * sorted by address: past `last` nothing more is needed.
 */
function readMappings(s: Scratch, dir: number, targets: Target[], last: number): number {
  s.ranges.length = 0;
  s.anonymous.length = 0;
  const fd = sys("openat", dir, s.nameAt.maps, s.fileFlags);
  if (fd < 0) return outcome(-fd);
  try {
    // Read in chunks, carrying a cut line over: maps can run to megabytes.
    // Each pread starts where the last ended, which seq_file serves without rewinding.
    let kept = 0;
    for (let offset = 0;;) {
      if (offset > MAPS_MAX_BYTES) return FAILED;
      if (performance.now() > s.deadline) return LATE;
      const n = sys("pread64", fd, s.at.maps + kept, s.maps.length - kept, offset);
      if (n < 0) return outcome(-n);
      if (n === 0) return 0;
      offset += n;
      const filled = kept + n;
      const lastLine = s.maps.lastIndexOf(NEWLINE, filled - 1) + 1;
      if (lastLine === 0 && filled === s.maps.length) return FAILED; // a line longer than any the kernel writes
      if (parseMaps(s, lastLine, targets, last)) return 0;
      s.maps.copyWithin(0, lastLine, filled);
      kept = filled - lastLine;
    }
  } finally {
    sys("close", fd);
  }
}

/**
 * Parses whole lines `START-END PERMS OFFSET MAJ:MIN INODE [PATH]` (hex but
 * the inode) in `s.maps[0, end)`; true once a line starts past `last`.
 */
function parseMaps(s: Scratch, end: number, targets: Target[], last: number): boolean {
  const c = s.cursor.reset(s.maps, 0, end);
  const m = s.maps;
  while (c.at < end) {
    const start = c.hex();
    if (start > last) return true;
    c.skip();
    const stop = c.hex();
    const perms = c.at + 1; // `rwxp`: read, write, execute, private or shared
    c.skipWord();
    const offset = c.hex();
    const major = c.hex();
    c.skip();
    const minor = c.hex();
    const inodeAt = c.at;
    // the inode is compared as digits: it can exceed 2^53 (overlayfs's xino)
    for (let t = 0; t < targets.length; t++) {
      c.at = inodeAt;
      if (major === targets[t].major && minor === targets[t].minor && c.isWord(targets[t].inode)) {
        s.ranges.push(start, stop, offset, t);
        break;
      }
    }
    const lineEnd = m.indexOf(NEWLINE, inodeAt);
    if (major === 0 && minor === 0 && m[perms] === 0x72 && m[perms + 3] === 0x70) {
      c.at = inodeAt;
      if (c.decimal() === 0 && anonymousName(m, c.at, lineEnd)) {
        const a = s.anonymous;
        if (a.length > 0 && a[a.length - 1] === start) a[a.length - 1] = stop;
        else a.push(start, stop);
      }
    }
    c.at = lineEnd + 1;
  }
  return false;
}

/** Whether the path part of a maps line (from `at` to `end`) is none, `[heap]`, `[stack]` or `[anon:NAME]`. */
function anonymousName(m: Uint8Array, at: number, end: number): boolean {
  while (at < end && m[at] === SPACE) at++;
  if (at === end) return true;
  return ANONYMOUS_NAMES.some((name) => name.every((b, i) => m[at + i] === b));
}

/** Whether [address, address + length) lies wholly in the process's private anonymous memory. */
function isAnonymous(anonymous: number[], address: number, length: number): boolean {
  for (let i = 0; i < anonymous.length; i += 2) {
    if (address >= anonymous[i] && address + length <= anonymous[i + 1]) return true;
  }
  return false;
}

/** The target and offset of a word at `address` in the process, or undefined when it lies elsewhere. */
function fileOffset(ranges: number[], address: number): { file: number; offset: number } | undefined {
  for (let i = 0; i < ranges.length; i += 4) {
    if (address >= ranges[i] && address < ranges[i + 1]) {
      return { file: ranges[i + 3], offset: address - ranges[i] + ranges[i + 2] };
    }
  }
  return undefined;
}

/**
 * The shared words of a futex_waitv vector, read from the process's
 * anonymous memory; undefined when it is not read (elsewhere, gone,
 * unreadable), or DENIED.
 */
function vectorWords(s: Scratch, mem: number, blocked: Blocked): number[] | number | undefined {
  const length = blocked.count * WAITV_ENTRY;
  if (length === 0 || !isAnonymous(s.anonymous, blocked.address, length)) return undefined;
  const n = sys("pread64", mem, s.at.vector, length, blocked.address);
  if (n === -EACCES || n === -EPERM) return DENIED;
  if (n !== length) return undefined;
  const words: number[] = [];
  const v = s.vectorView;
  for (let at = 0; at < length; at += WAITV_ENTRY) {
    // a private word is keyed to its process, so no other process wakes it
    if (v.getUint32(at + WAITV_FLAGS, true) & FUTEX2_PRIVATE) continue;
    words.push(v.getUint32(at + WAITV_UADDR, true) + v.getUint32(at + WAITV_UADDR + 4, true) * 2 ** 32);
  }
  return words;
}

/** Adds the process's waiters on the targets to `result`; 0, or why it stopped. */
function inspect(s: Scratch, dir: number, pid: number, targets: Target[], result: FutexWaiters): number {
  const blocked = blockedThreads(s, dir);
  if (typeof blocked === "number") return blocked;
  if (blocked.length === 0) return 0;
  // a vector's words may lie anywhere: only futex() records let the maps read stop early
  const last = blocked.reduce((max, b) => b.vector ? Infinity : Math.max(max, b.address), 0);
  const mapped = readMappings(s, dir, targets, last);
  if (mapped !== 0 || s.ranges.length === 0) return mapped;
  const found: { tid: number; file: number; offset: number }[] = [];
  let mem = -1;
  try {
    for (const b of blocked) {
      let words: number[] | number | undefined = [b.address];
      if (b.vector) {
        if (mem < 0) {
          mem = sys("openat", dir, s.nameAt.mem, s.fileFlags);
          if (mem < 0) return outcome(-mem);
        }
        words = vectorWords(s, mem, b);
        if (words === undefined) {
          result.skipped++;
          continue;
        }
        if (typeof words === "number") return words;
      }
      for (const word of words) {
        const at = fileOffset(s.ranges, word);
        if (at) found.push({ tid: b.tid, ...at });
      }
    }
  } finally {
    if (mem >= 0) sys("close", mem);
  }
  if (found.length === 0) return 0;
  const length = readSmall(s, dir, s.nameAt.comm);
  if (length < 0) return outcome(-length);
  const comm = escapeBytes(s.text.subarray(0, s.text[length - 1] === NEWLINE ? length - 1 : length));
  for (const f of found) result.waiters.push({ file: f.file, pid, tid: f.tid, comm, offset: f.offset });
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

/** Parses a file id into what maps prints: glibc's major() and minor() (new_encode_dev, widened to 64 bits). */
function targetOf({ dev, ino }: FileId): Target {
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)),
    inode: new TextEncoder().encode(ino.toString()),
  };
}

/**
 * The threads whose syscall records say they block on futex words of the
 * files, found through /proc in one pass for all of them: in `futex()` with
 * FUTEX_WAIT or FUTEX_WAIT_BITSET on a shared word, or in `futex_waitv()`
 * with shared entries, on an address that lies in a mapping of a file.
 * Private waits are left out: only their own process can wake them. Costs a
 * few syscalls per thread on the machine; maps and memory are read only for
 * processes with a thread in such a call. On x86_64 a 32-bit process's
 * futex() is missed: its syscall file gives i386 numbers.
 *
 * These are records, not proof: any process can forge them (see the module
 * doc); the kernel's count of waiters is the truth. The scan always returns:
 * it stops after `budgetMs` and counts the processes left in `unscanned`; a
 * process that ends during the scan is left out; one that may not be
 * inspected (another user's, or not dumpable) is counted in `hidden` (root
 * sees every process); one whose files give an unexpected error, or whose
 * maps exceed 16 MiB, in `failed`; a futex_waitv vector outside the
 * process's private anonymous memory is not read, and counted in `skipped`.
 *
 * @param files The files, by `st_dev` and `st_ino` as the kernel's stat returns them.
 * @param options `budgetMs`: how long the scan may take (SCAN_BUDGET_MS by default).
 * @returns The waiters, one per waiting entry, by pid, and what was not inspected.
 * @throws {Error} When /proc itself cannot be opened or listed.
 * @example Who waits on a region file
 * ```ts ignore
 * import { lstat } from "./file.ts";
 * const info = lstat("/dev/shm/ltp_test_1234");
 * if (info) {
 *   const { waiters, hidden } = futexWaiters([info]);
 *   for (const w of waiters) console.log(`${w.pid} (${w.comm}) waits at byte ${w.offset}`);
 *   if (hidden) console.log(`${hidden} processes could not be inspected`);
 * }
 * ```
 */
export function futexWaiters(files: FileId[], options: { budgetMs?: number } = {}): FutexWaiters {
  const s = scratch ??= new Scratch();
  s.deadline = performance.now() + (options.budgetMs ?? SCAN_BUDGET_MS);
  const targets = files.map(targetOf);
  const result: FutexWaiters = { waiters: [], hidden: 0, unscanned: 0, skipped: 0, failed: 0 };
  if (files.length === 0) return result;
  const proc = sys("openat", AT_FDCWD, s.nameAt.proc, s.dirFlags);
  if (proc < 0) throw syscallError("Cannot open /proc", -proc);
  try {
    for (let late = false;;) {
      const n = sys("getdents64", proc, s.at.dents, s.dents.length);
      if (n < 0) throw syscallError("Cannot list /proc", -n);
      if (n === 0) return result;
      for (let at = 0; at < n; at += reclen(s.dents, at)) {
        const pid = numericName(s.dents, at);
        if (pid < 0) continue;
        late ||= performance.now() > s.deadline;
        if (late) {
          result.unscanned++;
          continue;
        }
        // one folder fd per process: a pid reused mid-scan cannot mix two processes' files
        const dir = sys("openat", proc, s.at.dents + at + DIRENT_NAME, s.dirFlags);
        if (dir < 0) {
          // denied when /proc is mounted with hidepid=noaccess
          if (outcome(-dir) === DENIED) result.hidden++;
          continue;
        }
        try {
          const why = inspect(s, dir, pid, targets, result);
          if (why === DENIED && !isKernelThread(s, dir)) result.hidden++;
          if (why === FAILED) result.failed++;
          if (why === LATE) result.unscanned++;
        } finally {
          sys("close", dir);
        }
      }
    }
  } finally {
    sys("close", proc);
  }
}
