/** cli/args.ts: the tst_checkpoint grammar, parsed as LTP's tool parses it. In-process, no I/O. */
import assert from "node:assert/strict";
import { HELP, parse, parseUint, USAGE, Usage } from "../cli/args.ts";

/** Asserts that `args` is misuse with exactly `message`. */
function assertMisuse(args: string[], message: string): void {
  assert.throws(
    () => parse(args),
    (e: unknown) => e instanceof Usage && e.message === message,
    args.join(" "),
  );
}

Deno.test("each command takes LTP's arguments, as numbers", () => {
  const cases: [string[], string, number[]][] = [
    [["init"], "init", []],
    [["wait", "100", "0"], "wait", [100, 0]],
    [["wake", "100", "3", "2"], "wake", [100, 3, 2]],
    [["waiters", "100", "3", "4"], "waiters", [100, 3, 4]],
    [["status"], "status", []],
    [["remove"], "remove", []],
  ];
  for (const [args, command, numbers] of cases) {
    const parsed = parse(args);
    assert.deepEqual([parsed.command, parsed.numbers, parsed.notes], [
      command,
      numbers,
      [],
    ], args.join(" "));
  }
});

Deno.test("a missing or unknown command, or a wrong number of arguments, is misuse naming what is expected", () => {
  assertMisuse([], "ERROR: No COMMAND given");
  assertMisuse(["foo", "1", "2"], "ERROR: Invalid COMMAND 'foo'");
  assertMisuse(["wait"], "ERROR: wait takes TIMEOUT ID (got 0 arguments)");
  assertMisuse(["wait", "1"], "ERROR: wait takes TIMEOUT ID (got 1 argument)");
  assertMisuse(
    ["wake", "10", "0"],
    "ERROR: wake takes TIMEOUT ID NR_WAKE (got 2 arguments)",
  );
  assertMisuse(["init", "x"], "ERROR: init takes no arguments (got 1)");
  assertMisuse(["toString"], "ERROR: Invalid COMMAND 'toString'");
});

Deno.test("options: each is checked before the command, and those of one command are refused for the others", () => {
  assert.equal(parse(["status", "--json"]).flags.json, true);
  assert.equal(parse(["init", "--cleanup"]).flags.cleanup, true);
  assert.equal(parse(["remove", "--if-exists"]).flags.ifExists, true);
  assertMisuse(
    ["wait", "10", "0", "--json"],
    "ERROR: --json applies to status only",
  );
  assertMisuse(
    ["status", "--cleanup"],
    "ERROR: --cleanup applies to init only",
  );
  assertMisuse(
    ["init", "--if-exists"],
    "ERROR: --if-exists applies to remove only",
  );
  assertMisuse(
    ["--bogus", "wait", "10", "0"],
    "ERROR: Unknown option '--bogus'",
  );
  assertMisuse(["foo", "--bogus"], "ERROR: Unknown option '--bogus'");
});

Deno.test("--layout takes ltp or seed, as two words or one", () => {
  assert.equal(
    parse(["--layout", "seed", "wait", "1", "0"]).flags.layout,
    "seed",
  );
  assert.equal(parse(["wait", "1", "0", "--layout=ltp"]).flags.layout, "ltp");
  assert.equal(parse(["wait", "1", "0"]).flags.layout, undefined);
  assertMisuse(
    ["--layout", "big", "wait", "1", "0"],
    "ERROR: Invalid --layout 'big'",
  );
  assertMisuse(["wait", "1", "0", "--layout"], "ERROR: Invalid --layout ''");
});

Deno.test("--help and --version win over a command and its arguments, once every option is known", () => {
  assert.deepEqual(parse(["--help"]), {
    flags: {
      help: true,
      version: false,
      json: false,
      all: false,
      cleanup: false,
      ifExists: false,
    },
    rest: [],
    numbers: [],
    notes: [],
  });
  assert.equal(parse(["-h", "foo"]).command, undefined);
  assert.equal(parse(["wait", "-V"]).flags.version, true);
  assertMisuse(["--help", "--bogus"], "ERROR: Unknown option '--bogus'");
  assert.ok(HELP.startsWith(USAGE));
});

Deno.test("a negative number stays an argument, named as an invalid number; -- ends the options", () => {
  assertMisuse(["wake", "1", "0", "-1"], "ERROR: Invalid NR_WAKE '-1'");
  assertMisuse(["wait", "--", "-5", "0"], "ERROR: Invalid TIMEOUT '-5'");
  assert.deepEqual(parse(["status", "--all", "--", "--json"]).rest, ["--json"]);
});

Deno.test("status --all takes any number of folders", () => {
  assert.deepEqual(parse(["status", "--all"]).rest, []);
  assert.deepEqual(parse(["status", "--all", "/a", "/b c"]).rest, [
    "/a",
    "/b c",
  ]);
  assertMisuse(["status", "/a"], "ERROR: status takes no arguments (got 1)");
});

Deno.test("numbers are read as strtoul reads them: blanks, a sign, digits; what follows is ignored with a note", () => {
  assert.deepEqual(parseUint("ID", "7"), { value: 7 });
  assert.deepEqual(parseUint("ID", " \t\n7"), { value: 7 });
  assert.deepEqual(parseUint("ID", "+7"), { value: 7 });
  assert.deepEqual(parseUint("ID", "-0"), { value: 0 });
  assert.deepEqual(parseUint("ID", "007"), { value: 7 });
  assert.deepEqual(parseUint("ID", "4294967295"), { value: 4294967295 });
  assert.deepEqual(parseUint("ID", "12abc"), { value: 12, ignored: "abc" });
  assert.deepEqual(parseUint("ID", "1.5"), { value: 1, ignored: ".5" });
  assert.deepEqual(parse(["wait", "100ms", "0"]).notes, [
    "TIMEOUT '100ms' read as 100, ignoring 'ms' (as LTP's tool does)",
  ]);
});

Deno.test("numbers strtoul would not read, or beyond UINT_MAX, or negative, are misuse", () => {
  for (
    const text of [
      "",
      " ",
      "abc",
      "+",
      "-",
      "-1",
      "4294967296",
      "99999999999999999999",
      "\u0661",
    ]
  ) {
    assert.throws(
      () => parseUint("TIMEOUT", text),
      (e: unknown) => e instanceof Usage && e.message === `ERROR: Invalid TIMEOUT '${text}'`,
      JSON.stringify(text),
    );
  }
});
