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
 *
 * The file has two halves: the reading of /proc's text (pure functions over
 * bytes, which allocate little: a scan reads thousands of files), then the
 * scan that makes the syscalls. Another process's text is returned as bytes
 * (`comm`): making it printable is the caller's business.
 * @module
 */
import {
  AT_FDCWD,
  EACCES,
  EMFILE,
  ENFILE,
  ENOENT,
  EPERM,
  ESRCH,
  FUTEX2_PRIVATE,
  FUTEX_CLOCK_REALTIME,
  FUTEX_PRIVATE_FLAG,
  FUTEX_WAIT,
  FUTEX_WAIT_BITSET,
  FUTEX_WAITV_FLAGS,
  FUTEX_WAITV_MAX,
  FUTEX_WAITV_SIZE,
  FUTEX_WAITV_UADDR,
  NR,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  PF_KTHREAD,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import { addressOf, type Bytes, cString, sys } from "./libc.ts";
import { type BatchResult, BoundedReader } from "./reader.ts";
import { close, DirectoryReader, type FileId, lstat, readHead, readlink } from "./syscalls.ts";

export type { FileId } from "./syscalls.ts";

/** A thread whose syscall record says it is blocked on a futex word of one of the files. */
export interface FutexWaiter {
  /** Which file: its index in the list scanned. */
  file: number;
  /** The process (its thread group id). */
  pid: number;
  /** The blocked thread. */
  tid: number;
  /** The process's name, from /proc/PID/comm: the bytes as the kernel gave them, without the newline. Escape them before printing. */
  comm: Bytes;
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
  /**
   * Processes whose /proc files did not answer a read in time (one stalled in
   * exec holds the lock those reads take): left behind, and never read again
   * by this process.
   */
  stalled: number[];
  /** Why no process could be read, when none could (the reader thread could not start). */
  unfinished?: string;
}

/** How long a scan may take by default: a second and a half, then the rest is counted, not read. */
export const SCAN_BUDGET_MS = 1500;
/** The most of one process's maps read: 16 MiB, some 150,000 lines without paths; vm.max_map_count is ~65,000. */
const MAPS_MAX_BYTES = 16 << 20;

// ---------------------------------------------------------------------------
// /proc's text, read in place: pure functions over bytes
// ---------------------------------------------------------------------------

const NEWLINE = 0x0a;
const SPACE = 0x20;

/** Text as bytes, for ASCII only, without a TextEncoder. */
function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** Reads numbers from /proc's text in place, without making strings. */
class Cursor {
  #bytes: Uint8Array = new Uint8Array(0);
  #end = 0;
  /** Where the next read starts. */
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

// one cursor for every parse: they run one at a time and each resets it
const cursor = new Cursor();

/** A futex call a thread is blocked in: futex() on one word, or futex_waitv() on a vector of `count` entries at `address`. */
export interface FutexCall {
  vector: boolean;
  address: number;
  count: number;
}

/** The syscall numbers of futex() and futex_waitv(), as /proc/PID/syscall prints them. */
export interface FutexNumbers {
  futex: number;
  futex_waitv: number;
}

/**
 * Parses a syscall file, `bytes[0, length)`: `NR ARG1 ... ARG6 SP PC` inside
 * a call (NR decimal, the rest 0x-hex), `-1 SP PC` when blocked outside one,
 * `running` otherwise. Undefined unless the call is a wait on a word another
 * process may share: futex() with FUTEX_WAIT or FUTEX_WAIT_BITSET and no
 * private flag, or futex_waitv() (whose entries are judged later).
 */
export function parseSyscall(bytes: Uint8Array, length: number, numbers: FutexNumbers): FutexCall | undefined {
  const c = cursor.reset(bytes, 0, length);
  const nr = c.decimal();
  if (nr !== numbers.futex && nr !== numbers.futex_waitv) return undefined;
  const address = c.hex();
  c.hex();
  const arg2 = c.low32; // an int (op) or unsigned int (nr_futexes): the register's upper half is noise
  if (nr === numbers.futex_waitv) return { vector: true, address, count: Math.min(arg2, FUTEX_WAITV_MAX) };
  // the kernel's FUTEX_CMD_MASK: the op without its private and clock flags
  const cmd = arg2 & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
  if (arg2 & FUTEX_PRIVATE_FLAG || (cmd !== FUTEX_WAIT && cmd !== FUTEX_WAIT_BITSET)) return undefined;
  return { vector: false, address, count: 1 };
}

/**
 * Whether /proc/PID/stat's text, `bytes[0, length)`, has PF_KTHREAD in its
 * flags: a kernel thread, which waits on no user memory.
 */
export function isKernelThreadStat(bytes: Uint8Array, length: number): boolean {
  // `PID (COMM) STATE PPID PGRP SESSION TTY TPGID FLAGS ...`: COMM may hold spaces and parentheses
  const c = cursor.reset(bytes, bytes.lastIndexOf(0x29, length - 1) + 1, length);
  for (let i = 0; i < 6; i++) c.skipWord();
  return (c.decimal() & PF_KTHREAD) !== 0;
}

/** The state letter of /proc/PID/stat's text, `bytes[0, length)` (`Z` for a zombie), or 0 when none. */
export function statState(bytes: Uint8Array, length: number): number {
  const c = cursor.reset(bytes, bytes.lastIndexOf(0x29, length - 1) + 1, length);
  c.skipWord();
  return c.at > 0 && c.at <= length ? bytes[c.at - 1] : 0;
}

/** /proc/PID/comm's text, `bytes[0, length)`, as a copy without its newline. */
export function commOf(bytes: Uint8Array, length: number): Bytes {
  return Uint8Array.from(bytes.subarray(0, bytes[length - 1] === NEWLINE ? length - 1 : length));
}

/**
 * The shared words of a futex_waitv vector of `length` bytes (`struct
 * futex_waitv` entries), as addresses: a private entry is left out, since
 * its word is keyed to its own process and no other process wakes it.
 */
export function sharedWords(vector: DataView, length: number): number[] {
  const words: number[] = [];
  for (let at = 0; at < length; at += FUTEX_WAITV_SIZE) {
    if (vector.getUint32(at + FUTEX_WAITV_FLAGS, true) & FUTEX2_PRIVATE) continue;
    words.push(
      vector.getUint32(at + FUTEX_WAITV_UADDR, true) + vector.getUint32(at + FUTEX_WAITV_UADDR + 4, true) * 2 ** 32,
    );
  }
  return words;
}

/** A file whose words are looked for, as /proc/PID/maps prints its device and inode. */
export interface MapsTarget {
  major: number;
  minor: number;
  /** The inode in decimal digits: it can exceed 2^53 (overlayfs's xino). */
  inode: Uint8Array;
}

/** A file id as maps prints it: glibc's major() and minor() (new_encode_dev, widened to 64 bits). */
export function targetOf({ dev, ino }: FileId): MapsTarget {
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)),
    inode: ascii(ino.toString()),
  };
}

const ANONYMOUS_NAMES = ["[heap]", "[stack]", "[anon:"].map(ascii);

/** Whether the path part of a maps line (from `at` to `end`) is none, `[heap]`, `[stack]` or `[anon:NAME]`. */
function anonymousName(m: Uint8Array, at: number, end: number): boolean {
  while (at < end && m[at] === SPACE) at++;
  if (at === end) return true;
  return ANONYMOUS_NAMES.some((name) => name.every((b, i) => m[at + i] === b));
}

/**
 * What one process's maps say: where the target files are mapped, and
 * where its readable private anonymous memory lies. Filled line by line
 * from maps' text (`parse`), then asked about addresses.
 */
export class Mappings {
  /** START, END, file OFFSET and target index of each mapping of a target. */
  readonly #ranges: number[] = [];
  /** START and END of its readable private anonymous mappings, adjacent ones merged. */
  readonly #anonymous: number[] = [];

  /** Forgets every mapping, for the next process. */
  clear(): void {
    this.#ranges.length = 0;
    this.#anonymous.length = 0;
  }

  /** Whether a mapping of a target was seen. */
  get mapsTargets(): boolean {
    return this.#ranges.length > 0;
  }

  /**
   * Takes in whole lines `START-END PERMS OFFSET MAJ:MIN INODE [PATH]` (hex
   * but the inode) of `bytes[0, end)`, which ends at a line's end; true once
   * a line starts past `last` (maps are sorted by address: nothing more is
   * needed).
   */
  parse(bytes: Uint8Array, end: number, targets: MapsTarget[], last: number): boolean {
    const c = cursor.reset(bytes, 0, end);
    const m = bytes;
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
      for (let t = 0; t < targets.length; t++) {
        c.at = inodeAt;
        if (major === targets[t].major && minor === targets[t].minor && c.isWord(targets[t].inode)) {
          this.#ranges.push(start, stop, offset, t);
          break;
        }
      }
      const lineEnd = m.indexOf(NEWLINE, inodeAt);
      if (major === 0 && minor === 0 && m[perms] === 0x72 && m[perms + 3] === 0x70) {
        c.at = inodeAt;
        if (c.decimal() === 0 && anonymousName(m, c.at, lineEnd)) {
          const a = this.#anonymous;
          if (a.length > 0 && a[a.length - 1] === start) a[a.length - 1] = stop;
          else a.push(start, stop);
        }
      }
      c.at = lineEnd + 1;
    }
    return false;
  }

  /** Whether target `index` is mapped. */
  maps(index: number): boolean {
    const r = this.#ranges;
    for (let i = 3; i < r.length; i += 4) if (r[i] === index) return true;
    return false;
  }

  /** Whether [address, address + length) lies wholly in the process's private anonymous memory. */
  isAnonymous(address: number, length: number): boolean {
    const a = this.#anonymous;
    for (let i = 0; i < a.length; i += 2) {
      if (address >= a[i] && address + length <= a[i + 1]) return true;
    }
    return false;
  }

  /** The target and offset of a word at `address`, or undefined when it lies in none of them. */
  fileOffset(address: number): { file: number; offset: number } | undefined {
    const r = this.#ranges;
    for (let i = 0; i < r.length; i += 4) {
      if (address >= r[i] && address < r[i + 1]) return { file: r[i + 3], offset: address - r[i] + r[i + 2] };
    }
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// The scan: syscalls on /proc
// ---------------------------------------------------------------------------

/** Why the look at one process ended early. */
type Gone = { kind: "gone" };
type Denied = { kind: "denied" };
type Failed = { kind: "failed" };
type Late = { kind: "late" };
type Stalled = { kind: "stalled" };
type Stop = Gone | Denied | Failed | Late | Stalled;

const GONE: Gone = { kind: "gone" };
const DENIED: Denied = { kind: "denied" };
const FAILED: Failed = { kind: "failed" };
const LATE: Late = { kind: "late" };
const STALLED: Stalled = { kind: "stalled" };
const DONE = { kind: "done" } as const;
const UNREAD = { kind: "unread" } as const;

/** A thread and the futex call it is blocked in. */
type Blocked = FutexCall & { tid: number };

/** What a failed call on /proc/PID means for that process: gone, denied, or failed (EIO, EINVAL, ...). */
function stopFor(errno: number): Gone | Denied | Failed {
  if (errno === ENOENT || errno === ESRCH) return GONE;
  if (errno === EACCES || errno === EPERM) return DENIED;
  return FAILED;
}

const FILE_FLAGS = O_CLOEXEC | O_NOFOLLOW;
const DIR_FLAGS = FILE_FLAGS | O_DIRECTORY;

/** A NUL-terminated name and its address, made once. */
class CName {
  readonly bytes: Bytes;
  #address?: number;
  constructor(text: string) {
    this.bytes = cString(text);
  }
  /** Taken at first use, not at import: importing the module needs no --allow-ffi. */
  get address(): number {
    // user-space addresses fit in 48 bits, so numbers hold them exactly
    return this.#address ??= Number(addressOf(this.bytes));
  }
}

const COMM = new CName("comm");
const STAT = new CName("stat");

/**
 * Why a call made by the reader on the process folder `dir` failed, its
 * errno being lost on the reader's thread: gone when the process's comm
 * (whose open takes no lock) cannot be opened for that reason, else denied
 * (the usual cause: no ptrace access).
 */
function whyNot(dir: number): Gone | Denied {
  const fd = sys("openat", dir, COMM.address, FILE_FLAGS);
  if (fd >= 0) {
    close(fd);
    return DENIED;
  }
  return stopFor(-fd) === GONE ? GONE : DENIED;
}

/** A batch's end other than done, as the look at a process sees it. */
function stopOf(batch: BatchResult): Late | Stalled {
  return batch.kind === "stalled" ? STALLED : LATE;
}

/** Reads a small file (comm) whose open and read take no lock another process can hold: its length, or -errno. */
class SmallFile {
  readonly bytes = new Uint8Array(1024);
  readonly #address = Number(addressOf(this.bytes));

  read(dir: number, name: number): number {
    const fd = sys("openat", dir, name, FILE_FLAGS);
    if (fd < 0) return fd;
    const n = sys("pread64", fd, this.#address, this.bytes.length, 0);
    close(fd);
    return n;
  }
}

/** `TID/syscall`, written afresh for each thread. */
class TaskSyscallPath {
  readonly #bytes = new Uint8Array(64);
  readonly #suffix = cString("/syscall");
  readonly address = Number(addressOf(this.#bytes));

  /** Makes the path that of the thread `tid` (the name as the folder lists it); returns its address. */
  of(tid: Uint8Array): number {
    this.#bytes.set(tid);
    this.#bytes.set(this.#suffix, tid.length);
    return this.address;
  }
}

/** How much of maps one read asks for: maps can run to megabytes, read in chunks, a cut line carried over. */
const MAPS_CHUNK = 65536;

/** Fills `into` from the maps file `name` of the folder `dir` through `reader`, until `last` (see Mappings.parse). */
function readMaps(
  reader: BoundedReader,
  dir: number,
  name: number,
  into: Mappings,
  targets: MapsTarget[],
  last: number,
): typeof DONE | Stop {
  into.clear();
  const opened = reader.run([{ name: "openat", args: [dir, name, FILE_FLAGS] }]);
  if (opened.kind !== "done") return stopOf(opened);
  const fd = opened.results[0];
  if (fd < 0) return whyNot(dir);
  try {
    // each pread starts where the last ended, which seq_file serves without rewinding
    let kept = 0;
    for (let offset = 0;;) {
      if (offset > MAPS_MAX_BYTES) return FAILED;
      const read = reader.run([{ name: "pread64", args: [fd, reader.address(kept), MAPS_CHUNK - kept, offset] }]);
      if (read.kind !== "done") return stopOf(read);
      const n = read.results[0];
      if (n < 0) return whyNot(dir);
      if (n === 0) return DONE;
      offset += n;
      const bytes = reader.data;
      const filled = kept + n;
      const lastLine = bytes.lastIndexOf(NEWLINE, filled - 1) + 1;
      if (lastLine === 0 && filled === MAPS_CHUNK) return FAILED; // a line longer than any the kernel writes
      if (into.parse(bytes, lastLine, targets, last)) return DONE;
      bytes.copyWithin(0, lastLine, filled);
      kept = filled - lastLine;
    }
  } finally {
    close(fd);
  }
}

/**
 * The shared words of the vector `call` names, read through `mem` (the
 * process's /proc/PID/mem) by `reader` only where `mappings` says it lies in
 * private anonymous memory; unread when elsewhere, gone or unreadable.
 */
function readVector(
  reader: BoundedReader,
  mem: number,
  call: FutexCall,
  mappings: Mappings,
): typeof UNREAD | Late | Stalled | { kind: "words"; words: number[] } {
  const length = call.count * FUTEX_WAITV_SIZE;
  if (length === 0 || !mappings.isAnonymous(call.address, length)) return UNREAD;
  const read = reader.run([{ name: "pread64", args: [mem, reader.address(0), length, call.address] }]);
  if (read.kind !== "done") return stopOf(read);
  if (read.results[0] !== length) return UNREAD;
  const data = reader.data;
  return { kind: "words", words: sharedWords(new DataView(data.buffer, data.byteOffset, length), length) };
}

/** Processes whose /proc files did not answer a read of this process: never read again (each read would stall too). */
const stalledPids = new Set<number>();

/** A process being looked at: its folder, what its threads' syscall files said, and why the look ended early. */
interface Process {
  pid: number;
  dir: number;
  blocked: Blocked[];
  stop?: Stop;
  /** Whether its stat says it is a kernel thread (read only when its threads may not be). */
  kernel: boolean;
  /** Whether every thread's syscall file has been opened. */
  listed: boolean;
}

/** An open file of a process whose read waits for the next batch: a thread's syscall file, or (tid -1) its stat. */
interface PendingRead {
  process: Process;
  tid: number;
  fd: number;
}

/** Bytes read of a syscall or stat file: the part of stat that matters and all of syscall fit. */
const SLOT = 512;
/** Files read in one batch: bounds the descriptors a scan holds at once. */
const BATCH = 64;

/** The scan's buffers and names, made once and reused by every scan: a scan makes thousands of reads. */
class ProcScanner {
  readonly #names = {
    proc: new CName("/proc"),
    task: new CName("task"),
    maps: new CName("maps"),
    mem: new CName("mem"),
    stat: new CName("stat"),
  };
  readonly #processes = new DirectoryReader(32768);
  readonly #threads = new DirectoryReader(16384);
  readonly #small = new SmallFile();
  readonly #taskSyscall = new TaskSyscallPath();
  readonly #mappings = new Mappings();
  readonly #numbers: FutexNumbers = { futex: NR.futex, futex_waitv: NR.futex_waitv };
  /** The scan's end, as performance.now() reads it. */
  #deadline = 0;
  #reader = new BoundedReader(0);
  #targets: MapsTarget[] = [];
  #result: FutexWaiters = emptyResult();
  #reads: PendingRead[] = [];
  /** Processes whose files are in the batch, or whose listing is under way. */
  #open: Process[] = [];

  /** See futexWaiters(). */
  scan(files: FileId[], budgetMs: number): FutexWaiters {
    this.#deadline = performance.now() + budgetMs;
    this.#targets = files.map(targetOf);
    const result = this.#result = emptyResult();
    if (files.length === 0) return result;
    const proc = sys("openat", AT_FDCWD, this.#names.proc.address, DIR_FLAGS);
    if (proc < 0) throw syscallError("Cannot open /proc", -proc);
    this.#reader = new BoundedReader(this.#deadline);
    this.#reader.start();
    const processes = this.#processes;
    try {
      for (let late = false;;) {
        const n = processes.read(proc);
        if (n < 0) throw syscallError("Cannot list /proc", -n);
        if (n === 0) break;
        while (processes.next()) {
          const pid = processes.number();
          if (pid < 0) continue;
          if (stalledPids.has(pid)) {
            result.stalled.push(pid);
            continue;
          }
          late ||= performance.now() > this.#deadline || this.#reader.unusable !== undefined;
          if (late) {
            result.unscanned++;
            continue;
          }
          // one folder fd per process: a pid reused mid-scan cannot mix two processes' files
          const dir = this.#openAt(proc, processes.nameAddress, DIR_FLAGS);
          if (dir < 0) {
            // denied when /proc is mounted with hidepid=noaccess
            if (stopFor(-dir) === DENIED) result.hidden++;
            if (dir === -EMFILE || dir === -ENFILE) result.failed++;
            continue;
          }
          const p: Process = { pid, dir, blocked: [], kernel: false, listed: false };
          this.#open.push(p);
          this.#openThreads(p);
          p.listed = true;
          if (this.#reads.length >= BATCH || this.#open.length >= BATCH) this.#flush();
        }
      }
      this.#flush();
      if (this.#reader.unusable) result.unfinished = this.#reader.unusable;
      return result;
    } finally {
      for (const r of this.#reads) close(r.fd);
      for (const p of this.#open) close(p.dir);
      this.#reads = [];
      this.#open = [];
      this.#reader.close();
      close(proc);
    }
  }

  /**
   * openat(), which, when this process is out of descriptors, reads the batch
   * (closing its files) and tries once more: what other files a machine or a
   * caller holds never hides a waiter.
   */
  #openAt(dir: number, name: number, flags: number): number {
    const fd = sys("openat", dir, name, flags);
    if ((fd !== -EMFILE && fd !== -ENFILE) || (this.#reads.length === 0 && this.#open.length === 0)) return fd;
    this.#flush();
    return sys("openat", dir, name, flags);
  }

  /** Opens the syscall file of each of the process's threads for the next batch (its stat instead when denied). */
  #openThreads(p: Process): void {
    const tasks = this.#openAt(p.dir, this.#names.task.address, DIR_FLAGS);
    if (tasks < 0) {
      p.stop = stopFor(-tasks);
      return;
    }
    let denied = false;
    const threads = this.#threads;
    try {
      for (;;) {
        const n = threads.read(tasks);
        if (n < 0) p.stop = stopFor(-n);
        if (n <= 0) break;
        while (threads.next()) {
          const tid = threads.number();
          if (tid < 0) continue;
          // opening a syscall file takes no lock of the process; reading it does
          const fd = this.#openAt(tasks, this.#taskSyscall.of(threads.name()), FILE_FLAGS);
          if (fd < 0) {
            const why = stopFor(-fd);
            if (why === GONE) continue; // this thread ended; its siblings may not have
            p.stop = why;
            denied = why === DENIED;
            break;
          }
          this.#reads.push({ process: p, tid, fd });
          if (this.#reads.length >= BATCH) this.#flush();
          if (p.stop) break;
        }
        if (p.stop) break;
      }
    } finally {
      close(tasks);
    }
    // another user's process, or a kernel thread: its stat tells which
    if (denied) {
      const stat = sys("openat", p.dir, this.#names.stat.address, FILE_FLAGS);
      if (stat >= 0) this.#reads.push({ process: p, tid: -1, fd: stat });
    }
  }

  /** Reads the batch's files through the reader, then finishes the processes wholly read. */
  #flush(): void {
    const reader = this.#reader;
    while (this.#reads.length > 0) {
      // one file per process at a time: a process that stalls holds one of the pool's threads, not one per thread
      const reads: PendingRead[] = [];
      const later: PendingRead[] = [];
      for (const r of this.#reads) (reads.some((q) => q.process === r.process) ? later : reads).push(r);
      const batch = reader.run(reads.map(({ fd }, i) => ({
        name: "pread64",
        args: [fd, reader.address(i * SLOT), SLOT, 0],
      })));
      if (batch.kind === "stalled") {
        // those processes stall the reads of their files: leave them, read the others again
        const stalled = new Set(batch.pending.map((i) => reads[i].process));
        for (const p of stalled) this.#stalled(p);
        this.#reads = this.#reads.filter((r) => {
          if (stalled.has(r.process)) close(r.fd);
          return !stalled.has(r.process);
        });
        continue;
      }
      this.#reads = later;
      for (const r of reads) close(r.fd);
      if (batch.kind === "late") {
        for (const r of [...reads, ...later]) {
          r.process.stop ??= LATE;
          if (later.includes(r)) close(r.fd);
        }
        this.#reads = [];
        break;
      }
      const data = reader.data;
      for (let i = 0; i < reads.length; i++) {
        const { process: p, tid } = reads[i];
        const n = batch.results[i];
        const bytes = data.subarray(i * SLOT, i * SLOT + Math.max(0, n));
        if (tid < 0) {
          p.kernel = n > 0 && isKernelThreadStat(bytes, n);
        } else if (p.stop) {
          continue;
        } else if (n < 0) {
          const why = whyNot(p.dir);
          if (why !== GONE) p.stop = why;
        } else {
          const call = parseSyscall(bytes, n, this.#numbers);
          if (call) p.blocked.push({ tid, ...call });
        }
      }
    }
    this.#open = this.#open.filter((p) => {
      if (!p.listed && !p.stop) return true;
      try {
        this.#finish(p);
      } finally {
        close(p.dir);
      }
      return false;
    });
  }

  /** Marks the process as one whose files do not answer. */
  #stalled(p: Process): void {
    p.stop = STALLED;
    stalledPids.add(p.pid);
    this.#result.stalled.push(p.pid);
  }

  /** Counts what stopped the look at a process, or looks at its waiters. */
  #finish(p: Process): void {
    const result = this.#result;
    let seen: typeof DONE | Stop = p.stop ?? DONE;
    if (seen === DONE && p.blocked.length > 0) {
      seen = performance.now() > this.#deadline ? LATE : this.#inspect(p);
      if (seen === STALLED) this.#stalled(p);
    }
    if (seen.kind === "denied" && !p.kernel) result.hidden++;
    if (seen.kind === "failed") result.failed++;
    if (seen.kind === "late") result.unscanned++;
  }

  /** Adds the process's waiters on the targets to the result; done, or why it stopped. */
  #inspect(p: Process): typeof DONE | Stop {
    const { dir, pid, blocked } = p;
    const reader = this.#reader;
    // a vector's words may lie anywhere: only futex() records let the maps read stop early
    const last = blocked.reduce((max, b) => b.vector ? Infinity : Math.max(max, b.address), 0);
    const mappings = this.#mappings;
    const mapped = readMaps(reader, dir, this.#names.maps.address, mappings, this.#targets, last);
    if (mapped.kind !== "done" || !mappings.mapsTargets) return mapped;
    const found: { tid: number; file: number; offset: number }[] = [];
    let mem = -1;
    try {
      for (const b of blocked) {
        let words = [b.address];
        if (b.vector) {
          if (mem < 0) {
            const opened = reader.run([{ name: "openat", args: [dir, this.#names.mem.address, FILE_FLAGS] }]);
            if (opened.kind !== "done") return stopOf(opened);
            mem = opened.results[0];
            if (mem < 0) return whyNot(dir);
          }
          const vector = readVector(reader, mem, b, mappings);
          if (vector.kind === "unread") {
            this.#result.skipped++;
            continue;
          }
          if (vector.kind !== "words") return vector;
          words = vector.words;
        }
        for (const word of words) {
          const at = mappings.fileOffset(word);
          if (at) found.push({ tid: b.tid, ...at });
        }
      }
    } finally {
      if (mem >= 0) close(mem);
    }
    if (found.length === 0) return DONE;
    const small = this.#small;
    const length = small.read(dir, COMM.address);
    if (length < 0) return stopFor(-length);
    const comm = commOf(small.bytes, length);
    for (const f of found) this.#result.waiters.push({ file: f.file, pid, tid: f.tid, comm, offset: f.offset });
    return DONE;
  }
}

function emptyResult(): FutexWaiters {
  return { waiters: [], hidden: 0, unscanned: 0, skipped: 0, failed: 0, stalled: [] };
}

let scanner: ProcScanner | undefined;

/**
 * The threads whose syscall records say they block on futex words of the
 * files, found through /proc in one pass for all of them: in `futex()` with
 * FUTEX_WAIT or FUTEX_WAIT_BITSET on a shared word, or in `futex_waitv()`
 * with shared entries, on an address that lies in a mapping of a file.
 * Private waits are left out: only their own process can wake them. Makes a
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
 * A read of another process's /proc files can block for ever (one stalled in
 * exec holds the lock they take), and no budget can interrupt a read that has
 * started: every such read is made by a bounded reader (./reader.ts) on a
 * thread this one can leave behind, while this one parses. A process whose
 * files make no progress is left, listed in `stalled`, and not read again by
 * this process; the scan still returns within `budgetMs` and a few hundred
 * milliseconds. Opening the syscall, stat and comm files takes no such lock
 * and is done here.
 *
 * @param files The files, by `st_dev` and `st_ino` as the kernel's stat returns them.
 * @param options `budgetMs`: how long the scan may take (SCAN_BUDGET_MS by default).
 * @returns The waiters, one per waiting entry, by pid, and what was not inspected.
 * @throws {Error} When /proc itself cannot be opened or listed.
 * @example Who waits on a file
 * ```ts ignore
 * import { lstat } from "./syscalls.ts";
 * const info = lstat("/dev/shm/ltp_test_1234");
 * if (info) {
 *   const { waiters, hidden } = futexWaiters([info]);
 *   for (const w of waiters) console.log(`${w.pid} waits at byte ${w.offset}`);
 *   if (hidden) console.log(`${hidden} processes could not be inspected`);
 * }
 * ```
 */
export function futexWaiters(files: FileId[], options: { budgetMs?: number } = {}): FutexWaiters {
  scanner ??= new ProcScanner();
  return scanner.scan(files, options.budgetMs ?? SCAN_BUDGET_MS);
}

/**
 * Whether process `pid` exists, from /proc: null when that cannot be told
 * (no /proc, or /proc hides other users' processes: hidepid).
 */
export function processExists(pid: number): boolean | null {
  try {
    if (lstat(`/proc/${pid}`)) return true;
    // pid 1 always exists: where it cannot be seen, absence proves nothing
    return lstat("/proc/1") ? false : null;
  } catch {
    return null;
  }
}

/** The parent's pid in /proc/PID/stat's text, `bytes[0, length)`, or 0 when there is none. */
export function parentOfStat(bytes: Uint8Array, length: number): number {
  // `PID (COMM) STATE PPID ...`: COMM may hold spaces and parentheses
  const end = bytes.lastIndexOf(0x29, length - 1);
  if (end < 0) return 0;
  const c = cursor.reset(bytes, end + 1, length);
  c.skipWord();
  const ppid = c.decimal();
  return ppid > 0 ? ppid : 0;
}

const ancestry: Bytes = new Uint8Array(4096);
const ancestryOther: Bytes = new Uint8Array(4096);

/**
 * The furthest ancestor of `pid` that `pid` is a fork of: while a process's
 * parent runs the same executable with the same command line (a shell's
 * subshell, as `$(...)`, a pipeline or `( ... )` make), its parent, at most
 * 16 steps up; `pid` itself when its parent is another program or cannot be
 * looked at (another user's, pid 1). Meant for the caller's own ancestors,
 * which wait for it and so cannot be held up in an exec.
 */
export function forkedFrom(pid: number): number {
  for (let step = 0; step < 16; step++) {
    const n = readHead(`/proc/${pid}/stat`, ancestry);
    const parent = n > 0 ? parentOfStat(ancestry, n) : 0;
    if (parent <= 1) return pid;
    const exe = readlink(`/proc/${pid}/exe`);
    if (exe === undefined || exe !== readlink(`/proc/${parent}/exe`)) return pid;
    const length = readHead(`/proc/${pid}/cmdline`, ancestry);
    if (length <= 0 || length !== readHead(`/proc/${parent}/cmdline`, ancestryOther)) return pid;
    for (let i = 0; i < length; i++) if (ancestry[i] !== ancestryOther[i]) return pid;
    pid = parent;
  }
  return pid;
}

// ---------------------------------------------------------------------------
// Who keeps a file in use: environment, mappings, descriptors
// ---------------------------------------------------------------------------

/** A file whose users are looked for: its path as given (bytes), and its device and inode. */
export interface UsedFile extends FileId {
  path: Bytes;
}

/** A process that keeps one of the files in use, and how: its environment names it, it maps it, or has it open. */
export interface FileUse {
  /** Which file: its index in the list scanned. */
  file: number;
  pid: number;
  /** /proc/PID/comm, as bytes. */
  comm: Bytes;
  by: "environment" | "mapping" | "descriptor";
}

/** What a search for users found, and what it could not look at. */
export interface FileUses {
  uses: FileUse[];
  /** Processes whose environment could not be read (another user's, or not dumpable). */
  hidden: number;
  /** The owners of those processes (as /proc/PID shows them; root for a process that is not dumpable). */
  hiddenUids: number[];
  /** Processes not looked at in time. */
  unscanned: number;
  /** Processes whose /proc files did not answer (see FutexWaiters.stalled). */
  stalled: number[];
  /** Why no process could be read, when none could. */
  unfinished?: string;
}

const ENVIRONMENT_NAME = ascii("LTP_IPC_PATH=");

/** Whether NUL-separated `env` holds the entry `LTP_IPC_PATH=` followed by `path`, whole. */
export function environmentNames(env: Uint8Array, length: number, path: Uint8Array): boolean {
  const entry = ENVIRONMENT_NAME.length + path.length;
  for (let at = 0; at < length; at = env.indexOf(0, at) + 1) {
    if (at + entry <= length && (at + entry === length || env[at + entry] === 0)) {
      let same = true;
      for (let i = 0; same && i < ENVIRONMENT_NAME.length; i++) same = env[at + i] === ENVIRONMENT_NAME[i];
      for (let i = 0; same && i < path.length; i++) same = env[at + ENVIRONMENT_NAME.length + i] === path[i];
      if (same) return true;
    }
    if (env.indexOf(0, at) < 0) break;
  }
  return false;
}

/** The most of an environment read: an environment beyond it is searched in its first part only. */
const ENVIRONMENT_MAX = 65536;
/** Bytes of a descriptor's link read: a path longer than this is not a file's path compared. */
const LINK_SLOT = 1024;
/** Descriptor links read in one batch. */
const LINK_BATCH = 64;

class UseScanner {
  readonly #names = {
    proc: new CName("/proc"),
    environ: new CName("environ"),
    maps: new CName("maps"),
    fd: new CName("fd"),
  };
  readonly #processes = new DirectoryReader(32768);
  readonly #fds = new DirectoryReader(16384);
  readonly #small = new SmallFile();
  readonly #mappings = new Mappings();

  scan(files: UsedFile[], budgetMs: number): FileUses {
    const deadline = performance.now() + budgetMs;
    const result: FileUses = { uses: [], hidden: 0, hiddenUids: [], unscanned: 0, stalled: [] };
    const hide = (pid: number) => {
      result.hidden++;
      const owner = lstat(`/proc/${pid}`)?.uid;
      if (owner !== undefined && !result.hiddenUids.includes(owner)) result.hiddenUids.push(owner);
    };
    if (files.length === 0) return result;
    const targets = files.map(targetOf);
    const proc = sys("openat", AT_FDCWD, this.#names.proc.address, DIR_FLAGS);
    if (proc < 0) throw syscallError("Cannot open /proc", -proc);
    const reader = new BoundedReader(deadline);
    reader.start();
    const processes = this.#processes;
    try {
      for (let late = false;;) {
        const n = processes.read(proc);
        if (n < 0) throw syscallError("Cannot list /proc", -n);
        if (n === 0) break;
        while (processes.next()) {
          const pid = processes.number();
          if (pid < 0 || pid === Deno.pid) continue;
          if (stalledPids.has(pid)) {
            result.stalled.push(pid);
            continue;
          }
          late ||= performance.now() > deadline || reader.unusable !== undefined;
          if (late) {
            result.unscanned++;
            continue;
          }
          const dir = sys("openat", proc, processes.nameAddress, DIR_FLAGS);
          if (dir < 0) {
            if (stopFor(-dir) === DENIED) hide(pid);
            continue;
          }
          try {
            const used = new Map<number, FileUse["by"]>();
            const seen = this.#inspect(reader, dir, files, targets, used);
            if (seen.kind === "stalled") {
              stalledPids.add(pid);
              result.stalled.push(pid);
            }
            if (seen.kind === "denied") hide(pid);
            if (seen.kind === "late") result.unscanned++;
            if (used.size > 0) {
              const length = this.#small.read(dir, COMM.address);
              const comm = length < 0 ? new Uint8Array(0) : commOf(this.#small.bytes, length);
              for (const [file, by] of used) result.uses.push({ file, pid, comm, by });
            }
          } finally {
            close(dir);
          }
        }
      }
      if (reader.unusable) result.unfinished = reader.unusable;
      return result;
    } finally {
      reader.close();
      close(proc);
    }
  }

  /** Fills `used` with the files the process keeps in use, and how; done, or why it stopped. */
  #inspect(
    reader: BoundedReader,
    dir: number,
    files: UsedFile[],
    targets: MapsTarget[],
    used: Map<number, FileUse["by"]>,
  ): typeof DONE | Stop {
    // the environment: the shell that exported LTP_IPC_PATH shows it only in the commands it starts since
    const opened = reader.run([{ name: "openat", args: [dir, this.#names.environ.address, FILE_FLAGS] }]);
    if (opened.kind !== "done") return stopOf(opened);
    const env = opened.results[0];
    if (env < 0) return this.#withoutMemory(reader, dir) ? DONE : whyNot(dir);
    try {
      const read = reader.run([{ name: "pread64", args: [env, reader.address(0), ENVIRONMENT_MAX, 0] }]);
      if (read.kind !== "done") return stopOf(read);
      const n = read.results[0];
      if (n < 0) return whyNot(dir);
      files.forEach((f, i) => {
        if (environmentNames(reader.data, n, f.path)) used.set(i, "environment");
      });
    } finally {
      close(env);
    }
    if (used.size === files.length) return DONE;
    const mappings = this.#mappings;
    const mapped = readMaps(reader, dir, this.#names.maps.address, mappings, targets, Infinity);
    if (mapped.kind !== "done") return mapped.kind === "denied" || mapped.kind === "gone" ? DONE : mapped;
    files.forEach((_, i) => {
      if (!used.has(i) && mappings.maps(i)) used.set(i, "mapping");
    });
    if (used.size === files.length) return DONE;
    return this.#descriptors(reader, dir, files, used);
  }

  /**
   * Whether the process has no memory of its own to name or map anything: a
   * kernel thread or a zombie (whose environment cannot be opened, even by root).
   */
  #withoutMemory(reader: BoundedReader, dir: number): boolean {
    const stat = sys("openat", dir, STAT.address, FILE_FLAGS);
    if (stat < 0) return false;
    try {
      const read = reader.run([{ name: "pread64", args: [stat, reader.address(0), SLOT, 0] }]);
      if (read.kind !== "done" || read.results[0] <= 0) return false;
      const n = read.results[0];
      return isKernelThreadStat(reader.data, n) || statState(reader.data, n) === 0x5a;
    } finally {
      close(stat);
    }
  }

  /** Adds the files the process has open, by its descriptors' links (read, never followed). */
  #descriptors(
    reader: BoundedReader,
    dir: number,
    files: UsedFile[],
    used: Map<number, FileUse["by"]>,
  ): typeof DONE | Stop {
    const fdDir = sys("openat", dir, this.#names.fd.address, DIR_FLAGS);
    if (fdDir < 0) return DONE; // another user's descriptors: its environment was readable, its fds are not
    const fds = this.#fds;
    try {
      for (;;) {
        const n = fds.read(fdDir);
        if (n <= 0) return DONE;
        const batch: number[] = [];
        const flush = (): typeof DONE | Stop => {
          const done = reader.run(batch.map((name, i) => ({
            name: "readlinkat" as const,
            args: [fdDir, name, reader.address(i * LINK_SLOT), LINK_SLOT],
          })));
          batch.length = 0;
          if (done.kind !== "done") return stopOf(done);
          const data = reader.data;
          done.results.forEach((length, i) => {
            if (length <= 0 || length >= LINK_SLOT) return;
            const link = data.subarray(i * LINK_SLOT, i * LINK_SLOT + length);
            files.forEach((f, j) => {
              if (!used.has(j) && f.path.length === length && f.path.every((b, k) => b === link[k])) {
                used.set(j, "descriptor");
              }
            });
          });
          return DONE;
        };
        while (fds.next()) {
          if (fds.number() < 0) continue;
          batch.push(fds.nameAddress);
          if (batch.length === LINK_BATCH) {
            const done = flush();
            if (done !== DONE) return done;
          }
        }
        // the names lie in the listing's buffer: read their links before the next listing
        if (batch.length > 0) {
          const done = flush();
          if (done !== DONE) return done;
        }
      }
    } finally {
      close(fdDir);
    }
  }
}

let useScanner: UseScanner | undefined;

/**
 * The processes that keep some files in use, found through /proc in one
 * pass: a process whose environment holds `LTP_IPC_PATH=` with a file's path
 * (the commands a shell starts after it exported the variable), one that
 * maps a file (by device and inode in its maps), or one with a descriptor
 * whose link is the file's path (read, never followed, nothing stat'ed
 * through it). This process itself is left out. Every read that another
 * process can stall is made by the bounded reader (see futexWaiters()).
 *
 * @param files The files: each path as its users would name it, and its device and inode.
 * @param options `budgetMs`: how long the search may take (SCAN_BUDGET_MS by default).
 * @returns The uses found, and how many processes could not be looked at, and why.
 * @throws {Error} When /proc itself cannot be opened or listed.
 */
export function fileUsers(files: UsedFile[], options: { budgetMs?: number } = {}): FileUses {
  useScanner ??= new UseScanner();
  return useScanner.scan(files, options.budgetMs ?? SCAN_BUDGET_MS);
}
