/** Small text helpers shared by the module, the CLI and the installer. */

/** "1 process" or "2 processes". */
export function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Bytes that need no quoting in a shell word. */
function isPlain(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    "_./-+,:=@%".includes(String.fromCharCode(b));
}

/** Whether `bytes` holds no control character, DEL or invalid UTF-8: text that single quotes carry as it is. */
function isPrintable(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b < 0x20 || b === 0x7f) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function utf8(text: string): Uint8Array {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return new TextEncoder().encode(text);
  }
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/**
 * `value` as one shell word: as it is when every byte is plain (unless
 * `always`); else single-quoted, which every POSIX shell reads back as it
 * was. Bytes that are not printable text (a file name another user chose)
 * are written `$'...'` instead, every other byte as `\xNN`, so that nothing
 * in them reaches a terminal raw: that form is for a person to paste into
 * bash, zsh or ksh, not for `sh` scripts.
 */
export function shellQuote(value: string | Uint8Array, always = false): string {
  const bytes = typeof value === "string" ? utf8(value) : value;
  if (!always && bytes.length > 0 && bytes.every(isPlain)) {
    return String.fromCharCode(...bytes);
  }
  if (typeof value === "string" || isPrintable(bytes)) {
    const text = typeof value === "string" ? value : new TextDecoder().decode(bytes);
    return `'${text.replaceAll("'", `'\\''`)}'`;
  }
  let out = "$'";
  for (const b of bytes) {
    out += b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c
      ? String.fromCharCode(b)
      : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return `${out}'`;
}
