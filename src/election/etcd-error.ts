// etcd failures as sentences an operator can act on. grpc-js reports every
// problem as "14 UNAVAILABLE: No connection established. Last error: ..."
// with OpenSSL codes and timestamps; the cause that matters is buried inside.
import { isIP } from "node:net";

const RULES: [RegExp, string][] = [
  [/BAD_CERTIFICATE|CERTIFICATE_REQUIRED|certificate required/i,
    "etcd rejected our client certificate (or we sent none): give --etcd-cert and --etcd-key signed by etcd's CA"],
  [/CERTIFICATE_VERIFY_FAILED|unable to get local issuer|unable to verify the first certificate|self[- ]signed certificate|unknown ca|UNKNOWN_CA/i,
    "etcd's certificate is not signed by the CA we trust: check --etcd-ca"],
  [/WRONG_VERSION_NUMBER|packet length too long|http2.*TLS|plaintext/i,
    "TLS mismatch: the endpoint speaks plain HTTP or TLS other than its URL says (http:// vs https://)"],
  [/ECONNREFUSED|Connection refused/i, "connection refused: is etcd running and listening there?"],
  [/EHOSTUNREACH|ENETUNREACH|No route to host/i, "no route to etcd"],
  [/DEADLINE_EXCEEDED|Deadline exceeded|ETIMEDOUT/i, "etcd did not answer in time"],
  [/no leader|NOLEADER|leader changed/i, "etcd has no leader (quorum lost?)"],
  [/permission denied|PERMISSION_DENIED/i, "etcd denied the request (RBAC): the certificate's user needs read/write on vipd's prefix"],
];

/** certificate-names.ts's checkCertificateName: "server certificate is for A, B, not C". */
const WRONG_NAME = /server certificate is for (.+?), not ([^\s()]+?)\.?(?=\s|\(|$)/;

/** "https://[::1]:2379" → "::1", as the identity check names it. */
function hostOf(endpoint: string): string {
  try {
    return new URL(endpoint).hostname.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return endpoint;
  }
}

/**
 * A certificate that does not name what it was checked against: the endpoint
 * (said at that endpoint alone), or --etcd-server-name when none matches.
 */
function wrongName(raw: string, endpoints: readonly string[]): string | undefined {
  const m = WRONG_NAME.exec(raw);
  if (!m) return undefined;
  const [, names, expected] = m;
  const at = endpoints.filter((e) => hostOf(e) === expected);
  const advice = at.length > 0
    ? `another member answered there, or its certificate was issued without this ${isIP(expected!) ? "address" : "name"}: ` +
      "give the endpoints by the addresses or names their certificates carry"
    : "give --etcd-server-name a DNS name that every member's certificate carries";
  return `etcd at ${(at.length > 0 ? at : endpoints).join(", ")}: its certificate is for ${names}, not ${expected}: ${advice}`;
}

/**
 * One sentence: the likely cause, then the trimmed original in parentheses
 * (left out where the sentence already says all it did).
 */
export function describeEtcdError(err: unknown, endpoints: readonly string[]): string {
  const raw = err instanceof Error ? err.message : String(err);
  const named = wrongName(raw, endpoints);
  if (named) return named;
  const detail = raw
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, "")
    .replace(/\s*Resolution note:.*$/s, "")
    .replace(/^\d+ [A-Z_]+: /, "")
    .replace(/error:[0-9A-F]+:[A-Za-z ]+:OPENSSL_internal:/g, "")
    .trim();
  const where = `etcd at ${endpoints.join(", ")}`;
  for (const [re, sentence] of RULES) if (re.test(raw)) return `${where}: ${sentence} (${detail})`;
  return `${where}: ${detail}`;
}
