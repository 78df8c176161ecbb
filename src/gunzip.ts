/**
 * gzip decompression, synchronous and in plain TypeScript: the kernel config
 * is read on the path of a synchronous wait, where DecompressionStream (async)
 * cannot serve, and node:zlib first loads Deno's Node layer (several times
 * the cost of inflating a kernel config here).
 * @module
 */

/**
 * The bytes of the first member of a gzip file (RFC 1952 around RFC 1951).
 * @throws {Deno.errors.InvalidData} When `data` is not gzip, is cut short or is malformed, or inflates beyond `limit` bytes.
 */
export function gunzip(data: Uint8Array, limit = 64 << 20): Uint8Array {
  if (data.length < 18 || data[0] !== 0x1f || data[1] !== 0x8b || data[2] !== 8) {
    throw new Deno.errors.InvalidData("not gzip data");
  }
  const flags = data[3];
  let at = 10;
  if (flags & 4) at += 2 + (data[at] | (data[at + 1] << 8));
  // a name and a comment, each NUL-terminated
  if (flags & 8) { while (at < data.length && data[at++] !== 0); }
  if (flags & 16) { while (at < data.length && data[at++] !== 0); }
  if (flags & 2) at += 2;
  const size = (data[data.length - 4] | (data[data.length - 3] << 8) | (data[data.length - 2] << 16) |
    (data[data.length - 1] << 24)) >>> 0;
  return inflate(data, at, Math.min(Math.max(size, 1024), limit), limit);
}

// deno-fmt-ignore
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
// deno-fmt-ignore
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A Huffman code as a lookup table indexed by the next `bits` input bits: symbol << 4 | code length. */
interface Code {
  table: Int32Array;
  bits: number;
}

function code(lengths: Uint8Array, n: number): Code {
  const counts = new Uint16Array(16);
  let bits = 1;
  for (let i = 0; i < n; i++) {
    counts[lengths[i]]++;
    if (lengths[i] > bits) bits = lengths[i];
  }
  counts[0] = 0;
  const next = new Uint16Array(16);
  for (let len = 1, c = 0; len < 16; len++) {
    c = (c + counts[len - 1]) << 1;
    next[len] = c;
  }
  const table = new Int32Array(1 << bits);
  for (let sym = 0; sym < n; sym++) {
    const len = lengths[sym];
    if (!len) continue;
    let c = next[len]++;
    let reversed = 0;
    for (let i = 0; i < len; i++, c >>= 1) reversed = (reversed << 1) | (c & 1);
    for (let i = reversed; i < table.length; i += 1 << len) table[i] = (sym << 4) | len;
  }
  return { table, bits };
}

function inflate(data: Uint8Array, start: number, guess: number, limit: number): Uint8Array {
  let out = new Uint8Array(guess);
  let n = 0;
  let at = start;
  let bits = 0;
  let count = 0;
  const need = (k: number) => {
    while (count < k) {
      if (at >= data.length) throw new Deno.errors.InvalidData("gzip: truncated");
      bits |= data[at++] << count;
      count += 8;
    }
  };
  const take = (k: number) => {
    need(k);
    const v = bits & ((1 << k) - 1);
    bits >>>= k;
    count -= k;
    return v;
  };
  const decode = (c: Code) => {
    while (count < c.bits) {
      // past the end, zeros: a code that needed them is caught below
      bits |= (at < data.length ? data[at] : 0) << count;
      at++;
      count += 8;
    }
    const entry = c.table[bits & ((1 << c.bits) - 1)];
    const len = entry & 15;
    if (len === 0) throw new Deno.errors.InvalidData("gzip: bad code");
    bits >>>= len;
    count -= len;
    if (at - (count >> 3) > data.length) throw new Deno.errors.InvalidData("gzip: truncated");
    return entry >> 4;
  };
  const room = (k: number) => {
    if (n + k <= out.length) return;
    if (n + k > limit) throw new Deno.errors.InvalidData("gzip: too large");
    const bigger = new Uint8Array(Math.min(limit, Math.max(out.length * 2, n + k)));
    bigger.set(out.subarray(0, n));
    out = bigger;
  };
  let fixedLit: Code | undefined, fixedDist: Code | undefined;
  for (let last = 0; !last;) {
    last = take(1);
    const type = take(2);
    if (type === 0) {
      // to the next byte boundary, giving back whole bytes read ahead
      at -= count >> 3;
      bits = 0;
      count = 0;
      if (at + 4 > data.length) throw new Deno.errors.InvalidData("gzip: truncated");
      const len = data[at] | (data[at + 1] << 8);
      at += 4;
      if (at + len > data.length) throw new Deno.errors.InvalidData("gzip: truncated");
      room(len);
      out.set(data.subarray(at, at + len), n);
      n += len;
      at += len;
      continue;
    }
    let lit: Code, dist: Code;
    if (type === 1) {
      if (!fixedLit) {
        const l = new Uint8Array(288);
        l.fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288);
        fixedLit = code(l, 288);
        fixedDist = code(new Uint8Array(30).fill(5), 30);
      }
      lit = fixedLit;
      dist = fixedDist!;
    } else if (type === 2) {
      const nlen = take(5) + 257, ndist = take(5) + 1, ncode = take(4) + 4;
      const lengths = new Uint8Array(320);
      for (let i = 0; i < ncode; i++) lengths[ORDER[i]] = take(3);
      const lenCode = code(lengths, 19);
      lengths.fill(0);
      for (let i = 0; i < nlen + ndist;) {
        const sym = decode(lenCode);
        if (sym < 16) lengths[i++] = sym;
        else {
          let repeat = 0, value = 0;
          if (sym === 16) {
            if (i === 0) throw new Deno.errors.InvalidData("gzip: bad lengths");
            value = lengths[i - 1];
            repeat = 3 + take(2);
          } else repeat = sym === 17 ? 3 + take(3) : 11 + take(7);
          if (i + repeat > nlen + ndist) throw new Deno.errors.InvalidData("gzip: bad lengths");
          while (repeat--) lengths[i++] = value;
        }
      }
      lit = code(lengths, nlen);
      dist = code(lengths.subarray(nlen), ndist);
    } else throw new Deno.errors.InvalidData("gzip: bad block type");
    for (;;) {
      const sym = decode(lit);
      if (sym < 256) {
        room(1);
        out[n++] = sym;
      } else if (sym === 256) break;
      else {
        const s = sym - 257;
        if (s >= 29) throw new Deno.errors.InvalidData("gzip: bad length");
        const len = LENGTH_BASE[s] + take(LENGTH_EXTRA[s]);
        const d = decode(dist);
        if (d >= 30) throw new Deno.errors.InvalidData("gzip: bad distance");
        const back = DIST_BASE[d] + take(DIST_EXTRA[d]);
        if (back > n) throw new Deno.errors.InvalidData("gzip: bad distance");
        room(len);
        for (let i = 0; i < len; i++, n++) out[n] = out[n - back];
      }
    }
  }
  if (at - (count >> 3) > data.length) throw new Deno.errors.InvalidData("gzip: truncated");
  return out.subarray(0, n);
}
