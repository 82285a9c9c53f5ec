/**
 * Device constructors for `config.ts`. A device is a description: what it provides, the devices
 * it is built from, the keys and npm packages it needs, which targets can provide it, and how to
 * connect it at boot. The unikernel's `start` receives the connected values.
 * @module
 */
import { open, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Clock, systemClock } from '../clock.js';
import { MorganaError } from '../errors.js';
import type { NetDevice } from '../net/device.js';
import { type TapNetDevice, openTap, tapNetDevice } from '../net/tap.js';
import { pcapRecorder } from '../net/pcap.js';
import type { VirtualSwitch } from '../net/vswitch.js';
import { defaultRandom, seededRandom, type Random } from '../random.js';
import { type Ipv6Options, type Stack, createStack } from '../stack/index.js';
import { dirKv as openDirKv } from '../kv/dir.js';
import { memKv as openMemKv } from '../kv/mem.js';
import { tarKv as openTarKv } from '../kv/tar.js';
import { crunchDirectory } from '../kv/crunch.js';
import type { KvRo, KvRw } from '../kv/types.js';
import { httpOver, type HttpDevice } from '../http/over-stack.js';
import { type Key, type Param, isKey, key } from './keys.js';
import type { PackageSpec } from './packages.js';
import { socketStack } from '../host/socket-stack.js';
import type { StackV4 } from '../stack/stackv4.js';
import type { TargetConfig } from './targets.js';

/** What a device sees while it connects. */
export interface DeviceContext {
  readonly target: TargetConfig;
  /** The folder of `config.ts`; relative paths in devices resolve from it. */
  readonly projectDir: string;
  /** The build folder. */
  readonly buildDir: string;
  /** `vnet`: the virtual switch. */
  readonly vswitch: VirtualSwitch | undefined;
  /** A literal, or the value of a key. */
  value<T>(param: Param<T>): T;
  /** A line on stderr, prefixed with the device. */
  log(message: string): void;
}

/** What a device sees at `morgana build`. */
export interface BuildContext {
  readonly projectDir: string;
  readonly buildDir: string;
  readonly target: TargetConfig;
  /** Configure-time values of keys. */
  value<T>(param: Param<T>): T;
  /** Compiles a TypeScript module into the build folder at `path` (relative); resolves to the `.js` file. */
  writeModule(path: string, source: string): Promise<string>;
}

/** The definition of a device; see {@link device}. */
export interface DeviceSpec<T, D extends Record<string, Device<unknown>> = Record<string, Device<unknown>>> {
  /** The constructor's name, e.g. `stack`. */
  impl: string;
  /** The interface it provides, e.g. `stack`, `net`, `kv`. */
  provides: string;
  /** Arguments shown by `morgana describe`. */
  args?: Record<string, Param<unknown> | undefined>;
  /** The devices it is built from, by role. */
  deps?: D;
  /** Keys it reads (besides keys among `args`). */
  keys?: Array<Key<unknown>>;
  /** npm packages it needs. */
  packages?: PackageSpec[];
  /** Why `target` cannot provide this device, or undefined when it can. */
  unsupported?(target: TargetConfig): string | undefined;
  /**
   * Checks key values that only make sense together (options that exclude each other) before
   * anything connects: a message saying what is wrong, or undefined. `morgana configure` runs it
   * on the configured values and boot on the final ones; a message is a usage error (exit 64).
   */
  check?(value: <V>(param: Param<V>) => V): string | undefined;
  /** Work at `morgana build` (e.g. crunching files into the build folder). */
  build?(ctx: BuildContext): Promise<void>;
  /** Creates the device at boot, after its dependencies. */
  connect(ctx: DeviceContext, deps: { [R in keyof D]: DeviceValue<D[R]> }): Promise<T>;
  /** Releases it at shutdown, before its dependencies. */
  disconnect?(value: T): Promise<void>;
}

/** A device of `config.ts` whose connected value has type `T`. */
export interface Device<T> {
  readonly kind: 'device';
  readonly impl: string;
  readonly provides: string;
  readonly args: Readonly<Record<string, Param<unknown> | undefined>>;
  readonly deps: Readonly<Record<string, Device<unknown>>>;
  readonly keys: ReadonlyArray<Key<unknown>>;
  readonly packages: readonly PackageSpec[];
  unsupported(target: TargetConfig): string | undefined;
  /** What is wrong with the key values taken together, or undefined (see {@link DeviceSpec.check}). */
  check(value: <V>(param: Param<V>) => V): string | undefined;
  build(ctx: BuildContext): Promise<void>;
  connect(ctx: DeviceContext, deps: Record<string, unknown>): Promise<T>;
  disconnect(value: T): Promise<void>;
  /** Type-level only: the connected value. */
  readonly __value?: T;
}

/** The connected value of a device. */
export type DeviceValue<D> = D extends Device<infer T> ? T : never;

/** Defines a device (also for devices of your own). */
export function device<T, D extends Record<string, Device<unknown>> = Record<string, never>>(spec: DeviceSpec<T, D>): Device<T> {
  const args = spec.args ?? {};
  const keys = [...(spec.keys ?? []), ...Object.values(args).filter(isKey)];
  for (const [role, dep] of Object.entries(spec.deps ?? {})) {
    if (!isDevice(dep)) throw new MorganaError('ERR_CONFIG_INVALID_DEVICE', `${spec.impl}: ${role} must be a device`);
  }
  return Object.freeze({
    kind: 'device' as const,
    impl: spec.impl,
    provides: spec.provides,
    args: Object.freeze({ ...args }),
    deps: Object.freeze({ ...(spec.deps ?? {}) }) as Record<string, Device<unknown>>,
    keys: Object.freeze([...new Set(keys)]),
    packages: Object.freeze([...(spec.packages ?? [])]),
    unsupported: (t: TargetConfig) => spec.unsupported?.(t),
    check: (value: <V>(param: Param<V>) => V) => spec.check?.(value),
    build: async (ctx: BuildContext) => void (await spec.build?.(ctx)),
    connect: (ctx: DeviceContext, deps: Record<string, unknown>) => spec.connect(ctx, deps as never),
    disconnect: async (value: T) => void (await spec.disconnect?.(value)),
  });
}

/** True for a {@link Device}. */
export function isDevice(value: unknown): value is Device<unknown> {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'device';
}

const fromProject = (ctx: { projectDir: string }, path: string) => (isAbsolute(path) ? path : resolve(ctx.projectDir, path));

// ---------------------------------------------------------------------------------------------
// NET devices

/** The keys Morgana's default devices read. */
export const defaultKeys = {
  /** `unix --net direct`: the TAP interface of `defaultNet()`. */
  interface: key.string('interface', { default: 'tap0', doc: 'The TAP interface the default network device opens (unix --net direct).' }),
  /** `unix --net direct`: open the TAP with the kernel's offloads (see {@link openTapNet}). */
  tapOffload: key.bool('tap-offload', {
    default: true,
    doc: "Open the TAP (unix --net direct) with the kernel's checksum and TCP segmentation offloads where it grants them; false: plain frames.",
  }),
  /** The address and prefix of `stack()` when none is given. */
  ipv4: key.ipv4('ipv4', { default: '10.0.0.2/24', doc: 'IPv4 address and prefix of the unikernel.' }),
  /** The gateway of `stack()` when none is given. */
  ipv4Gateway: key.ipv4Address('ipv4-gateway', { doc: 'IPv4 gateway of the unikernel.' }),
  /** A static IPv6 address of `stack()`; none by default (link-local, and SLAAC from router advertisements). */
  ipv6: key.ipv6('ipv6', { doc: 'A static IPv6 address and prefix of the unikernel (besides its link-local address).' }),
  /** A static IPv6 default router of `stack()`; none by default (routers come from router advertisements). */
  ipv6Gateway: key.ipv6Address('ipv6-gateway', { doc: 'IPv6 default router of the unikernel (default: from router advertisements).' }),
  /** Whether `stack()` accepts router advertisements (SLAAC, default routers, MTU, RDNSS). */
  acceptRouterAdvertisements: key.bool('accept-router-advertisements', {
    default: true,
    doc: 'Accept IPv6 router advertisements: SLAAC addresses, default routers, MTU, DNS servers.',
  }),
  /** `stack()` without IPv6. */
  ipv4Only: key.bool('ipv4-only', { default: false, doc: 'IPv4 only (no IPv6); excludes --ipv6-only.' }),
  /** `stack()` without IPv4. */
  ipv6Only: key.bool('ipv6-only', { default: false, doc: 'IPv6 only (no IPv4); excludes --ipv4-only.' }),
};

/**
 * What the `vnet` target's switch ports (the unikernel's and the gateway's) accept: TCP
 * super-frames up to 64 KiB and partial checksums, as a virtio-net device with TSO would. Both
 * ends are Morgana stacks in one process, so a bulk transfer crosses the switch in 64 KiB units
 * whatever the link MTU; a port without offloads (or a pcap, or injected faults) still sees the
 * real frames the switch cuts for it.
 */
export const VNET_PORT_OFFLOADS = { checksum: true, tso4: true, tso6: true } as const;

const needsUserspace = (what: string) => (t: TargetConfig) =>
  t.name === 'unix' && t.net === 'socket' ? `${what} is a NET device, and unix --net socket has none (it uses host sockets); use -t vnet or --net direct` : undefined;

/** A port on the `vnet` target's virtual switch. */
export function vnet(options: { mac?: Param<string> } = {}): Device<NetDevice> {
  return device<NetDevice>({
    impl: 'vnet',
    provides: 'net',
    args: { mac: options.mac },
    unsupported: (t) => (t.name !== 'vnet' ? `vnet() is a port of the vnet target's virtual switch; target ${t.name} cannot provide it (use -t vnet, or defaultNet())` : undefined),
    async connect(ctx) {
      const mac = options.mac === undefined ? undefined : ctx.value(options.mac);
      return ctx.vswitch!.connect(mac === undefined ? { offloads: VNET_PORT_OFFLOADS } : { mac, offloads: VNET_PORT_OFFLOADS });
    },
    disconnect: (net) => net.close(),
  });
}

/**
 * Whether a key means something on `target`: `--interface` names the TAP device of
 * `unix --net direct` only, so other targets neither list nor accept it.
 */
export function keyAppliesTo(k: Key<unknown>, target: TargetConfig): boolean {
  return (k !== defaultKeys.interface && k !== defaultKeys.tapOffload) || (target.name === 'unix' && target.net === 'direct');
}

/**
 * Opens a TAP as the NET device of a stack. With `offload` (the default of `unix --net
 * direct`), asks for the `virtio_net_hdr` and the kernel's checksum and TCP segmentation
 * offloads: the stack then hands the kernel TCP super-frames of up to 64 KiB to cut, and takes
 * its coalesced (GRO) frames. A kernel that refuses the header gives plain frames, as
 * `offload: false` does.
 */
export async function openTapNet(options: { name: string; netns?: string; mac?: string; mtu?: number; offload: boolean }): Promise<TapNetDevice> {
  const { offload, ...rest } = options;
  return tapNetDevice(await openTap({ ...rest, vnetHdr: offload }));
}

/** The boot log's line about a TAP's framing: which offloads are on, or why none are. */
export function describeTapOffloads(net: TapNetDevice, asked: boolean): string {
  const { name, vnetHdr, kernelOffloads: o } = net.tap;
  if (!asked) return `TAP ${name}: plain frames (--tap-offload=false)`;
  if (!vnetHdr) return `TAP ${name}: plain frames (the kernel refused the virtio-net header)`;
  const on = [o.checksum && 'checksum', o.tso4 && 'TSO4', o.tso6 && 'TSO6'].filter(Boolean);
  return `TAP ${name}: offloads ${on.length > 0 ? on.join(', ') : 'none granted'}`;
}

/**
 * A Linux TAP interface (`unix --net direct`). `offload` defaults to the `--tap-offload` key
 * (true): see {@link openTapNet}.
 */
export function tap(name: Param<string>, options: { netns?: Param<string>; mac?: Param<string>; mtu?: number; offload?: Param<boolean> } = {}): Device<NetDevice> {
  const offload = options.offload ?? defaultKeys.tapOffload;
  return device<NetDevice>({
    impl: 'tap',
    provides: 'net',
    args: { name, netns: options.netns, mac: options.mac, offload },
    unsupported: (t) =>
      t.name !== 'unix' ? `tap() needs a TAP device, which target ${t.name} cannot provide (use -t unix --net direct, or defaultNet())` : needsUserspace('tap()')(t),
    async connect(ctx) {
      const asked = ctx.value(offload);
      const net = await openTapNet({
        name: ctx.value(name),
        offload: asked,
        ...(options.netns !== undefined ? { netns: ctx.value(options.netns) } : {}),
        ...(options.mac !== undefined ? { mac: ctx.value(options.mac) } : {}),
        ...(options.mtu !== undefined ? { mtu: options.mtu } : {}),
      });
      ctx.log(describeTapOffloads(net, asked));
      return net;
    },
    disconnect: (net) => net.close(),
  });
}

/** The NET device of the host-socket target: there is none, and using it says so. */
function hostNet(): NetDevice {
  const fail = () => {
    throw new MorganaError('ERR_NET_UNAVAILABLE', 'unix --net socket has no NET device; the stack uses host sockets');
  };
  return {
    mac: '00:00:00:00:00:00',
    mtu: 1500,
    write: fail,
    listen: fail,
    stats: () => ({ rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0, txDropped: 0 }),
    close: async () => {},
  };
}

/**
 * The target's network: a switch port on `vnet`, the TAP interface named by `--interface`
 * (default `tap0`) on `unix --net direct` (with the kernel's offloads unless `--tap-offload=false`,
 * see {@link openTapNet}), the host's sockets (through `stack()`) on `unix --net socket`.
 */
export function defaultNet(): Device<NetDevice> {
  return device<NetDevice>({
    impl: 'defaultNet',
    provides: 'net',
    keys: [defaultKeys.interface, defaultKeys.tapOffload],
    async connect(ctx) {
      if (ctx.target.name === 'vnet') return ctx.vswitch!.connect({ offloads: VNET_PORT_OFFLOADS });
      if (ctx.target.net === 'socket') return hostNet();
      const asked = ctx.value(defaultKeys.tapOffload);
      const net = await openTapNet({ name: ctx.value(defaultKeys.interface), offload: asked });
      ctx.log(describeTapOffloads(net, asked));
      return net;
    },
    disconnect: (net) => net.close(),
  });
}

/** Records every frame of `net` into a pcap file (Wireshark, tshark). */
export function pcap(net: Device<NetDevice>, file: Param<string>): Device<NetDevice> {
  return device({
    impl: 'pcap',
    provides: 'net',
    args: { file },
    deps: { net },
    unsupported: needsUserspace('pcap()'),
    connect: async (ctx, deps) => pcapRecorder(deps.net, fromProject(ctx, ctx.value(file))),
    disconnect: (net) => net.close(),
  });
}

// ---------------------------------------------------------------------------------------------
// Stack, HTTP

/** Options of {@link stack}. Each defaults to the key of the same meaning (see {@link defaultKeys}). */
export interface StackDeviceOptions {
  /** IPv4 address and prefix (default: the `--ipv4` key, 10.0.0.2/24). */
  ipv4?: Param<string>;
  /** IPv4 default gateway (default: the `--ipv4-gateway` key, none). */
  gateway?: Param<string | undefined>;
  /** Configure the IPv4 address and gateway by DHCP instead (on vnet, the gateway serves DHCP). */
  dhcp?: boolean;
  /**
   * A static IPv6 address and prefix, e.g. `'2001:db8::2/64'` (default: the `--ipv6` key, none).
   * The stack always has a link-local address too.
   */
  ipv6?: Param<string | undefined>;
  /** A static IPv6 default router, e.g. `'fe80::1'` (default: the `--ipv6-gateway` key, none). */
  gateway6?: Param<string | undefined>;
  /**
   * Accept router advertisements: SLAAC addresses, default routers, MTU, hop limit and RDNSS
   * name servers (default: the `--accept-router-advertisements` key, true).
   */
  acceptRouterAdvertisements?: Param<boolean>;
  /** No IPv6 (default: the `--ipv4-only` key, false). */
  ipv4Only?: Param<boolean>;
  /** No IPv4 (default: the `--ipv6-only` key, false). Excludes `ipv4Only` and `dhcp`. */
  ipv6Only?: Param<boolean>;
  /** The random device of the stack (default the process-wide one). */
  random?: Device<Random>;
}

/**
 * A dual-stack network stack on `net`: Ethernet, ARP, IPv4, ICMP, IPv6 (link-local address,
 * SLAAC and default routers from router advertisements, the `--ipv6` address if given), ICMPv6,
 * neighbour discovery, MLD, UDP and TCP over both. `--ipv4-only` and `--ipv6-only` (or the
 * options of the same names) drop one family. The unikernel starts once duplicate address
 * detection has confirmed the link-local and static IPv6 addresses (about a second); a static
 * address already in use fails the boot with `ERR_IPV6_DUPLICATE_ADDRESS`.
 *
 * On `unix --net socket` the same interface on host sockets (the host decides about IPv6).
 */
export function stack(net: Device<NetDevice>, options: StackDeviceOptions = {}): Device<StackV4> {
  const ipv4 = options.dhcp ? undefined : (options.ipv4 ?? defaultKeys.ipv4);
  const gateway = options.dhcp ? undefined : (options.gateway ?? defaultKeys.ipv4Gateway);
  const ipv6 = options.ipv6 ?? defaultKeys.ipv6;
  const gateway6 = options.gateway6 ?? defaultKeys.ipv6Gateway;
  const acceptRouterAdvertisements = options.acceptRouterAdvertisements ?? defaultKeys.acceptRouterAdvertisements;
  const ipv4Only = options.ipv4Only ?? defaultKeys.ipv4Only;
  const ipv6Only = options.ipv6Only ?? defaultKeys.ipv6Only;
  const deps: Record<string, Device<unknown>> = { net };
  if (options.random) deps.random = options.random;
  return device<StackV4, Record<string, Device<unknown>>>({
    impl: 'stack',
    provides: 'stack',
    args: { ipv4, gateway, dhcp: options.dhcp ? true : undefined, ipv6, gateway6, acceptRouterAdvertisements, ipv4Only, ipv6Only },
    deps,
    check(value) {
      const v4only = value(ipv4Only) === true;
      const v6only = value(ipv6Only) === true;
      const name = (p: Param<unknown>, fallback: string) => (isKey(p) ? `--${p.name}` : fallback);
      if (v4only && v6only) {
        return `${name(ipv4Only, 'ipv4Only')} and ${name(ipv6Only, 'ipv6Only')} exclude each other: set at most one (neither gives a dual stack)`;
      }
      if (v6only && options.dhcp) return `${name(ipv6Only, 'ipv6Only')} turns IPv4 off, and this stack is configured by DHCP (IPv4)`;
      return undefined;
    },
    async connect(ctx, d) {
      if (ctx.target.name === 'unix' && ctx.target.net === 'socket') return socketStack({ bind: ctx.target.bind });
      const random = (d.random as Random | undefined) ?? defaultRandom();
      const v4only = ctx.value(ipv4Only) === true;
      const v6only = ctx.value(ipv6Only) === true;
      const v6: Ipv6Options | undefined = v4only ? undefined : { auto: ctx.value(acceptRouterAdvertisements) !== false };
      const address6 = ctx.value(ipv6);
      if (v6 && address6) v6.address = address6;
      const router6 = v4only ? undefined : ctx.value(gateway6);
      const common = { net: d.net as NetDevice, random, ...(v6 ? { ipv6: v6 } : {}), ...(router6 ? { gateway6: router6 } : {}) };
      let s: Stack;
      if (options.dhcp) {
        s = await createStack({ ...common, dhcp: true });
        ctx.log(`DHCP lease ${s.address}`);
      } else if (v6only) {
        s = await createStack(common);
      } else {
        const gw = gateway === undefined ? undefined : ctx.value(gateway);
        s = await createStack({ ...common, ipv4: ctx.value(ipv4!), ...(gw ? { gateway: gw } : {}) });
      }
      if (s.slaac) {
        // Start the unikernel with usable IPv6 addresses, and refuse a static one in use.
        try {
          await s.slaac.settled({ dadOnly: true });
        } catch (error) {
          await s.close();
          throw error;
        }
        ctx.log(`IPv6 ${s.ipv6!.addresses().join(', ')}`);
      }
      return s satisfies StackV4;
    },
    disconnect: (s) => s.close(),
  });
}

/** Node's HTTP server and client bound to the stack's TCP connections. */
export function http(stackDevice: Device<StackV4>): Device<HttpDevice> {
  return device({ impl: 'http', provides: 'http', deps: { stack: stackDevice }, connect: async (_ctx, d) => httpOver(d.stack) });
}

/** HTTPS: `node:tls` over the stack's TCP connections. `cert` and `key` are PEM files (relative to config.ts). */
export function https(stackDevice: Device<StackV4>, options: { cert: Param<string>; key: Param<string> }): Device<HttpDevice> {
  return device({
    impl: 'https',
    provides: 'http',
    args: { cert: options.cert, key: options.key },
    deps: { stack: stackDevice },
    async connect(ctx, d) {
      const [cert, keyPem] = await Promise.all([readFile(fromProject(ctx, ctx.value(options.cert))), readFile(fromProject(ctx, ctx.value(options.key)))]);
      return httpOver(d.stack, { cert, key: keyPem });
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Key-value stores

/** An empty in-memory store. */
export function memKv(): Device<KvRw> {
  return device<KvRw>({ impl: 'memKv', provides: 'kv', connect: () => openMemKv(), disconnect: (kv) => kv.close() });
}

/** A store on a host directory (relative to config.ts), read-write. */
export function dirKv(path: Param<string>): Device<KvRw> {
  return device<KvRw>({
    impl: 'dirKv',
    provides: 'kv',
    args: { path },
    connect: (ctx) => openDirKv(fromProject(ctx, ctx.value(path))),
    disconnect: (kv) => kv.close(),
  });
}

/**
 * A read-only store on a tar archive (relative to config.ts). An archive that cannot be read to
 * its end (a damaged header, a truncated member) fails the connect with `ERR_KV_CORRUPT`.
 */
export function tarKv(file: Param<string>): Device<KvRo> {
  return device<KvRo>({
    impl: 'tarKv',
    provides: 'kv',
    args: { file },
    connect: (ctx) => openTarKv(fromProject(ctx, ctx.value(file))),
    disconnect: (kv) => kv.close(),
  });
}

function crunchModule(ctx: { projectDir: string }, dir: string): string {
  const id = createHash('sha256').update(fromProject(ctx, dir)).digest('hex').slice(0, 12);
  return `crunch/${id}.ts`;
}

/**
 * A read-only store of a directory's files, embedded at `morgana build` into a module of the build
 * folder (Morgana's crunch, as `mirage-crunch` compiles files into the unikernel): the directory
 * is not needed at run time.
 */
export function crunch(dir: Param<string>): Device<KvRo> {
  return device<KvRo>({
    impl: 'crunch',
    provides: 'kv',
    args: { dir },
    async build(ctx) {
      const root = fromProject(ctx, ctx.value(dir));
      const { source } = await crunchDirectory(root, { importFrom: 'morgana' });
      await ctx.writeModule(crunchModule(ctx, ctx.value(dir)), source);
    },
    async connect(ctx) {
      const file = join(ctx.buildDir, crunchModule(ctx, ctx.value(dir)).replace(/\.ts$/, '.js'));
      let mod: { kv?: KvRo };
      try {
        mod = (await import(pathToFileURL(file).href)) as { kv?: KvRo };
      } catch (error) {
        throw new MorganaError('ERR_CRUNCH', `crunch: ${file} cannot be loaded (run morgana build): ${(error as Error).message}`);
      }
      if (!mod.kv) throw new MorganaError('ERR_CRUNCH', `crunch: ${file} exports no kv`);
      return mod.kv;
    },
    disconnect: (kv) => kv.close(),
  });
}

// ---------------------------------------------------------------------------------------------
// Random, clocks, console, block

/** The random device: Fortuna seeded from entropy, or reproducible with `seed`. */
export function random(options: { seed?: Param<string> } = {}): Device<Random> {
  return device<Random>({
    impl: 'random',
    provides: 'random',
    args: { seed: options.seed },
    connect: async (ctx) => (options.seed === undefined ? defaultRandom() : seededRandom(ctx.value(options.seed))),
  });
}

/** A POSIX (wall) clock. */
export interface PClock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** The current time as a Date. */
  date(): Date;
}

/** The wall clock. */
export function pclock(): Device<PClock> {
  return device<PClock>({ impl: 'pclock', provides: 'pclock', connect: async () => ({ now: () => Date.now(), date: () => new Date() }) });
}

/** The monotonic clock with timers (Morgana's {@link Clock}). */
export function mclock(): Device<Clock> {
  return device<Clock>({ impl: 'mclock', provides: 'mclock', connect: async () => systemClock });
}

/** A console: lines on standard output. */
export interface ConsoleDevice {
  log(...parts: unknown[]): void;
}

/** The console. */
export function console(): Device<ConsoleDevice> {
  return device<ConsoleDevice>({
    impl: 'console',
    provides: 'console',
    connect: async () => ({
      log: (...parts) => void process.stdout.write(`${parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' ')}\n`),
    }),
  });
}

/** A block device of fixed-size sectors. */
export interface BlockDevice {
  readonly sectorSize: number;
  readonly sectors: number;
  /** Reads `count` sectors from `sector`. */
  read(sector: number, count: number): Promise<Buffer>;
  /** Writes whole sectors from `sector`. */
  write(sector: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A block device on a host file (relative to config.ts), created if missing with `sectors`. */
export function block(file: Param<string>, options: { sectorSize?: number; sectors?: number } = {}): Device<BlockDevice> {
  const sectorSize = options.sectorSize ?? 512;
  return device<BlockDevice>({
    impl: 'block',
    provides: 'block',
    args: { file },
    async connect(ctx) {
      const path = fromProject(ctx, ctx.value(file));
      const handle = await open(path, 'a+').then(async (h) => (await h.close(), open(path, 'r+')));
      let size = (await handle.stat()).size;
      if (size === 0 && options.sectors) {
        await handle.truncate(options.sectors * sectorSize);
        size = options.sectors * sectorSize;
      }
      const sectors = Math.floor(size / sectorSize);
      const check = (sector: number, count: number) => {
        if (!Number.isInteger(sector) || !Number.isInteger(count) || sector < 0 || count < 0 || sector + count > sectors) {
          throw new MorganaError('ERR_BLOCK_RANGE', `sectors ${sector}..${sector + count} outside 0..${sectors}`);
        }
      };
      return {
        sectorSize,
        sectors,
        async read(sector, count) {
          check(sector, count);
          const buffer = Buffer.alloc(count * sectorSize);
          await handle.read(buffer, 0, buffer.length, sector * sectorSize);
          return buffer;
        },
        async write(sector, data) {
          if (data.length % sectorSize !== 0) throw new MorganaError('ERR_BLOCK_RANGE', `writes are whole ${sectorSize}-byte sectors`);
          check(sector, data.length / sectorSize);
          await handle.write(data, 0, data.length, sector * sectorSize);
        },
        flush: () => handle.sync(),
        close: () => handle.close(),
      };
    },
    disconnect: (b) => b.close(),
  });
}
