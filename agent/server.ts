/**
 * The resident agent behind the installed `tst_checkpoint`: one long-lived
 * Deno process per region that runs the calls of agent/client.sh, so that a
 * call costs a `sh` process and a hand-off instead of a Deno start.
 *
 *   deno run <the launcher's own flags> agent/server.ts BASE KEY REGION IDLE_S ID NOFILE
 *
 * ID is the launcher's identity, which each install makes anew: a client of
 * another install is never served. Its request names its launcher's ID; one
 * of a newer install (a greater ID) retires this agent, which renames its
 * folder out of the way (`.retired.PID.KEY`, a name no region's KEY can
 * have), ends the calls it runs and then exits, and answers `n` (go to a
 * fresh agent, which the client then starts); one of an older install is
 * answered `c` (run cold). NOFILE is the caller's open-files limit, which
 * the agent inherits: it makes no more slots than leave room for its calls.
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
 * one go: a version line (the protocol and its launcher's ID), its pid, its
 * parent's pid, the number of its arguments and each argument, the number of
 * variables and each variable (those the launcher lets Deno read), each on a
 * line of its own, and a last line `.`. No working folder: a call that would
 * need it runs cold. The agent answers `a` (the call runs), then `o`/`e`
 * lines (stdout and stderr, `O`/`E` for text without a final newline), then
 * `x` and the exit code; or `c` (not taken: run cold), for what it cannot
 * represent (bytes that are not UTF-8), for any request that does not parse
 * (a count that is not a number, lines beyond the last, too long), for
 * `status` (it may read /proc for seconds, which would stall every other
 * client of the region: it runs in a process of its own), and for a `wait`
 * that would not get a futex_waitv call of its own (see setWaitPolicy()). A
 * client that reads EOF before `a` runs the call cold; after `a`, it says
 * in one line that the agent ended and exits 2.
 *
 * A client's end. The client holds `N.req` open for as long as its call
 * lasts, and nothing else does: when it exits or is killed, the agent's
 * read end reports POLLHUP at once, and the call's AbortSignal takes its wait
 * out of the kernel. The slot is then drained, its read end reopened (so
 * that POLLHUP clears) and its lock removed.
 *
 * Lifetime. The client starts the agent in the background and does not wait
 * for it (its own call runs cold meanwhile), so it stays in the caller's
 * session and process group; its stdin, stdout and stderr are /dev/null, and
 * every other inherited descriptor not marked close-on-exec is closed first.
 * Its pid is the first thing in its folder, so that a client finding it
 * starting runs cold without starting another. The agent exits (removing
 * its folder; never BASE, which another user could then make in its place)
 * when its region has gone (its name unlinked: seen through a descriptor of
 * it held once it is there, never by walking its path again) or has not
 * appeared REGION_GRACE_MS after its start, when no call came for IDLE_S
 * seconds, on SIGTERM/SIGINT/SIGHUP, or when its folder is no longer its
 * own. Killed by SIGKILL, it leaves its folder: the next agent for that
 * region clears it, and any agent clears the folders of other dead agents it
 * finds in BASE.
 *
 * One thread of Deno's pool polls every FIFO (ppoll, with an eventfd to
 * re-arm it); the calls run in the event loop with the CLI's async waits.
 * @module
 */
import { type CallContext, run } from "../cli/command.ts";
import {
  closeInherited,
  fchmod,
  leaveWorkingFolder,
  mkdirAt,
  mkfifoAt,
  namesIn,
  openFolder,
  Poller,
  readSome,
  removeAt,
  renameAt,
  signalable,
  tryLock,
  writeSome,
} from "../ffi/channel.ts";
import {
  AT_FDCWD,
  EEXIST,
  O_CLOEXEC,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
} from "../ffi/constants.ts";
import { syscallError } from "../ffi/errno.ts";
import type { Bytes } from "../ffi/libc.ts";
import { close, fstat, geteuid, openat, statAt } from "../ffi/syscalls.ts";
import { setWaitPolicy } from "../ffi/waitv.ts";
import { AGENT_MIN_NOFILE, MIN_SLOTS, SPARE_FDS } from "./limits.ts";

/** The first line of every request; a client of another version is answered `c`. */
const PROTOCOL = "TCA3";
const FIRST_SLOTS = 128;
/** The most slots: two descriptors each. */
const MAX_SLOTS = 8192;
const MAX_REQUEST = 256 * 1024;
/** How often the agent looks at its region, its folder and stale claims. */
const TICK_MS = 250;
/** How long a region that is not there when the agent starts may take to appear (the init that started it makes it). */
const REGION_GRACE_MS = 2000;
/** How long a dead agent's folder stays unchanged before another agent's start removes it. */
const SWEEP_AFTER_S = 10;
/** Thread-pool calls its waits may hold: Deno's 32 less the poll and a few for other async work. */
const WAIT_CALLS = 28;

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** One client's call, as its request gives it. */
interface Request {
  /** The identity of the client's launcher. */
  id: string;
  pid: number;
  ppid: number;
  args: string[];
  env: Record<string, string>;
}

class Slot {
  req = -1;
  rep = -1;
  /** A client has spoken on it since it was last reset. */
  busy = false;
  /** The client has gone (POLLHUP). */
  gone = false;
  running = false;
  /** The call has ended (or was refused): its last line is queued. */
  done = false;
  input: Bytes[] = [];
  inputLength = 0;
  output: Bytes[] = [];
  abort?: AbortController;
  client?: { pid: number; args: string[] };

  constructor(readonly n: number) {}
}

class Agent {
  readonly slots: Slot[] = [];
  readonly poller = new Poller();
  readonly toReset = new Set<Slot>();
  readonly started = performance.now();
  lastCall = this.started;
  /** Calls that have ended. */
  calls = 0;
  pollsetDirty = true;
  clientsDirty = true;
  /** A newer install's client came: its folder is renamed away and it serves no new call. */
  retired = false;
  /** Its folder's name in BASE: KEY, until it retires. */
  name: string;
  /** An O_PATH descriptor of its region, opened once it is there: its end is st_nlink 0. */
  regionFd = -1;
  /** Calls running now that wait (`wait`): without io_uring each needs a futex_waitv call of its own. */
  waiting = 0;
  /** Whether the waits are io_uring's, which any number of words may share exactly. */
  ring = false;

  constructor(
    readonly base: string,
    readonly key: string,
    readonly id: string,
    readonly maxSlots: number,
    readonly region: string,
    readonly idleMs: number,
    readonly baseFd: number,
    readonly dir: number,
  ) {
    this.name = key;
  }
}

/** Opens BASE, making it (0700) where missing; refuses one that is not this user's. */
function openBase(base: string, euid: number): number {
  const made = mkdirAt(AT_FDCWD, base, 0o700);
  if (made < 0 && made !== -EEXIST) throw syscallError(`Cannot make ${base}`, -made);
  const fd = openFolder(AT_FDCWD, base);
  if (fd < 0) throw syscallError(`Cannot open ${base}`, -fd, "open");
  const info = fstat(fd, base);
  if (info.uid !== euid) throw new Error(`${base} belongs to user ${info.uid}, not ${euid}`);
  if (info.mode !== 0o700) fchmod(fd, 0o700);
  return fd;
}

/** Removes everything in the folder `fd` (one level: the agent makes no sub-folders). */
function clear(fd: number): void {
  for (const name of namesIn(fd)) if (removeAt(fd, name) < 0) removeAt(fd, name, true);
}

/**
 * Removes the folders of dead agents in BASE (their lock is free), except `mine`. A folder changed within the last
 * SWEEP_AFTER_S is left: an agent starting there may not hold its lock yet.
 */
function sweepDead(baseFd: number, mine: string): void {
  const now = Date.now() / 1000;
  for (const name of namesIn(baseFd)) {
    if (name === mine) continue;
    const fd = openFolder(baseFd, name);
    if (fd < 0) continue;
    if (now - fstat(fd, name).ctime > SWEEP_AFTER_S && tryLock(fd)) {
      clear(fd);
      removeAt(baseFd, name, true);
    }
    close(fd);
  }
}

/** Whether BASE/KEY still names the folder `dir` (another agent's sweep may have removed it). */
function stillNamed(baseFd: number, key: string, dir: number): boolean {
  const named = statAt(baseFd, key);
  const info = fstat(dir, key);
  return named?.dev === info.dev && named.ino === info.ino;
}

/**
 * The region's folder in BASE, made where missing, opened and locked; undefined once another agent serves the
 * region (its slots are published). A sweep by another agent may hold a dead folder's lock for a moment and remove
 * it: then it is made again.
 */
function lockedFolder(baseFd: number, base: string, key: string, euid: number): number | undefined {
  for (let attempt = 0; attempt < 5; attempt++) {
    const made = mkdirAt(baseFd, key, 0o700);
    if (made < 0 && made !== -EEXIST) throw syscallError(`Cannot make ${base}/${key}`, -made);
    const dir = openFolder(baseFd, key);
    if (dir < 0) continue;
    if (fstat(dir, key).uid !== euid) throw new Error(`${base}/${key} is not this user's`);
    if (tryLock(dir)) {
      if (stillNamed(baseFd, key, dir)) return dir;
    } else if (stillNamed(baseFd, key, dir)) {
      // another agent serves this region, or is starting to
      close(dir);
      return undefined;
    }
    close(dir);
  }
  throw new Error(`${base}/${key} keeps disappearing`);
}

/** Replaces the file `name` in `dir` with `text`, by a rename. */
function writeFile(dir: number, name: string, text: string): void {
  const tmp = `${name}.${Deno.pid}.new`;
  const fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600);
  if (fd < 0) return;
  writeSome(fd, Uint8Array.from(encoder.encode(text)));
  close(fd);
  renameAt(dir, tmp, name);
}

/** The request FIFO's read end, fresh: POLLHUP only once a client has come and gone. */
function openRequest(agent: Agent, slot: Slot): number {
  return openat(agent.dir, `${slot.n}.req`, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
}

function openSlot(agent: Agent, slot: Slot): boolean {
  for (const suffix of ["req", "rep"]) {
    const r = mkfifoAt(agent.dir, `${slot.n}.${suffix}`, 0o600);
    if (r < 0 && r !== -EEXIST) return false;
  }
  slot.req = openRequest(agent, slot);
  // read and write: a client's open never blocks, and it reads EOF only when the agent is gone
  slot.rep = openat(agent.dir, `${slot.n}.rep`, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  return slot.req >= 0 && slot.rep >= 0;
}

/** Makes slots up to `count`; publishes how many there are. */
function grow(agent: Agent, count: number): void {
  const from = agent.slots.length;
  for (let n = from; n < Math.min(count, agent.maxSlots); n++) {
    const slot = new Slot(n);
    if (!openSlot(agent, slot)) {
      if (slot.req >= 0) close(slot.req);
      if (slot.rep >= 0) close(slot.rep);
      break;
    }
    agent.slots.push(slot);
  }
  if (agent.slots.length !== from) {
    writeFile(agent.dir, "slots", `${agent.slots.length}\n`);
    agent.pollsetDirty = true;
  }
}

const scratch = new Uint8Array(65536);

/** Empties a FIFO held with O_NONBLOCK. */
function drain(fd: number): void {
  while (readSome(fd, scratch) > 0);
}

/** Readies a slot for its next client: drained, POLLHUP cleared by a fresh read end, then its claim removed. */
function reset(agent: Agent, slot: Slot): void {
  drain(slot.req);
  drain(slot.rep);
  close(slot.req);
  slot.req = openRequest(agent, slot);
  if (slot.client) agent.clientsDirty = true;
  Object.assign(slot, { busy: false, gone: false, running: false, done: false, input: [], inputLength: 0, output: [] });
  slot.abort = slot.client = undefined;
  if (slot.req < 0) return; // the folder is gone: the next tick ends the agent
  removeAt(agent.dir, `${slot.n}.lock`);
}

/** Queues `text` for the client of `slot`: one protocol line per line of it. */
function send(agent: Agent, slot: Slot, kind: "o" | "e" | "a" | "x" | "c" | "n", text = ""): void {
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
      // the FIFO is full: the rest when POLLOUT says there is room
      slot.output[0] = chunk.slice(written);
      agent.pollsetDirty = true;
      agent.poller.wake();
      return;
    }
  }
}

/** A count line: a decimal number, or undefined. */
function count(line: string | undefined): number | undefined {
  return line !== undefined && /^(0|[1-9][0-9]{0,9})$/.test(line) ? Number(line) : undefined;
}

/**
 * A parsed request, "cold" for one the agent cannot take or that does not
 * parse, or undefined while it is a well-formed beginning of one (a request
 * larger than a pipe's atomic write may come in pieces). Nothing after the
 * request's last line is waited for: a client sends one request.
 */
function parse(bytes: Bytes): Request | "cold" | undefined {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) return undefined;
  let text: string;
  try {
    text = strict.decode(bytes);
  } catch {
    return "cold";
  }
  const lines = text.slice(0, -1).split("\n");
  const [version, id, more] = lines[0].split(" ");
  if (version !== PROTOCOL || !id || more !== undefined) return "cold";
  // each line in its turn: a count that is not a number is refused at once, a missing line waited for
  if (lines.length < 4) return lines.slice(1).every((line) => count(line) !== undefined) ? undefined : "cold";
  const [pid, ppid, argc] = [count(lines[1]), count(lines[2]), count(lines[3])];
  if (pid === undefined || ppid === undefined || argc === undefined) return "cold";
  if (lines.length < 5 + argc) return undefined;
  const envc = count(lines[4 + argc]);
  if (envc === undefined) return "cold";
  if (lines.length < 6 + argc + envc) return undefined;
  if (lines.length > 6 + argc + envc || lines[5 + argc + envc] !== ".") return "cold";
  const env: Record<string, string> = {};
  for (const line of lines.slice(5 + argc, 5 + argc + envc)) {
    const at = line.indexOf("=");
    if (at <= 0) return "cold";
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return { id, pid, ppid, args: lines.slice(4, 4 + argc), env };
}

function concat(parts: Bytes[], length: number): Bytes {
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
  for (;;) {
    const r = readSome(slot.req, scratch);
    if (r <= 0) break;
    slot.busy = true;
    if (slot.running || slot.done) continue; // one request a connection: anything more is ignored
    slot.input.push(scratch.slice(0, r));
    slot.inputLength += r;
  }
  if (slot.running || slot.done || slot.inputLength === 0) return;
  if (slot.inputLength > MAX_REQUEST) return refuse(agent, slot);
  const request = parse(concat(slot.input, slot.inputLength));
  if (request === undefined) return;
  if (request === "cold") return refuse(agent, slot);
  if (request.id !== agent.id || agent.retired) return other(agent, slot, request.id);
  startCall(agent, slot, request);
}

/** Tells the client to run its call cold: nothing of it has run here. */
function refuse(agent: Agent, slot: Slot): void {
  slot.done = true;
  send(agent, slot, "c");
}

/**
 * A client of another install (or of this one, once retired): a newer one
 * retires this agent and goes to a fresh one (`n`); an older one runs cold.
 */
function other(agent: Agent, slot: Slot, id: string): void {
  if (!agent.retired && id > agent.id) {
    const name = `.retired.${Deno.pid}.${agent.key}`;
    // renamed before the answer: the fresh agent the client starts makes KEY anew
    if (renameAt(agent.baseFd, agent.key, name) === 0) {
      agent.retired = true;
      agent.name = name;
      removeAt(agent.dir, "slots");
    }
  }
  slot.done = true;
  send(agent, slot, agent.retired ? "n" : "c");
}

/**
 * Whether the call needs the caller's working folder, which a call's
 * context does not carry: a relative region, TMPDIR or `--all` folder.
 */
function needsCwd(args: string[], env: Record<string, string>): boolean {
  const relative = (path: string | undefined) => path !== undefined && path !== "" && !path.startsWith("/");
  if (relative(env.LTP_IPC_PATH) || relative(env.TMPDIR)) return true;
  return args.includes("--all") && args.some((arg) => arg !== "status" && !arg.startsWith("-") && relative(arg));
}

function startCall(agent: Agent, slot: Slot, request: Request): void {
  if (needsCwd(request.args, request.env)) return refuse(agent, slot);
  // status may read /proc for seconds on this one thread, stalling every other client: it runs cold
  if (request.args.includes("status")) return refuse(agent, slot);
  // without io_uring, a wait beyond the calls would share a futex_waitv call with other words, where two wakes close
  // together can lose one: exactness first, it runs cold
  const waits = request.args.includes("wait");
  if (waits && !agent.ring && agent.waiting >= WAIT_CALLS) return refuse(agent, slot);
  if (waits) agent.waiting++;
  slot.running = true;
  slot.input = [];
  slot.abort = new AbortController();
  slot.client = { pid: request.pid, args: request.args };
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
    if (waits) agent.waiting--;
    slot.running = false;
    slot.done = true;
    agent.calls++;
    agent.lastCall = performance.now();
    if (slot.client) agent.clientsDirty = true;
    slot.client = undefined;
    send(agent, slot, "x", `${code}`);
    if (slot.gone) {
      agent.toReset.add(slot);
      agent.poller.wake();
    }
  });
}

/** The calls running now, for `status`: which client process waits where. */
function writeClients(agent: Agent): void {
  agent.clientsDirty = false;
  const clients = agent.slots.filter((slot) => slot.client).map((slot) => slot.client);
  writeFile(agent.dir, "clients", JSON.stringify({ agent: Deno.pid, region: agent.region, clients }) + "\n");
}

/** Frees the claims of clients that died before they spoke. */
function sweepClaims(agent: Agent): void {
  const buffer = new Uint8Array(32);
  for (const slot of agent.slots) {
    if (slot.busy) continue;
    const fd = openat(agent.dir, `${slot.n}.lock`, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    const r = readSome(fd, buffer);
    close(fd);
    // a claim is written in one go: an empty one is being written now
    const pid = r > 0 ? Number(new TextDecoder().decode(buffer.subarray(0, r)).trim()) : NaN;
    if (Number.isInteger(pid) && pid > 0 && !signalable(pid)) removeAt(agent.dir, `${slot.n}.lock`);
  }
}

/** Whether the agent should end now. */
function timeToEnd(agent: Agent, now: number): boolean {
  const own = statAt(agent.baseFd, agent.name);
  if (own?.type !== "directory") return true; // its folder is gone
  if (agent.slots.some((slot) => slot.busy)) return false;
  if (agent.retired) return true;
  // its region's end is the agent's: the region is opened once it is there (the call that started the agent may be
  // the init that makes it, run cold meanwhile), and is gone for good if it is not there once a call has run or the
  // grace has passed; then its descriptor is looked at, never its path again, so that a stalled mount on the way
  // cannot stall the agent
  if (agent.regionFd < 0) {
    agent.regionFd = openat(AT_FDCWD, agent.region, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (agent.regionFd < 0 && (agent.calls > 0 || now - agent.started > REGION_GRACE_MS)) return true;
  }
  if (agent.regionFd >= 0 && linksOf(agent.regionFd) === 0) return true;
  return now - agent.lastCall > agent.idleMs;
}

/** The number of names the file open at `fd` has (0 once it is removed), or 0 where it cannot be told. */
function linksOf(fd: number): number {
  try {
    return fstat(fd, "the region").nlink;
  } catch {
    return 0;
  }
}

/**
 * Removes the agent's folder, then exits. BASE stays: removed, another user
 * could make one of that name, for a client that checked it a moment before.
 */
function end(agent: Agent): never {
  for (const slot of agent.slots) slot.abort?.abort();
  removeAt(agent.dir, "slots"); // first, so that no new client comes
  clear(agent.dir);
  removeAt(agent.baseFd, agent.name, true);
  Deno.exit(0);
}

/** The agent's loop: one poll over every request FIFO, then what it found, then the periodic looks. */
async function serve(agent: Agent): Promise<never> {
  let owners: { slot: Slot; out: boolean }[] = [];
  let lastTick = 0;
  for (;;) {
    if (agent.pollsetDirty) {
      agent.pollsetDirty = false;
      const entries: [number, number][] = [];
      owners = [];
      for (const slot of agent.slots) {
        if (slot.gone) continue;
        entries.push([slot.req, POLLIN]);
        owners.push({ slot, out: false });
        if (slot.output.length > 0) {
          entries.push([slot.rep, POLLOUT]);
          owners.push({ slot, out: true });
        }
      }
      agent.poller.watch(entries);
    }
    const events = await agent.poller.poll(TICK_MS);
    for (let i = 0; i < owners.length; i++) {
      const revents = events[i];
      if (revents === 0) continue;
      const { slot, out } = owners[i];
      if (out) {
        flush(agent, slot);
        if (slot.output.length === 0) agent.pollsetDirty = true;
        continue;
      }
      if (revents & (POLLIN | POLLHUP)) readRequest(agent, slot);
      if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
        // the client has gone: its call ends now, and the slot is free once it has
        slot.gone = true;
        slot.output = [];
        agent.pollsetDirty = true;
        if (slot.running) slot.abort?.abort();
        else agent.toReset.add(slot);
      }
    }
    // descriptors change only here, between polls
    for (const slot of agent.toReset) reset(agent, slot);
    if (agent.toReset.size > 0) agent.pollsetDirty = true;
    agent.toReset.clear();
    const busy = agent.slots.reduce((n, slot) => n + (slot.busy ? 1 : 0), 0);
    if (2 * (busy + 1) > agent.slots.length) grow(agent, agent.slots.length * 2);
    if (agent.clientsDirty) writeClients(agent);
    const now = performance.now();
    if (now - lastTick >= TICK_MS) {
      lastTick = now;
      if (timeToEnd(agent, now)) end(agent);
      sweepClaims(agent);
    }
  }
}

/** Starts serving; returns false when another agent serves this region already. */
function start(args: string[]): boolean {
  const [base, key, region, idle, id, nofile] = args;
  const euid = geteuid();
  closeInherited();
  leaveWorkingFolder();
  if (
    base !== `/tmp/tst_checkpoint-${euid}` || !key || key.includes("/") || !region?.startsWith("/") || !id ||
    /\s/.test(id)
  ) {
    throw new Error("usage: server.ts /tmp/tst_checkpoint-EUID KEY REGION IDLE_S ID NOFILE");
  }
  // too few descriptors for a useful channel: the calls run cold
  const maxSlots = nofile === "unlimited"
    ? MAX_SLOTS
    : Math.min(MAX_SLOTS, Math.floor((Number(nofile) - SPARE_FDS) / 2));
  if (!(maxSlots >= MIN_SLOTS)) {
    throw new Error(`an open-files limit of ${nofile} is below what an agent needs (${AGENT_MIN_NOFILE})`);
  }
  const baseFd = openBase(base, euid);
  const dir = lockedFolder(baseFd, base, key, euid);
  if (dir === undefined) return false;
  clear(dir);
  // first, for a client that comes before the slots: an agent is starting here, and none other need be
  writeFile(dir, "pid", `${Deno.pid}\n`);
  sweepDead(baseFd, key);
  // never mixed words: without io_uring, a wait with no call of its own runs cold (startCall())
  const ring = setWaitPolicy({ calls: WAIT_CALLS, mixWords: false, uring: true });
  const idleMs = Math.max(1, Number(idle) || 60) * 1000;
  const agent = new Agent(base, key, id, maxSlots, region, idleMs, baseFd, dir);
  agent.ring = ring;
  grow(agent, FIRST_SLOTS);
  if (agent.slots.length === 0) throw new Error("Cannot make the channel's FIFOs");
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) Deno.addSignalListener(signal, () => end(agent));
  serve(agent).catch(() => end(agent));
  return true;
}

if (import.meta.main) {
  try {
    start(Deno.args);
  } catch {
    Deno.exit(2);
  }
}
