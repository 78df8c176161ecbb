/**
 * Environment variables, read so that a missing `--allow-env` never
 * prompts; and, for the resident agent, one caller's environment in place
 * of the process's own while that caller's call is being set up.
 * @module
 */
import { PermissionNeeded } from "./errors.ts";

/** Variables found readable. */
const allowed = new Set<string>();

/** The environment of the call being set up, when it is not this process's own. */
let callEnv: Readonly<Record<string, string>> | undefined;

/**
 * Runs `use` (synchronously) with `env` read in place of the process's
 * environment: what the module reads of it while `use` runs comes from
 * `env`. The permission to read each variable is still Deno's.
 */
export function withEnv<T>(env: Readonly<Record<string, string>>, use: () => T): T {
  const outer = callEnv;
  callEnv = env;
  try {
    return use();
  } finally {
    callEnv = outer;
  }
}

/**
 * The value of `name`. Without permission to read it: undefined, or when
 * `required`, `Deno.errors.NotCapable` naming the flag.
 */
export function readEnv(name: string, required = false): string | undefined {
  if (!allowed.has(name) && Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    if (!required) return undefined;
    throw new PermissionNeeded(`Reading ${name} needs permission`, [`--allow-env=${name}`]);
  }
  allowed.add(name);
  if (callEnv !== undefined) return Object.hasOwn(callEnv, name) ? callEnv[name] : undefined;
  try {
    return Deno.env.get(name);
  } catch (cause) {
    throw new Deno.errors.InvalidData(`${name} is not valid UTF-8`, { cause });
  }
}

/** `LTP_TIMEOUT_MUL` as LTP reads it: a decimal from 0.099 to 10000, 1 when unset. */
export function timeoutMultiplier(): number {
  const text = readEnv("LTP_TIMEOUT_MUL");
  if (text === undefined || text === "") return 1;
  if (text === lastMultiplier[0]) return lastMultiplier[1];
  const value = /^\s*(\d+\.?\d*|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
  if (!(value >= 0.099 && value <= 10000)) {
    throw new TypeError(`LTP_TIMEOUT_MUL must be a decimal number from 0.099 to 10000, not '${text}'`);
  }
  lastMultiplier = [text, value];
  return value;
}

let lastMultiplier: [string, number] = ["1", 1];
