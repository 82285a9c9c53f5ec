/**
 * Metrics of the daemon and its unikernels in the Prometheus text exposition format (0.0.4), or
 * OpenMetrics 1.0 when the scraper asks for it (`Accept: application/openmetrics-text`), served
 * over HTTP on an address the user chooses (`morgana daemon --metrics 127.0.0.1:9464`).
 * @module
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { once } from 'node:events';
import { MorganaError } from '../errors.js';

/** One metric family: its samples share a name, type and help. */
export interface MetricFamily {
  /** Name without the `_total` suffix counters get. */
  name: string;
  type: 'counter' | 'gauge';
  help: string;
  samples: { labels: Record<string, string>; value: number }[];
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Renders families as Prometheus text (default) or OpenMetrics text (ends with `# EOF`). */
export function renderMetrics(families: readonly MetricFamily[], format: 'prometheus' | 'openmetrics' = 'prometheus'): string {
  const out: string[] = [];
  for (const f of families) {
    const sampleName = f.type === 'counter' ? `${f.name}_total` : f.name;
    const familyName = format === 'openmetrics' ? f.name : sampleName;
    out.push(`# HELP ${familyName} ${escapeHelp(f.help)}`, `# TYPE ${familyName} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
      out.push(`${sampleName}${labels.length ? `{${labels.join(',')}}` : ''} ${formatValue(s.value)}`);
    }
  }
  if (format === 'openmetrics') out.push('# EOF');
  return `${out.join('\n')}\n`;
}

/** Storage I/O of a process from `/proc/<pid>/io` (bytes fetched from / sent to the storage layer). */
export async function processIo(pid: number): Promise<{ readBytes: number; writeBytes: number; readCalls: number; writeCalls: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/io`, 'utf8');
    const field = (n: string): number => Number(new RegExp(`^${n}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return { readBytes: field('read_bytes'), writeBytes: field('write_bytes'), readCalls: field('syscr'), writeCalls: field('syscw') };
  } catch {
    return undefined;
  }
}

/** Parses `HOST:PORT` (`[v6]:PORT` for IPv6). Throws `ERR_DAEMON_BAD_ADDRESS`. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MorganaError('ERR_DAEMON_BAD_ADDRESS', `expected HOST:PORT, got '${text}'`);
  return { host: (m[1] ?? m[2])!, port };
}

/** An HTTP server answering `GET /metrics` with what `collect` returns. */
export async function serveMetrics(address: string, collect: () => Promise<MetricFamily[]>): Promise<http.Server> {
  const { host, port } = parseHostPort(address);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('see /metrics\n');
      return;
    }
    const open = /application\/openmetrics-text/.test(req.headers.accept ?? '');
    collect().then(
      (families) => {
        const body = renderMetrics(families, open ? 'openmetrics' : 'prometheus');
        res.writeHead(200, {
          'content-type': open ? 'application/openmetrics-text; version=1.0.0; charset=utf-8' : 'text/plain; version=0.0.4; charset=utf-8',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (error: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`),
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxConnections = 32;
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(new MorganaError('ERR_DAEMON_METRICS', `cannot listen on ${address}: ${(e as Error).message}`)))]);
  return server;
}
