// Builds dist/vipd-linux-x64 and dist/vipd-linux-arm64 (and dist/vipd for the
// host): one self-contained executable each.
//
// Three things make a compiled bun binary depend on its build machine, and all
// are fixed here:
// - etcd3 loads `${__dirname}/../proto/rpc.proto` when it is first imported;
//   `bun build --compile` bakes the build machine's __dirname into the binary,
//   so the binary would only work where it was built. The plugin below parses
//   the proto at build time and swaps that loadSync call for fromJSON of the
//   parsed definition.
// - the same baking puts the checkout's path into the binary wherever another
//   dependency names __dirname (@grpc/grpc-js's channelz and ORCA protos,
//   which vipd never loads): two clones of one commit in two directories
//   would build different bytes. pinModuleDirs replaces it with a fixed path,
//   and the build fails if the checkout's path still appears in the output.
// - compiled binaries read .env and bunfig.toml from the working directory
//   unless told not to; an agent must not change behaviour with its cwd.
import type { BunPlugin } from "bun";
import { mkdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import protobuf from "protobufjs";

const root = import.meta.dir;
const etcd3Dir = dirname(Bun.resolveSync("etcd3/package.json", root));
const LOAD_CALL = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, \{/;

/** The etcd3 gRPC definition as JSON, with field names kept as written (keepCase). */
function etcdProtoJson(): string {
  const proto = new protobuf.Root();
  proto.resolvePath = (origin, target) => (origin ? join(dirname(origin), target) : target);
  proto.loadSync(join(etcd3Dir, "proto/rpc.proto"), { keepCase: true });
  return JSON.stringify(proto.toJSON());
}

export const embedEtcdProto: BunPlugin = {
  name: "embed-etcd3-proto",
  setup(build) {
    build.onLoad({ filter: /etcd3[\\/]lib[\\/]connection-pool\.js$/ }, async (args) => {
      const source = await Bun.file(args.path).text();
      if (!LOAD_CALL.test(source)) {
        throw new Error(`build: etcd3's proto loading in ${args.path} changed; update build.ts`);
      }
      const patched = source.replace(LOAD_CALL, `(0, proto_loader_1.fromJSON)(${etcdProtoJson()}, {`);
      return { contents: patched, loader: "js" };
    });
  },
};

/** Where pinModuleDirs says a dependency's files are: a path no machine has. */
const PINNED_ROOT = "/vipd-build";

export const pinModuleDirs: BunPlugin = {
  name: "pin-module-dirs",
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/].+\.c?js$/ }, async (args) => {
      const source = await Bun.file(args.path).text();
      // Nothing to pin, or a module with its own __dirname (an ESM shim): let
      // bun load the file itself. The path check after the build catches what
      // this leaves.
      if (!/\b__dirname\b/.test(source) || /\b(?:var|let|const)\s+__dirname\b/.test(source)) return undefined;
      const dir = `${PINNED_ROOT}/${relative(root, dirname(args.path)).split("\\").join("/")}`;
      return { contents: source.replace(/\b__dirname\b/g, JSON.stringify(dir)), loader: "js" };
    });
  },
};

export const TARGETS = {
  x64: "bun-linux-x64",
  arm64: "bun-linux-arm64",
} as const;

/** The commit being built, for `vipd version`; "unknown" outside a git checkout. */
function commit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: root, stdout: "pipe", stderr: "ignore" });
  const sha = r.exitCode === 0 ? r.stdout.toString().trim() : "";
  if (!sha) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { cwd: root, stdout: "pipe", stderr: "ignore" });
  return dirty.stdout.toString().trim() ? `${sha}-dirty` : sha;
}

export type Arch = keyof typeof TARGETS;

/** What went into one binary: the files bun bundled, as absolute paths. */
export interface BuiltBinary {
  readonly outfile: string;
  readonly inputs: readonly string[];
}

export async function buildBinary(arch: Arch, outfile: string): Promise<BuiltBinary> {
  const version = (await Bun.file(join(root, "package.json")).json()).version as string;
  const result = await Bun.build({
    entrypoints: [join(root, "src/main.ts")],
    // embedEtcdProto first: it owns etcd3's connection-pool.js.
    plugins: [embedEtcdProto, pinModuleDirs],
    minify: { syntax: true, whitespace: true },
    sourcemap: "none",
    metafile: true,
    define: {
      VIPD_VERSION: JSON.stringify(version),
      VIPD_COMMIT: JSON.stringify(commit()),
      VIPD_TARGET: JSON.stringify(`linux-${arch}`),
    },
    compile: {
      target: TARGETS[arch],
      outfile,
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    throw new Error(`build for ${arch} failed`);
  }
  const bytes = await Bun.file(outfile).bytes();
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(root)) {
    throw new Error(`build for ${arch}: ${outfile} contains the checkout's path ${root}; a dependency bakes in a path that build.ts does not pin yet`);
  }
  // The metafile is a JSON string in bun's types and an object at run time in
  // some versions; its paths are relative to the working directory.
  const meta = (typeof result.metafile === "string" ? JSON.parse(result.metafile) : result.metafile) as { inputs?: Record<string, unknown> } | undefined;
  return { outfile, inputs: Object.keys(meta?.inputs ?? {}).map((p) => resolve(p)).sort() };
}

if (import.meta.main) {
  const only = process.argv[2] as Arch | undefined;
  mkdirSync(join(root, "dist"), { recursive: true });
  const host = process.arch === "arm64" ? "arm64" : "x64";
  for (const arch of only ? [only] : (Object.keys(TARGETS) as Arch[])) {
    const out = join(root, "dist", `vipd-linux-${arch}`);
    const t0 = performance.now();
    await buildBinary(arch, out);
    console.log(`built ${out} in ${Math.round(performance.now() - t0)} ms`);
    if (arch === host) await Bun.write(join(root, "dist", "vipd"), Bun.file(out));
  }
  Bun.spawnSync(["chmod", "+x", ...["vipd", "vipd-linux-x64", "vipd-linux-arm64"].map((f) => join(root, "dist", f))]);
}
