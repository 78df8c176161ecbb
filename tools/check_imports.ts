/**
 * Checks that imports run one way, down the layers of the layout: a file may
 * import only from its own layer or a lower one. Reads the module graph as
 * Deno resolves it (`deno info --json`), so a type-only or dynamic import
 * counts and an import written inside a string does not.
 *
 * Usage: deno run --allow-read --allow-write --allow-run tools/check_imports.ts [ROOT]
 * (ROOT: the checkout, by default the one this file is in). Exit 1 and one
 * line per import that points up, or per file outside every layer.
 * @module
 */

/** The layers, lowest first; a path belongs to the first prefix it starts with. */
const LAYERS: [name: string, prefixes: string[]][] = [
  ["the config", ["deno.json"]],
  ["ffi/", ["ffi/"]],
  ["src/", ["src/"]],
  ["mod.ts", ["mod.ts"]],
  ["cli/", ["cli/", "cli.ts"]],
  ["agent/", ["agent/"]],
  ["tools/", ["tools/"]],
  ["testing/", ["testing/"]],
  ["tests/, bench/, examples/", ["tests/", "bench/", "examples/"]],
];

/** Folders of one layer that must not import each other's files: the bench's helpers are testing/'s, not the tests'. */
const APART: [from: string, to: string][] = [["bench/", "tests/"]];

/** The layer of `path` (relative to the root): its index in LAYERS, or -1. */
export function layerOf(path: string): number {
  return LAYERS.findIndex(([, prefixes]) => prefixes.some((p) => p.endsWith("/") ? path.startsWith(p) : path === p));
}

/** Every TypeScript file below `root`, relative to it, leaving out node_modules and hidden folders. */
function sources(root: string, folder = ""): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(`${root}/${folder}`)) {
    const path = folder + entry.name;
    if (entry.isDirectory && entry.name !== "node_modules" && !entry.name.startsWith(".")) {
      found.push(...sources(root, `${path}/`));
    } else if (entry.isFile && /\.(ts|tsx|mts)$/.test(entry.name)) {
      found.push(path);
    }
  }
  return found.sort();
}

interface Graph {
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier: string };
      type?: { specifier: string };
    }[];
  }[];
}

/** The module graph of `files`, as `deno info --json` resolves it from one root that imports them all. */
async function graphOf(root: string, files: string[]): Promise<Graph> {
  const dir = await Deno.makeTempDir({ prefix: "ltp-checkpoint-imports-" });
  try {
    const entry = `${dir}/all.ts`;
    const url = (path: string) => new URL(path, `file://${root}/`).href;
    await Deno.writeTextFile(entry, files.map((path) => `import ${JSON.stringify(url(path))};\n`).join(""));
    const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", entry], cwd: root }).output();
    if (!out.success) throw new Error(`deno info failed: ${new TextDecoder().decode(out.stderr).trim()}`);
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The imports that point up a layer, and the files in no layer, as lines to print. */
export async function violations(root: string): Promise<string[]> {
  const files = sources(root);
  const problems = files.filter((path) => layerOf(path) < 0).map((path) => `${path} is in no layer`);
  const base = new URL(`file://${root}/`).href;
  const relative = (specifier: string) => specifier.startsWith(base) ? specifier.slice(base.length) : undefined;
  for (const module of (await graphOf(root, files)).modules) {
    const from = relative(module.specifier);
    if (from === undefined || layerOf(from) < 0) continue;
    const targets = new Set<string>();
    for (const dependency of module.dependencies ?? []) {
      for (const resolved of [dependency.code?.specifier, dependency.type?.specifier]) {
        const to = resolved === undefined ? undefined : relative(resolved);
        if (to !== undefined) targets.add(to);
      }
    }
    for (const to of targets) {
      if (layerOf(to) > layerOf(from)) {
        problems.push(
          `${from} (${LAYERS[layerOf(from)][0]}) imports ${to} (${LAYERS[layerOf(to)][0]}), a higher layer`,
        );
      } else if (layerOf(to) < 0) {
        problems.push(`${from} imports ${to}, which is in no layer`);
      } else if (APART.some(([a, b]) => from.startsWith(a) && to.startsWith(b))) {
        problems.push(`${from} imports ${to}: what both need belongs in testing/`);
      }
    }
  }
  return problems;
}

if (import.meta.main) {
  const root = (Deno.args[0] ?? new URL("..", import.meta.url).pathname).replace(/\/$/, "");
  const problems = await violations(root);
  for (const line of problems) console.error(`imports: ${line}`);
  if (problems.length > 0) {
    console.error(
      `imports: ${problems.length} against the layers (ffi/ < src/ < mod.ts < cli/ < agent/ < tools/ < testing/ < tests/)`,
    );
    Deno.exit(1);
  }
  console.log("imports: every import points to its own layer or a lower one");
}
