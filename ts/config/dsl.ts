/**
 * `main(…)`: what `config.ts` exports by default: the unikernel module, its devices and keys,
 * and extra npm packages; and the device graph derived from it.
 * @module
 */
import { MorganaError } from '../errors.js';
import { type Device, type DeviceValue, isDevice } from './devices.js';
import { type Key, type KeyValue, isKey } from './keys.js';
import { type PackageSpec, npmPackage } from './packages.js';
import type { TargetConfig } from './targets.js';

/** Options of {@link main}. */
export interface MainOptions<K extends Record<string, Key<any>>> {
  /** The unikernel's own keys, by the name its `start` sees them under. */
  keys?: K;
  /** Extra npm dependencies (see {@link npmPackage}). */
  packages?: PackageSpec[];
  /** The unikernel's name (default: the folder of config.ts). */
  name?: string;
}

/** A unikernel configuration: the default export of `config.ts`. */
export interface Config<D extends Record<string, Device<any>> = Record<string, Device<any>>, K extends Record<string, Key<any>> = Record<string, Key<any>>> {
  readonly kind: 'config';
  /** The unikernel module, relative to config.ts (`./unikernel.ts`). */
  readonly unikernel: string;
  readonly devices: D;
  readonly keys: K;
  readonly packages: readonly PackageSpec[];
  readonly name: string | undefined;
}

/** The connected devices a unikernel's `start` receives. */
export type DevicesOf<C> = C extends Config<infer D, any> ? { [R in keyof D]: DeviceValue<D[R]> } : never;
/** The key values a unikernel's `start` receives. */
export type KeysOf<C> = C extends Config<any, infer K> ? { [N in keyof K]: KeyValue<K[N]> } : never;

/** What a unikernel's `start` receives besides its devices. */
export interface StartContext<K> {
  /** Key values (a key without default and without value is undefined). */
  keys: K;
  /** Boot arguments that are not options. */
  argv: string[];
  /** Aborted when the unikernel is asked to stop (SIGINT, SIGTERM, SIGHUP, or the `morgana run` that started it died). */
  signal: AbortSignal;
}

/**
 * The type of a unikernel's `start` for a configuration:
 * `export const start: Start<typeof config> = async ({ stack }, { keys }) => { … }`.
 */
export type Start<C> = (devices: DevicesOf<C>, context: StartContext<KeysOf<C>>) => Promise<unknown>;

/**
 * Declares a unikernel: `export default main('./unikernel.ts', { stack: stack(defaultNet()) }, { keys: { port } })`.
 * The module must export `start(devices, { keys, argv, signal })`; when the promise it returns
 * settles, the devices are stopped and the unikernel exits.
 */
export function main<D extends Record<string, Device<any>>, K extends Record<string, Key<any>> = Record<never, never>>(
  unikernel: string,
  devices: D,
  options: MainOptions<K> = {},
): Config<D, K> {
  if (typeof unikernel !== 'string' || unikernel === '') throw new MorganaError('ERR_CONFIG_INVALID', 'main: the first argument is the unikernel module, e.g. ./unikernel.ts');
  for (const [role, d] of Object.entries(devices ?? {})) {
    if (!isDevice(d)) throw new MorganaError('ERR_CONFIG_INVALID_DEVICE', `main: devices.${role} is not a device`);
  }
  for (const [n, k] of Object.entries(options.keys ?? {})) {
    if (!isKey(k)) throw new MorganaError('ERR_CONFIG_INVALID_KEY', `main: keys.${n} is not a key`);
  }
  for (const p of options.packages ?? []) {
    if (p?.kind !== 'package') throw new MorganaError('ERR_CONFIG_INVALID_PACKAGE', 'main: packages are made with npmPackage(name, range)');
  }
  return Object.freeze({
    kind: 'config' as const,
    unikernel,
    devices: Object.freeze({ ...devices }),
    keys: Object.freeze({ ...(options.keys ?? ({} as K)) }),
    packages: Object.freeze([...(options.packages ?? [])]),
    name: options.name,
  });
}

/** True for a {@link Config}. */
export function isConfig(value: unknown): value is Config {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'config';
}

/** A device in the graph, with its stable id. */
export interface GraphNode {
  /** `stack0`, `defaultNet0`, … (impl and a counter, in dependency order). */
  id: string;
  device: Device<unknown>;
  /** Roles in `main`'s devices under which the unikernel receives it. */
  roles: string[];
  /** Dependencies: role → node id. */
  deps: Record<string, string>;
}

/** The device graph of a configuration. */
export interface DeviceGraph {
  /** Every device once, dependencies before dependents (the start order). */
  nodes: GraphNode[];
  /** Every key: the unikernel's and the devices', by name. */
  keys: Map<string, Key<unknown>>;
  /** Keys the unikernel itself declared (role → key). */
  unikernelKeys: Record<string, Key<unknown>>;
}

/**
 * Builds the graph: each device object once however often it is shared, ordered so that a
 * device comes after everything it depends on (depth-first, in declaration order).
 * Two different keys with one name are `ERR_CONFIG_DUPLICATE_KEY`.
 */
export function deviceGraph(config: Config): DeviceGraph {
  const ids = new Map<Device<unknown>, GraphNode>();
  const nodes: GraphNode[] = [];
  const counters = new Map<string, number>();
  const visiting = new Set<Device<unknown>>();
  const visit = (d: Device<unknown>): GraphNode => {
    const known = ids.get(d);
    if (known) return known;
    if (visiting.has(d)) throw new MorganaError('ERR_CONFIG_CYCLE', `device ${d.impl} depends on itself`);
    visiting.add(d);
    const deps: Record<string, string> = {};
    for (const [role, dep] of Object.entries(d.deps)) deps[role] = visit(dep).id;
    visiting.delete(d);
    const n = counters.get(d.impl) ?? 0;
    counters.set(d.impl, n + 1);
    const node: GraphNode = { id: `${d.impl}${n}`, device: d, roles: [], deps };
    ids.set(d, node);
    nodes.push(node);
    return node;
  };
  for (const [role, d] of Object.entries(config.devices)) visit(d).roles.push(role);

  const keys = new Map<string, Key<unknown>>();
  const addKey = (k: Key<unknown>, where: string) => {
    const old = keys.get(k.name);
    if (old && old !== k) throw new MorganaError('ERR_CONFIG_DUPLICATE_KEY', `two different keys are named --${k.name} (${where})`);
    keys.set(k.name, k);
  };
  for (const [role, k] of Object.entries(config.keys)) addKey(k, `keys.${role}`);
  for (const node of nodes) for (const k of node.device.keys) addKey(k, node.id);
  return { nodes, keys, unikernelKeys: { ...config.keys } };
}

/** Every npm package the configuration needs (devices' and the unikernel's). */
export function packagesOf(config: Config, graph: DeviceGraph): PackageSpec[] {
  return [...graph.nodes.flatMap((n) => n.device.packages), ...config.packages];
}

/** Devices that `target` cannot provide, with the reason; `ERR_DEVICE_UNSUPPORTED` for the first. */
export function checkTarget(graph: DeviceGraph, target: TargetConfig): void {
  for (const node of graph.nodes) {
    const reason = node.device.unsupported(target);
    if (reason) throw new MorganaError('ERR_DEVICE_UNSUPPORTED', `device ${node.id}: ${reason}`);
  }
}

/**
 * Runs every device's {@link Device.check} on key values (`value` maps a key or literal to its
 * value); the first complaint is `ERR_INVALID_KEY_VALUE`, naming the device.
 */
export function checkKeyValues(graph: DeviceGraph, value: <T>(param: T | Key<T>) => T): void {
  for (const node of graph.nodes) {
    const problem = node.device.check(value);
    if (problem) throw new MorganaError('ERR_INVALID_KEY_VALUE', `device ${node.id}: ${problem}`);
  }
}

function describeArg(value: unknown): string {
  if (isKey(value)) return `--${value.name}`;
  return JSON.stringify(value);
}

function nodeLabel(node: GraphNode): string {
  const args = Object.entries(node.device.args)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${describeArg(v)}`);
  return `${node.id}: ${node.device.impl}(${args.join(', ')})`;
}

/** The graph as text: one line per device in start order, with its dependencies and roles. */
export function describeText(config: Config, graph: DeviceGraph): string {
  const lines = [`unikernel ${config.unikernel}`];
  for (const node of graph.nodes) {
    const deps = Object.entries(node.deps).map(([role, id]) => `${role}=${id}`);
    const roles = node.roles.length ? `  -> start: ${node.roles.join(', ')}` : '';
    lines.push(`  ${nodeLabel(node)} [${node.device.provides}]${deps.length ? ` <- ${deps.join(', ')}` : ''}${roles}`);
  }
  const keys = [...graph.keys.values()];
  if (keys.length) lines.push(`keys: ${keys.map((k) => `--${k.name} (${k.type}, ${k.stage})`).join(', ')}`);
  return `${lines.join('\n')}\n`;
}

function dotString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/** The graph in Graphviz DOT: devices as boxes, an edge from each dependent to each dependency. */
export function describeDot(config: Config, graph: DeviceGraph): string {
  const lines = ['digraph unikernel {', '  rankdir=BT;', '  node [shape=box, fontname="Helvetica"];'];
  lines.push(`  main [shape=doubleoctagon, label=${dotString(`main\n${config.unikernel}`)}];`);
  for (const node of graph.nodes) lines.push(`  ${node.id} [label=${dotString(`${nodeLabel(node)}\n[${node.device.provides}]`)}];`);
  for (const node of graph.nodes) {
    for (const [role, id] of Object.entries(node.deps)) lines.push(`  ${node.id} -> ${id} [label=${dotString(role)}];`);
    for (const role of node.roles) lines.push(`  main -> ${node.id} [label=${dotString(role)}, style=bold];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

export { npmPackage };
