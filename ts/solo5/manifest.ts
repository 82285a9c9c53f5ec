/**
 * The Solo5 application manifest: decoding the binary `MFT1` note with the checks of Solo5's
 * `mft_validate`, and the JSON form (`manifest.json`) with the rules of `solo5-elftool
 * gen-manifest`, printed the way `solo5-elftool query-manifest` prints it.
 *
 * Errors: `ERR_SOLO5_BAD_NOTE` (descriptor too short for the manifest header),
 * `ERR_SOLO5_BAD_MANIFEST` (a note that fails `mft_validate`), `ERR_SOLO5_BAD_MANIFEST_JSON`
 * (a JSON manifest or device list that breaks the rules).
 * @module
 */
import { MorganaError } from '../errors.js';

/** Device types a Solo5 manifest declares. */
export type Solo5DeviceType = 'NET_BASIC' | 'BLOCK_BASIC';

/** One device of a manifest. */
export interface Solo5Device {
  /** 1 to 67 ASCII letters and digits, unique in the manifest. */
  name: string;
  /** `NET_BASIC` or `BLOCK_BASIC`. */
  type: Solo5DeviceType;
}

/** A device decoded from a binary manifest, whose type may be one Solo5 does not define. */
export interface Solo5ManifestEntry {
  name: string;
  /** The type name, or `'<undefined type>'` (as `solo5-elftool` prints it) for unknown values. */
  type: Solo5DeviceType | '<undefined type>';
  /** The numeric `type` field. */
  typeId: number;
}

/** A decoded `MFT1` note. */
export interface Solo5Manifest {
  /** Manifest format version (always 1). */
  version: number;
  /** The declared devices, without the hidden `RESERVED_FIRST` entry 0. */
  devices: Solo5ManifestEntry[];
}

/** `MFT_NAME_MAX`: longest device name. */
export const MANIFEST_NAME_MAX = 67;
/** Most devices a manifest may declare (64 entries minus the hidden entry 0). */
export const MANIFEST_MAX_DEVICES = 63;
const MFT_MAX_ENTRIES = 64;
const ENTRY_SIZE = 104;
const HEADER_SIZE = 8;
const TYPE_BLOCK_BASIC = 1;
const TYPE_NET_BASIC = 2;
const TYPE_RESERVED_FIRST = 1 << 30;
const NAME_RE = /^[A-Za-z0-9]{1,67}$/;

/** Numeric device type values of `mft_abi.h`. */
export const MANIFEST_TYPE_IDS: Readonly<Record<Solo5DeviceType, number>> = { BLOCK_BASIC: TYPE_BLOCK_BASIC, NET_BASIC: TYPE_NET_BASIC };

function bad(message: string): never {
  throw new MorganaError('ERR_SOLO5_BAD_MANIFEST', `invalid Solo5 manifest: ${message}`);
}

/**
 * Decodes the descriptor of an `MFT1` note. `descStart` is the descriptor's offset from the start
 * of its note (20 for a `Solo5` note): the manifest structure is 8-byte aligned relative to the
 * note, so it starts after the padding that alignment implies (4 bytes in practice).
 */
export function decodeManifest(desc: Uint8Array, descStart = 20): Solo5Manifest {
  const pad = (8 - (descStart % 8)) % 8;
  if (desc.length < pad + HEADER_SIZE) {
    throw new MorganaError('ERR_SOLO5_BAD_NOTE', `manifest note descriptor too short (${desc.length} bytes)`);
  }
  const dv = new DataView(desc.buffer, desc.byteOffset + pad, desc.byteLength - pad);
  const version = dv.getUint32(0, true);
  const entries = dv.getUint32(4, true);
  if (version !== 1) bad(`unsupported version ${version}`);
  if (entries > MFT_MAX_ENTRIES) bad(`${entries} entries, more than ${MFT_MAX_ENTRIES}`);
  if (entries < 1) bad('no entries (entry 0 must be RESERVED_FIRST)');
  const expected = HEADER_SIZE + entries * ENTRY_SIZE;
  if (dv.byteLength !== expected) bad(`size ${dv.byteLength} does not match ${entries} entries (${expected} bytes)`);
  const devices: Solo5ManifestEntry[] = [];
  for (let i = 0; i < entries; i++) {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    if (dv.getUint8(at + MANIFEST_NAME_MAX) !== 0) bad(`entry ${i}: name is not NUL-terminated`);
    let len = 0;
    while (len < MANIFEST_NAME_MAX && dv.getUint8(at + len) !== 0) len++;
    const name = Buffer.from(dv.buffer, dv.byteOffset + at, len).toString('latin1');
    const typeId = dv.getUint32(at + 68, true);
    if (dv.getUint8(at + 96) !== 0) bad(`entry ${i}: 'attached' is set`);
    if (i === 0) {
      if (typeId !== TYPE_RESERVED_FIRST || name !== '') bad('entry 0 is not the RESERVED_FIRST entry');
      continue;
    }
    if (typeId === TYPE_RESERVED_FIRST) continue; // skipped, as solo5-elftool does
    const type = typeId === TYPE_NET_BASIC ? 'NET_BASIC' : typeId === TYPE_BLOCK_BASIC ? 'BLOCK_BASIC' : '<undefined type>';
    devices.push({ name, type, typeId });
  }
  return { version, devices };
}

/**
 * Encodes a device list as the descriptor of an `MFT1` note (with the leading alignment padding),
 * as the toolchain would link it. Useful to build test images; validates like
 * {@link validateDevices}.
 */
export function encodeManifest(devices: readonly Solo5Device[]): Buffer {
  const list = validateDevices(devices);
  const entries = list.length + 1;
  const out = Buffer.alloc(4 + HEADER_SIZE + entries * ENTRY_SIZE);
  out.writeUInt32LE(1, 4);
  out.writeUInt32LE(entries, 8);
  out.writeUInt32LE(TYPE_RESERVED_FIRST, 12 + 68);
  list.forEach((d, i) => {
    const at = 12 + (i + 1) * ENTRY_SIZE;
    out.write(d.name, at, 'latin1');
    out.writeUInt32LE(MANIFEST_TYPE_IDS[d.type], at + 68);
  });
  return out;
}

function badJson(message: string): never {
  throw new MorganaError('ERR_SOLO5_BAD_MANIFEST_JSON', message);
}

/**
 * Checks a device list against Solo5's rules: names of 1 to 67 ASCII letters and digits, at most
 * 63 devices, types `NET_BASIC` or `BLOCK_BASIC` (stricter than `solo5-elftool`, which leaves a
 * bad type to the C compiler), no duplicate names (which the tenders could not tell apart).
 * Returns plain copies; throws `ERR_SOLO5_BAD_MANIFEST_JSON`.
 */
export function validateDevices(devices: readonly unknown[]): Solo5Device[] {
  if (!Array.isArray(devices)) badJson('devices must be an array');
  if (devices.length > MANIFEST_MAX_DEVICES) badJson(`too many entries, maximum ${MANIFEST_MAX_DEVICES}`);
  const seen = new Set<string>();
  return devices.map((d, i) => {
    if (typeof d !== 'object' || d === null || Array.isArray(d)) badJson(`devices[${i}] must be an object`);
    const keys = Object.keys(d);
    const unknown = keys.find((k) => k !== 'name' && k !== 'type');
    if (unknown !== undefined) badJson(`devices[${i}]: unknown key '${unknown}'`);
    const { name, type } = d as Record<string, unknown>;
    if (typeof name !== 'string') badJson(`devices[${i}]: missing or non-string 'name'`);
    if (!NAME_RE.test(name)) badJson(`devices[${i}]: name '${name}' must be 1 to ${MANIFEST_NAME_MAX} ASCII letters or digits`);
    if (type !== 'NET_BASIC' && type !== 'BLOCK_BASIC') badJson(`devices[${i}] '${name}': type must be NET_BASIC or BLOCK_BASIC, got ${JSON.stringify(type)}`);
    if (seen.has(name)) badJson(`duplicate device name '${name}'`);
    seen.add(name);
    return { name, type };
  });
}

/**
 * Parses and validates a `manifest.json` text (or an already parsed value) with
 * `solo5-elftool gen-manifest`'s rules: exactly the keys `type` (`"solo5.manifest"`), `version`
 * (1) and `devices`. Returns the device list.
 */
export function parseManifestJson(source: string | unknown): Solo5Device[] {
  let value: unknown = source;
  if (typeof source === 'string') {
    try {
      value = JSON.parse(source);
    } catch (error) {
      throw new MorganaError('ERR_SOLO5_BAD_MANIFEST_JSON', `manifest is not JSON: ${(error as Error).message}`);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) badJson('manifest root must be an object');
  const root = value as Record<string, unknown>;
  for (const key of Object.keys(root)) if (key !== 'type' && key !== 'version' && key !== 'devices') badJson(`unknown key '${key}'`);
  if (root.type !== 'solo5.manifest') badJson(`'type' must be "solo5.manifest"`);
  if (root.version !== 1) badJson(`'version' must be 1`);
  if (!Array.isArray(root.devices)) badJson(`'devices' must be an array`);
  return validateDevices(root.devices);
}

/**
 * The manifest JSON for a device list, validated ({@link validateDevices}) and laid out as
 * `solo5-elftool query-manifest` prints it.
 */
export function formatManifestJson(devices: readonly (Solo5Device | Solo5ManifestEntry)[], validate = true): string {
  if (validate) validateDevices(devices.map((d) => ({ name: d.name, type: d.type })));
  const lines = devices.map((d, i) => `    { "name": ${JSON.stringify(d.name)}, "type": ${JSON.stringify(d.type)} }${i < devices.length - 1 ? ',' : ''}`);
  return ['{', '  "type": "solo5.manifest",', '  "version": 1,', '  "devices": [', ...lines, '  ]', '}', ''].join('\n');
}
