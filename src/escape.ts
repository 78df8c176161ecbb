/**
 * Untrusted text made safe to print: another process's command name, a
 * file name found in a folder, a path from the environment. Control
 * characters (C0, DEL, C1), bidirectional controls, line separators and
 * invalid UTF-8 become visible escapes, so that nothing another user chose
 * can move the cursor, forge a line or reorder what the terminal shows.
 * @module
 */

// C0, DEL, C1; ALM; LRM, RLM; LS, PS; LRE..RLO; LRI..PDI; BOM; lone surrogates
const UNSAFE =
  // deno-lint-ignore no-control-regex
  /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function hex(code: number): string {
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

/** `text` with every unsafe character as `\xNN` or `\u{N}`, and `\` as `\\`, so the escapes are unambiguous. */
export function escapeText(text: string): string {
  return escapeControls(text.replace(/\\/g, "\\\\"));
}

/**
 * `text` with every unsafe character as `\xNN` or `\u{N}`, and `\` left as
 * it is: for a message that may hold pieces already escaped with
 * `escapeText()` (a region's bad magic, a folder's name), which a second
 * pass must not escape again, and raw ones, which it must.
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => hex(c.charCodeAt(0)));
}

// made on first use: a call that prints nothing (a wait, a wake) need not pay for a TextDecoder
let strictDecoder: TextDecoder | undefined;
const strict = () => strictDecoder ??= new TextDecoder("utf-8", { fatal: true });

/**
 * Bytes from the kernel (a name, /proc text) as a printable string: valid
 * UTF-8 is decoded and then escaped; each byte of an invalid sequence
 * becomes `\xNN`.
 */
export function escapeBytes(bytes: Uint8Array): string {
  try {
    return escapeText(strict().decode(bytes));
  } catch {
    // decode what is valid, byte by byte where it is not
    let out = "";
    for (let i = 0; i < bytes.length;) {
      const n = sequenceLength(bytes, i);
      if (n === 0) {
        out += hex(bytes[i]);
        i++;
      } else {
        out += escapeText(strict().decode(bytes.subarray(i, i + n)));
        i += n;
      }
    }
    return out;
  }
}

/** The length of the valid UTF-8 sequence at `i`, or 0 when there is none. */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i];
  const n = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
  if (n === 0 || i + n > bytes.length) return 0;
  try {
    strict().decode(bytes.subarray(i, i + n));
    return n;
  } catch {
    return 0;
  }
}

/**
 * JSON for a terminal: what JSON.stringify writes, with the characters it
 * leaves raw (DEL, C1, bidirectional controls, separators) as `\uXXXX`.
 * Still valid JSON, holding the same values.
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
