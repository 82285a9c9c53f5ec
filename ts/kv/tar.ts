/**
 * `tarKv(file)`: a key-value store in a tar archive (ustar, with pax extended headers for long and
 * non-ASCII names).
 *
 * Opening scans the headers only, seeking over the data, and keeps an index of offsets; reads go to
 * the file at those offsets, so neither the archive nor a whole value is loaded to serve
 * `getPartial`. Regular files are values, directories dictionaries; links and special files are
 * skipped (never followed). Later entries for a name replace earlier ones, as when tar extracts.
 *
 * With `writable: true` the archive is also written, by appending: every write (and every batch)
 * appends its entries and a new end-of-archive marker in one group. The group is written except
 * for its first block, synced, then its first block is written and synced: until that block lands
 * the old end marker still ends the archive, so a crash leaves the old state or the new one, and
 * opening the archive writable cuts off an unfinished group. A removal appends a tombstone entry (a
 * pax record `MORGANA.deleted=1`; other tar readers see an empty file). `compact()` rewrites the
 * archive with the live entries only, and runs by itself when more than half of a larger archive
 * is dead.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { KvError, readOnly, storageError } from './errors.js';
import { Key } from './key.js';
import { BLOCK, encodeEntry, isZeroBlock, padding, parseHeader, parsePax } from './tar-format.js';
import type { Op } from './transaction.js';
import { type Leaf, Tree, type TreeDir, TreeKvRw, type TreeNode } from './tree.js';

/** Options of {@link tarKv}. */
export interface TarKvOptions {
  /** Open for writing (appending) too; default false: a read-only mount. */
  writable?: boolean;
  /** With `writable`, create an empty archive if the file is missing (default true). */
  create?: boolean;
  /** With `writable`, compact when dead entries exceed live ones and 1 MiB (default true). */
  autoCompact?: boolean;
  /** The clock for the mtime of written entries (default `Date.now`). */
  now?: () => number;
}

/** An open archive file, closed once retired and no read uses it. */
interface FileRef {
  fh: fsp.FileHandle;
  active: number;
  retired: boolean;
}

interface TarLeaf extends Leaf {
  /** Where the data starts in `file`. */
  offset: number;
  file: FileRef;
}

const MAX_PAX_BYTES = 1 << 20;
const END_MARKER = Buffer.alloc(2 * BLOCK);
const WINDOW = 64 * 1024;

/** The space an entry takes, roughly: a header and the padded data. */
const footprint = (size: number): number => BLOCK + size + padding(size);

function release(file: FileRef): void {
  if (file.retired && file.active === 0) void file.fh.close().catch(() => undefined);
}

/** Turns an archive member name into a key (and whether it names a directory), or refuses it. */
function keyOfName(name: string): [Key, boolean] {
  let n = name;
  while (n.startsWith('./')) n = n.slice(2);
  while (n.startsWith('/')) n = n.slice(1);
  const isDir = n.endsWith('/');
  if (isDir) n = n.replace(/\/+$/, '');
  if (n === '' || n === '.') return [Key.root, true];
  try {
    return [Key.parse(n), isDir];
  } catch (e) {
    throw new KvError('ERR_KV_INVALID_KEY', `tar: refusing the member name ${JSON.stringify(name)}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

function liveBytes(node: TreeNode<TarLeaf>): number {
  if (node.kind === 'value') return footprint(node.leaf.size);
  let n = 0;
  for (const child of node.children.values()) n += liveBytes(child);
  return n;
}

/** The store returned by {@link tarKv}. */
export class TarKv extends TreeKvRw<TarLeaf> {
  /** The archive's path. */
  readonly path: string;
  /** True when opened with `writable`. */
  readonly writable: boolean;
  #file: FileRef;
  /** Where the end-of-archive marker starts: the next entry goes here. */
  #end = 0;
  #live = 0;
  readonly #now: () => number;
  readonly #autoCompact: boolean;

  private constructor(path: string, fh: fsp.FileHandle, options: TarKvOptions) {
    super();
    this.path = path;
    this.writable = options.writable ?? false;
    this.#file = { fh, active: 0, retired: false };
    this.#now = options.now ?? Date.now;
    this.#autoCompact = options.autoCompact ?? true;
  }

  /** Opens an archive. Use {@link tarKv}. */
  static async open(file: string, options: TarKvOptions = {}): Promise<TarKv> {
    const path = resolve(file);
    let fh: fsp.FileHandle;
    try {
      if (options.writable) {
        try {
          fh = await fsp.open(path, constants.O_RDWR | constants.O_NOFOLLOW);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || options.create === false) throw e;
          fh = await fsp.open(path, 'wx+', 0o644);
          await fh.write(END_MARKER, 0, END_MARKER.length, 0);
          await fh.datasync();
        }
      } else fh = await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new KvError('ERR_KV_NOT_FOUND', `no archive ${path}`, { cause: e });
      throw storageError(e, undefined, `cannot open ${path}`);
    }
    const kv = new TarKv(path, fh, options);
    try {
      const scanned = await TarKv.#scan(kv.#file);
      kv.tree = scanned.tree;
      kv.#end = scanned.end;
      kv.#live = liveBytes(kv.tree.root);
      if (kv.writable) await kv.#repairTail(scanned.size);
    } catch (e) {
      await fh.close();
      throw storageError(e, undefined, `cannot read ${path}`);
    }
    return kv;
  }

  /** Reads the headers of the archive in `file` into a tree; returns it with the end position. */
  static async #scan(file: FileRef): Promise<{ tree: Tree<TarLeaf>; end: number; size: number }> {
    const { size } = await file.fh.stat();
    const tree = new Tree<TarLeaf>();
    let window = Buffer.alloc(0);
    let windowAt = 0;
    const read = async (at: number, length: number): Promise<Buffer> => {
      if (at >= windowAt && at + length <= windowAt + window.length) return window.subarray(at - windowAt, at - windowAt + length);
      const want = Math.max(WINDOW, length);
      const buf = Buffer.alloc(Math.min(want, Math.max(0, size - at)));
      const { bytesRead } = await file.fh.read(buf, 0, buf.length, at);
      window = buf.subarray(0, bytesRead);
      windowAt = at;
      if (bytesRead < length) throw new KvError('ERR_KV_CORRUPT', 'tar: short read');
      return window.subarray(0, length);
    };
    let pos = 0;
    let groupStart = 0;
    let pax: Map<string, string> | undefined;
    let longName: string | undefined;
    while (pos + BLOCK <= size) {
      const block = await read(pos, BLOCK);
      if (isZeroBlock(block)) break;
      let header;
      try {
        header = parseHeader(block);
      } catch {
        break; // a torn or foreign block: the archive ends here
      }
      const entrySize = header.type === 'x' || header.type === 'L' || header.type === 'g' ? header.size : Number(pax?.get('size') ?? header.size);
      if (!Number.isSafeInteger(entrySize) || entrySize < 0) throw new KvError('ERR_KV_CORRUPT', 'tar: bad entry size');
      const dataAt = pos + BLOCK;
      const next = dataAt + entrySize + padding(entrySize);
      if (dataAt + entrySize > size) break; // unfinished entry
      if (header.type === 'x' || header.type === 'L') {
        if (entrySize > MAX_PAX_BYTES) throw new KvError('ERR_KV_CORRUPT', 'tar: extended header too large');
        const data = Buffer.from(await read(dataAt, entrySize));
        if (header.type === 'x') pax = new Map([...(pax ?? []), ...parsePax(data)]);
        else longName = data.toString('utf8').replace(/\0+$/, '');
        pos = next;
        continue;
      }
      if (header.type !== 'g' && header.type !== 'K') {
        const name = pax?.get('path') ?? longName ?? header.name;
        const paxTime = pax?.get('mtime');
        const seconds = paxTime !== undefined && Number.isFinite(Number(paxTime)) ? Number(paxTime) : header.mtime;
        const mtime = new Date(Math.round(seconds * 1000));
        const [key, namedDir] = keyOfName(name);
        if (pax?.get('MORGANA.deleted') === '1') tree.del(key);
        else if (header.type === '5' || (namedDir && (header.type === '0' || header.type === '7'))) tree.ensureDictionary(key, mtime);
        else if ((header.type === '0' || header.type === '7') && !key.isRoot) {
          tree.put(key, { offset: dataAt, size: entrySize, mtime, file });
        }
        // links, devices, FIFOs: not part of the store
      }
      pax = undefined;
      longName = undefined;
      pos = next;
      groupStart = pos;
    }
    return { tree, end: groupStart, size };
  }

  /** Cuts off anything after the last complete group and writes a fresh end marker if needed. */
  async #repairTail(size: number): Promise<void> {
    const fh = this.#file.fh;
    if (size === this.#end + END_MARKER.length) {
      const tail = Buffer.alloc(END_MARKER.length);
      await fh.read(tail, 0, tail.length, this.#end);
      if (tail.equals(END_MARKER)) return;
    }
    await fh.truncate(this.#end);
    await fh.write(END_MARKER, 0, END_MARKER.length, this.#end);
    await fh.datasync();
  }

  protected override async readLeaf(leaf: TarLeaf, offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    leaf.file.active++;
    try {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await leaf.file.fh.read(out, done, length - done, leaf.offset + offset + done);
        if (bytesRead === 0) throw new KvError('ERR_KV_CORRUPT', `tar: ${this.path} is shorter than its index`);
        done += bytesRead;
      }
      return out;
    } finally {
      leaf.file.active--;
      release(leaf.file);
    }
  }

  protected override checkWritable(): void {
    this.checkOpen();
    if (!this.writable) throw readOnly(`the tar archive ${this.path} (opened without writable)`);
  }

  protected override async commit(ops: Op[]): Promise<void> {
    const mtimeSeconds = Math.floor(this.#now() / 1000);
    const mtime = new Date(mtimeSeconds * 1000);
    const pieces: Buffer[] = [];
    const leaves = new Map<Op, TarLeaf>();
    let at = this.#end;
    let replaced = 0;
    for (const op of ops) {
      const existing = this.tree.lookup(op.key);
      if (existing !== undefined) replaced += liveBytes(existing);
      const name = op.key.segments.join('/');
      if (op.op === 'del') {
        const header = encodeEntry({
          name,
          type: existing?.kind === 'dictionary' ? '5' : '0',
          size: 0,
          mtime: mtimeSeconds,
          pax: { 'MORGANA.deleted': '1' },
        });
        pieces.push(header);
        at += header.length;
      } else {
        const header = encodeEntry({ name, type: '0', size: op.data.length, mtime: mtimeSeconds });
        pieces.push(header, op.data, Buffer.alloc(padding(op.data.length)));
        leaves.set(op, { offset: at + header.length, size: op.data.length, mtime, file: this.#file });
        at += header.length + op.data.length + padding(op.data.length);
      }
    }
    const fh = this.#file.fh;
    try {
      // Everything but the first block, then the first block: see the module notes.
      const first = Buffer.from(pieces[0]!.subarray(0, BLOCK));
      pieces[0] = pieces[0]!.subarray(BLOCK);
      let pos = this.#end + BLOCK;
      for (const piece of pieces) {
        if (piece.length > 0) await writeAll(fh, piece, pos);
        pos += piece.length;
      }
      await writeAll(fh, END_MARKER, pos);
      await fh.datasync();
      await writeAll(fh, first, this.#end);
      await fh.datasync();
    } catch (e) {
      // The first block was not written (or the archive is in an unknown state): put the end back.
      await fh.write(END_MARKER, 0, BLOCK, this.#end).catch(() => undefined);
      throw storageError(e, ops[0]?.key, `cannot append to ${this.path}`);
    }
    this.#end = at;
    await this.applyOps(ops, (op) => leaves.get(op)!);
    this.#live = Math.max(0, this.#live - replaced) + sumPuts(ops);
    if (this.#autoCompact && this.#end > 1 << 20 && this.#end - this.#live > this.#live) await this.#compact();
  }

  /** Rewrites the archive with only the live entries (atomically: a new file renamed over the old). */
  async compact(): Promise<void> {
    return this.writeLock.run(async () => {
      this.checkWritable();
      await this.#compact();
    });
  }

  async #compact(): Promise<void> {
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(6).toString('hex')}.compact`);
    const out = await fsp.open(tmp, 'wx+', 0o644);
    let renamed = false;
    try {
      let pos = 0;
      const emit = async (node: TreeDir<TarLeaf>, key: Key): Promise<void> => {
        const names = [...node.children.keys()].sort((a, b) => Key.compare([a], [b]));
        for (const name of names) {
          const child = node.children.get(name)!;
          const k = key.append(name);
          const seconds = (d: Date | undefined) => Math.floor((d?.getTime() ?? 0) / 1000);
          if (child.kind === 'value') {
            const header = encodeEntry({ name: k.segments.join('/'), type: '0', size: child.leaf.size, mtime: seconds(child.leaf.mtime) });
            await writeAll(out, header, pos);
            pos += header.length;
            for (let done = 0; done < child.leaf.size; done += 1 << 20) {
              const chunk = await this.readLeaf(child.leaf, done, Math.min(1 << 20, child.leaf.size - done));
              await writeAll(out, chunk, pos);
              pos += chunk.length;
            }
            const pad = padding(child.leaf.size);
            if (pad > 0) await writeAll(out, Buffer.alloc(pad), pos);
            pos += pad;
          } else {
            if (child.children.size === 0) {
              const header = encodeEntry({ name: k.segments.join('/'), type: '5', size: 0, mtime: seconds(child.mtime) });
              await writeAll(out, header, pos);
              pos += header.length;
            }
            await emit(child, k);
          }
        }
      };
      await emit(this.tree.root, Key.root);
      await writeAll(out, END_MARKER, pos);
      await out.datasync();
      await fsp.rename(tmp, this.path);
      renamed = true;
      const dir = await fsp.open(dirname(this.path), constants.O_RDONLY | constants.O_DIRECTORY);
      await dir.sync().finally(() => dir.close());
    } catch (e) {
      await out.close();
      if (!renamed) await fsp.rm(tmp, { force: true });
      throw storageError(e, undefined, `cannot compact ${this.path}`);
    }
    const file: FileRef = { fh: out, active: 0, retired: false };
    const scanned = await TarKv.#scan(file);
    await this.gate.exclusive(async () => {
      const old = this.#file;
      this.#file = file;
      this.tree = scanned.tree;
      this.#end = scanned.end;
      this.#live = liveBytes(this.tree.root);
      old.retired = true;
      release(old);
    });
  }

  /** Bytes of the archive (before its end marker) and bytes of live entries. */
  stats(): { archiveBytes: number; liveBytes: number } {
    return { archiveBytes: this.#end, liveBytes: this.#live };
  }

  override async close(): Promise<void> {
    if (this.isClosed) return;
    await this.writeLock.run(async () => {
      await super.close();
      this.#file.retired = true;
      release(this.#file);
    });
  }
}

function sumPuts(ops: Op[]): number {
  let n = 0;
  for (const op of ops) if (op.op === 'put') n += footprint(op.data.length);
  return n;
}

async function writeAll(fh: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Mounts the tar archive `file`: read-only by default, appending with `{ writable: true }` (which
 * creates a missing archive unless `create: false`). See the module notes.
 */
export async function tarKv(file: string, options: TarKvOptions = {}): Promise<TarKv> {
  return TarKv.open(file, options);
}
