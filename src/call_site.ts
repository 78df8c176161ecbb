/**
 * Where a call into the module was made, for an error that surfaces later
 * (a wait whose region was closed under it, its `await` forgotten). The
 * stack is captured at the call and formatted only if that error is made.
 * @module
 */

/** A captured stack: V8 keeps the frames and formats the text on the first read of `stack`. */
export interface CallSite {
  stack?: string;
}

/** The stack of the caller of `fn` (which must be on the stack now), without `fn` and what it called. */
// deno-lint-ignore ban-types
export function callSite(fn: Function): CallSite {
  const site: CallSite = {};
  Error.captureStackTrace(site, fn);
  return site;
}

/** The module's own files: their frames are not where a user made the call. */
const OURS = ["../src/", "../ffi/", "../mod.ts"].map((path) => new URL(path, import.meta.url).href);

/**
 * The frames of `site` outside the module and outside Deno's own code
 * (`ext:`, such as its test runner), as V8 writes them without "at ": the
 * user's call first.
 */
export function userFrames(site: CallSite): string[] {
  const frames: string[] = [];
  for (const line of (site.stack ?? "").split("\n")) {
    const frame = line.trim();
    if (!frame.startsWith("at ") || frame.includes("(ext:") || frame.startsWith("at ext:")) continue;
    if (!OURS.some((ours) => frame.includes(ours))) frames.push(frame.slice(3));
  }
  return frames;
}

/**
 * `error` with `site`'s user frames as its stack, so that what prints it
 * points at the user's call, not at the module's internals.
 */
export function thrownFrom<E extends Error>(error: E, frames: readonly string[]): E {
  error.stack = [`${error.name}: ${error.message}`, ...frames.map((frame) => `    at ${frame}`)].join("\n");
  return error;
}
