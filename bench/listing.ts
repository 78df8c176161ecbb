/**
 * The diagnosis under load and under attack, as medians of a few runs:
 *
 * 1. listRegions() of a folder of 5,000 files (2,500 of one page, 2,500
 *    short) holding 3 regions, and of a folder of 200 regions;
 * 2. status() of a region with one real waiter, alone, then beside 8
 *    processes with 60,000 mappings each waiting on their own files
 *    (tests/forger.c many-maps), and beside a thread blocked in futex_waitv
 *    with its vector in a FUSE page nobody serves (tests/fuse_staller.c;
 *    root only).
 *
 *   ./deno run --allow-all bench/listing.ts
 */
import { Checkpoint, listRegions } from "../mod.ts";
import { PAGE } from "../testing/paths.ts";
import { compiled } from "../testing/peer.ts";
import { median } from "./report.ts";

const RUNS = 5;

function timed(fn: () => unknown): number {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return median(times);
}

function row(what: string, value: number): void {
  console.log(`${what.padEnd(72)} ${value.toFixed(1).padStart(8)} ms`);
}

const dir = Deno.makeTempDirSync({ prefix: "ltp-checkpoint-bench-" });
const children: Deno.ChildProcess[] = [];
try {
  const page = new Uint8Array(PAGE);
  const files = `${dir}/files`;
  Deno.mkdirSync(files);
  for (let i = 0; i < 5000; i++) Deno.writeFileSync(`${files}/f${i}`, i % 2 ? page : page.subarray(0, 100));
  page.set(new TextEncoder().encode("LTPM"));
  for (let i = 0; i < 3; i++) Deno.writeFileSync(`${files}/ltp_t_${i}`, page);
  row("listRegions: 5,000 files, 3 regions", timed(() => listRegions([files], { layout: "ltp" })));
  const many = `${dir}/regions`;
  Deno.mkdirSync(many);
  for (let i = 0; i < 200; i++) Deno.writeFileSync(`${many}/ltp_t_${i}`, page);
  row("listRegions: 200 regions", timed(() => listRegions([many], { layout: "ltp" })));

  using cp = Checkpoint.create({ dir });
  const forger = await compiled("forger.c");
  const spawn = (cmd: string, args: string[], stdin: "null" | "piped" = "null") => {
    const child = new Deno.Command(cmd, { args, stdin, stdout: "null", stderr: "null" }).spawn();
    children.push(child);
    return child;
  };
  spawn(forger, ["real", cp.path, "76", "real-waiter"]);
  await cp.waitForWaiters(0, 1, 10000);
  row("status(): 1 real waiter", timed(() => cp.status()));
  for (let i = 0; i < 8; i++) spawn(forger, ["many-maps", cp.path, "76", "many-maps"]);
  await new Promise((r) => setTimeout(r, 3000)); // 60,000 mmaps each
  row("status(): 1 real waiter, 8 processes with 60,000 mappings each", timed(() => cp.status()));
  if (Deno.uid() === 0) {
    const mount = `${dir}/mnt`;
    Deno.mkdirSync(mount);
    spawn(
      "unshare",
      ["-m", "--propagation", "private", await compiled("fuse_staller.c"), mount, cp.path, "80"],
      "piped",
    );
    await cp.waitForWaiters(1, 1, 10000);
    await new Promise((r) => setTimeout(r, 500));
    row("status(): ... and a futex_waitv vector in a FUSE page nobody serves", timed(() => cp.status()));
  }
} finally {
  for (const child of children) {
    try {
      child.stdin?.close(); // the FUSE server's end: frees its stuck process
    } catch {
      // not piped
    }
    try {
      child.kill("SIGKILL");
    } catch {
      // ended already
    }
    await child.status;
  }
  Deno.removeSync(dir, { recursive: true });
}
