/**
 * HTTP and HTTPS over a stack's TCP connections: Node's own `http`/`https` servers and clients,
 * fed with the stack's `Duplex` connections instead of kernel sockets (`server.emit('connection')`
 * and `createConnection`), and `node:tls` layered on top for HTTPS.
 *
 * The client takes IPv4 and IPv6 URLs (`http://10.0.0.1/`, `http://[2001:db8::1]:8080/`) and
 * host names, which it resolves with a `dns.lookup`-shaped function: the request's `lookup`
 * option, the device's, or by default a {@link Resolver} on the stack's own name servers (DHCP,
 * IPv6 router advertisements). Every address of the name is tried, the families alternating,
 * a new attempt starting when the previous one fails or after 250 ms (RFC 8305, Happy Eyeballs),
 * and the first connection established wins.
 * @module
 */
import type { LookupAddress, LookupAllOptions } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { MorganaError } from '../errors.js';
import { Resolver, type ResolverStack } from '../dns/resolver.js';
import { tcpOf, type StackV4, type TcpListenerV4, type TcpV4 } from '../stack/stackv4.js';

/** A `dns.lookup`-shaped function, as `http.request({ lookup })` takes it (`resolver.lookup` is one). */
export type LookupFunction = (hostname: string, options: LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

/** Client options of {@link httpOver}. */
export interface HttpClientOptions {
  /**
   * Resolves host names in URLs (e.g. `resolver.lookup`; a request's own `lookup` option comes
   * first). Default: a resolver on the stack's name servers when the stack is a Morgana stack;
   * on host sockets (`unix --net socket`) the host resolves names.
   */
  lookup?: LookupFunction;
}

/** RFC 8305 §5: how long a connection attempt runs alone before the next address is tried too. */
export const CONNECTION_ATTEMPT_DELAY_MS = 250;

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

/** A stack the default resolver can run on (a Morgana stack: UDP, a clock, a random device and name servers). */
function resolverStack(stack: StackV4): ResolverStack | undefined {
  const s = stack as Partial<ResolverStack>;
  return typeof s.clock?.setTimer === 'function' && typeof s.random?.uint32 === 'function' && s.dns !== undefined ? (s as ResolverStack) : undefined;
}

/** Addresses with the families alternating, the first address's family first (RFC 8305 §4). */
function interleaved(addresses: readonly LookupAddress[]): LookupAddress[] {
  const first = addresses[0]?.family;
  const same = addresses.filter((a) => a.family === first);
  const other = addresses.filter((a) => a.family !== first);
  const out: LookupAddress[] = [];
  for (let i = 0; i < Math.max(same.length, other.length); i++) {
    if (i < same.length) out.push(same[i]!);
    if (i < other.length) out.push(other[i]!);
  }
  return out;
}

/**
 * Connects to the first of `addresses` that answers: attempts start one after another, each
 * when the previous one failed or {@link CONNECTION_ATTEMPT_DELAY_MS} after it started; the
 * first established connection wins and later ones are closed. Rejects with the last error.
 */
function connectFirst(tcp: TcpV4, addresses: readonly LookupAddress[], port: number): Promise<Duplex> {
  const order = interleaved(addresses);
  if (order.length === 0) return Promise.reject(new MorganaError('ERR_NO_ADDRESS', 'the name has no address to connect to'));
  return new Promise((resolve, reject) => {
    let next = 0;
    let pending = 0;
    let done = false;
    const timers = new Set<NodeJS.Timeout>();
    const finish = () => {
      done = true;
      for (const t of timers) clearTimeout(t);
    };
    const attempt = (): void => {
      if (done || next >= order.length) return;
      const { address } = order[next++]!;
      pending++;
      const timer = setTimeout(() => (timers.delete(timer), attempt()), CONNECTION_ATTEMPT_DELAY_MS);
      timers.add(timer);
      let connecting: Promise<Duplex>;
      try {
        connecting = Promise.resolve(tcp.connect(address, port));
      } catch (error) {
        connecting = Promise.reject(error as Error);
      }
      connecting.then(
        (connection) => {
          pending--;
          if (done) return void connection.destroy();
          finish();
          resolve(connection);
        },
        (error: Error) => {
          pending--;
          clearTimeout(timer);
          timers.delete(timer);
          if (done) return;
          if (next < order.length) attempt();
          else if (pending === 0) {
            finish();
            reject(error);
          }
        },
      );
    };
    attempt();
  });
}

/**
 * Creates the HTTP (no `tls`) or HTTPS device over `stack`; `client` says how the client
 * resolves host names.
 */
export function httpOver(stack: StackV4, credentials?: TlsCredentials, client: HttpClientOptions = {}): HttpDevice {
  const scheme = credentials ? 'https' : 'http';
  const what = `the ${scheme} device`;
  tcpOf(stack, what);
  let defaultLookup: LookupFunction | undefined = client.lookup;
  const lookupFor = (requested: unknown): LookupFunction | undefined => {
    if (typeof requested === 'function') return requested as LookupFunction;
    if (!defaultLookup) {
      const onStack = resolverStack(stack);
      if (onStack) defaultLookup = new Resolver(onStack).lookup as LookupFunction;
    }
    return defaultLookup;
  };

  /** Resolves `host` (unless it is an address) and connects to one of its addresses. */
  const connect = (host: string, port: number, lookup: LookupFunction | undefined): Promise<Duplex> => {
    const tcp = tcpOf(stack, what);
    // No lookup (host sockets): the stack resolves the name itself.
    if (isIP(host) || !lookup) return tcp.connect(host, port);
    return new Promise<LookupAddress[]>((resolve, reject) => lookup(host, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses)))).then(
      (addresses) => connectFirst(tcp, addresses, port),
    );
  };

  const createConnection = (url: URL) => (options: { lookup?: unknown }, done: (error: Error | null, socket?: Duplex) => void) => {
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    // URL keeps IPv6 literals in brackets: [2001:db8::1].
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    connect(host, port, lookupFor(options?.lookup)).then(
      (raw) => {
        if (url.protocol !== 'https:') return done(null, raw);
        const socket = tls.connect({
          socket: raw as unknown as import('node:net').Socket,
          host,
          servername: isIP(host) ? undefined : host,
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
      // defaultPort: without an agent Node would not know it, and would write `Host: name:80`.
      const defaultPort = target.protocol === 'https:' ? 443 : 80;
      return module.request(target, { defaultPort, ...options, agent: undefined, createConnection: createConnection(target) as never }, callback);
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

