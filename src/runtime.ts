/** Which Deno releases the module supports. */

/** The oldest Deno release the module supports. */
export const MIN_DENO = "2.0.0";

/** Why this runtime cannot run the module, or undefined when it can. */
export function unsupportedRuntime(): string | undefined {
  const version = globalThis.Deno?.version?.deno ?? "unknown";
  const major = Number(version.split(".")[0]);
  if (major >= 2) return undefined;
  return `ltp-checkpoint needs Deno ${MIN_DENO} or later; this is Deno ${version}: upgrade Deno (deno upgrade)`;
}
