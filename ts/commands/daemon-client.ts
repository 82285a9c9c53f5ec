/**
 * The client side of the daemon that `morgana deploy -d`, `morgana run -d` and `morgana daemon`
 * share: starting a daemon in the background, and handing it a Solo5 deployment.
 * @module
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DaemonTarget, type DaemonUnikernelInfo, daemonRequest } from '../daemon/supervisor.js';
import { MorganaError } from '../errors.js';
import type { DeployOptions } from '../solo5/deploy.js';
import type { BoundForward } from '../solo5/gateway.js';

/**
 * Starts `morgana daemon --dir DIR` in the background (its output in `DIR/daemon.log`) and waits
 * until it answers. Used by `morgana run -d` and `morgana deploy -d` when no daemon runs.
 */
export async function spawnDaemon(dir: string): Promise<number> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const log = openSync(path.join(dir, 'daemon.log'), 'a', 0o600);
  const cli = fileURLToPath(new URL('../cli.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'daemon', '--dir', dir], { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      await daemonRequest(dir, { cmd: 'ping' });
      return child.pid!;
    } catch (error) {
      if (child.exitCode !== null || Date.now() > end) throw new MorganaError('ERR_DAEMON_UNREACHABLE', `the daemon did not start (see ${path.join(dir, 'daemon.log')}): ${(error as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function hostPort(f: BoundForward): string {
  return `${f.hostAddress.includes(':') ? `[${f.hostAddress}]` : f.hostAddress}:${f.hostPort}`;
}

/**
 * Hands a Solo5 deployment to the daemon at `target` (`morgana daemon deploy`, `morgana deploy
 * -d`) and prints what it started: its pid, and its user-mode networks with their forwards.
 * Local paths are made absolute first (the daemon's working directory is not the caller's).
 */
export async function daemonDeploy(target: DaemonTarget, options: DeployOptions, placement: { remote?: boolean; cpus?: number[]; startOrder?: number } = {}): Promise<DaemonUnikernelInfo> {
  if (!placement.remote) {
    options.image = path.resolve(options.image);
    if (options.tender?.includes('/')) options.tender = path.resolve(options.tender);
    for (const b of options.blocks ?? []) if (!b.file.startsWith('@')) b.file = path.resolve(b.file);
    for (const n of options.userNets ?? []) if (n.pcap) n.pcap = path.resolve(n.pcap);
  }
  const r = await daemonRequest(target, { cmd: 'deploy', options, ...(placement.cpus ? { cpus: placement.cpus } : {}), ...(placement.startOrder !== undefined ? { startOrder: placement.startOrder } : {}) });
  const uk = r.unikernel as DaemonUnikernelInfo;
  process.stdout.write(`${uk.name} started (pid ${uk.pid})\n`);
  for (const n of uk.networks ?? []) {
    process.stdout.write(`${uk.name}: ${n.device}: user-mode network: guest ${n.guest}, gateway ${n.gateway}, DNS ${n.dns}\n`);
    for (const f of n.forwards) process.stdout.write(`${uk.name}: ${n.device}: forwarding ${f.protocol} ${hostPort(f)} -> ${f.guestAddress}:${f.guestPort}\n`);
  }
  return uk;
}

