import { expect, test } from "bun:test";
import { closeSync, fstatSync, openSync, statSync } from "node:fs";
import { isJournalStream, PRIORITY, withPriority } from "./journal-stream.ts";

const fd = { dev: 8n, ino: 1234567n };

test("JOURNAL_STREAM matches only the stream it names, by device and inode", () => {
  expect(isJournalStream("8:1234567", fd)).toBe(true);
  expect(isJournalStream("8:1234568", fd)).toBe(false);
  expect(isJournalStream("9:1234567", fd)).toBe(false);
  // Inherited by a program whose stderr went elsewhere, or not set at all.
  expect(isJournalStream(undefined, fd)).toBe(false);
  expect(isJournalStream("", fd)).toBe(false);
  for (const bad of ["8", "8:", ":1234567", "8:1234567x", " 8:1234567", "0x8:1234567", "-8:1234567"]) expect([bad, isJournalStream(bad, fd)]).toEqual([bad, false]);
});

test("device and inode numbers beyond 2^53 are compared exactly", () => {
  const big = { dev: 2n ** 63n + 5n, ino: 2n ** 64n - 1n };
  expect(isJournalStream(`${2n ** 63n + 5n}:${2n ** 64n - 1n}`, big)).toBe(true);
  expect(isJournalStream(`${2n ** 63n + 4n}:${2n ** 64n - 1n}`, big)).toBe(false);
});

test("a real descriptor: its own fstat identity matches, another file's does not", () => {
  const a = openSync("/proc/self/stat", "r");
  try {
    const s = fstatSync(a, { bigint: true });
    expect(isJournalStream(`${s.dev}:${s.ino}`, s)).toBe(true);
    const other = statSync("/proc/self/status", { bigint: true });
    expect(isJournalStream(`${other.dev}:${other.ino}`, s)).toBe(false);
  } finally {
    closeSync(a);
  }
});

test("priorities are sd-daemon.h's", () => {
  // SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>", SD_DEBUG "<7>".
  expect(PRIORITY).toEqual({ error: 3, warn: 4, info: 6, debug: 7 });
});

test("every line gets the prefix, a trailing newline stays one", () => {
  expect(withPriority("warn", "released VIP\n")).toBe("<4>released VIP\n");
  expect(withPriority("error", "first\n  at second\n")).toBe("<3>first\n<3>  at second\n");
  expect(withPriority("debug", "no newline")).toBe("<7>no newline");
  expect(withPriority("info", "\n")).toBe("<6>\n");
});
