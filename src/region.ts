/** Where a region file may be, and the rules for creating, adopting and opening one. */
import { type FileInfo, geteuid, lstat, pageSize, RegionFile } from "../ffi/file.ts";
import { libc, realpath } from "../ffi/libc.ts";
import { readEnv } from "./env.ts";

/** The magic at byte 0, the same bytes on every machine. */
const MAGIC = new TextEncoder().encode("LTPM");

/** Where each layout's futex array starts (spec section 1; 64-bit Linux). */
export const LAYOUT_OFFSETS = { seed: 4, ltp: 76 } as const;

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function granted(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted" &&
    Deno.permissions.querySync({ name: "write", path }).state === "granted";
}

/**
 * Throws `Deno.errors.NotCapable` unless Deno lets us read and write `path`
 * both as written and as resolved: FFI could reach any file, so the
 * sandbox's flags are enforced here, before anything touches the path.
 */
export function checkAccess(path: string): void {
  libc(); // without FFI nothing else matters: say that first
  const refuse = (where: string) => {
    const dir = dirname(where);
    return new Deno.errors.NotCapable(
      `Access to ${where} is not allowed: run again with --allow-read=${dir} --allow-write=${dir}`,
    );
  };
  if (!granted(path)) throw refuse(path);
  const parent = realpath(dirname(path));
  const base = path.slice(path.lastIndexOf("/") + 1);
  const real = parent === undefined ? undefined : parent === "/" ? `/${base}` : `${parent}/${base}`;
  if (real !== undefined && !granted(real)) throw refuse(real);
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

/** Opens the file at `path`, checked: the regular file that lstat saw, nothing swapped in since. */
function openChecked(path: string, seen: FileInfo): { file: RegionFile; info: FileInfo } {
  const file = RegionFile.open(path);
  const info = file.stat();
  if (info.dev !== seen.dev || info.ino !== seen.ino || info.type !== "file") {
    file.close();
    throw new Deno.errors.Interrupted(`${path} changed while it was being opened; try again`);
  }
  return { file, info };
}

function hasMagic(bytes: Uint8Array): boolean {
  return MAGIC.every((b, i) => bytes[i] === b);
}

/** Attaches to an existing region: a regular file of at least a page that starts with the magic. */
export function openRegion(path: string): RegionFile {
  checkAccess(path);
  const seen = lstat(path);
  if (seen === undefined) {
    throw new Deno.errors.NotFound(
      `Checkpoint region ${path} does not exist: create it first (tst_checkpoint init, or Checkpoint.init())`,
    );
  }
  requireRegularFile(path, seen);
  const { file, info } = openChecked(path, seen);
  try {
    const page = pageSize();
    if (info.size < page) {
      throw new Deno.errors.InvalidData(
        `${path} holds ${info.size} bytes, less than one page (${page}): not a checkpoint region`,
      );
    }
    const head = file.read(4, 0);
    if (!hasMagic(head)) {
      throw new Deno.errors.InvalidData(
        `${path} is not a checkpoint region (bad magic: ${
          JSON.stringify(new TextDecoder().decode(head))
        }, expected "LTPM")`,
      );
    }
    file.map(page);
    return file;
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * Makes `path` a region: creates it (mode 0600, O_EXCL, no symlink), or adopts
 * a regular file of at most a page that is all zeros or already has the magic.
 * Anything else is refused before a byte of it changes.
 */
export function initRegion(path: string): RegionFile {
  checkAccess(path);
  const page = pageSize();
  const seen = lstat(path);
  let file: RegionFile;
  let current: Uint8Array = new Uint8Array(0);
  if (seen === undefined) {
    file = RegionFile.open(path, { mode: 0o600 });
  } else {
    requireRegularFile(path, seen);
    const opened = openChecked(path, seen);
    file = opened.file;
    try {
      current = adoptable(path, file, opened.info, page);
    } catch (error) {
      file.close();
      throw error;
    }
  }
  try {
    if (current.length < page) file.truncate(page);
    if (!hasMagic(current)) file.write(MAGIC, 0);
    file.map(page);
    return file;
  } catch (error) {
    file.close();
    throw error;
  }
}

/** The bytes of an existing file that init may take over; throws when it may not. */
function adoptable(path: string, file: RegionFile, info: FileInfo, page: number): Uint8Array {
  if (info.size > page) {
    throw new Deno.errors.InvalidData(
      `${path} holds ${info.size} bytes, more than one page: not a checkpoint region, left as it is`,
    );
  }
  const bytes = file.read(info.size, 0);
  const magic = hasMagic(bytes);
  if (!magic && bytes.some((b) => b !== 0)) {
    throw new Deno.errors.InvalidData(
      `${path} holds other data, not a checkpoint region; refusing to overwrite it (remove it or choose another path)`,
    );
  }
  const changes = !magic || info.size < page;
  const euid = geteuid();
  if (changes && info.uid !== euid) {
    throw new Deno.errors.PermissionDenied(
      `${path} belongs to uid ${info.uid}; refusing to change another user's file`,
    );
  }
  return bytes;
}

/** A new unique path under /dev/shm, or the temporary folder where /dev/shm is missing. */
export function newRegionPath(): string {
  const dir = lstat("/dev/shm")?.type === "directory" ? "/dev/shm" : (readEnv("TMPDIR") || "/tmp");
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${dir}/ltp_checkpoint_${Deno.pid}_${random[0].toString(36)}${random[1].toString(36)}`;
}
