/** How the benchmarks print: medians, ratios, one table of rows and one of the project's targets. */

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
export const us = (ns: number): string => `${(ns / 1000).toFixed(1)} µs`;
export const ms = (ns: number): string => `${(ns / 1e6).toFixed(1)} ms`;
export const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
export const ratio = (x: number, base: number): string => `${(x / base).toFixed(2)}×`;

/** One row: what, who, median, ratio to the row's baseline, multiple of Deno's floor (ping-pong only). */
export type Row = [string, string, string, string, string];

/** One of the project's targets: what it asks, whether this run met it, the figure, and what a miss means. */
export interface Target {
  what: string;
  met: boolean;
  measured: string;
  miss: string;
}

/** The run these figures come from, for the README to name: date, machine, Deno, full or --quick. */
export function runLine(quick: boolean): string {
  const date = new Date().toISOString().slice(0, 16).replace("T", " ");
  const cpus = navigator.hardwareConcurrency;
  return `run: ${date} UTC, ${cpus} CPUs, Linux ${Deno.osRelease()}, Deno ${Deno.version.deno}, ${
    quick ? "--quick" : "full"
  }`;
}

/** Prints the rows as a Markdown table on stdout. */
export function printRows(rows: Row[]): void {
  const header = ["what", "who", "median", "ratio to baseline", "× Deno's floor on one CPU (unpinned floor)"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(`\n${line(header)}\n|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of rows) console.log(line(r));
}

/** Prints the targets as a Markdown table on stdout: each met, or missed with what the miss means. */
export function printTargets(targets: Target[]): void {
  console.log("\nThe project's targets:\n\n| target | result | measured |\n| --- | --- | --- |");
  for (const { what, met, measured, miss } of targets) {
    console.log(`| ${what} | ${met ? "met" : `missed: ${miss}`} | ${measured} |`);
  }
}
