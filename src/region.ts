/** Where a region file may be, and the rules for creating, adopting and opening one. */
import { Folder } from "../ffi/folder.ts";
import type { SharedPage } from "../ffi/page.ts";
import { dirname, normalise } from "../ffi/path.ts";
import { type FileInfo, geteuid, lstat, pageSize } from "../ffi/syscalls.ts";
import { libc } from "../ffi/libc.ts";
import { readEnv } from "./env.ts";
import { escapeBytes } from "./escape.ts";
import { PermissionNeeded } from "./errors.ts";
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
  // write is asked only where read is granted: each query of a path costs ~0.13 ms of a CLI call
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
function allowedRoot(real: string): string | undefined {
  const parts = real.split("/").filter(Boolean);
  for (let depth = 0; depth <= parts.length; depth++) {
    const folder = `/${parts.slice(0, depth).join("/")}`;
    const allowed = grant(folder);
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

/**
 * Resolves `path` once, and checks Deno's read and write permission on it
 * both as written and where it really is: FFI could reach any file, so the
 * sandbox's flags are enforced here. The folder is opened (magic links
 * refused; its last component not followed with `noFollow`) and asked
 * where it really is; from then on it is held beneath the outermost allowed
 * folder that contains it, and the file is looked up, created and removed
 * beneath that folder, never through a symlink: a rename or swap of any
 * component afterwards can lead nowhere outside it.
 */
function locate(path: string, noFollow = false): { folder: Folder; name: string } {
  libc(); // without FFI nothing else matters: say that first
  if (path.includes("\0")) throw new Deno.errors.InvalidData(`${JSON.stringify(path)} contains a NUL byte`);
  const dir = dirname(path);
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (name === "" || name === "." || name === "..") {
    throw new Deno.errors.InvalidData(`${path} names a folder: a checkpoint region is a file`);
  }
  if (!granted(path)) throw refuse(`Access to ${path} is not allowed`, folderOf(path));
  const opened = Folder.open(dir, { noFollow });
  const realDir = opened.realPath;
  const real = `${realDir === "/" ? "" : realDir}/${name}`;
  const root = allowedRoot(realDir);
  try {
    if (root === undefined) {
      throw refuse(
        granted(real)
          ? `Access to ${real} is allowed, but not to its folder, which is needed to keep it there`
          : `Access to ${real} is not allowed`,
        realDir,
      );
    }
    // the file's own permission where it really is: a --deny-* of that one file must hold through a symlinked folder
    if (real !== normalise(path) && !granted(real)) throw refuse(`Access to ${real} is not allowed`, realDir);
    return { folder: opened.within(root), name };
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
  const file = folder.open(name, path, { write })!;
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
  const info = lstat(folder);
  if (info === undefined) throw new Deno.errors.NotFound(`The folder ${dir} does not exist: create it first`);
  if (info.type === "symlink") {
    throw new Deno.errors.InvalidData(`${dir} is a symbolic link: name the folder it points to instead`);
  }
  if (info.type !== "directory") throw new Deno.errors.InvalidData(`${dir} is a ${info.type}, not a folder`);
  return folder;
}
