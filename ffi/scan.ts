/**
 * Finding region files in a folder without touching anything else: the
 * folder is listed with getdents64, each entry looked at without following
 * a symlink, and only a regular file of a page or more is opened (read-only,
 * never blocking, without updating its access time where the kernel allows),
 * to read its first 4 bytes. A FIFO, device, socket or symlink is never
 * opened; nothing is written. Each entry is first pinned with O_PATH, which
 * asks no file system anything, and skipped when it is a mount point (its
 * mount differs from the folder's): a FUSE file system mounted on a file
 * could otherwise stall the stat or the open for as long as its daemon likes.
 * @module
 */
import { addressOf, type Bytes, cString, libc, sys } from "./libc.ts";
import {
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  ELOOP,
  ENOENT,
  ENOTDIR,
  EPERM,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOATIME,
  O_NOCTTY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  PATH_MAX,
  RegionFile,
  syscallError,
} from "./file.ts";

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const DT_UNKNOWN = 0;
const DT_REG = 8;

// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
const DIRENT_RECLEN = 16;
const DIRENT_TYPE = 18;
const DIRENT_NAME = 19;

const MAGIC = [0x4c, 0x54, 0x50, 0x4d]; // "LTPM"

/** The stat facts of a file the listing reports. */
export interface FoundInfo {
  dev: bigint;
  ino: bigint;
  uid: number;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  size: number;
}

/** A regular file of a page or more in the folder: a region (open) or one that could not be opened. */
export interface FoundFile {
  /** Its name, the bytes the kernel gave. */
  name: Bytes;
  /** The folder as given, a slash, and the name decoded (invalid UTF-8 as U+FFFD): for messages. */
  path: string;
  info: FoundInfo;
  /** Open read-only, not yet mapped: it starts with the magic. Close it. */
  file?: RegionFile;
  /** The errno of the open, when it failed (another user's file: EACCES). */
  openError?: number;
}

/** What a folder holds that may be a region. */
export interface FolderScan {
  /** Where the kernel says the folder is. */
  realPath: string;
  found: FoundFile[];
  /** Entries not looked at because the time ran out. */
  unexamined: number;
  /** Entries skipped because another file system is mounted on them. */
  mountPoints: number;
}

const statBuffer = new Uint8Array(256);
const statView = new DataView(statBuffer.buffer);

/** newfstatat/fstat into statBuffer: the facts, with the file type bits, or -errno. */
function readStat(r: number): (FoundInfo & { type: number }) | number {
  if (r < 0) return r;
  const at = libc().stat;
  const mode = statView.getUint32(at.mode, true);
  return {
    dev: statView.getBigUint64(at.dev, true),
    ino: statView.getBigUint64(at.ino, true),
    type: mode & S_IFMT,
    mode: mode & 0o7777,
    uid: statView.getUint32(at.uid, true),
    size: Number(statView.getBigInt64(at.size, true)),
  };
}

/** Where an open descriptor's file is, as /proc/self/fd says; undefined when it cannot tell. */
function realPathOf(fd: number): string | undefined {
  const out = new Uint8Array(PATH_MAX);
  const n = sys("readlinkat", AT_FDCWD, addressOf(cString(`/proc/self/fd/${fd}`)), addressOf(out), out.length);
  if (n <= 0 || n >= out.length) return undefined;
  return new TextDecoder().decode(out.subarray(0, n));
}

const fdinfo = new Uint8Array(1024);
const MNT_ID = new TextEncoder().encode("\nmnt_id:");

/** The id of the mount a descriptor of ours is on, from /proc/self/fdinfo (asks no file system); -1 when unknown. */
function mountIdOf(fd: number): number {
  const info = sys("openat", AT_FDCWD, addressOf(cString(`/proc/self/fdinfo/${fd}`)), O_CLOEXEC);
  if (info < 0) return -1;
  const n = sys("pread64", info, addressOf(fdinfo), fdinfo.length, 0);
  sys("close", info);
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

/**
 * Opens the file `pinned` (an O_PATH descriptor) holds, read-only, never
 * blocking or taking a terminal, without touching atime where allowed: the
 * very file pinned, through its /proc/self/fd link, whatever was mounted on
 * or renamed over its name since.
 */
function openPinned(pinned: number): number {
  const link = addressOf(cString(`/proc/self/fd/${pinned}`));
  const flags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  const fd = sys("openat", AT_FDCWD, link, flags | O_NOATIME);
  return fd === -EPERM ? sys("openat", AT_FDCWD, link, flags) : fd;
}

/** Looks at one entry: a FoundFile, "mount point", or undefined for anything that cannot be a region. */
function examine(
  dir: number,
  folderMount: number,
  name: Bytes,
  path: string,
  page: number,
): FoundFile | "mount point" | undefined {
  const cname = new Uint8Array(name.length + 1);
  cname.set(name);
  const pinned = sys("openat", dir, addressOf(cname), O_PATH | O_NOFOLLOW() | O_CLOEXEC);
  if (pinned < 0) return undefined;
  try {
    if (mountIdOf(pinned) !== folderMount) return "mount point";
    const seen = readStat(sys("fstat", pinned, addressOf(statBuffer)));
    if (typeof seen === "number" || seen.type !== S_IFREG || seen.size < page) return undefined;
    const { type: _, ...info } = seen;
    const fd = openPinned(pinned);
    if (fd < 0) return -fd === ENOENT ? undefined : { name, path, info, openError: -fd };
    const head = new Uint8Array(4);
    if (sys("pread64", fd, addressOf(head), 4, 0) === 4 && MAGIC.every((b, i) => head[i] === b)) {
      return { name, path, info, file: new RegionFile(fd, path) };
    }
    sys("close", fd);
    return undefined;
  } finally {
    sys("close", pinned);
  }
}

/**
 * The region files of a folder (a regular file of at least `page` bytes
 * that starts with `LTPM`), and the regular files of that size it may not
 * open; stops looking when `deadline` (performance.now()) has passed. The
 * folder itself is not reached through a symlink; an entry something is
 * mounted on is counted, never looked into.
 *
 * Nothing is opened where `allowed` (Deno's read permission, asked by the
 * caller) says no: the folder at its real path, and each file in it.
 *
 * @throws {Error} When the folder cannot be opened or listed.
 * @throws {Deno.errors.NotCapable} When the folder's real path may not be read.
 */
export function scanFolder(
  path: string,
  page: number,
  deadline: number,
  allowed: (path: string) => boolean,
): FolderScan {
  // O_NOATIME too where allowed: listing a folder updates its access time
  const cpath = addressOf(cString(path));
  const flags = O_DIRECTORY() | O_NOFOLLOW() | O_CLOEXEC;
  let dir = sys("openat", AT_FDCWD, cpath, flags | O_NOATIME);
  if (dir === -EPERM) dir = sys("openat", AT_FDCWD, cpath, flags);
  if (dir === -ENOTDIR || dir === -ELOOP) {
    const seen = readStat(sys("newfstatat", AT_FDCWD, cpath, addressOf(statBuffer), AT_SYMLINK_NOFOLLOW));
    if (typeof seen !== "number" && seen.type === S_IFLNK) {
      throw new Deno.errors.NotCapable(`${path} is a symbolic link, not followed: name the folder it leads to`);
    }
  }
  if (dir < 0) throw syscallError(`Cannot open the folder ${path}`, -dir);
  const result: FolderScan = { realPath: "", found: [], unexamined: 0, mountPoints: 0 };
  try {
    const real = realPathOf(dir);
    const folderMount = mountIdOf(dir);
    if (real === undefined || folderMount < 0) {
      throw new Deno.errors.NotCapable(`Cannot tell where the folder ${path} really is (/proc must be mounted)`);
    }
    result.realPath = real;
    // a symlink at a trailing slash, or a folder inside that is one: checked where it really is, before any open
    if (!allowed(real)) throw new Deno.errors.NotCapable(`it is ${real}: run again with --allow-read=${real}`);
    const decoder = new TextDecoder();
    const dents = new Uint8Array(32768);
    const dentsAt = addressOf(dents);
    for (;;) {
      const n = sys("getdents64", dir, dentsAt, dents.length);
      if (n < 0) throw syscallError(`Cannot list the folder ${path}`, -n);
      if (n === 0) return result;
      for (let at = 0; at < n; at += dents[at + DIRENT_RECLEN] | (dents[at + DIRENT_RECLEN + 1] << 8)) {
        // types from getdents need no look at the file: a FIFO or a mount point is never stat()ed
        const type = dents[at + DIRENT_TYPE];
        if (type !== DT_REG && type !== DT_UNKNOWN) continue;
        if (performance.now() > deadline) {
          result.unexamined++;
          continue;
        }
        const name = dents.slice(at + DIRENT_NAME, dents.indexOf(0, at + DIRENT_NAME));
        const text = decoder.decode(name);
        if (!allowed(`${real === "/" ? "" : real}/${text}`)) continue; // a --deny-read of that one file
        const found = examine(dir, folderMount, name, `${path.replace(/\/+$/, "")}/${text}`, page);
        if (found === "mount point") result.mountPoints++;
        else if (found) result.found.push(found);
      }
    }
  } catch (error) {
    for (const f of result.found) f.file?.close();
    throw error;
  } finally {
    sys("close", dir);
  }
}

/**
 * Whether process `pid` exists, from /proc: null when that cannot be told
 * (no /proc, or /proc hides other users' processes: hidepid).
 */
export function processExists(pid: number): boolean | null {
  const r = sys("newfstatat", AT_FDCWD, addressOf(cString(`/proc/${pid}`)), addressOf(statBuffer), AT_SYMLINK_NOFOLLOW);
  if (r === 0) return true;
  if (r !== -ENOENT) return null;
  // pid 1 always exists: where it cannot be seen, absence proves nothing
  const init = sys("newfstatat", AT_FDCWD, addressOf(cString("/proc/1")), addressOf(statBuffer), AT_SYMLINK_NOFOLLOW);
  return init === 0 ? false : null;
}
