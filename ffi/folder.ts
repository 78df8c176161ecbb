/**
 * A folder that files are opened, created and removed in, held so that it
 * stays confined to an allowed folder even while others move folders about.
 * @module
 */
import {
  AT_FDCWD,
  EAGAIN,
  EEXIST,
  ELOOP,
  ENOENT,
  ENOSYS,
  ENOTDIR,
  EPERM,
  EXDEV,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOCTTY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  O_RDWR,
  PATH_MAX,
  RESOLVE_BENEATH,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  RESOLVE_NO_XDEV,
  S_ISVTX,
} from "./constants.ts";
import { syscallError } from "./errno.ts";
import { cString } from "./libc.ts";
import { SharedPage } from "./page.ts";
import { isProc, normalise } from "./path.ts";
import {
  close,
  type FileId,
  type FileInfo,
  fstat,
  lstat,
  mountIdOf,
  openat,
  openat2,
  openNoAtime,
  pread,
  realPathOf,
  unlinkat,
} from "./syscalls.ts";

// the rest of a path beneath the anchor: no symlink, no magic link, no other mount, nothing outside it
const RESOLVE_WITHIN = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV;
const PINNED = O_PATH | O_NOFOLLOW | O_CLOEXEC;

/** Who may be trusted with the folders on the way: a folder that only they (or root) can change stays where it is. */
export interface FolderRules {
  /** Require each folder from the root down to be this user's or root's, and written by no one else unless sticky. */
  owner?: number;
  /** Do not follow the root itself if it is a symlink. */
  noFollow?: boolean;
}

/**
 * A folder that files are opened, created and removed in, confined to an
 * allowed folder (the root). Reached from the root one component at a
 * time, on descriptors: no symlink is followed, no magic link, and no other
 * file system is entered below the root, except one mounted by root in a
 * folder only root may write (as /dev/shm in /dev), never a FUSE one, whose
 * server could leave every look at it waiting. Each folder on the way is
 * checked (`FolderRules`) before the next step. The innermost mount root
 * on the way, or the root, is held (a mount point cannot be renamed), and
 * the folder's path beneath it is resolved afresh for every open, create,
 * stat and removal with openat2's RESOLVE_BENEATH and RESOLVE_NO_XDEV, so
 * the kernel refuses once the folder has been moved out. Without openat2
 * the folder itself is held, each step's mount compared with its parent's,
 * and the folder checked to be still at its real path before a removal and
 * after a create.
 */
export class Folder {
  #fd: number;
  /** The folder's path beneath the anchor held in #fd; undefined when #fd is the folder itself (no openat2). */
  #rest: string | undefined;

  private constructor(fd: number, readonly realPath: string, rest?: string) {
    this.#fd = fd;
    this.#rest = rest;
  }

  /**
   * Opens the folder `parts` beneath `root`. The root itself is opened as
   * written (symlinks followed: it is the folder allowed; magic links such
   * as /proc/PID/root refused); each part below it must be a folder, not a
   * symlink, on the same file system, and pass `rules`.
   * @throws {Deno.errors.NotFound} When a folder on the way does not exist.
   * @throws {Deno.errors.NotCapable} When a part is a symlink or another file system, or a folder is not trusted.
   */
  static open(root: string, parts: string[], rules: FolderRules = {}): Folder {
    if (isProc(normalise(root))) throw throughProc(root);
    // the root not followed either (noFollow), and a symlink said as one below
    const flags = rules.noFollow ? PINNED : O_PATH | O_DIRECTORY | O_CLOEXEC;
    let fd = openat2(AT_FDCWD, root, flags, 0, RESOLVE_NO_MAGICLINKS);
    // before Linux 5.6, or where a seccomp filter forbids it: plain opens, each step's mount compared
    const plain = fd === -ENOSYS || fd === -EPERM;
    if (plain) fd = openat(AT_FDCWD, root, flags);
    if (fd === -ELOOP) {
      throw new Deno.errors.NotCapable(
        `The folder ${root} is reached through a magic link (such as /proc/PID/root): use a plain path`,
      );
    }
    if (fd === -ENOENT) throw new Deno.errors.NotFound(`The folder ${root} does not exist`);
    if (fd < 0) throw syscallError(`Cannot open the folder ${root}`, -fd);
    let anchor = fd;
    let current = fd;
    let rest: string[] = [];
    let shown = root;
    const closeAll = () => {
      if (current !== anchor) close(current);
      close(anchor);
    };
    try {
      let info = fstat(current, root);
      if (info.type === "symlink") {
        throw new Deno.errors.InvalidData(`${root} is a symbolic link: name the folder it points to instead`);
      }
      if (info.type !== "directory") throw new Deno.errors.InvalidData(`${root} is a ${info.type}, not a folder`);
      if (plain && isProc(realPathOf(current) ?? "/proc")) throw throughProc(root);
      trust(info, root, rules);
      let mount = plain ? mountIdOf(current) : -1;
      for (const part of parts) {
        shown = `${shown === "/" ? "" : shown}/${part}`;
        let next = plain ? openat(current, part, PINNED) : beneath(current, part, PINNED, 0, RESOLVE_WITHIN);
        const exdev = next === -EXDEV;
        if (exdev) next = beneath(current, part, PINNED, 0, RESOLVE_WITHIN & ~RESOLVE_NO_XDEV);
        if (next === -ENOENT) throw new Deno.errors.NotFound(`The folder ${shown} does not exist`);
        if (next === -EXDEV) {
          // beneath without NO_XDEV: the kernel found it outside the folder it was looked up in, at that instant
          throw new Deno.errors.NotCapable(`The folder ${shown} was moved out while it was being opened`);
        }
        if (next < 0) throw syscallError(`Cannot open the folder ${shown}`, -next);
        const nextMount = plain || exdev ? mountIdOf(next) : -1;
        // compared, not taken from EXDEV alone: the step may have failed for another reason and gone through now
        if ((plain || exdev) && mount < 0) mount = mountIdOf(current);
        const crossed = (plain || exdev) && nextMount !== mount;
        if (crossed) {
          try {
            mayCross(info, nextMount, shown);
          } catch (error) {
            close(next);
            throw error;
          }
        }
        if (current !== anchor) close(current);
        current = next;
        mount = nextMount;
        info = fstat(current, shown);
        if (info.type === "symlink") {
          // below the allowed folder no symlink is followed
          throw new Deno.errors.InvalidData(`${shown} is a symbolic link: name the folder it points to instead`);
        }
        if (info.type !== "directory") throw new Deno.errors.InvalidData(`${shown} is a ${info.type}, not a folder`);
        trust(info, shown, rules);
        if (crossed && !plain) {
          // a mount point cannot be renamed: the new anchor stays where it is
          close(anchor);
          anchor = current;
          rest = [];
        } else {
          rest.push(part);
        }
      }
      const real = realPathOf(current);
      if (real === undefined || !real.startsWith("/") || real.endsWith(" (deleted)")) {
        throw new Deno.errors.NotCapable(
          `Cannot tell where the folder ${shown} really is (/proc must be mounted, and its real path fit in ${PATH_MAX} bytes)`,
        );
      }
      if (plain) {
        if (current !== anchor) close(anchor);
        anchor = current;
        return new Folder(current, real);
      }
      if (current !== anchor) close(current);
      current = anchor;
      return new Folder(anchor, real, rest.length === 0 ? "." : rest.join("/"));
    } catch (error) {
      closeAll();
      throw error;
    }
  }

  /**
   * Whether `real`, looked up afresh, is this very folder: without openat2 a
   * magic link may lead elsewhere (another mount namespace) while
   * /proc/self/fd names a path that looks harmless, and a folder may have
   * been moved since it was opened.
   */
  #isAt(real: string): boolean {
    if (isProc(real)) return false;
    try {
      const { dev, ino } = fstat(this.#fd, real);
      const there = lstat(real);
      return there?.type === "directory" && there.dev === dev && there.ino === ino;
    } catch {
      return false;
    }
  }

  /**
   * Runs `use` with a descriptor of the folder as it is now: resolved afresh
   * beneath the root, or the held folder if it is still at its real path.
   * Gives `missing` when the folder is no longer there (moved out of the
   * root, or away).
   */
  #now<T>(use: (dirfd: number) => T, missing: T): T {
    if (this.#rest === undefined) return this.#isAt(this.realPath) ? use(this.#fd) : missing;
    const dirfd = beneath(this.#fd, this.#rest, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_WITHIN);
    if (dirfd === -ENOENT || dirfd === -ENOTDIR || dirfd === -EXDEV || dirfd === -ELOOP) return missing;
    if (dirfd < 0) throw syscallError(`Cannot open the folder ${this.realPath}`, -dirfd);
    try {
      return use(dirfd);
    } finally {
      close(dirfd);
    }
  }

  /**
   * Facts about `name` in the folder `dirfd` (a symlink is not followed),
   * pinned first with O_PATH, which asks no file system anything: a file
   * system mounted on it is refused, never stat()ed. Undefined when it is
   * not there.
   */
  #statIn(dirfd: number, name: string): FileInfo | undefined {
    const plain = this.#rest === undefined;
    // dirfd is the folder itself, just resolved: with openat2 a mount on the name is EXDEV
    const fd = plain ? openat(dirfd, name, PINNED) : beneath(dirfd, name, PINNED, 0, RESOLVE_WITHIN);
    if (fd === -ENOENT) return undefined;
    if (fd === -EXDEV) throw mounted(`${this.realPath}/${name}`);
    if (fd < 0) throw syscallError(`Cannot look at ${this.realPath}/${name}`, -fd);
    try {
      if (plain && mountIdOf(fd) !== mountIdOf(dirfd)) throw mounted(`${this.realPath}/${name}`);
      return fstat(fd, `${this.realPath}/${name}`);
    } finally {
      close(fd);
    }
  }

  /** Facts about `name` in this folder (a symlink is not followed); undefined when it is not there. */
  stat(name: string): FileInfo | undefined {
    return this.#now((dirfd) => this.#statIn(dirfd, name), undefined);
  }

  /** Removes `name` from this folder; true when it was there. */
  unlink(name: string): boolean {
    return this.#now((dirfd) => unlinkat(dirfd, name, `${this.realPath}/${name}`), false);
  }

  /**
   * Removes `name` from this folder if it still holds the file `id` (its
   * dev and ino): the folder is resolved afresh, and the name looked at
   * just before it is unlinked. True when it was removed.
   */
  removeIf(name: string, id: FileId): boolean {
    return this.#now((dirfd) => {
      const there = this.#statIn(dirfd, name);
      return there?.dev === id.dev && there.ino === id.ino && unlinkat(dirfd, name, `${this.realPath}/${name}`);
    }, false);
  }

  /**
   * Opens `name` in this folder: never through a symlink, never blocking on a
   * FIFO, never taking a terminal, and without touching its access time where
   * the kernel allows that (the owner, or root). `create` adds O_CREAT|O_EXCL;
   * then EEXIST gives undefined, so that the caller may look again. A file
   * created while its folder was out of the root is removed again, and
   * refused.
   */
  open(name: string, path: string, options: { write: boolean; create?: boolean }): SharedPage | undefined {
    let flags = (options.write ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (options.create) flags |= O_CREAT | O_EXCL;
    const mode = options.create ? 0o600 : 0;
    const rest = this.#rest;
    const cname = cString(name);
    const at = (flags: number) =>
      rest === undefined
        ? openat(this.#fd, cname, flags, mode)
        : beneath(this.#fd, `${rest}/${name}`, flags, mode, RESOLVE_WITHIN);
    const fd = openNoAtime(at, flags);
    if (fd === -EEXIST && options.create) return undefined;
    if (fd === -EXDEV) {
      // the folder moved out of the root, or a file system is mounted on the file: ask which, without entering it
      if (this.#now(() => true, false)) throw mounted(path);
      throw new Deno.errors.NotCapable(
        `${path} is no longer within the allowed folders: its folder ${this.realPath} was moved out`,
      );
    }
    if (fd < 0) throw syscallError(`Cannot open ${path}`, -fd, "open");
    const file = new SharedPage(fd, path);
    if (options.create) this.#confirmCreated(file, name);
    return file;
  }

  /**
   * The kernel's scoped lookup checks where the folder is on the way to it,
   * not when the new file is linked into it: a folder moved out in between
   * gets the file. So the name is looked up again, beneath the root
   * (checked to the end, as for any open); where it does not hold the new
   * file, that file is removed from wherever it is and the create refused.
   */
  #confirmCreated(file: SharedPage, name: string): void {
    const made = file.stat();
    if (this.#holds(name, made)) return;
    let removed = false;
    try {
      removed = this.#rest === undefined
        ? this.#statIn(this.#fd, name)?.ino === made.ino && unlinkat(this.#fd, name, file.path)
        : file.unlinkWhereItIs(made);
    } catch {
      // said below
    }
    file.close();
    throw new Deno.errors.NotCapable(
      `${file.path} was created while its folder ${this.realPath} was moved out of the allowed folders; ` +
        (removed ? "removed again" : "it could not be removed again"),
    );
  }

  /** Whether `name`, resolved afresh within the root (or in the folder still at its real path), is the file `id`. */
  #holds(name: string, id: FileId): boolean {
    if (this.#rest === undefined) {
      if (!this.#isAt(this.realPath)) return false;
      const there = this.#statIn(this.#fd, name);
      return there?.dev === id.dev && there.ino === id.ino;
    }
    const fd = beneath(this.#fd, `${this.#rest}/${name}`, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_WITHIN);
    if (fd < 0) return false;
    try {
      const { dev, ino } = fstat(fd, name);
      return dev === id.dev && ino === id.ino;
    } finally {
      close(fd);
    }
  }

  /** Closes the descriptor; safe to call twice. */
  close(): void {
    if (this.#fd >= 0) close(this.#fd);
    this.#fd = -1;
  }
}

/**
 * openat2 beneath `dirfd`, tried again while it says EAGAIN: a scoped
 * lookup gives that when a rename or mount elsewhere raced with it. A lease
 * on the file gives EAGAIN every time, and is what remains.
 */
function beneath(dirfd: number, path: string, flags: number, mode: number, resolve: number): number {
  let fd = openat2(dirfd, path, flags, mode, resolve);
  for (let retry = 0; fd === -EAGAIN && retry < 16; retry++) fd = openat2(dirfd, path, flags, mode, resolve);
  return fd;
}

function mounted(path: string): Deno.errors.NotCapable {
  return new Deno.errors.NotCapable(
    `${path} has another file system mounted on it: refused, never looked into (its server could leave the look waiting)`,
  );
}

/** A file's owner in words: `uid 65534 (nobody)`, with the name where Deno may read /etc/passwd. */
export function owner(uid: number): string {
  let name: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "read", path: "/etc/passwd" }).state === "granted") {
      const line = Deno.readTextFileSync("/etc/passwd").split("\n").find((l) => l.split(":")[2] === String(uid));
      name = line?.split(":")[0];
    }
  } catch {
    // the number alone
  }
  return name ? `uid ${uid} (${name})` : `uid ${uid}`;
}

/**
 * Refuses a folder that someone other than the user and root could rename
 * or fill (OpenSSH's safe_path(), the kernel's protected_regular): owned by
 * another user, or writable by group or others without the sticky bit.
 */
function trust(info: FileInfo, shown: string, rules: FolderRules): void {
  if (rules.owner === undefined) return;
  const mode = `0${info.mode.toString(8)}`;
  if (info.uid !== 0 && info.uid !== rules.owner) {
    throw new Deno.errors.NotCapable(
      `The folder ${shown} belongs to ${owner(info.uid)}, another user, who could move it while a region is made, ` +
        `opened or removed in it: use a folder of your own or root's`,
    );
  }
  if ((info.mode & 0o022) !== 0 && (info.mode & S_ISVTX) === 0) {
    throw new Deno.errors.NotCapable(
      `The folder ${shown} (${owner(info.uid)}, mode ${mode}) may be written by other users, who could move ` +
        `what is in it: make it sticky (chmod +t) or not writable by them, or use another folder`,
    );
  }
}

/**
 * Refuses entering another file system at `shown` unless root mounted it in
 * a folder (described by `parent`) that only root may write, as /dev/shm in
 * /dev, and it is not a FUSE one (/proc/self/mountinfo names its type).
 */
function mayCross(parent: FileInfo, mount: number, shown: string): void {
  const type = mount < 0 ? undefined : fileSystemOf(mount);
  if (parent.uid === 0 && (parent.mode & 0o022) === 0 && type !== undefined && !type.startsWith("fuse")) return;
  throw new Deno.errors.NotCapable(
    `${shown} is another file system (${type ?? "of unknown type"}) mounted below the allowed folder: refused, ` +
      `never looked into; allow that folder itself if it is meant`,
  );
}

/**
 * The type of the mount `id` (its line in /proc/self/mountinfo), or
 * undefined. Read afresh each time: a mount's id is reused once it is
 * unmounted, so a type remembered could be another mount's.
 */
function fileSystemOf(id: number): string | undefined {
  const fd = openat(AT_FDCWD, "/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return undefined;
  try {
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(65536);
    for (let offset = 0; offset < 1 << 24;) {
      const n = pread(fd, buffer, offset);
      if (n <= 0) break;
      chunks.push(buffer.slice(0, n));
      offset += n;
    }
    const prefix = `${id} `;
    const text = new TextDecoder().decode(concat(chunks));
    const line = text.split("\n").find((l) => l.startsWith(prefix));
    return line?.split(" - ")[1]?.split(" ")[0];
  } finally {
    close(fd);
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function throughProc(path: string): Deno.errors.NotCapable {
  return new Deno.errors.NotCapable(
    `${path} leads through /proc: regions are never reached through /proc (another process's view); use a plain path`,
  );
}
