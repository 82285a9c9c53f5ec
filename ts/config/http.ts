/**
 * HTTP and HTTPS over a stack's TCP connections: Node's own `http`/`https` servers and clients,
 * fed with the stack's `Duplex` connections instead of kernel sockets (`server.emit('connection')`
 * and `createConnection`), and `node:tls` layered on top for HTTPS.
 * @module
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { tcpOf, type StackV4, type TcpListenerV4 } from './stackv4.js';

/** TLS material of an HTTPS device (PEM text or buffers). */
export interface TlsCredentials {
  cert: string | Buffer;
  key: string | Buffer;
  /** Certificates to trust as a client (default Node's bundled roots). */
  ca?: string | Buffer | Array<string | Buffer>;
}

/** A running HTTP(S) server on a stack port. */
export interface HttpListener {
  readonly server: http.Server;
  readonly port: number;
  /** Stops accepting connections and closes the open ones. */
  close(): Promise<void>;
}

/** The HTTP device a unikernel receives. */
export interface HttpDevice {
  /** `'http'` or `'https'`. */
  readonly scheme: 'http' | 'https';
  /** Serves `handler` on `port` of the stack. */
  listen(port: number, handler: http.RequestListener): Promise<HttpListener>;
  /**
   * A client request through the stack, as `http.request(url, options)`; for `https` with
   * `node:tls` over the stack's TCP connection.
   */
  request(url: string | URL, options?: http.RequestOptions, callback?: (res: http.IncomingMessage) => void): http.ClientRequest;
  /** Fetches `url` through the stack and collects the body. */
  get(url: string | URL, options?: http.RequestOptions): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>;
}

/** Creates the HTTP (no `tls`) or HTTPS device over `stack`. */
export function httpOver(stack: StackV4, credentials?: TlsCredentials): HttpDevice {
  const scheme = credentials ? 'https' : 'http';
  const what = `the ${scheme} device`;
  tcpOf(stack, what);

  const createConnection = (url: URL) => (_options: unknown, done: (error: Error | null, socket?: Duplex) => void) => {
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    tcpOf(stack, what)
      .connect(url.hostname, port)
      .then(
        (raw) => {
          if (url.protocol !== 'https:') return done(null, raw);
          const socket = tls.connect({
            socket: raw as unknown as import('node:net').Socket,
            host: url.hostname,
            servername: net4(url.hostname) ? undefined : url.hostname,
            ...(credentials?.ca ? { ca: credentials.ca } : {}),
          });
          done(null, socket);
        },
        (error: Error) => done(error),
      );
    return undefined;
  };

  const device: HttpDevice = {
    scheme,
    async listen(port, handler) {
      const server = credentials ? https.createServer({ cert: credentials.cert, key: credentials.key }, handler) : http.createServer(handler);
      const open = new Set<Duplex>();
      const listener: TcpListenerV4 & { port?: number } = await tcpOf(stack, what).listen(port, (connection) => {
        open.add(connection);
        connection.on('close', () => open.delete(connection));
        server.emit('connection', connection);
      });
      return {
        server,
        port: typeof listener.port === 'number' ? listener.port : port,
        async close() {
          const closing = listener.close();
          for (const c of open) c.destroy();
          server.close();
          await closing;
        },
      };
    },
    request(url, options = {}, callback) {
      const target = new URL(url);
      const module = target.protocol === 'https:' ? https : http;
      return module.request(target, { ...options, agent: undefined, createConnection: createConnection(target) as never }, callback);
    },
    get(url, options = {}) {
      return new Promise((resolve, reject) => {
        const req = device.request(url, { ...options, method: options.method ?? 'GET' }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    },
  };
  return device;
}

function net4(host: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(host);
}
