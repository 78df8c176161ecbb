/** Where a region file may be, and the rules for creating, adopting and opening one. */
import { Folder, type FolderRules, owner } from "../ffi/folder.ts";
import type { SharedPage } from "../ffi/page.ts";
import { dirname, isProc, normalise } from "../ffi/path.ts";
import { type FileInfo, geteuid, lstat, pageSize } from "../ffi/syscalls.ts";
import { libc } from "../ffi/libc.ts";
import { readEnv } from "./env.ts";
import { escapeBytes } from "./escape.ts";
import { shellQuote } from "./text.ts";
import { PermissionNeeded, runAgainWith } from "./errors.ts";
import { hasMagic, MAGIC } from "./layout.ts";

/** A region file, open and mapped, and the folder it was found in, held open. */
export interface Region {
  file: SharedPage;
  folder: Folder;
  /** The file's name in `folder`. */
  name: string;
}

/** Whether reading and writing `path` are both granted; `"all"` when no exception is denied anywhere below it. */
function grant(path: string): "all" | "some" | undefined {
  // write is asked only where read is granted: each query of a path is a measurable part of a CLI call
  const read = Deno.permissions.querySync({ name: "read", path });
  if (read.state !== "granted") return undefined;
  const write = Deno.permissions.querySync({ name: "write", path });
  if (write.state !== "granted") return undefined;
  return read.partial || write.partial ? "some" : "all";
}

function granted(path: string): boolean {
  return grant(path) !== undefined;
}

/**
 * The outermost folder among the real path `real` and its ancestors where
 * everything may be read and written (or `real` itself, where only it is
 * allowed): files are resolved beneath it, so the higher it is the fewer
 * folders that someone else may move out of it are trusted. Undefined when
 * no folder on the way is allowed (only a file).
 */
function allowedRoot(
  real: string,
  allowedHere: (path: string) => "all" | "some" | undefined = grant,
): string | undefined {
  const parts = real.split("/").filter(Boolean);
  for (let depth = 0; depth <= parts.length; depth++) {
    const folder = `/${parts.slice(0, depth).join("/")}`;
    const allowed = allowedHere(folder);
    if (allowed === "all" || (allowed === "some" && depth === parts.length)) return folder;
  }
  return undefined;
}

/**
 * The folder a hint names for `path`: `.`, `..` and `//` resolved as
 * written, and a relative path made absolute where the working folder may
 * be read (Deno.cwd() needs that); else left relative.
 */
function folderOf(path: string): string {
  const dir = dirname(normalise(path));
  if (dir.startsWith("/") || Deno.permissions.querySync({ name: "read", path: "." }).state !== "granted") return dir;
  return normalise(`${Deno.cwd()}/${dir}`);
}

function refuse(what: string, folder: string): PermissionNeeded {
  return new PermissionNeeded(what, [`--allow-read=${folder}`, `--allow-write=${folder}`]);
}

/** `path` made absolute (a relative one from the working folder, where that may be read) and normalised as written. */
function absolute(path: string): string {
  if (path.startsWith("/")) return normalise(path);
  if (Deno.permissions.querySync({ name: "read", path: "." }).state !== "granted") {
    throw refuse(`Access to ${path} is not allowed`, folderOf(path));
  }
  return normalise(`${Deno.cwd()}/${path}`);
}

/**
 * The folder `dir` (absolute, normalised), opened beneath the outermost
 * folder on its way that Deno allows (`allowed` tells): nothing below that
 * one is followed, entered or asked about before it is checked, so a
 * symlink or a file system mounted by someone else is refused before it is
 * walked. `owner`: the folders must be this user's or root's and written by
 * no one else unless sticky.
 */
export function openBeneathAllowed(
  dir: string,
  allowed: (path: string) => "all" | "some" | undefined,
  rules: FolderRules = {},
): Folder | undefined {
  if (isProc(dir)) {
    throw new Deno.errors.NotCapable(
      `${dir} leads through /proc: regions are never reached through /proc (another process's view); use a plain path`,
    );
  }
  const root = allowedRoot(dir, allowed);
  if (root === undefined) return undefined;
  const parts = dir === root ? [] : dir.slice(root === "/" ? 1 : root.length + 1).split("/");
  return Folder.open(root, parts, rules);
}

/**
 * Checks a folder given to a listing before anything looks into it: a
 * path through /proc, a folder that does not exist, a symlink or another
 * file system below the allowed folder are refused in one line (the
 * message), and so is a folder that may not be read. Undefined when it may
 * be listed.
 */
export function listingRefusal(folder: string): string | undefined {
  try {
    if (folder.includes("\0")) return `${JSON.stringify(folder)} contains a NUL byte`;
    const dir = absolute(folder);
    const readable = (path: string) =>
      Deno.permissions.querySync({ name: "read", path }).state === "granted" ? "all" : undefined;
    const opened = openBeneathAllowed(dir, readable);
    if (opened === undefined) {
      // whether it exists at all, asked the same safe way (only the folders' names are looked up, from the root)
      try {
        Folder.open("/", dir.split("/").filter(Boolean)).close();
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) throw error;
        // a symlink or a mount on the way: what Deno allows decides, not this look
      }
      return runAgainWith([`--allow-read=${dir}`]);
    }
    opened.close();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * Resolves `path` once, beneath the outermost folder on its way where Deno
 * allows reading and writing: FFI could reach any file, so the sandbox's
 * flags are enforced here. Nothing below that folder is followed (no
 * symlink, no magic link, no other file system), and each folder on the way
 * must be this user's or root's and written by no one else unless sticky,
 * so that no other user can move it; the file is then looked up, created
 * and removed beneath the held folder, resolved afresh each time. Deno's
 * permission is checked on the file as written and where it really is.
 */
function locate(path: string, noFollow = false): { folder: Folder; name: string } {
  libc(); // without FFI nothing else matters: say that first
  if (path.includes("\0")) throw new Deno.errors.InvalidData(`${JSON.stringify(path)} contains a NUL byte`);
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (name === "" || name === "." || name === "..") {
    throw new Deno.errors.InvalidData(`${path} names a folder: a checkpoint region is a file`);
  }
  const file = absolute(path);
  const dir = dirname(file);
  const opened = openBeneathAllowed(dir, grant, { owner: geteuid(), noFollow });
  if (opened === undefined) {
    throw refuse(
      granted(file)
        ? `Access to ${file} is allowed, but not to its folder, which is needed to keep it there`
        : `Access to ${path} is not allowed`,
      folderOf(path),
    );
  }
  try {
    if (!granted(file)) throw refuse(`Access to ${path} is not allowed`, folderOf(path));
    // the file's own permission where it really is: a --deny-* of that one file must hold through a symlinked root
    const real = `${opened.realPath === "/" ? "" : opened.realPath}/${name}`;
    if (real !== file && !granted(real)) throw refuse(`Access to ${real} is not allowed`, opened.realPath);
    return { folder: opened, name };
  } catch (error) {
    opened.close();
    throw error;
  }
}

/** Refuses anything at a path but a regular file. */
function requireRegularFile(path: string, info: FileInfo): void {
  if (info.type === "symlink") {
    throw new Deno.errors.InvalidData(
      `${path} is a symbolic link; checkpoint regions are never used through one: point LTP_IPC_PATH at a regular file`,
    );
  }
  if (info.type !== "file") {
    throw new Deno.errors.InvalidData(`${path} is a ${info.type}, not a checkpoint region`);
  }
}

/** Opens the file that `seen` describes: the regular file looked at, nothing swapped in since. */
function openSeen(folder: Folder, name: string, path: string, seen: FileInfo, write: boolean) {
  requireRegularFile(path, seen);
  let file;
  try {
    file = folder.open(name, path, { write })!;
  } catch (error) {
    if (!(error instanceof Deno.errors.PermissionDenied) || seen.uid === geteuid()) throw error;
    throw new Deno.errors.PermissionDenied(
      `Cannot open ${path}: it belongs to ${owner(seen.uid)} with mode 0${seen.mode.toString(8)}, ` +
        `which lets no other user ${write ? "write" : "read"} it: run as that user (or root), ` +
        `or have them make it 0666 as LTP's C library does: chmod 0666 ${shellQuote(path)}`,
    );
  }
  const info = file.stat();
  if (info.dev !== seen.dev || info.ino !== seen.ino || info.type !== "file") {
    file.close();
    throw new Deno.errors.Interrupted(`${path} changed while it was being opened; try again`);
  }
  return { file, info };
}

/** Runs `make` with the located folder; closes the folder if it throws. */
function inFolder(
  path: string,
  make: (folder: Folder, name: string) => SharedPage,
  noFollow = false,
): Region {
  const { folder, name } = locate(path, noFollow);
  try {
    return { file: make(folder, name), folder, name };
  } catch (error) {
    folder.close();
    throw error;
  }
}

/** Runs `prepare` on an open file; if it throws, runs `undo` (best effort) and closes the file. */
function closingOnError(file: SharedPage, prepare: () => void, undo?: () => void): SharedPage {
  try {
    prepare();
    return file;
  } catch (error) {
    try {
      undo?.();
    } catch {
      // the error that made the undo necessary is the one to report
    }
    file.close();
    throw error;
  }
}

/** Attaches to an existing region: a regular file of at least a page that starts with the magic. */
export function openRegion(path: string): Region {
  return inFolder(path, (folder, name) => {
    const seen = folder.stat(name);
    if (seen === undefined) {
      throw new Deno.errors.NotFound(
        `Checkpoint region ${path} does not exist: create it first (tst_checkpoint init, or Checkpoint.init())`,
      );
    }
    const { file, info } = openSeen(folder, name, path, seen, false);
    return closingOnError(file, () => {
      const page = pageSize();
      if (info.size < page) {
        throw new Deno.errors.InvalidData(
          `${path} holds ${info.size} bytes, less than one page (${page}): not a checkpoint region`,
        );
      }
      const head = file.map(page).subarray(0, 4);
      if (!hasMagic(head)) {
        throw new Deno.errors.InvalidData(
          `${path} is not a checkpoint region (bad magic: "${escapeBytes(head)}", expected "LTPM")`,
        );
      }
    });
  });
}

/**
 * Makes `path` a region: creates it (mode 0600, O_EXCL, no symlink), or adopts
 * a regular file of ours, with one name, of at most a page that is all zeros
 * or already has the magic. Anything else is refused before a byte of it
 * changes. The file only ever grows, so data another process writes
 * meanwhile is never cut off. A file it created and could not make a region
 * (a full file system) is removed again.
 */
export function initRegion(path: string): Region {
  return inFolder(path, (folder, name) => {
    // a parallel init may create the file between the look and the create: look again
    for (let attempt = 0; attempt < 5; attempt++) {
      const seen = folder.stat(name);
      if (seen === undefined) {
        const created = folder.open(name, path, { write: true, create: true });
        if (created) return prepareCreated(folder, name, created);
        continue;
      }
      const { file, info } = openSeen(folder, name, path, seen, true);
      return closingOnError(file, () => {
        const page = pageSize();
        const bytes = adoptable(path, file, info, page);
        if (bytes.length < page) file.grow(page, false);
        if (!hasMagic(bytes)) file.write(Uint8Array.from(MAGIC), 0);
        file.map(page);
      });
    }
    throw new Deno.errors.Interrupted(`${path} keeps appearing and disappearing; try again`);
  });
}

/**
 * A fresh private region (mode 0600) under a new unique name in `dir` (see
 * {@linkcode newRegionPath}), never adopting a file: for `create()`, whose
 * region is removed again on close. `dir` itself is not followed if it is a
 * symlink.
 */
export function createRegion(dir?: string): Region {
  const path = newRegionPath(dir);
  return inFolder(path, (folder, name) => {
    const created = folder.open(name, path, { write: true, create: true });
    if (!created) throw new Deno.errors.AlreadyExists(`${path} exists already; try again`);
    return prepareCreated(folder, name, created);
  }, dir !== undefined);
}

/** Sizes a file just created to a page and writes the magic; removes it again (if it still holds it) on failure. */
function prepareCreated(folder: Folder, name: string, file: SharedPage): SharedPage {
  return closingOnError(file, () => {
    const page = pageSize();
    file.grow(page, true);
    file.write(Uint8Array.from(MAGIC), 0);
    file.map(page);
  }, () => folder.removeIf(name, file.stat()));
}

/** The bytes of an existing file that init may take over; throws when it may not. */
function adoptable(path: string, file: SharedPage, info: FileInfo, page: number): Uint8Array {
  // the kernel's protected_regular refuses even root's O_CREAT on such a file in a sticky folder, for this reason
  if (info.uid !== geteuid()) {
    throw new Deno.errors.PermissionDenied(
      `${path} belongs to uid ${info.uid}, so another user could have planted it: remove it, or choose another path`,
    );
  }
  if (info.nlink > 1) {
    throw new Deno.errors.PermissionDenied(
      `${path} has ${info.nlink} names (hard links), so someone could have linked another file here: ` +
        `remove it, or choose another path`,
    );
  }
  if (info.size > page) {
    throw new Deno.errors.InvalidData(
      `${path} holds ${info.size} bytes, more than one page: not a checkpoint region, left as it is`,
    );
  }
  const bytes = file.read(info.size, 0);
  if (!hasMagic(bytes) && bytes.some((b) => b !== 0)) {
    throw new Deno.errors.InvalidData(
      `${path} holds other data, not a checkpoint region; refusing to overwrite it (remove it or choose another path)`,
    );
  }
  return bytes;
}

/**
 * A new unique path in `dir`, which must be an allowed folder that exists
 * (and not a symlink to one). By default /dev/shm where it exists and may be
 * read and written, else the temporary folder (TMPDIR where it may be read,
 * else /tmp) where that may be.
 * @throws {Deno.errors.NotCapable} When `dir` is not allowed, or without `dir` when neither folder is.
 */
export function newRegionPath(dir?: string, pid: number = Deno.pid): string {
  libc();
  const folder = dir === undefined ? defaultFolder() : existingFolder(dir);
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${folder === "/" ? "" : folder}/ltp_checkpoint_${pid}_${random[0].toString(36)}${random[1].toString(36)}`;
}

function defaultFolder(): string {
  const shm = lstat("/dev/shm")?.type === "directory";
  if (shm && granted("/dev/shm")) return "/dev/shm";
  const tmp = readEnv("TMPDIR") || "/tmp";
  if (granted(tmp)) return tmp;
  const folder = shm ? "/dev/shm" : folderOf(`${tmp}/x`);
  throw new PermissionNeeded(
    "A new region needs a folder it may write",
    [`--allow-read=${folder}`, `--allow-write=${folder}`],
    "give create({ dir }) or init(path) one that is allowed, or ",
  );
}

/** `dir` without trailing slashes, checked: allowed, there, a folder and not a symlink. */
function existingFolder(dir: string): string {
  if (dir.includes("\0")) throw new Deno.errors.InvalidData(`${JSON.stringify(dir)} contains a NUL byte`);
  const folder = dir.replace(/(?<=.)\/+$/, "");
  if (!granted(folder)) throw refuse(`Access to ${dir} is not allowed`, folderOf(`${folder}/x`));
  // looked at as any region's folder is, beneath the allowed folder (the create looks again)
  try {
    openBeneathAllowed(absolute(folder), grant, { owner: geteuid(), noFollow: true })?.close();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Deno.errors.NotFound(`${error.message}: create it first`);
    throw error;
  }
  return folder;
}
