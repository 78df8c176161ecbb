/**
 * Fixes for a missing permission, fitted to how the tool was run: the flags
 * for `deno run`, or for the installed tool, whose flags are fixed in its
 * launcher, the command that reinstalls it with them.
 * @module
 */
import { PermissionNeeded, runAgainWith } from "../src/errors.ts";
import { shellQuote } from "../src/text.ts";

/** Set by the installed launcher: the command that reinstalls the tool. */
const REINSTALL_ENV = "TST_CHECKPOINT_REINSTALL";
/** Set by the launcher when the checkout it was installed from is gone: that checkout's path. */
const GONE_ENV = "TST_CHECKPOINT_GONE";
/** Set by the launcher: the folders it may write, comma-separated. */
const WRITE_ENV = "TST_CHECKPOINT_WRITE";
/** The module's advice for a new region's folder, which a shell user cannot follow. */
const MODULE_ADVICE = "give create({ dir }) or init(path) one that is allowed, or ";

/** The hints of one call. */
export class Hints {
  /**
   * @param reinstall The installed tool's reinstall command; undefined when run with `deno run`.
   * @param gone The checkout it was installed from, when that is gone (`reinstall` then makes a new one).
   * @param writable The folders the installed tool may write.
   */
  constructor(readonly reinstall: string | undefined, readonly gone?: string, readonly writable: string[] = []) {}

  /** The hints of this process: installed when its launcher says so. */
  static ofProcess(readEnv: (name: string) => string | undefined): Hints {
    try {
      const reinstall = readEnv(REINSTALL_ENV) || undefined;
      if (reinstall === undefined) return new Hints(undefined);
      return new Hints(reinstall, readEnv(GONE_ENV) || undefined, readEnv(WRITE_ENV)?.split(",").filter(Boolean));
    } catch {
      return new Hints(undefined);
    }
  }

  /** The fix for missing `flags`. */
  fixFor(flags: string[]): string {
    if (this.reinstall === undefined) return runAgainWith(flags);
    const command = `${this.reinstall} ${flags.join(" ")}`;
    if (this.gone === undefined) return `reinstall with: ${command}`;
    const from = command.startsWith("git clone ") ? "" : " from a new checkout of ltp-checkpoint";
    return `its checkout ${this.gone} is gone: install again${from} with: ${command}`;
  }

  /** For a shell user of the installed tool: where a new region may go, instead of the module's advice. */
  private shellAdvice(): string {
    const dirs = this.writable.map((dir) => shellQuote(dir));
    if (dirs.length === 0) return "";
    if (dirs.length === 1) return `set LTP_IPC_PATH to a file in ${dirs[0]}, or TMPDIR=${dirs[0]}, or `;
    return `set LTP_IPC_PATH to a file in one of ${dirs.join(", ")}, or TMPDIR to one of them, or `;
  }

  /** `text` (a message, a note) with each "run again with FLAGS" of the module fitted to how the tool was run. */
  fit(text: string): string {
    if (this.reinstall === undefined) return text;
    return text.replace(
      /run again with (--allow-\S+(?: --allow-\S+)*)/g,
      (_, flags: string) => this.fixFor(flags.split(" ")),
    );
  }

  /** An error's message, with the fix for the flags a missing permission carries fitted. */
  message(error: Error): string {
    if (!(error instanceof PermissionNeeded)) return error.message;
    const tail = runAgainWith(error.flags);
    if (!error.message.endsWith(tail)) return error.message;
    let head = error.message.slice(0, -tail.length);
    if (this.reinstall !== undefined && head.endsWith(MODULE_ADVICE)) {
      head = head.slice(0, -MODULE_ADVICE.length) + this.shellAdvice();
    }
    return head + this.fixFor(error.flags);
  }
}
