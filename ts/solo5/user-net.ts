/**
 * User-mode networking for a Solo5 tender (`--net NAME=user`): the tender runs in a network
 * namespace of its own, made for it by `unshare` (with a user namespace too when this process
 * lacks `CAP_NET_ADMIN`, as slirp4netns and rootlesskit do), where a shell script makes, per
 * user-mode NET device, the tender's TAP `tapN` and a gateway TAP `mgwN` on a bridge `mbrN`.
 * A short Node helper there opens the gateway TAPs and sends their descriptors back over a
 * socket pair (`SCM_RIGHTS`: this process may not enter a namespace owned by a child user
 * namespace), then the script execs the tender. The gateway stack ({@link ./gateway.ts}) in
 * this process adopts the descriptors.
 *
 * Nothing is left behind: the namespaces live exactly as long as the tender (their only
 * process), their devices with them; the tender gets SIGKILL when this process dies
 * (`setpriv --pdeathsig KILL`, kept across the execs that follow).
 * @module
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { constants, closeSync, readFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Forward } from '../config/targets.js';
import { MorganaError } from '../errors.js';
import { adoptTap, tapNetDevice } from '../net/tap.js';
import { native } from '../native.js';
import { type UserGateway, type UserGatewayOptions, startUserGateway, userGatewayAddresses } from './gateway.js';
import { findExecutable } from './host.js';

/** A manifest NET device on Morgana's user-mode gateway. */
export interface UserNetAttachment {
  /** Manifest device name (e.g. `service0`). */
  name: string;
  /** Guest MAC address (`--net-mac`); default: the tender picks one. */
  mac?: string;
  /** Forwarded host ports. */
  forwards?: Forward[];
  /** Guest address and prefix (default `10.0.2.15/24`). */
  guest?: string;
  /** Gateway address (default `10.0.2.2`). */
  gateway?: string;
  /** DNS address (default `10.0.2.3`). */
  dns?: string;
  /** Record the private link to this pcap file. */
  pcap?: string;
  /** The host resolver the DNS address relays to (default: the first IPv4 server of `dns.getServers()`). */
  hostResolver?: string;
  /** Gateway limits and policy (see {@link UserGatewayOptions}). */
  maxConnections?: number;
  maxUdpFlows?: number;
  outbound?: boolean;
  hostLoopback?: boolean;
}

/** How the namespace is made. */
export type NamespaceMode = 'user' | 'net';

/** The shell script run inside the new namespace: `$1` devices, `$2` node, `$3` helper, then the tender command. */
const SCRIPT = [
  'set -e',
  'n=$1 node=$2 helper=$3',
  'shift 3',
  // No kernel IPv6 chatter (router solicitations, MLD) on the private links.
  '{ echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; } 2>/dev/null || true',
  'i=0',
  'gws=',
  'while [ "$i" -lt "$n" ]; do',
  '  ip tuntap add dev tap$i mode tap',
  '  ip tuntap add dev mgw$i mode tap',
  '  ip link add mbr$i type bridge',
  '  ip link set tap$i master mbr$i',
  '  ip link set mgw$i master mbr$i',
  '  ip link set tap$i up',
  '  ip link set mgw$i up',
  '  ip link set mbr$i up',
  '  gws="$gws mgw$i"',
  '  i=$((i + 1))',
  'done',
  '"$node" "$helper" 3 $gws',
  'exec 3>&-',
  'exec "$@"',
].join('\n');

const HELPER = fileURLToPath(new URL('./user-net-helper.js', import.meta.url));

/**
 * Whether this process can make the namespace without a user namespace: it has CAP_NET_ADMIN
 * (bit 12 of its effective capabilities) and CAP_SYS_ADMIN (bit 21), which `unshare(CLONE_NEWNET)`
 * needs.
 */
export function hasNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    const caps = m ? BigInt(`0x${m[1]}`) : 0n;
    return (caps & (1n << 12n)) !== 0n && (caps & (1n << 21n)) !== 0n;
  } catch {
    return false;
  }
}

/** The TAP name the tender gets for the `index`-th user-mode device. */
export function userNetTap(index: number): string {
  return `tap${index}`;
}

/** The guest boot arguments (MirageOS style) for a user-mode device, unless `args` set them. */
export function mirageNetArgs(att: UserNetAttachment, args: readonly string[]): string[] {
  if (args.some((a) => a === '--ipv4' || a.startsWith('--ipv4=') || a === '--ipv4-gateway' || a.startsWith('--ipv4-gateway='))) return [];
  const a = userGatewayAddresses(att);
  return [`--ipv4=${a.guest}`, `--ipv4-gateway=${a.gateway}`];
}

/**
 * Checks what a user-mode deployment needs and returns the command prefix that runs the tender
 * in its namespace. Throws `ERR_SOLO5_USER_NET` naming what is missing.
 */
export async function userNetCommand(count: number, mode: NamespaceMode, tenderCommand: string[]): Promise<string[]> {
  const unshare = await findExecutable('unshare');
  const setpriv = await findExecutable('setpriv');
  const ip = await findExecutable('ip');
  if (!unshare || !setpriv || !ip) {
    throw new MorganaError('ERR_SOLO5_USER_NET', `user-mode networking needs unshare, setpriv (util-linux) and ip (iproute2) on PATH; missing: ${[!unshare && 'unshare', !setpriv && 'setpriv', !ip && 'ip'].filter(Boolean).join(', ')}`);
  }
  try {
    await access('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    throw new MorganaError(
      'ERR_SOLO5_USER_NET',
      `/dev/net/tun is not readable and writable by uid ${process.getuid?.()}: the tender's TAP device is made inside a namespace but still opened through it (most distributions make it mode 0666)`,
    );
  }
  if (mode === 'user') {
    const probe = spawnSync(unshare, ['--user', '--map-root-user', '--net', 'true'], { encoding: 'utf8', timeout: 10_000 });
    if (probe.status !== 0) {
      throw new MorganaError(
        'ERR_SOLO5_USER_NET',
        `this user lacks CAP_NET_ADMIN and cannot create a user namespace (${(probe.stderr || probe.error?.message || 'unshare failed').trim()}); check user.max_user_namespaces, kernel.unprivileged_userns_clone or AppArmor's restrict_unprivileged_userns`,
      );
    }
  }
  const ns = mode === 'user' ? ['--user', '--map-root-user', '--net'] : ['--net'];
  return [unshare, ...ns, setpriv, '--pdeathsig', 'KILL', '--', 'sh', '-c', SCRIPT, 'morgana-user-net', String(count), process.execPath, HELPER, ...tenderCommand];
}

/** What `Unikernel` calls around each run of the tender. */
export interface RunHooks {
  /** Extra descriptors for the child's stdio (from fd 3 on). */
  prepare(): number[];
  /** The tender was spawned: attach its links (rejects when the namespace could not be set up). */
  spawned(child: ChildProcess): Promise<void>;
  /** The tender ended. */
  ended(): Promise<void>;
  /** The unikernel finally stopped. */
  close(): Promise<void>;
}

/** The gateways of a deployment and the plumbing that attaches them to each tender run. */
export class UserNetwork implements RunHooks {
  readonly gateways: UserGateway[];
  #pending: number | undefined;
  readonly #diagnostics: { sink?: (message: string) => void };

  private constructor(gateways: UserGateway[], diagnostics: { sink?: (message: string) => void }) {
    this.gateways = gateways;
    this.#diagnostics = diagnostics;
  }

  /**
   * Where the gateways' diagnostics go, each prefixed with its device's name (a host that refused
   * the guest's outbound connection, a forwarded connection the guest refused). The
   * {@link Unikernel} running on this network writes them to its console.
   */
  set diagnostics(sink: ((message: string) => void) | undefined) {
    this.#diagnostics.sink = sink;
  }

  /** Starts one gateway per attachment (closing those started when one fails). */
  static async start(attachments: readonly UserNetAttachment[], log?: (m: string) => void): Promise<UserNetwork> {
    const gateways: UserGateway[] = [];
    // Set later by whoever runs the unikernel: the gateways exist before it does.
    const diagnostics: { sink?: (message: string) => void } = { ...(log ? { sink: log } : {}) };
    try {
      for (const a of attachments) {
        const options: UserGatewayOptions = { ...a, log: (m: string) => diagnostics.sink?.(`${a.name}: ${m}`) };
        gateways.push(await startUserGateway(options));
      }
    } catch (error) {
      for (const g of gateways) await g.close().catch(() => {});
      throw error;
    }
    return new UserNetwork(gateways, diagnostics);
  }

  prepare(): number[] {
    this.#closePending();
    const [parent, child] = native.tapSocketPair() as [number, number];
    this.#pending = parent;
    return [child];
  }

  async spawned(child: ChildProcess): Promise<void> {
    // This run's socket is ours from here on (closed below, never by `ended`, so its number is
    // not reused under the receive loop).
    const socket = this.#pending;
    this.#pending = undefined;
    if (socket === undefined) return;
    let exited = child.exitCode !== null || child.signalCode !== null;
    const onExit = () => (exited = true);
    child.once('exit', onExit);
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        let fds: number[] | null;
        try {
          fds = native.tapReceiveFds(socket);
        } catch {
          return; // the helper failed: the tender's exit says why (its stderr)
        }
        if (fds) {
          fds.forEach((fd, i) => {
            const gateway = this.gateways[i];
            if (gateway) gateway.attach(tapNetDevice(adoptTap(fd, { mtu: 1500 })));
            else closeSync(fd);
          });
          return;
        }
        if (exited || Date.now() > deadline) {
          if (!exited) child.kill('SIGKILL');
          return;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      child.off('exit', onExit);
      closeSync(socket);
    }
  }

  async ended(): Promise<void> {
    this.#closePending();
    for (const g of this.gateways) await g.detach();
  }

  async close(): Promise<void> {
    this.#closePending();
    for (const g of this.gateways) await g.close();
  }

  #closePending(): void {
    if (this.#pending !== undefined) closeSync(this.#pending);
    this.#pending = undefined;
  }
}
