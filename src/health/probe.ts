// One readiness probe of the local kube-apiserver: an HTTPS GET with the
// configured trust, a hard timeout, and a failure described so that an
// operator reading /healthz or the log knows what to fix ("certificate verify
// failed", "connection refused", "timed out after 2 s", "500").
//
// The CA, certificate and key files are read on every probe, not once:
// kubeadm renews certificates in place, and a gate that kept a stale CA
// would close for no reason the operator could see.
//
// The certificate is checked against a name, not the URL's address: the probe
// goes to https://127.0.0.1:6443, and kubeadm's API server certificate never
// names 127.0.0.1 (see KUBEADM_APISERVER_NAME). The connection still goes to
// the URL's address; only the name checked (and sent as SNI, as kubectl's
// --tls-server-name does) is another.
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { PeerCertificate } from "node:tls";
import { checkCertificateName } from "../certificate-names.ts";
import { apiServerName, type TlsFiles } from "../config/settings.ts";

export interface ProbeTarget extends TlsFiles {
  url: string;
  /** The name the certificate must carry; default: apiServerName(). */
  serverName?: string | undefined;
  insecureSkipVerify: boolean;
  /** Seconds. */
  timeout: number;
}

export interface ProbeOutcome {
  readonly ok: boolean;
  /** "GET <url>: 200", "GET <url>: timed out after 2 s", … */
  readonly detail: string;
}

/** Bun's fetch options for TLS (its `tls` extension of RequestInit). */
export interface ProbeTls {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
  /** Sent as SNI, and what the certificate is checked against (with checkServerIdentity). */
  serverName?: string;
  /** Called once the chain is verified; an Error refuses the certificate. */
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** The fetch seam: Bun's global fetch, or a fake in tests. */
export type ProbeFetch = (url: string, init: { method: "GET"; tls: ProbeTls; signal: AbortSignal }) => Promise<Response>;

export type Probe = () => Promise<ProbeOutcome>;

// OpenSSL/BoringSSL verification codes as Bun reports them in `err.code`.
const CERT_CODES = /^(UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|CERT_|ERR_TLS_CERT|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE)/;

function readPem(what: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new ProbeSetupError(`reading ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

class ProbeSetupError extends Error {}

export function probeTls(t: ProbeTarget): ProbeTls {
  const tls: ProbeTls = { rejectUnauthorized: !t.insecureSkipVerify };
  if (t.caFile) tls.ca = readPem("CA file", t.caFile);
  if (t.certFile) tls.cert = readPem("client certificate", t.certFile);
  if (t.keyFile) tls.key = readPem("client key", t.keyFile);
  if (!t.insecureSkipVerify) {
    const name = apiServerName(t);
    // SNI carries host names only (RFC 6066 3): an IP is checked, not sent.
    if (!isIP(name)) tls.serverName = name;
    tls.checkServerIdentity = (_host, cert) => nameMismatch(name, !t.serverName && name !== new URL(t.url).hostname, cert);
  }
  return tls;
}

/**
 * The refusal of a certificate that lacks `name`, with what it does carry and
 * the fix: "server certificate is for cp-1, kubernetes, ..., not kubernetes.local:
 * set apiServer.serverName (--apiserver-server-name) to a name it carries".
 */
function nameMismatch(name: string, defaulted: boolean, cert: PeerCertificate): Error | undefined {
  const err = checkCertificateName(name, cert);
  if (!err) return undefined;
  const why = defaulted ? " (the name checked when apiServer.url's host is an IP address)" : "";
  return Object.assign(new Error(`${err.message}${why}: set apiServer.serverName (--apiserver-server-name) to a name it carries`, { cause: err }), {
    code: (err as NodeJS.ErrnoException).code,
  });
}

/** Turns a fetch rejection into the words an operator needs. */
export function describeFailure(err: unknown, timeoutSeconds: number): string {
  const e = err as { name?: string; code?: unknown; message?: string };
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return `timed out after ${timeoutSeconds} s`;
  const code = typeof e?.code === "string" ? e.code : "";
  const message = e?.message ?? String(err);
  if (CERT_CODES.test(code)) return `certificate verify failed: ${message} (${code})`;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET") return "connection reset";
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** A probe of `target`; resolves (never rejects) with the outcome. */
export function makeProbe(target: ProbeTarget, fetchFn: ProbeFetch = fetch as unknown as ProbeFetch): Probe {
  const what = `GET ${target.url}`;
  return async () => {
    let tls: ProbeTls;
    try {
      tls = probeTls(target);
    } catch (e) {
      return { ok: false, detail: `${what}: ${(e as Error).message}` };
    }
    try {
      const res = await fetchFn(target.url, { method: "GET", tls, signal: AbortSignal.timeout(target.timeout * 1000) });
      // The body is small ("ok") but must be consumed so the connection is reused.
      await res.arrayBuffer().catch(() => undefined);
      return { ok: res.status >= 200 && res.status < 300, detail: `${what}: ${res.status}` };
    } catch (e) {
      return { ok: false, detail: `${what}: ${describeFailure(e, target.timeout)}` };
    }
  };
}
