/** src/text.ts: plural and the one shell quoter, in process. */
import assert from "node:assert/strict";
import { plural, shellQuote } from "../src/text.ts";

Deno.test("plural picks the word by the number", () => {
  assert.equal(plural(1, "process", "processes"), "1 process");
  assert.equal(plural(0, "process", "processes"), "0 processes");
  assert.equal(plural(2, "call", "calls"), "2 calls");
});

Deno.test("shellQuote: plain words as they are, other text single-quoted as every POSIX shell reads it", async () => {
  assert.equal(shellQuote("/dev/shm/ltp_x_1"), "/dev/shm/ltp_x_1");
  assert.equal(shellQuote("/dev/shm/ltp_x_1", true), "'/dev/shm/ltp_x_1'");
  assert.equal(shellQuote(""), "''");
  const hostile = "a b'c\n$(id)\x1b[2J";
  const quoted = shellQuote(hostile);
  assert.equal(quoted, "'a b'\\''c\n$(id)\x1b[2J'");
  // dash reads it back exactly, running nothing
  const out = await new Deno.Command("sh", { args: ["-c", `printf %s ${quoted}`], stdout: "piped" }).output();
  assert.equal(new TextDecoder().decode(out.stdout), hostile);
});

Deno.test("shellQuote of a name's bytes: printable text single-quoted, anything else $'...' with \\xNN", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  assert.equal(shellQuote(bytes("/dev/shm/ltp_x_1")), "/dev/shm/ltp_x_1");
  assert.equal(shellQuote(bytes("a b")), "'a b'");
  assert.equal(shellQuote(bytes("a b'\x1b")), "$'a b\\x27\\x1b'");
  assert.equal(shellQuote(Uint8Array.of(0x61, 0xff)), "$'a\\xff'");
});
