/**
 * Fixes for a missing permission, fitted to how the tool was run: the flags
 * for `deno run`, or for the installed tool, whose flags are fixed in its
 * launcher, the command that reinstalls it with them.
 * @module
 */
import { PermissionNeeded, runAgainWith } from "../src/errors.ts";

/** Set by the installed launcher: the command that reinstalls the tool. */
const REINSTALL_ENV = "TST_CHECKPOINT_REINSTALL";

/** The hints of one call. */
export class Hints {
  /** @param reinstall The installed tool's reinstall command; undefined when run with `deno run`. */
  constructor(readonly reinstall: string | undefined) {}

  /** The hints of this process: installed when its launcher says so. */
  static ofProcess(readEnv: (name: string) => string | undefined): Hints {
    try {
      return new Hints(readEnv(REINSTALL_ENV) || undefined);
    } catch {
      return new Hints(undefined);
    }
  }

  /** The fix for missing `flags`. */
  fixFor(flags: string[]): string {
    return this.reinstall === undefined ? runAgainWith(flags) : `reinstall with: ${this.reinstall} ${flags.join(" ")}`;
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
    return error.message.endsWith(tail)
      ? error.message.slice(0, -tail.length) + this.fixFor(error.flags)
      : error.message;
  }
}
