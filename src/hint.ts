/**
 * The one way the module words a missing permission: "run again with FLAGS".
 * The errors carry the flags as data too, so that a tool that was installed
 * with fixed flags (the CLI) can say how to reinstall instead.
 * @module
 */

/** The phrase that ends every missing-permission message. */
export function runAgainWith(flags: string[]): string {
  return `run again with ${flags.join(" ")}`;
}

/** A `Deno.errors.NotCapable` whose message ends with the fix; `flags` holds the missing flags. */
export function needsFlags(what: string, flags: string[]): Deno.errors.NotCapable & { flags: string[] } {
  return Object.assign(new Deno.errors.NotCapable(`${what}: ${runAgainWith(flags)}`), { flags });
}
