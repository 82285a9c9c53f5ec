/**
 * `morgana deploy <image> …`: checks, provisions and runs a Solo5 unikernel in the foreground,
 * printing its console, until it exits or this process gets SIGINT / SIGTERM (then it stops the
 * unikernel and removes the TAPs and bridges it created).
 * @module
 */
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { type Command, EXIT_USAGE } from './command.js';
import { MorganaError } from '../errors.js';
import { SOLO5_LOG_LEVELS, type Solo5LogLevel } from '../solo5/args.js';
import { type BlockAttachment, type DeployOptions, type DeployTarget, type NetAttachment, deployUnikernel, planDeployment } from '../solo5/deploy.js';
import type { ExitInfo } from '../solo5/exit.js';
import { parseSize } from '../solo5/host.js';
import type { UserNetAttachment } from '../solo5/user-net.js';
import { type Forward, parseForward } from '../config/targets.js';
import { daemonRequest, defaultDaemonDir } from '../daemon/supervisor.js';
import { daemonDeploy, spawnDaemon } from './daemon-client.js';

const USAGE = `morgana deploy <image> [--target hvt|spt|virtio] [--name N] [--mem MB]
         [--net NAME=TAP[@BRIDGE][,mac=MAC]]... [--block NAME=FILE[,size=64M][,sector=512]]...
         [--net NAME=user[,mac=MAC][,ip=10.0.2.15/24][,gateway=IP][,dns=IP][,max-conns=N][,max-udp=N][,no-outbound][,no-host-loopback]]
         [--forward|-p [tcp:|udp:][HOSTADDR:]HOSTPORT:GUESTPORT]... [--pcap FILE] [--namespace auto|user|net]
         [--accel kvm|tcg|auto]
         [--tender PATH] [--restart no|on-failure] [--max-restarts N] [--backoff MS]
         [--log FILE] [--log-level quiet|error|warn|info|debug] [--user NAME]
         [--gdb] [--gdb-port N] [--dumpcore DIR] [--netns NS] [--dry-run] [-d|--detach] [-- guest args]
   -d: hand the unikernel to the daemon (started when none runs), as morgana daemon deploy does;
       then morgana ps, logs -f NAME, stop NAME`;

/** Thrown for malformed command-line options. */
export class UsageError extends Error {}

function parseUserNet(spec: string): UserNetAttachment | undefined {
  const [main, ...opts] = spec.split(',');
  const m = /^([^=]+)=user$/.exec(main!);
  if (!m) return undefined;
  const net: UserNetAttachment = { name: m[1]! };
  for (const o of opts) {
    const [k, v] = [o.slice(0, o.indexOf('=') < 0 ? o.length : o.indexOf('=')), o.slice(o.indexOf('=') + 1)];
    if (k === 'mac') net.mac = v;
    else if (k === 'ip') net.guest = v.includes('/') ? v : `${v}/24`;
    else if (k === 'gateway') net.gateway = v;
    else if (k === 'dns') net.dns = v;
    else if (k === 'max-conns') net.maxConnections = int(v, 'max-conns');
    else if (k === 'max-udp') net.maxUdpFlows = int(v, 'max-udp');
    else if (o === 'no-outbound') net.outbound = false;
    else if (o === 'no-host-loopback') net.hostLoopback = false;
    else throw new UsageError(`unknown --net option '${o}' (user-mode: mac, ip, gateway, dns, max-conns, max-udp, no-outbound, no-host-loopback)`);
  }
  return net;
}

function parseNet(spec: string): NetAttachment {
  const [main, ...opts] = spec.split(',');
  const m = /^([^=]+)=([^@]+)(?:@(.+))?$/.exec(main!);
  if (!m) throw new UsageError(`--net must be NAME=TAP[@BRIDGE][,mac=MAC], got '${spec}'`);
  const net: NetAttachment = { name: m[1]!, tap: m[2]!, ...(m[3] ? { bridge: m[3] } : {}) };
  for (const o of opts) {
    if (o.startsWith('mac=')) net.mac = o.slice(4);
    else throw new UsageError(`unknown --net option '${o}'`);
  }
  return net;
}

function parseBlock(spec: string): BlockAttachment {
  const [main, ...opts] = spec.split(',');
  const i = main!.indexOf('=');
  if (i <= 0 || i === main!.length - 1) throw new UsageError(`--block must be NAME=FILE[,size=SIZE][,sector=N], got '${spec}'`);
  const block: BlockAttachment = { name: main!.slice(0, i), file: main!.slice(i + 1) };
  for (const o of opts) {
    if (o.startsWith('size=')) {
      const size = parseSize(o.slice(5));
      if (!Number.isFinite(size) || size <= 0) throw new UsageError(`bad block size '${o.slice(5)}'`);
      block.size = size;
    } else if (o.startsWith('sector=')) {
      block.sectorSize = Number(o.slice(7));
    } else throw new UsageError(`unknown --block option '${o}'`);
  }
  return block;
}

function int(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number, got '${text}'`);
  return Number(text);
}

/** Parses `deploy` arguments into {@link DeployOptions} (plus `dryRun`). Throws {@link UsageError}. */
export function parseDeployArgs(args: string[]): DeployOptions & { dryRun: boolean; detach: boolean } {
  const dash = args.indexOf('--');
  const guest = dash === -1 ? [] : args.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: dash === -1 ? args : args.slice(0, dash),
      allowPositionals: true,
      options: {
        target: { type: 'string' },
        name: { type: 'string' },
        mem: { type: 'string' },
        net: { type: 'string', multiple: true },
        block: { type: 'string', multiple: true },
        tender: { type: 'string' },
        restart: { type: 'string' },
        'max-restarts': { type: 'string' },
        backoff: { type: 'string' },
        log: { type: 'string' },
        'log-level': { type: 'string' },
        user: { type: 'string' },
        gdb: { type: 'boolean' },
        'gdb-port': { type: 'string' },
        dumpcore: { type: 'string' },
        'dry-run': { type: 'boolean' },
        detach: { type: 'boolean', short: 'd' },
        netns: { type: 'string' },
        forward: { type: 'string', multiple: true, short: 'p' },
        pcap: { type: 'string' },
        namespace: { type: 'string' },
        accel: { type: 'string' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing image' : `unexpected argument '${positionals[1]}' (guest arguments go after --)`);
  if (v.target !== undefined && !['hvt', 'spt', 'virtio'].includes(v.target)) throw new UsageError(`--target must be hvt, spt or virtio`);
  if (v.restart !== undefined && v.restart !== 'no' && v.restart !== 'on-failure') throw new UsageError(`--restart must be no or on-failure`);
  if (v['log-level'] !== undefined && !SOLO5_LOG_LEVELS.includes(v['log-level'] as Solo5LogLevel)) throw new UsageError(`--log-level must be one of ${SOLO5_LOG_LEVELS.join(', ')}`);
  const maxRestarts = int(v['max-restarts'], '--max-restarts');
  const backoffMs = int(v.backoff, '--backoff');
  const memoryMB = int(v.mem, '--mem');
  const gdbPort = int(v['gdb-port'], '--gdb-port');
  if (v.namespace !== undefined && !['auto', 'user', 'net'].includes(v.namespace)) throw new UsageError('--namespace must be auto, user or net');
  if (v.accel !== undefined && !['kvm', 'tcg', 'auto'].includes(v.accel)) throw new UsageError('--accel must be kvm, tcg or auto');
  const userNets: UserNetAttachment[] = [];
  const hostNets: NetAttachment[] = [];
  for (const spec of v.net ?? []) {
    const u = parseUserNet(spec);
    if (u) userNets.push(u);
    else hostNets.push(parseNet(spec));
  }
  let forwards: Forward[];
  try {
    forwards = (v.forward ?? []).map(parseForward);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if ((forwards.length > 0 || v.pcap) && userNets.length !== 1) throw new UsageError('--forward and --pcap need exactly one user-mode network (--net NAME=user)');
  if (userNets[0]) {
    if (forwards.length > 0) userNets[0].forwards = forwards;
    if (v.pcap) userNets[0].pcap = v.pcap;
  }
  return {
    image: positionals[0]!,
    ...(v.target ? { target: v.target as DeployTarget } : {}),
    ...(v.name ? { name: v.name } : {}),
    ...(memoryMB !== undefined ? { memoryMB } : {}),
    nets: hostNets,
    ...(userNets.length ? { userNets } : {}),
    ...(v.namespace ? { namespace: v.namespace as 'auto' | 'user' | 'net' } : {}),
    ...(v.accel ? { accel: v.accel as 'kvm' | 'tcg' | 'auto' } : {}),
    blocks: (v.block ?? []).map(parseBlock),
    args: guest,
    ...(v.tender ? { tender: v.tender } : {}),
    ...(v.restart === 'on-failure' ? { restart: { mode: 'on-failure' as const, ...(maxRestarts !== undefined ? { maxRestarts } : {}), ...(backoffMs !== undefined ? { backoffMs } : {}) } } : {}),
    ...(v.log ? { logFile: v.log } : {}),
    ...(v['log-level'] ? { logLevel: v['log-level'] as Solo5LogLevel } : {}),
    ...(v.user ? { user: v.user } : {}),
    ...(v.gdb ? { gdb: true } : {}),
    ...(gdbPort !== undefined ? { gdbPort } : {}),
    ...(v.dumpcore ? { dumpcore: v.dumpcore } : {}),
    ...(v.netns ? { netns: v.netns } : {}),
    dryRun: Boolean(v['dry-run']),
    detach: Boolean(v.detach),
  };
}

/** The exit status `morgana deploy` reports for a unikernel's final exit. */
export function exitStatus(exit: ExitInfo): number {
  if (exit.kind === 'stopped' || exit.kind === 'clean') return 0;
  if (exit.signal) return 128 + (constants.signals[exit.signal] ?? 0);
  return exit.code ?? 1;
}

/** Prints a MorganaError and returns the exit code for it. */
export function reportError(prefix: string, error: unknown): number {
  if (error instanceof UsageError) {
    process.stderr.write(`${prefix}: ${error.message}\n`);
    return EXIT_USAGE;
  }
  if (error instanceof MorganaError) {
    process.stderr.write(`${prefix}: ${error.code}: ${error.message}\n`);
    return error.code === 'ERR_SOLO5_BAD_OPTION' || error.code === 'ERR_SOLO5_BAD_GUEST_ARG' || error.code === 'ERR_INVALID_MAC' ? EXIT_USAGE : 1;
  }
  throw error;
}

/**
 * `morgana deploy -d`: the deployment goes to the daemon in the default directory, started in the
 * background when none answers (as `morgana run -d` does).
 */
async function deployDetached(options: DeployOptions): Promise<number> {
  const dir = defaultDaemonDir();
  try {
    await daemonRequest(dir, { cmd: 'ping' });
  } catch (error) {
    if (!(error instanceof MorganaError) || error.code !== 'ERR_DAEMON_UNREACHABLE') throw error;
    const pid = await spawnDaemon(dir);
    process.stderr.write(`morgana deploy: started a daemon (pid ${pid}) in ${dir}; stop it with kill ${pid}\n`);
  }
  const uk = await daemonDeploy(dir, options);
  process.stderr.write(`morgana deploy: ${uk.name} runs under the daemon; see morgana ps, morgana logs -f ${uk.name}, morgana stop ${uk.name}\n`);
  return 0;
}

/** The deploy command. */
export const deploy: Command = {
  summary: 'Check, provision and run a Solo5 unikernel (hvt, spt, virtio) in the foreground',
  usage: USAGE,
  async run(args) {
    let options;
    try {
      options = parseDeployArgs(args);
    } catch (error) {
      if (error instanceof UsageError) process.stderr.write(`usage: ${USAGE}\n`);
      return reportError('morgana deploy', error);
    }
    const { dryRun, detach, ...deployOptions } = options;
    try {
      if (detach) {
        if (dryRun) throw new UsageError('--dry-run and -d do not go together');
        if (deployOptions.logFile) throw new UsageError('the daemon keeps the console log itself (no --log with -d)');
        return await deployDetached(deployOptions);
      }
      if (dryRun) {
        const plan = await planDeployment(deployOptions);
        process.stdout.write(`${JSON.stringify({ name: plan.name, target: plan.target, abi: plan.abi, tender: plan.tender, tenderVersion: plan.tenderVersion, command: plan.command }, null, 2)}\n`);
        return 0;
      }
      const uk = await deployUnikernel(deployOptions);
      uk.gateways.forEach((g, i) => {
        const name = deployOptions.userNets?.[i]?.name;
        process.stderr.write(`morgana deploy: ${uk.name}: ${name}: user-mode network: guest ${g.guest}, gateway ${g.gateway}, DNS ${g.dns}\n`);
        for (const f of g.forwards) process.stderr.write(`morgana deploy: ${uk.name}: ${name}: forwarding ${f.protocol} ${f.hostAddress.includes(':') ? `[${f.hostAddress}]` : f.hostAddress}:${f.hostPort} -> ${f.guestAddress}:${f.guestPort}\n`);
      });
      for (const l of uk.console()) (l.stream === 'stdout' ? process.stdout : process.stderr).write(`${l.line}\n`);
      uk.on('console', (l) => (l.stream === 'stdout' ? process.stdout : process.stderr).write(`${l.line}\n`));
      uk.on('restart', (n, delay) => process.stderr.write(`morgana deploy: ${uk.name}: restart ${n} in ${delay} ms\n`));
      uk.on('exit', (exit, final) => process.stderr.write(`morgana deploy: ${uk.name}: ${exit.description}${final ? '' : ' (will restart)'}\n`));
      uk.on('cleanupError', (e) => process.stderr.write(`morgana deploy: ${e.message}\n`));
      const onSignal = (): void => void uk.stop();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const exit = await uk.exited;
      uk.gateways.forEach((g, i) => {
        const s = g.stats();
        const name = deployOptions.userNets?.[i]?.name;
        process.stderr.write(
          `morgana deploy: ${uk.name}: ${name}: gateway: tcp ${s.accepted.forwardedTcp} forwarded, ${s.accepted.outboundTcp} outbound; udp ${s.accepted.forwardedUdp} forwarded, ${s.accepted.outboundUdp} outbound flows; refused tcp ${s.refused.tcp} (host refused ${s.refused.hostRefusedTcp}), udp ${s.refused.udp}\n`,
        );
      });
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      return exitStatus(exit);
    } catch (error) {
      return reportError('morgana deploy', error);
    }
  },
};
