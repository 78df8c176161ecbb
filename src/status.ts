/**
 * What `status` reports for one region: the facts of the file, the kernel's
 * counts and, where /proc may be read, the processes found waiting; and the
 * text `tst_checkpoint status` prints of it.
 * @module
 */
import { futexWaiters } from "../ffi/proc.ts";
import type { Layout, Snapshot } from "./diagnose.ts";
import { runAgainWith } from "./hint.ts";
import { LAYOUT_OFFSETS } from "./region.ts";

/** Where the layout in force came from: code or the command line, the environment, or the default. */
export type LayoutSource = "option" | "LTP_IPC_LAYOUT" | "default";

/** A waiting thread of another process, as /proc shows it. */
export interface WaitingProcess {
  /** Its process id. */
  pid: number;
  /** The command name (/proc/PID/comm). */
  comm: string;
}

/** What {@linkcode Checkpoint.status} reports. */
export interface CheckpointStatus {
  /** The region file. */
  path: string;
  /** The layout in force. */
  layout: Layout;
  /** Where it came from. */
  layoutSource: LayoutSource;
  /** How many checkpoint ids the region holds. */
  capacity: number;
  /** The file's owner. */
  uid: number;
  /** Its permission bits, such as `0o600`. */
  mode: number;
  /** The pid LTP's C library wrote in the header of a region it made; 0 for other regions. */
  libPid: number;
  /** Waiters per checkpoint id, counted by the kernel. */
  waiters: Snapshot["waiters"];
  /** The same, numbered as the other layout would: waiters here mean the two sides disagree. */
  otherLayout: Snapshot["otherLayout"];
  /** Per checkpoint id, the processes found waiting there; absent when /proc could not be read. */
  processes?: Record<number, WaitingProcess[]>;
  /** Why some or all waiting processes are not named, and how to see them; absent when all are. */
  note?: string;
}

/** The facts of a region that status reports, besides its snapshot. */
export interface RegionFacts {
  path: string;
  layout: Layout;
  layoutSource: LayoutSource;
  capacity: number;
  libPid: number;
  uid: number;
  mode: number;
  dev: bigint;
  ino: bigint;
}

/** The status of a region: `facts`, the kernel's counts in `snapshot`, and the processes /proc names. */
export function statusOf(facts: RegionFacts, snapshot: Snapshot): CheckpointStatus {
  const { path, layout, layoutSource, capacity, uid, mode, libPid, dev, ino } = facts;
  const { waiters, otherLayout } = snapshot;
  const status: CheckpointStatus = {
    path,
    layout,
    layoutSource,
    capacity,
    uid,
    mode,
    libPid,
    waiters,
    otherLayout,
  };
  if (Object.keys(waiters).length === 0) return status;
  if (Deno.permissions.querySync({ name: "read", path: "/proc" }).state !== "granted") {
    status.note = `to see which processes wait, ${runAgainWith(["--allow-read=/proc"])}`;
    return status;
  }
  const found = futexWaiters(dev, ino);
  const processes: Record<number, WaitingProcess[]> = {};
  let named = 0;
  const offset = LAYOUT_OFFSETS[layout];
  for (const { pid, comm, offset: at } of found.waiters) {
    const id = (at - offset) / 4;
    if (id < 0 || !(id in waiters)) continue;
    (processes[id] ??= []).push({ pid, comm });
    named++;
  }
  status.processes = processes;
  const counted = Object.values(waiters).reduce((a, b) => a + b, 0);
  if (named < counted) {
    status.note = found.hidden > 0
      ? `${found.hidden} process(es) could not be inspected: run as root or as their owner to name every waiter`
      : "some waiters could not be named (they may have just left)";
  }
  return status;
}

const SOURCES = { option: "--layout", LTP_IPC_LAYOUT: "LTP_IPC_LAYOUT", default: "default" } as const;

/** `git status` style: the facts, who waits where, then the one next step that helps. */
export function formatStatus(s: CheckpointStatus): string {
  const lines = [
    `path:     ${s.path}`,
    `layout:   ${s.layout} (${SOURCES[s.layoutSource]})`,
    `made by:  ${s.libPid ? `LTP's C library, pid ${s.libPid}` : "not LTP's C library (no pid in its header)"}`,
    `capacity: ${s.capacity} (ids 0 to ${s.capacity - 1})`,
    `owner:    uid ${s.uid}, mode ${s.mode.toString(8).padStart(4, "0")}`,
  ];
  const ids = Object.keys(s.waiters).map(Number);
  lines.push(ids.length === 0 ? "waiters:  none" : "waiters:");
  for (const id of ids) {
    const who = s.processes?.[id]?.map(({ pid, comm }) => `pid ${pid} (${comm})`).join(", ");
    lines.push(`  checkpoint ${id}: ${s.waiters[id]} waiting${who ? `: ${who}` : ""}`);
  }
  // words before this layout's first: whoever waits there uses the other layout
  const other = s.otherLayout;
  for (const id of Object.keys(other.waiters).map(Number)) {
    if (LAYOUT_OFFSETS[other.layout] + 4 * id >= LAYOUT_OFFSETS[s.layout]) continue;
    lines.push(
      `elsewhere: ${other.waiters[id]} waiting on checkpoint ${id} of the ${other.layout} layout ` +
        `(byte ${LAYOUT_OFFSETS[other.layout] + 4 * id}): use one layout on both sides (LTP_IPC_LAYOUT or --layout)`,
    );
  }
  if (s.note) lines.push(`note:     ${s.note}`);
  return lines.join("\n");
}
