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
import { lockedByAnother } from "../ffi/channel.ts";
import { geteuid } from "../ffi/syscalls.ts";
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
  /** Whether it still runs (it holds a lock on its folder while it lives); undefined when that cannot be told. */
  alive?: boolean;
}

const BASE = "/tmp";
const PREFIX = "tst_checkpoint-";
const MAX_BYTES = 1 << 20;
const MAX_FOLDERS = 4096;

function readable(path: string): boolean {
  return Deno.permissions.querySync({ name: "read", path }).state === "granted";
}

/**
 * The folders of the agents of the users `uids` that this user may see
 * (its own; every user's for root), each private to the uid its name gives.
 * Only those users' folders are looked at: /tmp itself is never listed.
 */
function agentFolders(uids: Iterable<number>): string[] {
  if (!readable(BASE)) return [];
  const self = geteuid();
  const folders: string[] = [];
  for (const owner of new Set(uids)) {
    if (self !== 0 && owner !== self) continue;
    const path = `${BASE}/${PREFIX}${owner}`;
    if (!privateTo(path, owner)) continue;
    try {
      for (const entry of Deno.readDirSync(path)) {
        if (folders.length >= MAX_FOLDERS) return folders;
        if (privateTo(`${path}/${entry.name}`, owner)) folders.push(`${path}/${entry.name}`);
      }
    } catch {
      // a folder that went away names no agent
    }
  }
  return folders;
}

/** Whether `path` is a folder (not a symlink) of `owner` that no one else may enter. */
function privateTo(path: string, owner: number): boolean {
  try {
    const info = Deno.lstatSync(path);
    return info.isDirectory && info.uid === owner && ((info.mode ?? 0o777) & 0o077) === 0;
  } catch {
    return false;
  }
}

/** The agent whose `clients` file is in `folder`, checked field by field; undefined when there is none. */
function agentIn(folder: string): Agent | undefined {
  const path = `${folder}/clients`;
  try {
    const info = Deno.lstatSync(path);
    if (!info.isFile || info.size > MAX_BYTES) return undefined;
    const data = JSON.parse(new TextDecoder().decode(Deno.readFileSync(path)));
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
    return { pid, region, clients, folder, alive: lockedByAnother(folder) };
  } catch {
    return undefined;
  }
}

function isPid(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0 && (value as number) < 2 ** 22 + 1;
}

/** The agents of the users `uids` (this user, and for root others) whose folders may be read, alive or left behind. */
export function listAgents(uids: Iterable<number>): Agent[] {
  return agentFolders(uids).flatMap((folder) => agentIn(folder) ?? []);
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
