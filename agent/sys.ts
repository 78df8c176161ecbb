/**
 * The few kernel calls the agent's channel makes (FIFOs, poll, a folder
 * lock), through ffi/libc.ts's `syscall()`. Raw results: `-errno` on
 * failure. (Kept beside the agent while ffi/ is being restructured; its
 * place is ffi/.)
 * @module
 */
import { addressOf, type Bytes, cString, errno, libc } from "../ffi/libc.ts";

const AARCH64 = Deno.build.arch === "aarch64";

/** Syscall numbers of these calls: x86_64, aarch64 (which has ppoll, renameat2 and dup3 only). */
const NUMBERS = {
  read: [0, 63],
  lseek: [8, 62],
  chdir: [80, 49],
  write: [1, 64],
  close: [3, 57],
  fcntl: [72, 25],
  flock: [73, 32],
  fchmod: [91, 52],
  getpid: [39, 172],
  geteuid: [107, 175],
  kill: [62, 129],
  getdents64: [217, 61],
  openat: [257, 56],
  mkdirat: [258, 34],
  mknodat: [259, 33],
  newfstatat: [262, 79],
  unlinkat: [263, 35],
  ppoll: [271, 73],
  eventfd2: [290, 19],
  dup3: [292, 24],
  renameat2: [316, 276],
} as const;
type Name = keyof typeof NUMBERS;

export const AT_FDCWD = -100;
export const AT_REMOVEDIR = 0x200;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = AARCH64 ? 0o40000 : 0o200000;
export const O_NOFOLLOW = AARCH64 ? 0o100000 : 0o400000;
export const O_CLOEXEC = 0o2000000;
export const S_IFMT = 0o170000;
export const S_IFIFO = 0o010000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const F_GETFD = 1;
export const FD_CLOEXEC = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EINTR = 4;
export const EAGAIN = 11;
export const EEXIST = 17;
export const ENOENT = 2;
export const ESRCH = 3;
export const EWOULDBLOCK = EAGAIN;

type Arg = number | bigint;

/** A synchronous syscall: the result, or `-errno`. */
export function call(name: Name, a: Arg = 0, b: Arg = 0, c: Arg = 0, d: Arg = 0, e: Arg = 0): number {
  const { symbols } = libc();
  const r = symbols.syscall(
    BigInt(NUMBERS[name][AARCH64 ? 1 : 0]),
    BigInt(a),
    BigInt(b),
    BigInt(c),
    BigInt(d),
    BigInt(e),
    0n,
  );
  return r === -1n ? -errno() : Number(r);
}

/** The same on Deno's thread pool (errno unreadable there: -1 for any failure). */
export async function callAsync(name: Name, a: Arg = 0, b: Arg = 0, c: Arg = 0, d: Arg = 0): Promise<number> {
  const { symbols } = libc();
  const n = BigInt(NUMBERS[name][AARCH64 ? 1 : 0]);
  return Number(await symbols.syscallAsync(n, BigInt(a), BigInt(b), BigInt(c), BigInt(d), 0n, 0n));
}

export { addressOf, type Bytes, cString };

/** `struct stat`'s mode and owner, as far as the agent needs them. */
export interface Stat {
  dev: bigint;
  ino: bigint;
  mode: number;
  uid: number;
  nlink: number;
}

const statBuffer = new BigUint64Array(32);
const statView = new DataView(statBuffer.buffer);

/** lstat (or fstat with `path` ""), relative to `dirfd`; undefined with the errno when it fails. */
export function statAt(dirfd: number, path: string, follow = false): Stat | number {
  const flags = (follow ? 0 : AT_SYMLINK_NOFOLLOW) | (path === "" ? 0x1000 /* AT_EMPTY_PATH */ : 0);
  const r = call("newfstatat", dirfd, addressOf(cString(path)), addressOf(statBuffer), flags);
  if (r < 0) return -r;
  const dev = statView.getBigUint64(0, true);
  const ino = statView.getBigUint64(8, true);
  return AARCH64
    ? {
      dev,
      ino,
      mode: statView.getUint32(16, true),
      nlink: statView.getUint32(20, true),
      uid: statView.getUint32(24, true),
    }
    : {
      dev,
      ino,
      mode: statView.getUint32(24, true),
      nlink: Number(statView.getBigUint64(16, true)),
      uid: statView.getUint32(28, true),
    };
}

/** The names in the open folder `fd` (without "." and ".."). */
export function namesIn(fd: number): string[] {
  const buffer = new Uint8Array(32768);
  const view = new DataView(buffer.buffer);
  const decoder = new TextDecoder();
  const names: string[] = [];
  call("lseek", fd, 0, 0); // from the start, however often the folder was read
  for (;;) {
    const n = call("getdents64", fd, addressOf(buffer), buffer.length);
    if (n <= 0) return names;
    for (let at = 0; at < n;) {
      const length = view.getUint16(at + 16, true);
      let end = at + 19;
      while (buffer[end] !== 0) end++;
      const name = decoder.decode(buffer.subarray(at + 19, end));
      if (name !== "." && name !== "..") names.push(name);
      at += length;
    }
  }
}

/** Writes all of `bytes` to a blocking or non-blocking fd; returns how many were written before EAGAIN or an error. */
export function writeSome(fd: number, bytes: Bytes): number {
  let done = 0;
  while (done < bytes.length) {
    const r = call("write", fd, addressOf(bytes.subarray(done)), bytes.length - done);
    if (r === -EINTR) continue;
    if (r <= 0) break;
    done += r;
  }
  return done;
}
