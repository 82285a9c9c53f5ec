/**
 * Fails (exit 1) when modules import each other in a loop, in `ts/` or inside any crate of
 * `crates/`, or when a folder of `ts/` (a room) imports a room it may not (the rules of
 * docs/architecture.md, in {@link ROOMS}). A cycle hides which way data and control flow and makes
 * a module impossible to read, test or move alone; the room rules keep the layers in one order.
 *
 * - TypeScript: every relative `import`/`export … from`/`import()` between files of `ts/`,
 *   type-only imports included (a type cycle is still a knot for the reader).
 * - Rust: per crate, an edge A → B when file A names module B through `crate::…`, `super::…`,
 *   `self::…` or a `use` of one of its own child modules. An edge to a module's own ancestor
 *   (the crate root or a parent that declares it) is not counted: the parent contains the child,
 *   and a child naming its parent's items is the ordinary Rust layout.
 *
 * Usage: `tsx scripts/check-imports.ts [--list]` (`--list` prints every edge).
 * @module
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Cycles that are known and being removed. Each entry is the exact set of files of one cycle
 * (a strongly connected component); a different or larger cycle still fails.
 */
const ALLOWED: { files: string[]; why: string }[] = [];

type Graph = Map<string, Set<string>>;

/**
 * The rooms of `ts/`, lowest first, and the rooms each may import besides itself. A room is a
 * folder of `ts/`; the files directly in `ts/` are `core`, except `index.ts` (`entry`, the
 * package root) and `cli.ts` (`cli`). Keep docs/architecture.md in step with this table.
 * Each room's list names only rooms listed before it, so no two rooms can import each other.
 */
export const ROOMS: Readonly<Record<string, readonly string[]>> = {
  core: [],
  wire: ['core'],
  kv: ['core'],
  metrics: ['core'],
  net: ['core', 'metrics'],
  stack: ['core', 'wire', 'metrics', 'net'],
  dns: ['core', 'wire', 'kv', 'stack'],
  host: ['core', 'stack'],
  http: ['core', 'stack', 'dns'],
  apps: ['core', 'wire', 'net', 'stack', 'dns'],
  monitor: ['core', 'metrics', 'net', 'stack'],
  config: ['core', 'wire', 'kv', 'metrics', 'net', 'stack', 'dns', 'host', 'http', 'apps', 'monitor'],
  solo5: ['core', 'wire', 'net', 'stack', 'config'],
  daemon: ['core', 'wire', 'kv', 'metrics', 'net', 'stack', 'monitor', 'config', 'solo5'],
  entry: ['core', 'wire', 'kv', 'metrics', 'net', 'stack', 'dns', 'host', 'http', 'apps', 'monitor', 'solo5', 'daemon', 'config'],
  commands: ['core', 'wire', 'kv', 'metrics', 'net', 'stack', 'dns', 'host', 'http', 'apps', 'monitor', 'solo5', 'daemon', 'config', 'entry'],
  cli: ['core', 'commands'],
};

/** The room of a file of `ts/` (its path from the repository root). */
export function roomOf(file: string): string {
  const parts = file.split('/');
  if (parts.length > 2) return parts[1]!;
  if (parts[1] === 'index.ts') return 'entry';
  if (parts[1] === 'cli.ts') return 'cli';
  return 'core';
}

/** Imports between rooms of `ts/` that {@link ROOMS} does not allow, as `from -> to` lines. */
export function roomViolations(graph: Graph): string[] {
  const out: string[] = [];
  for (const [from, tos] of graph) {
    if (!from.startsWith('ts/')) continue;
    const room = roomOf(from);
    const allowed = ROOMS[room];
    for (const to of tos) {
      const target = roomOf(to);
      if (target === room) continue;
      if (allowed === undefined) out.push(`${from} -> ${to}: room '${room}' is not in ROOMS (scripts/check-imports.ts, docs/architecture.md)`);
      else if (!allowed.includes(target)) out.push(`${from} -> ${to}: room '${room}' may not import room '${target}'`);
    }
  }
  return out.sort();
}

function walk(dir: string, ext: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, ext, out);
    else if (name.endsWith(ext) && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

function addEdge(graph: Graph, from: string, to: string): void {
  if (from === to) return;
  let set = graph.get(from);
  if (set === undefined) graph.set(from, (set = new Set()));
  set.add(to);
}

/** The import graph of `ts/`: relative specifiers resolved to the `.ts` file they name. */
export function typescriptGraph(root = ROOT): Graph {
  const graph: Graph = new Map();
  for (const file of walk(join(root, 'ts'), '.ts')) {
    const from = relative(root, file);
    graph.set(from, graph.get(from) ?? new Set());
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = resolveTs(resolve(dirname(file), fileName));
      if (target !== undefined) addEdge(graph, from, relative(root, target));
    }
  }
  return graph;
}

function resolveTs(path: string): string | undefined {
  const base = path.replace(/\.(js|ts|mjs|cjs)$/, '');
  for (const candidate of [`${base}.ts`, join(base, 'index.ts')]) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** Strips Rust comments and string literals so that only code is searched for paths. */
function rustCode(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\/\/[^\n]*/g, ' ')
    .replace(/r#*"[\s\S]*?"#*/g, '""')
    .replace(/"(?:[^"\\]|\\.)*"/g, '""');
}

/** Expands a `use` tree (`a::{b, c::{d, e}}`) into its flat paths. */
function expandUseTree(tree: string): string[][] {
  tree = tree.replace(/\s+/g, '');
  const brace = tree.indexOf('{');
  if (brace < 0) return [tree.split('::').filter((s) => s !== '')];
  const prefix = tree.slice(0, brace).split('::').filter((s) => s !== '');
  const inner = tree.slice(brace + 1, tree.lastIndexOf('}'));
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < inner.length; i++) {
    if (inner[i] === '{') depth++;
    else if (inner[i] === '}') depth--;
    else if (inner[i] === ',' && depth === 0) {
      parts.push(inner.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(inner.slice(start));
  return parts.filter((p) => p !== '').flatMap((p) => expandUseTree(p).map((rest) => [...prefix, ...rest]));
}

/** The module graph of each crate under `crates/`, file to file. */
export function rustGraph(root = ROOT): Graph {
  const graph: Graph = new Map();
  const cratesDir = join(root, 'crates');
  for (const crate of readdirSync(cratesDir)) {
    const src = join(cratesDir, crate, 'src');
    if (!existsSync(src)) continue;
    // Module path (e.g. "wire::ipv4") ↔ file, for every module that has a file of its own.
    const fileOf = new Map<string, string>();
    const pathOf = new Map<string, string[]>();
    for (const file of walk(src, '.rs')) {
      const rel = relative(src, file).replace(/\.rs$/, '').split('/');
      if (rel.at(-1) === 'mod' || (rel.length === 1 && (rel[0] === 'lib' || rel[0] === 'main'))) rel.pop();
      if (rel[0] === 'bin') continue;
      const name = relative(root, file);
      fileOf.set(rel.join('::'), name);
      pathOf.set(name, rel);
    }
    for (const [name, modPath] of pathOf) {
      graph.set(name, graph.get(name) ?? new Set());
      const code = rustCode(readFileSync(join(root, name), 'utf8'));
      const children = new Set([...code.matchAll(/\bmod\s+([a-z_][a-z0-9_]*)\s*;/g)].map((m) => m[1]!));
      const paths: string[][] = [];
      for (const m of code.matchAll(/\buse\s+([^;]+);/g)) paths.push(...expandUseTree(m[1]!));
      for (const m of code.matchAll(/\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+/g)) paths.push(m[0].split('::'));
      for (const path of paths) {
        const absolute = absolutePath(path, modPath, children);
        if (absolute === undefined) continue;
        // The longest prefix that names a module with a file of its own.
        for (let n = absolute.length; n >= 0; n--) {
          const target = fileOf.get(absolute.slice(0, n).join('::'));
          if (target === undefined) continue;
          const targetPath = pathOf.get(target)!;
          const isAncestor = targetPath.length < modPath.length && targetPath.every((s, i) => s === modPath[i]);
          if (!isAncestor) addEdge(graph, name, target);
          break;
        }
      }
    }
  }
  return graph;
}

/** A use path made absolute from the crate root, or undefined when it leaves the crate. */
function absolutePath(path: string[], modPath: string[], children: Set<string>): string[] | undefined {
  const [head, ...rest] = path;
  if (head === 'crate') return rest;
  if (head === 'self') return [...modPath, ...rest];
  if (head === 'super') {
    let base = modPath.slice(0, -1);
    let tail = rest;
    while (tail[0] === 'super') {
      base = base.slice(0, -1);
      tail = tail.slice(1);
    }
    return [...base, ...tail];
  }
  if (head !== undefined && children.has(head)) return [...modPath, ...path];
  return undefined;
}

/** Strongly connected components of more than one file (Tarjan). */
export function cycles(graph: Graph): string[][] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const connect = (v: string): void => {
    indexOf.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indexOf.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indexOf.get(w)!));
    }
    if (low.get(v) === indexOf.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) out.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!indexOf.has(v)) connect(v);
  return out;
}

function main(): number {
  const graph: Graph = new Map([...typescriptGraph(), ...rustGraph()]);
  if (process.argv.includes('--list')) {
    for (const [from, tos] of [...graph].sort()) for (const to of [...tos].sort()) console.log(`${from} -> ${to}`);
  }
  let failed = 0;
  const found = cycles(graph);
  for (const component of found) {
    const allowed = ALLOWED.find((a) => a.files.length === component.length && a.files.every((f) => component.includes(f)));
    const edges = component.flatMap((from) => [...(graph.get(from) ?? [])].filter((to) => component.includes(to)).map((to) => `    ${from} -> ${to}`));
    if (allowed !== undefined) {
      console.log(`import cycle allowed for now (${allowed.why}):\n${edges.join('\n')}`);
      continue;
    }
    failed++;
    console.error(`import cycle of ${component.length} files:\n${edges.join('\n')}`);
  }
  const violations = roomViolations(graph);
  for (const v of violations) console.error(`import across rooms not allowed: ${v}`);
  failed += violations.length;
  const stale = ALLOWED.filter((a) => !found.some((c) => a.files.every((f) => c.includes(f))));
  for (const a of stale) console.log(`allowed cycle is gone, remove it from ALLOWED: ${a.files.join(' <-> ')}`);
  console.log(`${graph.size} modules checked (ts/ and crates/): ${found.length} import cycle(s), ${violations.length} import(s) across rooms not allowed`);
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main();
