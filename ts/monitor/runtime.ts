/**
 * The monitor inside a running unikernel: `morgana run --dashboard [ADDR]` and `--metrics ADDR`
 * pass their wish in the `MORGANA_MONITOR` environment variable (JSON), and the boot sequence
 * starts one server per address with what it knows (stacks, the vnet switch and gateway, forwards).
 * @module
 */
import { MorganaError } from '../errors.js';
import { captureOutput } from './output-ring.js';
import { type Monitor, startMonitor } from './server.js';
import type { MonitorSource } from './snapshot.js';

/** What `morgana run` asks for. */
export interface MonitorRequest {
  /** `HOST:PORT` of the dashboard (page, API, metrics). */
  dashboard?: string;
  /** `HOST:PORT` of the metrics endpoint. */
  metrics?: string;
}

/** The environment variable that carries a {@link MonitorRequest}. */
export const MONITOR_ENV = 'MORGANA_MONITOR';

/** Parses `PORT`, `HOST:PORT` or `[V6]:PORT` (default host 127.0.0.1); throws `ERR_USAGE`. */
export function parseListenAddress(text: string, option: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65_535) throw new MorganaError('ERR_USAGE', `${option} ${JSON.stringify(text)}: expected PORT or HOST:PORT such as 127.0.0.1:9464`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

/** Starts what `env` asks for; returns the servers (none when nothing was asked). */
export async function startRequestedMonitors(source: Omit<MonitorSource, 'log'>, log: (line: string) => void, env = process.env): Promise<{ close(): Promise<void> }> {
  const raw = env[MONITOR_ENV];
  if (!raw) return { close: async () => {} };
  const request = JSON.parse(raw) as MonitorRequest;
  const output = captureOutput();
  const servers: Monitor[] = [];
  try {
    for (const [kind, address] of [['dashboard', request.dashboard], ['metrics', request.metrics]] as const) {
      if (address === undefined) continue;
      const { host, port } = parseListenAddress(address, `--${kind}`);
      const monitor = await startMonitor({ ...source, log: () => output.lines() }, { host, port });
      servers.push(monitor);
      const url = kind === 'metrics' ? monitor.url.replace(/\/(\?|$)/, '/metrics$1') : monitor.url;
      log(`${kind}: ${url}`);
    }
  } catch (error) {
    output.restore();
    await Promise.all(servers.map((s) => s.close()));
    throw error;
  }
  return {
    async close() {
      await Promise.all(servers.map((s) => s.close()));
      output.restore();
    },
  };
}
