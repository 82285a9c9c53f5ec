/**
 * A stub resolver on a Morgana stack (RFC 1035 §7, RFC 5452 for spoofing resistance, RFC 2308
 * for negative caching): queries go over UDP from a fresh random source port with a random id
 * (both from the stack's random device), answers are accepted only from the server queried, to
 * that port, with that id and question; a truncated answer is asked again over TCP; silent or
 * failing servers are skipped after a timeout on the stack's clock, and every configured server
 * is tried `attempts` times over. Answers are cached by record set for their TTL (negative
 * answers for the SOA's negative TTL) in a bounded LRU cache, and CNAME chains are followed up to
 * a limit, across queries and the cache.
 *
 * `lookup` has the shape of `dns.lookup`, so `http.request({ lookup })` or `net.connect` can use
 * it; `resolve4`, `resolve6`, `resolveTxt`, `resolveMx`, `resolveSrv`, … return what the
 * `dns.promises` methods of the same names return. Errors carry Node's DNS codes (`ENOTFOUND`,
 * `ENODATA`, `ETIMEOUT`, `ESERVFAIL`, `EREFUSED`, …) with `hostname` set.
 *
 * Server addresses are text (`'10.0.0.53'`, `'10.0.0.53:5353'`, `'2001:db8::53'`,
 * `'[2001:db8::53]:53'`, `'fe80::53%net0'`), kept in canonical form so that they compare equal to
 * the source addresses of answers; the stack's UDP and TCP pick the family from the address, so
 * IPv4 and IPv6 servers work alike, and an IPv6-only stack takes its servers from router
 * advertisements (RDNSS) through `stack.dns.servers`.
 * @module
 */
import type { LookupAddress, LookupAllOptions, LookupOneOptions, LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock, Timer } from '../clock.js';
import { MorganaError } from '../errors.js';
import { formatInetAddress, parseInetAddress } from '../stack/inet.js';
import type { UdpPeer } from '../stack/udp.js';
import {
  CLASS_IN,
  type DnsMessage,
  type DnsRecord,
  DnsMalformedError,
  type MxData,
  RCODE,
  type SoaData,
  type SrvData,
  TYPE,
  canonicalName,
  emitMessage,
  nameToLabels,
  parseMessage,
  recordTypeCode,
  typeName,
} from '../wire/dns.js';

/** What the resolver needs of a stack: UDP, TCP, a clock, a random device and DHCP's servers. */
export interface ResolverStack {
  readonly udp: {
    bind(
      port: number,
      handler: (data: Buffer, from: UdpPeer) => void,
    ): { readonly port: number; send(dst: string, dstPort: number, data: Uint8Array): void; onError(l: (e: MorganaError) => void): void; close(): void };
  };
  readonly tcp?: { connect(host: string, port: number): Promise<Duplex> };
  readonly clock: Clock;
  readonly random: { uint32(): number };
  readonly dns?: { readonly servers: readonly string[] };
}

/** A name server: address text and port. */
export interface DnsServerAddress {
  address: string;
  port: number;
}

/** Options of {@link Resolver}. */
export interface ResolverOptions {
  /**
   * Name servers, tried in order (`'10.0.0.53'`, `'10.0.0.53:5353'`, `{ address, port }`).
   * Default: the stack's `dns.servers`, read at each query (so DHCP updates apply).
   */
  servers?: Array<string | DnsServerAddress>;
  /** How long to wait for each server per attempt, in ms (default 2000). */
  timeoutMs?: number;
  /** Rounds over all servers before `ETIMEOUT` (default 2). */
  attempts?: number;
  /** Ask again over TCP when a UDP answer is truncated (default true). */
  tcpFallback?: boolean;
  /** Most CNAMEs followed for one name (default 8). */
  maxCnameChain?: number;
  /** Cache limits, or `false` for no cache. */
  cache?: false | ResolverCacheOptions;
  /** Set RD in queries (default true: the servers of a stub resolver recurse for it). */
  recursionDesired?: boolean;
}

/** Limits of the resolver cache. */
export interface ResolverCacheOptions {
  /** Most record sets and negative entries kept (default 1024); the least recently used go first. */
  maxEntries?: number;
  /** TTLs are capped at this many seconds (default 86 400). */
  maxTtl?: number;
  /** Negative TTLs are capped at this many seconds (default 3600; RFC 2308 §5 suggests 1–3 h). */
  maxNegativeTtl?: number;
}

/** Resolver counters. */
export interface ResolverStats {
  /** Questions answered (from the cache or the network). */
  queries: number;
  /** Datagrams sent (retries included). */
  udpSent: number;
  /** Queries asked over TCP after a truncated answer. */
  tcpQueries: number;
  truncated: number;
  timeouts: number;
  /** Datagrams ignored: wrong source, id or question, not a response, or malformed. */
  ignored: number;
  malformed: number;
  cacheHits: number;
  negativeCacheHits: number;
  cacheMisses: number;
  /** Entries dropped to keep the cache within `maxEntries`. */
  cacheEvictions: number;
  /** Entries currently cached. */
  cacheSize: number;
}

/** An address with its remaining TTL, as `resolve4(name, { ttl: true })` returns it. */
export interface RecordWithTtl {
  address: string;
  ttl: number;
}

/** The answer to one question, after following CNAMEs. */
export interface ResolveResult {
  /** The records of the type asked for (owner: the end of the CNAME chain). */
  records: DnsRecord[];
  /** The CNAME records followed, in order. */
  chain: DnsRecord[];
  /** The name the records belong to. */
  canonicalName: string;
}

type DnsErrorCode = 'ENOTFOUND' | 'ENODATA' | 'ETIMEOUT' | 'ESERVFAIL' | 'EREFUSED' | 'ENOTIMP' | 'EFORMERR' | 'EBADRESP' | 'ECONNREFUSED' | 'ECANCELLED' | 'EBADNAME';

/** A DNS failure, with Node's code, the name asked and the kind of query. */
export class DnsError extends MorganaError {
  readonly hostname: string;
  readonly syscall: string;
  readonly errno: undefined = undefined;
  constructor(code: DnsErrorCode | 'ERR_DNS_NO_SERVERS' | 'ERR_DNS_CNAME_LIMIT', syscall: string, hostname: string, detail?: string) {
    super(code, `${syscall} ${code} ${hostname}${detail ? `: ${detail}` : ''}`);
    this.name = 'DnsError';
    this.hostname = hostname;
    this.syscall = syscall;
  }
}

interface CacheEntry {
  /** Clock ms. */
  expires: number;
  records?: DnsRecord[];
  /** A negative entry: NXDOMAIN (for every type of the name) or NODATA. */
  negative?: 'NXDOMAIN' | 'NODATA';
}

const RCODE_ERRORS: Record<number, DnsErrorCode> = {
  [RCODE.FORMERR]: 'EFORMERR',
  [RCODE.SERVFAIL]: 'ESERVFAIL',
  [RCODE.NOTIMP]: 'ENOTIMP',
  [RCODE.REFUSED]: 'EREFUSED',
};

/**
 * Parses `'10.0.0.53'`, `'10.0.0.53:5353'`, `'2001:db8::1'`, `'[2001:db8::1]:53'` or a
 * link-local `'fe80::1%net0'`. The address comes back in canonical text (RFC 5952 for IPv6, an
 * IPv4-mapped address as its dotted quad), as answers' source addresses are written.
 */
export function parseServerAddress(server: string | DnsServerAddress): DnsServerAddress {
  if (typeof server === 'object' && server !== null) {
    if (!isIP(server.address) || !Number.isInteger(server.port) || server.port < 1 || server.port > 65535) {
      throw new MorganaError('ERR_DNS_BAD_SERVER', `bad name server ${JSON.stringify(server)}`);
    }
    const parsed = parseInetAddress(server.address);
    const zone = parsed.family === 6 && parsed.zone !== undefined ? `%${parsed.zone}` : '';
    return { address: `${formatInetAddress(parsed)}${zone}`, port: server.port };
  }
  const text = String(server);
  let m: RegExpMatchArray | null;
  if (isIP(text)) return parseServerAddress({ address: text, port: 53 });
  if ((m = text.match(/^\[([0-9a-fA-F:.]+(?:%[\w.-]+)?)\]:(\d+)$/)) || (m = text.match(/^(\d+\.\d+\.\d+\.\d+):(\d+)$/))) {
    return parseServerAddress({ address: m[1]!, port: Number(m[2]) });
  }
  throw new MorganaError('ERR_DNS_BAD_SERVER', `bad name server ${JSON.stringify(text)}`);
}

function withoutZone(address: string): string {
  const percent = address.indexOf('%');
  return percent < 0 ? address : address.slice(0, percent);
}

function sameName(a: string, b: string): boolean {
  return canonicalName(a) === canonicalName(b);
}

/** The stub resolver; see the module documentation. */
export class Resolver {
  readonly #stack: ResolverStack;
  readonly #servers: DnsServerAddress[] | undefined;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #tcpFallback: boolean;
  readonly #maxChain: number;
  readonly #rd: boolean;
  readonly #cacheOn: boolean;
  readonly #maxEntries: number;
  readonly #maxTtl: number;
  readonly #maxNegTtl: number;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<DnsMessage>>();
  readonly #cancels = new Set<(error: Error) => void>();
  #closed = false;
  readonly #stats: Omit<ResolverStats, 'cacheSize'> = {
    queries: 0,
    udpSent: 0,
    tcpQueries: 0,
    truncated: 0,
    timeouts: 0,
    ignored: 0,
    malformed: 0,
    cacheHits: 0,
    negativeCacheHits: 0,
    cacheMisses: 0,
    cacheEvictions: 0,
  };

  constructor(stack: ResolverStack, options: ResolverOptions = {}) {
    this.#stack = stack;
    this.#servers = options.servers?.map(parseServerAddress);
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#attempts = options.attempts ?? 2;
    this.#tcpFallback = options.tcpFallback ?? true;
    this.#maxChain = options.maxCnameChain ?? 8;
    this.#rd = options.recursionDesired ?? true;
    this.#cacheOn = options.cache !== false;
    const cache = options.cache || {};
    this.#maxEntries = cache.maxEntries ?? 1024;
    this.#maxTtl = cache.maxTtl ?? 86_400;
    this.#maxNegTtl = cache.maxNegativeTtl ?? 3600;
    if (!(this.#timeoutMs > 0) || !Number.isInteger(this.#attempts) || this.#attempts < 1) {
      throw new MorganaError('ERR_OUT_OF_RANGE', 'timeoutMs must be positive and attempts a positive integer');
    }
    this.lookup = this.lookup.bind(this) as Resolver['lookup'];
  }

  /** The servers a query would use now. */
  get servers(): DnsServerAddress[] {
    return this.#servers ?? (this.#stack.dns?.servers ?? []).map(parseServerAddress);
  }

  /** Counters. */
  stats(): ResolverStats {
    return { ...this.#stats, cacheSize: this.#cache.size };
  }

  /** Empties the cache. */
  clearCache(): void {
    this.#cache.clear();
  }

  /** Fails pending queries with `ECANCELLED` and refuses new ones. */
  close(): void {
    this.#closed = true;
    for (const cancel of [...this.#cancels]) cancel(new DnsError('ECANCELLED', 'query', '', 'resolver closed'));
  }

  // ── resolution with the cache and CNAME chasing ──────────────────────────────────────────

  /**
   * Resolves `name`/`type` (a code or a name such as `'MX'`), following CNAMEs. Rejects with
   * `ENOTFOUND` (NXDOMAIN), `ENODATA` (the name has no such records), `ETIMEOUT`, `ESERVFAIL`,
   * `EREFUSED`, `ERR_DNS_CNAME_LIMIT` or `ERR_DNS_NO_SERVERS`.
   */
  async resolve(name: string, type: number | keyof typeof TYPE = 'A', syscall = 'query'): Promise<ResolveResult> {
    const code = typeof type === 'number' ? type : TYPE[type];
    if (code === undefined) throw new MorganaError('ERR_INVALID_ARG_VALUE', `unknown type ${String(type)}`);
    try {
      if (typeof name !== 'string' || name.length === 0) throw new DnsMalformedError('empty name');
      nameToLabels(name);
    } catch (error) {
      throw new DnsError('EBADNAME', syscall, String(name), (error as Error).message);
    }
    this.#stats.queries++;
    const chain: DnsRecord[] = [];
    let current = canonicalName(name);
    const seen = new Set<string>();
    for (;;) {
      if (seen.has(current) || chain.length > this.#maxChain) {
        throw new DnsError('ERR_DNS_CNAME_LIMIT', syscall, name, `more than ${this.#maxChain} CNAMEs or a CNAME loop`);
      }
      seen.add(current);
      // 1. The cache.
      const cached = this.#fromCache(current, code);
      if (cached === 'NXDOMAIN') throw new DnsError('ENOTFOUND', syscall, name);
      if (cached === 'NODATA') throw new DnsError('ENODATA', syscall, name);
      if (cached) {
        if (cached.cname && code !== TYPE.CNAME) {
          chain.push(cached.cname);
          current = canonicalName(cached.cname.data as string);
          continue;
        }
        return { records: cached.records!, chain, canonicalName: current };
      }
      // 2. The network.
      const response = await this.#ask(current, code, syscall, name);
      const outcome = this.#absorb(response, current, code);
      chain.push(...outcome.chain);
      if (outcome.loop) throw new DnsError('ERR_DNS_CNAME_LIMIT', syscall, name, 'a CNAME loop');
      if (outcome.records.length > 0) return { records: outcome.records, chain, canonicalName: outcome.end };
      if (response.rcode === RCODE.NXDOMAIN) throw new DnsError('ENOTFOUND', syscall, name);
      if (outcome.end === current || code === TYPE.CNAME) throw new DnsError('ENODATA', syscall, name);
      current = outcome.end; // the chain left the server's data: ask about its end
    }
  }

  /** A record set or CNAME for name/type from the cache; expired entries are dropped. */
  #fromCache(name: string, type: number): { records?: DnsRecord[]; cname?: DnsRecord } | 'NXDOMAIN' | 'NODATA' | undefined {
    if (!this.#cacheOn) return undefined;
    const nx = this.#get(`${name}|*`);
    if (nx) {
      this.#stats.negativeCacheHits++;
      return 'NXDOMAIN';
    }
    const exact = this.#get(`${name}|${type}`);
    if (exact) {
      if (exact.negative) {
        this.#stats.negativeCacheHits++;
        return 'NODATA';
      }
      this.#stats.cacheHits++;
      return { records: this.#aged(exact) };
    }
    if (type !== TYPE.CNAME) {
      const cname = this.#get(`${name}|${TYPE.CNAME}`);
      if (cname && !cname.negative && cname.records!.length > 0) {
        this.#stats.cacheHits++;
        return { cname: this.#aged(cname)[0]! };
      }
    }
    this.#stats.cacheMisses++;
    return undefined;
  }

  #get(key: string): CacheEntry | undefined {
    const entry = this.#cache.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.#stack.clock.now()) {
      this.#cache.delete(key);
      return undefined;
    }
    // Most recently used last.
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    return entry;
  }

  /** Copies of the entry's records with their remaining TTL. */
  #aged(entry: CacheEntry): DnsRecord[] {
    const ttl = Math.max(0, Math.floor((entry.expires - this.#stack.clock.now()) / 1000));
    return entry.records!.map((r) => ({ ...r, ttl }));
  }

  #put(key: string, entry: CacheEntry): void {
    if (!this.#cacheOn || entry.expires <= this.#stack.clock.now()) return;
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    while (this.#cache.size > this.#maxEntries) {
      this.#cache.delete(this.#cache.keys().next().value!);
      this.#stats.cacheEvictions++;
    }
  }

  /**
   * Walks the answer from `qname` along CNAMEs, caching each record set on the way (only those:
   * records about other names are not trusted, RFC 2181 §5.4.1), and the negative answer at the
   * end of the chain.
   */
  #absorb(response: DnsMessage, qname: string, qtype: number): { records: DnsRecord[]; chain: DnsRecord[]; end: string; loop?: boolean } {
    const now = this.#stack.clock.now();
    const setOf = (name: string, type: number) =>
      response.answers.filter((r) => r.class === CLASS_IN && recordTypeCode(r) === type && sameName(r.name, name));
    const cacheSet = (name: string, type: number, records: DnsRecord[]) => {
      const ttl = Math.min(this.#maxTtl, ...records.map((r) => r.ttl));
      this.#put(`${name}|${type}`, { expires: now + ttl * 1000, records });
    };
    const chain: DnsRecord[] = [];
    let end = qname;
    for (let i = 0; i <= this.#maxChain; i++) {
      const records = setOf(end, qtype);
      if (records.length > 0) {
        cacheSet(end, qtype, records);
        return { records, chain, end };
      }
      if (qtype === TYPE.CNAME) break;
      const cnames = setOf(end, TYPE.CNAME);
      if (cnames.length === 0) break;
      cacheSet(end, TYPE.CNAME, cnames.slice(0, 1));
      chain.push(cnames[0]!);
      const next = canonicalName(cnames[0]!.data as string);
      if (next === qname || chain.some((c) => sameName(c.name, next))) return { records: [], chain, end, loop: true };
      end = next;
    }
    // Negative caching (RFC 2308 §5): only with an SOA in the authority section, for the lesser
    // of its TTL and its MINIMUM field.
    // (A NOERROR answer whose chain ends without data and without an SOA says nothing
    // negative: the chain merely left the server's data, and resolve() asks about its end.)
    const soa = response.authorities.find((r) => r.type === 'SOA');
    if (soa?.type === 'SOA') {
      const expires = now + Math.min(soa.ttl, soa.data.minimum, this.#maxNegTtl) * 1000;
      if (response.rcode === RCODE.NXDOMAIN) this.#put(`${end}|*`, { expires, negative: 'NXDOMAIN' });
      else if (response.rcode === RCODE.NOERROR) this.#put(`${end}|${qtype}`, { expires, negative: 'NODATA' });
    }
    return { records: [], chain, end };
  }

  // ── transport ────────────────────────────────────────────────────────────────────────────

  /** One question to the servers, with retries; concurrent identical questions share it. */
  #ask(name: string, type: number, syscall: string, hostname: string): Promise<DnsMessage> {
    const key = `${name}|${type}`;
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const promise = this.#askServers(name, type, syscall, hostname).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, promise);
    return promise;
  }

  async #askServers(name: string, type: number, syscall: string, hostname: string): Promise<DnsMessage> {
    if (this.#closed) throw new DnsError('ECANCELLED', syscall, hostname, 'resolver closed');
    const servers = this.servers;
    if (servers.length === 0) throw new DnsError('ERR_DNS_NO_SERVERS', syscall, hostname, 'no name servers configured');
    let last: DnsError | undefined;
    for (let attempt = 0; attempt < this.#attempts; attempt++) {
      for (const server of servers) {
        let response: DnsMessage | undefined;
        try {
          response = await this.#udpExchange(server, name, type);
          if (response.tc && this.#tcpFallback && this.#stack.tcp) {
            this.#stats.truncated++;
            response = await this.#tcpExchange(server, name, type);
          }
        } catch (error) {
          if (error instanceof DnsError && error.code === 'ECANCELLED') throw error;
          last = new DnsError(error instanceof DnsError ? (error.code as DnsErrorCode) : 'EBADRESP', syscall, hostname, (error as Error).message);
          continue;
        }
        const failure = RCODE_ERRORS[response.rcode];
        if (failure) {
          last = new DnsError(failure, syscall, hostname, `from ${server.address}`);
          continue;
        }
        if (response.rcode !== RCODE.NOERROR && response.rcode !== RCODE.NXDOMAIN) {
          last = new DnsError('EBADRESP', syscall, hostname, `rcode ${response.rcode} from ${server.address}`);
          continue;
        }
        return response;
      }
    }
    throw last ?? new DnsError('ETIMEOUT', syscall, hostname);
  }

  #query(name: string, type: number): { id: number; bytes: Buffer } {
    const id = this.#stack.random.uint32() & 0xffff;
    return { id, bytes: emitMessage({ id, rd: this.#rd, questions: [{ name, type, class: CLASS_IN }] }) };
  }

  /** Is `message` the answer to our question? (RFC 5452 §9.1) */
  #matches(message: DnsMessage, id: number, name: string, type: number): boolean {
    const q = message.questions[0];
    return message.qr && message.id === id && message.questions.length === 1 && !!q && q.type === type && q.class === CLASS_IN && sameName(q.name, name);
  }

  /** A timer on the stack's clock and cancellation by `close()`, around one exchange. */
  #guard<T>(body: (resolve: (value: T) => void, reject: (error: Error) => void) => () => void, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: Timer | undefined;
      let cleanup: (() => void) | undefined;
      const finish = () => {
        timer?.cancel();
        this.#cancels.delete(cancel);
        cleanup?.();
      };
      const cancel = (error: Error) => {
        finish();
        reject(error);
      };
      this.#cancels.add(cancel);
      timer = this.#stack.clock.setTimer(this.#timeoutMs, () => {
        this.#stats.timeouts++;
        cancel(new DnsError('ETIMEOUT', 'query', what));
      });
      try {
        cleanup = body(
          (value) => {
            finish();
            resolve(value);
          },
          (error) => cancel(error),
        );
      } catch (error) {
        cancel(error as Error);
      }
    });
  }

  #udpExchange(server: DnsServerAddress, name: string, type: number): Promise<DnsMessage> {
    return this.#guard<DnsMessage>((resolve, reject) => {
      const { id, bytes } = this.#query(name, type);
      // Answers come from the address asked (without the zone of a link-local one).
      const expected = withoutZone(server.address);
      const socket = this.#stack.udp.bind(0, (data, from) => {
        if (from.address !== expected || from.port !== server.port) {
          this.#stats.ignored++;
          return;
        }
        let message: DnsMessage;
        try {
          message = parseMessage(data);
        } catch (error) {
          if (!(error instanceof DnsMalformedError)) throw error;
          this.#stats.malformed++;
          this.#stats.ignored++;
          return;
        }
        if (!this.#matches(message, id, name, type)) {
          this.#stats.ignored++;
          return;
        }
        resolve(message);
      });
      socket.onError((error) => reject(new DnsError('ECONNREFUSED', 'query', name, error.message)));
      socket.send(server.address, server.port, bytes);
      this.#stats.udpSent++;
      return () => socket.close();
    }, name);
  }

  #tcpExchange(server: DnsServerAddress, name: string, type: number): Promise<DnsMessage> {
    this.#stats.tcpQueries++;
    return this.#guard<DnsMessage>((resolve, reject) => {
      const { id, bytes } = this.#query(name, type);
      let conn: Duplex | undefined;
      let done = false;
      this.#stack.tcp!.connect(server.address, server.port).then(
        (c) => {
          if (done) return void c.destroy();
          conn = c;
          let buffered = Buffer.alloc(0);
          c.on('data', (chunk: Buffer) => {
            buffered = Buffer.concat([buffered, chunk]);
            while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
              const length = buffered.readUInt16BE(0);
              const data = buffered.subarray(2, 2 + length);
              buffered = buffered.subarray(2 + length);
              try {
                const message = parseMessage(data);
                if (this.#matches(message, id, name, type)) return resolve(message);
                this.#stats.ignored++;
              } catch (error) {
                this.#stats.malformed++;
                return reject(error as Error);
              }
            }
          });
          c.on('error', (error: Error) => reject(new DnsError('ECONNREFUSED', 'query', name, error.message)));
          c.on('end', () => reject(new DnsError('EBADRESP', 'query', name, 'TCP connection closed before the answer')));
          const framed = Buffer.allocUnsafe(2 + bytes.length);
          framed.writeUInt16BE(bytes.length, 0);
          bytes.copy(framed, 2);
          c.write(framed);
        },
        (error: Error) => reject(new DnsError('ECONNREFUSED', 'query', name, error.message)),
      );
      return () => {
        done = true;
        conn?.destroy();
      };
    }, name);
  }

  // ── Node-shaped API ──────────────────────────────────────────────────────────────────────

  /**
   * Like `dns.lookup`: `lookup(hostname, [options | family], callback)`. IP literals are returned
   * as they are, `localhost` as the loopback address; other names are resolved with A (family 4),
   * AAAA (family 6) or both (family 0, IPv4 first unless `order`/`verbatim` says otherwise).
   * `all: true` gives every address. Failures are `ENOTFOUND` errors, as `getaddrinfo` gives.
   * Bound to the instance, so `http.request({ lookup: resolver.lookup })` works.
   */
  lookup(hostname: string, callback: (error: NodeJS.ErrnoException | null, address: string, family: number) => void): void;
  lookup(hostname: string, options: number | LookupOneOptions, callback: (error: NodeJS.ErrnoException | null, address: string, family: number) => void): void;
  lookup(hostname: string, options: LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void): void;
  lookup(hostname: string, options: LookupOptions, callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void;
  lookup(hostname: string, optionsOrCallback: unknown, maybeCallback?: unknown): void {
    const callback = (typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback) as (
      error: NodeJS.ErrnoException | null,
      address?: string | LookupAddress[],
      family?: number,
    ) => void;
    if (typeof callback !== 'function') throw new MorganaError('ERR_INVALID_ARG_TYPE', 'lookup needs a callback');
    const raw = typeof optionsOrCallback === 'function' ? {} : optionsOrCallback;
    const options: LookupOptions = typeof raw === 'number' ? { family: raw } : ((raw ?? {}) as LookupOptions);
    this.lookupAll(hostname, options).then(
      (addresses) => {
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (error: NodeJS.ErrnoException) => callback(error),
    );
  }

  /** Every address of `hostname`, as `lookup(hostname, { all: true })` gives them. */
  async lookupAll(hostname: string, options: LookupOptions = {}): Promise<LookupAddress[]> {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : (options.family ?? 0);
    const literal = isIP(hostname);
    if (literal) return [{ address: hostname, family: literal }];
    if (canonicalName(hostname) === 'localhost') {
      return family === 6 ? [{ address: '::1', family: 6 }] : [{ address: '127.0.0.1', family: 4 }];
    }
    const want = (f: 4 | 6) => this.resolve(hostname, f === 4 ? TYPE.A : TYPE.AAAA, 'getaddrinfo').then(
      (r) => r.records.map((rec) => ({ address: rec.data as string, family: f })),
      (error: DnsError) => {
        if (error.code === 'ENOTFOUND' || error.code === 'ENODATA') return [];
        throw error;
      },
    );
    const order = (options as { order?: string }).order ?? 'ipv4first';
    let addresses: LookupAddress[];
    if (family === 4) addresses = await want(4);
    else if (family === 6) addresses = await want(6);
    else {
      const [v4, v6] = await Promise.all([want(4), want(6)]);
      addresses = order === 'ipv6first' ? [...v6, ...v4] : [...v4, ...v6];
    }
    if (addresses.length === 0) throw new DnsError('ENOTFOUND', 'getaddrinfo', hostname);
    return addresses;
  }

  /** IPv4 addresses of `hostname` (with their TTLs when `ttl` is set), like `dns.promises.resolve4`. */
  resolve4(hostname: string): Promise<string[]>;
  resolve4(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  async resolve4(hostname: string, options?: { ttl?: boolean }): Promise<string[] | RecordWithTtl[]> {
    const { records } = await this.resolve(hostname, TYPE.A, 'queryA');
    return options?.ttl ? records.map((r) => ({ address: r.data as string, ttl: r.ttl })) : records.map((r) => r.data as string);
  }

  /** IPv6 addresses of `hostname`, like `dns.promises.resolve6`. */
  resolve6(hostname: string): Promise<string[]>;
  resolve6(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  async resolve6(hostname: string, options?: { ttl?: boolean }): Promise<string[] | RecordWithTtl[]> {
    const { records } = await this.resolve(hostname, TYPE.AAAA, 'queryAaaa');
    return options?.ttl ? records.map((r) => ({ address: r.data as string, ttl: r.ttl })) : records.map((r) => r.data as string);
  }

  /** The CNAME of `hostname`. */
  async resolveCname(hostname: string): Promise<string[]> {
    return (await this.resolve(hostname, TYPE.CNAME, 'queryCname')).records.map((r) => r.data as string);
  }

  /** TXT records as arrays of strings (UTF-8), like `dns.promises.resolveTxt`. */
  async resolveTxt(hostname: string): Promise<string[][]> {
    return (await this.resolve(hostname, TYPE.TXT, 'queryTxt')).records.map((r) => (r.data as Buffer[]).map((b) => b.toString('utf8')));
  }

  /** MX records as `{ priority, exchange }`, like `dns.promises.resolveMx`. */
  async resolveMx(hostname: string): Promise<Array<{ priority: number; exchange: string }>> {
    return (await this.resolve(hostname, TYPE.MX, 'queryMx')).records.map((r) => {
      const d = r.data as MxData;
      return { priority: d.preference, exchange: d.exchange };
    });
  }

  /** SRV records as `{ priority, weight, port, name }`, like `dns.promises.resolveSrv`. */
  async resolveSrv(hostname: string): Promise<Array<{ priority: number; weight: number; port: number; name: string }>> {
    return (await this.resolve(hostname, TYPE.SRV, 'querySrv')).records.map((r) => {
      const d = r.data as SrvData;
      return { priority: d.priority, weight: d.weight, port: d.port, name: d.target };
    });
  }

  /** NS names. */
  async resolveNs(hostname: string): Promise<string[]> {
    return (await this.resolve(hostname, TYPE.NS, 'queryNs')).records.map((r) => r.data as string);
  }

  /** PTR names. */
  async resolvePtr(hostname: string): Promise<string[]> {
    return (await this.resolve(hostname, TYPE.PTR, 'queryPtr')).records.map((r) => r.data as string);
  }

  /** The SOA, shaped like `dns.promises.resolveSoa`. */
  async resolveSoa(hostname: string): Promise<{ nsname: string; hostmaster: string; serial: number; refresh: number; retry: number; expire: number; minttl: number }> {
    const d = (await this.resolve(hostname, TYPE.SOA, 'querySoa')).records[0]!.data as SoaData;
    return { nsname: d.mname, hostmaster: d.rname, serial: d.serial, refresh: d.refresh, retry: d.retry, expire: d.expire, minttl: d.minimum };
  }

  /** Describes a type code, for messages. */
  static typeName(code: number): string {
    return typeName(code);
  }
}

/** Creates a {@link Resolver} on `stack`. */
export function createResolver(stack: ResolverStack, options?: ResolverOptions): Resolver {
  return new Resolver(stack, options);
}
