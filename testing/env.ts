/**
 * The caller's environment, kept out of the tests: a region path, a layout, a temporary folder or a kernel config
 * (KCONFIG_PATH, which scales timeouts) that the person running the suite exported would otherwise reach every
 * region the tests make and every child they start. The kernel config is an empty one of the tests' own, so that
 * timeouts are the same on a debug kernel (×4 there otherwise) as anywhere.
 * LTP_TIMEOUT_MUL stays: it scales every limit. Tests that are about these variables set them for their own children.
 * @module
 */
import { ROOT } from "./paths.ts";

/** An empty kernel config: no slow option, so no timeout is scaled for the kernel. */
export const EMPTY_KCONFIG: string = `${ROOT}/testing/empty.config`;

/** The variables of the caller's that no test and no child may see. */
export const CALLER_VARIABLES: readonly string[] = [
  "LTP_IPC_PATH",
  "LTP_IPC_LAYOUT",
  "TMPDIR",
];

/**
 * Removes CALLER_VARIABLES from this process's environment: a test file that makes regions in-process, or starts
 * children other than through testing/process.ts, calls it once at its top.
 */
export function forgetCallerEnv(): void {
  for (const name of CALLER_VARIABLES) Deno.env.delete(name);
  Deno.env.set("KCONFIG_PATH", EMPTY_KCONFIG);
}

/** A child's whole environment: this process's without CALLER_VARIABLES, then `env`. */
export function childEnv(
  env: Record<string, string> = {},
): Record<string, string> {
  const inherited = Deno.env.toObject();
  for (const name of CALLER_VARIABLES) delete inherited[name];
  return { ...inherited, KCONFIG_PATH: EMPTY_KCONFIG, ...env };
}
