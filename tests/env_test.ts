/** src/env.ts: reading the environment, a caller's environment in its place, and LTP_TIMEOUT_MUL. In-process. */
import assert from "node:assert/strict";
import { readEnv, timeoutMultiplier, withEnv } from "../src/env.ts";

/** A variable name that nothing else sets. */
const NAME = `LTP_CHECKPOINT_ENV_TEST_${Deno.pid}`;

Deno.test("readEnv gives a variable's value, and undefined when it is unset", () => {
  assert.equal(readEnv(NAME), undefined);
  Deno.env.set(NAME, "value");
  try {
    assert.equal(readEnv(NAME), "value");
    assert.equal(readEnv(NAME, true), "value");
  } finally {
    Deno.env.delete(NAME);
  }
  assert.equal(readEnv(NAME), undefined);
});

Deno.test("withEnv reads a caller's environment in place of the process's, and only while its function runs", () => {
  Deno.env.set(NAME, "process");
  try {
    assert.equal(withEnv({ [NAME]: "caller" }, () => readEnv(NAME)), "caller");
    assert.equal(
      withEnv({}, () => readEnv(NAME)),
      undefined,
      "a variable the caller lacks is unset",
    );
    const nested = withEnv(
      { [NAME]: "outer" },
      () => [withEnv({ [NAME]: "inner" }, () => readEnv(NAME)), readEnv(NAME)],
    );
    assert.deepEqual(nested, ["inner", "outer"]);
    assert.throws(() =>
      withEnv({ [NAME]: "thrown" }, () => {
        throw new Error("inside");
      }), /inside/);
    assert.equal(readEnv(NAME), "process");
  } finally {
    Deno.env.delete(NAME);
  }
});

/** timeoutMultiplier() with LTP_TIMEOUT_MUL set to `text` (unset when undefined). */
function multiplierOf(text: string | undefined): number {
  return withEnv(
    text === undefined ? {} : { LTP_TIMEOUT_MUL: text },
    timeoutMultiplier,
  );
}

Deno.test("timeoutMultiplier is 1 when LTP_TIMEOUT_MUL is unset or empty", () => {
  assert.equal(multiplierOf(undefined), 1);
  assert.equal(multiplierOf(""), 1);
});

Deno.test("timeoutMultiplier reads a decimal from 0.099 to 10000, blanks around it allowed", () => {
  const cases: [string, number][] = [
    ["2", 2],
    ["2.5", 2.5],
    [".5", 0.5],
    ["3.", 3],
    [" 4 ", 4],
    ["0.099", 0.099],
    ["10000", 10000],
  ];
  assert.deepEqual(
    cases.map(([text]) => multiplierOf(text)),
    cases.map(([, value]) => value),
  );
  // the value remembered for one text is not given for another
  assert.deepEqual([multiplierOf("7"), multiplierOf("8"), multiplierOf("7")], [
    7,
    8,
    7,
  ]);
});

Deno.test("timeoutMultiplier refuses what LTP refuses, naming the value", () => {
  for (
    const text of [
      "0.098",
      "0",
      "10001",
      "-1",
      "abc",
      "1e3",
      "0x10",
      "1,5",
      "2 3",
      "Infinity",
      "NaN",
    ]
  ) {
    assert.throws(
      () => multiplierOf(text),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `LTP_TIMEOUT_MUL must be a decimal number from 0.099 to 10000, not '${text}'`,
      text,
    );
  }
});
