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
