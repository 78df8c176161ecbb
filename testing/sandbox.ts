/** Set-up for the sandbox tests: a folder DIR that a child is confined to, OUTSIDE beside it, and scripts. */
import { filesBelow, tempDir } from "./files.ts";
import { ROOT } from "./paths.ts";

/** A private folder holding DIR (the sandbox), OUTSIDE (beside it) and the scripts; removed by `using`. */
export function workspace():
  & { root: string; dir: string; outside: string }
  & Disposable {
  const root = tempDir();
  const dir = `${root.path}/in`;
  const outside = `${root.path}/out`;
  Deno.mkdirSync(dir);
  Deno.mkdirSync(outside);
  return {
    root: root.path,
    dir,
    outside,
    [Symbol.dispose]: () => root[Symbol.dispose](),
  };
}

/** Deno's flags for a child confined to `dirs`: what the README promises holds. */
export function sandboxFlags(...dirs: string[]): string[] {
  return [
    "--allow-ffi",
    `--allow-read=${dirs.join(",")}`,
    `--allow-write=${dirs.join(",")}`,
    "--allow-env",
    "--no-prompt",
  ];
}

/** Writes a script that imports the module into `folder` (never inside DIR or OUTSIDE) and returns its path. */
export function script(folder: string, name: string, body: string): string {
  const path = `${folder}/${name}.ts`;
  Deno.writeTextFileSync(
    path,
    `import { Checkpoint } from "${ROOT}/mod.ts";\n${body}`,
  );
  return path;
}

/**
 * A script body that tries `Checkpoint.init()` on each path and prints one line per path: `made "PATH"` or the
 * error's name and its message as JSON. The paths are written into the script: a NUL byte cannot travel in an
 * argument.
 */
export function tryInit(paths: string[]): string {
  return `
for (const path of ${JSON.stringify(paths)}) {
  try {
    Checkpoint.init(path).close();
    console.log("made " + JSON.stringify(path));
  } catch (e) {
    console.log(e instanceof Error ? e.name + ": " + JSON.stringify(e.message) : "not an Error: " + e);
  }
}`;
}

/** Files created in OUTSIDE or DIR (none are expected), shortened: deep paths run to thousands of bytes. */
export async function escapedFrom(
  w: { dir: string; outside: string },
): Promise<string[]> {
  const found = [...await filesBelow(w.outside), ...await filesBelow(w.dir)];
  return found.map((path) =>
    path.length > 200 ? `${path.slice(0, 60)}...(${path.length} bytes)...${path.slice(-20)}` : path
  );
}
