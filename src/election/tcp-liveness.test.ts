// The kernel's view of our TCP connections: /proc/net/tcp{,6} lines as the
// kernel prints them (net/ipv4/tcp_ipv4.c get_tcp4_sock), and one live check
// against a real socket of this process.
import { expect, test } from "bun:test";
import { decodeProcAddress, endpointAddress, judgeTcp, parseProcTcp, tcpLiveness } from "./tcp-liveness.ts";

test.each([
  ["0100007F:0953", "127.0.0.1", 2387],
  ["0B0200C0:094B", "192.0.2.11", 2379],
  // ::1, each 32-bit word little-endian
  ["00000000000000000000000001000000:094B", "::1", 2379],
  // ::ffff:192.0.2.11, an IPv4 peer on an IPv6 socket
  ["0000000000000000FFFF00000B0200C0:094B", "192.0.2.11", 2379],
  // 2001:db8::11
  ["B80D0120000000000000000011000000:094B", "2001:db8::11", 2379],
] as const)("decodes %s as %s:%d", (hex, host, port) => {
  expect(decodeProcAddress(hex)).toEqual({ host, port });
});

test("malformed addresses decode to null", () => {
  for (const bad of ["", "0100007F", "0100007F:95", "XYZ0007F:0953", "0100007F0:0953"]) expect(decodeProcAddress(bad)).toBeNull();
});

const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  // listening on 127.0.0.1:2379: not established
  "   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0",
  // established to 127.0.0.1:2379, nothing unacknowledged (a frozen etcd still ACKs)
  "   1: 0100007F:C350 0100007F:094B 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1",
  // established to 192.0.2.11:2379, retransmit timer (tr 01), 3 timeouts without an ACK
  "   2: 0A0200C0:C351 0B0200C0:094B 01 0000005A:00000000 01:000000C8 00000003     0        0 1003 2 0000000000000000 800 4 30 10 -1",
  // established to 192.0.2.12:2379, retransmit timer armed but no timeout fired yet
  "   3: 0A0200C0:C352 0C0200C0:094B 01 0000005A:00000000 01:00000014 00000000     0        0 1004 2 0000000000000000 20 4 30 10 -1",
  "garbage",
].join("\n");

test("parses the kernel's socket lines, skipping the header and garbage", () => {
  const s = parseProcTcp(TCP);
  expect(s.map((x) => [x.remoteHost, x.remotePort, x.established, x.retransmitting, x.inode])).toEqual([
    ["0.0.0.0", 0, false, false, "1001"],
    ["127.0.0.1", 2379, true, false, "1002"],
    ["192.0.2.11", 2379, true, true, "1003"],
    ["192.0.2.12", 2379, true, false, "1004"],
  ]);
});

test("judges only our own established connections to the endpoint", () => {
  const s = parseProcTcp(TCP);
  const all = new Set(["1001", "1002", "1003", "1004"]);
  expect(judgeTcp(s, all, "127.0.0.1", 2379)).toBe("alive");
  expect(judgeTcp(s, all, "192.0.2.11", 2379)).toBe("dead");
  expect(judgeTcp(s, all, "192.0.2.12", 2379)).toBe("alive");
  // Not ours: nothing known.
  expect(judgeTcp(s, new Set(["1002"]), "192.0.2.11", 2379)).toBe("unknown");
  expect(judgeTcp(s, all, "192.0.2.13", 2379)).toBe("unknown");
  // A name: every connection to the port counts, and one of them is dead.
  expect(judgeTcp(s, all, "etcd-1.example", 2379)).toBe("dead");
});

test("endpoints as vipd takes them", () => {
  expect(endpointAddress("http://127.0.0.1:2379")).toEqual({ host: "127.0.0.1", port: 2379 });
  expect(endpointAddress("https://[2001:db8::11]:2381")).toEqual({ host: "2001:db8::11", port: 2381 });
  expect(endpointAddress("etcd-1:2379")).toEqual({ host: "etcd-1", port: 2379 });
  expect(endpointAddress("https://etcd-1")).toEqual({ host: "etcd-1", port: 2379 });
});

test("a real connection of this process to a live listener is alive; no connection is unknown", async () => {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const endpoint = `http://127.0.0.1:${server.port}`;
  expect(tcpLiveness(endpoint)).toBe("unknown");
  const client = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } });
  client.write("x");
  await Bun.sleep(20);
  expect(tcpLiveness(endpoint)).toBe("alive");
  client.end();
  server.stop(true);
});
