/**
 * Imported first by the module, so that it runs before anything an older
 * Deno lacks: Deno 1.x gets one line naming the release needed, not a
 * TypeError from deep inside.
 * @module
 */
import { unsupportedRuntime } from "./runtime.ts";

const why = unsupportedRuntime();
if (why !== undefined) {
  // a stack of its own would print as a trace; the message alone is the one line
  const error = new Error(why);
  error.name = "NotSupported";
  error.stack = why;
  throw error;
}
