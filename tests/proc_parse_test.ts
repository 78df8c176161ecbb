/** ffi/proc.ts: the reading of /proc's text (syscall, maps, stat, comm, futex_waitv vectors), in process, from bytes. */
import assert from "node:assert/strict";
import {
  commOf,
  isKernelThreadStat,
  Mappings,
  parentOfStat,
  parseSyscall,
  sharedWords,
  targetOf,
} from "../ffi/proc.ts";

const NUMBERS = { futex: 202, futex_waitv: 449 };
const bytes = (text: string) => new TextEncoder().encode(text);

function syscallLine(line: string) {
  const b = bytes(line);
  return parseSyscall(b, b.length, NUMBERS);
}

Deno.test("parseSyscall reads a shared FUTEX_WAIT and FUTEX_WAIT_BITSET, with or without the realtime clock", () => {
  const tail = "0x0 0x0 0x0 0x0 0x7ffd5c3f8e80 0x7f3a5c9e2f5d\n";
  assert.deepEqual(syscallLine(`202 0x7f3a5c001048 0x0 ${tail}`), {
    vector: false,
    address: 0x7f3a5c001048,
    count: 1,
  });
  assert.deepEqual(syscallLine(`202 0x7F3A5C00104C 0x9 ${tail}`), {
    vector: false,
    address: 0x7f3a5c00104c,
    count: 1,
  });
  assert.deepEqual(syscallLine(`202 0x1000 0x109 ${tail}`), {
    vector: false,
    address: 0x1000,
    count: 1,
  });
});

Deno.test("parseSyscall judges the op by its low 32 bits: a register's upper half is noise", () => {
  assert.deepEqual(
    syscallLine("202 0x1000 0xffffffff00000000 0x0 0x0 0x0 0x0 0x1 0x2\n"),
    {
      vector: false,
      address: 0x1000,
      count: 1,
    },
  );
  assert.equal(
    syscallLine("202 0x1000 0xffffffff00000080 0x0 0x0 0x0 0x0 0x1 0x2\n"),
    undefined,
  );
});

Deno.test("parseSyscall leaves out private waits, other futex ops, other calls, and threads outside a call", () => {
  assert.equal(
    syscallLine("202 0x1000 0x80 0x0 0x0 0x0 0x0 0x1 0x2\n"),
    undefined,
    "FUTEX_WAIT_PRIVATE",
  );
  assert.equal(
    syscallLine("202 0x1000 0x89 0x0 0x0 0x0 0x0 0x1 0x2\n"),
    undefined,
    "FUTEX_WAIT_BITSET_PRIVATE",
  );
  assert.equal(
    syscallLine("202 0x1000 0x1 0x7fffffff 0x0 0x0 0x0 0x1 0x2\n"),
    undefined,
    "FUTEX_WAKE",
  );
  assert.equal(
    syscallLine("0 0x3 0x7ffd0000 0x1000 0x0 0x0 0x0 0x1 0x2\n"),
    undefined,
    "read()",
  );
  assert.equal(
    syscallLine("2020 0x1000 0x0 0x0 0x0 0x0 0x0 0x1 0x2\n"),
    undefined,
    "a number that starts alike",
  );
  assert.equal(syscallLine("-1 0x7ffd5c3f8e80 0x7f3a5c9e2f5d\n"), undefined);
  assert.equal(syscallLine("running\n"), undefined);
  assert.equal(syscallLine(""), undefined);
});

Deno.test("parseSyscall reads futex_waitv's vector address and entry count, at most 128", () => {
  assert.deepEqual(
    syscallLine("449 0x55d0c0001040 0x3 0x0 0x7ffd0000 0x1 0x0 0x1 0x2\n"),
    {
      vector: true,
      address: 0x55d0c0001040,
      count: 3,
    },
  );
  assert.equal(
    syscallLine("449 0x55d0c0001040 0x400 0x0 0x0 0x1 0x0 0x1 0x2\n")?.count,
    128,
  );
});

Deno.test("parseSyscall reads only the given length of its buffer", () => {
  const b = bytes("202 0x1000 0x0 0x0 0x0 0x0 0x0 0x1 0x2\n");
  assert.equal(parseSyscall(b, 2, NUMBERS), undefined, "`20` is no futex call");
});

/** glibc's makedev() for 64-bit dev_t. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) |
    ((mi & ~0xffn) << 12n);
}

Deno.test("targetOf gives the device as maps prints it, and the inode as digits, even past 2^53", () => {
  const t = targetOf({ dev: makedev(259, 0x12345), ino: 2n ** 60n + 1n });
  assert.equal(t.major, 259);
  assert.equal(t.minor, 0x12345);
  assert.equal(new TextDecoder().decode(t.inode), "1152921504606846977");
  const small = targetOf({ dev: makedev(8, 1), ino: 123456n });
  assert.deepEqual([small.major, small.minor], [8, 1]);
});

const MAPS = [
  "55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]",
  "7f0000000000-7f0000001000 rw-s 00000000 08:01 123456                     /dev/shm/ltp_a",
  "7f0000001000-7f0000003000 r--s 00002000 08:01 123456                     /dev/shm/ltp_a",
  "7f0000003000-7f0000004000 rw-s 00000000 08:01 1234567                    /dev/shm/longer_inode",
  "7f0000004000-7f0000005000 rw-s 00000000 08:02 123456                     /other/device",
  "7f0000010000-7f0000020000 rw-p 00000000 00:00 0 ",
  "7f0000020000-7f0000030000 rw-p 00000000 00:00 0                          [anon:worker]",
  "7f0000030000-7f0000040000 rw-s 00000000 00:01 7                          /memfd:x (deleted)",
  "7f0000040000-7f0000050000 ---p 00000000 00:00 0 ",
  "7f0000050000-7f0000054000 r--p 00000000 00:00 0                          [vvar]",
  "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
  "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
].join("\n") + "\n";

function parsedMaps(last = Infinity): { mappings: Mappings; stopped: boolean } {
  const mappings = new Mappings();
  const b = bytes(MAPS);
  const stopped = mappings.parse(b, b.length, [
    targetOf({ dev: makedev(8, 1), ino: 123456n }),
  ], last);
  return { mappings, stopped };
}

Deno.test("Mappings turn an address in a mapping of the target into an offset in the file, with the mapping's offset", () => {
  const { mappings, stopped } = parsedMaps();
  assert.equal(stopped, false);
  assert.equal(mappings.mapsTargets, true);
  assert.deepEqual(mappings.fileOffset(0x7f0000000000 + 76), {
    file: 0,
    offset: 76,
  });
  assert.deepEqual(mappings.fileOffset(0x7f0000001000 + 8), {
    file: 0,
    offset: 0x2000 + 8,
  });
  assert.equal(
    mappings.fileOffset(0x7f0000003000 + 4),
    undefined,
    "an inode whose digits only start alike",
  );
  assert.equal(
    mappings.fileOffset(0x7f0000004000 + 4),
    undefined,
    "the same inode on another device",
  );
  assert.equal(mappings.fileOffset(0x55d0c0000010), undefined, "the heap");
});

Deno.test("Mappings know the readable private anonymous memory, adjacent mappings merged, and nothing else", () => {
  const { mappings } = parsedMaps();
  assert.equal(mappings.isAnonymous(0x55d0c0000010, 24), true, "[heap]");
  assert.equal(mappings.isAnonymous(0x7ffd00000100, 24), true, "[stack]");
  assert.equal(
    mappings.isAnonymous(0x7f000001fff0, 0x20),
    true,
    "across an unnamed and an [anon:] mapping",
  );
  assert.equal(
    mappings.isAnonymous(0x7ffd00020ff0, 0x20),
    false,
    "past the end of the stack",
  );
  assert.equal(
    mappings.isAnonymous(0x7f0000000000, 24),
    false,
    "a shared file mapping",
  );
  assert.equal(
    mappings.isAnonymous(0x7f0000030000, 24),
    false,
    "shared memory",
  );
  assert.equal(mappings.isAnonymous(0x7f0000040000, 24), false, "not readable");
  assert.equal(mappings.isAnonymous(0x7f0000050000, 24), false, "[vvar]");
});

Deno.test("Mappings stop at the first line past the last address needed, and clear() forgets all", () => {
  const { mappings, stopped } = parsedMaps(0x7f0000000fff);
  assert.equal(stopped, true);
  assert.deepEqual(mappings.fileOffset(0x7f0000000000), { file: 0, offset: 0 });
  assert.equal(
    mappings.fileOffset(0x7f0000001008),
    undefined,
    "a line past the last is not read",
  );
  mappings.clear();
  assert.equal(mappings.mapsTargets, false);
  assert.equal(mappings.fileOffset(0x7f0000000000), undefined);
  assert.equal(mappings.isAnonymous(0x55d0c0000010, 24), false);
});

Deno.test("parentOfStat reads the parent's pid after the last ) however the name is made, 0 when there is none", () => {
  const parent = (text: string) => parentOfStat(bytes(text), text.length);
  assert.equal(parent("1234 (sh) S 1200 1234 1234 0 -1 4194560 0\n"), 1200);
  assert.equal(parent("1234 (a) S 7 (b) S 1 1 1\n"), 1);
  assert.equal(parent("1234 (my shell) R 4321 1 1\n"), 4321);
  assert.equal(parent("1 (init) S 0 1 1\n"), 0);
  assert.equal(parent("1234 (cut"), 0);
});

Deno.test("isKernelThreadStat reads PF_KTHREAD in the flags, after the last ) however the name is made", () => {
  const stat = (text: string) => isKernelThreadStat(bytes(text), text.length);
  assert.equal(
    stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0\n"),
    true,
  );
  assert.equal(
    stat("1234 (deno) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0\n"),
    false,
  );
  assert.equal(
    stat("99 (x) S 1 1 1 0 -1 2129984) S 1 99 99 0 -1 4194560 0 0 0 0\n"),
    false,
    "a forged name",
  );
  assert.equal(
    stat("99 (a b) S 1 99 99 0 -1 2097152 0 0\n"),
    true,
    "a name with a space",
  );
});

Deno.test("commOf copies the name's bytes as they are, without the newline", () => {
  const raw = bytes("pw-wait\n");
  const comm = commOf(raw, raw.length);
  assert.deepEqual([...comm], [...bytes("pw-wait")]);
  raw[0] = 0x41;
  assert.equal(comm[0], 0x70, "a copy, not a view of the reused buffer");
  const hostile = Uint8Array.of(0x61, 0x1b, 0x5b, 0xff, 0x0a, 0x7a);
  assert.deepEqual(
    [...commOf(hostile, 5)],
    [0x61, 0x1b, 0x5b, 0xff],
    "not escaped: the caller does that",
  );
  assert.deepEqual(
    [...commOf(hostile, 4)],
    [0x61, 0x1b, 0x5b, 0xff],
    "no newline to drop",
  );
});

Deno.test("sharedWords gives each shared futex_waitv entry's address and leaves private ones out", () => {
  const vector = new DataView(new ArrayBuffer(3 * 24));
  const entry = (i: number, address: bigint, flags: number) => {
    vector.setBigUint64(i * 24 + 8, address, true);
    vector.setUint32(i * 24 + 16, flags, true);
  };
  entry(0, 0x7f0000000048n, 0x02);
  entry(1, 0x7f000000004cn, 0x02 | 128);
  entry(2, 0x100000004n, 0x02);
  assert.deepEqual(sharedWords(vector, 3 * 24), [0x7f0000000048, 0x100000004]);
  assert.deepEqual(
    sharedWords(vector, 24),
    [0x7f0000000048],
    "only `length` bytes are read",
  );
});
