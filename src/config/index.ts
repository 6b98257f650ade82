export type { ConfigIssue } from "./issue.ts";
export { formatIssues } from "./issue.ts";
export type { Settings, VipSettings } from "./settings.ts";
export { loadSettings, type LoadInput, type LoadResult } from "./load.ts";
export { summarize } from "./summary.ts";
export { FLAGS, flagHelp, parseFlags, type FlagSpec, type Flags, type ParsedFlags } from "./flags.ts";
export { configPath, readConfigFile } from "./file.ts";
