// Imports run one way: down the layers below, never up, and never out of
// src/ into test/ or scripts/ (those import src/, not the other way round).
// A layer may import its own files and any layer beneath it; the root files
// of the lowest layer (seams.ts, log.ts, ...) import nothing above them.
// Every folder and root file of src/ must have a layer here, so that a new
// one is placed on purpose. Tests in src/ obey the same rule: a unit test
// fakes what is above it rather than importing it.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

/** Lowest first. The name is the first path segment under src/. */
const LAYERS: readonly (readonly string[])[] = [
  ["seams.ts", "shared-ticks.ts", "log.ts", "journal-stream.ts", "certificate-names.ts", "version.ts", "seeded.ts", "fake-time.ts", "layers.test.ts"],
  ["kernel"],
  // Validated settings and the bounds they are held to; the election (and
  // everything after it) takes typed, validated values from here: input is
  // checked once, at the edge.
  ["config"],
  ["election"],
  ["vip"],
  ["health"],
  ["agent", "agent.ts"],
  ["cli"],
  ["main.ts", "runtime-env.ts"],
];

const RANK = new Map(LAYERS.flatMap((names, rank) => names.map((n) => [n, rank] as const)));

/** The module specifiers a file's static imports, re-exports and dynamic imports name. */
function specifiers(source: string): string[] {
  const out: string[] = [];
  // `import ... from "x"`, `export ... from "x"`, `import "x"`, `import("x")`;
  // at a line's start, so that the same words inside a comment or a string do not count.
  const patterns = [/^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gms, /^\s*import\s*["']([^"']+)["']/gm, /\bimport\(\s*["']([^"']+)["']\s*\)/g];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The layer a path under src/ belongs to, by its first segment; null when none is assigned. */
function layerOf(pathInSrc: string): number | null {
  const first = pathInSrc.split("/")[0]!;
  return RANK.get(first) ?? RANK.get(first.replace(/\.test\.ts$/, ".ts")) ?? null;
}

/**
 * What is wrong with the imports of `files` (paths relative to src/ mapped to
 * their text): a relative import that leaves src/, one that runs up a layer,
 * and a file in no layer.
 */
function violations(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [path, source] of files) {
    const from = layerOf(path);
    if (from === null) {
      out.push(`${path}: in no layer (add its folder or name to LAYERS in src/layers.test.ts)`);
      continue;
    }
    for (const spec of specifiers(source)) {
      if (!spec.startsWith(".")) continue; // a package or node: builtin
      const target = normalize(join(dirname(path), spec));
      if (target.startsWith("..")) {
        out.push(`${path}: imports ${spec}, outside src/`);
        continue;
      }
      const to = layerOf(target);
      if (to === null) out.push(`${path}: imports ${spec}, in no layer`);
      else if (to > from) out.push(`${path}: imports ${spec}, a layer above (${target.split("/")[0]} over ${path.split("/")[0]})`);
    }
  }
  return out;
}

function sourceFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
    const full = join(entry.parentPath, entry.name);
    files.set(relative(root, full), readFileSync(full, "utf8"));
  }
  return files;
}

describe("import direction", () => {
  test("every file in src/ imports only its own layer and those below, and nothing outside src/", () => {
    const files = sourceFiles(import.meta.dir);
    // The walk found the tree, not an empty folder.
    expect(files.has("agent.ts")).toBe(true);
    expect(files.size).toBeGreaterThan(100);
    expect(violations(files)).toEqual([]);
  });

  test("the check catches an import of test/, an upward import and an unplaced file", () => {
    const files = new Map([
      ["kernel/wire/fuzz.ts", 'import { prng } from "../../../test/seeded.ts";\n'],
      ["health/vipd-metrics.ts", 'import type { HookEvent } from "../agent/hooks.ts";\nimport { BUILD } from "../version.ts";\n'],
      ["health/ok.ts", '// import { x } from "../agent/hooks.ts";\nimport { Counter } from "./metrics.ts";\n'],
      // Spelled in two pieces so that the walk over this very file does not take it for an import.
      ["vip/dyn.ts", `const m = await ${"import"}("../cli/commands.ts");\n`],
      ["vip/reexport.ts", 'export {\n  Slot,\n} from "../agent/slot.ts";\n'],
      ["stray.ts", ""],
    ]);
    expect(violations(files)).toEqual([
      "kernel/wire/fuzz.ts: imports ../../../test/seeded.ts, outside src/",
      "health/vipd-metrics.ts: imports ../agent/hooks.ts, a layer above (agent over health)",
      "vip/dyn.ts: imports ../cli/commands.ts, a layer above (cli over vip)",
      "vip/reexport.ts: imports ../agent/slot.ts, a layer above (agent over vip)",
      "stray.ts: in no layer (add its folder or name to LAYERS in src/layers.test.ts)",
    ]);
  });
});
