/**
 * A small, bounds-checked ELF64 reader for Solo5 unikernel images: it walks the `PT_NOTE` program
 * headers the way the Solo5 tenders do (not section names) and returns the notes it finds.
 *
 * Every offset and length read from the file is checked against the file before use; malformed
 * input raises a {@link MorganaError} with a stable code and never reads out of bounds:
 *
 * - `ERR_SOLO5_NOT_ELF`: not an ELF file (too short, bad magic);
 * - `ERR_SOLO5_UNSUPPORTED_ELF`: an ELF Solo5 never produces (32-bit, big-endian, bad version);
 * - `ERR_SOLO5_BAD_ELF`: the ELF header or program header table is inconsistent with the file;
 * - `ERR_SOLO5_BAD_NOTE`: a `PT_NOTE` segment or a note in it does not fall within the file.
 * @module
 */
import { MorganaError } from '../errors.js';

/** `n_type` of the Solo5 ABI note ("ABI1", little-endian). */
export const NT_SOLO5_ABI = 0x31494241;
/** `n_type` of the Solo5 application manifest note ("MFT1", little-endian). */
export const NT_SOLO5_MANIFEST = 0x3154464d;
/** Owner name of every Solo5 note. */
export const SOLO5_NOTE_OWNER = 'Solo5';

const PT_NOTE = 4;
const ELF64_EHDR_SIZE = 64;
const ELF64_PHDR_SIZE = 56;
const NOTE_HEADER_SIZE = 12;

/** One ELF note, as found in a `PT_NOTE` segment. */
export interface ElfNote {
  /** Owner name without its terminating NUL (e.g. `Solo5`). */
  owner: string;
  /** `n_namesz` as stored (including the NUL). */
  nameSize: number;
  /** `n_type`. */
  type: number;
  /** File offset of the note header. */
  offset: number;
  /** File offset of the descriptor. */
  descOffset: number;
  /** The descriptor bytes (a view of the image). */
  desc: Uint8Array;
  /** Index of the program header the note was found through. */
  segment: number;
}

/** Facts from the ELF header. */
export interface ElfInfo {
  /** `e_machine` as a name (`x86_64`, `aarch64`, `ppc64`) or `machine-<n>`. */
  machine: string;
  /** `e_type` as a name (`EXEC`, `DYN`, …) or `type-<n>`. */
  type: string;
  /** `e_entry`, as a hex string (`0x…`). */
  entry: string;
  /** Number of program headers. */
  programHeaders: number;
}

const MACHINES: Record<number, string> = { 3: 'i386', 21: 'ppc64', 62: 'x86_64', 183: 'aarch64', 243: 'riscv' };
const TYPES: Record<number, string> = { 0: 'NONE', 1: 'REL', 2: 'EXEC', 3: 'DYN', 4: 'CORE' };

function fail(code: string, message: string): never {
  throw new MorganaError(code, message);
}

function view(image: Uint8Array): DataView {
  return new DataView(image.buffer, image.byteOffset, image.byteLength);
}

/** Reads a u64 as a number; values beyond 2^53 become Infinity, which every bounds check rejects. */
function u64(dv: DataView, offset: number): number {
  const v = dv.getBigUint64(offset, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(v);
}

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

/** Checks the ELF identification and header; returns the header facts. */
export function readElfHeader(image: Uint8Array): ElfInfo {
  if (!(image instanceof Uint8Array)) fail('ERR_SOLO5_NOT_ELF', 'image must be a Buffer or Uint8Array');
  if (image.length < 16 || image[0] !== 0x7f || image[1] !== 0x45 || image[2] !== 0x4c || image[3] !== 0x46) {
    fail('ERR_SOLO5_NOT_ELF', 'not an ELF file (bad magic)');
  }
  if (image[4] !== 2) fail('ERR_SOLO5_UNSUPPORTED_ELF', `ELF class ${image[4]} is not ELF64; Solo5 images are 64-bit`);
  if (image[5] !== 1) fail('ERR_SOLO5_UNSUPPORTED_ELF', 'big-endian ELF; Solo5 images are little-endian');
  if (image[6] !== 1) fail('ERR_SOLO5_UNSUPPORTED_ELF', `ELF identification version ${image[6]} is not 1`);
  if (image.length < ELF64_EHDR_SIZE) fail('ERR_SOLO5_BAD_ELF', `truncated ELF header (${image.length} of ${ELF64_EHDR_SIZE} bytes)`);
  const dv = view(image);
  const phoff = u64(dv, 32);
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phnum === 0xffff) fail('ERR_SOLO5_BAD_ELF', 'extended program header numbering (PN_XNUM) is not supported');
  if (phnum > 0 && phentsize !== ELF64_PHDR_SIZE) fail('ERR_SOLO5_BAD_ELF', `program header entry size ${phentsize} is not ${ELF64_PHDR_SIZE}`);
  if (phnum > 0 && !(phoff + phnum * ELF64_PHDR_SIZE <= image.length)) {
    fail('ERR_SOLO5_BAD_ELF', `program header table (offset ${phoff}, ${phnum} entries) extends beyond the file (${image.length} bytes)`);
  }
  const machine = dv.getUint16(18, true);
  const type = dv.getUint16(16, true);
  return {
    machine: MACHINES[machine] ?? `machine-${machine}`,
    type: TYPES[type] ?? `type-${type}`,
    entry: `0x${dv.getBigUint64(24, true).toString(16)}`,
    programHeaders: phnum,
  };
}

/**
 * Returns every note of every `PT_NOTE` segment of an ELF64 little-endian image, in file order.
 * Name and descriptor sizes are rounded up to 4 bytes, as Solo5's tenders walk notes (Solo5's
 * manifest note, in an 8-aligned segment, carries its alignment padding inside the descriptor;
 * 8-byte notes such as GNU properties have sizes that are multiples of 8 anyway). Trailing bytes
 * too short for a note header are ignored, as padding.
 */
export function readElfNotes(image: Uint8Array): ElfNote[] {
  const header = readElfHeader(image);
  const dv = view(image);
  const phoff = u64(dv, 32);
  const notes: ElfNote[] = [];
  for (let i = 0; i < header.programHeaders; i++) {
    const ph = phoff + i * ELF64_PHDR_SIZE;
    if (dv.getUint32(ph, true) !== PT_NOTE) continue;
    const offset = u64(dv, ph + 8);
    const size = u64(dv, ph + 32);
    if (!(offset + size <= image.length)) {
      fail('ERR_SOLO5_BAD_NOTE', `PT_NOTE segment ${i} (offset ${offset}, ${size} bytes) extends beyond the file (${image.length} bytes)`);
    }
    const step = 4;
    const end = offset + size;
    let pos = offset;
    while (pos + NOTE_HEADER_SIZE <= end) {
      const namesz = dv.getUint32(pos, true);
      const descsz = dv.getUint32(pos + 4, true);
      const type = dv.getUint32(pos + 8, true);
      const nameOffset = pos + NOTE_HEADER_SIZE;
      const descOffset = nameOffset + align(namesz, step);
      if (!(descOffset + descsz <= end)) {
        fail('ERR_SOLO5_BAD_NOTE', `note at offset ${pos} (namesz ${namesz}, descsz ${descsz}) does not fall within its PT_NOTE segment ${i}`);
      }
      let nameEnd = nameOffset;
      while (nameEnd < nameOffset + namesz && image[nameEnd] !== 0) nameEnd++;
      const owner = Buffer.from(image.buffer, image.byteOffset + nameOffset, nameEnd - nameOffset).toString('latin1');
      notes.push({ owner, nameSize: namesz, type, offset: pos, descOffset, desc: image.subarray(descOffset, descOffset + descsz), segment: i });
      pos = descOffset + align(descsz, step);
    }
  }
  return notes;
}

/**
 * The first Solo5 note of type `type` (owner `Solo5`, `n_namesz` 6), as the tenders select it, or
 * undefined.
 */
export function findSolo5Note(notes: readonly ElfNote[], type: number): ElfNote | undefined {
  return notes.find((n) => n.type === type && n.nameSize === 6 && n.owner === SOLO5_NOTE_OWNER);
}
