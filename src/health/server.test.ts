import { afterEach, expect, test } from "bun:test";
import { HealthServer, MAX_BODY_BYTES } from "./server.ts";

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

test("hostile requests get their status and nothing else: 405, 404, 413 for a body, 431 for huge headers", async () => {
  srv = HealthServer.start({ host: "127.0.0.1", port: 0 }, { health: () => ({ ok: true, reason: "" }), status: () => ({}) });
  const base = `http://127.0.0.1:${srv.port}`;
  for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
    expect([method, (await fetch(`${base}/healthz`, { method })).status]).toEqual([method, 405]);
  }
  expect((await fetch(`${base}/${"a".repeat(4000)}`)).status).toBe(404);
  expect((await fetch(`${base}/healthz`, { method: "POST", body: "x".repeat(MAX_BODY_BYTES + 1) })).status).toBe(413);
  expect((await fetch(`${base}/healthz`, { headers: { "x-big": "x".repeat(1 << 20) } })).status).toBe(431);
  // And it still answers.
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
});
