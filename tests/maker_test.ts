/**
 * The maker of a region is whoever lives as long as the test: a shell script whose `init` ran in a short-lived
 * subshell keeps its region in use through the commands it runs (their environment names the region), and
 * `status --all` does not call it stale while the script runs.
 */
import assert from "node:assert/strict";
import { fileUsers } from "../ffi/proc.ts";
import { lstat } from "../ffi/syscalls.ts";
import { Checkpoint } from "../mod.ts";
import { tempDir } from "../testing/files.ts";
import { CLI } from "../testing/paths.ts";
import { commandExists, kill } from "../testing/process.ts";
import { noPeer, startPeer } from "../testing/peer.ts";
import { eventually, scaled } from "../testing/timing.ts";
import { forgetCallerEnv } from "../testing/env.ts";

forgetCallerEnv();

const SHAPES = {
  "eval with ||": `eval "$(tst_checkpoint init || echo 'exit 2')"`,
  "a pipe through sed":
    `LTP_IPC_PATH=$(tst_checkpoint init | sed -n "s/^export LTP_IPC_PATH='\\(.*\\)'$/\\1/p"); export LTP_IPC_PATH`,
  "a subshell": `eval "$( (tst_checkpoint init) )"`,
};

/** A tst_checkpoint on PATH that runs this checkout's CLI, with the tool's usual permissions and /proc. */
function toolFolder(dir: string): string {
  const bin = `${dir}/bin`;
  Deno.mkdirSync(bin);
  Deno.writeTextFileSync(
    `${bin}/tst_checkpoint`,
    `#!/bin/sh\nexec '${Deno.execPath()}' run --quiet --no-prompt --allow-ffi --allow-env ` +
      `--allow-read=/proc,/dev/shm,/tmp --allow-write=/dev/shm,/tmp '${CLI}' "$@"\n`,
  );
  Deno.chmodSync(`${bin}/tst_checkpoint`, 0o755);
  return bin;
}

/** This environment without LTP_*: a region or layout named there must not change what the script makes. */
function plainEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([name]) => !name.startsWith("LTP_")));
}

/** Kills the processes whose environment names `path`: the commands a test script started. */
function killUsers(path: string): void {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const env = Deno.readTextFileSync(`/proc/${entry.name}/environ`);
      if (env.split("\0").includes(`LTP_IPC_PATH=${path}`)) Deno.kill(Number(entry.name), "SIGKILL");
    } catch {
      // gone, or not ours to read
    }
  }
}

/**
 * What the script does after its init: runs a command (which names the region in its environment), or only shell
 * builtins (`read`, on a pipe the test holds open), where nothing but the script itself shows the region in use.
 */
const THEN = {
  "a command": `sleep ${Math.ceil(scaled(60000) / 1000)}`,
  "builtins only": "read -r line",
};

for (const shell of ["dash", "bash"]) {
  for (const [shape, line] of Object.entries(SHAPES)) {
    for (const [then, rest] of Object.entries(THEN)) {
      Deno.test({
        name: `a ${shell} script whose init is ${shape}, then ${then}, keeps its region out of stale while it runs`,
        ignore: !commandExists(shell),
        async fn() {
          using dir = tempDir();
          const bin = toolFolder(dir.path);
          const told = `${dir.path}/path`;
          // the script's init ran in a subshell that has ended; the script goes on
          const script = `${line}\nprintf '%s\\n' "$LTP_IPC_PATH" > '${told}.new' && mv '${told}.new' '${told}'\n` +
            `${rest}\nexit 0\n`;
          const child = new Deno.Command(shell, {
            args: ["-c", script],
            env: { ...plainEnv(), PATH: `${bin}:${Deno.env.get("PATH")}` },
            clearEnv: true,
            stdin: "piped",
            stdout: "null",
            stderr: "piped",
          }).spawn();
          let path = "";
          try {
            await eventually(() => {
              try {
                path = Deno.readTextFileSync(told).trim();
                return true;
              } catch {
                return false;
              }
            }, scaled(20000));
            const folder = path.slice(0, path.lastIndexOf("/"));
            const listed = await new Deno.Command(Deno.execPath(), {
              args: [
                "run",
                "--quiet",
                "--allow-ffi",
                "--allow-env",
                "--allow-read=/proc,/dev/shm,/tmp",
                CLI,
                "status",
                "--all",
                "--json",
                folder,
              ],
              env: plainEnv(),
              clearEnv: true,
              stdin: "null",
            }).output();
            const text = new TextDecoder().decode(listed.stdout);
            assert.equal(listed.code, 0, new TextDecoder().decode(listed.stderr));
            const entry = JSON.parse(text).find((r: { path: string }) => r.path === path);
            assert.ok(entry, `${path} not listed`);
            assert.equal(entry.stale, false, JSON.stringify(entry));
            // named after the script itself, not the subshell its init ran in
            assert.equal(entry.makerPid, child.pid, JSON.stringify(entry));
            assert.equal(entry.makerAlive, true, JSON.stringify(entry));
            if (then === "builtins only") return;
            if (Deno.uid() === 0) {
              // root sees every process: the maker lives (where the shell ran init itself), or a user is named
              const seen = entry.makerAlive === true ||
                (entry.usedBy?.by === "environment" && entry.usedBy.comm === "sleep");
              assert.ok(seen, JSON.stringify(entry));
            } else {
              assert.ok(entry.makerAlive === true || entry.usedBy || entry.makerUnknown, JSON.stringify(entry));
            }
          } finally {
            // the commands it started first (they hold its stderr), then the script itself
            if (path) killUsers(path);
            kill(child, "SIGKILL");
            await child.stdin.close().catch(() => {});
            await child.output();
            if (path) Deno.removeSync(path);
          }
        },
      });
    }
  }
}

Deno.test({
  name: "fileUsers names a process by its environment, its mapping and its descriptor, and leaves itself out",
  ignore: noPeer(),
  async fn() {
    using dir = tempDir();
    using cp = Checkpoint.create({ dir: dir.path });
    const info = lstat(cp.path)!;
    const path = new TextEncoder().encode(cp.path);
    const files = [{ path, dev: info.dev, ino: info.ino }];
    // this process maps the region: left out
    assert.deepEqual(fileUsers(files).uses, []);
    const holders = {
      environment: new Deno.Command("sleep", { args: ["60"], env: { LTP_IPC_PATH: cp.path } }),
      descriptor: new Deno.Command("sh", { args: ["-c", `exec 3<'${cp.path}'; exec sleep 60`] }),
    };
    const started = Object.entries(holders).map(([by, command]) => ({ by, child: command.spawn() }));
    const mapper = await startPeer(["wait", cp.path, cp.layout, "0", String(scaled(60000))]);
    started.push({ by: "mapping", child: mapper.child });
    try {
      await eventually(() => {
        const uses = fileUsers(files).uses;
        return started.every(({ by, child }) => uses.some((u) => u.pid === child.pid && u.by === by));
      }, scaled(10000));
    } finally {
      for (const { child } of started) {
        kill(child, "SIGKILL");
        await child.status;
      }
      await mapper.result;
    }
  },
});
