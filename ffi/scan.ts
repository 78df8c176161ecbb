/**
 * Finding candidate files in a folder without touching anything else: the
 * folder is listed with getdents64, each entry looked at without following
 * a symlink, and only a regular file of a page or more is opened (read-only,
 * never blocking, without updating its access time where the kernel allows),
 * to read its first bytes, which the caller judges. A FIFO, device, socket
 * or symlink is never opened; nothing is written. Each entry is first pinned
 * with O_PATH, which asks no file system anything, and skipped when it is a
 * mount point (its mount differs from the folder's): a FUSE file system
 * mounted on a file could otherwise stall the stat or the open for as long
 * as its daemon likes. At most four descriptors are held at once (the
 * folder, one entry pinned, its fdinfo or the file itself), whatever the
 * folder holds: each wanted file is handed to the caller while open and
 * closed after, so planted files cannot use up the descriptors a region
 * with a waiter needs.
 * @module
 */
import {
  AT_FDCWD,
  DT_REG,
  DT_UNKNOWN,
  ELOOP,
  EMFILE,
  ENFILE,
  ENOENT,
  ENOTDIR,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOCTTY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import type { Bytes } from "./libc.ts";
import { SharedPage } from "./page.ts";
import { close, DirectoryReader, fstat, lstat, mountIdOf, openat, openNoAtime, pread, realPathOf } from "./syscalls.ts";

/** How many of a file's first bytes the caller is shown. */
const HEAD_LENGTH = 4;

/** The stat facts of a file the listing reports. */
export interface FoundInfo {
  dev: bigint;
  ino: bigint;
  uid: number;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  size: number;
}

/** A regular file of a page or more in the folder: one the caller wanted (open), or one that could not be opened. */
export interface FoundFile {
  /** Its name, the bytes the kernel gave. */
  name: Bytes;
  /** The folder as given, a slash, and the name decoded (invalid UTF-8 as U+FFFD): for messages. */
  path: string;
  info: FoundInfo;
  /** Open read-only, not yet mapped, its first bytes wanted: only while `use` runs; the scan closes it after. */
  file?: SharedPage;
  /** The errno of the open, when it failed (another user's file: EACCES). */
  openError?: number;
}

/** What a folder holds that the caller may want. */
export interface FolderScan {
  /** Where the kernel says the folder is. */
  realPath: string;
  /** Entries not looked at because the time ran out. */
  unexamined: number;
  /** Entries skipped because another file system is mounted on them. */
  mountPoints: number;
  /**
   * Entries not looked at because a call failed, by errno: EMFILE or ENFILE
   * when no descriptor was left (never read as a mount point).
   */
  unreadable: Map<number, number>;
}

/** The rules of one scan. */
export interface ScanRules {
  /** The least size of a file looked into (a page). */
  minSize: number;
  /** When to stop looking, as performance.now() reads it. */
  deadline: number;
  /** Whether Deno's read permission allows `path` (the caller asks Deno). */
  allowed: (path: string) => boolean;
  /** Whether a file that starts with `head` (its first bytes, fewer in a short file) is handed to `use`, open. */
  wanted: (head: Uint8Array) => boolean;
  /**
   * Called for each wanted file while it is open (`file`), and for each file
   * of that size that could not be opened (`openError`); the scan closes the
   * file when it returns. An error it throws ends the scan.
   */
  use: (found: FoundFile) => void;
}

/**
 * Opens the file `pinned` (an O_PATH descriptor) holds, read-only, never
 * blocking or taking a terminal, without touching atime where allowed: the
 * very file pinned, through its /proc/self/fd link, whatever was mounted on
 * or renamed over its name since.
 */
function openPinned(pinned: number): number {
  const link = `/proc/self/fd/${pinned}`;
  return openNoAtime((flags) => openat(AT_FDCWD, link, flags), O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

/** Whether an errno means that no descriptor was left (this process's or the system's). */
function outOfDescriptors(errno: number): boolean {
  return errno === EMFILE || errno === ENFILE;
}

/**
 * The mount id of `fd`, or -errno: mountIdOf() gives no errno, and a
 * failed read of fdinfo (EMFILE) must not read as another mount.
 */
function mountOf(fd: number): number {
  const id = mountIdOf(fd);
  if (id >= 0) return id;
  const probe = openat(AT_FDCWD, `/proc/self/fdinfo/${fd}`, O_CLOEXEC);
  if (probe < 0) return probe;
  close(probe);
  return -ENOENT;
}

/**
 * Looks at one entry: a FoundFile, "mount point", an errno (positive) when
 * it could not be looked at for want of a descriptor or of fdinfo, or
 * undefined for anything not wanted (or gone meanwhile).
 */
function examine(
  dir: number,
  folderMount: number,
  name: Bytes,
  path: string,
  rules: ScanRules,
): FoundFile | "mount point" | number | undefined {
  const cname = new Uint8Array(name.length + 1);
  cname.set(name);
  const pinned = openat(dir, cname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pinned < 0) return outOfDescriptors(-pinned) ? -pinned : undefined;
  try {
    const mount = mountOf(pinned);
    if (mount < 0) return -mount;
    if (mount !== folderMount) return "mount point";
    let seen;
    try {
      seen = fstat(pinned, path);
    } catch {
      return undefined;
    }
    if (seen.type !== "file" || seen.size < rules.minSize) return undefined;
    const info: FoundInfo = { dev: seen.dev, ino: seen.ino, uid: seen.uid, mode: seen.mode, size: seen.size };
    const fd = openPinned(pinned);
    if (fd < 0) {
      if (outOfDescriptors(-fd)) return -fd;
      return -fd === ENOENT ? undefined : { name, path, info, openError: -fd };
    }
    const head = new Uint8Array(HEAD_LENGTH);
    const n = pread(fd, head, 0);
    if (n > 0 && rules.wanted(head.subarray(0, n))) return { name, path, info, file: new SharedPage(fd, path) };
    close(fd);
    return undefined;
  } finally {
    close(pinned);
  }
}

/**
 * Hands `rules.use` the regular files of a folder of at least
 * `rules.minSize` bytes whose first bytes the caller wants, one at a time
 * and open, and those of that size it may not open; stops looking when
 * `rules.deadline` has passed. The folder itself is not
 * reached through a symlink; an entry something is mounted on is counted,
 * never looked into.
 *
 * Nothing is opened where `rules.allowed` says no: the folder at its real
 * path, and each file in it.
 *
 * @throws {Error} When the folder cannot be opened or listed.
 * @throws {Deno.errors.NotCapable} When the folder's real path may not be read.
 */
export function scanFolder(path: string, rules: ScanRules): FolderScan {
  // O_NOATIME too where allowed: listing a folder updates its access time
  const dir = openNoAtime((flags) => openat(AT_FDCWD, path, flags), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir === -ENOTDIR || dir === -ELOOP) {
    let seen;
    try {
      seen = lstat(path);
    } catch {
      // said below, as the open's error
    }
    if (seen?.type === "symlink") {
      throw new Deno.errors.NotCapable(`${path} is a symbolic link, not followed: name the folder it leads to`);
    }
  }
  if (dir < 0) throw syscallError(`Cannot open the folder ${path}`, -dir, "open");
  const result: FolderScan = { realPath: "", unexamined: 0, mountPoints: 0, unreadable: new Map() };
  try {
    const real = realPathOf(dir);
    const folderMount = mountOf(dir);
    if (outOfDescriptors(-folderMount)) throw syscallError(`Cannot look into the folder ${path}`, -folderMount);
    if (real === undefined || folderMount < 0) {
      throw new Deno.errors.NotCapable(`Cannot tell where the folder ${path} really is (/proc must be mounted)`);
    }
    result.realPath = real;
    // a symlink at a trailing slash, or a folder inside that is one: checked where it really is, before any open
    if (!rules.allowed(real)) throw new Deno.errors.NotCapable(`it is ${real}: run again with --allow-read=${real}`);
    const decoder = new TextDecoder();
    const entries = new DirectoryReader(32768);
    for (;;) {
      const n = entries.read(dir);
      if (n < 0) throw syscallError(`Cannot list the folder ${path}`, -n);
      if (n === 0) return result;
      while (entries.next()) {
        // types from getdents need no look at the file: a FIFO or a mount point is never stat()ed
        const type = entries.type;
        if (type !== DT_REG && type !== DT_UNKNOWN) continue;
        if (performance.now() > rules.deadline) {
          result.unexamined++;
          continue;
        }
        const name = entries.name().slice();
        const text = decoder.decode(name);
        if (!rules.allowed(`${real === "/" ? "" : real}/${text}`)) continue; // a --deny-read of that one file
        const found = examine(dir, folderMount, name, `${path.replace(/\/+$/, "")}/${text}`, rules);
        if (found === "mount point") result.mountPoints++;
        else if (typeof found === "number") result.unreadable.set(found, (result.unreadable.get(found) ?? 0) + 1);
        else if (found) {
          try {
            rules.use(found);
          } finally {
            found.file?.close();
          }
        }
      }
    }
  } finally {
    close(dir);
  }
}
