// `vipd status` rendering from a report alone; test/cli/status.test.ts reads
// real etcd.
import { expect, test } from "bun:test";
import { renderStatusJson, renderStatusTable, type StatusReport } from "./status.ts";

const agent = (node: string, version: string | null, layout: string | null) => ({
  node, host: node, pid: 800, startedAt: "2026-11-26T09:12:03.114Z", holdMs: 2500, version, layout,
});

const report = (agents: StatusReport["agents"]): StatusReport => ({
  revision: 1187,
  vips: [{ vip: "192.0.2.100", holder: { node: "cp-2", createRevision: 1043, key: "/vipd/elections/192.0.2.100/cp-2" }, claimedBy: ["cp-2"], waiting: [], handover: null }],
  agents,
  drains: [],
});

test("each agent's version and layout are columns; a record vipd did not write shows ?", () => {
  const lines = renderStatusTable(report([agent("cp-1", "0.3.0", "1.1"), agent("cp-2", "0.3.0", "1.1"), agent("cp-x", null, null)])).trimEnd().split("\n");
  const header = lines.findIndex((l) => l.startsWith("AGENT"));
  expect(lines[header]).toMatch(/^AGENT +HOST +PID +HOLD +VERSION +LAYOUT +STARTED$/);
  expect(lines[header + 1]).toMatch(/^cp-1 +cp-1 +800 +2500 ms +0\.3\.0 +1\.1 +2026-11-26T09:12:03\.114Z$/);
  expect(lines[header + 3]).toMatch(/^cp-x +cp-x +800 +2500 ms +\? +\? +2026/);
  // One version (and an unknown one): no upgrade under way.
  expect(lines.some((l) => l.includes("versions"))).toBe(false);
  const col = lines[header]!.indexOf("LAYOUT");
  expect(lines[header + 1]!.slice(col, col + 3)).toBe("1.1");
});

test("agents of two versions side by side: both are listed, and the table says an upgrade is under way", () => {
  const mixed = report([agent("cp-1", "0.3.0", "1.1"), agent("cp-2", "0.2.0", "1.0"), agent("cp-3", "0.2.0", "1.0")]);
  const text = renderStatusTable(mixed);
  expect(text).toMatch(/^cp-2 +cp-2 +800 +2500 ms +0\.2\.0 +1\.0 /m);
  expect(text).toMatch(/^cp-1 +cp-1 +800 +2500 ms +0\.3\.0 +1\.1 /m);
  expect(text).toContain("agents run 2 versions (0.2.0, 0.3.0): an upgrade is under way, or was left half done\n");
  const json = JSON.parse(renderStatusJson(mixed)) as StatusReport;
  expect(json.agents.map((a) => [a.node, a.version, a.layout])).toEqual([["cp-1", "0.3.0", "1.1"], ["cp-2", "0.2.0", "1.0"], ["cp-3", "0.2.0", "1.0"]]);
});
