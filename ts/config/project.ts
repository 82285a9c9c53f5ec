/**
 * The project operations behind `morgana configure`, `build` and `clean`: compiling config.ts and
 * the unikernel's sources (TypeScript's `transpileModule`, with source maps) into the build folder,
 * type-checking them against Morgana's types (`build`), loading the configuration, and writing the
 * generated entry point and package.json.
 * @module
 */
import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MorganaError } from '../errors.js';
import { type Config, type DeviceGraph, checkKeyValues, checkTarget, deviceGraph, describeText, isConfig, packagesOf } from './dsl.js';
import { type Key, isKey, parseKeyArguments } from './keys.js';
import { type PackageSpec, dependencyValue, mergePackages, morganaRange } from './packages.js';
import type { BootManifest } from './runtime.js';
import { type TargetConfig, describeTarget } from './targets.js';

/** The file `configure` leaves in the build folder (what `.mirage.config` is to MirageOS). */
export const MANIFEST_FILE = '.morgana.json';
/** Default build folder, relative to config.ts. */
export const DEFAULT_BUILD_DIR = '_build';

/** The Morgana package running this code: its root folder and version. */
export async function morganaPackage(): Promise<{ root: string; version: string }> {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { name: string; version: string };
  return { root: root.replace(/[\\/]$/, ''), version: pkg.version };
}

/** Where a project is: its config file, folder and build folder. */
export interface ProjectPaths {
  configFile: string;
  projectDir: string;
  buildDir: string;
}

/** Finds config.ts (or config.mts/.js/.mjs); `ERR_CONFIG_MISSING` with what was looked for. */
export function projectPaths(options: { file?: string; buildDir?: string; cwd?: string } = {}): ProjectPaths {
  const cwd = options.cwd ?? process.cwd();
  let configFile: string | undefined;
  if (options.file) {
    configFile = resolve(cwd, options.file);
    if (!existsSync(configFile)) throw new MorganaError('ERR_CONFIG_MISSING', `${options.file} does not exist (in ${cwd})`);
  } else {
    configFile = ['config.ts', 'config.mts', 'config.js', 'config.mjs'].map((n) => join(cwd, n)).find((f) => existsSync(f));
    if (!configFile) throw new MorganaError('ERR_CONFIG_MISSING', `no config.ts in ${cwd}: run morgana in the unikernel's folder, or pass -f FILE`);
  }
  const projectDir = dirname(configFile);
  return { configFile, projectDir, buildDir: resolve(projectDir, options.buildDir ?? DEFAULT_BUILD_DIR) };
}

type TypeScript = typeof import('typescript');

async function loadTypeScript(projectDir: string): Promise<TypeScript> {
  const { root } = await morganaPackage();
  for (const from of [join(projectDir, 'package.json'), join(root, 'package.json')]) {
    try {
      const path = createRequire(from).resolve('typescript');
      const mod = (await import(pathToFileURL(path).href)) as { default?: TypeScript } & TypeScript;
      return mod.default ?? mod;
    } catch {
      // next
    }
  }
  throw new MorganaError('ERR_TYPESCRIPT_MISSING', 'compiling config.ts needs the typescript package: npm install --save-dev typescript');
}

/**
 * A TypeScript diagnostic as compilers print it, `file:line:col: error TSxxxx: message`, with the
 * file relative to `baseDir` (what terminals and editors turn into links).
 */
export function formatDiagnostic(ts: TypeScript, diagnostic: import('typescript').Diagnostic, baseDir: string): string {
  const category = ts.DiagnosticCategory[diagnostic.category].toLowerCase();
  const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n', 2);
  if (!diagnostic.file || diagnostic.start === undefined) return `${category} TS${diagnostic.code}: ${text}`;
  const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
  const file = relative(baseDir, diagnostic.file.fileName) || diagnostic.file.fileName;
  return `${file}:${line + 1}:${character + 1}: ${category} TS${diagnostic.code}: ${text}`;
}

/**
 * Compiles one TypeScript module to an ES module (no type check); `ERR_CONFIG_COMPILE` on syntax
 * errors, listing each as `file:line:col: error TSxxxx: message`. With `out`, the result carries a
 * source map (`out.map` beside it) whose source is `fileName`, so stack traces point at the .ts file.
 */
function transpile(ts: TypeScript, source: string, fileName: string, baseDir: string, out?: string): { js: string; map?: string } {
  const result = ts.transpileModule(source, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      sourceMap: out !== undefined,
      rewriteRelativeImportExtensions: true,
    } as import('typescript').CompilerOptions,
  });
  const errors = (result.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) throw new MorganaError('ERR_CONFIG_COMPILE', errors.map((d) => formatDiagnostic(ts, d, baseDir)).join('\n'));
  const js = result.outputText.replace(/\n?\/\/# sourceMappingURL=.*\s*$/, '\n');
  if (out === undefined || result.sourceMapText === undefined) return { js };
  const map = JSON.parse(result.sourceMapText) as { file?: string; sourceRoot?: string; sources: string[] };
  map.file = basename(out);
  map.sourceRoot = '';
  map.sources = [relative(dirname(out), fileName).split(sep).join('/')];
  return { js: `${js}//# sourceMappingURL=${basename(out)}.map\n`, map: `${JSON.stringify(map)}\n` };
}

const SKIP_DIRS = new Set(['node_modules', '.git']);

async function sources(root: string, buildDir: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (SKIP_DIRS.has(entry.name) || entry.name.startsWith('.') || full === buildDir || existsSync(join(full, MANIFEST_FILE))) continue;
      out.push(...(await sources(root, buildDir, full)));
    } else if (entry.isFile() && /\.(m?ts|m?js|cjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts') && !entry.name.endsWith('.d.mts')) {
      out.push(full);
    }
  }
  return out;
}

/** Where `@types/node` is, from the project or from Morgana's own install; undefined when neither has it. */
function nodeTypesRoot(projectDir: string, morganaRoot: string): string | undefined {
  for (const from of [join(projectDir, 'package.json'), join(morganaRoot, 'package.json')]) {
    try {
      return dirname(dirname(createRequire(from).resolve('@types/node/package.json')));
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * Type-checks the project's TypeScript sources (config.ts and the unikernel's) with one program:
 * `morgana` and `morgana/*` resolve to the Morgana the build folder links (the types of what will
 * run), everything else as a bundler would. Resolves to the errors, formatted by
 * {@link formatDiagnostic}; empty when the sources type-check.
 */
export async function typeCheck(paths: ProjectPaths): Promise<string[]> {
  const ts = await loadTypeScript(paths.projectDir);
  const { root } = await morganaPackage();
  const files = (await sources(paths.projectDir, paths.buildDir)).filter((f) => /\.m?ts$/.test(f));
  const typesRoot = nodeTypesRoot(paths.projectDir, root);
  const options: import('typescript').CompilerOptions = {
    noEmit: true,
    // Everything typed is checked strictly; untyped parameters and packages are `any`, as in JavaScript.
    strict: true,
    noImplicitAny: false,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    // Node's globals come from @types/node; without it, the DOM's stand in for console and timers.
    lib: typesRoot ? ['lib.es2023.d.ts'] : ['lib.es2023.d.ts', 'lib.dom.d.ts'],
    types: typesRoot ? ['node'] : [],
    ...(typesRoot ? { typeRoots: [typesRoot] } : {}),
  };
  const host = ts.createCompilerHost(options);
  // Resolved as from a module in the build folder, where node_modules/morgana is linked (linkMorgana).
  const fromBuild = join(paths.buildDir, 'app', 'index.ts');
  // Other packages resolve from the project first, then from the build folder (where build links
  // config.ts's local pins and npm install puts the rest).
  host.resolveModuleNameLiterals = (literals, containingFile, redirected, compilerOptions, containingSourceFile) =>
    literals.map((literal) => {
      const name = literal.text;
      const mode = ts.getModeForUsageLocation(containingSourceFile, literal, compilerOptions);
      const resolveFrom = (from: string) => ts.resolveModuleName(name, from, compilerOptions, host, undefined, redirected, mode);
      if (name === 'morgana' || name.startsWith('morgana/')) return resolveFrom(fromBuild);
      const here = resolveFrom(containingFile);
      if (here.resolvedModule || name.startsWith('.') || name.startsWith('/')) return here;
      const built = resolveFrom(fromBuild);
      return built.resolvedModule ? built : here;
    });
  const program = ts.createProgram({ rootNames: files, options, host });
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.category === ts.DiagnosticCategory.Error)
    .map((d) => formatDiagnostic(ts, d, paths.projectDir));
}

/** The compiled path (relative to the build folder) of a source path relative to the project. */
export function compiledPath(source: string): string {
  const rel = source.replace(/^\.\//, '');
  return `app/${rel.replace(/\.ts$/, '.js').replace(/\.mts$/, '.mjs')}`;
}

/**
 * Compiles every TypeScript file of the project (not node_modules, dot folders or build folders)
 * into `<buildDir>/app/`, copies JavaScript files, and makes `morgana` resolvable from there.
 * Resolves to the number of files written.
 */
export async function compileProject(paths: ProjectPaths): Promise<number> {
  const ts = await loadTypeScript(paths.projectDir);
  const files = await sources(paths.projectDir, paths.buildDir);
  let count = 0;
  for (const file of files) {
    const rel = relative(paths.projectDir, file);
    const out = join(paths.buildDir, compiledPath(rel));
    await mkdir(dirname(out), { recursive: true });
    if (/\.m?ts$/.test(file)) {
      const { js, map } = transpile(ts, await readFile(file, 'utf8'), file, paths.projectDir, out);
      await writeFile(out, js);
      if (map !== undefined) await writeFile(`${out}.map`, map);
    } else {
      await copyFile(file, out);
    }
    count++;
  }
  await ensurePackageJson(paths.buildDir);
  await linkMorgana(paths.buildDir);
  return count;
}

async function ensurePackageJson(buildDir: string): Promise<void> {
  const file = join(buildDir, 'package.json');
  if (!existsSync(file)) await writeFile(file, `${JSON.stringify({ private: true, type: 'module' }, null, 2)}\n`);
}

async function linkTo(target: string, link: string): Promise<void> {
  await mkdir(dirname(link), { recursive: true });
  try {
    const info = await lstat(link);
    if (info.isSymbolicLink() && resolve(dirname(link), await readlink(link)) === resolve(target)) return;
    if (!info.isSymbolicLink()) return; // a real install (npm install) stays
    await rm(link);
  } catch {
    // absent
  }
  await symlink(target, link, 'dir');
}

/**
 * Makes the running Morgana resolvable from the build folder (`node_modules/morgana` → it), and
 * its CLI runnable by the build folder's npm scripts (`node_modules/.bin/morgana`).
 */
async function linkMorgana(buildDir: string): Promise<void> {
  const { root } = await morganaPackage();
  await linkTo(root, join(buildDir, 'node_modules', 'morgana'));
  const bin = join(buildDir, 'node_modules', '.bin', 'morgana');
  await mkdir(dirname(bin), { recursive: true });
  await rm(bin, { force: true });
  // A shell shim rather than a symlink to cli.js, which need not be executable in a clone.
  await writeFile(bin, '#!/bin/sh\nexec node "$(dirname "$0")/../morgana/dist/cli.js" "$@"\n', { mode: 0o755 });
}

/** A path as one POSIX shell word. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/** A loaded project. */
export interface LoadedProject {
  paths: ProjectPaths;
  config: Config;
  graph: DeviceGraph;
  name: string;
}

/** Compiles and imports config.ts; `ERR_CONFIG_INVALID` unless it default-exports `main(…)`. */
export async function loadProject(paths: ProjectPaths): Promise<LoadedProject> {
  await compileProject(paths);
  const compiled = join(paths.buildDir, compiledPath(relative(paths.projectDir, paths.configFile)));
  let mod: { default?: unknown };
  try {
    mod = (await import(`${pathToFileURL(compiled).href}?t=${Date.now()}`)) as { default?: unknown };
  } catch (error) {
    if (error instanceof MorganaError) throw error;
    throw new MorganaError('ERR_CONFIG_LOAD', `${basename(paths.configFile)} failed to load: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (!isConfig(mod.default)) throw new MorganaError('ERR_CONFIG_INVALID', `${basename(paths.configFile)} must export default main('./unikernel.ts', { …devices })`);
  const config = mod.default;
  const graph = deviceGraph(config);
  const name = (config.name ?? basename(paths.projectDir)).toLowerCase().replace(/[^a-z0-9-]+/g, '-');
  return { paths, config, graph, name };
}

/** Configure-time key values from `--key=value` arguments (runtime-only keys are refused). */
export function configureKeys(graph: DeviceGraph, args: string[]): Record<string, string> {
  const accepted = new Map([...graph.keys].filter(([, k]) => k.stage !== 'runtime'));
  const runtimeOnly = [...graph.keys.values()].filter((k) => k.stage === 'runtime');
  for (const arg of args) {
    const name = arg.replace(/^--/, '').split('=')[0]!;
    if (runtimeOnly.some((k) => k.name === name)) throw new MorganaError('ERR_UNKNOWN_KEY', `--${name} is a runtime key: pass it when running (morgana run -- --${name}=…)`);
  }
  const parsed = parseKeyArguments(args, accepted);
  if (parsed.positional.length) throw new MorganaError('ERR_USAGE', `unexpected argument ${JSON.stringify(parsed.positional[0])}`);
  const out: Record<string, string> = {};
  for (const [name, value] of parsed.values) out[name] = graph.keys.get(name)!.format(value);
  return out;
}

/** The dependencies of the generated package.json. */
export async function dependenciesOf(project: LoadedProject): Promise<Record<string, string>> {
  const { version } = await morganaPackage();
  const specs: PackageSpec[] = mergePackages(packagesOf(project.config, project.graph));
  const deps: Record<string, string> = { morgana: morganaRange(version) };
  for (const spec of specs) {
    if (spec.name === 'morgana') continue;
    deps[spec.name] = dependencyValue(spec, project.paths.projectDir, project.paths.buildDir);
  }
  return deps;
}

/** The result of {@link configure}. */
export interface ConfigureResult {
  project: LoadedProject;
  manifest: BootManifest;
  files: string[];
}

/** `morgana configure`: checks the target against the devices and writes the build folder. */
export async function configure(paths: ProjectPaths, target: TargetConfig, keyArgs: string[], commandLine: string[]): Promise<ConfigureResult> {
  const project = await loadProject(paths);
  checkTarget(project.graph, target);
  const configured = configureKeys(project.graph, keyArgs);
  // Key values that exclude each other are refused now, as far as configure-time values tell.
  const known = new Map([...project.graph.keys].map(([name, k]) => [name, configured[name] !== undefined ? k.parse(configured[name]!) : k.default]));
  checkKeyValues(project.graph, <T>(p: T | Key<T>) => (isKey(p) ? (known.get(p.name) as T) : p));
  const { version } = await morganaPackage();
  const manifest: BootManifest = {
    name: project.name,
    target,
    configured,
    projectDir: paths.projectDir,
    buildDir: paths.buildDir,
    devices: project.graph.nodes.map((n) => n.id),
    morgana: version,
  };
  const dependencies = await dependenciesOf(project);
  const packageJson = {
    name: `morgana-unikernel-${project.name}-${target.name}`,
    version: '0.0.0',
    private: true,
    description: `The ${project.name} unikernel for ${describeTarget(target)}, generated by morgana configure`,
    type: 'module',
    main: 'main.mjs',
    bin: { [project.name]: 'main.mjs' },
    // Run by npm in the build folder, where node_modules/.bin/morgana (see linkMorgana) is on PATH.
    // (-b is relative to config.ts's folder.)
    scripts: { build: `morgana build -f ${shellWord(relative(paths.buildDir, paths.configFile))} -b ${shellWord(relative(paths.projectDir, paths.buildDir) || '.')}`, start: 'node main.mjs' },
    dependencies,
  };
  const unikernelModule = `./${compiledPath(project.config.unikernel)}`;
  const configModule = `./${compiledPath(relative(paths.projectDir, paths.configFile).split(sep).join('/'))}`;
  const description = describeText(project.config, project.graph)
    .trimEnd()
    .split('\n')
    .map((l) => `//   ${l}`)
    .join('\n');
  const mainMjs = `#!/usr/bin/env node
// Generated by \`morgana ${commandLine.join(' ')}\` for ${describeTarget(target)}.
// Edits are lost at the next configure. Devices, in start order:
${description}
import { boot } from 'morgana/config';

// Stack traces name config.ts and the unikernel's .ts lines: the compiled modules carry source
// maps, read only for modules loaded after this (hence the dynamic import of config).
process.setSourceMapsEnabled(true);
const { default: config } = await import('${configModule}');

const manifest = ${JSON.stringify(manifest, null, 2)};

process.exit(await boot(config, manifest, process.argv.slice(2), () => import('${unikernelModule}')));
`;
  await mkdir(paths.buildDir, { recursive: true });
  await writeFile(join(paths.buildDir, 'package.json'), `${JSON.stringify(packageJson, null, 2)}\n`);
  await writeFile(join(paths.buildDir, 'main.mjs'), mainMjs, { mode: 0o755 });
  await writeFile(join(paths.buildDir, MANIFEST_FILE), `${JSON.stringify({ commandLine, manifest, configFile: paths.configFile }, null, 2)}\n`);
  return { project, manifest, files: ['package.json', 'main.mjs', MANIFEST_FILE] };
}

/** The saved configuration of a build folder; `ERR_NOT_CONFIGURED` when there is none. */
export async function readConfigured(paths: ProjectPaths): Promise<{ commandLine: string[]; manifest: BootManifest }> {
  try {
    return JSON.parse(await readFile(join(paths.buildDir, MANIFEST_FILE), 'utf8')) as { commandLine: string[]; manifest: BootManifest };
  } catch {
    throw new MorganaError('ERR_NOT_CONFIGURED', `${relative(process.cwd(), paths.buildDir) || paths.buildDir} is not configured: run morgana configure -t TARGET first`);
  }
}

/**
 * `morgana build`: recompiles the sources, runs devices' build steps, checks dependencies, then
 * type-checks the sources when none is missing (unless `typecheck` is false; `ERR_TYPECHECK` lists
 * the errors).
 */
export async function build(paths: ProjectPaths, options: { typecheck?: boolean } = {}): Promise<{ project: LoadedProject; missing: string[] }> {
  const { manifest } = await readConfigured(paths);
  const project = await loadProject(paths);
  if (project.graph.nodes.map((n) => n.id).join(' ') !== manifest.devices.join(' ')) {
    throw new MorganaError('ERR_NOT_CONFIGURED', 'config.ts changed since morgana configure: configure again');
  }
  const values = new Map<string, unknown>();
  for (const [name, k] of project.graph.keys) values.set(name, manifest.configured[name] !== undefined ? k.parse(manifest.configured[name]!) : k.default);
  const ts = await loadTypeScript(paths.projectDir);
  for (const node of project.graph.nodes) {
    await node.device.build({
      async writeModule(path, source) {
        const out = join(paths.buildDir, path.replace(/\.ts$/, '.js'));
        await mkdir(dirname(out), { recursive: true });
        await writeFile(out, transpile(ts, source, join(paths.buildDir, path), paths.buildDir).js);
        return out;
      },
      projectDir: paths.projectDir,
      buildDir: paths.buildDir,
      target: manifest.target,
      value: <T>(p: unknown) => (typeof p === 'object' && p !== null && (p as { kind?: string }).kind === 'key' ? (values.get((p as { name: string }).name) as T) : (p as T)),
    });
  }
  // Local folder pins are linked; anything else must be installed (npm install in the build folder).
  const missing: string[] = [];
  for (const spec of mergePackages(packagesOf(project.config, project.graph))) {
    if (spec.name === 'morgana') continue;
    const link = join(paths.buildDir, 'node_modules', ...spec.name.split('/'));
    if (spec.pin && 'path' in spec.pin) await linkTo(resolve(paths.projectDir, spec.pin.path), link);
    else if (!existsSync(link)) missing.push(`${spec.name}@${dependencyValue(spec, paths.projectDir, paths.buildDir)}`);
  }
  // Checked once the dependencies are there (their types count); missing ones are reported first.
  if (options.typecheck !== false && !missing.length) {
    const errors = await typeCheck(paths);
    if (errors.length) {
      const count = `${errors.length} type error${errors.length === 1 ? '' : 's'}`;
      throw new MorganaError('ERR_TYPECHECK', `${count} (--no-typecheck builds without the check):\n${errors.join('\n')}`);
    }
  }
  return { project, missing };
}

/** `morgana clean`: removes the build folder, only if `configure` made it. */
export async function clean(paths: ProjectPaths): Promise<boolean> {
  if (!existsSync(paths.buildDir)) return false;
  if (!existsSync(join(paths.buildDir, MANIFEST_FILE)) && !existsSync(join(paths.buildDir, 'app'))) {
    throw new MorganaError('ERR_USAGE', `${paths.buildDir} was not made by morgana configure; not removing it`);
  }
  await rm(paths.buildDir, { recursive: true, force: true });
  return true;
}

