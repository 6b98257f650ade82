// Which document kinds vipd reads, which it skips, and which it refuses. A
// document whose kind is misspelled must never be dropped silently: a
// "VipAgentConfig" skipped as foreign would leave etcd, TLS and the gate at
// their defaults, a "Layer2VipConfig" would lose its VIP. So a kind is either
// one of vipd's, one of Talos's (which a whole Talos machine config holds, and
// vipd skips), or a problem, named with the kind that was most likely meant.

/**
 * Every document kind Talos registers (its config types, `kind:` beside
 * `apiVersion: v1alpha1`), as of Talos v1.14. The v1alpha1 machine config
 * itself has no kind (talos.ts). Layer2VIPConfig is vipd's as well;
 * HCloudVIPConfig is a VIP vipd cannot serve (talos.ts).
 */
export const TALOS_KINDS: ReadonlySet<string> = new Set([
  "BGPInstanceConfig", "BlackholeRouteConfig", "BondConfig", "BridgeConfig", "CRIBaseRuntimeSpecConfig",
  "CRICustomizationConfig", "ContainerConfig", "DHCPv4Config", "DHCPv6Config", "DiscoveryIdentityConfig",
  "DiscoveryServiceConfig", "DummyLinkConfig", "EnvironmentConfig", "EtcFileConfig", "EthernetConfig",
  "EventSinkConfig", "ExistingVolumeConfig", "ExtensionServiceConfig", "ExternalVolumeConfig", "FilesystemScrubConfig",
  "FilesystemTrimConfig", "HCloudVIPConfig", "HTTPProbeConfig", "HostnameConfig", "ImageCacheConfig",
  "ImageVerificationConfig", "KernelModuleConfig", "KmsgLogConfig", "KubeAPIServerCAConfig", "KubeAPIServerConfig",
  "KubeAdmissionControlConfig", "KubeAggregatorCAConfig", "KubeAuditPolicyConfig", "KubeAuthenticationConfig", "KubeAuthorizerConfig",
  "KubeClusterConfig", "KubeControllerManagerConfig", "KubeCoreDNSConfig", "KubeCredentialProviderConfig", "KubeEtcdEncryptionConfig",
  "KubeExternalManifestConfig", "KubeFlannelCNIConfig", "KubeInlineManifestConfig", "KubeNetworkConfig", "KubeNodeConfig",
  "KubePrismConfig", "KubeProxyConfig", "KubeSchedulerConfig", "KubeServiceAccountConfig", "KubeSpanConfig",
  "KubeSpanEndpointsConfig", "KubeStaticPodConfig", "KubeTalosAPIAccessConfig", "KubeletConfig", "LVMLogicalVolumeConfig",
  "LVMVolumeGroupConfig", "Layer2VIPConfig", "LinkAliasConfig", "LinkConfig", "NetworkDefaultActionConfig",
  "NetworkRuleConfig", "OOMConfig", "PCIDriverRebindConfig", "RAIDArrayConfig", "RawVolumeConfig",
  "RegistryAuthConfig", "RegistryMirrorConfig", "RegistryTLSConfig", "ResolverConfig", "RoutingRuleConfig",
  "SecurityProfileConfig", "SideroLinkConfig", "StaticHostConfig", "SwapVolumeConfig", "SysctlConfig",
  "SysfsConfig", "TCPProbeConfig", "TimeSyncConfig", "TrustedRootsConfig", "UdevRulesConfig",
  "UnattendedInstallConfig", "UserVolumeConfig", "VLANConfig", "VRFConfig", "VethConfig",
  "VolumeConfig", "WatchdogTimerConfig", "WireguardConfig", "ZswapConfig",
]);

/** Talos's VIP documents that announce through a cloud's API: vipd cannot serve them. */
export const CLOUD_VIP_KINDS: ReadonlySet<string> = new Set(["HCloudVIPConfig"]);

/**
 * Edit distance (insertions, deletions, substitutions and swaps of two
 * neighbours), case ignored; stops counting once it passes `limit`.
 */
function distance(a: string, b: string, limit: number): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  if (Math.abs(s.length - t.length) > limit) return limit + 1;
  let before: number[] = [];
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d = Math.min(d, before[j - 2]! + 1);
      row.push(d);
      best = Math.min(best, d);
    }
    if (best > limit) return limit + 1;
    before = prev;
    prev = row;
  }
  return prev[t.length]!;
}

/**
 * How far a kind may be from a known one and still be taken for a typo of it:
 * any difference of case, and one edit when the part before "Config" is
 * short (OOM, VRF, Bond: two edits would reach other kinds), two when it is
 * longer. An exact match is always looked for first (DHCPv4Config and
 * DHCPv6Config are both kinds).
 */
const slack = (known: string) => (known.replace(/Config$/, "").length < 6 ? 1 : 2);

/** The known kind `kind` is most likely a misspelling of, or null; never `kind` itself. */
export function nearestKind(kind: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    if (k === kind) return null;
    const d = distance(kind, k, slack(k));
    if (d <= slack(k) && d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}
