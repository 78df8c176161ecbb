/** Where a region file may be, and the rules for creating, adopting and opening one. */
import { type FileInfo, Folder, geteuid, lstat, pageSize, type RegionFile } from "../ffi/file.ts";
import { libc } from "../ffi/libc.ts";
import { readEnv } from "./env.ts";
import { needsFlags } from "./hint.ts";

/** The magic at byte 0, the same bytes on every machine; copied into a plain ArrayBuffer, as TypeScript 5.7 wants. */
const MAGIC = Uint8Array.from(new TextEncoder().encode("LTPM"));

/** Where each layout's futex array starts (spec section 1; 64-bit Linux). */
export const LAYOUT_OFFSETS = { seed: 4, ltp: 76 } as const;

/** Where LTP's C library writes its pid (`context.lib_pid`) in the header of a region it made. */
export const LIB_PID_OFFSET = 8;

/** A region file, open and mapped, and the folder it was found in, held open. */
export interface Region {
  file: RegionFile;
  folder: Folder;
  /** The file's name in `folder`. */
  name: string;
}

function granted(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted" &&
    Deno.permissions.querySync({ name: "write", path }).state === "granted";
}

/** The folder part of a path: "." for a bare name, "/" for a name in the root. */
function dirname(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

function refuse(where: string): Deno.errors.NotCapable {
  const dir = dirname(where);
  return needsFlags(`Access to ${where} is not allowed`, [`--allow-read=${dir}`, `--allow-write=${dir}`]);
}

/**
 * Resolves `path` once, and checks Deno's read and write permission on it
 * both as written and where it really is: FFI could reach any file, so the
 * sandbox's flags are enforced here. The folder is opened (magic links
 * refused) and asked where it really is; the file is then looked up inside
 * that open folder and never through a symlink, so no later rename or swap
 * of any component can lead elsewhere.
 */
function locate(path: string): { folder: Folder; name: string } {
  libc(); // without FFI nothing else matters: say that first
  if (path.includes("\0")) throw new Deno.errors.InvalidData(`${JSON.stringify(path)} contains a NUL byte`);
  const dir = dirname(path);
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (name === "" || name === "." || name === "..") {
    throw new Deno.errors.InvalidData(`${path} names a folder: a checkpoint region is a file`);
  }
  if (!granted(path)) throw refuse(path);
  const folder = Folder.open(dir);
  const real = `${folder.realPath === "/" ? "" : folder.realPath}/${name}`;
  if (!granted(real)) {
    folder.close();
    throw refuse(real);
  }
  return { folder, name };
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

function hasMagic(bytes: Uint8Array): boolean {
  return MAGIC.every((b, i) => bytes[i] === b);
}

/** Runs `make` with the located folder; closes the folder if it throws. */
function inFolder(path: string, make: (folder: Folder, name: string) => RegionFile): Region {
  const { folder, name } = locate(path);
  try {
    return { file: make(folder, name), folder, name };
  } catch (error) {
    folder.close();
    throw error;
  }
}

/** Runs `prepare` on an open file; closes it if it throws. */
function closingOnError(file: RegionFile, prepare: () => void): RegionFile {
  try {
    prepare();
    return file;
  } catch (error) {
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
        const text = JSON.stringify(new TextDecoder().decode(head));
        throw new Deno.errors.InvalidData(`${path} is not a checkpoint region (bad magic: ${text}, expected "LTPM")`);
      }
    });
  });
}

/**
 * Makes `path` a region: creates it (mode 0600, O_EXCL, no symlink), or adopts
 * a regular file of at most a page that is all zeros or already has the magic.
 * Anything else is refused before a byte of it changes. The file only ever
 * grows, so data another process writes meanwhile is never cut off.
 */
export function initRegion(path: string): Region {
  return inFolder(path, (folder, name) => {
    const page = pageSize();
    // a parallel init may create the file between the look and the create: look again
    for (let attempt = 0; attempt < 5; attempt++) {
      const seen = folder.stat(name);
      const created = seen === undefined ? folder.open(name, path, { write: true, create: true }) : undefined;
      if (seen === undefined && created === undefined) continue;
      const { file, info } = created ? { file: created, info: undefined } : openSeen(folder, name, path, seen!, true);
      return closingOnError(file, () => {
        const bytes = info ? adoptable(path, file, info, page) : new Uint8Array(0);
        if (bytes.length < page) file.grow(page, created !== undefined);
        if (!hasMagic(bytes)) file.write(MAGIC, 0);
        file.map(page);
      });
    }
    throw new Deno.errors.Interrupted(`${path} keeps appearing and disappearing; try again`);
  });
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
  if ((!magic || info.size < page) && info.uid !== geteuid()) {
    throw new Deno.errors.PermissionDenied(
      `${path} belongs to uid ${info.uid}; refusing to change another user's file`,
    );
  }
  return bytes;
}

/** A new unique path in `dir`; by default under /dev/shm, or the temporary folder where /dev/shm is missing. */
export function newRegionPath(dir?: string): string {
  libc();
  dir ??= lstat("/dev/shm")?.type === "directory" ? "/dev/shm" : (readEnv("TMPDIR") || "/tmp");
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${dir}/ltp_checkpoint_${Deno.pid}_${random[0].toString(36)}${random[1].toString(36)}`;
}
