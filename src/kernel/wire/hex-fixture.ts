// Byte fixtures for the wire tests, written as annotated hex: one field per
// line, `// comment` after it, whitespace ignored; and what a decoder
// returned, as a value or as its refusal.
import { WireError } from "./error.ts";

export function hex(s: string): Uint8Array {
  const clean = s.replace(/\/\/[^\n]*/g, "").replace(/\s+/g, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`fixture is not whole hex bytes: ${clean}`);
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => parseInt(b, 16));
}

/** A decoder's value, or the test fails with the decoder's WireError. */
export function decoded<T>(x: T | WireError): T {
  if (x instanceof WireError) throw x;
  return x;
}

/** The message of a decoder's refusal; the test fails when it decoded instead. */
export function refusal(x: unknown): string {
  if (x instanceof WireError) return x.message;
  throw new Error(`decoded ${Bun.inspect(x).slice(0, 200)} where a refusal was expected`);
}
