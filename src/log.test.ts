import { expect, test } from "bun:test";
import { createLogger, reconfigurableLogger } from "./log.ts";

test("json format writes one object per line with the fields flattened", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", level: "info", write: (l) => lines.push(l) });
  log.info("acquired VIP", { vip: "192.0.2.15", node: "cp-1", reason: "predecessor cp-2 left" });
  log.debug("hidden at info level");
  expect(lines).toHaveLength(1);
  expect(lines[0]!.endsWith("\n")).toBe(true);
  const o = JSON.parse(lines[0]!);
  expect(o).toMatchObject({ level: "info", msg: "acquired VIP", vip: "192.0.2.15", node: "cp-1", reason: "predecessor cp-2 left" });
  expect(Number.isNaN(Date.parse(o.time))).toBe(false);
});

test("level silent writes nothing", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", level: "silent", write: (l) => lines.push(l) });
  log.error("x");
  expect(lines).toEqual([]);
});

test("a reconfigurable logger takes a new level at once, through the same object", () => {
  const lines: string[] = [];
  const write = (l: string) => void lines.push(l);
  const log = reconfigurableLogger({ format: "json", level: "info", write });
  log.debug("hidden");
  log.reconfigure({ format: "json", level: "debug", write });
  log.debug("shown");
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["shown"]);
});

test("into the journal, each JSON line starts with its priority and is the same object after it", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", level: "debug", write: (l) => lines.push(l), priorities: true });
  log.error("e");
  log.warn("released VIP", { vip: "192.0.2.15", reason: "no committed heartbeat" });
  log.info("i");
  log.debug("d");
  expect(lines.map((l) => l.slice(0, 3))).toEqual(["<3>", "<4>", "<6>", "<7>"]);
  const warn = JSON.parse(lines[1]!.slice(3));
  expect(warn).toMatchObject({ level: "warn", msg: "released VIP", vip: "192.0.2.15", reason: "no committed heartbeat" });
  expect(lines.every((l) => l.endsWith("}\n") && l.indexOf("\n") === l.length - 1)).toBe(true);
});

test("without priorities, nothing is prefixed", () => {
  const lines: string[] = [];
  createLogger({ format: "json", level: "info", write: (l) => lines.push(l) }).warn("w");
  expect(lines[0]!.startsWith("{")).toBe(true);
});

test("the readable format into the journal: every line carries the priority of its entry, no colours", () => {
  const out: string[] = [];
  const log = createLogger({ format: "pretty", level: "debug", write: (l) => out.push(l), priorities: true });
  log.warn("released VIP", { vip: "192.0.2.15", reason: "shutting down" });
  log.info("acquired VIP", { vip: "192.0.2.15" });
  log.error("two\nlines");
  log.debug("tick detail");
  const lines = out.join("").split("\n").filter(Boolean);
  expect(lines.every((l) => /^<[3467]>/.test(l))).toBe(true);
  expect(lines.find((l) => l.includes("released VIP"))).toStartWith("<4>");
  expect(lines.find((l) => l.includes("released VIP"))).toContain('reason="shutting down"');
  expect(lines.find((l) => l.includes("acquired VIP"))).toStartWith("<6>");
  expect(lines.find((l) => l.includes("two"))).toStartWith("<3>");
  expect(lines.find((l) => l.includes("lines"))).toStartWith("<3>");
  expect(lines.find((l) => l.includes("tick detail"))).toStartWith("<7>");
  expect(out.join("")).not.toContain("\u001b[");
});

test("a reconfigured logger keeps writing priorities when asked to", () => {
  const lines: string[] = [];
  const write = (l: string) => void lines.push(l);
  const log = reconfigurableLogger({ format: "json", level: "info", write, priorities: true });
  log.reconfigure({ format: "json", level: "debug", write, priorities: true });
  log.debug("shown");
  expect(lines[0]).toStartWith("<7>{");
});
