/**
 * The daemon's web view (`morgana daemon serve --http [ADDR]`): a live page of the unikernels it
 * supervises — their states, CPU and memory, per-unikernel network throughput charts, their
 * NET devices, the consoles (history and new lines) and the event log — and the same data as
 * JSON (`/api/unikernels`, `/api/console/NAME`, `/api/events`) and Server-Sent Events
 * (`/events`). It is a client of the daemon's own control socket, so it sees exactly what
 * `morgana ps`, `logs` and `events` see. Loopback by default; elsewhere a token is required.
 * @module
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MorganaError } from '../errors.js';
import { authorized, sendJson, serveAsset, tokenFor } from '../monitor/http-kit.js';
import { DAEMON_HTML } from './web-page.js';
import { type DaemonTarget, type DaemonUserNetworkInfo, daemonRequest, formatForwards } from './supervisor.js';

/** Options of {@link startDaemonWeb}. */
export interface DaemonWebOptions {
  host?: string;
  port?: number;
  /** Milliseconds between two snapshots (default 1000). */
  intervalMs?: number;
  token?: string;
}

/** A running web view. */
export interface DaemonWeb {
  readonly url: string;
  readonly port: number;
  readonly token: string | undefined;
  close(): Promise<void>;
}

/** One unikernel as the page shows it. */
export interface DaemonWebUnikernel {
  name: string;
  state: string;
  pid: number | undefined;
  target: string;
  restarts: number;
  cpus: number[] | undefined;
  lastExit: unknown;
  cpuMs: number | undefined;
  rssKiB: number | undefined;
  uptimeMs: number | undefined;
  nets: Array<{ name: string; tap: string; rxBytes: number; txBytes: number; rxPackets: number; txPackets: number; rxDropped: number; txDropped: number }>;
  /** Forwarded host ports of user-mode networks (`127.0.0.1:8080->80/tcp`). */
  ports: string[];
}

/** What `/events` sends and `/api/snapshot` answers. */
export interface DaemonWebSnapshot {
  time: number;
  unikernels: DaemonWebUnikernel[];
  events: unknown[];
}

async function request(target: DaemonTarget, req: Parameters<typeof daemonRequest>[1]): Promise<Array<Record<string, unknown>>> {
  const messages: Array<Record<string, unknown>> = [];
  await daemonRequest(target, req, (m) => messages.push(m));
  return messages;
}

/** A snapshot of the daemon at `target` (its directory). */
export async function daemonSnapshot(target: DaemonTarget): Promise<DaemonWebSnapshot> {
  const ps = (await daemonRequest(target, { cmd: 'ps' })) as { unikernels?: Array<Record<string, unknown>> };
  const list = ps.unikernels ?? [];
  const unikernels = await Promise.all(
    list.map(async (info): Promise<DaemonWebUnikernel> => {
      let stats: Record<string, any> | undefined;
      try {
        stats = ((await daemonRequest(target, { cmd: 'stats', name: String(info.name) })) as { stats?: Record<string, any> }).stats;
      } catch {
        stats = undefined; // gone between ps and stats
      }
      const nets = Object.entries((stats?.nets ?? {}) as Record<string, Record<string, number> & { tap: string } | undefined>)
        .filter((e): e is [string, Record<string, number> & { tap: string }] => e[1] !== undefined)
        .map(([name, c]) => ({ name, tap: c.tap, rxBytes: c.rxBytes!, txBytes: c.txBytes!, rxPackets: c.rxPackets!, txPackets: c.txPackets!, rxDropped: c.rxDropped!, txDropped: c.txDropped! }));
      return {
        name: String(info.name),
        state: String(info.state),
        pid: info.pid as number | undefined,
        target: String(info.target),
        restarts: Number(info.restarts ?? 0),
        cpus: info.cpus as number[] | undefined,
        lastExit: info.lastExit,
        cpuMs: stats?.process ? stats.process.utimeMs + stats.process.stimeMs : undefined,
        rssKiB: stats?.process?.rssKiB,
        uptimeMs: stats?.uptimeMs,
        nets,
        ports: formatForwards(info.networks as DaemonUserNetworkInfo[] | undefined),
      };
    }),
  );
  const events = (await request(target, { cmd: 'events', count: 50 })).filter((m) => m.event !== undefined).map((m) => m.event);
  return { time: Date.now(), unikernels, events };
}

/** Starts the web view of the daemon whose control socket is in `dir`. */
export async function startDaemonWeb(dir: string, options: DaemonWebOptions = {}): Promise<DaemonWeb> {
  const host = options.host ?? '127.0.0.1';
  const token = tokenFor(host, options.token);
  const streams = new Set<http.ServerResponse>();

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://daemon.invalid');
    const path = url.pathname;
    if (req.method === 'GET' && serveAsset(path, res)) return;
    if (!authorized(req, url, token)) return sendJson(res, 401, { error: 'a token is required: ?token=… or Authorization: Bearer …' });
    if (req.method !== 'GET') return sendJson(res, 405, { error: 'read-only: the web view changes nothing (use the morgana commands)' });
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return void res.end(DAEMON_HTML);
    }
    if (path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write('retry: 1000\n\n');
      res.write(`event: snapshot\ndata: ${JSON.stringify(await daemonSnapshot(dir))}\n\n`);
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    }
    if (path === '/api/snapshot') return sendJson(res, 200, await daemonSnapshot(dir));
    if (path === '/api/unikernels') return sendJson(res, 200, (await daemonSnapshot(dir)).unikernels);
    if (path === '/api/events') {
      const count = Math.min(1000, Math.max(1, Number(url.searchParams.get('count') ?? 100) || 100));
      return sendJson(res, 200, (await request(dir, { cmd: 'events', count })).filter((m) => m.event).map((m) => m.event));
    }
    const consoleName = /^\/api\/console\/(.+)$/.exec(path)?.[1];
    if (consoleName !== undefined) {
      const count = Math.min(10_000, Math.max(1, Number(url.searchParams.get('count') ?? 200) || 200));
      const lines = (await request(dir, { cmd: 'console', name: decodeURIComponent(consoleName), count })).filter((m) => m.console).map((m) => m.console);
      return sendJson(res, 200, lines);
    }
    sendJson(res, 404, { error: `no such page: ${path}` });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const code = (error as { code?: unknown }).code;
      const status = code === 'ERR_DAEMON_NO_SUCH_UNIKERNEL' || code === 'ERR_DAEMON_UNKNOWN' ? 404 : code === 'ERR_DAEMON_UNREACHABLE' ? 503 : 500;
      if (!res.headersSent) sendJson(res, status, { error: error instanceof Error ? error.message : String(error), code });
      else res.destroy();
    });
  });
  let busy = false;
  const ticker = setInterval(() => {
    if (streams.size === 0 || busy) return;
    busy = true;
    daemonSnapshot(dir)
      .then((snapshot) => {
        const data = `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
        for (const res of streams) res.write(data);
      })
      .catch(() => {
        for (const res of streams) res.end(); // the daemon is gone: the page reconnects and says so
        streams.clear();
      })
      .finally(() => (busy = false));
  }, options.intervalMs ?? 1000);
  ticker.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MorganaError('ERR_DAEMON_HTTP', `--http ${host}:${options.port ?? 0}: ${e.message}`)));
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/${token ? `?token=${token}` : ''}`,
    port,
    token,
    async close() {
      clearInterval(ticker);
      for (const res of streams) res.end();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
