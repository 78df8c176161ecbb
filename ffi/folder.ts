/**
 * A folder that files are opened, created and removed in, held so that it
 * stays confined to an allowed folder even while others move folders about.
 * @module
 */
import {
  AT_FDCWD,
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
  holdsAt,
  lstat,
  openat,
  openat2,
  openNoAtime,
  realPathOf,
  statAt,
  unlinkat,
} from "./syscalls.ts";

// the rest of a path beneath the root is a real path (from /proc/self/fd): a symlink in it was swapped in since
const RESOLVE_WITHIN = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;

/**
 * A folder that files are opened, created and removed in, confined to an
 * allowed folder. Opened by path and asked where it really is (`realPath`),
 * then held `within()` the outermost allowed folder that contains it: that
 * root is held open, and the folder's path beneath it is resolved afresh for
 * every open, create, stat and removal with openat2's RESOLVE_BENEATH, so
 * the kernel refuses (EXDEV, or not found) once the folder has been moved
 * out of the root. Without openat2 the folder itself is held, and checked to
 * be still at its real path before a removal and after a create.
 */
export class Folder {
  #fd: number;
  /** The folder's path beneath the root held in #fd; undefined when #fd is the folder itself (no openat2). */
  #rest: string | undefined;

  private constructor(fd: number, readonly realPath: string, rest?: string) {
    this.#fd = fd;
    this.#rest = rest;
  }

  /**
   * Opens `path` (symlinks in it are followed, unless `noFollow` for its
   * last component; magic links such as /proc/PID/root are refused) and asks
   * the kernel where it landed. Without openat2 a path through /proc is
   * refused, as written (after `..` is resolved) and as the kernel names the
   * folder, and the folder must be the one at its real path.
   */
  static open(path: string, options: { noFollow?: boolean } = {}): Folder {
    const flags = O_PATH | O_DIRECTORY | O_CLOEXEC | (options.noFollow ? O_NOFOLLOW : 0);
    let fd = openat2(AT_FDCWD, path, flags, 0, RESOLVE_NO_MAGICLINKS);
    // before Linux 5.6, or where a seccomp filter forbids it: a plain open, checked below
    const plain = fd === -ENOSYS || fd === -EPERM;
    if (plain && isProc(normalise(path))) throw throughProc(path);
    if (plain) fd = openat(AT_FDCWD, path, flags);
    if (fd === -ELOOP) {
      throw new Deno.errors.NotCapable(
        `The folder ${path} is reached through a magic link (such as /proc/PID/root): use a plain path`,
      );
    }
    if (fd < 0) throw syscallError(`Cannot open the folder ${path}`, -fd);
    const real = realPathOf(fd);
    const folder = new Folder(fd, real ?? "", plain ? undefined : ".");
    if (real === undefined || !real.startsWith("/") || real.endsWith(" (deleted)")) {
      folder.close();
      throw new Deno.errors.NotCapable(
        `Cannot tell where the folder ${path} really is (/proc must be mounted, and its real path fit in ${PATH_MAX} bytes)`,
      );
    }
    if (plain && !folder.#isAt(real)) {
      folder.close();
      throw throughProc(path);
    }
    return folder;
  }

  /**
   * This folder, held from now on beneath `root` (an ancestor of its real
   * path, or that path itself), which is opened through no symlink: so it is
   * the folder at that path at that moment. Closes this object unless it is
   * returned: without openat2 it is, unchanged.
   */
  within(root: string): Folder {
    if (this.#rest === undefined) return this;
    const flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    const fd = openat2(AT_FDCWD, root, flags, 0, RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS);
    if (fd === -ELOOP || fd === -ENOENT || fd === -ENOTDIR) {
      throw new Deno.errors.Interrupted(`${root} changed while ${this.realPath} was being opened; try again`);
    }
    if (fd < 0) throw syscallError(`Cannot open the folder ${root}`, -fd);
    const rest = this.realPath === root ? "." : this.realPath.slice(root === "/" ? 1 : root.length + 1);
    this.close();
    return new Folder(fd, this.realPath, rest);
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
    const dirfd = openat2(this.#fd, this.#rest, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_WITHIN);
    if (dirfd === -ENOENT || dirfd === -ENOTDIR || dirfd === -EXDEV || dirfd === -ELOOP) return missing;
    if (dirfd < 0) throw syscallError(`Cannot open the folder ${this.realPath}`, -dirfd);
    try {
      return use(dirfd);
    } finally {
      close(dirfd);
    }
  }

  /** Facts about `name` in this folder (a symlink is not followed); undefined when it is not there. */
  stat(name: string): FileInfo | undefined {
    return this.#now((dirfd) => statAt(dirfd, name), undefined);
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
    return this.#now((dirfd) => holdsAt(dirfd, name, id) && unlinkat(dirfd, name, `${this.realPath}/${name}`), false);
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
        : openat2(this.#fd, `${rest}/${name}`, flags, mode, RESOLVE_WITHIN);
    const fd = openNoAtime(at, flags);
    if (fd === -EEXIST && options.create) return undefined;
    if (fd === -EXDEV) {
      throw new Deno.errors.NotCapable(
        `${path} is no longer within the allowed folders: its folder ${this.realPath} was moved`,
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
        ? holdsAt(this.#fd, name, made) && unlinkat(this.#fd, name, file.path)
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
    if (this.#rest === undefined) return this.#isAt(this.realPath) && holdsAt(this.#fd, name, id);
    const fd = openat2(this.#fd, `${this.#rest}/${name}`, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_WITHIN);
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

function throughProc(path: string): Deno.errors.NotCapable {
  return new Deno.errors.NotCapable(
    `${path} leads through /proc or another mount namespace, which this kernel cannot check (no openat2): use a plain path`,
  );
}
