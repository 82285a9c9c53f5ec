import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Start } from 'morgana/config';
import type config from './config.js';

type Kv = Parameters<Start<typeof config>>[0]['htdocs'];

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  htm: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  ico: 'image/x-icon',
  woff2: 'font/woff2',
  pdf: 'application/pdf',
  wasm: 'application/wasm',
  xml: 'application/xml',
};

/** The Content-Type of a file name. */
export function contentType(path: string): string {
  const dot = path.lastIndexOf('.');
  return (dot >= 0 && TYPES[path.slice(dot + 1).toLowerCase()]) || 'application/octet-stream';
}

/** Parses a single `bytes=` range against `size`: the range, `'unsatisfiable'`, or undefined to ignore it. */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // several ranges, or malformed: serve it all
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const weak = (t: string) => t.trim().replace(/^W\//, '');
  return header.split(',').some((t) => weak(t) === weak(etag));
}

async function lookup(kv: Kv, urlPath: string): Promise<string | undefined> {
  let path: string;
  try {
    path = decodeURIComponent(urlPath.split('?')[0]!);
  } catch {
    return undefined;
  }
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s === '..' || s.includes('\0'))) return undefined;
  let key = segments.join('/');
  const kind = key === '' ? 'dictionary' : await kv.exists(key);
  if (kind === 'dictionary') key = key === '' ? 'index.html' : `${key}/index.html`;
  else if (kind === undefined) return undefined;
  return (await kv.exists(key)) === 'value' ? key : undefined;
}

/** Serves the files of `kv`: Content-Type, ETag, Last-Modified, conditional GET and single ranges. */
export function handler(kv: Kv) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Length': 0 }).end();
        return;
      }
      const key = await lookup(kv, req.url ?? '/');
      if (!key) {
        const body = 'not found\n';
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) }).end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      const [digest, modified, size] = await Promise.all([kv.digest(key), kv.lastModified(key), kv.size(key)]);
      const etag = `"${digest.toString('hex').slice(0, 32)}"`;
      const lastModified = new Date(Math.floor(modified.getTime() / 1000) * 1000);
      const headers: Record<string, string | number> = {
        'Content-Type': contentType(key),
        ETag: etag,
        'Last-Modified': lastModified.toUTCString(),
        'Accept-Ranges': 'bytes',
        'Cache-Control': 'no-cache',
      };
      const inm = req.headers['if-none-match'];
      const ims = req.headers['if-modified-since'];
      const notModified = inm !== undefined ? etagMatches(inm, etag) : ims !== undefined && !Number.isNaN(Date.parse(ims)) && lastModified.getTime() <= Date.parse(ims);
      if (notModified) {
        res.writeHead(304, headers).end();
        return;
      }
      let range = req.headers.range ? parseRange(req.headers.range, size) : undefined;
      const ifRange = req.headers['if-range'] === undefined ? undefined : String(req.headers['if-range']);
      if (range && ifRange !== undefined) {
        const fresh = ifRange.startsWith('"') || ifRange.startsWith('W/') ? ifRange === etag : Date.parse(ifRange) === lastModified.getTime();
        if (!fresh) range = undefined;
      }
      if (range === 'unsatisfiable') {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}`, 'Content-Length': 0 }).end();
        return;
      }
      if (range) {
        const length = range.end - range.start + 1;
        res.writeHead(206, { ...headers, 'Content-Range': `bytes ${range.start}-${range.end}/${size}`, 'Content-Length': length });
        res.end(req.method === 'HEAD' ? undefined : await kv.getPartial(key, range.start, length));
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Length': size });
      res.end(req.method === 'HEAD' ? undefined : await kv.get(key));
    } catch (error) {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`internal error: ${(error as Error).message}\n`);
    }
  };
}

/** Serves htdocs on `--port` until stopped. */
export const start: Start<typeof config> = async ({ http, htdocs }, { keys, signal }) => {
  const listener = await http.listen(keys.port, handler(htdocs));
  console.log(`static-website: serving on port ${listener.port}`);
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  await listener.close();
};
