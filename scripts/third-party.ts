// The third-party notices a release ships: every npm package whose files bun
// bundled into the binary (from build.ts's metafile, so exactly what is in
// it: not dev tools, not a dependency's CLI that vipd never imports), with
// its licence files as the package ships them, and the Bun runtime the
// binary is made of.
import { readdirSync, readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";

export interface BundledPackage {
  readonly name: string;
  readonly version: string;
  readonly license: string;
  readonly homepage: string;
  readonly dir: string;
  /** File name and text of each licence or notice file in the package's folder. */
  readonly files: readonly { name: string; text: string }[];
}

const LICENCE_FILE = /^(licen[cs]e|copying|notice)([.-].*)?$/i;

/** The package folder a bundled file belongs to: the path up to its innermost node_modules/<name>. */
export function packageDirOf(file: string): string | null {
  const m = /^(.*[\\/]node_modules[\\/](?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/.exec(file);
  return m ? m[1]! : null;
}

function repositoryUrl(pkg: Record<string, unknown>): string {
  const repo = pkg.repository;
  const url = typeof repo === "string" ? repo : typeof repo === "object" && repo ? String((repo as { url?: unknown }).url ?? "") : "";
  const link = url.replace(/^git\+/, "").replace(/\.git$/, "").replace(/^git:\/\//, "https://").replace(/^github:/, "https://github.com/");
  if (/^[\w.-]+\/[\w.-]+$/.test(link)) return `https://github.com/${link}`;
  return link || (typeof pkg.homepage === "string" ? pkg.homepage : "");
}

/**
 * The packages behind the bundled files `inputs` (absolute paths), one entry
 * per package folder, sorted by name and version.
 * A package without a licence file is an error: the release would ship its
 * code without the notice its licence asks for.
 */
export function bundledPackages(inputs: readonly string[]): BundledPackage[] {
  const dirs = new Set<string>();
  for (const input of inputs) {
    if (!isAbsolute(input)) throw new Error(`bundledPackages: ${input} is not an absolute path`);
    const dir = packageDirOf(input);
    if (dir) dirs.add(dir);
  }
  const out: BundledPackage[] = [];
  for (const dir of dirs) {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Record<string, unknown>;
    const files = readdirSync(dir)
      .filter((f) => LICENCE_FILE.test(f))
      .sort()
      .map((f) => ({ name: f, text: readFileSync(join(dir, f), "utf8").trimEnd() }));
    const name = String(pkg.name);
    if (files.length === 0) throw new Error(`${name} (${dir}) is bundled into vipd but ships no licence file; add its notice by hand`);
    out.push({ name, version: String(pkg.version), license: String(pkg.license ?? "see its licence file"), homepage: repositoryUrl(pkg), dir, files });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
}

const RULE = "-".repeat(78);

/** THIRD_PARTY_LICENSES: Bun first, then each bundled package with its licence text. */
export function thirdPartyNotices(packages: readonly BundledPackage[], bunVersion: string): string {
  const parts = [
    "Third-party software in the vipd binary",
    "",
    "The vipd executable is the Bun runtime with vipd's JavaScript and the npm",
    "packages listed below bundled into it (`bun build --compile`). vipd's own",
    "licence is in LICENSE.",
    "",
    RULE,
    `Bun ${bunVersion}: https://bun.sh, https://github.com/oven-sh/bun`,
    "Licence: MIT",
    "",
    "Bun links JavaScriptCore and parts of WebKit statically; those are under the",
    "GNU LGPL 2, and the WebKit fork Bun builds them from is published at",
    "https://github.com/oven-sh/WebKit. Bun also links, among others, BoringSSL,",
    "mimalloc, zlib-ng, zstd, brotli, c-ares, simdutf, uSockets/uWebSockets,",
    "lol-html and tinycc, each under its own licence. The list with every licence,",
    "and how to relink Bun against a modified JavaScriptCore, are published with",
    `Bun's source at this version: https://github.com/oven-sh/bun/tree/bun-v${bunVersion}`,
    "",
    "npm packages in the binary:",
    ...packages.map((p) => `  ${p.name} ${p.version} (${p.license})`),
  ];
  for (const p of packages) {
    parts.push("", RULE, `${p.name} ${p.version}${p.homepage ? `: ${p.homepage}` : ""}`, `Licence: ${p.license}`);
    for (const f of p.files) parts.push("", `--- ${f.name} ---`, "", f.text);
  }
  return `${parts.join("\n")}\n`;
}

