/** What a region looks like when something timed out, and what that suggests. */
import { type Layout, LAYOUT_OFFSETS } from "./layout.ts";
import { plural } from "./text.ts";

/** Waiters per checkpoint id, only ids where someone waits. */
export type Waiters = Record<number, number>;

/**
 * How many processes wait where, at one moment: counted by the kernel,
 * waking nobody. The same words numbered as the other layout numbers them
 * show a layout mismatch: a waiter on checkpoint 0 of the `seed` layout
 * sits at byte 4, which the `ltp` layout reads as header.
 */
export interface Snapshot {
  /** The layout the ids in `waiters` belong to. */
  layout: Layout;
  /** Waiters per checkpoint id in that layout. */
  waiters: Waiters;
  /** The same moment as the other layout would number it. */
  otherLayout: { layout: Layout; waiters: Waiters };
}

/** Counts the waiters on every word of a page (`count(offset)`), numbered both ways. */
export function takeSnapshot(layout: Layout, page: number, count: (offset: number) => number): Snapshot {
  const other: Layout = layout === "ltp" ? "seed" : "ltp";
  const snapshot: Snapshot = { layout, waiters: {}, otherLayout: { layout: other, waiters: {} } };
  for (let offset = LAYOUT_OFFSETS.seed; offset + 4 <= page; offset += 4) {
    const n = count(offset);
    if (n === 0) continue;
    for (const [into, as] of [[snapshot.waiters, layout], [snapshot.otherLayout.waiters, other]] as const) {
      if (offset >= LAYOUT_OFFSETS[as]) into[(offset - LAYOUT_OFFSETS[as]) / 4] = n;
    }
  }
  return snapshot;
}

const MAX_LISTED = 8;

/** "checkpoint 3 (2 waiting), checkpoint 5 (1 waiting)", or "nobody waits anywhere". */
function listWaiters(waiters: Waiters): string {
  const ids = Object.keys(waiters).map(Number);
  if (ids.length === 0) return "nobody waits anywhere";
  const listed = ids.slice(0, MAX_LISTED).map((id) => `checkpoint ${id} (${waiters[id]} waiting)`);
  if (ids.length > MAX_LISTED) listed.push(`${ids.length - MAX_LISTED} more`);
  return `waiting now: ${listed.join(", ")}`;
}

/**
 * What the snapshot says about checkpoint `id`: who waits where, and a
 * layout mismatch when the other layout's word for `id` has waiters.
 */
export function explain(snapshot: Snapshot, id: number): string {
  const parts = [listWaiters(snapshot.waiters)];
  const { layout, waiters } = snapshot.otherLayout;
  const there = waiters[id] ?? 0;
  if (there > 0) {
    const here = layout === "seed"
      ? "set LTP_IPC_LAYOUT=seed (or --layout seed)"
      : "unset LTP_IPC_LAYOUT (or --layout ltp)";
    parts.push(
      `${plural(there, "process waits", "processes wait")} on checkpoint ${id} of the ${layout} layout ` +
        `(byte ${LAYOUT_OFFSETS[layout] + 4 * id}): the two sides disagree on the layout: ${here} here, ` +
        `or use the ${snapshot.layout} layout there`,
    );
  }
  return parts.join("; ");
}
