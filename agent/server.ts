/**
 * The resident agent behind the installed `tst_checkpoint`: one long-lived
 * Deno process per region that runs the calls of agent/client.sh, so that a
 * call costs a `sh` process and a hand-off instead of a Deno start.
 *
 *   deno run <the launcher's own flags> agent/server.ts BASE KEY REGION IDLE_S
 *
 * The channel. BASE is `/tmp/tst_checkpoint-EUID`, a folder of this user's
 * alone (mode 0700, owned by the effective user, not a symlink: the agent
 * makes it so or refuses it; the client checks it with `[ -d ] [ ! -h ] [ -O ]`).
 * BASE/KEY is this agent's folder; KEY is the region's absolute path with
 * each `/` spelt `%`. The agent holds an exclusive flock on that folder for
 * as long as it lives: a second agent for the same region sees the lock and
 * leaves; a new agent that gets the lock knows the last one is dead and
 * clears what it left. In the folder:
 * - `slots`: the number M of slots, one line;
 * - for each slot N < M, two FIFOs the agent made: `N.req` (the agent holds
 *   its read end) and `N.rep` (the agent holds it open for reading and
 *   writing, so that a client's open never blocks and a client reads EOF
 *   only when the agent is gone);
 * - `N.lock`: a client's claim on slot N, made with `set -C` (an O_EXCL
 *   create) and holding its pid; the agent removes it when the slot is free
 *   again (a client never removes anything: `rm` is not a builtin);
 * - `clients`: JSON, the calls running now (client pid, command), for `status`.
 *
 * A call. The client claims a slot, opens `N.rep` for reading and `N.req`
 * for reading and writing (neither open can block), writes its request in
 * one go: a version line, its pid, its parent's pid, its working folder, its
 * arguments and the variables the launcher lets Deno read, each on a line of
 * its own. The agent answers `a` (the call runs), then `o`/`e` lines (stdout
 * and stderr, `O`/`E` for text without a final newline), then `x` and the
 * exit code; or `c` (not taken: run cold), for what it cannot represent
 * (bytes that are not UTF-8). A client that reads EOF before `a` runs the
 * call cold; after `a`, it says in one line that the agent ended and exits 2.
 *
 * A client's end. The client holds `N.req` open for as long as its call
 * lasts, and nothing else does: when it exits or is killed, the agent's
 * read end reports POLLHUP at once, and the call's AbortSignal takes its wait
 * out of the kernel. The slot is then drained, its read end reopened (so
 * that POLLHUP clears) and its lock removed.
 *
 * Lifetime. The client starts the agent in the background inside a command
 * substitution, so it stays in the caller's session and process group; its
 * stdin and stderr are /dev/null, and its stdout (the substitution) gets one
 * `ready` line and is then replaced by /dev/null; every inherited descriptor
 * not marked close-on-exec is closed first. The agent exits (removing its
 * folder, and BASE when that is empty) when its region has gone, when no
 * call came for IDLE_S seconds, on SIGTERM/SIGINT/SIGHUP, or when its folder
 * is no longer its own. Killed by SIGKILL, it leaves its folder: the next
 * agent for that region clears it, and any agent clears the folders of other
 * dead agents it finds in BASE.
 *
 * One thread of Deno's pool polls every FIFO (ppoll, with an eventfd to
 * re-arm it); the calls run in the event loop with the CLI's async waits.
 * @module
 */
import { type CallContext, run } from "../cli/command.ts";
import {
  addressOf,
  AT_FDCWD,
  AT_REMOVEDIR,
  type Bytes,
  call,
  callAsync,
  cString,
  EEXIST,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  ENOENT,
  ESRCH,
  F_GETFD,
  FD_CLOEXEC,
  LOCK_EX,
  LOCK_NB,
  namesIn,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  S_IFDIR,
  S_IFIFO,
  S_IFMT,
  statAt,
  writeSome,
} from "./sys.ts";

/** The first line of every request; a client of another version is answered `c`. */
export const PROTOCOL = "TCA1";
const FIRST_SLOTS = 128;
/** The most slots: two descriptors each. */
const MAX_SLOTS = 8192;
const MAX_REQUEST = 256 * 1024;
/** How often the agent looks at its region, its folder and stale claims. */
const TICK_MS = 250;

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

class Slot {
  req = -1;
  rep = -1;
  /** A client is connected (its request has begun, or it has sent one). */
  busy = false;
  /** The client has gone (POLLHUP). */
  gone = false;
  /** The call has ended, `x` queued. */
  done = false;
  running = false;
  input: Uint8Array[] = [];
  inputLength = 0;
  output: Bytes[] = [];
  abort?: AbortController;
  client?: { pid: number; args: string[]; since: number };

  constructor(readonly n: number) {}
}

interface Agent {
  base: string;
  key: string;
  region: string;
  idleMs: number;
  dir: number;
  baseFd: number;
  slots: Slot[];
  event: number;
  lastCall: number;
  /** Calls that have ended. */
  calls: number;
  exiting: boolean;
  pollsetDirty: boolean;
  toReset: Set<Slot>;
  clientsDirty: boolean;
}

function fail(what: string, r: number): never {
  throw new Error(`${what} failed (errno ${-r})`);
}

/** Closes every descriptor this process inherited (those without close-on-exec; Deno marks its own). */
function closeInherited(): void {
  const dir = call("openat", AT_FDCWD, addressOf(cString("/proc/self/fd")), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  const fds = namesIn(dir).map(Number).filter((fd) => fd > 2 && fd !== dir);
  call("close", dir);
  for (const fd of fds) {
    const flags = call("fcntl", fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) === 0) call("close", fd);
  }
}

/** Points stdout, and every copy Deno made of it, at /dev/null: the caller's command substitution then ends. */
function stdoutToDevNull(): void {
  const out = statAt(1, "");
  const fd = call("openat", AT_FDCWD, addressOf(cString("/dev/null")), O_RDWR | O_CLOEXEC);
  if (fd < 0 || typeof out === "number") return;
  const dir = call("openat", AT_FDCWD, addressOf(cString("/proc/self/fd")), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const copies = dir < 0 ? [] : namesIn(dir).map(Number).filter((n) => n !== dir && n !== fd && n > 2);
  if (dir >= 0) call("close", dir);
  for (const copy of copies) {
    const info = statAt(copy, "");
    if (typeof info !== "number" && info.dev === out.dev && info.ino === out.ino) call("dup3", fd, copy, O_CLOEXEC);
  }
  call("dup3", fd, 1, 0);
  call("close", fd);
}

/** Opens BASE, making it (0700) where missing; refuses one that is not this user's private folder. */
function openBase(base: string, euid: number): number {
  const r = call("mkdirat", AT_FDCWD, addressOf(cString(base)), 0o700);
  if (r < 0 && r !== -EEXIST) fail(`mkdir ${base}`, r);
  const fd = call("openat", AT_FDCWD, addressOf(cString(base)), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) fail(`open ${base}`, fd);
  const info = statAt(fd, "");
  if (typeof info === "number") fail(`stat ${base}`, -info);
  if (info.uid !== euid) throw new Error(`${base} belongs to user ${info.uid}, not ${euid}`);
  if ((info.mode & 0o777) !== 0o700) call("fchmod", fd, 0o700);
  return fd;
}

/** Removes everything in the folder `fd` (one level: the agent makes no sub-folders). */
function clear(fd: number): void {
  for (const name of namesIn(fd)) {
    if (call("unlinkat", fd, addressOf(cString(name)), 0) < 0) {
      call("unlinkat", fd, addressOf(cString(name)), AT_REMOVEDIR);
    }
  }
}

/** Takes the folder's lock: false when a live agent holds it. */
function lock(fd: number): boolean {
  return call("flock", fd, LOCK_EX | LOCK_NB) === 0;
}

/** Removes the folders of dead agents in BASE (their lock is free), except `mine`. */
function sweepDead(baseFd: number, mine: string): void {
  for (const name of namesIn(baseFd)) {
    if (name === mine) continue;
    const fd = call("openat", baseFd, addressOf(cString(name)), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    if (lock(fd)) {
      clear(fd);
      call("unlinkat", baseFd, addressOf(cString(name)), AT_REMOVEDIR);
    }
    call("close", fd);
  }
}

function writeFile(dir: number, name: string, text: string): void {
  const tmp = `${name}.${Deno.pid}.new`;
  const fd = call("openat", dir, addressOf(cString(tmp)), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600);
  if (fd < 0) return;
  writeSome(fd, Uint8Array.from(encoder.encode(text)));
  call("close", fd);
  call("renameat2", dir, addressOf(cString(tmp)), dir, addressOf(cString(name)), 0);
}

function openSlot(agent: Agent, slot: Slot): boolean {
  for (const suffix of ["req", "rep"]) {
    const name = addressOf(cString(`${slot.n}.${suffix}`));
    const r = call("mknodat", agent.dir, name, S_IFIFO | 0o600, 0);
    if (r < 0 && r !== -EEXIST) return false;
  }
  slot.req = call(
    "openat",
    agent.dir,
    addressOf(cString(`${slot.n}.req`)),
    O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
  );
  slot.rep = call(
    "openat",
    agent.dir,
    addressOf(cString(`${slot.n}.rep`)),
    O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
  );
  return slot.req >= 0 && slot.rep >= 0;
}

/** Makes slots up to `count`; publishes how many there are. */
function grow(agent: Agent, count: number): void {
  const from = agent.slots.length;
  for (let n = from; n < Math.min(count, MAX_SLOTS); n++) {
    const slot = new Slot(n);
    if (!openSlot(agent, slot)) {
      if (slot.req >= 0) call("close", slot.req);
      if (slot.rep >= 0) call("close", slot.rep);
      break;
    }
    agent.slots.push(slot);
  }
  if (agent.slots.length !== from) {
    writeFile(agent.dir, "slots", `${agent.slots.length}\n`);
    agent.pollsetDirty = true;
  }
}

/** Empties a FIFO that the agent holds with O_NONBLOCK. */
function drain(fd: number): void {
  const buffer = new Uint8Array(4096);
  while (call("read", fd, addressOf(buffer), buffer.length) > 0);
}

/** Readies a slot for its next client: drained, POLLHUP cleared by a fresh read end, then its claim removed. */
function reset(agent: Agent, slot: Slot): void {
  drain(slot.req);
  drain(slot.rep);
  call("close", slot.req);
  slot.req = call(
    "openat",
    agent.dir,
    addressOf(cString(`${slot.n}.req`)),
    O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
  );
  Object.assign(slot, { busy: false, gone: false, done: false, running: false, input: [], inputLength: 0, output: [] });
  slot.abort = undefined;
  if (slot.client) agent.clientsDirty = true;
  slot.client = undefined;
  if (slot.req < 0) return; // the folder is gone: the next tick ends the agent
  call("unlinkat", agent.dir, addressOf(cString(`${slot.n}.lock`)), 0);
}

/** Queues `text` for the client of `slot`: one protocol line per line of it. */
function send(agent: Agent, slot: Slot, kind: "o" | "e" | "a" | "x" | "c", text = ""): void {
  if (slot.gone) return;
  let lines = "";
  if (kind === "o" || kind === "e") {
    const parts = text.split("\n");
    const last = parts.pop()!;
    for (const part of parts) lines += `${kind}${part}\n`;
    if (last !== "") lines += `${kind.toUpperCase()}${last}\n`;
  } else lines = `${kind}${text}\n`;
  slot.output.push(Uint8Array.from(encoder.encode(lines)));
  flush(agent, slot);
}

function flush(agent: Agent, slot: Slot): void {
  while (slot.output.length > 0) {
    const chunk = slot.output[0];
    const written = writeSome(slot.rep, chunk);
    if (written === chunk.length) slot.output.shift();
    else {
      slot.output[0] = chunk.subarray(written);
      agent.pollsetDirty = true; // wait for POLLOUT
      kick(agent);
      return;
    }
  }
}

/** One client's call, as its request gives it. */
interface Request {
  pid: number;
  ppid: number;
  cwd: string;
  args: string[];
  env: Record<string, string>;
}

/** A parsed request, or "cold" for one the agent cannot take, or undefined while incomplete. */
function parse(bytes: Uint8Array): Request | "cold" | undefined {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) return undefined;
  let text: string;
  try {
    text = strict.decode(bytes);
  } catch {
    return "cold";
  }
  const lines = text.split("\n");
  if (lines[0] !== PROTOCOL) return "cold";
  const argc = Number(lines[4]);
  if (lines.length < 6 || !Number.isInteger(argc) || argc < 0) return undefined;
  const envc = Number(lines[5 + argc]);
  if (!Number.isInteger(envc) || envc < 0 || lines.length < 8 + argc + envc) return undefined;
  if (lines[6 + argc + envc] !== ".") return "cold";
  const env: Record<string, string> = {};
  for (const line of lines.slice(6 + argc, 6 + argc + envc)) {
    const at = line.indexOf("=");
    if (at <= 0) return "cold";
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return { pid: Number(lines[1]), ppid: Number(lines[2]), cwd: lines[3], args: lines.slice(5, 5 + argc), env };
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Reads what the client wrote; starts its call once the request is whole. */
function readRequest(agent: Agent, slot: Slot): void {
  const buffer = new Uint8Array(65536);
  for (;;) {
    const r = call("read", slot.req, addressOf(buffer), buffer.length);
    if (r === -EINTR) continue;
    if (r <= 0) break;
    slot.busy = true;
    if (slot.running || slot.done) continue; // one request a connection: anything more is ignored
    slot.input.push(buffer.slice(0, r));
    slot.inputLength += r;
  }
  if (slot.running || slot.done || slot.inputLength === 0) return;
  if (slot.inputLength > MAX_REQUEST) return refuse(agent, slot);
  const request = parse(concat(slot.input, slot.inputLength));
  if (request === undefined) return;
  if (request === "cold") return refuse(agent, slot);
  startCall(agent, slot, request);
}

function refuse(agent: Agent, slot: Slot): void {
  slot.done = true;
  send(agent, slot, "c");
}

/**
 * Whether the call needs the caller's working folder, which the CLI cannot
 * take from a context: a relative region, TMPDIR or `--all` folder.
 */
function needsCwd(args: string[], env: Record<string, string>): boolean {
  const relative = (path: string | undefined) => path !== undefined && path !== "" && !path.startsWith("/");
  if (relative(env.LTP_IPC_PATH) || relative(env.TMPDIR)) return true;
  return args.includes("--all") && args.some((arg) => arg !== "status" && !arg.startsWith("-") && relative(arg));
}

function startCall(agent: Agent, slot: Slot, request: Request): void {
  if (needsCwd(request.args, request.env)) return refuse(agent, slot);
  slot.running = true;
  slot.input = [];
  slot.abort = new AbortController();
  slot.client = { pid: request.pid, args: request.args, since: Date.now() };
  agent.clientsDirty = true;
  agent.lastCall = performance.now();
  send(agent, slot, "a");
  const context: CallContext = {
    env: request.env,
    ppid: request.ppid,
    stdout: (text: string) => send(agent, slot, "o", text),
    stderr: (text: string) => send(agent, slot, "e", text),
    signal: slot.abort.signal,
  };
  run(request.args, context).catch(() => 2).then((code) => {
    slot.running = false;
    slot.done = true;
    agent.calls++;
    agent.lastCall = performance.now();
    if (slot.client) agent.clientsDirty = true;
    slot.client = undefined;
    send(agent, slot, "x", `${code}`);
    if (slot.gone) {
      agent.toReset.add(slot);
      kick(agent);
    }
  });
}

function kick(agent: Agent): void {
  const one = new BigUint64Array([1n]);
  call("write", agent.event, addressOf(one), 8);
}

/** The calls running now, for `status`: which client process waits where. */
function writeClients(agent: Agent): void {
  agent.clientsDirty = false;
  const clients = agent.slots.filter((slot) => slot.client).map((slot) => ({
    pid: slot.client!.pid,
    args: slot.client!.args,
  }));
  writeFile(agent.dir, "clients", JSON.stringify({ agent: Deno.pid, region: agent.region, clients }) + "\n");
}

/** Frees the claims of clients that died before they spoke. */
function sweepClaims(agent: Agent): void {
  const buffer = new Uint8Array(32);
  for (const slot of agent.slots) {
    if (slot.busy) continue;
    const fd = call(
      "openat",
      agent.dir,
      addressOf(cString(`${slot.n}.lock`)),
      O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
    );
    if (fd < 0) continue;
    const r = call("read", fd, addressOf(buffer), buffer.length);
    call("close", fd);
    const pid = r > 0 ? Number(new TextDecoder().decode(buffer.subarray(0, r)).trim()) : NaN;
    // a claim is written in one go: an empty one is being written now
    if (Number.isInteger(pid) && pid > 0 && call("kill", pid, 0) === -ESRCH) {
      call("unlinkat", agent.dir, addressOf(cString(`${slot.n}.lock`)), 0);
    }
  }
}

/** Whether the agent should end now, and why. */
function reasonToEnd(agent: Agent, now: number): string | undefined {
  const own = statAt(agent.baseFd, agent.key);
  if (typeof own === "number" || (own.mode & S_IFMT) !== S_IFDIR) return "its folder is gone";
  const busy = agent.slots.some((slot) => slot.busy);
  if (busy) return undefined;
  // once a call has run: the first one may be the init that makes it
  if (agent.calls > 0 && statAt(AT_FDCWD, agent.region, true) === ENOENT) return "its region is gone";
  if (now - agent.lastCall > agent.idleMs) return "idle";
  return undefined;
}

/** Removes the agent's folder, and BASE when nothing else is in it; then exits. */
function end(agent: Agent): never {
  agent.exiting = true;
  for (const slot of agent.slots) slot.abort?.abort();
  // the slot count first, so that no new client starts
  call("unlinkat", agent.dir, addressOf(cString("slots")), 0);
  clear(agent.dir);
  call("unlinkat", agent.baseFd, addressOf(cString(agent.key)), AT_REMOVEDIR);
  call("unlinkat", AT_FDCWD, addressOf(cString(agent.base)), AT_REMOVEDIR);
  Deno.exit(0);
}

async function serve(agent: Agent): Promise<never> {
  let fds = new Int32Array(0);
  let owners: (Slot | undefined)[] = [];
  const timeout = new BigInt64Array(2);
  let lastTick = 0;
  const eventBuffer = new BigUint64Array(1);
  for (;;) {
    if (agent.pollsetDirty || fds.length === 0) {
      agent.pollsetDirty = false;
      const entries: [number, number, Slot | undefined][] = [[agent.event, POLLIN, undefined]];
      for (const slot of agent.slots) {
        if (!slot.gone) entries.push([slot.req, POLLIN, slot]);
        if (slot.output.length > 0 && !slot.gone) entries.push([slot.rep, POLLOUT, slot]);
      }
      fds = new Int32Array(entries.length * 2);
      owners = entries.map((entry) => entry[2]);
      entries.forEach(([fd, events], i) => {
        fds[2 * i] = fd;
        fds[2 * i + 1] = events;
      });
    }
    const events = new Int16Array(fds.buffer);
    for (let i = 0; i < owners.length; i++) events[4 * i + 3] = 0;
    // the kernel writes the time left back into it
    timeout[0] = 0n;
    timeout[1] = BigInt(TICK_MS * 1e6);
    await callAsync("ppoll", addressOf(fds), owners.length, addressOf(timeout), 0);
    for (let i = 0; i < owners.length; i++) {
      const revents = events[4 * i + 3];
      if (revents === 0) continue;
      const slot = owners[i];
      if (slot === undefined) {
        call("read", agent.event, addressOf(eventBuffer), 8);
        continue;
      }
      if (events[4 * i + 2] === POLLOUT) {
        flush(agent, slot);
        if (slot.output.length === 0) agent.pollsetDirty = true;
        continue;
      }
      if (revents & (POLLIN | POLLHUP)) readRequest(agent, slot);
      if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
        slot.gone = true;
        slot.output = [];
        agent.pollsetDirty = true;
        if (slot.running) slot.abort?.abort();
        else agent.toReset.add(slot);
      }
    }
    for (const slot of agent.toReset) reset(agent, slot);
    if (agent.toReset.size > 0) agent.pollsetDirty = true;
    agent.toReset.clear();
    const busy = agent.slots.reduce((n, slot) => n + (slot.busy ? 1 : 0), 0);
    if (2 * (busy + 1) > agent.slots.length) grow(agent, agent.slots.length * 2);
    const now = performance.now();
    if (agent.clientsDirty) writeClients(agent);
    if (now - lastTick >= TICK_MS) {
      lastTick = now;
      const why = reasonToEnd(agent, now);
      if (why) end(agent);
      sweepClaims(agent);
    }
  }
}

function main(args: string[]): void {
  const [base, key, region, idle] = args;
  const euid = call("geteuid");
  closeInherited();
  // the caller's working folder is not held (it could not be unmounted); calls never depend on it
  call("chdir", addressOf(cString("/")));
  if (base !== `/tmp/tst_checkpoint-${euid}` || !key || key.includes("/") || !region) {
    console.log("refused");
    Deno.exit(2);
  }
  const baseFd = openBase(base, euid);
  const r = call("mkdirat", baseFd, addressOf(cString(key)), 0o700);
  if (r < 0 && r !== -EEXIST) fail(`mkdir ${key}`, r);
  const dir = call("openat", baseFd, addressOf(cString(key)), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) fail(`open ${key}`, dir);
  const info = statAt(dir, "");
  if (typeof info === "number" || info.uid !== euid) throw new Error(`${base}/${key} is not this user's`);
  if (!lock(dir)) {
    // another agent serves this region: its client may use it once its slots are published
    for (let i = 0; i < 100 && typeof statAt(dir, "slots") === "number"; i++) {
      call("ppoll", 0, 0, addressOf(new BigInt64Array([0n, 10_000_000n])), 0);
    }
    console.log("ready");
    Deno.exit(0);
  }
  clear(dir);
  sweepDead(baseFd, key);
  const event = call("eventfd2", 0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event < 0) fail("eventfd", event);
  const agent: Agent = {
    base,
    key,
    region,
    idleMs: Math.max(1, Number(idle) || 60) * 1000,
    dir,
    baseFd,
    slots: [],
    event,
    lastCall: performance.now(),
    calls: 0,
    exiting: false,
    pollsetDirty: true,
    toReset: new Set(),
    clientsDirty: true,
  };
  grow(agent, FIRST_SLOTS);
  if (agent.slots.length === 0) throw new Error("cannot make the channel's FIFOs");
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) Deno.addSignalListener(signal, () => end(agent));
  console.log("ready");
  stdoutToDevNull();
  serve(agent).catch(() => end(agent));
}

if (import.meta.main) {
  try {
    main(Deno.args);
  } catch {
    Deno.exit(2);
  }
}
