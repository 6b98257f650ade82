// The etcd watch's lines as the grpc-gateway streams them (etcd 3.4.23).
import { expect, test } from "bun:test";
import { parseWatchLine } from "./etcd-watch.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

test("the confirmation, a PUT (no type) and a DELETE, each stamped with the line's arrival", () => {
  expect(parseWatchLine('{"result":{"header":{"cluster_id":"1","revision":"41"},"created":true}}', 5)).toEqual({ created: true, events: [] });
  const line = JSON.stringify({ result: { header: { revision: "43" }, events: [
    { kv: { key: b64("/vipd/drains/n1"), create_revision: "42", mod_revision: "42", version: "1", value: b64("{}") } },
    { type: "DELETE", kv: { key: b64("/vipd/handovers/192.0.2.100"), mod_revision: "43" } },
  ] } });
  expect(parseWatchLine(line, 7)).toEqual({ created: false, events: [
    { t: 7, type: "PUT", key: "/vipd/drains/n1", revision: 42 },
    { t: 7, type: "DELETE", key: "/vipd/handovers/192.0.2.100", revision: 43 },
  ] });
});

test("anything else is an error that says what it got", () => {
  expect(parseWatchLine("nope", 0)).toBeInstanceOf(Error);
  expect((parseWatchLine('{"error":{"grpc_code":14,"message":"no leader"}}', 0) as Error).message).toContain("without a result");
});
