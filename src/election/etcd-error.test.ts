import { expect, test } from "bun:test";
import { describeEtcdError } from "./etcd-error.ts";

const EP = ["https://192.0.2.10:2379"];

test.each([
  [
    "14 UNAVAILABLE: No connection established. Last error: error:10000412:SSL routines:OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE (2026-11-26T08:26:47.022Z). Resolution note: ",
    "etcd at https://192.0.2.10:2379: etcd rejected our client certificate (or we sent none): give --etcd-cert and --etcd-key signed by etcd's CA (No connection established. Last error: SSLV3_ALERT_BAD_CERTIFICATE.)",
  ],
  [
    "14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 192.0.2.10:2379 (2026-11-26T08:26:47.022Z)",
    "etcd at https://192.0.2.10:2379: connection refused: is etcd running and listening there? (No connection established. Last error: connect ECONNREFUSED 192.0.2.10:2379)",
  ],
  [
    // Bun, when the server's chain does not lead to our CA.
    "14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ",
    "etcd at https://192.0.2.10:2379: etcd's certificate is not signed by the CA we trust: check --etcd-ca (No connection established. Last error: Error: unable to verify the first certificate.)",
  ],
  ["4 DEADLINE_EXCEEDED: Deadline exceeded", "etcd at https://192.0.2.10:2379: etcd did not answer in time (Deadline exceeded)"],
  ["something new", "etcd at https://192.0.2.10:2379: something new"],
])("%s", (raw, want) => {
  expect(describeEtcdError(new Error(raw), EP)).toBe(want);
});

// A certificate that does not name what it was checked against (certificate-names.ts's
// checkCertificateName), among several endpoints.
const THREE = ["https://192.0.2.10:2379", "https://192.0.2.11:2379", "https://[2001:db8::c]:2379"];
test.each([
  [
    "another member's certificate at an IP endpoint: said at that endpoint",
    "14 UNAVAILABLE: No connection established. Last error: Error: server certificate is for n2, localhost, 192.0.2.12, 127.0.0.1, ::1, not 192.0.2.11. Resolution note: ",
    "etcd at https://192.0.2.11:2379: its certificate is for n2, localhost, 192.0.2.12, 127.0.0.1, ::1, not 192.0.2.11: another member answered there, or its certificate was issued without this address: give the endpoints by the addresses or names their certificates carry",
  ],
  [
    "an IPv6 endpoint",
    "14 UNAVAILABLE: No connection established. Last error: Error: server certificate is for 192.0.2.12, not 2001:db8::c. Resolution note: ",
    "etcd at https://[2001:db8::c]:2379: its certificate is for 192.0.2.12, not 2001:db8::c: another member answered there, or its certificate was issued without this address: give the endpoints by the addresses or names their certificates carry",
  ],
  [
    "a name no endpoint has: --etcd-server-name",
    "14 UNAVAILABLE: No connection established. Last error: Error: server certificate is for n1, localhost, 192.0.2.10, not n9. Resolution note: ",
    "etcd at https://192.0.2.10:2379, https://192.0.2.11:2379, https://[2001:db8::c]:2379: its certificate is for n1, localhost, 192.0.2.10, not n9: give --etcd-server-name a DNS name that every member's certificate carries",
  ],
])("%s", (_, raw, want) => {
  expect(describeEtcdError(new Error(raw), THREE)).toBe(want);
});

test("a hostname endpoint whose certificate lacks it", () => {
  const raw = "14 UNAVAILABLE: No connection established. Last error: Error: server certificate is for etcd-2.example.com, not etcd-1.example.com. Resolution note: ";
  expect(describeEtcdError(new Error(raw), ["https://etcd-1.example.com:2379"])).toBe(
    "etcd at https://etcd-1.example.com:2379: its certificate is for etcd-2.example.com, not etcd-1.example.com: another member answered there, or its certificate was issued without this name: give the endpoints by the addresses or names their certificates carry",
  );
});
