/** Environment variables, read so that a missing `--allow-env` never prompts. */
import { needsFlags } from "./hint.ts";

/** Variables found readable; a query costs about 2 µs, too much for every wait. */
const allowed = new Set<string>();

/**
 * The value of `name`. Without permission to read it: undefined, or when
 * `required`, `Deno.errors.NotCapable` naming the flag.
 */
export function readEnv(name: string, required = false): string | undefined {
  if (!allowed.has(name) && Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    if (!required) return undefined;
    throw needsFlags(`Reading ${name} needs permission`, [`--allow-env=${name}`]);
  }
  allowed.add(name);
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
