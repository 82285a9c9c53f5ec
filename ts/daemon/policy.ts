/**
 * Resource policies per owner path, as albatross keeps them. Unikernels and block devices are
 * named `a:b:name`; their owner path is every prefix before the last part (`a`, `a:b`), and the
 * policies of all of those apply. A policy limits the number of unikernels, their total memory,
 * the CPU ids they may be pinned to, the bridges they may join, and the total size of block
 * devices. A policy is checked when it is set (it may not exceed any ancestor's, and its existing
 * descendants' must fit in it), and every create is checked against all policies on its path.
 * @module
 */
import { MorganaError } from '../errors.js';

/** Limits for one owner path; an absent field does not restrict. */
export interface ResourcePolicy {
  /** Most unikernels under the path. */
  maxUnikernels?: number;
  /** Most total guest memory in MB under the path. */
  memoryMB?: number;
  /** CPU ids unikernels under the path may be pinned to (they are pinned to them by default). */
  cpus?: number[];
  /** Bridges NET devices under the path may join; `user` allows user-mode networks (`--net NAME=user`). */
  bridges?: string[];
  /** Most total block-device size in MB under the path. */
  blockMB?: number;
}

/** What is in use under one owner path, or what a create asks for. */
export interface ResourceUsage {
  unikernels: number;
  memoryMB: number;
  blockMB: number;
}

/** What one new unikernel or block device asks for. */
export interface ResourceRequest {
  unikernels?: number;
  memoryMB?: number;
  blockMB?: number;
  cpus?: number[];
  bridges?: string[];
}

const PATH_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?::[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,15}$/;

function refuse(message: string): never {
  throw new MorganaError('ERR_DAEMON_POLICY', message);
}

/** The owner paths of a name: `a:b:c` → `['a', 'a:b']`. */
export function ownerPaths(name: string): string[] {
  const parts = name.split(':');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join(':'));
  return out;
}

/** Whether `name` lies under owner path `owner` (`''` is everything). */
export function isUnder(name: string, owner: string): boolean {
  return owner === '' || name === owner || name.startsWith(`${owner}:`);
}

/** Checks a policy's shape. Throws `ERR_DAEMON_BAD_POLICY`. */
export function validatePolicy(path: string, p: ResourcePolicy): ResourcePolicy {
  const bad = (m: string): never => {
    throw new MorganaError('ERR_DAEMON_BAD_POLICY', m);
  };
  if (typeof path !== 'string' || !PATH_RE.test(path)) bad(`invalid owner path '${String(path)}': parts of letters, digits, '.', '_', '-' joined by ':'`);
  if (typeof p !== 'object' || p === null) bad('a policy is an object');
  const out: ResourcePolicy = {};
  for (const k of ['maxUnikernels', 'memoryMB', 'blockMB'] as const) {
    const v = p[k];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 0 || v > 2 ** 31) bad(`${k} must be a whole number from 0, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  if (p.cpus !== undefined) {
    if (!Array.isArray(p.cpus) || !p.cpus.every((c) => Number.isInteger(c) && c >= 0 && c < 4096)) bad('cpus must be a list of CPU ids');
    out.cpus = [...new Set(p.cpus)].sort((a, b) => a - b);
  }
  if (p.bridges !== undefined) {
    if (!Array.isArray(p.bridges) || !p.bridges.every((b) => typeof b === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(b))) bad('bridges must be a list of interface names');
    out.bridges = [...new Set(p.bridges)].sort();
  }
  for (const k of Object.keys(p)) if (!['maxUnikernels', 'memoryMB', 'blockMB', 'cpus', 'bridges'].includes(k)) bad(`unknown policy field '${k}'`);
  return out;
}

/** Why `child` exceeds `parent`, or undefined when it fits. */
function exceeds(child: ResourcePolicy, parent: ResourcePolicy): string | undefined {
  for (const k of ['maxUnikernels', 'memoryMB', 'blockMB'] as const) {
    if (parent[k] === undefined) continue;
    if (child[k] === undefined) return `${k} is unlimited but the parent allows ${parent[k]}`;
    if (child[k]! > parent[k]!) return `${k} ${child[k]} exceeds the parent's ${parent[k]}`;
  }
  for (const k of ['cpus', 'bridges'] as const) {
    const allowed = parent[k] as (string | number)[] | undefined;
    if (allowed === undefined) continue;
    const mine = child[k] as (string | number)[] | undefined;
    if (mine === undefined) return `${k} is unrestricted but the parent allows only ${allowed.join(',')}`;
    const extra = mine.filter((x) => !allowed.includes(x));
    if (extra.length) return `${k} ${extra.join(',')} not allowed by the parent (${allowed.join(',') || 'none'})`;
  }
  return undefined;
}

/** The policies of a daemon, by owner path. */
export class PolicyStore {
  #policies = new Map<string, ResourcePolicy>();

  constructor(initial: Record<string, ResourcePolicy> = {}) {
    for (const [k, v] of Object.entries(initial)) this.#policies.set(k, v);
  }

  /** All policies, by path. */
  toJSON(): Record<string, ResourcePolicy> {
    return Object.fromEntries([...this.#policies].sort(([a], [b]) => a.localeCompare(b)));
  }

  get(path: string): ResourcePolicy | undefined {
    return this.#policies.get(path);
  }

  /**
   * Sets the policy of `path`, after checking it against its nearest ancestors and descendants
   * with policies, and against what is already in use under it (`usage`). Throws
   * `ERR_DAEMON_POLICY` naming the limit.
   */
  set(path: string, policy: ResourcePolicy, usage: ResourceUsage): ResourcePolicy {
    const p = validatePolicy(path, policy);
    for (const parent of ownerPaths(path)) {
      const pp = this.#policies.get(parent);
      const why = pp && exceeds(p, pp);
      if (why) refuse(`policy for '${path}' refused: ${why} ('${parent}')`);
    }
    for (const [other, op] of this.#policies) {
      if (other === path || !other.startsWith(`${path}:`)) continue;
      const why = exceeds(op, p);
      if (why) refuse(`policy for '${path}' refused: the existing policy of '${other}' would exceed it (${why})`);
    }
    if (p.maxUnikernels !== undefined && usage.unikernels > p.maxUnikernels) refuse(`policy for '${path}' refused: ${usage.unikernels} unikernels already run under it (maxUnikernels ${p.maxUnikernels})`);
    if (p.memoryMB !== undefined && usage.memoryMB > p.memoryMB) refuse(`policy for '${path}' refused: ${usage.memoryMB} MB already in use under it (memoryMB ${p.memoryMB})`);
    if (p.blockMB !== undefined && usage.blockMB > p.blockMB) refuse(`policy for '${path}' refused: ${usage.blockMB} MB of block devices already exist under it (blockMB ${p.blockMB})`);
    this.#policies.set(path, p);
    return p;
  }

  /** Removes the policy of `path`; false when there was none. */
  remove(path: string): boolean {
    return this.#policies.delete(path);
  }

  /**
   * Checks a create of `name` asking for `req`, given the usage under each owner path
   * (`usageOf`). Returns the CPU ids to pin to (the innermost policy's when the request names
   * none). Throws `ERR_DAEMON_POLICY` naming the path and the limit hit.
   */
  check(name: string, req: ResourceRequest, usageOf: (path: string) => ResourceUsage): number[] | undefined {
    let pin = req.cpus;
    for (const path of ownerPaths(name).reverse()) {
      const p = this.#policies.get(path);
      if (!p) continue;
      const used = usageOf(path);
      const limit = (what: string, has: number, asks: number, max: number | undefined, unit = ''): void => {
        if (max !== undefined && asks > 0 && has + asks > max) {
          refuse(`'${name}' refused by the policy of '${path}': ${what} would be ${has + asks}${unit}, limit ${max}${unit} (in use ${has}${unit})`);
        }
      };
      limit('unikernels', used.unikernels, req.unikernels ?? 0, p.maxUnikernels);
      limit('memory', used.memoryMB, req.memoryMB ?? 0, p.memoryMB, ' MB');
      limit('block storage', used.blockMB, req.blockMB ?? 0, p.blockMB, ' MB');
      if (p.cpus !== undefined) {
        if (pin === undefined) pin = p.cpus;
        const extra = pin.filter((c) => !p.cpus!.includes(c));
        if (extra.length || pin.length === 0) refuse(`'${name}' refused by the policy of '${path}': CPU ${extra.join(',') || '(none)'} not allowed (allowed cpus ${p.cpus.join(',') || 'none'})`);
      }
      if (p.bridges !== undefined) {
        const extra = (req.bridges ?? []).filter((b) => !p.bridges!.includes(b));
        if (extra.length) refuse(`'${name}' refused by the policy of '${path}': bridge ${extra.join(',')} not allowed (allowed bridges ${p.bridges.join(',') || 'none'})`);
      }
    }
    return pin;
  }
}
