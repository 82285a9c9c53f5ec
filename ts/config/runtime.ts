/**
 * The boot sequence of a configured unikernel, called by the generated `main.mjs`: boot
 * arguments are joined and split again with parse-argv, runtime keys parsed (`--help` lists
 * them), the target's environment set up, devices connected in dependency order, the unikernel's
 * `start` run, and everything stopped in reverse order when it returns or a signal arrives.
 * @module
 */
import { rmSync } from 'node:fs';
import { MorganaError } from '../errors.js';
import { VirtualSwitch } from '../net/vswitch.js';
import type { DhcpServer } from '../stack/dhcp-server.js';
import type { Stack } from '../stack/index.js';
import { formatStackSummary, stackSummaryData } from '../stack/summary.js';
import { watchParent } from './parent-watch.js';
import { type Running, vnetForwards, vnetGateway } from './vnet-gateway.js';
import { startRequestedMonitors } from '../monitor/runtime.js';
import type { MonitoredForward } from '../monitor/snapshot.js';
import { bootArguments } from './argv.js';
import { type DeviceContext, defaultKeys, keyAppliesTo } from './devices.js';
import { type Config, type DeviceGraph, checkKeyValues, deviceGraph } from './dsl.js';
import { type Key, isKey, keysHelp, parseKeyArguments } from './keys.js';
import type { StackV4 } from '../stack/stackv4.js';
import { DEFAULT_VNET_MTU, type TargetConfig, parseForward } from './targets.js';

export { VNET_IPV6_PREFIX } from './vnet-gateway.js';

/** Exit codes of a unikernel, as MirageOS's (functoria-runtime ≥ 3.0.1). */
export const EXIT = { ok: 0, failure: 1, help: 63, usage: 64 } as const;

/** What `morgana configure` fixed, embedded in the generated entry point. */
export interface BootManifest {
  name: string;
  target: TargetConfig;
  /** Configure-time values as text, by key name. */
  configured: Record<string, string>;
  /** Absolute folder of config.ts. */
  projectDir: string;
  /** Absolute build folder. */
  buildDir: string;
  /** Device ids in start order, to detect a config.ts changed since configure. */
  devices: string[];
  /** The Morgana version that configured it. */
  morgana: string;
}

const log = (message: string) => void process.stderr.write(`[morgana] ${message}\n`);

/** Whether a device value is a stack made by createStack (the socket stack has no counters). */
function isMorganaStack(value: unknown): value is Stack {
  const v = value as Partial<Stack> | undefined;
  return typeof v?.stats === 'function' && Array.isArray(v.interfaces) && v.arp !== undefined;
}

/** For a failure that needs privileges the user lacks: where to go without them. */
function rootlessHint(error: unknown, target: TargetConfig): string {
  const code = (error as { code?: unknown }).code;
  if (code === 'ERR_TAP_PERMISSION' && target.name === 'unix') {
    return '\n[morgana] the unix --net direct target needs root (CAP_NET_ADMIN) for its TAP device; without root, configure -t vnet (an in-process network; --forward HOSTPORT:PORT reaches it) or -t unix --net socket (host sockets)';
  }
  if (code === 'ERR_ADDRESS_IN_USE' && target.name === 'unix' && target.net === 'socket') {
    return '\n[morgana] the port is taken on this host by another program: choose another with a boot argument, e.g. morgana run -- --port=8081';
  }
  if (code === 'ERR_PERMISSION' && target.name === 'unix' && target.net === 'socket') {
    return '\n[morgana] ports below 1024 need root (or CAP_NET_BIND_SERVICE) on host sockets: choose another, e.g. morgana run -- --port=8080, or configure -t vnet --forward 8080:80';
  }
  return '';
}

/** Key values: runtime value, else configure-time value, else the default. */
export function resolveKeys(graph: DeviceGraph, configured: Record<string, string>, runtime: Map<string, unknown>): Map<string, unknown> {
  const values = new Map<string, unknown>();
  for (const [name, k] of graph.keys) {
    const fixed = configured[name] !== undefined ? k.parse(configured[name]!) : undefined;
    if (k.stage !== 'configure' && runtime.has(name)) values.set(name, runtime.get(name));
    else if (fixed !== undefined) values.set(name, fixed);
    else values.set(name, k.default);
  }
  return values;
}

/** The runtime keys (stage `runtime` or `both`). */
export function runtimeKeys(graph: DeviceGraph, target?: TargetConfig): Map<string, Key<unknown>> {
  return new Map([...graph.keys].filter(([, k]) => k.stage !== 'configure' && (!target || keyAppliesTo(k, target))));
}

/**
 * Where forwarded ports go by default: the unikernel's IPv4 address, or on an IPv6-only
 * unikernel its link-local address (stable, and on the gateway's link from the start).
 */
function forwardTarget(guest: StackV4): string {
  if (guest.address !== '0.0.0.0') return guest.address;
  return guest.ipv6?.addresses().find((a) => a.startsWith('fe80:')) ?? guest.address;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Boots a unikernel: what the generated entry point calls. Resolves to the exit code: 0 when
 * `start` resolved (or the integer it resolved to), 1 when it failed, 63 after `--help`, 64 for
 * bad boot arguments.
 */
export async function boot(config: Config, manifest: BootManifest, args: readonly string[], loadUnikernel: () => Promise<Record<string, unknown>>): Promise<number> {
  let graph: DeviceGraph;
  try {
    graph = deviceGraph(config);
  } catch (error) {
    log(errorMessage(error));
    return EXIT.failure;
  }
  const ids = graph.nodes.map((n) => n.id);
  if (ids.join(' ') !== manifest.devices.join(' ')) {
    log(`config.ts changed since morgana configure (devices ${ids.join(', ')} instead of ${manifest.devices.join(', ')}); run morgana configure again`);
    return EXIT.failure;
  }

  // Forwards added at run time (morgana run -p/--forward) on top of those configure fixed.
  const extraForwards = process.env.MORGANA_FORWARD;
  delete process.env.MORGANA_FORWARD;
  if (extraForwards) {
    try {
      if (manifest.target.name !== 'vnet') throw new MorganaError('ERR_USAGE', `-p/--forward applies to the vnet target only (this unikernel is configured for ${manifest.target.name})`);
      manifest.target = { ...manifest.target, forward: [...manifest.target.forward, ...extraForwards.split('\n').map(parseForward)] };
    } catch (error) {
      process.stderr.write(`${manifest.name}: ${errorMessage(error)}\n`);
      return EXIT.usage;
    }
  }
  const keys = runtimeKeys(graph, manifest.target);
  let parsed;
  try {
    parsed = parseKeyArguments(bootArguments(args), keys);
  } catch (error) {
    process.stderr.write(`${manifest.name}: ${errorMessage(error)}\nTry '--help' for the runtime options.\n`);
    return EXIT.usage;
  }
  if (parsed.help) {
    const defaults = resolveKeys(graph, manifest.configured, new Map());
    const shown = [...keys.values()].map((k) => ({ ...k, default: defaults.get(k.name) ?? k.default }));
    process.stdout.write(`usage: ${manifest.name} [OPTION…] [ARGUMENT…]\n\n${manifest.name}: a Morgana unikernel for ${manifest.target.name}.\n\nruntime options:\n${keysHelp(shown as Key<unknown>[], [{ left: '  --help', right: 'Show this help (exit code 63).' }])}\n`);
    return EXIT.help;
  }
  const values = resolveKeys(graph, manifest.configured, parsed.values);
  try {
    checkKeyValues(graph, (p) => (isKey(p) ? (values.get(p.name) as never) : p));
  } catch (error) {
    process.stderr.write(`${manifest.name}: ${errorMessage(error)}\nTry '--help' for the runtime options.\n`);
    return EXIT.usage;
  }

  const controller = new AbortController();
  const keepAlive = setInterval(() => {}, 1 << 30);
  const connected: Array<{ id: string; value: unknown; disconnect: (v: unknown) => Promise<void> }> = [];
  const byId = new Map<string, unknown>();
  let forwards: (Running & { list: MonitoredForward[] }) | undefined;
  let monitors: Running | undefined;
  let gateway: { stack: Stack; dhcp: DhcpServer | undefined; stop(): Promise<void> } | undefined;
  const sw = manifest.target.name === 'vnet' ? new VirtualSwitch({ mtu: manifest.target.mtu ?? DEFAULT_VNET_MTU }) : undefined;
  let signalled: string | undefined;
  let onSignal!: (name: string) => void;
  const signalPromise = new Promise<'signal'>((resolve) => {
    onSignal = (name) => {
      signalled = name;
      controller.abort();
      resolve('signal');
    };
  });
  // SIGINT, SIGTERM and SIGHUP stop the unikernel. A terminal's Ctrl-C reaches it twice (from the
  // terminal and forwarded by \`morgana run\`): repeats within a second are that, not a second
  // request; a later one while stopping forces the exit.
  let firstSignalAt = 0;
  const stopSignals: Array<[NodeJS.Signals, () => void]> = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((name) => [
    name,
    () => {
      if (signalled === undefined) {
        firstSignalAt = Date.now();
        onSignal(name);
      } else if (Date.now() - firstSignalAt > 1000) {
        log(`${name} again: exiting without stopping the devices`);
        process.exit(128 + (name === 'SIGINT' ? 2 : name === 'SIGTERM' ? 15 : 1));
      }
    },
  ]);
  for (const [name, handler] of stopSignals) process.on(name, handler);
  // An error nobody handled (a socket's 'error' event, a throw in a callback) ends the unikernel
  // as it ends any Node process, exit 1, but with the hint a user can act on.
  const uncaught = (error: unknown) => {
    const morgana = error instanceof MorganaError;
    log(`uncaught error: ${!morgana && error instanceof Error && error.stack ? error.stack : errorMessage(error)}${rootlessHint(error, manifest.target)}`);
    process.exit(EXIT.failure);
  };
  process.on('uncaughtException', uncaught);
  // The wrapper that started us (morgana run/start) is gone: stop, as on SIGTERM.
  // \`morgana start\` builds into a temporary folder it removes; if it died first, we remove it.
  const temporaryBuildDir = process.env.MORGANA_TEMPORARY_BUILD_DIR === manifest.buildDir ? manifest.buildDir : undefined;
  delete process.env.MORGANA_TEMPORARY_BUILD_DIR;
  let parentGone = false;
  const unwatchParent = watchParent(() => {
    parentGone = true;
    // Our output may have been a pipe to it: writes now fail with EPIPE, which must not crash the stop.
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
    if (signalled === undefined) onSignal('parent process exited');
  });
  // SIGUSR2 prints a summary of every Morgana stack (addresses, ARP, connections, counters) on
  // stderr; with MORGANA_SUMMARY_JSON=1, as one line of JSON, {"morganaSummary":{"stacks":{ID:…}}}.
  const summaryJson = process.env.MORGANA_SUMMARY_JSON === '1';
  const summary = () => {
    const stacks: Array<[string, unknown]> = [...byId];
    if (gateway) stacks.push(['vnet gateway', gateway.stack]);
    if (summaryJson) {
      const data = Object.fromEntries(stacks.filter(([, value]) => isMorganaStack(value)).map(([id, value]) => [id, stackSummaryData(value as Stack)]));
      process.stderr.write(`${JSON.stringify({ morganaSummary: { name: manifest.name, stacks: data } })}\n`);
      return;
    }
    for (const [id, value] of stacks) {
      if (isMorganaStack(value)) log(`${id}:\n${formatStackSummary(value).replace(/^/gm, '    ')}`);
    }
  };
  process.on('SIGUSR2', summary);

  const shutdown = async () => {
    for (const [name, handler] of stopSignals) process.off(name, handler);
    process.off('uncaughtException', uncaught);
    unwatchParent();
    process.off('SIGUSR2', summary);
    controller.abort();
    if (monitors) await monitors.stop().catch((e) => log(`monitor: ${errorMessage(e)}`));
    if (forwards) await forwards.stop().catch((e) => log(`vnet: ${errorMessage(e)}`));
    if (gateway) await gateway.stop().catch((e) => log(`vnet: ${errorMessage(e)}`));
    for (const d of connected.reverse()) {
      try {
        await d.disconnect(d.value);
      } catch (error) {
        log(`stopping ${d.id}: ${errorMessage(error)}`);
      }
    }
    if (sw) await sw.close();
    clearInterval(keepAlive);
  };

  const valueOf = <T>(p: unknown) => (isKey(p) ? (values.get(p.name) as T) : (p as T));
  const firstStack = graph.nodes.find((n) => n.device.provides === 'stack');
  try {
    if (sw) {
      // The gateway comes first: a unikernel configured by DHCP needs its server while it connects.
      const args = firstStack?.device.args ?? {};
      gateway = await vnetGateway(sw, {
        dhcp: args.dhcp === true,
        ipv4: valueOf<string | undefined>(args.ipv4) ?? (defaultKeys.ipv4.default as string),
        gateway: valueOf<string | undefined>(args.gateway) || undefined,
        ipv6: valueOf<boolean | undefined>(args.ipv4Only) !== true,
        ipv6Only: valueOf<boolean | undefined>(args.ipv6Only) === true,
        ipv6Address: valueOf<string | undefined>(args.ipv6) || undefined,
        gateway6: valueOf<string | undefined>(args.gateway6) || undefined,
      });
    }
    for (const node of graph.nodes) {
      const ctx: DeviceContext = {
        target: manifest.target,
        projectDir: manifest.projectDir,
        buildDir: manifest.buildDir,
        vswitch: sw,
        value: valueOf,
        log: (m) => log(`${node.id}: ${m}`),
      };
      const deps = Object.fromEntries(Object.entries(node.deps).map(([role, id]) => [role, byId.get(id)]));
      const value = await node.device.connect(ctx, deps);
      byId.set(node.id, value);
      connected.push({ id: node.id, value, disconnect: node.device.disconnect as (v: unknown) => Promise<void> });
    }
    if (gateway) {
      forwards = await vnetForwards(gateway.stack, manifest.target, firstStack ? forwardTarget(byId.get(firstStack.id) as StackV4) : '10.0.0.2');
    }
    // --dashboard / --metrics of morgana run: the monitor sees every Morgana stack, the switch and the forwards.
    const started = await startRequestedMonitors(
      {
        title: `${manifest.name} (${manifest.target.name})`,
        stacks: () => [
          ...[...byId].filter((e): e is [string, Stack] => isMorganaStack(e[1])).map(([name, stack]) => ({ name, stack })),
          ...(gateway ? [{ name: 'vnet gateway', stack: gateway.stack, role: 'gateway' as const }] : []),
        ],
        switches: () => (sw ? [{ name: 'vnet', sw }] : []),
        forwards: () => forwards?.list ?? [],
        dhcpServers: () => (gateway?.dhcp ? [{ name: 'vnet gateway', leases: () => gateway!.dhcp!.leases(), now: () => gateway!.stack.clock.now() }] : []),
      },
      log,
    );
    monitors = { stop: () => started.close() };
  } catch (error) {
    log(`boot failed: ${errorMessage(error)}${rootlessHint(error, manifest.target)}`);
    await shutdown();
    return EXIT.failure;
  }

  const devices: Record<string, unknown> = {};
  for (const node of graph.nodes) for (const role of node.roles) devices[role] = byId.get(node.id);
  const keyValues: Record<string, unknown> = {};
  for (const [role, k] of Object.entries(graph.unikernelKeys)) keyValues[role] = values.get(k.name);

  let code: number = EXIT.ok;
  try {
    const mod = await loadUnikernel();
    const start = mod.start ?? (mod.default as { start?: unknown } | undefined)?.start;
    if (typeof start !== 'function') throw new MorganaError('ERR_CONFIG_NO_START', `${config.unikernel} does not export a start function`);
    const running = Promise.resolve((start as (...a: unknown[]) => unknown)(devices, { keys: keyValues, argv: parsed.positional, signal: controller.signal }));
    const outcome = await Promise.race([running.then((v) => ({ v })), signalPromise]);
    if (outcome === 'signal') log(`${signalled}: stopping`);
    // A start that returns ends the unikernel, listeners and all: say so, as it is easy to forget
    // to keep start pending (a serving unikernel awaits the abort of its signal).
    else log(`start returned${outcome.v === undefined ? '' : ` ${JSON.stringify(outcome.v)}`}: stopping (a unikernel that serves keeps start pending until its signal aborts)`);
    if (outcome !== 'signal' && Number.isInteger(outcome.v) && (outcome.v as number) >= 0 && (outcome.v as number) < 256) code = outcome.v as number;
  } catch (error) {
    log(`${manifest.name}: ${error instanceof Error && error.stack ? error.stack : errorMessage(error)}${rootlessHint(error, manifest.target)}`);
    code = EXIT.failure;
  }
  await shutdown();
  if (parentGone && temporaryBuildDir) rmSync(temporaryBuildDir, { recursive: true, force: true });
  return code;
}
