/**
 * Path logic on text alone: nothing is looked up, so symlinks are not
 * resolved (the kernel's answer, through /proc/self/fd, is what tells where
 * a path leads).
 * @module
 */

/** `path` with `.`, `..` and repeated slashes resolved as written, nothing looked up: `/a/./b/../c` is `/a/c`. */
export function normalise(path: string): string {
  const parts: string[] = [];
  const absolute = path.startsWith("/");
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && parts.length > 0 && parts.at(-1) !== "..") parts.pop();
    else if (part !== ".." || !absolute) parts.push(part);
  }
  return (absolute ? "/" : "") + parts.join("/") || ".";
}

/** The folder part of a path: "." for a bare name, "/" for a name in the root. */
export function dirname(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/** Whether `path` (normalised) is /proc or lies beneath it. */
export function isProc(path: string): boolean {
  return path === "/proc" || path.startsWith("/proc/");
}
