/**
 * Solo5 image inspection: the ABI note (target and ABI version) and the application manifest of a
 * unikernel image, as `solo5-elftool query-abi` / `query-manifest` report them and as the tenders
 * check them before they boot a guest. Needs no KVM and no Solo5 installation.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { MorganaError } from '../errors.js';
import { type ElfInfo, NT_SOLO5_ABI, NT_SOLO5_MANIFEST, findSolo5Note, readElfHeader, readElfNotes } from './elf.js';
import { type Solo5Manifest, decodeManifest } from './manifest.js';

/** Solo5 targets, by their `abi_target` number (`elf_abi.h`). */
export type Solo5Target = 'hvt' | 'spt' | 'virtio' | 'muen' | 'genode' | 'xen' | 'unknown';

const TARGETS: Record<number, Solo5Target> = { 1: 'hvt', 2: 'spt', 3: 'virtio', 4: 'muen', 5: 'genode', 6: 'xen' };

/** Numeric `abi_target` of each named target. */
export const ABI_TARGET_IDS: Readonly<Record<Exclude<Solo5Target, 'unknown'>, number>> = { hvt: 1, spt: 2, virtio: 3, muen: 4, genode: 5, xen: 6 };

/** The ABI note of an image. */
export interface Solo5Abi {
  /** Target name (`unknown` for numbers Solo5 does not define). */
  target: Solo5Target;
  /** The numeric `abi_target`. */
  targetId: number;
  /** ABI version: 1 for Solo5 0.6–0.7, 2 for 0.8 and later. */
  version: number;
}

/** Everything {@link inspectSolo5Image} learns about an image. */
export interface Solo5ImageInfo {
  abi: Solo5Abi;
  manifest: Solo5Manifest;
  elf: ElfInfo;
}

/** Decodes an `ABI1` descriptor (`struct abi1_info`, 16 bytes). */
export function decodeAbi(desc: Uint8Array): Solo5Abi {
  if (desc.length !== 16) throw new MorganaError('ERR_SOLO5_BAD_NOTE', `ABI note descriptor is ${desc.length} bytes, expected 16`);
  const dv = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
  const targetId = dv.getUint32(0, true);
  return { target: TARGETS[targetId] ?? 'unknown', targetId, version: dv.getUint32(4, true) };
}

/**
 * Parses an image held in memory. Throws {@link MorganaError}: `ERR_SOLO5_NOT_ELF`,
 * `ERR_SOLO5_UNSUPPORTED_ELF`, `ERR_SOLO5_BAD_ELF`, `ERR_SOLO5_BAD_NOTE`, `ERR_SOLO5_NOT_SOLO5`
 * (an ELF without any Solo5 note), `ERR_SOLO5_NO_ABI`, `ERR_SOLO5_NO_MANIFEST`,
 * `ERR_SOLO5_BAD_MANIFEST`. Never anything else, whatever the bytes.
 */
export function parseSolo5Image(image: Uint8Array): Solo5ImageInfo {
  const elf = readElfHeader(image);
  const notes = readElfNotes(image);
  const abiNote = findSolo5Note(notes, NT_SOLO5_ABI);
  const mftNote = findSolo5Note(notes, NT_SOLO5_MANIFEST);
  if (!abiNote && !mftNote) {
    throw new MorganaError('ERR_SOLO5_NOT_SOLO5', 'not a Solo5 image: the ELF has no Solo5 ABI or manifest note (Solo5 images before 0.6 have none)');
  }
  if (!abiNote) throw new MorganaError('ERR_SOLO5_NO_ABI', 'no Solo5 ABI information found in executable');
  if (!mftNote) throw new MorganaError('ERR_SOLO5_NO_MANIFEST', 'no Solo5 manifest found in executable');
  return { abi: decodeAbi(abiNote.desc), manifest: decodeManifest(mftNote.desc, mftNote.descOffset - mftNote.offset), elf };
}

/** Reads and parses an image file ({@link parseSolo5Image}); `ERR_SOLO5_IMAGE_UNREADABLE` when it cannot be read. */
export async function inspectSolo5Image(path: string): Promise<Solo5ImageInfo> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new MorganaError('ERR_SOLO5_IMAGE_UNREADABLE', `cannot read image ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseSolo5Image(bytes);
}

/** The ABI as `solo5-elftool query-abi` prints it. */
export function formatAbiJson(abi: Solo5Abi): string {
  return `{\n  "type": "solo5.abi",\n  "target": ${JSON.stringify(abi.target)},\n  "version": ${abi.version}\n}\n`;
}
