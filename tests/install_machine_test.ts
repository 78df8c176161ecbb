/**
 * tools/install.ts for a machine: the folders it is given (as a shell user means them), a confined install, hints that
 * stay true after the checkout moves, and, as root, an install for every user that user nobody can run.
 */
import assert from "node:assert/strict";
import { assertExit, assertOneLine } from "../testing/assert.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { listing, tempDir } from "../testing/files.ts";
import { ROOT } from "../testing/paths.ts";
import { asNobody, NOBODY, type Result, run, type RunOptions } from "../testing/process.ts";

forgetCallerEnv();

const IS_ROOT = Deno.uid() === 0;

/** What the installer needs of a checkout: the CLI's and the agent's sources, the installer and a ./deno. */
const SOURCES = ["cli.ts", "mod.ts", "deno.json", "deno", "src", "ffi", "cli", "agent", "tools/install.ts"];

/** A copy of the checkout in `dir`, its pinned Deno a hard link to (or copy of) the running one. */
function copyCheckout(dir: string, name = "checkout"): string {
  const copy = `${dir}/${name}`;
  Deno.mkdirSync(`${copy}/tools/node_modules/.bin`, { recursive: true });
  for (const source of SOURCES) {
    const r = new Deno.Command("cp", { args: ["-a", `${ROOT}/${source}`, `${copy}/${source}`] }).outputSync();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
  }
  placeDeno(`${copy}/tools/node_modules/.bin/deno`);
  return copy;
}

/** The running Deno at `path`: a hard link where the file system allows, else a copy. */
function placeDeno(path: string): void {
  try {
    Deno.linkSync(Deno.execPath(), path);
  } catch {
    Deno.copyFileSync(Deno.execPath(), path);
    Deno.chmodSync(path, 0o755);
  }
}

/**
 * A shell user's environment: PATH and HOME, nothing of this process's (no INIT_CWD, no LTP_*); each call runs cold,
 * starting no resident agent to outlive the test.
 */
function userEnv(home: string, more: Record<string, string> = {}): RunOptions {
  return { clearEnv: true, env: { PATH: "/usr/bin:/bin", HOME: home, TST_CHECKPOINT_AGENT: "0", ...more } };
}

/** This Deno's cache, where `deno bundle` finds the bundler it would otherwise download. */
const DENO_DIR: string = JSON.parse(
  new TextDecoder().decode(new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).outputSync().stdout),
).denoDir;

function readme(): string {
  return Deno.readTextFileSync(`${ROOT}/README.md`);
}

/** Runs the installer of `checkout` with `deno` (the checkout's own by default) and `args`, with this Deno's cache. */
function installer(checkout: string, args: string[], options: RunOptions, deno = `${checkout}/deno`): Promise<Result> {
  const env = { ...options.env, DENO_DIR };
  return run(deno, ["run", "-A", `${checkout}/tools/install.ts`, ...args], { ...options, env });
}

/** The folders the launcher at `root` allows, from its `exec DENO run FLAGS` line. */
function allowed(root: string): { read: string[]; write: string[] } {
  const exec = Deno.readTextFileSync(`${root}/bin/tst_checkpoint`).split("\n").findLast((l) => l.startsWith("exec "));
  assert.ok(exec, "the launcher has no exec line");
  const flag = (name: string) => exec.match(new RegExp(` --allow-${name}=(\\S+)`))?.[1].split(",") ?? [];
  return { read: flag("read"), write: flag("write") };
}

function assertNotInstalled(root: string): void {
  assert.throws(() => Deno.lstatSync(`${root}/bin/tst_checkpoint`), Deno.errors.NotFound, "installed anyway");
}

Deno.test("folders given to the installer: ~ is the home folder, a relative one is taken from where the command ran, a missing one is refused in one line", async () => {
  using dir = tempDir();
  const checkout = copyCheckout(dir.path);
  const home = `${dir.path}/home`;
  const work = `${dir.path}/work`;
  for (const folder of [`${home}/job`, `${work}/job`, `${checkout}/sub/job`]) {
    Deno.mkdirSync(folder, { recursive: true });
  }
  const root = `${dir.path}/root`;

  // ~ and ~/x, and a relative folder from the folder the command was run in (not the checkout)
  const r = await installer(checkout, ["--root", root, "--allow-read=~/job", "--allow-write=job,~"], {
    ...userEnv(home),
    cwd: work,
  });
  assertExit(r, 0);
  assert.deepEqual(allowed(root), {
    read: ["/dev/shm", "/tmp", "/proc", "/boot", "/lib/modules", "/lib/kernel", `${home}/job`],
    write: ["/dev/shm", "/tmp", `${work}/job`, home],
  });

  // `deno task install` runs in the checkout: a relative folder is taken from where it was started (INIT_CWD)
  const task = await run(`${checkout}/deno`, ["task", "-q", "install", "--root", root, "--allow-write=job"], {
    ...userEnv(home, { DENO_DIR }),
    cwd: `${checkout}/sub`,
  });
  assertExit(task, 0);
  assert.deepEqual(allowed(root).write, ["/dev/shm", "/tmp", `${checkout}/sub/job`]);

  // refused in one line, nothing installed
  const refusals: [string[], RegExp][] = [
    [
      ["--allow-write=/nonexistent/dir"],
      /^install: --allow-write=\/nonexistent\/dir: \/nonexistent\/dir does not exist: create it first/,
    ],
    [
      ["--allow-read=missing"],
      new RegExp(`^install: --allow-read=missing: ${work}/missing does not exist: create it first`),
    ],
    [
      ["--allow-read=~nobody/job"],
      /^install: --allow-read=~nobody\/job: ~user is not expanded here: give the folder in full/,
    ],
    [[`--allow-read=${checkout}/deno.json`], /: .*\/deno\.json is not a folder/],
    [["--allow-read=/tmp,,/dev/shm"], /^install: --allow-read=: an empty folder name/],
    [["--confine"], /^install: --confine needs the folders to allow/],
  ];
  const elsewhere = `${dir.path}/elsewhere`;
  for (const [args, pattern] of refusals) {
    const refused = await installer(checkout, ["--root", elsewhere, ...args], { ...userEnv(home), cwd: work });
    assertExit(refused, 1);
    assertOneLine(refused.stderr, pattern);
    assertNotInstalled(elsewhere);
  }
});

Deno.test("--confine: the installed tool is allowed only the folders named, says how to make a region in them, and with TMPDIR and DENO_DIR in the job writes nothing outside it", async () => {
  using dir = tempDir();
  const checkout = copyCheckout(dir.path);
  const job = `${dir.path}/job`;
  const home = `${dir.path}/home`;
  Deno.mkdirSync(job);
  Deno.mkdirSync(home);
  const root = `${dir.path}/root`;
  assertExit(await installer(checkout, ["--root", root, "--confine", `--allow-write=${job}`], userEnv(home)), 0);
  assert.deepEqual(allowed(root), { read: [job], write: [job] });
  // the agent meets its callers in /tmp: a confined install has none
  assert.doesNotMatch(Deno.readTextFileSync(`${root}/bin/tst_checkpoint`), /agent\.js/);
  const tool = `${root}/bin/tst_checkpoint`;

  // a new region with no folder named: the shell user's ways, not the module's
  const noFolder = await run(tool, ["init"], userEnv(home, { DENO_DIR: `${job}/.deno` }));
  assertExit(noFolder, 2);
  assertOneLine(
    noFolder.stderr,
    new RegExp(
      `^tst_checkpoint: TBROK: A new region needs a folder it may write: set LTP_IPC_PATH to a file in ${job}, or ` +
        `TMPDIR=${job}, or reinstall with: cd ${checkout} && \\./deno run -A tools/install\\.ts --root ${root} ` +
        `--confine --allow-write=${job} --allow-read=/dev/shm --allow-write=/dev/shm$`,
    ),
  );
  // /dev/shm and /tmp are not allowed
  for (const path of ["/dev/shm/ltp_checkpoint_confined", `/tmp/ltp_checkpoint_confined_${Deno.pid}`]) {
    const outside = await run(tool, ["init"], userEnv(home, { LTP_IPC_PATH: path, DENO_DIR: `${job}/.deno` }));
    assertExit(outside, 2);
    assertOneLine(outside.stderr, /is not allowed: reinstall with: .* --confine /);
    assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
  }

  // the job as the README shows it: everything, Deno's cache included, stays in the job
  // the README's confined job, run as printed in the folders of this test (it installs again, the same way)
  const example = readme().match(/```sh\n(# once, as root: a tool allowed \/srv\/job alone\n[^`]*)```/)?.[1];
  assert.ok(example, "the README's confined job is missing");
  const script = example.replaceAll("sudo ", "").replaceAll("/usr/local", root).replaceAll("/srv/job", job);
  const job1 = await run("sh", ["-c", `${script}echo "region: $LTP_IPC_PATH"`], {
    clearEnv: true,
    cwd: checkout,
    env: { PATH: `${root}/bin:/usr/bin:/bin`, HOME: home, DENO_DIR },
  });
  assertExit(job1, 0);
  assert.match(job1.stdout, new RegExp(`^region: ${job}/ltp_checkpoint_`, "m"));
  assert.deepEqual(listing(home), [], "something was written in HOME");
  assert.deepEqual(listing(job), [".deno"], "the region was left in the job");
});

Deno.test("the launcher's hints name the checkout while it is there, and once it is gone say so and how to install again", async () => {
  using dir = tempDir();
  const home = `${dir.path}/home`;
  Deno.mkdirSync(home);
  const options = (env: Record<string, string> = {}) => userEnv(home, { DENO_DIR: `${dir.path}/cache`, ...env });
  for (const origin of [undefined, "https://example.invalid/ltp-checkpoint.git"]) {
    const checkout = copyCheckout(dir.path, origin ? "cloned" : "copied");
    if (origin) {
      for (const args of [["init", "-q"], ["remote", "add", "origin", origin]]) {
        assertExit(await run("git", ["-C", checkout, ...args]), 0);
      }
    }
    const root = `${dir.path}/root-${origin ? "cloned" : "copied"}`;
    assertExit(await installer(checkout, ["--root", root, `--allow-read=${home}`], options()), 0);
    const tool = `${root}/bin/tst_checkpoint`;
    const here = `cd ${checkout} && \\./deno run -A tools/install\\.ts --root ${root} --allow-read=${home}`;
    const env = { LTP_IPC_PATH: "/var/tmp/ltp-checkpoint-not-allowed/region" };
    const fix = "--allow-read=/var/tmp/ltp-checkpoint-not-allowed --allow-write=/var/tmp/ltp-checkpoint-not-allowed";

    const before = await run(tool, ["init"], options(env));
    assertExit(before, 2);
    assertOneLine(before.stderr, new RegExp(`is not allowed: reinstall with: ${here} ${fix}$`));

    Deno.renameSync(checkout, `${checkout}.moved`);
    const again = origin
      ? `its checkout ${checkout} is gone: install again with: git clone ${origin} ${checkout} && cd ${checkout} && `
      : `its checkout ${checkout} is gone: install again from a new checkout of ltp-checkpoint with: `;
    const install = `${again}\\./deno run -A tools/install\\.ts --root ${root} --allow-read=${home}`;
    const after = await run(tool, ["init"], options(env));
    assertExit(after, 2);
    assertOneLine(after.stderr, new RegExp(`is not allowed: ${install} ${fix}$`));
    // the launcher's own lines too
    // the bundle (Deno 2.4 and later), or the entry of the source files
    // the install's code folder (one per install, named by its identity)
    const lib = `${root}/lib/tst_checkpoint/${[...Deno.readDirSync(`${root}/lib/tst_checkpoint`)][0].name}`;
    const code = listing(lib).includes("cli.js") ? "cli.js" : "cli.ts";
    Deno.renameSync(`${lib}/${code}`, `${dir.path}/${code}`);
    const noCode = await run(tool, ["init"], options(env));
    assertExit(noCode, 2);
    assertOneLine(noCode.stderr, new RegExp(`^tst_checkpoint: TBROK: its code is gone \\(.*/${code}\\): ${install}$`));
    Deno.renameSync(`${dir.path}/${code}`, `${lib}/${code}`);

    // back in its place, the checkout is named again
    Deno.renameSync(`${checkout}.moved`, checkout);
    const back = await run(tool, ["init"], options(env));
    assertOneLine(back.stderr, new RegExp(`is not allowed: reinstall with: ${here} ${fix}$`));
  }
});

Deno.test({
  name:
    "root's install for every user (needs root): a Deno other users cannot run is refused, nobody runs what is installed, and a launcher whose Deno it cannot reach says so",
  ignore: !IS_ROOT,
  fn: async () => {
    using dir = tempDir();
    Deno.chmodSync(dir.path, 0o755); // open to others, as /usr/local is
    const checkout = copyCheckout(dir.path, "ltp-checkpoint");
    const home = `${dir.path}/home`;
    const job = `${dir.path}/job`;
    Deno.mkdirSync(home);
    Deno.mkdirSync(job);
    Deno.chownSync(job, NOBODY, NOBODY);
    const root = `${dir.path}/usr/local`;
    const env = { DENO_DIR: `${dir.path}/cache` };

    // a Deno in a folder closed to others (as /root/.deno/bin is): refused, with the fix
    Deno.mkdirSync(`${dir.path}/closed`, { mode: 0o700 });
    Deno.chmodSync(`${dir.path}/closed`, 0o700);
    placeDeno(`${dir.path}/closed/deno`);
    const closed = await installer(checkout, ["--root", root], userEnv(home, env), `${dir.path}/closed/deno`);
    assertExit(closed, 1);
    assertOneLine(
      closed.stderr,
      new RegExp(
        `^install: other users can reach ${root}/bin but cannot run this Deno \\(${dir.path}/closed is mode 0700, of uid 0\\): ` +
          `install with a Deno every user can run, e\\.g\\. the checkout's \\./deno \\(copied into ${root}/lib/tst_checkpoint\\): ` +
          `cd ${checkout} && \\./deno run -A tools/install\\.ts --root ${root}$`,
      ),
    );
    assertNotInstalled(root);
    // in the installer's own home, who the install is for cannot be told: the same words, as a warning
    Deno.chmodSync(home, 0o755);
    const personal = await installer(
      checkout,
      ["--root", `${home}/.deno`],
      userEnv(home, env),
      `${dir.path}/closed/deno`,
    );
    assertExit(personal, 0);
    assert.match(
      personal.stderr,
      /^install: warning: other users can reach .*\/\.deno\/bin but cannot run this Deno /m,
    );

    // the README's install for every user, as printed from the checkout's parent: the checkout's Deno is copied in;
    // with root's umask 077 what is made is still open to all, and nobody runs it
    const line = readme().match(/^cd ltp-checkpoint && sudo \.\/deno run -A tools\/install\.ts --root \/usr\/local$/m)
      ?.[0];
    assert.ok(line, "the README's install for every user is missing");
    const command = `umask 077 && ${line.replace("sudo ", "").replace("/usr/local", root)}`;
    const installed = await run("sh", ["-c", command], { ...userEnv(home, { DENO_DIR }), cwd: dir.path });
    assertExit(installed, 0);
    assert.doesNotMatch(installed.stderr, /note/);
    const tool = `${root}/bin/tst_checkpoint`;
    const [cmd, args] = asNobody("sh", ["-c", 'eval "$(tst_checkpoint init --cleanup)" && tst_checkpoint status']);
    const nobodyEnv = {
      PATH: `${root}/bin:/usr/bin:/bin`,
      TST_CHECKPOINT_AGENT: "0",
      HOME: job,
      DENO_DIR: `${job}/.deno`,
    };
    const asNobodyRun = await run(cmd, args, { clearEnv: true, env: nobodyEnv });
    assertExit(asNobodyRun, 0);
    assert.match(asNobodyRun.stdout, /owner: +uid 65534/);

    // a Deno outside the checkout, open when installed and closed since: nobody is told it cannot run it, not "gone"
    Deno.mkdirSync(`${dir.path}/open`);
    Deno.chmodSync(`${dir.path}/open`, 0o755);
    placeDeno(`${dir.path}/open/deno`);
    assertExit(await installer(checkout, ["--root", root], userEnv(home, env), `${dir.path}/open/deno`), 0);
    Deno.chmodSync(`${dir.path}/open`, 0o700);
    const [cmd2, args2] = asNobody(tool, ["--version"]);
    const refused = await run(cmd2, args2, {
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", HOME: job, TST_CHECKPOINT_AGENT: "0" },
    });
    assertExit(refused, 2);
    assertOneLine(
      refused.stderr,
      new RegExp(
        `^tst_checkpoint: TBROK: the Deno it was installed with \\(${dir.path}/open/deno\\) cannot be run by uid ${NOBODY} ` +
          `\\(${dir.path}/open is closed to it\\): install it with a Deno every user can run, e\\.g\\. the checkout's ` +
          `\\./deno \\(copied in\\): reinstall it: cd ${checkout} && \\./deno run -A tools/install\\.ts --root ${root}$`,
      ),
    );
    assertExit(await run(tool, ["--version"], userEnv(home, env)), 0);
    Deno.removeSync(`${dir.path}/open/deno`);
    const gone = await run(tool, ["--version"], userEnv(home, env));
    assertExit(gone, 2);
    assertOneLine(
      gone.stderr,
      /^tst_checkpoint: TBROK: the Deno it was installed with is gone \(.*\/open\/deno\): reinstall it: cd /,
    );

    // root installing where only root can reach is told so
    const mine = await installer(checkout, ["--root", `${dir.path}/closed/root`], userEnv(home, env));
    assertExit(mine, 0);
    assert.match(
      mine.stderr,
      new RegExp(
        `^install: note: only root can run it \\(${dir.path}/closed is mode 0700, of uid 0\\); for every user: --root /usr/local$`,
        "m",
      ),
    );
  },
});
