/**
 * Resource policies per owner path, as albatross keeps them. Unikernels and block devices are
 * named `a:b:name`; their owner path is every prefix before the last part (`a`, `a:b`), and the
 * policies of all of those apply. A policy limits the number of unikernels, their total memory,
 * the CPU ids they may be pinned to, the bridges they may join, and the total size of block
 * devices. A policy is checked when it is set (it may not exceed any ancestor's, and its existing
 * descendants' must fit in it), and every create is checked against all policies on its path.
 *
 * User-mode network forwards (host ports the daemon binds for a unikernel) are limited by host
 * address, host port and count. Unlike the other fields, an absent address or port field does
 * not mean "unrestricted" but "as the parent", and at the top the daemon's defaults
 * ({@link DEFAULT_FORWARD_ADDRESSES}, {@link DEFAULT_FORWARD_PORTS}): loopback only, ports from
 * 1024. A top-level policy (which only an unconfined admin may set) may widen them; a child may
 * not widen what applies to its parent.
 *
 * What a user-mode guest may reach through its gateway is a policy too: `hostLoopback` (the
 * gateway's address leads to the daemon host's loopback, where other tenants' forwards and the
 * daemon's own metrics listen) and `outbound` (connections out through the daemon's sockets).
 * Absent means "as the parent"; at the top {@link DEFAULT_USER_NET_ACCESS}: no host loopback (as
 * rootless podman sets slirp4netns), outbound allowed. A unikernel that does not say takes what
 * applies; one that asks for more is refused.
 * @module
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
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
  /**
   * Host addresses user-mode forwards may bind (IP literals; `0.0.0.0` or `::` only when listed).
   * Absent: as the parent, at the top {@link DEFAULT_FORWARD_ADDRESSES}.
   */
  forwardAddresses?: string[];
  /**
   * Host port ranges user-mode forwards may bind, as `[from, to]` pairs (inclusive). Port 0 (the
   * system picks) is allowed when the ranges cover the system's ephemeral range. Absent: as the
   * parent, at the top {@link DEFAULT_FORWARD_PORTS}.
   */
  forwardPorts?: [number, number][];
  /** Most forwards one unikernel under the path may have (all its user-mode networks together). */
  maxForwards?: number;
  /**
   * Whether user-mode guests under the path may reach the host's loopback through the gateway's
   * address. Absent: as the parent, at the top {@link DEFAULT_USER_NET_ACCESS} (no).
   */
  hostLoopback?: boolean;
  /**
   * Whether user-mode guests under the path may open connections and UDP flows out through the
   * daemon's sockets. Absent: as the parent, at the top {@link DEFAULT_USER_NET_ACCESS} (yes).
   */
  outbound?: boolean;
}

/** What user-mode guests may reach where no policy says otherwise. */
export const DEFAULT_USER_NET_ACCESS: Readonly<{ hostLoopback: boolean; outbound: boolean }> = Object.freeze({ hostLoopback: false, outbound: true });

/** The user-mode access fields of a policy. */
const ACCESS_FIELDS = ['hostLoopback', 'outbound'] as const;
type AccessField = (typeof ACCESS_FIELDS)[number];

/** What one user-mode network of a create asks for (absent fields are filled in from the policy). */
export interface UserNetAccessRequest {
  name?: unknown;
  hostLoopback?: boolean;
  outbound?: boolean;
}

/** Host addresses forwards may bind where no policy says otherwise: loopback. */
export const DEFAULT_FORWARD_ADDRESSES: readonly string[] = Object.freeze(['127.0.0.1', '::1']);
/** Host ports forwards may bind where no policy says otherwise: not the privileged ones. */
export const DEFAULT_FORWARD_PORTS: readonly (readonly [number, number])[] = Object.freeze([Object.freeze([1024, 65535] as const)]);

/** The forward addresses and ports that apply somewhere, and which policy (or default) each comes from. */
export interface ForwardLimits {
  addresses: readonly string[];
  ports: readonly (readonly [number, number])[];
  /** Where `addresses` come from (`the policy of 'a'`, `the daemon's default`). */
  from: string;
  /** Where `ports` come from. */
  portsFrom: string;
}

/** A forward as a create asks for it. */
export interface ForwardRequest {
  protocol: string;
  hostAddress: string;
  hostPort: number;
}

/** An IP literal in one spelling (`::0001` → `::1`), for comparing addresses. */
export function canonicalAddress(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

/** The port range the system picks from when asked for port 0 (Linux `ip_local_port_range`). */
export function ephemeralPortRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo!, hi!];
  } catch {
    // not Linux
  }
  return [32768, 60999];
}

/** Whether `[lo, hi]` lies inside the union of `ranges` (sorted, merged). */
function covered(lo: number, hi: number, ranges: readonly (readonly [number, number])[]): boolean {
  return ranges.some(([a, b]) => a <= lo && hi <= b);
}

/** Ranges sorted and merged (adjacent ones joined), so containment is one range's. */
function mergeRanges(ranges: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of [...ranges].sort((x, y) => x[0] - y[0])) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** `[[80,80],[1024,65535]]` → `80,1024-65535`. */
export function formatPortRanges(ranges: readonly (readonly [number, number])[]): string {
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',') || 'none';
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

const POLICY_FIELDS = ['maxUnikernels', 'memoryMB', 'blockMB', 'cpus', 'bridges', 'maxForwards', 'forwardAddresses', 'forwardPorts', ...ACCESS_FIELDS];

const PATH_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?::[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,15}$/;

/**
 * Whether `owner` is a well-formed owner path: 1 to 16 parts of 1 to 64 letters, digits, '.', '_'
 * or '-', each beginning with a letter or digit (so never empty, `.` or `..`: the parts are also
 * directory names under the files directories), joined by ':'.
 */
export function isOwnerPath(owner: string): boolean {
  return PATH_RE.test(owner);
}

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
  if (p.maxForwards !== undefined) {
    if (!Number.isInteger(p.maxForwards) || p.maxForwards < 0 || p.maxForwards > 65536) bad(`maxForwards must be a whole number from 0 to 65536, got ${JSON.stringify(p.maxForwards)}`);
    out.maxForwards = p.maxForwards;
  }
  if (p.forwardAddresses !== undefined) {
    if (!Array.isArray(p.forwardAddresses) || p.forwardAddresses.length > 64 || !p.forwardAddresses.every((a) => typeof a === 'string' && isIP(a) !== 0)) bad('forwardAddresses must be a list of IP addresses');
    out.forwardAddresses = [...new Set(p.forwardAddresses.map(canonicalAddress))].sort();
  }
  if (p.forwardPorts !== undefined) {
    const port = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;
    if (!Array.isArray(p.forwardPorts) || p.forwardPorts.length > 256 || !p.forwardPorts.every((r) => Array.isArray(r) && r.length === 2 && port(r[0]) && port(r[1]) && r[0] <= r[1])) {
      bad('forwardPorts must be a list of [from, to] port ranges (1 to 65535, from ≤ to)');
    }
    out.forwardPorts = mergeRanges(p.forwardPorts);
  }
  for (const k of ACCESS_FIELDS) {
    if (p[k] === undefined) continue;
    if (typeof p[k] !== 'boolean') bad(`${k} must be true or false, got ${JSON.stringify(p[k])}`);
    out[k] = p[k];
  }
  for (const k of Object.keys(p)) if (!POLICY_FIELDS.includes(k)) bad(`unknown policy field '${k}'`);
  return out;
}

/** Why `child` exceeds `parent`, or undefined when it fits. */
function exceeds(child: ResourcePolicy, parent: ResourcePolicy): string | undefined {
  for (const k of ['maxUnikernels', 'memoryMB', 'blockMB', 'maxForwards'] as const) {
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

/** Why `child`'s forward addresses or ports widen what applies to its parent (`applies`), or undefined. */
function widensForwards(child: ResourcePolicy, applies: ForwardLimits): string | undefined {
  if (child.forwardAddresses) {
    const extra = child.forwardAddresses.filter((a) => !applies.addresses.includes(a));
    if (extra.length) return `forwardAddresses ${extra.join(',')} not allowed by ${applies.from} (${applies.addresses.join(',') || 'none'})`;
  }
  if (child.forwardPorts) {
    const extra = child.forwardPorts.filter(([a, b]) => !covered(a, b, applies.ports));
    if (extra.length) return `forwardPorts ${formatPortRanges(extra)} not allowed by ${applies.portsFrom} (${formatPortRanges(applies.ports)})`;
  }
  return undefined;
}

/** Why `child`'s user-mode access fields allow what `applies` (its parent's) does not, or undefined. */
function widensAccess(child: ResourcePolicy, applies: UserNetAccess): string | undefined {
  for (const k of ACCESS_FIELDS) {
    if (child[k] === true && !applies[k].allowed) return `${k} not allowed by ${applies[k].from}`;
  }
  return undefined;
}

/** Whether user-mode guests may reach the host's loopback and go outbound somewhere, and which policy (or default) says so. */
export type UserNetAccess = Record<AccessField, { allowed: boolean; from: string }>;

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
    // Forward addresses and ports: what applies to the parent (a top-level policy sets the daemon's own).
    if (ownerPaths(path).length > 0) {
      const why = widensForwards(p, this.forwardLimits(path)) ?? widensAccess(p, this.userNetAccess(path));
      if (why) refuse(`policy for '${path}' refused: ${why}`);
    }
    for (const [other, op] of this.#policies) {
      if (other === path || !other.startsWith(`${path}:`)) continue;
      const why = exceeds(op, p);
      if (why) refuse(`policy for '${path}' refused: the existing policy of '${other}' would exceed it (${why})`);
      const saved = this.#policies.get(path);
      this.#policies.set(path, p);
      try {
        const widens = widensForwards(op, this.forwardLimits(other)) ?? widensAccess(op, this.userNetAccess(other));
        if (widens) refuse(`policy for '${path}' refused: the existing policy of '${other}' would exceed it (${widens})`);
      } finally {
        if (saved) this.#policies.set(path, saved);
        else this.#policies.delete(path);
      }
    }
    if (p.maxUnikernels !== undefined && usage.unikernels > p.maxUnikernels) refuse(`policy for '${path}' refused: ${usage.unikernels} unikernels already run under it (maxUnikernels ${p.maxUnikernels})`);
    if (p.memoryMB !== undefined && usage.memoryMB > p.memoryMB) refuse(`policy for '${path}' refused: ${usage.memoryMB} MB already in use under it (memoryMB ${p.memoryMB})`);
    if (p.blockMB !== undefined && usage.blockMB > p.blockMB) refuse(`policy for '${path}' refused: ${usage.blockMB} MB of block devices already exist under it (blockMB ${p.blockMB})`);
    this.#policies.set(path, p);
    return p;
  }

  /**
   * The forward addresses and ports that apply to `name` (a unikernel, or a policy path being
   * set): those of the innermost policy on its owner paths that sets them, else the daemon's
   * defaults; with where each comes from.
   */
  forwardLimits(name: string): ForwardLimits {
    let addresses: { v: readonly string[]; from: string } | undefined;
    let ports: { v: readonly (readonly [number, number])[]; from: string } | undefined;
    for (const at of ownerPaths(name).reverse()) {
      const p = this.#policies.get(at);
      if (!addresses && p?.forwardAddresses) addresses = { v: p.forwardAddresses, from: `the policy of '${at}'` };
      if (!ports && p?.forwardPorts) ports = { v: p.forwardPorts, from: `the policy of '${at}'` };
    }
    addresses ??= { v: DEFAULT_FORWARD_ADDRESSES, from: "the daemon's default" };
    ports ??= { v: DEFAULT_FORWARD_PORTS, from: "the daemon's default" };
    return { addresses: addresses.v, ports: ports.v, from: addresses.from, portsFrom: ports.from };
  }

  /**
   * What user-mode guests named `name` (or under a policy path being set) may reach: for each
   * field, the innermost policy on its owner paths that sets it, else
   * {@link DEFAULT_USER_NET_ACCESS}; with where each comes from.
   */
  userNetAccess(name: string): UserNetAccess {
    const out: Partial<UserNetAccess> = {};
    for (const at of ownerPaths(name).reverse()) {
      const p = this.#policies.get(at);
      for (const k of ACCESS_FIELDS) if (!out[k] && p?.[k] !== undefined) out[k] = { allowed: p[k]!, from: `the policy of '${at}'` };
    }
    for (const k of ACCESS_FIELDS) out[k] ??= { allowed: DEFAULT_USER_NET_ACCESS[k], from: "the daemon's default" };
    return out as UserNetAccess;
  }

  /**
   * Checks what the user-mode networks of a create (or update) of `name` ask to reach against
   * {@link userNetAccess}, and fills in what they leave out with what applies (so a guest under
   * the default gets no host loopback). Throws `ERR_DAEMON_POLICY` naming the network and field.
   */
  checkUserNetAccess(name: string, nets: UserNetAccessRequest[]): void {
    const applies = this.userNetAccess(name);
    for (const n of nets) {
      for (const k of ACCESS_FIELDS) {
        if (n[k] === undefined) n[k] = applies[k].allowed;
        else if (typeof n[k] !== 'boolean') throw new MorganaError('ERR_SOLO5_BAD_OPTION', `user-mode network '${String(n.name)}': ${k} must be true or false, got ${JSON.stringify(n[k])}`);
        else if (n[k] === true && !applies[k].allowed) refuse(`'${name}' refused by ${applies[k].from}: user-mode network '${String(n.name)}' asks for ${k}, which is not allowed`);
      }
    }
  }

  /**
   * Checks the forwards of a create (or update) of `name`: their count against every `maxForwards`
   * on its path, their host addresses and ports against what applies there
   * ({@link forwardLimits}). Throws `ERR_DAEMON_POLICY` naming the forward and the limit.
   */
  checkForwards(name: string, forwards: readonly ForwardRequest[]): void {
    for (const path of ownerPaths(name).reverse()) {
      const max = this.#policies.get(path)?.maxForwards;
      if (max !== undefined && forwards.length > max) refuse(`'${name}' refused by the policy of '${path}': ${forwards.length} forwards, limit ${max} (maxForwards)`);
    }
    const applies = this.forwardLimits(name);
    for (const f of forwards) {
      const shown = `${f.protocol} ${f.hostAddress.includes(':') ? `[${f.hostAddress}]` : f.hostAddress}:${f.hostPort}`;
      if (!applies.addresses.includes(canonicalAddress(f.hostAddress))) {
        refuse(`'${name}' refused by ${applies.from}: forward ${shown}: host address ${f.hostAddress} not allowed (allowed forwardAddresses ${applies.addresses.join(',') || 'none'})`);
      }
      if (f.hostPort === 0) {
        const [lo, hi] = ephemeralPortRange();
        if (!covered(lo, hi, applies.ports)) refuse(`'${name}' refused by ${applies.portsFrom}: forward ${shown}: port 0 (the system picks from ${lo}-${hi}) needs forwardPorts covering ${lo}-${hi} (allowed forwardPorts ${formatPortRanges(applies.ports)})`);
      } else if (!covered(f.hostPort, f.hostPort, applies.ports)) {
        refuse(`'${name}' refused by ${applies.portsFrom}: forward ${shown}: host port ${f.hostPort} not allowed (allowed forwardPorts ${formatPortRanges(applies.ports)})`);
      }
    }
  }

  /** Removes the policy of `path`; false when there was none. Throws `ERR_DAEMON_POLICY` when a descendant's forward fields would then widen what applies above it. */
  remove(path: string): boolean {
    const removed = this.#policies.get(path);
    if (!removed) return false;
    // Without it, its children's forward fields fall back to what applies above it: they may not
    // then be wider (removing a policy that widened the defaults does not leave its children wide).
    this.#policies.delete(path);
    for (const [other, op] of this.#policies) {
      if (!other.startsWith(`${path}:`)) continue;
      const why = widensForwards(op, this.forwardLimits(other)) ?? widensAccess(op, this.userNetAccess(other));
      if (why) {
        this.#policies.set(path, removed);
        refuse(`removing the policy of '${path}' refused: the policy of '${other}' would then be wider than what applies above it (${why}); remove or narrow it first`);
      }
    }
    return true;
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
