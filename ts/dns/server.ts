/**
 * A small authoritative DNS server for appliances: one zone, read from a KV store, served over
 * UDP and TCP on a stack. It answers only for names in its zone (others are `REFUSED`: it does no
 * recursion and sets no RA), follows CNAMEs inside the zone, answers NXDOMAIN and NODATA with the
 * zone's SOA in the authority section (RFC 2308 §3), adds A/AAAA of in-zone MX, SRV and NS
 * targets as additional data, and truncates UDP answers over 512 bytes (TC set, sections empty)
 * so that clients ask again over TCP.
 *
 * Zone format: one KV value per owner name under `prefix` (default the root), the key being the
 * name relative to the origin (`@` for the origin itself, `www`, `_http._tcp`, or an absolute
 * name ending with a dot), the value JSON mapping type names to data, with an optional `ttl`:
 *
 * ```json
 * { "ttl": 300, "A": ["10.0.0.7"], "AAAA": ["2001:db8::7"], "TXT": [["v=1", "second string"], "one"],
 *   "MX": [{ "preference": 10, "exchange": "mail" }], "SRV": [{ "priority": 0, "weight": 5, "port": 80, "target": "www" }],
 *   "CNAME": "other", "NS": ["ns1"], "PTR": ["host.example."],
 *   "SOA": { "mname": "ns1", "rname": "hostmaster", "serial": 1, "refresh": 3600, "retry": 600, "expire": 86400, "minimum": 60 } }
 * ```
 *
 * Names inside data follow zone-file rules too (relative unless they end with a dot, `@` for the
 * origin). The origin must have an SOA. The zone is loaded when the server starts and again on
 * {@link DnsServer.reload}; a zone that fails to load throws `ERR_DNS_ZONE`.
 * Not supported (yet): wildcards, delegations, EDNS, zone transfers, DNSSEC.
 * @module
 */
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import { MorganaError } from '../errors.js';
import type { KvRo } from '../kv/types.js';
import type { UdpPeer } from '../stack/udp.js';
import {
  CLASS_IN,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
  DnsMalformedError,
  RCODE,
  TYPE,
  canonicalName,
  emitMessage,
  nameToLabels,
  parseHeader,
  parseMessage,
  recordTypeCode,
} from '../wire/dns.js';

/** What the server needs of a stack. */
export interface DnsServerStack {
  readonly udp: {
    bind(port: number, handler: (data: Buffer, from: UdpPeer) => void): { readonly port: number; send(dst: string, dstPort: number, data: Uint8Array): void; close(): void };
  };
  readonly tcp?: { listen(port: number, onConnection: (connection: Duplex) => void): { close(): unknown } };
  readonly clock: Clock;
}

/** Options of {@link startDnsServer}. */
export interface DnsServerOptions {
  /** The zone's origin, e.g. `'example.test'`. */
  origin: string;
  /** Where the zone is. */
  kv: KvRo;
  /** The KV dictionary holding the zone (default `/`). */
  prefix?: string;
  /** Port for UDP and TCP (default 53). */
  port?: number;
  /** Serve TCP too (default true when the stack has TCP). */
  tcp?: boolean;
  /** TTL of records whose value has no `ttl` (default 3600 s). */
  defaultTtl?: number;
  /** Largest UDP answer before truncation (default 512, RFC 1035 §4.2.1). */
  udpSize?: number;
  /** A TCP connection idle this long is closed (default 10 000 ms). */
  tcpIdleMs?: number;
}

/** Server counters. */
export interface DnsServerStats {
  udpQueries: number;
  tcpQueries: number;
  answered: number;
  nxdomain: number;
  nodata: number;
  refused: number;
  formerr: number;
  notimp: number;
  truncated: number;
  /** Datagrams dropped without an answer (too short for a header, or responses). */
  dropped: number;
}

/** A running server. */
export interface DnsServer {
  readonly port: number;
  /** Loads the zone from the KV store again. */
  reload(): Promise<void>;
  stats(): DnsServerStats;
  close(): void;
}

interface Zone {
  origin: string;
  soa: DnsRecord;
  /** Canonical owner name → records. */
  nodes: Map<string, DnsRecord[]>;
  /** Names that exist only because names below them do (empty non-terminals). */
  interior: Set<string>;
}

function zoneError(message: string): MorganaError {
  return new MorganaError('ERR_DNS_ZONE', message);
}

/** Turns a zone-file style name (relative, `@`, or absolute with a dot) into a canonical name. */
function absolute(name: string, origin: string): string {
  if (name === '@') return origin;
  if (name.endsWith('.') && !name.endsWith('\\.')) return canonicalName(name);
  return canonicalName(origin === '' ? name : `${name}.${origin}`);
}

const TYPES_IN_ZONE = ['A', 'AAAA', 'CNAME', 'NS', 'PTR', 'TXT', 'MX', 'SRV', 'SOA'] as const;

/** Builds the records of one owner from its JSON value. */
export function parseZoneValue(owner: string, origin: string, value: unknown, defaultTtl: number): DnsRecord[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw zoneError(`${owner}: the value must be a JSON object`);
  const v = value as Record<string, unknown>;
  const ttl = v.ttl ?? defaultTtl;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) throw zoneError(`${owner}: bad ttl`);
  for (const key of Object.keys(v)) {
    if (key !== 'ttl' && !(TYPES_IN_ZONE as readonly string[]).includes(key)) throw zoneError(`${owner}: unknown record type ${key}`);
  }
  const base = { name: owner, class: CLASS_IN, ttl };
  const list = (key: string): unknown[] => {
    const x = v[key];
    if (x === undefined) return [];
    return Array.isArray(x) ? x : [x];
  };
  const name = (x: unknown, what: string) => {
    if (typeof x !== 'string') throw zoneError(`${owner}: ${what} must be a name`);
    return absolute(x, origin);
  };
  const records: DnsRecord[] = [];
  try {
    for (const a of list('A')) records.push({ ...base, type: 'A', data: String(a) });
    for (const a of list('AAAA')) records.push({ ...base, type: 'AAAA', data: String(a) });
    for (const n of list('NS')) records.push({ ...base, type: 'NS', data: name(n, 'NS') });
    for (const n of list('PTR')) records.push({ ...base, type: 'PTR', data: name(n, 'PTR') });
    const cnames = list('CNAME');
    if (cnames.length > 1) throw zoneError(`${owner}: more than one CNAME`);
    for (const n of cnames) records.push({ ...base, type: 'CNAME', data: name(n, 'CNAME') });
    for (const t of list('TXT')) {
      const strings = (Array.isArray(t) ? t : [t]).map((s) => Buffer.from(String(s)));
      records.push({ ...base, type: 'TXT', data: strings });
    }
    for (const m of list('MX')) {
      const x = m as { preference?: unknown; exchange?: unknown };
      records.push({ ...base, type: 'MX', data: { preference: Number(x.preference), exchange: name(x.exchange, 'MX exchange') } });
    }
    for (const s of list('SRV')) {
      const x = s as { priority?: unknown; weight?: unknown; port?: unknown; target?: unknown };
      records.push({ ...base, type: 'SRV', data: { priority: Number(x.priority), weight: Number(x.weight), port: Number(x.port), target: name(x.target, 'SRV target') } });
    }
    for (const s of list('SOA')) {
      const x = s as Record<string, unknown>;
      records.push({
        ...base,
        type: 'SOA',
        data: {
          mname: name(x.mname, 'SOA mname'),
          rname: name(x.rname, 'SOA rname'),
          serial: Number(x.serial ?? 1),
          refresh: Number(x.refresh ?? 3600),
          retry: Number(x.retry ?? 600),
          expire: Number(x.expire ?? 604_800),
          minimum: Number(x.minimum ?? 60),
        },
      });
    }
    if (cnames.length > 0 && records.length > 1) throw zoneError(`${owner}: a CNAME cannot have other data (RFC 1034 §3.6.2)`);
    // Validate by encoding every record once.
    emitMessage({ id: 0, answers: records });
  } catch (error) {
    if (error instanceof DnsMalformedError) throw zoneError(`${owner}: ${error.message}`);
    throw error;
  }
  return records;
}

async function loadZone(kv: KvRo, prefix: string, originText: string, defaultTtl: number): Promise<Zone> {
  const origin = canonicalName(originText);
  nameToLabels(origin); // validates
  const nodes = new Map<string, DnsRecord[]>();
  let entries;
  try {
    entries = await kv.list(prefix);
  } catch (error) {
    throw new MorganaError('ERR_DNS_ZONE', `cannot list the zone at ${prefix}: ${(error as Error).message}`, { cause: error });
  }
  for (const [key, kind] of entries) {
    if (kind !== 'value') continue;
    const segment = key.segments[key.segments.length - 1]!;
    const owner = absolute(segment, origin);
    if (owner !== origin && !owner.endsWith(`.${origin}`)) throw zoneError(`${segment} is outside the zone ${origin}`);
    let value: unknown;
    try {
      value = JSON.parse((await kv.get(key)).toString('utf8'));
    } catch (error) {
      throw new MorganaError('ERR_DNS_ZONE', `${segment}: ${(error as Error).message}`, { cause: error });
    }
    nodes.set(owner, [...(nodes.get(owner) ?? []), ...parseZoneValue(owner, origin, value, defaultTtl)]);
  }
  const soa = nodes.get(origin)?.find((r) => r.type === 'SOA');
  if (!soa) throw zoneError(`the origin ${origin} has no SOA`);
  const interior = new Set<string>();
  for (const owner of nodes.keys()) {
    let name = owner;
    while (name !== origin && name.includes('.')) {
      name = name.slice(name.indexOf('.') + 1);
      if (!nodes.has(name)) interior.add(name);
    }
  }
  return { origin, soa, nodes, interior };
}

/**
 * Starts serving the zone at `options.kv`/`options.prefix` on `stack`, UDP and TCP port 53 (or
 * `options.port`). Resolves once the zone is loaded and the ports are bound.
 */
export async function startDnsServer(stack: DnsServerStack, options: DnsServerOptions): Promise<DnsServer> {
  const prefix = options.prefix ?? '/';
  const defaultTtl = options.defaultTtl ?? 3600;
  const udpSize = options.udpSize ?? 512;
  const idleMs = options.tcpIdleMs ?? 10_000;
  let zone = await loadZone(options.kv, prefix, options.origin, defaultTtl);
  const stats: DnsServerStats = { udpQueries: 0, tcpQueries: 0, answered: 0, nxdomain: 0, nodata: 0, refused: 0, formerr: 0, notimp: 0, truncated: 0, dropped: 0 };

  const inZone = (name: string) => name === zone.origin || name.endsWith(`.${zone.origin}`);
  const negativeSoa = (): DnsRecord => {
    const soa = zone.soa as Extract<DnsRecord, { type: 'SOA' }>;
    return { ...soa, ttl: Math.min(soa.ttl, soa.data.minimum) };
  };

  /** The answer to one query message, or undefined to stay silent. */
  const answer = (data: Buffer): DnsMessage | undefined => {
    let query: DnsMessage;
    try {
      query = parseMessage(data);
    } catch {
      // Answer FORMERR when at least the header is readable and it is a query.
      try {
        const h = parseHeader(data);
        if (h.qr) return (stats.dropped++, undefined);
        stats.formerr++;
        return reply({ id: h.id, opcode: h.opcode, rd: h.rd }, [], RCODE.FORMERR);
      } catch {
        stats.dropped++;
        return undefined;
      }
    }
    if (query.qr) return (stats.dropped++, undefined);
    if (query.opcode !== 0) return (stats.notimp++, reply(query, query.questions.slice(0, 1), RCODE.NOTIMP));
    if (query.questions.length !== 1) return (stats.formerr++, reply(query, [], RCODE.FORMERR));
    const q = query.questions[0]!;
    const qname = canonicalName(q.name);
    if ((q.class !== CLASS_IN && q.class !== 255) || !inZone(qname)) return (stats.refused++, reply(query, [q], RCODE.REFUSED));
    if (q.type === TYPE.OPT || q.type === 252 || q.type === 251) return (stats.notimp++, reply(query, [q], RCODE.NOTIMP));

    const answers: DnsRecord[] = [];
    let name = qname;
    const visited = new Set<string>();
    for (let hops = 0; hops < 9; hops++) {
      visited.add(name);
      const node = zone.nodes.get(name);
      if (!node) {
        if (zone.interior.has(name)) break; // NODATA
        stats.nxdomain++;
        return reply(query, [q], RCODE.NXDOMAIN, answers, [negativeSoa()]);
      }
      const matching = node.filter((r) => q.type === TYPE.ANY || recordTypeCode(r) === q.type);
      if (matching.length > 0) {
        answers.push(...matching);
        break;
      }
      const cname = node.find((r) => r.type === 'CNAME');
      if (!cname) break;
      answers.push(cname);
      name = cname.data as string;
      if (!inZone(name) || visited.has(name)) {
        stats.answered++;
        return reply(query, [q], RCODE.NOERROR, answers); // the chain leaves the zone, or loops
      }
    }
    if (answers.length === 0 || answers.every((r) => r.type === 'CNAME' && q.type !== TYPE.CNAME)) {
      stats.nodata++;
      return reply(query, [q], RCODE.NOERROR, answers, [negativeSoa()]);
    }
    stats.answered++;
    const additionals: DnsRecord[] = [];
    for (const r of answers) {
      const target = r.type === 'MX' ? r.data.exchange : r.type === 'SRV' ? r.data.target : r.type === 'NS' ? r.data : undefined;
      if (target === undefined) continue;
      for (const glue of zone.nodes.get(canonicalName(target)) ?? []) {
        if ((glue.type === 'A' || glue.type === 'AAAA') && !additionals.includes(glue)) additionals.push(glue);
      }
    }
    return reply(query, [q], RCODE.NOERROR, answers, [], additionals);
  };

  const reply = (
    query: { id: number; opcode?: number; rd?: boolean },
    questions: DnsQuestion[],
    rcode: number,
    answers: DnsRecord[] = [],
    authorities: DnsRecord[] = [],
    additionals: DnsRecord[] = [],
  ): DnsMessage => ({
    id: query.id,
    qr: true,
    opcode: query.opcode ?? 0,
    aa: rcode === RCODE.NOERROR || rcode === RCODE.NXDOMAIN,
    tc: false,
    rd: query.rd ?? false,
    ra: false,
    ad: false,
    cd: false,
    rcode,
    questions,
    answers,
    authorities,
    additionals,
  });

  const port = options.port ?? 53;
  const udp = stack.udp.bind(port, (data, from) => {
    stats.udpQueries++;
    const message = answer(data);
    if (!message) return;
    let bytes = emitMessage(message);
    if (bytes.length > udpSize) {
      stats.truncated++;
      bytes = emitMessage({ ...message, tc: true, answers: [], authorities: [], additionals: [] });
    }
    udp.send(from.address, from.port, bytes);
  });

  const connections = new Set<Duplex>();
  const tcpServer =
    options.tcp !== false && stack.tcp
      ? stack.tcp.listen(port, (conn) => {
          connections.add(conn);
          let buffered = Buffer.alloc(0);
          let idle = stack.clock.setTimer(idleMs, () => conn.destroy());
          conn.on('data', (chunk: Buffer) => {
            idle.cancel();
            idle = stack.clock.setTimer(idleMs, () => conn.destroy());
            buffered = Buffer.concat([buffered, chunk]);
            while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
              const length = buffered.readUInt16BE(0);
              const data = Buffer.from(buffered.subarray(2, 2 + length));
              buffered = buffered.subarray(2 + length);
              stats.tcpQueries++;
              const message = answer(data);
              if (!message) {
                conn.destroy();
                return;
              }
              const bytes = emitMessage(message);
              const framed = Buffer.allocUnsafe(2 + bytes.length);
              framed.writeUInt16BE(bytes.length, 0);
              bytes.copy(framed, 2);
              conn.write(framed);
            }
          });
          conn.on('error', () => {});
          conn.on('end', () => conn.end());
          conn.on('close', () => {
            idle.cancel();
            connections.delete(conn);
          });
        })
      : undefined;

  return {
    port: udp.port,
    async reload() {
      zone = await loadZone(options.kv, prefix, options.origin, defaultTtl);
    },
    stats: () => ({ ...stats }),
    close() {
      udp.close();
      void tcpServer?.close();
      for (const c of connections) c.destroy();
    },
  };
}
