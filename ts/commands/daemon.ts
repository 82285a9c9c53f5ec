/**
 * `morgana daemon`: a supervisor for Solo5 and TypeScript unikernels with a local control socket
 * (and optionally remote management over TLS and a metrics endpoint).
 *
 * - `morgana daemon [serve] [--dir DIR] [--metrics H:P] [--http H:P (web view)] [--listen H:P --tls-cert F --tls-key F
 *   --client-ca F [--crl F]] [--max-connections N] [--idle-timeout MS] [--files-dir DIR]…`: runs the daemon until
 *   SIGINT / SIGTERM (the unikernels keep running; a restarted daemon adopts them — except those on
 *   user-mode networks, whose gateway runs in the daemon: stopped, then started again).
 * - Client subcommands (local by default, `--remote H:P --cert F --key F --ca F` for a remote
 *   daemon): deploy, ps, console, logs, stop, restart, stats, events, update, status, policy,
 *   block.
 * @module
 */
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type DaemonWeb, startDaemonWeb } from '../daemon/web.js';
import { parseListenAddress } from '../monitor/runtime.js';
import type { Command } from './command.js';
import type { DaemonEvent } from '../daemon/events.js';
import type { ResourcePolicy } from '../daemon/policy.js';
import { selfCommand } from './self.js';
import type { ConsoleLine } from '../solo5/console.js';
import { type DaemonTarget, type DaemonUnikernelInfo, daemonRequest, defaultDaemonDir, formatForwards, startDaemon } from '../daemon/supervisor.js';
import { parseSize } from '../solo5/host.js';
import { UsageError, parseDeployArgs, reportError } from './deploy.js';
import { daemonDeploy } from './daemon-client.js';

const CLIENT = `[--dir DIR | --remote HOST:PORT --cert FILE --key FILE --ca FILE]`;
const USAGE = `morgana daemon [serve] [--dir DIR] [--metrics HOST:PORT] [--http HOST:PORT] [--max-connections N] [--idle-timeout MS]
               [--listen HOST:PORT --tls-cert FILE --tls-key FILE --client-ca FILE [--crl FILE]] [--files-dir DIR]...
               (clients may name host files — --pcap, --block NAME=FILE — only inside DIR/files and each --files-dir;
               a client confined to owner path a:b only inside their a/b/ directories, which you make)
       morgana daemon deploy <image> [deploy options] [--cpus 0,1] [--start-order N] [-- guest args]
               (--block NAME=@DEVICE attaches a block device of the daemon; --net NAME=user and
               -p/--forward: a user-mode network whose gateway runs in the daemon)
       morgana daemon ps [--json]
       morgana daemon console|logs <name> [--count N] [-f|--follow]
       morgana daemon stop|restart <name>
       morgana daemon stats <name> [--json]
       morgana daemon events [<name>] [--count N] [-f|--follow] [--json]
       morgana daemon update <name> <image> [--boot-ms MS]
       morgana daemon status
       morgana daemon policy set <path> [--max-unikernels N] [--mem MB] [--cpus 0,1] [--bridges br0,br1] [--block-quota SIZE]
               [--forward-addresses 127.0.0.1,::1] [--forward-ports 1024-65535] [--max-forwards N]
               [--host-loopback yes|no] [--outbound yes|no]
               (forwards of user-mode networks: host addresses and ports they may bind, how many per
               unikernel; default where no policy says: 127.0.0.1,::1 and 1024-65535; whether their
               guests may reach the host's loopback through the gateway and go outbound: default no
               and yes)
       morgana daemon policy list | remove <path>
       morgana daemon block create <name> <size> | list | info <name> | delete <name>
       morgana daemon block dump <name> <file|-> | restore <name> <file|->
   every client subcommand takes ${CLIENT}`;

/** Where the client subcommands go, taken out of `args`. */
export function takeTarget(args: string[]): { target: DaemonTarget; dir: string; remote: boolean; rest: string[] } {
  const dash = args.indexOf('--');
  const head = dash === -1 ? args : args.slice(0, dash);
  const tail = dash === -1 ? [] : args.slice(dash);
  const found: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < head.length; i++) {
    const a = head[i]!;
    const m = /^--(dir|remote|cert|key|ca)(?:=(.*))?$/.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const value = m[2] ?? head[++i];
    if (value === undefined) throw new UsageError(`--${m[1]} needs a value`);
    found[m[1]!] = value;
  }
  const dir = found.dir ?? defaultDaemonDir();
  if (found.remote !== undefined) {
    const missing = ['cert', 'key', 'ca'].filter((k) => found[k] === undefined);
    if (missing.length) throw new UsageError(`--remote needs ${missing.map((k) => `--${k}`).join(', ')}`);
    return { target: { remote: found.remote, cert: found.cert!, key: found.key!, ca: found.ca! }, dir, remote: true, rest: [...rest, ...tail] };
  }
  for (const k of ['cert', 'key', 'ca']) if (found[k] !== undefined) throw new UsageError(`--${k} goes with --remote`);
  return { target: dir, dir, remote: false, rest: [...rest, ...tail] };
}

function printLine(l: ConsoleLine): void {
  (l.stream === 'stderr' ? process.stderr : process.stdout).write(`${l.line}\n`);
}

function intOption(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a whole number, got '${text}'`);
  return Number(text);
}

/** Parses `0,1,4-6` into CPU ids. */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(part);
    if (!m) throw new UsageError(`--cpus must be CPU ids such as 0,1 or 0-3, got '${text}'`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi > 4095) throw new UsageError(`bad CPU range '${part}'`);
    for (let c = lo; c <= hi; c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

async function serve(dir: string, args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        metrics: { type: 'string' },
        http: { type: 'string' },
        listen: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'client-ca': { type: 'string' },
        crl: { type: 'string' },
        'max-connections': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'boot-ms': { type: 'string' },
        'files-dir': { type: 'string', multiple: true },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const tlsParts = [values['tls-cert'], values['tls-key'], values['client-ca']];
  if (values.listen !== undefined && tlsParts.some((v) => v === undefined)) throw new UsageError('--listen needs --tls-cert, --tls-key and --client-ca (remote management is always mutually authenticated TLS)');
  if (values.listen === undefined && tlsParts.some((v) => v !== undefined)) throw new UsageError('--tls-cert, --tls-key and --client-ca go with --listen');
  const maxConnections = intOption(values['max-connections'], '--max-connections');
  const idleTimeoutMs = intOption(values['idle-timeout'], '--idle-timeout');
  const bootMs = intOption(values['boot-ms'], '--boot-ms');
  const daemon = await startDaemon(dir, {
    limits: { ...(maxConnections !== undefined ? { maxConnections } : {}), ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}) },
    ...(values.metrics ? { metrics: values.metrics } : {}),
    ...(values.listen ? { tls: { listen: values.listen, cert: values['tls-cert']!, key: values['tls-key']!, clientCa: values['client-ca']!, ...(values.crl ? { crl: values.crl } : {}) } } : {}),
    ...(bootMs !== undefined ? { bootMs } : {}),
    ...(values['files-dir'] ? { filesDirs: values['files-dir'] } : {}),
  });
  process.stderr.write(`morgana daemon: listening on ${daemon.socket}\n`);
  process.stderr.write(`morgana daemon: client files (pcap, block files) inside ${daemon.filesDirs.join(', ')} (a tenant confined to O=acme only inside their acme/ directories, e.g. ${path.join(daemon.filesDirs[0]!, 'acme')}, which you make with install -d -m 0700)\n`);
  if (daemon.tlsAddress) process.stderr.write(`morgana daemon: TLS on ${daemon.tlsAddress.address}:${daemon.tlsAddress.port}\n`);
  if (daemon.metricsAddress) process.stderr.write(`morgana daemon: metrics on http://${daemon.metricsAddress.address}:${daemon.metricsAddress.port}/metrics\n`);
  let web: DaemonWeb | undefined;
  if (values.http !== undefined) {
    const { host, port } = parseListenAddress(values.http, '--http');
    try {
      web = await startDaemonWeb(dir, { host, port });
    } catch (error) {
      await daemon.close();
      throw error;
    }
    process.stderr.write(`morgana daemon: web view on ${web.url}\n`);
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await web?.close();
  await daemon.close();
  process.stderr.write('morgana daemon: stopped (unikernels keep running; those on user-mode networks were stopped, and the next daemon starts them again)\n');
  return 0;
}

export { spawnDaemon } from './daemon-client.js';

function one(rest: string[], what: string): string {
  if (rest.length !== 1) throw new UsageError(`${what} takes exactly one name`);
  return rest[0]!;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

/** A unikernel's forwarded ports in `ps`'s table, as `docker ps` shows them: `127.0.0.1:8080->80/tcp`. */
function formatPorts(u: Pick<DaemonUnikernelInfo, 'networks'>): string {
  return formatForwards(u.networks).join(',') || '-';
}

/** `ps`: a table (or JSON) of the daemon's unikernels. */
export async function psCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean' } }, allowPositionals: true });
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const list = (await daemonRequest(target, { cmd: 'ps' })).unikernels as DaemonUnikernelInfo[];
  if (values.json) {
    process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
    return 0;
  }
  // PORTS only when a unikernel has forwarded ports (user-mode networks).
  const ports = list.some((u) => formatForwards(u.networks).length > 0);
  const row = (u: DaemonUnikernelInfo): string[] => [u.name, u.state, String(u.pid ?? '-'), u.target, String(u.restarts), ...(ports ? [formatPorts(u)] : []), u.lastExit?.description ?? '-'];
  process.stdout.write(table([['NAME', 'STATE', 'PID', 'TARGET', 'RESTARTS', ...(ports ? ['PORTS'] : []), 'LAST EXIT'], ...list.map(row)]));
  return 0;
}

/** `console`/`logs`: the console ring of one unikernel, and with `-f` what follows. */
export async function consoleCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: rest, options: { count: { type: 'string' }, follow: { type: 'boolean', short: 'f' } }, allowPositionals: true });
  const name = one(positionals, 'console');
  const count = intOption(values.count, '--count');
  await daemonRequest(target, { cmd: 'console', name, follow: Boolean(values.follow), ...(count !== undefined ? { count } : {}) }, (msg) => {
    if (msg.console) printLine(msg.console as ConsoleLine);
    if (msg.exit) process.stderr.write(`morgana: ${name}: ${(msg.exit as { description: string }).description}\n`);
  });
  return 0;
}

/** `stop`. */
export async function stopCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const name = one(rest, 'stop');
  const r = await daemonRequest(target, { cmd: 'stop', name });
  process.stdout.write(`${name}: ${(r.exit as { description?: string } | undefined)?.description ?? 'stopped'}\n`);
  return 0;
}

/** `stats`: JSON with `--json`, else a short summary. */
export async function statsCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean' } }, allowPositionals: true });
  const name = one(positionals, 'stats');
  const s = (await daemonRequest(target, { cmd: 'stats', name })).stats as {
    state: string;
    target: string;
    restarts: number;
    uptimeMs?: number;
    process?: { pid: number; utimeMs: number; stimeMs: number; rssKiB: number };
    nets: Record<string, { tap: string; rxBytes: number; txBytes: number; gateway?: { tcpConnections: number; udpFlows: number; refused: { tcp: number; udp: number } } } | undefined>;
    cpus?: number[];
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const lines = [`${name}: ${s.state} (${s.target}), restarts ${s.restarts}${s.uptimeMs !== undefined ? `, up ${(s.uptimeMs / 1000).toFixed(1)} s` : ''}`];
  if (s.process) lines.push(`  pid ${s.process.pid}, cpu ${((s.process.utimeMs + s.process.stimeMs) / 1000).toFixed(2)} s, rss ${s.process.rssKiB} KiB${s.cpus ? `, cpus ${s.cpus.join(',')}` : ''}`);
  for (const [dev, c] of Object.entries(s.nets)) {
    if (!c) lines.push(`  ${dev}: gone`);
    else if (!c.gateway) lines.push(`  ${dev} (${c.tap}): guest rx ${c.txBytes} B, tx ${c.rxBytes} B`);
    else lines.push(`  ${dev} (user): guest rx ${c.txBytes} B, tx ${c.rxBytes} B; gateway: ${c.gateway.tcpConnections} TCP connections, ${c.gateway.udpFlows} UDP flows open, refused tcp ${c.gateway.refused.tcp}, udp ${c.gateway.refused.udp}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** `events`. */
export async function eventsCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: rest, options: { count: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, json: { type: 'boolean' } }, allowPositionals: true });
  if (positionals.length > 1) throw new UsageError('events takes at most one unikernel name');
  const count = intOption(values.count, '--count');
  await daemonRequest(target, { cmd: 'events', ...(positionals[0] ? { name: positionals[0] } : {}), follow: Boolean(values.follow), ...(count !== undefined ? { count } : {}) }, (msg) => {
    if (!msg.event) return;
    const e = msg.event as DaemonEvent;
    process.stdout.write(values.json ? `${JSON.stringify(e)}\n` : `${e.time}  ${e.type.padEnd(13)} ${e.name ?? '-'}${e.reason ? ` [${e.reason}]` : ''}${e.message ? `  ${e.message}` : ''}${e.by && e.by !== 'local' ? `  (by ${e.by})` : ''}\n`);
  });
  return 0;
}

/** Parses `80,1024-65535` into `[[80, 80], [1024, 65535]]` (`''`: none). */
export function parsePortRanges(text: string): [number, number][] {
  if (text === '') return [];
  return text.split(',').map((part) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    const lo = Number(m?.[1]);
    const hi = m?.[2] === undefined ? lo : Number(m[2]);
    if (!m || lo < 1 || hi > 65535 || hi < lo) throw new UsageError(`--forward-ports must be ports or ranges from 1 to 65535 such as 80,1024-65535, got '${part}'`);
    return [lo, hi];
  });
}

async function policyCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const [sub, ...args] = rest;
  if (sub === 'list') {
    const r = await daemonRequest(target, { cmd: 'policy-list' });
    process.stdout.write(`${JSON.stringify(r.policies, null, 2)}\n`);
    return 0;
  }
  if (sub === 'remove') {
    await daemonRequest(target, { cmd: 'policy-remove', path: one(args, 'policy remove') });
    return 0;
  }
  if (sub !== 'set') throw new UsageError('policy set|list|remove');
  const { values, positionals } = parseArgs({
    args,
    options: {
      'max-unikernels': { type: 'string' },
      mem: { type: 'string' },
      cpus: { type: 'string' },
      bridges: { type: 'string' },
      'block-quota': { type: 'string' },
      'forward-addresses': { type: 'string' },
      'forward-ports': { type: 'string' },
      'max-forwards': { type: 'string' },
      'host-loopback': { type: 'string' },
      outbound: { type: 'string' },
    },
    allowPositionals: true,
  });
  const p = one(positionals, 'policy set');
  const yesNo = (v: string | undefined, flag: string): boolean | undefined => {
    if (v === undefined) return undefined;
    if (v === 'yes' || v === 'no') return v === 'yes';
    throw new UsageError(`${flag} must be yes or no, got '${v}'`);
  };
  const policy: ResourcePolicy = {};
  const max = intOption(values['max-unikernels'], '--max-unikernels');
  if (max !== undefined) policy.maxUnikernels = max;
  const mem = intOption(values.mem, '--mem');
  if (mem !== undefined) policy.memoryMB = mem;
  if (values.cpus !== undefined) policy.cpus = parseCpuList(values.cpus);
  if (values.bridges !== undefined) policy.bridges = values.bridges === '' ? [] : values.bridges.split(',');
  if (values['block-quota'] !== undefined) {
    const bytes = parseSize(values['block-quota']);
    if (!Number.isFinite(bytes)) throw new UsageError(`bad --block-quota '${values['block-quota']}'`);
    policy.blockMB = Math.floor(bytes / (1024 * 1024));
  }
  const maxForwards = intOption(values['max-forwards'], '--max-forwards');
  if (maxForwards !== undefined) policy.maxForwards = maxForwards;
  if (values['forward-addresses'] !== undefined) policy.forwardAddresses = values['forward-addresses'] === '' ? [] : values['forward-addresses'].split(',');
  if (values['forward-ports'] !== undefined) policy.forwardPorts = parsePortRanges(values['forward-ports']);
  const hostLoopback = yesNo(values['host-loopback'], '--host-loopback');
  if (hostLoopback !== undefined) policy.hostLoopback = hostLoopback;
  const outbound = yesNo(values.outbound, '--outbound');
  if (outbound !== undefined) policy.outbound = outbound;
  const r = await daemonRequest(target, { cmd: 'policy-set', path: p, policy });
  process.stdout.write(`${p}: ${JSON.stringify(r.policy)}\n`);
  return 0;
}

async function blockCommand(target: DaemonTarget, rest: string[]): Promise<number> {
  const [sub, ...args] = rest;
  switch (sub) {
    case 'create': {
      if (args.length !== 2) throw new UsageError('block create <name> <size>');
      const size = parseSize(args[1]!);
      if (!Number.isFinite(size)) throw new UsageError(`bad size '${args[1]}'`);
      const r = await daemonRequest(target, { cmd: 'block-create', name: args[0]!, size });
      process.stdout.write(`${args[0]}: ${(r.block as { size: number }).size} bytes\n`);
      return 0;
    }
    case 'list': {
      const r = await daemonRequest(target, { cmd: 'block-list' });
      const list = r.blocks as { name: string; size: number; allocated: number }[];
      process.stdout.write(table([['NAME', 'SIZE', 'ALLOCATED'], ...list.map((b) => [b.name, String(b.size), String(b.allocated)])]));
      return 0;
    }
    case 'info': {
      const r = await daemonRequest(target, { cmd: 'block-info', name: one(args, 'block info') });
      process.stdout.write(`${JSON.stringify(r.block, null, 2)}\n`);
      return 0;
    }
    case 'delete':
      await daemonRequest(target, { cmd: 'block-delete', name: one(args, 'block delete') });
      return 0;
    case 'dump': {
      if (args.length !== 2) throw new UsageError('block dump <name> <file|->');
      const out = args[1] === '-' ? process.stdout : createWriteStream(args[1]!, { mode: 0o600 });
      let pending = Promise.resolve();
      await daemonRequest(target, { cmd: 'block-dump', name: args[0]! }, (msg) => {
        if (typeof msg.data === 'string') {
          const buf = Buffer.from(msg.data, 'base64');
          pending = pending.then(() => new Promise<void>((resolve, reject) => out.write(buf, (e) => (e ? reject(e) : resolve()))));
        }
      });
      await pending;
      if (out !== process.stdout) await new Promise<void>((resolve) => (out as ReturnType<typeof createWriteStream>).end(() => resolve()));
      return 0;
    }
    case 'restore': {
      if (args.length !== 2) throw new UsageError('block restore <name> <file|->');
      const input = args[1] === '-' ? process.stdin : createReadStream(args[1]!);
      const r = await daemonRequest(target, { cmd: 'block-restore', name: args[0]! }, undefined, input as AsyncIterable<Buffer>);
      process.stdout.write(`${args[0]}: ${String(r.written)} bytes restored\n`);
      return 0;
    }
    default:
      throw new UsageError('block create|list|info|delete|dump|restore');
  }
}

/** Splits daemon-only deploy options (`--cpus`, `--start-order`) from the deploy ones. */
function takePlacement(args: string[]): { cpus?: number[]; startOrder?: number; rest: string[] } {
  const rest: string[] = [];
  let cpus: number[] | undefined;
  let startOrder: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      rest.push(...args.slice(i));
      break;
    }
    const m = /^--(cpus|start-order)(?:=(.*))?$/.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const v = m[2] ?? args[++i];
    if (v === undefined) throw new UsageError(`--${m[1]} needs a value`);
    if (m[1] === 'cpus') cpus = parseCpuList(v);
    else startOrder = intOption(v, '--start-order');
  }
  return { ...(cpus ? { cpus } : {}), ...(startOrder !== undefined ? { startOrder } : {}), rest };
}

/** The daemon command. */
export const daemon: Command = {
  summary: 'Supervise Solo5 and TypeScript unikernels behind a local control socket (and TLS, metrics)',
  usage: USAGE,
  async run(args) {
    try {
      const { target, dir, remote, rest: all } = takeTarget(args);
      // `morgana daemon --metrics …` is `serve` with options.
      const [sub, ...rest] = all[0]?.startsWith('-') ? ['serve', ...all] : all;
      switch (sub) {
        case undefined:
        case 'serve':
          if (remote) throw new UsageError('serve runs a local daemon (--remote is for client subcommands)');
          return await serve(dir, rest);
        case 'deploy': {
          const { cpus, startOrder, rest: deployArgs } = takePlacement(rest);
          const { dryRun, detach, ...options } = parseDeployArgs(deployArgs);
          if (dryRun) throw new UsageError('--dry-run is for morgana deploy');
          if (detach) throw new UsageError('-d/--detach is for morgana deploy (daemon deploy always hands the unikernel to the daemon)');
          if (options.logFile) throw new UsageError('the daemon keeps the console log itself (no --log)');
          await daemonDeploy(target, options, { remote, ...(cpus ? { cpus } : {}), ...(startOrder !== undefined ? { startOrder } : {}) });
          return 0;
        }
        case 'ps':
          return await psCommand(target, rest);
        case 'console':
        case 'logs':
          return await consoleCommand(target, rest);
        case 'stop':
          return await stopCommand(target, rest);
        case 'restart': {
          const name = one(rest, 'restart');
          const r = await daemonRequest(target, { cmd: 'restart', name });
          process.stdout.write(`${name} restarted (pid ${(r.unikernel as DaemonUnikernelInfo).pid})\n`);
          return 0;
        }
        case 'stats':
          return await statsCommand(target, rest);
        case 'events':
          return await eventsCommand(target, rest);
        case 'update': {
          const { values, positionals } = parseArgs({ args: rest, options: { 'boot-ms': { type: 'string' } }, allowPositionals: true });
          if (positionals.length !== 2) throw new UsageError('update <name> <image>');
          const bootMs = intOption(values['boot-ms'], '--boot-ms');
          const image = remote ? positionals[1]! : path.resolve(positionals[1]!);
          const r = await daemonRequest(target, { cmd: 'update', name: positionals[0]!, image, ...(bootMs !== undefined ? { bootMs } : {}) });
          process.stdout.write(`${positionals[0]} updated (pid ${(r.unikernel as DaemonUnikernelInfo).pid})\n`);
          return 0;
        }
        case 'status': {
          if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
          const r = await daemonRequest(target, { cmd: 'status' });
          delete r.ok;
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return 0;
        }
        case 'policy':
          return await policyCommand(target, rest);
        case 'block':
          return await blockCommand(target, rest);
        default:
          throw new UsageError(`unknown subcommand '${sub}'`);
      }
    } catch (caught) {
      const error = asUsageError(caught);
      if (error instanceof UsageError) process.stderr.write(`usage: ${USAGE}\n`);
      const code = reportError('morgana daemon', error);
      if ((error as { code?: unknown }).code === 'ERR_DAEMON_UNREACHABLE' && !takeTargetSafe(args)?.remote) {
        const dir = takeTargetSafe(args)?.dir ?? defaultDaemonDir();
        process.stderr.write(`morgana daemon: no daemon is running; start one with: ${selfCommand()} daemon serve --dir ${dir} (it stays in the foreground: use another terminal, or append &)\n`);
      }
      return code;
    }
  },
};

/** `node:util` parseArgs errors are usage errors. */
export function asUsageError(error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS') ? new UsageError((error as Error).message) : error;
}

function takeTargetSafe(args: string[]): ReturnType<typeof takeTarget> | undefined {
  try {
    return takeTarget(args);
  } catch {
    return undefined;
  }
}

