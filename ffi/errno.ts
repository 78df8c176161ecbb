/**
 * What a failed syscall's errno means, in words and as the error class a
 * caller branches on (Deno's own, where it has one).
 * @module
 */
import {
  EACCES,
  EAGAIN,
  EEXIST,
  EFAULT,
  EISDIR,
  ELOOP,
  EMFILE,
  ENAMETOOLONG,
  ENFILE,
  ENOENT,
  ENOSPC,
  ENOTDIR,
  EOPNOTSUPP,
  EPERM,
  EROFS,
} from "./constants.ts";

type ErrorKind = new (message: string) => Error;

const ERRNO_TEXT: Record<number, [string, ErrorKind]> = {
  [EPERM]: ["operation not permitted", Deno.errors.PermissionDenied],
  [ENOENT]: ["no such file or directory", Deno.errors.NotFound],
  [EACCES]: ["permission denied", Deno.errors.PermissionDenied],
  [EFAULT]: ["bad address (was the file truncated?)", Deno.errors.InvalidData],
  [EEXIST]: ["file exists", Deno.errors.AlreadyExists],
  [ENOTDIR]: ["a component of the path is not a directory", Deno.errors.NotFound],
  [EISDIR]: ["is a directory", Deno.errors.IsADirectory],
  [ENFILE]: ["too many open files in the system", Error],
  [EMFILE]: ["too many open files in this process (see ulimit -n)", Error],
  [ENOSPC]: ["no space left on device", Error],
  [EROFS]: ["read-only file system", Deno.errors.PermissionDenied],
  [ENAMETOOLONG]: ["file name too long", Deno.errors.InvalidData],
  [ELOOP]: ["a symbolic link where none is allowed", Deno.errors.InvalidData],
  [EOPNOTSUPP]: ["not supported by this file system", Deno.errors.NotSupported],
};

/** Where an open's errno means something else than elsewhere. */
const OPEN_TEXT: Record<number, [string, ErrorKind]> = {
  // an O_NONBLOCK open of a file another process holds a lease on
  [EAGAIN]: ["the file is leased by another process (try again)", Deno.errors.WouldBlock],
};

/**
 * An error for a failed syscall, naming what was done and to which path.
 *
 * @param what What was attempted, such as `Cannot open /dev/shm/x`.
 * @param err The errno (positive).
 * @param call `"open"` for an open, whose errnos read differently.
 */
export function syscallError(what: string, err: number, call?: "open"): Error {
  const [text, Kind] = (call === "open" ? OPEN_TEXT[err] : undefined) ?? ERRNO_TEXT[err] ?? [`errno ${err}`, Error];
  return new Kind(`${what}: ${text}`);
}
