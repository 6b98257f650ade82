// `vipd config example`: a configuration file with every setting of the
// table, its help as a comment and its default as the value, that
// `vipd validate` accepts as it is. Settings without a default, and the
// sections that exist only when asked for, are shown commented out.
import { stringify } from "yaml";
import { AGENT, LAYER2 } from "./documents.ts";
import { formatHostPort, type HostPort } from "./fields.ts";
import { type Entries, type Setting, TABLE } from "./table.ts";

/** One value as YAML on one line ("[https://127.0.0.1:2379]", "127.0.0.1:8099"). */
function inline(s: Setting, value: unknown): string {
  if (value && typeof value === "object" && "host" in value && "port" in value) {
    // "[::1]:8099" unquoted would be a YAML sequence.
    const text = formatHostPort(value as HostPort);
    return text.startsWith("[") ? `"${text}"` : text;
  }
  if (Array.isArray(value)) return `[${value.map((v) => stringify(v).trim()).join(", ")}]`;
  if (s.text === "list" && typeof value === "string") return `[${value}]`;
  return stringify(value).trim();
}

function lines(entries: Entries, indent: string, commented: boolean): string[] {
  const out: string[] = [];
  for (const [name, node] of Object.entries(entries)) {
    if (node.kind === "section") {
      const off = commented || node.optional;
      out.push(`${indent}# ${node.help}`, `${indent}${off ? "# " : ""}${name}:`, ...lines(node.entries, `${indent}  `, off));
      continue;
    }
    const value = node.default ?? node.example;
    const off = commented || node.default === undefined;
    out.push(`${indent}# ${node.help}`);
    const shown = value === undefined ? (node.fallback === "hostname" ? "cp-1" : "") : node.default === undefined ? String(value) : inline(node, value);
    out.push(`${indent}${off ? "# " : ""}${name}: ${shown}`.trimEnd());
  }
  return out;
}

export function configExample(): string {
  return [
    "# vipd's configuration: one multi-document YAML file (`vipd validate FILE` checks it).",
    `# Each VIP is a ${LAYER2} document, exactly as in Talos Linux; a whole Talos`,
    "# machine config works too.",
    "apiVersion: v1alpha1",
    `kind: ${LAYER2}`,
    "name: 192.168.0.15 # the VIP: an IPv4 or IPv6 address on the nodes' segment",
    "link: enp0s2 # the link it goes on",
    "---",
    "# vipd's own settings. Every one is optional: shown here with its default,",
    "# or commented out when it has none. Flags (--etcd-endpoints) and environment",
    "# variables (VIPD_ETCD_ENDPOINTS) override the file; `vipd run --help` lists them.",
    "apiVersion: v1alpha1",
    `kind: ${AGENT}`,
    ...lines(TABLE, "", false),
    "",
  ].join("\n");
}
