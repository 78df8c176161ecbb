/**
 * Children started on a region by `Checkpoint.spawn()`: their output kept
 * (a bounded tail), their end watched, so that the region's waits and wakes
 * can fail at once when a child they depend on has died.
 * @module
 */
import { escapeText } from "./escape.ts";

/** Options of {@linkcode Checkpoint.spawn}. */
export interface SpawnOptions {
  /** Variables for the child, under the region's own `LTP_IPC_PATH` and `LTP_IPC_LAYOUT`, which win. */
  env?: Record<string, string>;
  /** Start the child with no variables but `env` and the region's. */
  clearEnv?: boolean;
  /** The child's working folder. */
  cwd?: string | URL;
  /** What the child reads: `"null"` (the default) or `"inherit"`. */
  stdin?: "null" | "inherit";
  /**
   * How errors name the child (escaped). Default: the command's base name
   * and those of its arguments that are not flags, by their base names, such
   * as `deno run child.ts` (a script given as an argument, as `sh -c`'s is,
   * as `…`).
   */
  name?: string;
}

/** How much of each of a child's streams is kept, in UTF-16 code units: the latest part. */
const KEPT = 1 << 20;
/** How many of a child's last lines, each cut to how many characters, an error quotes. */
const LAST_LINES = 6;
const LINE_CHARS = 240;
/** How many lines are looked back over for the start of an error report (Deno's `error: `). */
const LOOKBACK = 32;
/** Colour and cursor sequences (CSI), which carry no words: dropped before the rest is escaped. */
// deno-lint-ignore no-control-regex
const CSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
/** How long after its exit a child's pipes may stay open (a grandchild holding them) before they are let go. */
const PIPE_GRACE_MS = 200;

/**
 * A child started by {@linkcode Checkpoint.spawn} ended unsuccessfully while
 * its region was in use: waits, wakes and `waitForWaiters()` of that region,
 * pending or later, reject with it until the child is disposed.
 */
export class ChildFailed extends Error {
  /** Always "ChildFailed". */
  override name = "ChildFailed";
  /** How the child is named. */
  readonly child: string;
  /** Its process id. */
  readonly pid: number;
  /** How it ended. */
  readonly status: Deno.CommandStatus;
  /** The last lines it wrote (stdout and stderr as they came), escaped and cut. */
  readonly lastLines: readonly string[];

  /**
   * Made by the region's calls; not meant to be made elsewhere.
   *
   * @param message What failed, the child, its end and its last lines, in one line.
   * @param child How the child is named.
   * @param pid Its process id.
   * @param status How it ended.
   * @param lastLines Its last lines.
   */
  constructor(message: string, child: string, pid: number, status: Deno.CommandStatus, lastLines: readonly string[]) {
    super(message);
    this.child = child;
    this.pid = pid;
    this.status = status;
    this.lastLines = lastLines;
  }
}

/** `status` in words: "exited with code 1", "was killed by SIGKILL". */
function ending(status: Deno.CommandStatus): string {
  return status.signal === null ? `exited with code ${status.code}` : `was killed by ${status.signal}`;
}

/**
 * A default name: the command's base name and its arguments that are not
 * flags, by their base names, a script (an argument with a blank) as "…",
 * escaped and cut.
 */
function nameOf(command: string | URL, args: readonly string[]): string {
  const path = command instanceof URL ? command.pathname : command;
  const words = [path.slice(path.lastIndexOf("/") + 1)];
  for (const arg of args) {
    if (!arg.startsWith("-")) words.push(/\s/.test(arg) ? "…" : arg.slice(arg.lastIndexOf("/") + 1));
  }
  const name = escapeText(words.join(" "));
  return name.length > 80 ? `${name.slice(0, 79)}…` : name;
}

/** What the region needs to hear from a child it started. */
export interface ChildEvents {
  /** The child ended unsuccessfully, not killed by us. */
  failed(child: CheckpointChild, error: ChildFailed): void;
  /** The child was disposed: it no longer concerns the region. */
  disposed(child: CheckpointChild): void;
}

/** One stream's kept text and its line being written. */
class Stream {
  kept = "";
  partial = "";
  readonly decoder = new TextDecoder();
}

/**
 * A child process started on a region by {@linkcode Checkpoint.spawn}.
 * Its stdout and stderr are read as it runs (the latest MiB of each kept),
 * so it never blocks on a full pipe. `await using` kills it if it still
 * runs at the end of the scope and waits for its end; `using` kills it and
 * does not wait; so does the region's `close()`.
 */
export class CheckpointChild implements AsyncDisposable, Disposable {
  /** How errors name it. */
  readonly name: string;
  /** Its process id. */
  readonly pid: number;
  /** Resolves when it has ended and its output has been read to the end. */
  readonly status: Promise<Deno.CommandStatus>;
  #process: Deno.ChildProcess;
  #streams = { stdout: new Stream(), stderr: new Stream() };
  #lines: string[] = [];
  #ended = false;
  #killed = false;
  #disposed = false;
  #events: ChildEvents;

  /** @ignore Children are started by {@linkcode Checkpoint.spawn}. */
  constructor(command: string | URL, args: string[], options: SpawnOptions, events: ChildEvents) {
    this.#events = events;
    this.name = options.name === undefined ? nameOf(command, args) : escapeText(options.name);
    this.#process = new Deno.Command(command, {
      args,
      env: options.env,
      clearEnv: options.clearEnv,
      cwd: options.cwd,
      stdin: options.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#process.pid;
    this.status = this.#end();
  }

  /** Its status once it has ended and its output has been read (a grandchild holding its pipes is not waited for). */
  async #end(): Promise<Deno.CommandStatus> {
    const readers = [this.#process.stdout.getReader(), this.#process.stderr.getReader()];
    const read = Promise.all([
      this.#read(readers[0], this.#streams.stdout),
      this.#read(readers[1], this.#streams.stderr),
    ]);
    const status = await this.#process.status;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = await Promise.race([
      read.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), PIPE_GRACE_MS)),
    ]);
    clearTimeout(timer);
    if (!drained) await Promise.all(readers.map((reader) => reader.cancel()));
    await read;
    this.#ended = true;
    if (!status.success && !this.#killed && !this.#disposed) this.#events.failed(this, this.failure(status));
    return status;
  }

  /** Reads one stream to its end, keeping its tail and its lines. */
  async #read(reader: ReadableStreamDefaultReader<Uint8Array>, stream: Stream): Promise<void> {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#take(stream, stream.decoder.decode(value, { stream: true }));
      }
    } catch {
      // a pipe that fails to read ends what is kept of it, not the child
    }
    this.#take(stream, stream.decoder.decode());
  }

  #take(stream: Stream, text: string): void {
    if (text === "") return;
    stream.kept = (stream.kept + text).slice(-KEPT);
    const lines = (stream.partial + text).split("\n");
    stream.partial = lines.pop()!.slice(-LINE_CHARS);
    for (const line of lines) this.#line(line);
  }

  #line(line: string): void {
    const plain = line.replace(CSI, "").trimEnd();
    if (plain.trim() === "") return;
    this.#lines.push(plain.length > LINE_CHARS ? `${plain.slice(0, LINE_CHARS - 1)}…` : plain);
    if (this.#lines.length > LOOKBACK) this.#lines.shift();
  }

  /** What it wrote on stdout so far (the latest MiB). */
  get stdout(): string {
    return this.#streams.stdout.kept;
  }

  /** What it wrote on stderr so far (the latest MiB). */
  get stderr(): string {
    return this.#streams.stderr.kept;
  }

  /**
   * Its last lines (at most six), stdout and stderr as they came, colours
   * dropped, escaped; a line still being written last. When Deno's report
   * of an uncaught error (`error: ...`) is among the last lines, they start
   * with it.
   */
  get lastLines(): string[] {
    const partial = [this.#streams.stdout.partial, this.#streams.stderr.partial]
      .map((line) => line.replace(CSI, "").trimEnd())
      .filter((line) => line.trim() !== "");
    const lines = [...this.#lines, ...partial];
    let from = Math.max(0, lines.length - LAST_LINES);
    for (let i = lines.length - 1; i >= 0; i--) {
      if (lines[i].startsWith("error: ")) {
        from = Math.min(i, from);
        break;
      }
    }
    return lines.slice(from, from + LAST_LINES).map(escapeText);
  }

  /** The error its end `status` makes, for a call described by `during` (as "Waiting on checkpoint 0"). */
  failure(status: Deno.CommandStatus, during?: string): ChildFailed {
    const lines = this.lastLines;
    const said = lines.length === 0 ? "; it wrote nothing" : `; its last lines: ${lines.join("\\n")}`;
    const what = `the child ${this.name} (pid ${this.pid}) ${ending(status)}${said}`;
    return new ChildFailed(
      during === undefined ? `${what[0].toUpperCase()}${what.slice(1)}` : `${during} failed: ${what}`,
      this.name,
      this.pid,
      status,
      lines,
    );
  }

  /**
   * Sends it a signal, if it still runs. A child ended this way is not a failure.
   *
   * @param [signal="SIGTERM"] The signal.
   */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#ended) return;
    this.#killed = true;
    try {
      this.#process.kill(signal);
    } catch (e) {
      // it ended meanwhile, and Deno has reaped it
      if (!(e instanceof TypeError)) throw e;
    }
  }

  /** Kills it with SIGKILL if it still runs; it no longer concerns its region. */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.kill("SIGKILL");
    this.#disposed = true;
    this.#events.disposed(this);
  }

  /** Kills it with SIGKILL if it still runs, and waits for its end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this[Symbol.dispose]();
    await this.status;
  }
}
