/** Assertions about what a child process printed and how it ended. */
import assert from "node:assert/strict";
import type { Result } from "./process.ts";

/** Asserts that a child ended with `code`, showing its output when it did not. */
export function assertExit(result: Result, code: number): void {
  assert.deepEqual(
    result.code,
    code,
    `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
  );
}

/** Asserts that stderr is one line matching `pattern`, with no stack trace. */
export function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `not one line: ${stderr}`);
  assert.match(lines[0], pattern);
}

/** Fails on anything that looks like a stack trace or an uncaught error. */
export function assertNoStackTrace(text: string, what: string): void {
  const bad = text.split("\n").filter((line) => line.startsWith("    at ") || line.startsWith("error: Uncaught"));
  assert.deepEqual(bad, [], `${what} shows a stack trace:\n${text}`);
}
