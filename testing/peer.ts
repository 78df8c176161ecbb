/** The C programs of tests/ (the peer, the syscall filter, the race helpers), built with gcc when first asked for. */
import { ROOT } from "./paths.ts";
import { type RunOptions, start, type Started } from "./process.ts";

let gcc: boolean | undefined;

/** Whether gcc, which builds the C programs, is installed. */
export function haveGcc(): boolean {
  if (gcc === undefined) {
    try {
      gcc = new Deno.Command("gcc", {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      }).outputSync().success;
    } catch {
      gcc = false;
    }
    if (!gcc && !Deno.env.get("CI")) {
      console.warn(
        "gcc is not installed: the tests that need the C programs of tests/ are skipped",
      );
    }
  }
  return gcc;
}

/**
 * `ignore` for a test that runs a C program: `Deno.test({ name, ignore: noPeer(), fn })`. Without gcc such a test
 * is skipped, with a warning, on a developer's machine, and fails in CI (CI set), which must run it.
 */
export function noPeer(): boolean {
  return !haveGcc() && !Deno.env.get("CI");
}

let folder: Promise<string> | undefined;
const built = new Map<string, Promise<string>>();

/**
 * A C program of tests/ (`peer.c`, `nosys.c`, `sandbox_race.c`; with `shared`, a library such as
 * `sandbox_marker.c`), compiled once per test file into a folder that only this user can write (0755: an attacker
 * run as nobody executes from it) and that is removed when the file's tests end: never a binary that another user
 * could have planted or replaced.
 */
export function compiled(
  source: string,
  options: { shared?: boolean } = {},
): Promise<string> {
  let path = built.get(source);
  if (path) return path;
  path = (async () => {
    if (!haveGcc()) {
      throw new Error(`gcc is not installed: cannot build tests/${source}`);
    }
    folder ??= (async () => {
      const dir = await Deno.makeTempDir({
        dir: "/tmp",
        prefix: "ltp-checkpoint-bin-",
      });
      globalThis.addEventListener(
        "unload",
        () => Deno.removeSync(dir, { recursive: true }),
      );
      await Deno.chmod(dir, 0o755);
      return dir;
    })();
    const out = `${await folder}/${source.replace(/\.c$/, options.shared ? ".so" : "")}`;
    const kind = options.shared ? ["-shared", "-fPIC"] : [];
    const result = await new Deno.Command("gcc", {
      args: [
        "-O2",
        "-Wall",
        "-Werror",
        ...kind,
        "-o",
        out,
        `${ROOT}/tests/${source}`,
      ],
    }).output();
    if (!result.success) {
      throw new Error(`gcc failed: ${new TextDecoder().decode(result.stderr)}`);
    }
    return out;
  })();
  built.set(source, path);
  return path;
}

/** The C peer (tests/peer.c). */
export function peer(): Promise<string> {
  return compiled("peer.c");
}

/** The C peer as a subprocess. */
export async function startPeer(
  args: string[],
  options: RunOptions = {},
): Promise<Started> {
  return start(await peer(), args, options);
}
