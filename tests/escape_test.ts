/** src/escape.ts: what another process chose is printed as visible escapes, never raw. In-process, no I/O. */
import assert from "node:assert/strict";
import { escapeBytes, escapeControls, escapeText, safeJson } from "../src/escape.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

Deno.test("escapeText leaves printable text as it is, in any script", () => {
  for (
    const text of [
      "",
      "plain",
      "tst_checkpoint wait 10 0",
      "é ü ß",
      "日本語",
      "😀",
    ]
  ) {
    assert.equal(escapeText(text), text);
  }
});

Deno.test("escapeText turns C0, DEL and C1 controls into \\xNN", () => {
  assert.equal(escapeText("a\nb"), "a\\x0ab");
  assert.equal(escapeText("\x1b[31mred"), "\\x1b[31mred");
  assert.equal(escapeText("\0\t\r"), "\\x00\\x09\\x0d");
  assert.equal(escapeText("\x7f\x80\x85\x9f"), "\\x7f\\x80\\x85\\x9f");
});

Deno.test("escapeText turns bidirectional controls, separators, the BOM and lone surrogates into \\u{N}", () => {
  assert.equal(escapeText("\u202eabc"), "\\u{202e}abc");
  assert.equal(escapeText("\u061c\u200e\u200f"), "\\u{61c}\\u{200e}\\u{200f}");
  assert.equal(escapeText("\u2028\u2029"), "\\u{2028}\\u{2029}");
  assert.equal(escapeText("\u2066\u2069\ufeff"), "\\u{2066}\\u{2069}\\u{feff}");
  assert.equal(escapeText("a\ud800b"), "a\\u{d800}b");
  assert.equal(escapeText("a\udc00b"), "a\\u{dc00}b");
});

Deno.test("escapeText doubles a backslash, so that an escape it writes cannot be forged by the text", () => {
  assert.equal(escapeText("\\x0a"), "\\\\x0a");
  assert.notEqual(escapeText("\\x0a"), escapeText("\n"));
});

Deno.test("escapeControls escapes what escapeText does but a backslash, so that escaped text passes it unchanged", () => {
  assert.equal(escapeControls("a\nb\u202e"), "a\\x0ab\\u{202e}");
  assert.equal(escapeControls("back\\slash"), "back\\slash");
  for (const text of ["\x01\x1b[3", "\\x0a", "a\nb", "\u202e", "plain"]) {
    assert.equal(escapeControls(escapeText(text)), escapeText(text));
  }
});

Deno.test("escapeBytes decodes valid UTF-8 and then escapes it as escapeText does", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  for (const text of ["sleep", "é", "😀", "a\nb", "\u202e", "back\\slash"]) {
    assert.equal(escapeBytes(encode(text)), escapeText(text));
  }
});

Deno.test("escapeBytes writes each byte of an invalid sequence as \\xNN and decodes the valid parts around it", () => {
  assert.equal(escapeBytes(bytes(0xff)), "\\xff");
  assert.equal(escapeBytes(bytes(0x61, 0xff, 0xc3, 0xa9)), "a\\xffé");
  assert.equal(escapeBytes(bytes(0xe2, 0x82)), "\\xe2\\x82"); // a sequence cut short
  assert.equal(escapeBytes(bytes(0xc0, 0x80)), "\\xc0\\x80"); // an overlong NUL
  assert.equal(escapeBytes(bytes(0xed, 0xa0, 0x80)), "\\xed\\xa0\\x80"); // a surrogate's encoding
  assert.equal(
    escapeBytes(bytes(0xf4, 0x90, 0x80, 0x80)),
    "\\xf4\\x90\\x80\\x80",
  ); // beyond U+10FFFF
  assert.equal(escapeBytes(bytes(0xff, 0x1b, 0x41)), "\\xff\\x1bA");
});

Deno.test("safeJson is JSON.stringify with DEL, C1, bidirectional controls and separators as \\uXXXX", () => {
  const value = { name: "a\u202eb\x7f\x85\u2028", list: [1, "\n"], plain: "é" };
  const json = safeJson(value);
  assert.equal(
    json,
    '{"name":"a\\u202eb\\u007f\\u0085\\u2028","list":[1,"\\n"],"plain":"é"}',
  );
  assert.deepEqual(JSON.parse(json), value);
  assert.doesNotMatch(
    json,
    /[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/,
  );
});
