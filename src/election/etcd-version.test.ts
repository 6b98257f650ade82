import { expect, test } from "bun:test";
import { etcdVersionWarning } from "./etcd-version.ts";

test.each([
  ["3.4.23", true],
  ["3.4.30", true],
  ["3.4.31", false],
  ["3.5.12", true],
  ["3.5.13", false],
  ["3.5.21", false],
  ["3.6.0", false],
  ["3.3.27", true],
  ["4.0.0", false],
  ["unknown", false],
] as const)("etcd %s: warning %p", (version, warns) => {
  const w = etcdVersionWarning(version);
  expect(w !== null).toBe(warns);
  if (w) expect(w).toContain("15247");
});
