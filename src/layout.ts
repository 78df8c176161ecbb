/**
 * The region file's layout: the magic at byte 0, the header LTP's C
 * library writes, and where each layout's futex words start. Shared by the
 * class and the listing.
 * @module
 */
import { escapeText } from "./escape.ts";
import { readEnv } from "./env.ts";

/**
 * Where the futexes start in the region: `ltp` after LTP mainline's `struct
 * ipc_region` header (byte 76 on 64-bit Linux), `seed` right after the
 * magic (the seed patch's `tst_checkpoint`).
 */
export type Layout = "ltp" | "seed";

/** Where the layout in force came from: code or the command line, the environment, or the default. */
export type LayoutSource = "option" | "LTP_IPC_LAYOUT" | "default";

/** Where each layout's futex array starts, in bytes from the start of the region (64-bit Linux). */
export const LAYOUT_OFFSETS: Readonly<Record<Layout, number>> = { seed: 4, ltp: 76 };

/** Where LTP's C library writes its pid (`context.lib_pid`) in the header of a region it made. */
export const LIB_PID_OFFSET = 8;

/** The magic at byte 0, "LTPM" in ASCII, the same bytes on every machine. */
export const MAGIC: readonly number[] = [0x4c, 0x54, 0x50, 0x4d];

/** Whether `bytes` starts with the magic. */
export function hasMagic(bytes: Uint8Array): boolean {
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return false;
  return true;
}

/** How many checkpoints a page of `page` bytes holds in `layout`. */
export function capacityOf(layout: Layout, page: number): number {
  return Math.floor((page - LAYOUT_OFFSETS[layout]) / 4);
}

/** The pid in the header of a region LTP's C library made (`context.lib_pid`), from the page's first bytes; 0 otherwise. */
export function libPidOf(head: Uint8Array): number {
  if (head.length < LIB_PID_OFFSET + 4) return 0;
  return new DataView(head.buffer, head.byteOffset).getInt32(LIB_PID_OFFSET, true);
}

/** The layout in force: `option`, else `LTP_IPC_LAYOUT`, else LTP mainline's; an unknown name is a TypeError. */
export function layoutInForce(option?: string): { layout: Layout; source: LayoutSource } {
  if (option !== undefined) return { layout: checkLayout(option), source: "option" };
  const fromEnv = readEnv("LTP_IPC_LAYOUT");
  if (fromEnv) return { layout: checkLayout(fromEnv), source: "LTP_IPC_LAYOUT" };
  return { layout: "ltp", source: "default" };
}

function checkLayout(layout: string): Layout {
  if (layout !== "seed" && layout !== "ltp") {
    throw new TypeError(`Unknown checkpoint layout '${escapeText(layout)}': use "ltp" or "seed" (LTP_IPC_LAYOUT)`);
  }
  return layout;
}
