/** Removing the regions a process made for itself when it ends. */

/** Regions made by create() and not yet closed: removed when the process ends. */
const created = new Set<{ close(): void }>();
let installed = false;

/**
 * Closes (and so removes) `region` when the process ends: normally, through
 * Deno.exit() (both fire "unload"), or on an uncaught error that nobody
 * else handles (a handler that calls preventDefault() must be added before
 * the first create(), so that it runs first). Signals that kill the
 * process are not caught: a program that wants its regions removed on
 * SIGINT adds its own listener and calls close().
 */
export function removeAtExit(region: { close(): void }): void {
  created.add(region);
  if (installed) return;
  installed = true;
  const closeAll = (event: Event) => {
    if (event.defaultPrevented) return;
    for (const each of created) {
      try {
        each.close();
      } catch {
        // the process is ending: remove what can be removed
      }
    }
  };
  for (const type of ["unload", "error", "unhandledrejection"]) globalThis.addEventListener(type, closeAll);
}

/** Forgets `region`: it was closed. */
export function closed(region: { close(): void }): void {
  created.delete(region);
}
