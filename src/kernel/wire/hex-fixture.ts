// Byte fixtures for the wire tests, written as annotated hex: one field per
// line, `// comment` after it, whitespace ignored.

export function hex(s: string): Uint8Array {
  const clean = s.replace(/\/\/[^\n]*/g, "").replace(/\s+/g, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`fixture is not whole hex bytes: ${clean}`);
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => parseInt(b, 16));
}
