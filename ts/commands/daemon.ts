/**
 * `morgana daemon`: a supervisor for several Solo5 unikernels with a local control socket.
 *
 * - `morgana daemon [serve] [--dir DIR]`: runs the daemon until SIGINT / SIGTERM (the unikernels
 *   keep running; a restarted daemon adopts them).
 * - `morgana daemon deploy <image> [deploy options] [-- guest args]`: starts a unikernel under it.
 * - `morgana daemon ps [--json]`, `console <name> [--count N] [--follow]`, `stop <name>`,
 *   `restart <name>`, `stats <name>`.
 * @module
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Command } from './command.js';
import { selfCommand } from './self.js';
import type { ConsoleLine } from '../solo5/console.js';
import { type DaemonUnikernelInfo, daemonRequest, defaultDaemonDir, startDaemon } from '../solo5/daemon.js';
import { UsageError, parseDeployArgs, reportError } from './deploy.js';

const USAGE = `morgana daemon [serve] [--dir DIR]
       morgana daemon deploy <image> [deploy options] [-- guest args] [--dir DIR]
       morgana daemon ps [--json] [--dir DIR]
       morgana daemon console <name> [--count N] [--follow] [--dir DIR]
       morgana daemon stop|restart|stats <name> [--dir DIR]`;

function takeDir(args: string[]): { dir: string; rest: string[] } {
  const dash = args.indexOf('--');
  const head = dash === -1 ? args : args.slice(0, dash);
  const tail = dash === -1 ? [] : args.slice(dash);
  let dir = defaultDaemonDir();
  const rest: string[] = [];
  for (let i = 0; i < head.length; i++) {
    const a = head[i]!;
    if (a === '--dir') {
      if (head[i + 1] === undefined) throw new UsageError('--dir needs a value');
      dir = head[++i]!;
    } else if (a.startsWith('--dir=')) dir = a.slice(6);
    else rest.push(a);
  }
  return { dir, rest: [...rest, ...tail] };
}

function printLine(l: ConsoleLine): void {
  (l.stream === 'stderr' ? process.stderr : process.stdout).write(`${l.line}\n`);
}

async function serve(dir: string): Promise<number> {
  const daemon = await startDaemon(dir);
  process.stderr.write(`morgana daemon: listening on ${daemon.socket}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await daemon.close();
  process.stderr.write('morgana daemon: stopped (unikernels keep running)\n');
  return 0;
}

function one(rest: string[], what: string): string {
  if (rest.length !== 1) throw new UsageError(`${what} takes exactly one unikernel name`);
  return rest[0]!;
}

/** The daemon command. */
export const daemon: Command = {
  summary: 'Supervise several Solo5 unikernels behind a local control socket',
  usage: USAGE,
  async run(args) {
    try {
      const { dir, rest: all } = takeDir(args);
      const [sub, ...rest] = all;
      switch (sub) {
        case undefined:
        case 'serve':
          if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
          return await serve(dir);
        case 'deploy': {
          const { dryRun, ...options } = parseDeployArgs(rest);
          if (dryRun) throw new UsageError('--dry-run is for morgana deploy');
          if (options.logFile) throw new UsageError('the daemon keeps the console log itself (no --log)');
          options.image = path.resolve(options.image);
          if (options.tender?.includes('/')) options.tender = path.resolve(options.tender);
          for (const b of options.blocks ?? []) b.file = path.resolve(b.file);
          const r = await daemonRequest(dir, { cmd: 'deploy', options });
          const uk = r.unikernel as DaemonUnikernelInfo;
          process.stdout.write(`${uk.name} started (pid ${uk.pid})\n`);
          return 0;
        }
        case 'ps': {
          const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean' } }, allowPositionals: true });
          if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
          const r = await daemonRequest(dir, { cmd: 'ps' });
          const list = r.unikernels as DaemonUnikernelInfo[];
          if (values.json) {
            process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
            return 0;
          }
          const rows = [['NAME', 'STATE', 'PID', 'TARGET', 'RESTARTS', 'LAST EXIT'], ...list.map((u) => [u.name, u.state, String(u.pid ?? '-'), u.target, String(u.restarts), u.lastExit?.description ?? '-'])];
          const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
          process.stdout.write(`${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`);
          return 0;
        }
        case 'console': {
          const { values, positionals } = parseArgs({ args: rest, options: { count: { type: 'string' }, follow: { type: 'boolean', short: 'f' } }, allowPositionals: true });
          const name = one(positionals, 'console');
          if (values.count !== undefined && !/^\d+$/.test(values.count)) throw new UsageError('--count must be a whole number');
          await daemonRequest(dir, { cmd: 'console', name, follow: Boolean(values.follow), ...(values.count !== undefined ? { count: Number(values.count) } : {}) }, (msg) => {
            if (msg.console) printLine(msg.console as ConsoleLine);
            if (msg.exit) process.stderr.write(`morgana daemon: ${name}: ${(msg.exit as { description: string }).description}\n`);
          });
          return 0;
        }
        case 'stop': {
          const r = await daemonRequest(dir, { cmd: 'stop', name: one(rest, 'stop') });
          process.stdout.write(`${rest[0]}: ${(r.exit as { description?: string } | undefined)?.description ?? 'stopped'}\n`);
          return 0;
        }
        case 'restart': {
          const r = await daemonRequest(dir, { cmd: 'restart', name: one(rest, 'restart') });
          process.stdout.write(`${rest[0]} restarted (pid ${(r.unikernel as DaemonUnikernelInfo).pid})\n`);
          return 0;
        }
        case 'stats': {
          const r = await daemonRequest(dir, { cmd: 'stats', name: one(rest, 'stats') });
          process.stdout.write(`${JSON.stringify(r.stats, null, 2)}\n`);
          return 0;
        }
        default:
          throw new UsageError(`unknown subcommand '${sub}'`);
      }
    } catch (error) {
      if (error instanceof UsageError) process.stderr.write(`usage: ${USAGE}\n`);
      const code = reportError('morgana daemon', error);
      if ((error as { code?: unknown }).code === 'ERR_DAEMON_UNREACHABLE') {
        const dirArg = args.findIndex((a) => a === '--dir' || a.startsWith('--dir='));
        const dir = dirArg < 0 ? '' : args[dirArg]!.includes('=') ? ` ${args[dirArg]}` : ` --dir ${args[dirArg + 1] ?? 'DIR'}`;
        process.stderr.write(`morgana daemon: no daemon is running; start one with: ${selfCommand()} daemon serve${dir} (it stays in the foreground: use another terminal, or append &)\n`);
      }
      return code;
    }
  },
};
