/** Temporary folders and what files hold, for "nothing changed" and "nothing left behind" checks. */
import { ROOT } from "./paths.ts";

/** A temporary folder in /tmp (whatever TMPDIR says: children are allowed /tmp), removed by `using`. */
export function tempDir(): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({
    dir: "/tmp",
    prefix: "ltp-checkpoint-test-",
  });
  return {
    path,
    [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }),
  };
}

/** A short digest of bytes (FNV-1a), so that a failed comparison prints a line, not a page. */
function digest(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return `${bytes.length}b:${h.toString(16)}`;
}

/** What a path holds now: type, mode, mtime, link target and a digest of the bytes; for "nothing changed" checks. */
export function snapshot(path: string): string {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return "absent";
  }
  const kind = info.isFile ? "file" : info.isDirectory ? "dir" : info.isSymlink ? "link" : "other";
  const content = info.isFile ? digest(Deno.readFileSync(path)) : info.isSymlink ? Deno.readLinkSync(path) : "";
  return `${path} ${kind} ${info.mode?.toString(8)} ${info.mtime?.getTime()} ${content}`;
}

/** The bytes of a file as a digest: for regions in use, whose mtime the kernel updates on every futex call. */
export function contentOf(path: string): string {
  return digest(Deno.readFileSync(path));
}

/** The names in a folder, sorted. */
export function listing(dir: string): string[] {
  return Array.from(Deno.readDirSync(dir), (e) => e.name).sort();
}

/** Every file (not folder or symlink) below `folder`, however deep: `find` copes with paths beyond PATH_MAX. */
export async function filesBelow(folder: string): Promise<string[]> {
  const r = await new Deno.Command("find", {
    args: [folder, "-type", "f"],
    stderr: "inherit",
  }).output();
  if (!r.success) throw new Error(`find ${folder} failed`);
  return new TextDecoder().decode(r.stdout).split("\n").filter(Boolean);
}

let sources: string | undefined;

/**
 * A copy of the module's sources (mod.ts, cli.ts, the folders they import) and of the running Deno (as `deno`)
 * that every user can read, made once per test file and removed when its tests end: for a child run as another
 * user, who may not be able to read the checkout (a clone in a private folder, with the pinned Deno inside it).
 * Returns the copy's root.
 */
export function readableSources(): string {
  if (sources) return sources;
  const dir = Deno.makeTempDirSync({
    dir: "/tmp",
    prefix: "ltp-checkpoint-src-",
  });
  globalThis.addEventListener(
    "unload",
    () => Deno.removeSync(dir, { recursive: true }),
  );
  for (const name of ["mod.ts", "cli.ts", "deno.json", "ffi", "src", "cli"]) {
    try {
      Deno.lstatSync(`${ROOT}/${name}`);
    } catch {
      continue; // a part this checkout does not have
    }
    new Deno.Command("cp", { args: ["-r", `${ROOT}/${name}`, dir] })
      .outputSync();
  }
  // a hard link where the file system allows it (the binary is large), else a copy
  const link = new Deno.Command("ln", {
    args: [Deno.execPath(), `${dir}/deno`],
    stderr: "null",
  }).outputSync();
  if (!link.success) {
    new Deno.Command("cp", { args: [Deno.execPath(), `${dir}/deno`] })
      .outputSync();
  }
  Deno.chmodSync(dir, 0o755);
  new Deno.Command("chmod", { args: ["-R", "a+rX", dir] }).outputSync();
  return sources = dir;
}

/** Whether anything is at `path` (a symlink counts; it is not followed). */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
