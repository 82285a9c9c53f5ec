/**
 * The monitor: an HTTP server (loopback by default) with the live dashboard page, its JSON API,
 * a Server-Sent Events stream of snapshots, Prometheus metrics and packet captures.
 *
 * - `GET /`: the page (charts with uPlot, bundled from the package; nothing from a CDN).
 * - `GET /events`: `snapshot` events every `intervalMs` (SSE; the browser reconnects by itself).
 * - `GET /api/snapshot`, `/api/topology`, `/api/interfaces`, `/api/connections`,
 *   `/api/neighbours`, `/api/drops`, `/api/reassembly`, `/api/dhcp`, `/api/forwards`, `/api/log`:
 *   the same data as JSON.
 * - `GET /metrics`: every stack's and switch's series (OpenMetrics when asked by `Accept`).
 * - `POST /api/captures` `{"switch":"vnet"}` (every port of a virtual switch) or
 *   `{"interface":"stack0/0"}` (one interface of a stack, whatever its device: TAP, socket link,
 *   switch port) → `{ id }`; `POST /api/captures/ID/stop`, `GET /api/captures/ID.pcap` (a libpcap
 *   file; super-frames are recorded as the real frames they stand for), `GET /api/captures`.
 *
 * Bound to another address than loopback, every request needs the token printed at start
 * (`?token=…` or `Authorization: Bearer …`).
 * @module
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MorganaError } from '../errors.js';
import { METRICS_CONTENT_TYPE, MetricsWriter } from '../metrics/exposition.js';
import { writeStackMetrics, writeSwitchMetrics } from '../metrics/collect.js';
import type { FrameOffload } from '../net/device.js';
import { wireFrames } from '../net/gso.js';
import { pcapGlobalHeader, pcapNowMicros, pcapRecord } from '../net/pcap.js';
import { authorized, readBody, sendJson as json, serveAsset, tokenFor } from './http-kit.js';
import { DASHBOARD_HTML } from './page.js';
import { type MonitorSource, type Snapshot, takeSnapshot } from './snapshot.js';

/** Options of {@link startMonitor}. */
export interface MonitorOptions {
  /** Address to bind (default `127.0.0.1`). */
  host?: string;
  /** Port (default 0: any free port). */
  port?: number;
  /** Milliseconds between two snapshots on `/events` (default 1000). */
  intervalMs?: number;
  /** Required token; default: none on loopback, a random one elsewhere. */
  token?: string;
  /** Most bytes one capture keeps before it stops by itself (default 64 MiB). */
  captureLimitBytes?: number;
}

/** A running monitor. */
export interface Monitor {
  /** `http://127.0.0.1:PORT/` (with `?token=` when one is needed). */
  readonly url: string;
  readonly port: number;
  /** The token, when one is required. */
  readonly token: string | undefined;
  /** Stops the server, the event streams and the captures. */
  close(): Promise<void>;
}

interface Capture {
  id: number;
  target: string;
  chunks: Buffer[];
  bytes: number;
  frames: number;
  running: boolean;
  stop: () => void;
  startedAt: number;
}

/** Starts the monitor for `source`. */
export async function startMonitor(source: MonitorSource, options: MonitorOptions = {}): Promise<Monitor> {
  const host = options.host ?? '127.0.0.1';
  const intervalMs = options.intervalMs ?? 1000;
  const captureLimit = options.captureLimitBytes ?? 64 * 1024 * 1024;
  const token = tokenFor(host, options.token);
  const captures = new Map<number, Capture>();
  let nextCapture = 1;
  const streams = new Set<http.ServerResponse>();

  const snapshot = (): Snapshot => takeSnapshot(source, { medium: () => undefined });

  const metrics = (accept: string | undefined): { type: string; body: string } => {
    const format = accept?.includes('application/openmetrics-text') ? 'openmetrics' : 'prometheus';
    const writer = new MetricsWriter();
    for (const { name, stack } of source.stacks()) writeStackMetrics(writer, stack, { stack: name });
    for (const { name, sw } of source.switches()) writeSwitchMetrics(writer, sw, { switch: name });
    return { type: METRICS_CONTENT_TYPE[format], body: writer.text(format) };
  };

  /** What a capture can record: a switch's mirror port, or one stack interface's Ethernet layer. */
  const captureSource = (target: { switch?: string; interface?: string }): ((record: (frame: Buffer, offload?: FrameOffload) => void) => () => void) => {
    if (target.interface !== undefined) {
      const m = /^(.*)\/(\d+)$/.exec(target.interface);
      const stack = m ? source.stacks().find((s) => s.name === m[1])?.stack : undefined;
      const iface = stack?.interfaces[Number(m?.[2])];
      if (!iface) throw new MorganaError('ERR_MONITOR_CAPTURE', `no interface ${JSON.stringify(target.interface)} (interfaces are named STACK/INDEX, as /api/interfaces lists them)`);
      return (record) => iface.eth.mirror((frame, _direction, offload) => record(frame, offload));
    }
    const found = source.switches().find((s) => s.name === target.switch);
    if (!found) throw new MorganaError('ERR_MONITOR_CAPTURE', `no virtual switch named ${JSON.stringify(target.switch)}`);
    return (record) => found.sw.mirror((frame) => record(frame));
  };

  const startCapture = (target: { switch?: string; interface?: string }): Capture => {
    const attach = captureSource(target);
    const capture: Capture = {
      id: nextCapture++,
      target: target.interface ?? target.switch!,
      chunks: [pcapGlobalHeader(65_535)],
      bytes: 24,
      frames: 0,
      running: true,
      startedAt: Date.now(),
      stop: () => {},
    };
    const keep = (frame: Buffer) => {
      if (!capture.running) return;
      const record = pcapRecord(frame, frame.length, 65_535, pcapNowMicros());
      capture.chunks.push(record);
      capture.bytes += record.length;
      capture.frames++;
      if (capture.bytes >= captureLimit) capture.stop();
    };
    const detach = attach((frame, offload) => {
      // A super-frame or partial checksum is recorded as the wire frames it stands for (copies).
      for (const piece of wireFrames(frame, offload)) keep(piece);
    });
    capture.stop = () => {
      capture.running = false;
      detach();
    };
    captures.set(capture.id, capture);
    return capture;
  };

  const captureView = (c: Capture) => ({ id: c.id, target: c.target, frames: c.frames, bytes: c.bytes, running: c.running, startedAt: c.startedAt });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://monitor.invalid');
    // The bundled chart library is public code with no data in it: the page loads it by tag.
    if (!url.pathname.startsWith('/assets/') && !authorized(req, url, token)) return json(res, 401, { error: 'a token is required: ?token=… or Authorization: Bearer …' });
    const path = url.pathname;
    if (req.method === 'GET' && path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return void res.end(DASHBOARD_HTML);
    }
    if (req.method === 'GET' && serveAsset(path, res)) return;
    if (req.method === 'GET' && path === '/metrics') {
      const m = metrics(req.headers.accept);
      res.writeHead(200, { 'content-type': m.type });
      return void res.end(m.body);
    }
    if (req.method === 'GET' && path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`retry: 1000\n\n`);
      res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot())}\n\n`);
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    }
    if (path.startsWith('/api/')) {
      const part = path.slice('/api/'.length);
      const views: Record<string, (s: Snapshot) => unknown> = {
        snapshot: (s) => s,
        topology: (s) => s.topology,
        interfaces: (s) => s.interfaces,
        connections: (s) => s.connections,
        neighbours: (s) => ({ arp: s.arp, neighbours: s.neighbours }),
        drops: (s) => s.drops,
        reassembly: (s) => s.reassembly,
        dhcp: (s) => s.dhcp,
        log: (s) => s.log,
        forwards: (s) => s.forwards,
      };
      if (req.method === 'GET' && views[part]) return json(res, 200, views[part]!(snapshot()));
      if (req.method === 'GET' && part === 'captures') return json(res, 200, [...captures.values()].map(captureView));
      if (req.method === 'POST' && part === 'captures') {
        const body = await readBody(req);
        let asked: { switch?: unknown; interface?: unknown };
        try {
          asked = JSON.parse(body || '{}') as { switch?: unknown; interface?: unknown };
        } catch {
          return json(res, 400, { error: 'the body must be JSON: {"switch":"NAME"} or {"interface":"STACK/INDEX"}' });
        }
        if (asked.interface !== undefined) {
          if (typeof asked.interface !== 'string') return json(res, 400, { error: 'interface must be a string such as "stack0/0"' });
          return json(res, 201, captureView(startCapture({ interface: asked.interface })));
        }
        const name = asked.switch ?? source.switches()[0]?.name;
        if (typeof name !== 'string') return json(res, 400, { error: 'nothing to capture: name a switch or an interface ({"interface":"STACK/INDEX"})' });
        return json(res, 201, captureView(startCapture({ switch: name })));
      }
      const stop = /^captures\/(\d+)\/stop$/.exec(part);
      if (req.method === 'POST' && stop) {
        const c = captures.get(Number(stop[1]));
        if (!c) return json(res, 404, { error: 'no such capture' });
        c.stop();
        return json(res, 200, captureView(c));
      }
      const download = /^captures\/(\d+)\.pcap$/.exec(part);
      if (req.method === 'GET' && download) {
        const c = captures.get(Number(download[1]));
        if (!c) return json(res, 404, { error: 'no such capture' });
        const body = Buffer.concat(c.chunks);
        res.writeHead(200, {
          'content-type': 'application/vnd.tcpdump.pcap',
          'content-disposition': `attachment; filename="morgana-${c.target.replace(/[^A-Za-z0-9_.-]/g, '_')}-${c.id}.pcap"`,
          'content-length': body.length,
        });
        return void res.end(body);
      }
    }
    json(res, 404, { error: `no such page: ${req.method} ${path}` });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      if (!res.headersSent) json(res, error instanceof MorganaError ? 400 : 500, { error: message });
      else res.destroy();
    });
  });
  const ticker = setInterval(() => {
    if (streams.size === 0) return;
    const data = `event: snapshot\ndata: ${JSON.stringify(snapshot())}\n\n`;
    for (const res of streams) res.write(data);
  }, intervalMs);
  ticker.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MorganaError('ERR_MONITOR_LISTEN', `monitor on ${host}:${options.port ?? 0}: ${e.message}`)));
    server.listen(options.port ?? 0, host, () => resolve());
  });
  server.unref();
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/${token ? `?token=${token}` : ''}`,
    port,
    token,
    async close() {
      clearInterval(ticker);
      for (const c of captures.values()) c.stop();
      for (const res of streams) res.end();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
