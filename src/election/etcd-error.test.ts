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
  ["4 DEADLINE_EXCEEDED: Deadline exceeded", "etcd at https://192.0.2.10:2379: etcd did not answer in time (Deadline exceeded)"],
  ["something new", "etcd at https://192.0.2.10:2379: something new"],
])("%s", (raw, want) => {
  expect(describeEtcdError(new Error(raw), EP)).toBe(want);
});
