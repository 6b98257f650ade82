// Which name an etcd server certificate is checked against, and how a refusal
// reads. Certificates are given as grpc-js hands them to the check on Bun
// (tls PeerCertificate: subjectaltname as OpenSSL prints it).
import { expect, test } from "bun:test";
import type { PeerCertificate } from "node:tls";
import { checkCertificateName } from "../../src/certificate-names.ts";
import { serverIdentity } from "../../src/election/connection.ts";

const cert = (subjectaltname: string | undefined, CN = "etcd") => ({ subject: { CN }, subjectaltname }) as unknown as PeerCertificate;
/** kubeadm's etcd/server.crt for node n1 at 192.0.2.10 (kubeadm sorts the DNS names). */
const KUBEADM_N1 = cert("DNS:localhost, DNS:n1, IP Address:192.0.2.10, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
const IP_ONLY = cert("IP Address:192.0.2.11");

test.each([
  // host, tlsServerName, expected name, SNI sent (Bun refuses an IP there)
  ["192.0.2.11", undefined, "192.0.2.11", "localhost"],
  ["::1", undefined, "::1", "localhost"],
  ["etcd-1.example.com", undefined, "etcd-1.example.com", undefined],
  ["192.0.2.11", "n1", "n1", "n1"],
  ["etcd-1.example.com", "etcd-1.example.com", "etcd-1.example.com", undefined],
  ["etcd-1.example.com", "n1", "n1", "n1"],
] as const)("endpoint %s with server name %p: checked against %s, SNI %p", (host, name, expectName, sni) => {
  expect(serverIdentity(host, name)).toEqual({ expect: expectName, sni });
});

test.each([
  ["192.0.2.10", KUBEADM_N1],
  ["127.0.0.1", KUBEADM_N1],
  ["::1", KUBEADM_N1],
  ["n1", KUBEADM_N1],
  ["localhost", KUBEADM_N1],
  ["192.0.2.11", IP_ONLY],
])("%s is accepted", (name, c) => {
  expect(checkCertificateName(name, c)).toBeUndefined();
});

test.each([
  ["another node's kubeadm certificate", "192.0.2.11", KUBEADM_N1,
    "server certificate is for localhost, n1, 192.0.2.10, 127.0.0.1, ::1, not 192.0.2.11"],
  ["another node's name", "n2", KUBEADM_N1, "server certificate is for localhost, n1, 192.0.2.10, 127.0.0.1, ::1, not n2"],
  ["an IP the certificate lacks", "127.0.0.1", IP_ONLY, "server certificate is for 192.0.2.11, not 127.0.0.1"],
  ["a name against IP SANs only", "localhost", IP_ONLY, "server certificate is for 192.0.2.11, not localhost"],
  ["no SANs: the CN is not an address", "192.0.2.11", cert(undefined),
    "server certificate is for CN=etcd and no subject alternative names, not 192.0.2.11"],
])("refused: %s", (_, name, c, message) => {
  const err = checkCertificateName(name, c);
  expect(err?.message).toBe(message);
  expect((err as NodeJS.ErrnoException).code).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
});
