/**
 * `status --all`: every checkpoint region in some folders, who made it,
 * whether its maker lives, who waits on it, and which are stale. Read-only:
 * regions are mapped read-only, counted with FUTEX_CMP_REQUEUE (which wakes
 * nobody), and /proc is scanned once for all of them.
 * @module
 */
import { fileUsers, type FileUses, processExists, SCAN_BUDGET_MS } from "../ffi/proc.ts";
import { syscallError } from "../ffi/errno.ts";
import { dirname, normalise } from "../ffi/path.ts";
import { type FoundFile, scanFolder } from "../ffi/scan.ts";
import { geteuid, pageSize } from "../ffi/syscalls.ts";
import { readEnv } from "./env.ts";
import { listAgents } from "./agents.ts";
import { type Maker, makerOf, MAKERS } from "./maker.ts";
import { listingRefusal } from "./region.ts";
import { runAgainWith } from "./errors.ts";
import { escapeBytes, escapeText } from "./escape.ts";
import { capacityOf, hasMagic, type Layout, layoutInForce, type LayoutSource, libPidOf } from "./layout.ts";
import { type Snapshot, takeSnapshot } from "./snapshot.ts";
import { type CheckpointStatus, formatStatus, type ProcScan, type RegionFacts, scanProc, statusOf } from "./status.ts";
import { plural, shellQuote } from "./text.ts";

/** One region of a listing: what `status` reports for it, and who made it. */
export interface RegionEntry extends CheckpointStatus {
  /** Which library made it. */
  maker: Maker;
  /** The pid of its maker, from the header or the name; 0 when unknown. */
  makerPid: number;
  /**
   * Whether a process with that pid exists now; null when unknown (no pid,
   * /proc not readable or hiding other users' processes). A reused pid reads
   * as alive: a region is never called stale by mistake that way.
   */
  makerAlive: boolean | null;
  /**
   * A process that keeps it in use although its maker has exited: its
   * environment names the region (LTP_IPC_PATH), it maps it, or has it open.
   * Such a region is not stale.
   */
  usedBy?: { pid: number; comm: string; by: "environment" | "mapping" | "descriptor" };
  /**
   * Why nobody can tell whether it is still in use, where its maker has
   * exited and no user was seen: processes that could open it could not be
   * looked at. Such a region is not called stale ("maker unknown").
   */
  makerUnknown?: string;
  /** Its maker has exited, nobody waits on it in either layout, and no process is seen or could be unseen using it. */
  stale: boolean;
  /** For a stale region: the command that removes it, shell-quoted. Nothing is removed unasked. */
  removeCommand?: string;
  /**
   * For a stale region this user may not remove (not root, not its owner,
   * in a sticky folder): whose it is, instead of a command that would fail.
   */
  removableBy?: { uid: number; name?: string };
  /**
   * The path's bytes, where its name is not UTF-8: `path` then shows each
   * byte of an invalid sequence as `\xNN`, and these are the file's real name.
   */
  pathBytes?: number[];
}

/** What {@linkcode listRegions} found. */
export interface RegionListing {
  /** The regions, by folder, then by name. */
  regions: RegionEntry[];
  /** What was left out and why: folders not allowed, files another user's, time run out. */
  notes: string[];
}

/** How long a whole listing may take by default, the /proc scan included. */
const LISTING_BUDGET_MS = 3000;
/** The time kept for the /proc scan: the folders may take the rest. */
const MIN_SCAN_MS = 500;
const MAX_NAMED = 10;

/** The bytes of a found file's path: the folder as given, then the name as the kernel gave it. */
function pathBytesOf(found: FoundFile): Uint8Array {
  const folder = new TextEncoder().encode(found.path.slice(0, found.path.lastIndexOf("/") + 1));
  const bytes = new Uint8Array(folder.length + found.name.length);
  bytes.set(folder);
  bytes.set(found.name, folder.length);
  return bytes;
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * A found file's path as text: as decoded where its name is UTF-8, else
 * escaped (each byte of an invalid sequence as `\xNN`, never U+FFFD, which
 * would stand for any byte); the entry then also carries the bytes.
 */
function pathOf(found: FoundFile): string {
  return isUtf8(found.name) ? found.path : escapeBytes(pathBytesOf(found));
}

/** A user's name from /etc/passwd, where it may be read; undefined otherwise. */
function userName(uid: number): string | undefined {
  if (!readable("/etc/passwd")) return undefined;
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const [name, , id] = line.split(":");
      if (id === String(uid) && name) return name;
    }
  } catch {
    // no name, then: the uid says whose it is
  }
  return undefined;
}

/**
 * Whether this user may remove a file owned by `uid` in `folder`: root, the
 * owner, or, in a folder without the sticky bit, the folder's owner. (Write
 * permission through a group is not counted: the command is then left out
 * where it might have worked, never printed where it cannot.)
 */
function mayRemove(uid: number, folder: string): boolean {
  const me = geteuid();
  if (me === 0 || me === uid) return true;
  try {
    const info = Deno.statSync(folder);
    return ((info.mode ?? 0) & 0o1000) === 0 && info.uid === me;
  } catch {
    return false;
  }
}

/** A region's facts and kernel counts, read from its open file; the file is closed. */
function readRegion(found: FoundFile, layout: Layout, source: LayoutSource, page: number, deadline: number) {
  const file = found.file!;
  try {
    const bytes = file.map(page);
    const libPid = libPidOf(bytes);
    const snapshot: Snapshot = takeSnapshot(layout, page, (offset) => file.futexWaiters(offset, deadline));
    const facts: RegionFacts = {
      path: pathOf(found),
      layout,
      layoutSource: source,
      capacity: capacityOf(layout, page),
      libPid,
      ...found.info,
    };
    return { facts, snapshot };
  } finally {
    file.close();
  }
}

/** The default folders: /dev/shm and the temporary folder (TMPDIR, else /tmp). */
function defaultFolders(): string[] {
  return [...new Set(["/dev/shm", readEnv("TMPDIR") || "/tmp"])];
}

function readable(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted";
}

/**
 * Every checkpoint region in `folders` (by default /dev/shm and the
 * temporary folder): a regular file of a page or more that starts with
 * `LTPM`, found without following a symlink and without opening anything
 * else, each as the status object `status` gives for one region, plus its
 * maker, whether the maker lives, and whether it is stale. Only folders the
 * read permission allows are listed; nothing is written. Bounded in time:
 * what is left when `budgetMs` (3000 by default) has passed is counted in a
 * note, and /proc is scanned once for all the regions.
 *
 * @param folders The folders to list; a folder reached through a symlink is refused (a note).
 * @param options `layout`: the layout to read with (else LTP_IPC_LAYOUT, else `ltp`); `budgetMs`: the time bound.
 * @returns The regions and the notes on what was left out.
 * @throws {TypeError} When LTP_IPC_LAYOUT names no layout.
 * @example List the regions of a folder
 * ```ts
 * import assert from "node:assert/strict";
 * import { Checkpoint, listRegions } from "@ltp/checkpoint";
 *
 * const dir = Deno.makeTempDirSync();
 * try {
 *   using cp = Checkpoint.create({ dir });
 *   const { regions } = listRegions([dir]);
 *   assert.deepEqual(regions.map((r) => [r.path === cp.path, r.maker, r.stale]), [[true, "tst_checkpoint", false]]);
 * } finally {
 *   Deno.removeSync(dir, { recursive: true });
 * }
 * ```
 */
export function listRegions(folders?: string[], options: { layout?: Layout; budgetMs?: number } = {}): RegionListing {
  const start = performance.now();
  const budget = options.budgetMs ?? LISTING_BUDGET_MS;
  const { layout, source } = layoutInForce(options.layout);
  const page = pageSize();
  const notes: string[] = [];
  const regions: { found: FoundFile; facts: RegionFacts; snapshot: Snapshot }[] = [];
  const unopened: FoundFile[] = [];
  let unexamined = 0;
  let uncounted = 0;
  // counting regions (the kernel's truth, a system call a word) comes first; the /proc scan gets what is left, at least MIN_SCAN_MS
  const foldersDeadline = start + Math.max(budget - MIN_SCAN_MS, budget / 2);
  // a folder named twice, or /dev/shm and TMPDIR the same: each region once
  const seen = new Set<string>();
  const listed = folders ?? defaultFolders();
  for (const folder of listed) {
    const shown = escapeText(folder);
    const refused = listingRefusal(folder);
    if (refused !== undefined) {
      notes.push(`${shown} skipped: ${escapeText(refused)}`);
      continue;
    }
    // each region is read while the scan holds it open, then closed: a listing holds a few descriptors at a time
    const first = regions.length;
    const use = (found: FoundFile) => {
      const id = `${found.info.dev}:${found.info.ino}`;
      if (seen.has(id)) return;
      seen.add(id);
      if (!found.file) {
        if (new TextDecoder().decode(found.name).startsWith("ltp_")) unopened.push(found);
        return;
      }
      if (performance.now() > foldersDeadline) {
        uncounted++;
        return;
      }
      try {
        regions.push({ found, ...readRegion(found, layout, source, page, foldersDeadline) });
      } catch (error) {
        notes.push(`${escapeBytes(pathBytesOf(found))} skipped: ${escapeText((error as Error).message)}`);
      }
    };
    let scan;
    try {
      scan = scanFolder(folder, { minSize: page, deadline: foldersDeadline, allowed: readable, wanted: hasMagic, use });
    } catch (error) {
      notes.push(`${shown} skipped: ${escapeText((error as Error).message)}`);
      continue;
    }
    unexamined += scan.unexamined;
    if (scan.mountPoints > 0) {
      const what = scan.mountPoints === 1
        ? "entry has a file system mounted on it"
        : "entries have file systems mounted on them";
      notes.push(`${shown}: ${scan.mountPoints} ${what}, not looked into`);
    }
    for (const [errno, count] of scan.unreadable) {
      // `shown` is escaped already, and the errno's text is the project's own
      notes.push(syscallError(`${shown}: ${plural(count, "entry", "entries")} not looked at`, errno).message);
    }
    const byPath = regions.splice(first).sort((a, b) =>
      a.found.path < b.found.path ? -1 : a.found.path > b.found.path ? 1 : 0
    );
    regions.push(...byPath);
  }
  if (unexamined > 0) notes.push(`${unexamined} files not examined in time`);
  if (uncounted > 0) notes.push(`${uncounted} regions not counted in time`);
  if (unopened.length > 0) {
    const named = unopened.slice(0, MAX_NAMED).map((f) =>
      `${escapeBytes(pathBytesOf(f))} (uid ${f.info.uid}, mode ${f.info.mode.toString(8).padStart(4, "0")})`
    );
    if (unopened.length > MAX_NAMED) named.push(`${unopened.length - MAX_NAMED} more`);
    notes.push(`files named ltp_* that this user may not open, maybe regions: ${named.join(", ")}`);
  }

  const waited = regions.filter((r) => Object.keys(r.snapshot.waiters).length > 0);
  const procScan: ProcScan | undefined = waited.length === 0 ? undefined : scanProc(
    waited.map((r) => r.facts),
    Math.max(MIN_SCAN_MS, Math.min(SCAN_BUDGET_MS, start + budget - performance.now())),
  );
  const canSeeProc = readable("/proc");
  const entries = regions.map(({ found, facts, snapshot }): RegionEntry => {
    const index = waited.findIndex((r) => r.facts === facts);
    const status = statusOf(facts, snapshot, index < 0 ? undefined : procScan, index);
    const { maker, makerPid } = makerOf(new TextDecoder().decode(found.name), facts.libPid, facts.mode);
    const makerAlive = makerPid > 0 && canSeeProc ? processExists(makerPid) : null;
    const idle = Object.keys(snapshot.waiters).length === 0 && Object.keys(snapshot.otherLayout.waiters).length === 0;
    const entry: RegionEntry = { ...status, maker, makerPid, makerAlive, stale: makerAlive === false && idle };
    if (!isUtf8(found.name)) entry.pathBytes = [...pathBytesOf(found)];
    if (entry.stale) {
      const folderPath = new TextEncoder().encode(found.path.slice(0, found.path.lastIndexOf("/") + 1));
      const bytes = new Uint8Array(folderPath.length + found.name.length);
      bytes.set(folderPath);
      bytes.set(found.name, folderPath.length);
      entry.removeCommand = `LTP_IPC_PATH=${shellQuote(bytes)} tst_checkpoint remove`;
    }
    return entry;
  });
  if (entries.some((e) => e.makerPid > 0) && !canSeeProc) {
    notes.push(`whether makers live is unknown: ${runAgainWith(["--allow-read=/proc"])}`);
  }
  const orphans = entries.filter((e) => e.stale);
  if (orphans.length > 0) {
    const budgetMs = Math.max(MIN_SCAN_MS, start + budget - performance.now());
    judgeOrphans(orphans, regions, budgetMs);
  }
  entries.forEach((entry, i) => {
    if (!entry.stale) return;
    const { found } = regions[i];
    if (mayRemove(found.info.uid, found.path.slice(0, found.path.lastIndexOf("/")) || "/")) return;
    delete entry.removeCommand;
    entry.removableBy = { uid: found.info.uid, name: userName(found.info.uid) };
  });
  notes.push(...agentNotes(listed, [geteuid(), ...regions.map((r) => r.facts.uid)]));
  return { regions: entries, notes };
}

/** The installed tool's resident agents of these users for regions in `folders`, and the channels that dead ones left. */
function agentNotes(folders: string[], uids: number[]): string[] {
  const listed = new Set(folders.map((folder) => normalise(folder)));
  return listAgents(uids).filter((agent) => listed.has(dirname(agent.region))).map((agent) => {
    const calls = plural(agent.clients.length, "call", "calls");
    const folder = escapeText(agent.folder);
    if (agent.alive === false) {
      return `${folder}: a channel left behind by agent ${agent.pid}, which has exited (the next call for its region clears it)`;
    }
    const retiring = agent.folder.includes("/.retired.") ? ", retiring after a reinstall" : "";
    return `agent ${agent.pid} serves ${escapeText(agent.region)} (${calls}${retiring}; its channel: ${folder})`;
  });
}

/**
 * Regions whose maker has exited and that nobody waits on: stale, unless a
 * process keeps them in use (its environment names one, it maps or holds
 * one open) or processes that could have one could not be looked at. A
 * shell's own environment does not show what it exported, so a shell test
 * whose `init` ran in a subshell is seen through the commands it runs.
 */
function judgeOrphans(
  orphans: RegionEntry[],
  regions: { found: FoundFile; facts: RegionFacts }[],
  budgetMs: number,
): void {
  const files = orphans.map((entry) => {
    const { found, facts } = regions.find((r) => r.facts.path === entry.path)!;
    const folder = new TextEncoder().encode(found.path.slice(0, found.path.lastIndexOf("/") + 1));
    const path = new Uint8Array(folder.length + found.name.length);
    path.set(folder);
    path.set(found.name, folder.length);
    return { path, dev: facts.dev, ino: facts.ino };
  });
  let found: FileUses | undefined;
  let why: string | undefined;
  try {
    found = fileUsers(files, { budgetMs });
  } catch (error) {
    why = `/proc could not be read: ${escapeText(String((error as Error).message ?? error))}`;
  }
  orphans.forEach((entry, i) => {
    const use = found?.uses.find((u) => u.file === i);
    if (use) {
      entry.usedBy = { pid: use.pid, comm: escapeBytes(use.comm), by: use.by };
    } else {
      const unseen = found === undefined ? why : unseenNote(found, entry);
      if (unseen === undefined) return;
      entry.makerUnknown = unseen;
    }
    entry.stale = false;
    delete entry.removeCommand;
  });
}

/**
 * Whether a process of `uid` that this process may not inspect could have the
 * region in use: one of its owner's (not dumpable, say), or anyone's where its
 * mode lets others read and write it (LTP's C library makes its regions 0666).
 * Root could open any region, but a region only its owner may open is used by
 * its owner's processes; and to root, a process it may not inspect is one of
 * another user namespace, outside its reach.
 */
function couldOpen(uid: number, entry: RegionEntry): boolean {
  if (geteuid() === 0) return false;
  return uid === entry.uid || (entry.mode & 0o066) !== 0;
}

/** What kept the search from seeing every process that could use the region; undefined when nothing did. */
function unseenNote(found: FileUses, entry: RegionEntry): string | undefined {
  const parts = [];
  if (found.hiddenUids.some((uid) => couldOpen(uid, entry))) {
    parts.push(`${plural(found.hidden, "process", "processes")} could not be looked at (run as root to see them)`);
  }
  if (found.unscanned > 0) {
    parts.push(`${plural(found.unscanned, "process was", "processes were")} not looked at in time`);
  }
  for (const pid of found.stalled) parts.push(`process ${pid}'s /proc files did not answer in time`);
  if (found.unfinished) parts.push(escapeText(found.unfinished));
  return parts.length > 0 ? parts.join(", ") : undefined;
}

/** The text of a listing: one `status` block per region, a blank line between, then the notes. */
export function formatListing(listing: RegionListing): string {
  const blocks = listing.regions.map((r) => {
    const alive = r.makerAlive === null ? "" : r.makerAlive ? " (alive)" : " (exited)";
    const madeBy = `${MAKERS[r.maker]}${r.makerPid ? `, pid ${r.makerPid}${alive}` : ""}`;
    // a path that is not UTF-8 was escaped from its bytes already
    const lines = [formatStatus(r, madeBy, r.pathBytes ? r.path : undefined)];
    if (r.usedBy) {
      const how = { environment: "its environment names it", mapping: "it maps it", descriptor: "it has it open" }[
        r.usedBy.by
      ];
      lines.push(`in use:   pid ${r.usedBy.pid} (${r.usedBy.comm}): ${how}`);
    }
    if (r.makerUnknown) lines.push(`in use:   maker unknown, so not called stale: ${r.makerUnknown}`);
    if (r.stale) {
      const owner = r.removableBy;
      const remove = owner
        ? `it belongs to uid ${owner.uid}${
          owner.name ? ` (${escapeText(owner.name)})` : ""
        }: they or root can remove it`
        : `to remove it: ${r.removeCommand}`;
      lines.push(`stale:    its maker has exited and nobody waits; ${remove}`);
    }
    return lines.join("\n");
  });
  if (blocks.length === 0) blocks.push("no checkpoint regions found");
  if (listing.notes.length > 0) blocks.push(listing.notes.map((note) => `note:     ${note}`).join("\n"));
  return blocks.join("\n\n");
}
