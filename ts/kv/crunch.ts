/**
 * Crunch: a directory embedded into a TypeScript module at build time (`morgana crunch`), served at
 * run time as a read-only key-value store, like MirageOS's ocaml-crunch.
 *
 * The generated module holds each distinct content once, base64-encoded, with a table of paths,
 * sizes and SHA-256 digests; it is deterministic: entries are sorted, and the one modification time
 * given to every value is `SOURCE_DATE_EPOCH` when set, otherwise the newest modification time in
 * the directory (never the build time). Contents are decoded on first read.
 * @module
 */
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { OutOfRangeError } from '../errors.js';
import { KvError } from './errors.js';
import { compareSegments, Key } from './key.js';
import { type Leaf, TreeKv } from './tree.js';

/** The data a generated module passes to {@link crunchedKv}. */
export interface CrunchedData {
  /** The modification time of every value, in milliseconds since the epoch. */
  mtime: number;
  /** The distinct contents, base64. */
  blobs: readonly string[];
  /** `[path, blob index, size, SHA-256 hex]` per file. */
  files: ReadonlyArray<readonly [string, number, number, string]>;
}

interface CrunchLeaf extends Leaf {
  blob: number;
  digest: string;
}

/** The read-only store of a crunched directory. */
export class CrunchKv extends TreeKv<CrunchLeaf> {
  readonly #blobs: readonly string[];
  readonly #decoded: Array<Buffer | undefined>;

  /** Use {@link crunchedKv}. */
  constructor(data: CrunchedData) {
    super();
    this.#blobs = data.blobs;
    this.#decoded = new Array<Buffer | undefined>(data.blobs.length);
    const mtime = new Date(data.mtime);
    for (const [path, blob, size, digest] of data.files) {
      if (!(blob >= 0 && blob < data.blobs.length)) throw new KvError('ERR_KV_CORRUPT', `crunch: bad blob index for ${path}`);
      this.tree.put(Key.parse(path), { blob, size, digest, mtime });
    }
  }

  protected override async readLeaf(leaf: CrunchLeaf, offset: number, length: number): Promise<Buffer> {
    let bytes = this.#decoded[leaf.blob];
    if (bytes === undefined) {
      bytes = Buffer.from(this.#blobs[leaf.blob]!, 'base64');
      this.#decoded[leaf.blob] = bytes;
    }
    return Buffer.from(bytes.subarray(offset, offset + length));
  }

  protected override async leafDigest(leaf: CrunchLeaf): Promise<Buffer> {
    return Buffer.from(leaf.digest, 'hex');
  }
}

/** The store of a generated crunch module (called by the module itself). */
export function crunchedKv(data: CrunchedData): CrunchKv {
  return new CrunchKv(data);
}

/** Options of {@link crunchDirectory}. */
export interface CrunchOptions {
  /** The module specifier the generated code imports `crunchedKv` from (default `'morgana'`). */
  importFrom?: string;
  /**
   * The modification time to record, in seconds since the epoch. Default: the environment's
   * `SOURCE_DATE_EPOCH`, else the newest modification time of the files.
   */
  sourceDateEpoch?: number;
}

/** What {@link crunchDirectory} produced. */
export interface CrunchResult {
  /** The TypeScript module. */
  source: string;
  files: number;
  /** Total bytes of the files. */
  bytes: number;
  /** Distinct contents. */
  blobs: number;
}

/** Parses `SOURCE_DATE_EPOCH` (whole seconds since the epoch); `ERR_OUT_OF_RANGE` when malformed. */
export function parseSourceDateEpoch(value: string): number {
  if (!/^\d{1,15}$/.test(value.trim())) {
    throw new OutOfRangeError(`SOURCE_DATE_EPOCH must be whole seconds since the epoch, got ${JSON.stringify(value)}`);
  }
  return Number(value.trim());
}

/**
 * Embeds the directory `dir` into a TypeScript module exporting `kv` (and `default`), a
 * {@link CrunchKv}. Dotfiles are included; empty directories are not represented; a symbolic link
 * or special file is an error (`ERR_KV_UNSAFE_PATH`), as is a name that is not a valid key segment.
 */
export async function crunchDirectory(dir: string, options: CrunchOptions = {}): Promise<CrunchResult> {
  const files: Array<[Key, Buffer, number]> = [];
  const walk = async (path: string, key: Key): Promise<void> => {
    const entries = (await fsp.readdir(path, { withFileTypes: true })).sort((a, b) => compareSegments(a.name, b.name));
    for (const entry of entries) {
      if (!Key.isValidSegment(entry.name)) {
        throw new KvError('ERR_KV_INVALID_KEY', `crunch: ${JSON.stringify(join(path, entry.name))} is not a valid key segment`);
      }
      const child = join(path, entry.name);
      const k = key.append(entry.name);
      if (entry.isDirectory()) await walk(child, k);
      else if (entry.isFile()) {
        const st = await fsp.lstat(child);
        files.push([k, await fsp.readFile(child), Math.floor(st.mtimeMs / 1000)]);
      } else {
        throw new KvError('ERR_KV_UNSAFE_PATH', `crunch: refusing ${child}, which is not a regular file or directory`);
      }
    }
  };
  const st = await fsp.stat(dir);
  if (!st.isDirectory()) throw new KvError('ERR_KV_DICTIONARY_EXPECTED', `crunch: ${dir} is not a directory`);
  await walk(dir, Key.root);

  const env = process.env.SOURCE_DATE_EPOCH;
  const seconds =
    options.sourceDateEpoch ??
    (env !== undefined && env !== '' ? parseSourceDateEpoch(env) : files.reduce((m, [, , t]) => Math.max(m, t), 0));

  const blobs: string[] = [];
  const blobIndex = new Map<string, number>();
  const rows: string[] = [];
  let bytes = 0;
  for (const [key, data] of files) {
    const digest = createHash('sha256').update(data).digest('hex');
    let index = blobIndex.get(digest);
    if (index === undefined) {
      index = blobs.length;
      blobIndex.set(digest, index);
      blobs.push(data.toString('base64'));
    }
    bytes += data.length;
    rows.push(`  [${JSON.stringify(key.toString())}, ${index}, ${data.length}, '${digest}'],`);
  }
  const from = options.importFrom ?? 'morgana';
  const source = [
    '// Generated by `morgana crunch`: do not edit.',
    `// ${files.length} files, ${bytes} bytes, ${blobs.length} distinct contents; modification time ${new Date(seconds * 1000).toISOString()}.`,
    `import { crunchedKv, type CrunchKv } from ${JSON.stringify(from)};`,
    '',
    'const blobs: readonly string[] = [',
    ...blobs.map((b) => `  '${b}',`),
    '];',
    '',
    '/** `[path, blob index, size, SHA-256]` per file. */',
    'const files: ReadonlyArray<readonly [string, number, number, string]> = [',
    ...rows,
    '];',
    '',
    '/** The embedded directory, as a read-only key-value store. */',
    `export const kv: CrunchKv = crunchedKv({ mtime: ${seconds * 1000}, blobs, files });`,
    'export default kv;',
    '',
  ].join('\n');
  return { source, files: files.length, bytes, blobs: blobs.length };
}
