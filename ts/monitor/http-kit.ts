/**
 * What the monitor's and the daemon's web pages share: the bundled chart library, tokens for
 * pages bound beyond loopback, JSON answers and request bodies.
 * @module
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { createRequire } from 'node:module';
import { MorganaError } from '../errors.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Whether `host` is a loopback address (pages there need no token). */
export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/** The token a page bound to `host` needs: the given one, none on loopback, else a random one. */
export function tokenFor(host: string, given: string | undefined): string | undefined {
  return given ?? (isLoopback(host) ? undefined : randomBytes(16).toString('hex'));
}

/** Whether the request carries `token` (`?token=` or `Authorization: Bearer`); true without one. */
export function authorized(req: http.IncomingMessage, url: URL, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = url.searchParams.get('token') ?? /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Answers with JSON, never cached. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Reads a small request body (at most `limit` bytes). */
export function readBody(req: http.IncomingMessage, limit = 4096): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > limit) {
        reject(new MorganaError('ERR_MONITOR_REQUEST', 'request body too large'));
        req.destroy();
      }
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

let uplot: { js: Buffer; css: Buffer } | undefined;

/**
 * Serves `/assets/uplot.js` and `/assets/uplot.css` (uPlot, a dependency of the package: no
 * CDN). Returns whether the request was one of them. Public code with no data in it, so no token.
 */
export function serveAsset(path: string, res: http.ServerResponse): boolean {
  if (path !== '/assets/uplot.js' && path !== '/assets/uplot.css') return false;
  if (!uplot) {
    const require = createRequire(import.meta.url);
    uplot = { js: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js')), css: readFileSync(require.resolve('uplot/dist/uPlot.min.css')) };
  }
  const js = path.endsWith('.js');
  res.writeHead(200, { 'content-type': js ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8' });
  res.end(js ? uplot.js : uplot.css);
  return true;
}
