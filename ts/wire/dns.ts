/**
 * The DNS message wire format (RFC 1035 §4, RFC 3596 for AAAA, RFC 2782 for SRV): parse and
 * emit over byte buffers, every length checked. Parsing follows compression pointers only
 * backwards (so no loops are possible) and at most {@link MAX_POINTER_JUMPS} times per name;
 * names are at most 255 octets and labels 63. Anything malformed throws a
 * {@link DnsMalformedError} (`ERR_DNS_MALFORMED`), never another kind of error.
 *
 * Names are text without the trailing dot (`'www.example.test'`, the root is `''`); label bytes
 * outside printable ASCII, and `.` or `\` inside a label, are written `\DDD` (decimal) as in zone
 * files, so every wire name has one text form. Emitting compresses names (RFC 1035 §4.1.4).
 * @module
 */
import { isIPv4 } from 'node:net';
import { formatIpv6Address, parseIpv6Address } from '../address.js';
import { MorganaError } from '../errors.js';

/** Record and query types by name. */
export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  ANY: 255,
} as const;

/** The Internet class. */
export const CLASS_IN = 1;

/** Response codes (RFC 1035 §4.1.1). */
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** Most compression pointers followed while reading one name. */
export const MAX_POINTER_JUMPS = 64;
/** Longest name on the wire, in octets (RFC 1035 §2.3.4). */
export const MAX_NAME_LENGTH = 255;
/** Longest label, in octets. */
export const MAX_LABEL_LENGTH = 63;

/** A message that cannot be parsed (or a value that cannot be emitted); `offset` is where. */
export class DnsMalformedError extends MorganaError {
  /** Byte offset where parsing failed, when known. */
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super('ERR_DNS_MALFORMED', offset === undefined ? message : `${message} (at offset ${offset})`);
    this.name = 'DnsMalformedError';
    this.offset = offset;
  }
}

/** Header flags and codes. */
export interface DnsHeader {
  /** Transaction id, 0..65535. */
  id: number;
  /** A response (true) or a query. */
  qr: boolean;
  opcode: number;
  /** Authoritative answer. */
  aa: boolean;
  /** Truncated. */
  tc: boolean;
  /** Recursion desired. */
  rd: boolean;
  /** Recursion available. */
  ra: boolean;
  /** Authentic data (RFC 4035). */
  ad: boolean;
  /** Checking disabled (RFC 4035). */
  cd: boolean;
  rcode: number;
}

/** One question. `type` is a code (see {@link TYPE}); `class` usually {@link CLASS_IN}. */
export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

/** MX data. */
export interface MxData {
  preference: number;
  exchange: string;
}

/** SRV data (RFC 2782). */
export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/** SOA data. Times are in seconds. */
export interface SoaData {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

interface RecordBase {
  /** Owner name. */
  name: string;
  class: number;
  /** Time to live in seconds (0..2^31-1; larger values read as 0, RFC 2181 §8). */
  ttl: number;
}

/**
 * A resource record. Types Morgana knows carry decoded data (A and AAAA as address text, names
 * as text, TXT as its character-strings); others are `'OTHER'` with the type `code` and raw data.
 */
export type DnsRecord = RecordBase &
  (
    | { type: 'A'; data: string }
    | { type: 'AAAA'; data: string }
    | { type: 'CNAME' | 'NS' | 'PTR'; data: string }
    | { type: 'TXT'; data: Buffer[] }
    | { type: 'MX'; data: MxData }
    | { type: 'SRV'; data: SrvData }
    | { type: 'SOA'; data: SoaData }
    | { type: 'OTHER'; code: number; data: Buffer }
  );

/** The names of the record types with decoded data. */
export type DnsRecordType = Exclude<DnsRecord['type'], 'OTHER'>;

/** A whole message. */
export interface DnsMessage extends DnsHeader {
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

const KNOWN: Record<number, DnsRecordType> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
};

/** The type code of a record. */
export function recordTypeCode(record: DnsRecord): number {
  return record.type === 'OTHER' ? record.code : TYPE[record.type];
}

/** A type's name (`'A'`, `'TYPE65'` for unknown codes, as RFC 3597 writes them). */
export function typeName(code: number): string {
  return KNOWN[code] ?? (code === 41 ? 'OPT' : code === 255 ? 'ANY' : `TYPE${code}`);
}

/** Canonical comparison form of a name: lower-case ASCII, no trailing dot. */
export function canonicalName(name: string): string {
  const lower = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return lower.endsWith('.') && !lower.endsWith('\\.') ? lower.slice(0, -1) : lower;
}

// ── parsing ──────────────────────────────────────────────────────────────────────────────────

function fail(message: string, offset?: number): never {
  throw new DnsMalformedError(message, offset);
}

function need(buf: Uint8Array, offset: number, length: number, what: string): void {
  if (offset + length > buf.length) fail(`${what} runs past the end (${buf.length} bytes)`, offset);
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function labelText(b: Uint8Array, start: number, length: number): string {
  let s = '';
  for (let i = start; i < start + length; i++) {
    const c = b[i]!;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

/**
 * Reads the name at `offset`; returns it and the offset just past it (past the first pointer,
 * when there is one). Pointers must point strictly before the label that holds them.
 */
export function readName(buf: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let wireLength = 1; // the root label
  let jumps = 0;
  let limit = pos; // pointers must go below the start of the current run of labels
  for (;;) {
    need(buf, pos, 1, 'name');
    const len = buf[pos]!;
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      need(buf, pos, 2, 'compression pointer');
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (next < 0) next = pos + 2;
      if (target >= limit) fail('compression pointer does not point backwards', pos);
      if (++jumps > MAX_POINTER_JUMPS) fail('too many compression pointers', pos);
      pos = target;
      limit = target;
      continue;
    }
    if (kind !== 0) fail(`unsupported label type 0x${kind.toString(16)}`, pos);
    need(buf, pos + 1, len, 'label');
    wireLength += len + 1;
    if (wireLength > MAX_NAME_LENGTH) fail('name longer than 255 octets', pos);
    labels.push(labelText(buf, pos + 1, len));
    pos += len + 1;
  }
  return { name: labels.join('.'), next };
}

function readRecord(buf: Uint8Array, offset: number): { record: DnsRecord; next: number } {
  const { name, next: afterName } = readName(buf, offset);
  need(buf, afterName, 10, 'record header');
  const code = u16(buf, afterName);
  const klass = u16(buf, afterName + 2);
  const rawTtl = u32(buf, afterName + 4);
  const ttl = rawTtl > 0x7fffffff ? 0 : rawTtl;
  const rdlength = u16(buf, afterName + 8);
  const start = afterName + 10;
  const end = start + rdlength;
  need(buf, start, rdlength, 'record data');
  const base = { name, class: klass, ttl };
  const rdata = (what: string, length: number) => {
    if (rdlength !== length) fail(`${what} data must be ${length} bytes, got ${rdlength}`, start);
  };
  // A name inside the data must end inside it.
  const nameIn = (at: number) => {
    const r = readName(buf, at);
    if (r.next > end) fail('name runs past the record data', at);
    return r;
  };
  const done = (at: number, what: string) => {
    if (at !== end) fail(`${what} data has ${end - at} stray bytes`, at);
  };
  let record: DnsRecord;
  const type = KNOWN[code];
  switch (type) {
    case 'A':
      rdata('A', 4);
      record = { ...base, type, data: `${buf[start]}.${buf[start + 1]}.${buf[start + 2]}.${buf[start + 3]}` };
      break;
    case 'AAAA':
      rdata('AAAA', 16);
      record = { ...base, type, data: formatIpv6(buf.subarray(start, end)) };
      break;
    case 'CNAME':
    case 'NS':
    case 'PTR': {
      const r = nameIn(start);
      done(r.next, type);
      record = { ...base, type, data: r.name };
      break;
    }
    case 'MX': {
      if (rdlength < 3) fail('MX data too short', start);
      const r = nameIn(start + 2);
      done(r.next, 'MX');
      record = { ...base, type, data: { preference: u16(buf, start), exchange: r.name } };
      break;
    }
    case 'SRV': {
      if (rdlength < 7) fail('SRV data too short', start);
      const r = nameIn(start + 6);
      done(r.next, 'SRV');
      record = { ...base, type, data: { priority: u16(buf, start), weight: u16(buf, start + 2), port: u16(buf, start + 4), target: r.name } };
      break;
    }
    case 'SOA': {
      const m = nameIn(start);
      const r = nameIn(m.next);
      if (end - r.next !== 20) fail('SOA data has the wrong length', r.next);
      const o = r.next;
      record = {
        ...base,
        type,
        data: {
          mname: m.name,
          rname: r.name,
          serial: u32(buf, o),
          refresh: u32(buf, o + 4),
          retry: u32(buf, o + 8),
          expire: u32(buf, o + 12),
          minimum: u32(buf, o + 16),
        },
      };
      break;
    }
    case 'TXT': {
      const strings: Buffer[] = [];
      let at = start;
      while (at < end) {
        const len = buf[at]!;
        if (at + 1 + len > end) fail('TXT character-string runs past the record data', at);
        strings.push(Buffer.from(buf.subarray(at + 1, at + 1 + len)));
        at += 1 + len;
      }
      if (strings.length === 0) fail('TXT data is empty', start);
      record = { ...base, type, data: strings };
      break;
    }
    default:
      record = { ...base, type: 'OTHER', code, data: Buffer.from(buf.subarray(start, end)) };
  }
  return { record, next: end };
}

/** Reads the 12-byte header. */
export function parseHeader(buf: Uint8Array): DnsHeader & { qdcount: number; ancount: number; nscount: number; arcount: number } {
  if (!(buf instanceof Uint8Array)) fail('a DNS message must be a Buffer or Uint8Array');
  need(buf, 0, 12, 'header');
  const flags = u16(buf, 2);
  return {
    id: u16(buf, 0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    ad: (flags & 0x0020) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
    qdcount: u16(buf, 4),
    ancount: u16(buf, 6),
    nscount: u16(buf, 8),
    arcount: u16(buf, 10),
  };
}

/**
 * Parses a whole message. Throws {@link DnsMalformedError} (`ERR_DNS_MALFORMED`) for anything
 * that does not fit: truncated sections, counts larger than the data, bad pointers, record data
 * of the wrong length. Bytes after the last record are ignored.
 */
export function parseMessage(buf: Uint8Array): DnsMessage {
  try {
    const { qdcount, ancount, nscount, arcount, ...header } = parseHeader(buf);
    let offset = 12;
    const questions: DnsQuestion[] = [];
    for (let i = 0; i < qdcount; i++) {
      const { name, next } = readName(buf, offset);
      need(buf, next, 4, 'question');
      questions.push({ name, type: u16(buf, next), class: u16(buf, next + 2) });
      offset = next + 4;
    }
    const section = (count: number) => {
      const records: DnsRecord[] = [];
      for (let i = 0; i < count; i++) {
        const { record, next } = readRecord(buf, offset);
        records.push(record);
        offset = next;
      }
      return records;
    };
    const answers = section(ancount);
    const authorities = section(nscount);
    const additionals = section(arcount);
    return { ...header, questions, answers, authorities, additionals };
  } catch (error) {
    // Every check above throws DnsMalformedError; anything else would be a bug, reported as such.
    if (error instanceof DnsMalformedError) throw error;
    throw new DnsMalformedError(`unparseable message: ${(error as Error).message}`);
  }
}

// ── emitting ─────────────────────────────────────────────────────────────────────────────────

/** Splits name text into label byte strings, undoing `\DDD` and `\X` escapes; validates lengths. */
export function nameToLabels(name: string): Buffer[] {
  if (typeof name !== 'string') fail('a name must be a string');
  if (name === '' || name === '.') return [];
  const labels: Buffer[] = [];
  let current: number[] = [];
  let total = 1;
  const end = () => {
    if (current.length === 0) fail(`empty label in ${JSON.stringify(name)}`);
    if (current.length > MAX_LABEL_LENGTH) fail(`label longer than 63 octets in ${JSON.stringify(name)}`);
    total += current.length + 1;
    labels.push(Buffer.from(current));
    current = [];
  };
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) {
      if (i === name.length - 1) break; // trailing dot: absolute
      end();
    } else if (c === 0x5c) {
      const digits = name.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(digits) && Number(digits) < 256) {
        current.push(Number(digits));
        i += 3;
      } else if (i + 1 < name.length && name.charCodeAt(i + 1) <= 0x7f) {
        current.push(name.charCodeAt(++i));
      } else fail(`bad escape in ${JSON.stringify(name)}`);
    } else if (c > 0x7f) {
      fail(`non-ASCII character in ${JSON.stringify(name)} (use punycode)`);
    } else current.push(c);
  }
  end();
  if (total > MAX_NAME_LENGTH) fail(`name longer than 255 octets: ${JSON.stringify(name.slice(0, 40))}…`);
  return labels;
}

class Writer {
  buf = Buffer.alloc(512);
  length = 0;
  readonly #names = new Map<string, number>();

  ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v & 0xff;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.length);
    this.length += 4;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  /** Writes a name, compressed against names written before (case preserved). */
  name(text: string, compress = true): void {
    const labels = nameToLabels(text);
    for (let i = 0; i < labels.length; i++) {
      const key = labels
        .slice(i)
        .map((l) => l.toString('latin1'))
        .join('\0');
      const at = compress ? this.#names.get(key) : undefined;
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (compress && this.length < 0x4000) this.#names.set(key, this.length);
      this.u8(labels[i]!.length);
      this.bytes(labels[i]!);
    }
    this.u8(0);
  }
}

function checkUint(value: unknown, bits: 16 | 32, what: string): number {
  const max = bits === 16 ? 0xffff : 0xffffffff;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) fail(`${what} must be an integer from 0 to ${max}`);
  return value;
}

function writeRecord(w: Writer, r: DnsRecord): void {
  w.name(r.name);
  w.u16(checkUint(recordTypeCode(r), 16, 'type'));
  w.u16(checkUint(r.class, 16, 'class'));
  w.u32(checkUint(r.ttl, 32, 'ttl'));
  const lengthAt = w.length;
  w.u16(0);
  const start = w.length;
  switch (r.type) {
    case 'A':
      if (!isIPv4(r.data)) fail(`A data must be an IPv4 address, got ${JSON.stringify(r.data)}`);
      for (const part of r.data.split('.')) w.u8(Number(part));
      break;
    case 'AAAA':
      w.bytes(parseIpv6(r.data));
      break;
    case 'CNAME':
    case 'NS':
    case 'PTR':
      w.name(r.data);
      break;
    case 'MX':
      w.u16(checkUint(r.data.preference, 16, 'MX preference'));
      w.name(r.data.exchange);
      break;
    case 'SRV':
      w.u16(checkUint(r.data.priority, 16, 'SRV priority'));
      w.u16(checkUint(r.data.weight, 16, 'SRV weight'));
      w.u16(checkUint(r.data.port, 16, 'SRV port'));
      w.name(r.data.target, false); // RFC 2782: no compression of the target
      break;
    case 'SOA':
      w.name(r.data.mname);
      w.name(r.data.rname);
      w.u32(checkUint(r.data.serial, 32, 'SOA serial'));
      w.u32(checkUint(r.data.refresh, 32, 'SOA refresh'));
      w.u32(checkUint(r.data.retry, 32, 'SOA retry'));
      w.u32(checkUint(r.data.expire, 32, 'SOA expire'));
      w.u32(checkUint(r.data.minimum, 32, 'SOA minimum'));
      break;
    case 'TXT':
      if (!Array.isArray(r.data) || r.data.length === 0) fail('TXT data needs at least one string');
      for (const s of r.data) {
        const b = typeof s === 'string' ? Buffer.from(s) : s;
        if (!(b instanceof Uint8Array) || b.length > 255) fail('a TXT string must be at most 255 bytes');
        w.u8(b.length);
        w.bytes(b);
      }
      break;
    case 'OTHER':
      if (!(r.data instanceof Uint8Array)) fail('OTHER data must be bytes');
      w.bytes(r.data);
      break;
    default:
      fail(`unknown record type ${JSON.stringify((r as { type: unknown }).type)}`);
  }
  const rdlength = w.length - start;
  if (rdlength > 0xffff) fail('record data longer than 65535 bytes');
  w.buf.writeUInt16BE(rdlength, lengthAt);
}

/** The header fields and sections of a message to emit; omitted flags are false/0. */
export type DnsMessageInit = Partial<DnsMessage> & { id: number };

/**
 * Encodes a message, compressing names. Throws `ERR_DNS_MALFORMED` for values that cannot be
 * encoded (a label over 63 octets, an address that is not one, more than 65535 records, …).
 */
export function emitMessage(message: DnsMessageInit): Buffer {
  const w = new Writer();
  const questions = message.questions ?? [];
  const answers = message.answers ?? [];
  const authorities = message.authorities ?? [];
  const additionals = message.additionals ?? [];
  w.u16(checkUint(message.id, 16, 'id'));
  const opcode = message.opcode ?? 0;
  const rcode = message.rcode ?? 0;
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 15) fail('opcode must be 0..15');
  if (!Number.isInteger(rcode) || rcode < 0 || rcode > 15) fail('rcode must be 0..15');
  w.u16(
    (message.qr ? 0x8000 : 0) |
      (opcode << 11) |
      (message.aa ? 0x0400 : 0) |
      (message.tc ? 0x0200 : 0) |
      (message.rd ? 0x0100 : 0) |
      (message.ra ? 0x0080 : 0) |
      (message.ad ? 0x0020 : 0) |
      (message.cd ? 0x0010 : 0) |
      rcode,
  );
  for (const section of [questions, answers, authorities, additionals]) w.u16(checkUint(section.length, 16, 'section length'));
  for (const q of questions) {
    w.name(q.name);
    w.u16(checkUint(q.type, 16, 'question type'));
    w.u16(checkUint(q.class, 16, 'question class'));
  }
  for (const r of answers) writeRecord(w, r);
  for (const r of authorities) writeRecord(w, r);
  for (const r of additionals) writeRecord(w, r);
  return Buffer.from(w.buf.subarray(0, w.length));
}

// ── IPv6 text ────────────────────────────────────────────────────────────────────────────────

/** Formats 16 bytes as RFC 5952 text (`2001:db8::1`, `::ffff:10.0.0.1`); see ts/address.ts. */
export function formatIpv6(bytes: Uint8Array): string {
  return formatIpv6Address(bytes);
}

/** Parses IPv6 text into 16 bytes; malformed text is an `ERR_DNS_MALFORMED` here. */
export function parseIpv6(text: string): Buffer {
  try {
    return parseIpv6Address(text);
  } catch {
    fail(`not an IPv6 address: ${JSON.stringify(text)}`);
  }
}
