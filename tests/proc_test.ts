/** futexWaiters(): finding through /proc who waits on which words of a file, with real C waiters. */
import assert from "node:assert/strict";
import { lstat } from "../ffi/syscalls.ts";
import { libc } from "../ffi/libc.ts";
import { type FutexWaiter, futexWaiters } from "../ffi/proc.ts";
import { forgetCallerEnv } from "../testing/env.ts";
import { readableSources } from "../testing/files.ts";
import { run } from "../testing/process.ts";
import { scaled } from "../testing/timing.ts";

forgetCallerEnv();

/*
 * waiter MODE PATH OFFSET MS: names itself pw-MODE, maps PATH shared, then
 * blocks for at most MS; exits 1 when it could not start, else 0. MODE:
 *   wait     FUTEX_WAIT on the word at OFFSET, from a second thread
 *   waitv    futex_waitv on that word twice and a private word of its own
 *   private  FUTEX_WAIT_PRIVATE on that word
 *   sleep    nanosleep
 */
const WAITER_C = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* the names of Linux 6.7's headers; older ones spell FUTEX2_SIZE_U32 FUTEX_32 */
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG
#endif

static uint32_t *word;

/* FUTEX_WAIT on the file's word, shared or private, until ts has passed */
static struct timespec ts;

static void *wait_word(void *op)
{
	syscall(SYS_futex, word, (int)(intptr_t)op, 0, &ts, NULL, 0);
	return NULL;
}

/* the file's word twice, then a word only this process may wake */
static void wait_vector(void)
{
	static uint32_t cancel;
	struct futex_waitv v[3] = {
		{ .uaddr = (uintptr_t)word, .flags = FUTEX2_SIZE_U32 },
		{ .uaddr = (uintptr_t)word, .flags = FUTEX2_SIZE_U32 },
		{ .uaddr = (uintptr_t)&cancel, .flags = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE },
	};
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ts.tv_sec + 1;
	syscall(SYS_futex_waitv, v, 3, 0, &deadline, CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
	char name[16];
	pthread_t thread;
	if (argc != 5)
		return 1;
	snprintf(name, sizeof(name), "pw-%s", argv[1]);
	prctl(PR_SET_NAME, name);
	int fd = open(argv[2], O_RDWR);
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd < 0 || page == MAP_FAILED)
		return 1;
	word = (uint32_t *)(page + atoi(argv[3]));
	long ms = atol(argv[4]);
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = ms % 1000 * 1000000;
	if (!strcmp(argv[1], "wait")) {
		/* from a second thread, so that the waiter's tid is not its pid */
		pthread_create(&thread, NULL, wait_word, (void *)FUTEX_WAIT);
		pthread_join(thread, NULL);
	} else if (!strcmp(argv[1], "waitv")) {
		wait_vector();
	} else if (!strcmp(argv[1], "private")) {
		wait_word((void *)FUTEX_WAIT_PRIVATE);
	} else if (!strcmp(argv[1], "sleep")) {
		/* glibc's usleep() calls clock_nanosleep: call the one the test looks for */
		syscall(SYS_nanosleep, &ts, NULL);
	} else {
		return 1;
	}
	return 0;
}
`;

const PAGE = 4096;
/** The ltp layout's futex array starts at byte 76. */
const word = (id: number) => 76 + 4 * id;

/** A private folder with a one-page region file and the compiled waiter; children are killed and the folder removed. */
async function fixture() {
  const dir = await Deno.makeTempDir({ prefix: "ltp-checkpoint-proc-" });
  const file = `${dir}/region`;
  try {
    const page = new Uint8Array(PAGE);
    page.set(new TextEncoder().encode("LTPM"));
    await Deno.writeFile(file, page);
    await Deno.writeTextFile(`${dir}/waiter.c`, WAITER_C);
    const gcc = await run("gcc", ["-O2", "-Wall", "-Werror", "-pthread", "-o", `${dir}/waiter`, `${dir}/waiter.c`]);
    if (gcc.code !== 0) throw new Error(`gcc failed: ${gcc.stderr}`);
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  const children: { child: Deno.ChildProcess; mode: string; exit?: number }[] = [];
  return {
    dir,
    file,
    /** Starts a waiter, optionally behind a command such as setpriv. */
    start(mode: string, offset: number, wrapper: string[] = []): Deno.ChildProcess {
      const args = [...wrapper, `${dir}/waiter`, mode, file, `${offset}`, `${scaled(20_000)}`];
      const child = new Deno.Command(args[0], { args: args.slice(1), stdin: "null", stdout: "null", stderr: "null" })
        .spawn();
      const entry: (typeof children)[number] = { child, mode };
      child.status.then((s) => entry.exit = s.code);
      children.push(entry);
      return child;
    },
    /** Children that ended early, for a failure message. */
    ended(): string {
      return children.filter((c) => c.exit !== undefined).map((c) => `${c.mode} exited ${c.exit}`).join(", ");
    },
    async [Symbol.asyncDispose]() {
      for (const { child } of children) {
        try {
          child.kill("SIGKILL");
        } catch {
          // already ended
        }
        await child.status;
      }
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Whether the process's main thread sleeps in the syscall numbered `nr` (a thread on a CPU reads `running`). */
function blockedIn(pid: number, nr: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/syscall`).startsWith(`${nr} `);
  } catch {
    return false;
  }
}

/** A waiter as the tests compare it: a tid other than the pid, unknown in advance, reads "thread"; comm as text. */
type Seen = Omit<FutexWaiter, "tid" | "comm"> & { tid: number | "thread"; comm: string };

function seen(waiters: FutexWaiter[]): Seen[] {
  return waiters
    .map((w) => ({ ...w, tid: w.tid === w.pid ? w.pid : "thread" as const, comm: new TextDecoder().decode(w.comm) }))
    .sort((a, b) => a.pid - b.pid || a.offset - b.offset);
}

/** The waiters on a file, as seen(); with time for a busy machine: these tests check what is found, not how fast. */
function scan(path: string): Seen[] {
  const { dev, ino } = lstat(path)!;
  return seen(futexWaiters([{ dev, ino }], { budgetMs: scaled(30000) }).waiters);
}

/** Polls until `ready` holds, for at most `ms`; the error says what was seen last. */
async function until(ready: () => boolean, ms: number, describe: () => string): Promise<void> {
  const end = performance.now() + ms;
  while (!ready()) {
    if (performance.now() > end) throw new Deno.errors.TimedOut(`Not reached in ${ms} ms; saw ${describe()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("futexWaiters names each FUTEX_WAIT and futex_waitv entry on the file's words, and nothing else", async () => {
  await using fx = await fixture();
  const { futex, nanosleep } = libc().numbers;
  const waiter = fx.start("wait", word(3));
  const vector = fx.start("waitv", word(5));
  const privateWaiter = fx.start("private", word(7));
  const sleeper = fx.start("sleep", 0);
  const expected = [
    { file: 0, pid: waiter.pid, tid: "thread", comm: "pw-wait", offset: 88 },
    { file: 0, pid: vector.pid, tid: vector.pid, comm: "pw-waitv", offset: 96 },
    { file: 0, pid: vector.pid, tid: vector.pid, comm: "pw-waitv", offset: 96 },
  ].sort((a, b) => a.pid - b.pid);

  let last: Seen[] = [];
  await until(
    () => {
      last = scan(fx.file);
      return last.length >= expected.length && blockedIn(privateWaiter.pid, futex) && blockedIn(sleeper.pid, nanosleep);
    },
    scaled(10_000),
    () => `${JSON.stringify(last)} ${fx.ended()}`,
  );
  // again, now that the private waiter and the sleeper surely block
  assert.deepEqual(scan(fx.file), expected);

  const other = `${fx.dir}/other`;
  await Deno.copyFile(fx.file, other);
  assert.deepEqual(scan(other), [], "a file nobody maps has no waiters");
  const { dev, ino } = lstat(fx.file)!;
  assert.deepEqual(
    futexWaiters([{ dev: dev + 1n, ino }]).waiters,
    [],
    "the same inode number on another device is another file",
  );
});

Deno.test("futexWaiters skips the processes that end while it reads them", async () => {
  await using fx = await fixture();
  const waiter = fx.start("wait", word(0));
  const expected = [{ file: 0, pid: waiter.pid, tid: "thread", comm: "pw-wait", offset: 76 }];
  let last: Seen[] = [];
  await until(() => (last = scan(fx.file)).length > 0, scaled(10_000), () => `${JSON.stringify(last)} ${fx.ended()}`);
  // thousands of short-lived processes, each gone between a listing of /proc and the reads that follow
  const churn = new Deno.Command("sh", {
    args: ["-c", "i=0; while [ $i -lt 2000 ]; do ( : ) & i=$((i + 1)); done; wait"],
    stdin: "null",
  }).spawn();
  let done = false;
  const status = churn.status.finally(() => done = true);
  let scans = 0;
  for (; !done; scans++) {
    assert.deepEqual(scan(fx.file), expected);
    await new Promise((r) => setTimeout(r, 0));
  }
  assert.ok((await status).success);
  assert.ok(scans > 1, `scanned ${scans} times during the churn`);
});

Deno.test({
  name:
    "futexWaiters as a normal user counts root's waiters as hidden and finds the user's own (needs root and setpriv)",
  ignore: Deno.uid() !== 0,
  async fn() {
    await using fx = await fixture();
    // the user reaches the region and the waiter, but cannot list the folder
    await Deno.chmod(fx.dir, 0o711);
    await Deno.chmod(fx.file, 0o666);
    const denoDir = `${fx.dir}/deno-dir`;
    await Deno.mkdir(denoDir);
    await Deno.chmod(denoDir, 0o777);
    const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    const rootWaiter = fx.start("wait", word(1));
    const nobodyWaiter = fx.start("waitv", word(2), asNobody);
    const all = [
      { file: 0, pid: rootWaiter.pid, tid: "thread", comm: "pw-wait", offset: 80 },
      { file: 0, pid: nobodyWaiter.pid, tid: nobodyWaiter.pid, comm: "pw-waitv", offset: 84 },
      { file: 0, pid: nobodyWaiter.pid, tid: nobodyWaiter.pid, comm: "pw-waitv", offset: 84 },
    ].sort((a, b) => a.pid - b.pid);
    let last: Seen[] = [];
    await until(() => (last = scan(fx.file)).length >= all.length, scaled(10_000), () => {
      return `${JSON.stringify(last)} ${fx.ended()}`;
    });
    assert.deepEqual(last, all, "root sees every waiter");

    const src = readableSources(); // the checkout may be private
    const script = `
      import { lstat } from "${src}/ffi/syscalls.ts";
      import { futexWaiters } from "${src}/ffi/proc.ts";
      const { dev, ino } = lstat(${JSON.stringify(fx.file)});
      console.log(JSON.stringify(futexWaiters([{ dev, ino }]), (_, v) => v instanceof Uint8Array ? [...v] : v));
    `;
    const nobody = await run(asNobody[0], [...asNobody.slice(1), `${src}/deno`, "eval", "--quiet", script], {
      signal: AbortSignal.timeout(scaled(60_000)),
      env: { DENO_DIR: denoDir },
      cwd: "/",
    });
    assert.equal(nobody.code, 0, nobody.stderr);
    const found: { waiters: FutexWaiter[]; hidden: number } = JSON.parse(
      nobody.stdout,
      (key, value) => key === "comm" ? Uint8Array.from(value) : value,
    );
    assert.deepEqual(seen(found.waiters), all.filter((w) => w.pid === nobodyWaiter.pid), "the user sees its own only");
    assert.ok(found.hidden >= 1, `root's waiter is hidden: ${found.hidden}`);
  },
});
