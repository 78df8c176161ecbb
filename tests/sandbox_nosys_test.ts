/**
 * The sandbox on a kernel without openat2 (before Linux 5.6, qemu-user, a
 * seccomp filter): tests/nosys.c answers ENOSYS, or EPERM as container
 * runtimes do, for openat2, and a path through /proc must be refused as the
 * README promises: as written (after `..` is resolved), and where the
 * kernel says the folder really is.
 */
import assert from "node:assert/strict";
import { compiled, NO_PEER, ROOT, run, tempDir } from "./helpers.ts";

const OPENAT2 = 437, ENOSYS = 38, EPERM = 1;

/** Runs `body` (after an import of the module) under the filter, with the sandbox's flags for `dirs`. */
async function withoutOpenat2(errno: number, folder: string, dirs: string[], body: string, cwd?: string) {
  const nosys = await compiled("nosys.c");
  const script = `${folder}/script.ts`;
  Deno.writeTextFileSync(script, `import { Checkpoint } from "${ROOT}/mod.ts";\n${body}`);
  const flags = ["--allow-ffi", `--allow-read=${dirs}`, `--allow-write=${dirs}`, "--no-prompt", "--quiet"];
  return await run(nosys, [`${errno}`, `${OPENAT2}`, Deno.execPath(), "run", ...flags, script], { cwd });
}

/** A script that tries init() on each path and prints one line per path: `made` or the error's name and message. */
function tryInit(paths: string[]): string {
  return `for (const path of ${JSON.stringify(paths)}) {
    try {
      Checkpoint.init(path).close();
      console.log("made " + path);
    } catch (e) {
      console.log(e.name + ": " + e.message);
    }
  }`;
}

/** Every file below `folder`, however deep. */
async function filesBelow(folder: string): Promise<string[]> {
  const r = await run("find", [folder, "-type", "f"]);
  return r.stdout.split("\n").filter(Boolean);
}

for (const [name, errno] of [["ENOSYS", ENOSYS], ["EPERM", EPERM]] as const) {
  Deno.test({
    name: `without openat2 (${name}), paths through /proc are refused even with /proc allowed, and nothing is created`,
    ignore: NO_PEER,
    async fn() {
      using w = tempDir();
      const dir = `${w.path}/in`;
      const outside = `${w.path}/out`;
      Deno.mkdirSync(dir);
      Deno.mkdirSync(outside);
      const sleeper = new Deno.Command("sleep", { args: ["60"], cwd: outside, stdin: "null" }).spawn();
      try {
        const up = "/..".repeat(dir.split("/").filter(Boolean).length);
        const paths = [
          `/proc/self/root${dir}/a`, // lands in DIR, through a magic link all the same
          `/proc/../proc/self/root${dir}/b`, // the same once `..` is resolved
          `${dir}${up}/proc/self/root${dir}/c`, // from DIR up to / and down into /proc
          `/proc/${sleeper.pid}/cwd/d`, // lands in OUTSIDE
          `/proc/self/cwd/e`, // the working folder is DIR
        ];
        const r = await withoutOpenat2(errno, w.path, [dir, "/proc"], tryInit([...paths, `${dir}/plain`]), dir);
        const lines = r.stdout.trim().split("\n");
        assert.equal(lines.length, paths.length + 1, r.stdout + r.stderr);
        const accepted = paths.filter((_, i) => !/^NotCapable: .*\/proc/.test(lines[i]));
        const created = [...await filesBelow(dir), ...await filesBelow(outside)];
        assert.deepEqual({ accepted, created }, { accepted: [], created: [`${dir}/plain`] }, r.stdout);
        assert.equal(lines.at(-1), `made ${dir}/plain`, "a plain path still works");
      } finally {
        sleeper.kill("SIGKILL");
        await sleeper.status;
      }
    },
  });
}
