/**
 * The tar wire format, as far as the tar store needs it.
 *
 * Reading takes what GNU tar and POSIX pax writers produce: ustar headers (with the `prefix` field,
 * or star's shorter one), the old GNU header (no prefix), numbers in octal (leading spaces, ended
 * by NUL or space, or filling the field) and in GNU base-256 (two's complement, negative values
 * included, as GNU tar writes pre-1970 times), checksums summed unsigned or signed, pax extended
 * headers (`x`, and `g` whose records apply to every later member), GNU long names and link
 * targets (`L`, `K`), and the extension blocks of GNU's old sparse members. Writing produces ustar
 * headers, with a pax header in front for what ustar cannot hold (long or non-ASCII names, sizes of
 * 8 GiB and more, times before 1970 or after 2242).
 * @module
 */
import { KvError } from './errors.js';

/** The tar block size. */
export const BLOCK = 512;

/** Bytes of zero padding after `size` bytes of data. */
export const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

/** A parsed header block. */
export interface TarHeader {
  name: string;
  mode: number;
  /** The size field: bytes of data after the header (and its extension blocks), before pax overrides. */
  size: number;
  /** Seconds since the epoch (negative before 1970). */
  mtime: number;
  /** The type flag, with the old NUL for a regular file mapped to `'0'`. */
  type: string;
  linkname: string;
  /** A GNU old sparse member (`S`) whose sparse map continues in extension blocks after the header. */
  sparseExtended: boolean;
}

/** Type flags of the headers that describe the next member rather than being one. */
export const EXTENSION_TYPES: ReadonlySet<string> = new Set(['x', 'g', 'L', 'K']);

/** True when the 512 bytes at `offset` are all zero. */
export function isZeroBlock(block: Buffer, offset = 0): boolean {
  for (let i = offset; i < offset + BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function cString(block: Buffer, start: number, length: number): string {
  let end = start;
  while (end < start + length && block[end] !== 0) end++;
  return block.toString('utf8', start, end);
}

const corrupt = (message: string): KvError => new KvError('ERR_KV_CORRUPT', `tar: ${message}`);

/**
 * A numeric field, as GNU tar's `from_header` reads it: base-256 when the first byte has its top
 * bit set (big-endian two's complement over the rest of that byte's bits: `0x80…` positive,
 * `0xff…` negative); otherwise octal digits after optional spaces, ended by NUL, a space or the end
 * of the field. An empty field is 0.
 */
export function parseNumber(block: Buffer, start: number, length: number, what: string): number {
  const first = block[start]!;
  const end = start + length;
  if (first & 0x80) {
    let value = (first & 0x3f) - (first & 0x40 ? 0x40 : 0);
    for (let i = start + 1; i < end; i++) value = value * 256 + block[i]!;
    if (!Number.isSafeInteger(value)) throw corrupt(`the ${what} field (base-256) is out of range`);
    return value;
  }
  let i = start;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  for (; i < end && block[i]! >= 0x30 && block[i]! <= 0x37; i++) value = value * 8 + block[i]! - 0x30;
  if (i < end && block[i] !== 0 && block[i] !== 0x20) {
    throw corrupt(`bad ${what} field ${JSON.stringify(block.toString('latin1', start, end))}`);
  }
  return value;
}

/** The header checksum: the bytes summed with the checksum field counted as spaces. */
function checksum(block: Buffer, signed = false): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) sum += 0x20;
    else sum += signed ? (block[i]! << 24) >> 24 : block[i]!;
  }
  return sum;
}

/** Parses a header block; `ERR_KV_CORRUPT` if its checksum or fields are wrong. */
export function parseHeader(block: Buffer): TarHeader {
  const stored = parseNumber(block, 148, 8, 'checksum');
  // Some old writers summed signed bytes.
  if (stored !== checksum(block) && stored !== checksum(block, true)) throw corrupt('header checksum mismatch');
  let name = cString(block, 0, 100);
  if (block.toString('latin1', 257, 263) === 'ustar\0') {
    // POSIX ustar; star's variant ends its shorter prefix field before its times and a `tar` trailer.
    const star = block.toString('latin1', 508, 512) === 'tar\0';
    const prefix = cString(block, 345, star ? 131 : 155);
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  const flag = String.fromCharCode(block[156]!);
  const type = flag === '\0' ? '0' : flag;
  return {
    name,
    mode: parseNumber(block, 100, 8, 'mode'),
    // GNU tar and node-tar skip no data after a directory header, whatever its size field says.
    size: type === '5' ? 0 : parseNumber(block, 124, 12, 'size'),
    mtime: parseNumber(block, 136, 12, 'mtime'),
    type,
    linkname: cString(block, 157, 100),
    sparseExtended: type === 'S' && block[482] !== 0,
  };
}

/** True when a GNU sparse extension block says another one follows it. */
export const sparseContinues = (block: Buffer): boolean => block[504] !== 0;

/** Parses the records of a pax extended header (`"<len> <key>=<value>\n"`). */
export function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // padding
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw corrupt('malformed pax record');
    const length = Number(data.toString('latin1', pos, space));
    if (!Number.isInteger(length) || length <= space - pos + 1 || pos + length > data.length) throw corrupt('malformed pax record length');
    if (data[pos + length - 1] !== 0x0a) throw corrupt('pax record without newline');
    const record = data.toString('utf8', space + 1, pos + length - 1);
    const eq = record.indexOf('=');
    if (eq < 0) throw corrupt('pax record without =');
    out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return out;
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body);
  let length = bodyLength + 1;
  while (String(length).length + bodyLength !== length) length = String(length).length + bodyLength;
  return Buffer.from(`${length}${body}`, 'utf8');
}

function writeString(block: Buffer, value: string | Buffer, start: number, length: number): void {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  bytes.copy(block, start, 0, Math.min(length, bytes.length));
}

function writeOctal(block: Buffer, value: number, start: number, length: number): void {
  writeString(block, `${value.toString(8).padStart(length - 1, '0')}\0`, start, length);
}

/** What {@link encodeEntry} writes. */
export interface EntrySpec {
  /** The path inside the archive, without a trailing `/`. */
  name: string;
  /** `'0'` regular file, `'5'` directory. */
  type: '0' | '5';
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Extra pax records. */
  pax?: Record<string, string>;
}

function ustarBlock(name: Buffer, prefix: Buffer, spec: EntrySpec, type: string, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, name, 0, 100);
  writeOctal(block, spec.type === '5' ? 0o755 : 0o644, 100, 8);
  writeOctal(block, 0, 108, 8);
  writeOctal(block, 0, 116, 8);
  writeOctal(block, size, 124, 12);
  writeOctal(block, Math.min(MAX_OCTAL_SIZE, Math.max(0, Math.floor(spec.mtime))), 136, 12);
  block.write(type, 156, 'latin1');
  block.write('ustar\0', 257, 'latin1');
  block.write('00', 263, 'latin1');
  writeString(block, prefix, 345, 155);
  writeString(block, `${checksum(block).toString(8).padStart(6, '0')}\0 `, 148, 8);
  return block;
}

const MAX_OCTAL_SIZE = 0o77777777777;

/**
 * The header blocks of an entry: a ustar header, preceded by a pax header when the name does not
 * fit ustar (longer than 100 bytes and not splittable into prefix and name, or not ASCII), the size
 * or the time needs more than 11 octal digits or the time is before 1970, or extra records are given.
 */
export function encodeEntry(spec: EntrySpec): Buffer {
  const fullName = spec.type === '5' ? `${spec.name}/` : spec.name;
  const bytes = Buffer.from(fullName, 'utf8');
  const records: Buffer[] = [];
  let name = bytes;
  let prefix = Buffer.alloc(0);
  const ascii = bytes.length === fullName.length;
  if (!ascii || bytes.length > 100) {
    let split = -1;
    if (ascii) {
      for (let i = bytes.indexOf(0x2f); i >= 0; i = bytes.indexOf(0x2f, i + 1)) {
        if (i <= 155 && bytes.length - i - 1 <= 100 && bytes.length - i - 1 > 0) {
          split = i;
          break;
        }
      }
    }
    if (split >= 0) {
      prefix = bytes.subarray(0, split);
      name = bytes.subarray(split + 1);
    } else {
      records.push(paxRecord('path', fullName));
      name = bytes.subarray(Math.max(0, bytes.length - 100));
    }
  }
  let size = spec.size;
  if (size > MAX_OCTAL_SIZE) {
    records.push(paxRecord('size', String(size)));
    size = 0;
  }
  const mtime = Math.floor(spec.mtime);
  if (mtime < 0 || mtime > MAX_OCTAL_SIZE) records.push(paxRecord('mtime', String(mtime)));
  for (const [k, v] of Object.entries(spec.pax ?? {})) records.push(paxRecord(k, v));
  const header = ustarBlock(name, prefix, spec, spec.type, size);
  if (records.length === 0) return header;
  const data = Buffer.concat(records);
  const paxName = Buffer.from(`PaxHeaders/${name.toString('latin1').replace(/\//g, '_')}`.slice(0, 100), 'latin1');
  const paxHeader = ustarBlock(paxName, Buffer.alloc(0), { ...spec, type: '0' }, 'x', data.length);
  return Buffer.concat([paxHeader, data, Buffer.alloc(padding(data.length)), header]);
}
