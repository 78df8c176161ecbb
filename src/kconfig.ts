/**
 * LTP's slow-kernel factor (`tst_has_slow_kconfig()`): checkpoint timeouts
 * are multiplied by 4 when the kernel was built with a debug option that
 * slows it down. The kernel config is found as LTP's lib/tst_kconfig.c finds
 * it, read once per process (once per KCONFIG_PATH for the resident agent),
 * and only when a timeout is computed.
 * @module
 */
import { AT_FDCWD, ENOENT, O_CLOEXEC, O_NONBLOCK, O_RDONLY } from "../ffi/constants.ts";
import { syscallError } from "../ffi/errno.ts";
import { close, fstat, openat, pread } from "../ffi/syscalls.ts";
import { readEnv, timeoutMultiplier } from "./env.ts";
import { gunzip } from "./gunzip.ts";

/** The options LTP counts as slow, in LTP's order: the first one set is the one named. */
export const SLOW_OPTIONS: readonly string[] = [
  "CONFIG_PROVE_LOCKING",
  "CONFIG_LOCKDEP",
  "CONFIG_DEBUG_SPINLOCK",
  "CONFIG_DEBUG_RT_MUTEXES",
  "CONFIG_DEBUG_MUTEXES",
  "CONFIG_KASAN",
  "CONFIG_SLUB_RCU_DEBUG",
  "CONFIG_TRACE_IRQFLAGS",
  "CONFIG_DEBUG_NET",
  "CONFIG_EXT4_DEBUG",
  "CONFIG_QUOTA_DEBUG",
  "CONFIG_FAULT_INJECTION",
  "CONFIG_DEBUG_OBJECTS",
];

/** What the kernel config says about timeouts. */
export interface KernelSlowness {
  /** 4 when the config enables one of {@linkcode SLOW_OPTIONS}, else 1. */
  factor: number;
  /** Why, as shown beside a scaled time ("×4: CONFIG_KASAN"); empty when the factor is 1. */
  reason: string;
  /** The config that was read, if one was. */
  path?: string;
  /** One line when the config could not be looked for or read (the factor stays 1). */
  note?: string;
}

/** A config bigger than this is not a kernel config (they are about 300 KB). */
const MAX_CONFIG_BYTES = 32 << 20;
const KCONFIG_ENV = "KCONFIG_PATH";
const PROC_CONFIG = "/proc/config.gz";
const OSRELEASE = "/proc/sys/kernel/osrelease";

/** Results by KCONFIG_PATH (unset: ""): the machine's files do not change while a process runs. */
const known = new Map<string, KernelSlowness>();

/**
 * The slow-kernel factor of this machine, as LTP computes it. Never throws:
 * a config that cannot be found or read gives the factor 1 (with a note
 * where something was there but could not be read).
 */
export function kernelSlowness(): KernelSlowness {
  const fromEnv = readEnv(KCONFIG_ENV) ?? "";
  let result = known.get(fromEnv);
  if (result === undefined) {
    result = find(fromEnv);
    known.set(fromEnv, result);
  }
  return result;
}

/** The whole factor of a timeout and why: the kernel's ×4 and LTP_TIMEOUT_MUL, as LTP multiplies them. */
export interface TimeoutScale {
  /** What a timeout in ms is multiplied by. */
  factor: number;
  /** The kernel's part of it: 4 on a slow kernel, else 1. */
  kernelFactor: number;
  /** Shown after the unscaled time: "×4: CONFIG_KASAN", "×2: LTP_TIMEOUT_MUL", both joined by ", "; empty at 1. */
  reason: string;
  /** The kernel config's note, on the first call of the process that has one only. */
  note?: string;
}

let noted = false;

/**
 * What LTP warns of on every call, a `KCONFIG_PATH` that names nothing,
 * for the CLI to say on each of its calls (the resident agent's too);
 * the module's own timeouts then say nothing more of it.
 */
export function kconfigPathNote(): string | undefined {
  noted = true;
  const note = kernelSlowness().note;
  return note?.startsWith(`${KCONFIG_ENV}=`) ? note.split("; ")[0] : undefined;
}

/**
 * The factor every checkpoint timeout is multiplied by (`tst_multiply_timeout()`).
 * @throws {TypeError} When LTP_TIMEOUT_MUL is not a number from 0.099 to 10000.
 */
export function timeoutScale(): TimeoutScale {
  const multiplier = timeoutMultiplier();
  const kernel = kernelSlowness();
  const reasons = [kernel.reason, multiplier === 1 ? "" : `×${multiplier}: LTP_TIMEOUT_MUL`].filter((r) => r);
  const scale: TimeoutScale = {
    factor: kernel.factor * multiplier,
    kernelFactor: kernel.factor,
    reason: reasons.join(", "),
  };
  if (kernel.note !== undefined && !noted) {
    noted = true;
    scale.note = kernel.note;
  }
  return scale;
}

/** The first of {@linkcode SLOW_OPTIONS} that `config` sets to `y` (a later line about it wins, as in LTP). */
export function slowOptionIn(config: string): string | undefined {
  const text = `\n${config}`;
  return SLOW_OPTIONS.find((name) => {
    const set = text.lastIndexOf(`\n${name}=`);
    if (set < 0 || text.lastIndexOf(`\n# ${name} is not set`) > set) return false;
    const start = set + name.length + 2;
    const end = text.indexOf("\n", start);
    return text.slice(start, end < 0 ? undefined : end).trim() === "y";
  });
}

/** The judgement of one config's bytes (plain or gzip). */
export function slownessOf(bytes: Uint8Array, path: string): KernelSlowness {
  const text = bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzip(bytes, MAX_CONFIG_BYTES) : bytes;
  const option = slowOptionIn(new TextDecoder("latin1").decode(text));
  return option === undefined ? { factor: 1, reason: "", path } : { factor: 4, reason: `×4: ${option}`, path };
}

/** LTP's search: KCONFIG_PATH (a note when it names nothing, then the rest), then the usual places. */
function find(fromEnv: string): KernelSlowness {
  let note: string | undefined;
  if (fromEnv !== "") {
    const found = tryConfig(fromEnv, KCONFIG_ENV);
    if (found !== "absent") return found;
    note = `${KCONFIG_ENV}=${fromEnv} names nothing: the kernel config was looked for in the usual places`;
  }
  const release = kernelRelease();
  const places = [PROC_CONFIG];
  if (release !== undefined) {
    places.push(
      `/lib/modules/${release}/build/.config`,
      `/lib/modules/${release}/config`,
      `/boot/config-${release}`,
      `/lib/kernel/config-${release}`,
    );
  }
  const denied: string[] = [];
  for (const path of places) {
    if (!mayRead(path)) {
      denied.push(path);
      continue;
    }
    const found = tryConfig(path);
    if (found !== "absent") return note === undefined || found.note !== undefined ? found : { ...found, note };
  }
  if (denied.length > 0) {
    const missing = release === undefined ? `; the kernel release needs --allow-read=${OSRELEASE}` : "";
    note = [
      note,
      `Timeouts are not scaled for a slow kernel: looking for its config needs --allow-read=${
        denied.join(",")
      }${missing}`,
    ].filter((n) => n).join("; ");
  }
  return { factor: 1, reason: "", note };
}

/** The config at `path`: its judgement, "absent" when nothing is there, or factor 1 with a note. */
function tryConfig(path: string, named?: string): KernelSlowness | "absent" {
  const what = named === undefined ? path : `${named}=${path}`;
  if (!mayRead(path)) {
    return {
      factor: 1,
      reason: "",
      note: `Timeouts are not scaled for a slow kernel: reading ${what} needs --allow-read=${path}`,
    };
  }
  const bytes = readSmallFile(path);
  if (bytes === "absent") return bytes;
  if (typeof bytes === "string") {
    return { factor: 1, reason: "", note: `Timeouts are not scaled for a slow kernel: cannot read ${what}: ${bytes}` };
  }
  try {
    return slownessOf(bytes, path);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return { factor: 1, reason: "", note: `Timeouts are not scaled for a slow kernel: cannot read ${what}: ${why}` };
  }
}

function mayRead(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted";
}

/** `uname -r`: from /proc where that may be read, else from Deno where --allow-sys allows it. */
function kernelRelease(): string | undefined {
  if (mayRead(OSRELEASE)) {
    const bytes = readSmallFile(OSRELEASE);
    if (bytes instanceof Uint8Array) {
      const release = new TextDecoder("latin1").decode(bytes).trim();
      if (release !== "" && !release.includes("/")) return release;
    }
  }
  if (Deno.permissions.querySync({ name: "sys", kind: "osRelease" }).state === "granted") return Deno.osRelease();
  return undefined;
}

/**
 * The bytes of a regular file, read through libc (Deno's own file API
 * refuses /proc without --allow-all): "absent" when nothing is there, else
 * the reason it cannot be read. Never blocks on a FIFO or a device.
 */
function readSmallFile(path: string): Uint8Array | "absent" | string {
  let fd: number;
  try {
    fd = openat(AT_FDCWD, path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  } catch (error) {
    return error instanceof Error ? error.message : String(error); // no --allow-ffi
  }
  if (fd === -ENOENT) return "absent";
  if (fd < 0) return errorText(-fd, "open");
  try {
    const info = fstat(fd, path);
    if (info.type !== "file") return `it is a ${info.type}, not a file`;
    // /proc reports a size of 0 or a guess: read until the end whatever it says
    let buffer = new Uint8Array(Math.min(Math.max(info.size, 65536) + 1, MAX_CONFIG_BYTES + 1));
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        if (length > MAX_CONFIG_BYTES) return `bigger than ${MAX_CONFIG_BYTES} bytes`;
        const bigger = new Uint8Array(Math.min(buffer.length * 2, MAX_CONFIG_BYTES + 1));
        bigger.set(buffer);
        buffer = bigger;
      }
      const n = pread(fd, buffer.subarray(length), length);
      if (n < 0) return errorText(-n);
      if (n === 0) return buffer.subarray(0, length);
      length += n;
    }
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    close(fd);
  }
}

/** The kernel's reason as the project words it, without the "what" part syscallError puts first. */
function errorText(err: number, call?: "open"): string {
  return syscallError("", err, call).message.replace(/^: /, "");
}
