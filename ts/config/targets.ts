/**
 * The targets a TypeScript unikernel can be configured for, and their options:
 *
 * - `unix`: a Node process. `--net direct` (the default) runs Morgana's userspace stack on a TAP
 *   device; `--net socket` gives the unikernel the same stack interface on host sockets.
 * - `vnet`: the userspace stack on an in-process VirtualSwitch, with a gateway stack that forwards
 *   host ports into the virtual network (`--forward 8080:80`, as QEMU's user-mode networking);
 *   `--mtu N` sets the IP MTU of that link (default 1500, as slirp4netns's `--mtu`).
 * @module
 */
import { formatIpv4Address, formatIpv6Address, parseIpv4Address, parseIpv6Address } from '../address.js';
import { MorganaError } from '../errors.js';

/** The names of the targets. */
export type TargetName = 'unix' | 'vnet';

/** A host port forwarded into the virtual network (`vnet`). */
export interface Forward {
  protocol: 'tcp' | 'udp';
  /** Host address to listen on (default 127.0.0.1). */
  hostAddress: string;
  /** Host port (0 picks a free one; the chosen port is logged). */
  hostPort: number;
  /** Guest address (default: the unikernel's first stack). */
  guestAddress: string | undefined;
  guestPort: number;
}

/** A target with its options, as configured. */
export interface TargetConfig {
  name: TargetName;
  /** `unix`: how the network is provided. */
  net: 'direct' | 'socket';
  /** `unix --net socket`: the host address listening sockets bind to. */
  bind: string;
  /** `vnet`: forwarded host ports. */
  forward: Forward[];
  /**
   * `vnet`: the IP MTU of the virtual link between the unikernel and the gateway, 68 to 65,535
   * (default {@link DEFAULT_VNET_MTU}). Absent in configurations saved before it existed.
   */
  mtu?: number;
}

/** The `vnet` link's MTU when `--mtu` is not given. */
export const DEFAULT_VNET_MTU = 1500;
/** The largest `--mtu` (the VirtualSwitch's limit: a 65,535-byte IP packet). */
const MAX_VNET_MTU = 65_535;

/** Description of a target for help and errors. */
export const TARGETS: Record<TargetName, { summary: string; options: string }> = {
  unix: {
    summary: 'a Node process; --net direct: userspace stack on a TAP device, --net socket: host sockets',
    options: '--net direct|socket (default direct), --bind ADDRESS (socket: listen address, default 0.0.0.0)',
  },
  vnet: {
    summary: 'userspace stack on an in-process virtual switch; host ports forwarded into it',
    options:
      '--forward [tcp:|udp:][HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT (repeatable; IPv6 addresses in brackets), --mtu N (the link\'s IP MTU, 68 to 65535, default 1500)',
  },
};

/** Targets known by name but provided elsewhere (Solo5 images). */
const ELSEWHERE = ['hvt', 'spt', 'virtio', 'muen', 'xen'];

function usage(message: string): MorganaError {
  return new MorganaError('ERR_USAGE', message);
}

/** Checks a target name; `ERR_UNKNOWN_TARGET` lists the known ones. */
export function checkTargetName(name: string): TargetName {
  if (name === 'unix' || name === 'vnet') return name;
  const hint = ELSEWHERE.includes(name) ? ` (the Solo5 target ${name} is not available for TypeScript unikernels in this build)` : '';
  throw new MorganaError('ERR_UNKNOWN_TARGET', `unknown target ${JSON.stringify(name)}${hint}; targets: ${Object.keys(TARGETS).join(', ')}`);
}

function port(text: string, what: string, allowZero: boolean): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65_535 || (!allowZero && n === 0)) throw usage(`bad ${what} ${JSON.stringify(text)} in --forward`);
  return n;
}

/** A dotted quad, or an IPv6 address in brackets (`[::1]`, `[fe80::2]`), as RFC 5952 text without brackets. */
function address(text: string, what: string): string {
  try {
    if (text.startsWith('[') && text.endsWith(']')) return formatIpv6Address(parseIpv6Address(text.slice(1, -1)));
    return formatIpv4Address(parseIpv4Address(text));
  } catch {
    throw usage(`bad ${what} ${JSON.stringify(text)} in --forward (IPv6 addresses go in brackets: [::1])`);
  }
}

/** Splits at colons outside brackets: `[::1]:80:[fe80::2]:8080` → `[::1]`, `80`, `[fe80::2]`, `8080`. */
function fields(text: string): string[] {
  const out = [''];
  let bracket = false;
  for (const c of text) {
    if (c === ':' && !bracket) out.push('');
    else {
      if (c === '[') bracket = true;
      else if (c === ']') bracket = false;
      out[out.length - 1] += c;
    }
  }
  return out;
}

/**
 * Parses `[tcp:|udp:][HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT`; IPv6 addresses go in brackets
 * (`udp:[::1]:5353:[fd00::2]:53`).
 */
export function parseForward(text: string): Forward {
  let rest = text;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const m = /^(tcp|udp):(.*)$/.exec(rest);
  if (m) {
    protocol = m[1] as 'tcp' | 'udp';
    rest = m[2]!;
  }
  if (/^[a-z][a-z0-9]*:/i.test(rest) && !m && !/^\d/.test(rest)) {
    const name = rest.slice(0, rest.indexOf(':'));
    throw usage(`unknown protocol ${JSON.stringify(name)} in --forward ${JSON.stringify(text)}: tcp or udp (tcp when left out), e.g. udp:5353:53`);
  }
  const parts = fields(rest);
  const isAddress = (p: string) => p.includes('.') || p.startsWith('[');
  let hostAddress = '127.0.0.1';
  let guestAddress: string | undefined;
  let hostPort: string;
  let guestPort: string;
  if (parts.length === 2) [hostPort, guestPort] = parts as [string, string];
  else if (parts.length === 3 && isAddress(parts[0]!)) {
    hostAddress = address(parts[0]!, 'host address');
    [, hostPort, guestPort] = parts as [string, string, string];
  } else if (parts.length === 3) {
    guestAddress = address(parts[1]!, 'guest address');
    [hostPort, , guestPort] = parts as [string, string, string];
  } else if (parts.length === 4) {
    hostAddress = address(parts[0]!, 'host address');
    guestAddress = address(parts[2]!, 'guest address');
    [, hostPort, , guestPort] = parts as [string, string, string, string];
  } else throw usage(`bad --forward ${JSON.stringify(text)}: expected [tcp:|udp:][HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT such as 8080:80`);
  return { protocol, hostAddress, hostPort: port(hostPort, 'host port', true), guestAddress, guestPort: port(guestPort, 'guest port', false) };
}

/** An address as `--forward` writes it (IPv6 in brackets). */
function forwardAddress(a: string): string {
  return a.includes(':') ? `[${a}]` : a;
}

/** Formats a forward back into `--forward` syntax. */
export function formatForward(f: Forward): string {
  return `${f.protocol}:${forwardAddress(f.hostAddress)}:${f.hostPort}:${f.guestAddress ? `${forwardAddress(f.guestAddress)}:` : ''}${f.guestPort}`;
}

/** Builds a target configuration from its name and options, checking them. */
export function targetConfig(name: string, options: { net?: string; bind?: string; forward?: string[]; mtu?: string } = {}): TargetConfig {
  const target = checkTargetName(name);
  if (options.net !== undefined && target !== 'unix') throw usage(`--net applies to the unix target only`);
  if (options.net !== undefined && options.net !== 'direct' && options.net !== 'socket') throw usage(`--net is direct or socket, got ${JSON.stringify(options.net)}`);
  if (options.bind !== undefined && (target !== 'unix' || options.net !== 'socket')) throw usage(`--bind applies to unix --net socket only`);
  if (options.forward?.length && target !== 'vnet') throw usage(`--forward applies to the vnet target only`);
  if (options.mtu !== undefined && target !== 'vnet') throw usage(`--mtu applies to the vnet target only`);
  const mtu = options.mtu === undefined ? DEFAULT_VNET_MTU : Number(options.mtu);
  if (!/^\d+$/.test(options.mtu ?? '1500') || mtu < 68 || mtu > MAX_VNET_MTU) {
    throw usage(`bad --mtu ${JSON.stringify(options.mtu)}: expected an integer from 68 to ${MAX_VNET_MTU}`);
  }
  let bind = '0.0.0.0';
  if (options.bind !== undefined) {
    try {
      bind = formatIpv4Address(parseIpv4Address(options.bind));
    } catch {
      throw usage(`bad --bind address ${JSON.stringify(options.bind)}: expected an IPv4 address such as 127.0.0.1`);
    }
  }
  return {
    name: target,
    net: (options.net as 'direct' | 'socket' | undefined) ?? 'direct',
    bind,
    forward: (options.forward ?? []).map(parseForward),
    ...(target === 'vnet' ? { mtu } : {}),
  };
}

/** One-line description: `unix (--net socket)`. */
export function describeTarget(t: TargetConfig): string {
  if (t.name === 'unix') return t.net === 'socket' ? `unix --net socket (bind ${t.bind})` : 'unix --net direct';
  const mtu = t.mtu !== undefined && t.mtu !== DEFAULT_VNET_MTU ? ` --mtu ${t.mtu}` : '';
  return `vnet${mtu}${t.forward.map((f) => ` --forward ${formatForward(f)}`).join('')}`;
}
