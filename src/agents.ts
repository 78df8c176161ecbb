/**
 * The resident agents of the installed `tst_checkpoint`, as `status` sees
 * them: each agent keeps, in its private folder under
 * `/tmp/tst_checkpoint-UID/`, a `clients` file naming the calls it runs
 * for its region (the client shell's pid and arguments). A waiter the
 * kernel counts through an agent is one of those clients. What is read here
 * is another process's word: only folders that belong to the uid in their
 * name and that no one else may enter are read, files are bounded, and
 * every field is checked.
 * @module
 */
import { lockedByAnother, namesIn } from "../ffi/channel.ts";
import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_NONBLOCK, O_RDONLY } from "../ffi/constants.ts";
import { close, fstat, geteuid, openat, openOnOwnMount, pread } from "../ffi/syscalls.ts";
import { escapeText } from "./escape.ts";

/** A client call an agent runs. */
export interface AgentClient {
  /** The client shell's pid. */
  pid: number;
  /** Its arguments, as given to `tst_checkpoint`. */
  args: string[];
}

/** One agent and its calls. */
export interface Agent {
  /** The agent's pid. */
  pid: number;
  /** The region it serves, an absolute path. */
  region: string;
  clients: AgentClient[];
  /** Its folder. */
  folder: string;
  /** Whether it still runs (it holds a lock on its folder while it lives). */
  alive: boolean;
}

const BASE = "/tmp";
const PREFIX = "tst_checkpoint-";
const MAX_BYTES = 1 << 20;
const MAX_FOLDERS = 4096;
const FOLDER = O_RDONLY | O_DIRECTORY;

function readable(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted";
}

/**
 * The agents, alive or left behind, in the folders of the users `uids` that
 * this user may see (its own; every user's for root), each folder private
 * to the uid its name gives. Only those users' folders are looked at (/tmp
 * itself is never listed), each opened beneath the last and never across a
 * mount, so that nothing another user mounted there is asked anything.
 */
export function listAgents(uids: Iterable<number>): Agent[] {
  if (!readable(BASE)) return [];
  const self = geteuid();
  const agents: Agent[] = [];
  const base = openat(AT_FDCWD, BASE, FOLDER | O_CLOEXEC);
  if (base < 0) return [];
  try {
    let folders = 0;
    for (const owner of new Set(uids)) {
      if (self !== 0 && owner !== self) continue;
      const path = `${BASE}/${PREFIX}${owner}`;
      withPrivateFolder(base, `${PREFIX}${owner}`, owner, (fd) => {
        for (const name of namesIn(fd)) {
          if (folders++ >= MAX_FOLDERS) return;
          withPrivateFolder(fd, name, owner, (folder) => {
            const agent = agentIn(folder, `${path}/${name}`);
            if (agent !== undefined) agents.push(agent);
          });
        }
      });
    }
  } finally {
    close(base);
  }
  return agents;
}

/** Runs `use` on the folder `name` in `dirfd` when it is one of `owner` that no one else may enter. */
function withPrivateFolder(dirfd: number, name: string, owner: number, use: (fd: number) => void): void {
  const fd = openOnOwnMount(dirfd, name, FOLDER);
  if (fd < 0) return;
  try {
    const info = fstat(fd, name);
    if (info.type === "directory" && info.uid === owner && (info.mode & 0o077) === 0) use(fd);
  } catch {
    // a folder that cannot be looked at names no agent
  } finally {
    close(fd);
  }
}

/** The agent whose `clients` file is in the open folder `folder` (at `path`), checked field by field. */
function agentIn(folder: number, path: string): Agent | undefined {
  const fd = openOnOwnMount(folder, "clients", O_RDONLY | O_NONBLOCK);
  if (fd < 0) return undefined;
  try {
    const info = fstat(fd, "clients");
    if (info.type !== "file" || info.size > MAX_BYTES) return undefined;
    const bytes = new Uint8Array(info.size);
    if (pread(fd, bytes, 0) !== info.size) return undefined;
    const data = JSON.parse(new TextDecoder().decode(bytes));
    const pid = data?.agent;
    const region = data?.region;
    if (!isPid(pid) || typeof region !== "string" || !region.startsWith("/") || !Array.isArray(data.clients)) {
      return undefined;
    }
    const clients: AgentClient[] = [];
    for (const c of data.clients) {
      if (isPid(c?.pid) && Array.isArray(c.args) && c.args.every((a: unknown) => typeof a === "string")) {
        clients.push({ pid: c.pid, args: c.args });
      }
    }
    return { pid, region, clients, folder: path, alive: lockedByAnother(folder) };
  } catch {
    return undefined;
  } finally {
    close(fd);
  }
}

function isPid(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0 && (value as number) < 2 ** 22 + 1;
}

/**
 * The agents serving the region at `path` (absolute: a relative path is
 * never served by an agent), of this user or of the region's owner `uid`.
 */
export function agentsOf(path: string, uid: number): Agent[] {
  if (!path.startsWith("/")) return [];
  return listAgents([geteuid(), uid]).filter((agent) => agent.region === path);
}

/** The checkpoint id a client's arguments wait on (`wait TIMEOUT ID`, options aside), or undefined. */
export function waitedId(args: string[]): number | undefined {
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--layout") i++;
    else if (!args[i].startsWith("--")) words.push(args[i]);
  }
  if (words[0] !== "wait" || words.length !== 3) return undefined;
  const id = Number.parseInt(words[2].trim(), 10);
  return Number.isInteger(id) && id >= 0 ? id : undefined;
}

/** How a client is shown: its pid's caller and what it asked, through which agent. */
export function describeClient(client: AgentClient, agent: Agent): string {
  return escapeText(`sh: tst_checkpoint ${client.args.join(" ")}, through agent ${agent.pid}`);
}
