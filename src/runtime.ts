/** Which Deno releases the module supports. */

/** The oldest Deno release the module supports. */
export const MIN_DENO = "2.0.0";

/** Why a Deno of `version` (default: this one) cannot run the module, or undefined when it can. */
export function unsupportedRuntime(version: string = globalThis.Deno?.version?.deno ?? "unknown"): string | undefined {
  const major = Number(version.split(".")[0]);
  if (major >= 2) return undefined;
  return `ltp-checkpoint needs Deno ${MIN_DENO} or later; this is Deno ${version}: upgrade Deno (deno upgrade)`;
}
