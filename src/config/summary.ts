// The human summary `vipd validate` prints for a good configuration.

import { formatHostPort } from "./fields.ts";
import { apiServerName, type Settings } from "./settings.ts";

export function summarize(s: Settings): string {
  const tls = s.etcd.endpoints.some((e) => e.startsWith("https://"));
  const clientCert = s.etcd.certFile ? ", client certificate" : "";
  const gate = s.apiServer
    ? `${s.apiServer.url} every ${s.apiServer.interval} s, timeout ${s.apiServer.timeout} s, rise ${s.apiServer.rise}, fall ${s.apiServer.fall}` +
      (s.apiServer.insecureSkipVerify ? " (certificate not verified)" : new URL(s.apiServer.url).protocol === "https:" ? `, certificate checked for ${apiServerName(s.apiServer)}` : "")
    : "none";
  const refresh = s.announce.refresh > 0 ? `refresh every ${s.announce.refresh} s` : "no refresh";
  const probe = s.announce.probeInterval > 0 ? `conflict probe every ${s.announce.probeInterval} s` : "no conflict detection";
  const hooks = (["acquired", "released", "fenced"] as const).flatMap((e) => (s.hooks[e]?.length ? [`${e} ${JSON.stringify(s.hooks[e])}`] : []));
  return [
    `node:      ${s.nodeName}`,
    `etcd:      ${s.etcd.endpoints.join(", ")} (TLS: ${tls ? `yes${clientCert}` : "no"}), prefix ${s.etcd.prefix}`,
    `election:  hold ${s.election.holdTime} ms, cleanup lease TTL ${s.election.leaseTTL} s`,
    ...s.vips.map((vip) => `VIP:       ${vip.ip} (IPv${vip.family}) on ${vip.link}`),
    `health:    ${formatHostPort(s.health.listen)}`,
    `gate:      ${gate}`,
    `announce:  burst of ${s.announce.burst} every ${s.announce.burstInterval} s, ${refresh}, ${probe}`,
    `hooks:     ${hooks.length ? `${hooks.join(", ")}, timeout ${s.hooks.timeout} s` : "none"}`,
    `log:       ${s.log.format}, ${s.log.level}`,
  ].join("\n");
}
