/**
 * Deno's floor for `tst_checkpoint wait 10000 ID`: the least a Deno script does
 * to park on a checkpoint (load libc, open the region named by LTP_IPC_PATH,
 * map its page, one FUTEX_WAIT of 10 s on the word of ID in the ltp layout),
 * with none of the module. The bench runs it with the installed tool's own
 * `deno run` flags, so that the difference is the tool's own start-up.
 *
 *   park_floor.ts ID    exit 0 woken, 1 not (timed out or a failed call), 2 no region
 */
const libc = Deno.dlopen("libc.so.6", {
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
});
// x86_64's and aarch64's numbers of openat, mmap and futex
const NR = Deno.build.arch === "x86_64"
  ? { openat: 257n, mmap: 9n, futex: 202n }
  : { openat: 56n, mmap: 222n, futex: 98n };
const AT_FDCWD = -100n, O_RDONLY = 0n, PROT_READ = 1n, MAP_SHARED = 1n, FUTEX_WAIT = 0n;
const address = (buffer: BufferSource) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));

const name = new TextEncoder().encode(`${Deno.env.get("LTP_IPC_PATH")}\0`);
const fd = libc.symbols.syscall(NR.openat, AT_FDCWD, address(name), O_RDONLY, 0n, 0n, 0n);
const page = fd < 0n ? -1n : libc.symbols.syscall(NR.mmap, 0n, 4096n, PROT_READ, MAP_SHARED, fd, 0n);
if (page < 0n) Deno.exit(2);
const word = page + 76n + 4n * BigInt(Deno.args[0]);
const value = new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(word)!, 4))[0];
const timeout = new BigInt64Array([10n, 0n]);
const ret = libc.symbols.syscall(NR.futex, word, FUTEX_WAIT, BigInt(value), address(timeout), 0n, 0n);
Deno.exit(ret === 0n ? 0 : 1);
