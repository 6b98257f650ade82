import { afterEach, expect, test } from "bun:test";
import { HealthServer } from "./server.ts";

let srv: HealthServer | null = null;
afterEach(() => {
  srv?.stop();
  srv = null;
});

test("healthz is 200 ok when healthy and 503 with the reason otherwise", async () => {
  let report = { ok: true, reason: "" };
  srv = HealthServer.start({ host: "127.0.0.1", port: 0 }, { health: () => report, status: () => ({ node: "cp-1", vips: [] }) });
  const base = `http://127.0.0.1:${srv.port}`;
  let r = await fetch(`${base}/healthz`);
  expect([r.status, await r.text()]).toEqual([200, "ok\n"]);
  report = { ok: false, reason: "etcd unreachable: connection refused" };
  r = await fetch(`${base}/healthz`);
  expect([r.status, await r.text()]).toEqual([503, "etcd unreachable: connection refused\n"]);
  r = await fetch(`${base}/status`);
  expect(await r.json()).toEqual({ node: "cp-1", vips: [] });
  expect((await fetch(`${base}/nope`)).status).toBe(404);
  expect((await fetch(`${base}/metrics`)).status).toBe(404);
  expect((await fetch(`${base}/healthz`, { method: "POST" })).status).toBe(405);
});

test("a taken port is reported with the address", () => {
  srv = HealthServer.start({ host: "127.0.0.1", port: 0 }, { health: () => ({ ok: true, reason: "" }), status: () => ({}) });
  expect(() => HealthServer.start({ host: "127.0.0.1", port: srv!.port }, { health: () => ({ ok: true, reason: "" }), status: () => ({}) })).toThrow(
    `EADDRINUSE: listening for health checks on 127.0.0.1:${srv.port}`,
  );
});
