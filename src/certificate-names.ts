// Which names a TLS server certificate carries, and a check against one name
// whose refusal lists them: "server certificate is for cp-1, kubernetes,
// 10.96.0.1, not 127.0.0.1". Both TLS clients of vipd use it (etcd, and the
// kube-apiserver gate): an operator reading the refusal sees at once which
// name to configure.
import { checkServerIdentity, type PeerCertificate } from "node:tls";

/** The certificate's subject alternative names ("::1", "localhost"), or its CN when it has none. */
export function certificateNames(cert: PeerCertificate): string {
  const sans = (cert.subjectaltname ?? "").split(/,\s*/).filter((s) => s !== "").map(altName);
  return sans.length > 0 ? sans.join(", ") : `CN=${cert.subject?.CN ?? ""} and no subject alternative names`;
}

/** tls.checkServerIdentity against `expect`, with a refusal that names what the certificate is for. */
export function checkCertificateName(expect: string, cert: PeerCertificate): Error | undefined {
  const err = checkServerIdentity(expect, cert);
  if (!err) return undefined;
  return Object.assign(new Error(`server certificate is for ${certificateNames(cert)}, not ${expect}`, { cause: err }), {
    code: (err as NodeJS.ErrnoException).code ?? "ERR_TLS_CERT_ALTNAME_INVALID",
  });
}

/** "IP Address:0:0:0:0:0:0:0:1" → "::1", "DNS:localhost" → "localhost"; other kinds as they are. */
function altName(san: string): string {
  if (san.startsWith("DNS:")) return san.slice(4);
  if (!san.startsWith("IP Address:")) return san;
  const ip = san.slice(11);
  return ip.includes(":") ? new URL(`http://[${ip}]`).hostname.slice(1, -1) : ip;
}
