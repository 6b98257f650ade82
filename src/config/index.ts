export type { ConfigIssue } from "./issue.ts";
export { formatIssues } from "./issue.ts";
export { apiServerName, etcdTls, KUBEADM_APISERVER_NAME, type Settings, type VipSettings } from "./settings.ts";
export { loadSettings, type LoadInput, type LoadResult } from "./load.ts";
export type { SkippedDocument } from "./documents.ts";
export { summarize } from "./summary.ts";
export { CONFIG_FLAG, FLAGS, flagHelp, HELP_FLAG, parseFlags, settingFlag, type FlagSpec, type Flags, type ParsedFlags } from "./flags.ts";
export { LEAVES } from "./table.ts";
export { configPath, readConfigFile } from "./file.ts";
