/**
 * What `status` reports for one region: the facts of the file, the kernel's
 * counts and, where /proc may be read, the processes found waiting; and the
 * text `tst_checkpoint status` prints of it.
 * @module
 */
import { type FileId, type FutexWaiters, futexWaiters, SCAN_BUDGET_MS } from "../ffi/proc.ts";
import { agentsOf, describeClient, waitedId } from "./agents.ts";
import { runAgainWith } from "./errors.ts";
import { escapeBytes, escapeText } from "./escape.ts";
import { type Layout, LAYOUT_OFFSETS, type LayoutSource } from "./layout.ts";
import { makerOf, MAKERS } from "./maker.ts";
import type { Snapshot } from "./snapshot.ts";
import { plural } from "./text.ts";

/** A waiting thread of another process, as /proc shows it. */
export interface WaitingProcess {
  /** Its process id. */
  pid: number;
  /** The command name (/proc/PID/comm), escaped: control characters and invalid UTF-8 as `\xNN`. */
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
  /**
   * Per checkpoint id, the processes whose /proc records say they wait there:
   * evidence, not proof (records can be forged). Where they outnumber the
   * kernel's count, `note` says so. Absent when /proc could not be read.
   */
  processes?: Record<number, WaitingProcess[]>;
  /** Why some waiting processes are not named, or more are named than wait, and how to see them; absent when none. */
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

/** One scan of /proc for some regions' files, or why there is none. */
export type ProcScan = FutexWaiters | { note: string };

/**
 * Scans /proc once for the waiters on `files`, within `budgetMs`; where /proc
 * may not be read, or cannot be, the note that says so. Never throws.
 */
export function scanProc(files: FileId[], budgetMs: number = SCAN_BUDGET_MS): ProcScan {
  if (Deno.permissions.querySync({ name: "read", path: "/proc" }).state !== "granted") {
    return { note: `to see which processes wait, ${runAgainWith(["--allow-read=/proc"])}` };
  }
  try {
    return futexWaiters(files, { budgetMs });
  } catch (error) {
    return { note: `cannot read /proc: ${escapeText(String((error as Error).message ?? error))}` };
  }
}

/** What the scan could not look at, in one note; undefined when it saw everything. */
function scanNote(found: FutexWaiters): string | undefined {
  const parts = [];
  if (found.hidden > 0) {
    parts.push(
      `${plural(found.hidden, "process", "processes")} could not be inspected (run as root or as their owner)`,
    );
  }
  if (found.unscanned > 0) {
    parts.push(`${plural(found.unscanned, "process was", "processes were")} not inspected in time`);
  }
  if (found.failed > 0) parts.push(`${plural(found.failed, "process", "processes")} could not be read`);
  if (found.skipped > 0) {
    parts.push(
      `${plural(found.skipped, "futex_waitv record was", "futex_waitv records were")} not read ` +
        "(vector outside private anonymous memory)",
    );
  }
  return parts.length > 0 ? parts.join(", ") : undefined;
}

/**
 * What the scan had to leave behind, said whatever the counts: a process
 * whose /proc files do not answer (one stalled in exec) may be hiding a
 * waiter, and it is what made the scan slow.
 */
function stalledNotes(found: FutexWaiters): string[] {
  const notes = found.stalled.map((pid) =>
    `process ${pid}'s /proc files did not answer in time: it may be stalled (not read again by this process)`
  );
  if (found.unfinished) notes.push(`/proc was not read: ${escapeText(found.unfinished)}`);
  return notes;
}

/**
 * The status of a region: `facts`, the kernel's counts in `snapshot`, and
 * the processes /proc names, from `scan` when given (entry `file` of the
 * files it scanned), else from a scan of its own made only when someone
 * waits. The kernel's counts are the truth: an id with more candidates than
 * waiters says so in the note.
 */
export function statusOf(facts: RegionFacts, snapshot: Snapshot, scan?: ProcScan, file = 0): CheckpointStatus {
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
  scan ??= scanProc([{ dev, ino }]);
  const processes: Record<number, WaitingProcess[]> = {};
  // a resident agent waits for its clients: they are the waiters, named from its list of calls
  const agents = agentsOf(path, uid);
  for (const agent of agents) {
    for (const client of agent.clients) {
      const id = waitedId(client.args);
      if (id !== undefined && id in waiters) {
        (processes[id] ??= []).push({ pid: client.pid, comm: describeClient(client, agent) });
      }
    }
  }
  if ("note" in scan) {
    status.note = scan.note;
    if (agents.length > 0) status.processes = processes;
    return status;
  }
  const offset = LAYOUT_OFFSETS[layout];
  for (const { file: f, pid, comm, offset: at } of scan.waiters) {
    const id = (at - offset) / 4;
    // records at words where the kernel counts nobody are not waits; an agent's own stand for its clients
    if (f !== file || !(id in waiters) || agents.some((agent) => agent.pid === pid)) continue;
    (processes[id] ??= []).push({ pid, comm: escapeBytes(comm) });
  }
  status.processes = processes;
  const notes = stalledNotes(scan);
  let unnamed = 0;
  for (const [id, count] of Object.entries(waiters)) {
    const named = processes[Number(id)]?.length ?? 0;
    if (named > count) {
      notes.push(
        `checkpoint ${id}: ${named} candidates for ${count} waiting: some records are not real waits ` +
          "(forged, or the wait ended since the count)",
      );
    }
    unnamed += Math.max(0, count - named);
  }
  // what the scan missed matters only where a waiter is left unnamed
  if (unnamed > 0) {
    const missed = scanNote(scan);
    notes.push(
      `${plural(unnamed, "waiter was", "waiters were")} not named: ${missed ?? "they may have just left"}`,
    );
  }
  if (notes.length > 0) status.note = notes.join("; ");
  return status;
}

/** Who made a region, as far as its header, name and mode tell, worded as `status --all` words it. */
function madeByOf(s: CheckpointStatus): string {
  const { maker, makerPid } = makerOf(s.path.slice(s.path.lastIndexOf("/") + 1), s.libPid, s.mode);
  return `${MAKERS[maker]}${makerPid ? `, pid ${makerPid}` : ""}`;
}

/** How many waiting processes a checkpoint's line of the text names. */
const MAX_NAMED_WAITERS = 10;

const SOURCES = { option: "--layout", LTP_IPC_LAYOUT: "LTP_IPC_LAYOUT", default: "default" } as const;

/**
 * `git status` style: the facts, who waits where, then the one next step
 * that helps. `madeBy` replaces what the header alone tells of the maker;
 * `shownPath`, the path escaped already (from its bytes), replaces `s.path`.
 */
export function formatStatus(s: CheckpointStatus, madeBy?: string, shownPath?: string): string {
  const lines = [
    `path:     ${shownPath ?? escapeText(s.path)}`,
    `layout:   ${s.layout} (${SOURCES[s.layoutSource]})`,
    `made by:  ${madeBy ?? madeByOf(s)}`,
    `capacity: ${s.capacity} (ids 0 to ${s.capacity - 1})`,
    `owner:    uid ${s.uid}, mode ${s.mode.toString(8).padStart(4, "0")}`,
  ];
  const ids = Object.keys(s.waiters).map(Number);
  lines.push(ids.length === 0 ? "waiters:  none" : "waiters:");
  for (const id of ids) {
    const candidates = s.processes?.[id] ?? [];
    // comm was escaped once, in statusOf: escaping it again would double its backslashes
    // thousands of waiting threads would make one line of hundreds of KB: `--json` keeps them all
    const named = candidates.slice(0, MAX_NAMED_WAITERS).map(({ pid, comm }) => `pid ${pid} (${comm})`);
    if (candidates.length > MAX_NAMED_WAITERS) named.push(`and ${candidates.length - MAX_NAMED_WAITERS} more`);
    const who = named.join(", ");
    const more = candidates.length > s.waiters[id]
      ? ` (${candidates.length} candidates: some records are not real waits)`
      : "";
    lines.push(`  checkpoint ${id}: ${s.waiters[id]} waiting${more}${who ? `: ${who}` : ""}`);
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
