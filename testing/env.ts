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
 * Removes CALLER_VARIABLES from this process's environment, and points KCONFIG_PATH at the empty config, which its
 * children then inherit: every test file calls it once at its top (benchmarks do not: they measure the machine's
 * own set-up, as LTP's tool meets it).
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
  return { ...inherited, ...env };
}
