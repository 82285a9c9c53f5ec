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
 * is dead; members the store does not hold (links, devices, sparse files, pax global headers) are
 * copied as they were, unless a write took their name.
 *
 * Archives from other writers are read as GNU tar reads them (see `tar-format.ts`: octal and
 * base-256 numbers, pax and GNU extended headers). Opening must read an archive to its end: a
 * header it cannot parse, a member cut short, or data after the end-of-archive marker stop the
 * scan, and the open fails with `ERR_KV_CORRUPT` whose `offset` says where. A read-only open may
 * instead mount the members before that point with `allowIncomplete`, and then says so in
 * {@link TarKv.incomplete}; a writable open always refuses, so it never cuts off or overwrites
 * what it has not read. The one exception is its own interrupted append, recognisable as a lone
 * zero block followed by data (a tar writer ends an archive with two zero blocks; an append
 * overwrites only the second, and makes sure its own second block is not zeros): that is cut off.
 * Limits: an extended header (pax or GNU long name) holds at most 1 MiB; sizes and times must be
 * safe integers.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { MorganaError } from '../errors.js';
import { corruptAt, KvError, readOnly, storageError } from './errors.js';
import { Key } from './key.js';
import {
  BLOCK,
  EXTENSION_TYPES,
  encodeEntry,
  isZeroBlock,
  padding,
  parseHeader,
  parsePax,
  sparseContinues,
  type TarHeader,
} from './tar-format.js';
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
  /**
   * Read-only mounts only: when the archive cannot be read to its end (a damaged header, a
   * truncated member, data after the end-of-archive marker), mount the members before that point
   * and report it in {@link TarKv.incomplete} instead of failing with `ERR_KV_CORRUPT`. Default
   * false. Refused (`ERR_INVALID_ARG_VALUE`) with `writable`: a writable open never skips data.
   */
  allowIncomplete?: boolean;
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

/** Where and why reading an archive stopped before its end. */
export interface TarIncomplete {
  /** The byte offset of the first member (or byte, after the end marker) that was not read. */
  offset: number;
  /** Why, in words. */
  reason: string;
}

type ScanStop = TarIncomplete;

/** A member the store does not hold (a link, a device, a sparse file, a pax global header). */
interface ForeignMember {
  /** Its bytes in the archive, extension headers included. */
  start: number;
  end: number;
  /** The key its name maps to (undefined for a global header). */
  key: Key | undefined;
}

interface Scan {
  tree: Tree<TarLeaf>;
  foreign: ForeignMember[];
  /** Where the end-of-archive marker (or the unread part) starts. */
  end: number;
  size: number;
  /** What follows `end`: see `#tail`; `'unread'` whenever `stop` is set. */
  tail: 'none' | 'unfinished' | 'unread';
  stop: ScanStop | undefined;
}

/** The pax records in force for a member: the global ones, then its own (an empty value unsets). */
function mergePax(globals: Map<string, string>, local: Map<string, string> | undefined): Map<string, string> | undefined {
  if (globals.size === 0) return local;
  const out = new Map(globals);
  for (const [k, v] of local ?? []) {
    if (v === '') out.delete(k);
    else out.set(k, v);
  }
  return out;
}

const isZeroes = (data: Buffer): boolean => data.every((b) => b === 0);

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
  #incomplete: TarIncomplete | undefined;
  #file: FileRef;
  /** Members the store does not hold, copied as they are by compaction unless a write replaced them. */
  #foreign: ForeignMember[] = [];
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
    if (options.writable && options.allowIncomplete) {
      throw new MorganaError('ERR_INVALID_ARG_VALUE', 'tarKv: allowIncomplete applies to read-only mounts only; a writable open never skips part of an archive');
    }
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
      if (scanned.stop !== undefined && !(options.allowIncomplete && !kv.writable)) {
        const advice = kv.writable ? 'refusing to open it writable, which would lose the rest' : 'open it with allowIncomplete to mount what precedes';
        throw corruptAt(path, scanned.stop.offset, `${scanned.stop.reason}; ${advice}`);
      }
      kv.#incomplete = scanned.stop;
      kv.tree = scanned.tree;
      kv.#foreign = scanned.foreign;
      kv.#end = scanned.end;
      kv.#live = liveBytes(kv.tree.root);
      if (kv.writable) await kv.#repairTail(scanned);
    } catch (e) {
      await fh.close();
      throw storageError(e, undefined, `cannot read ${path}`);
    }
    return kv;
  }

  /**
   * Reads the headers of the archive in `file` into a tree, seeking over the data. Stops at the
   * first member it cannot read (reported in `stop`, never thrown) and classifies what follows
   * the end-of-archive marker.
   */
  static async #scan(file: FileRef): Promise<Scan> {
    const { size } = await file.fh.stat();
    const tree = new Tree<TarLeaf>();
    const foreign: ForeignMember[] = [];
    let window = Buffer.alloc(0);
    let windowAt = 0;
    const read = async (at: number, length: number): Promise<Buffer> => {
      if (at >= windowAt && at + length <= windowAt + window.length) return window.subarray(at - windowAt, at - windowAt + length);
      const buf = Buffer.alloc(Math.min(Math.max(WINDOW, length), Math.max(0, size - at)));
      const { bytesRead } = await file.fh.read(buf, 0, buf.length, at);
      window = buf.subarray(0, bytesRead);
      windowAt = at;
      if (bytesRead < length) throw new KvError('ERR_KV_CORRUPT', `tar: short read at ${at}`, { offset: at });
      return window.subarray(0, length);
    };
    const globals = new Map<string, string>();
    let pax: Map<string, string> | undefined;
    let longName: string | undefined;
    let pos = 0;
    /** Where the member being read starts, extension headers included. */
    let memberStart = 0;
    const result = (end: number, tail: Scan['tail'], stop?: ScanStop): Scan => ({ tree, foreign, end, size, tail, stop });
    const stopped = (reason: string): Scan => result(memberStart, 'unread', { offset: memberStart, reason });
    for (;;) {
      const pending = pos !== memberStart;
      if (pos + BLOCK > size) {
        if (pending) return stopped(`the file ends after the extended headers of the member at ${memberStart}`);
        // The file may end right after the last member's data, without its padding.
        if (pos >= size || isZeroes(await read(pos, size - pos))) return result(pos, 'none');
        return stopped(`the file ends inside the header block at ${pos}`);
      }
      const block = await read(pos, BLOCK);
      if (isZeroBlock(block)) {
        if (pending) return stopped(`the extended headers of the member at ${memberStart} are followed by the end-of-archive marker`);
        const tail = await TarKv.#tail(file, pos, size);
        if (tail.kind !== 'unread') return result(pos, tail.kind);
        return result(pos, 'unread', { offset: tail.at, reason: `data follows the end-of-archive marker at ${pos} (a second archive?)` });
      }
      let header: TarHeader;
      try {
        header = parseHeader(block);
      } catch (e) {
        const where = pos === memberStart ? '' : ` (its header block at ${pos})`;
        return stopped(`${(e as Error).message}${where}`);
      }
      let dataAt = pos + BLOCK;
      if (header.sparseExtended) {
        // GNU old sparse: the sparse map continues in blocks between the header and the data.
        for (let more = true; more; dataAt += BLOCK) {
          if (dataAt + BLOCK > size) return stopped(`the file ends inside the sparse map of the member at ${memberStart}`);
          more = sparseContinues(await read(dataAt, BLOCK));
        }
      }
      const extension = EXTENSION_TYPES.has(header.type);
      // Pax records describe the next member, never an extension header in between.
      const records = extension ? undefined : mergePax(globals, pax);
      const sizeRecord = records?.get('size');
      if (sizeRecord !== undefined && !/^\d+$/.test(sizeRecord)) return stopped(`bad pax size ${JSON.stringify(sizeRecord)}`);
      // No data follows a directory header, whatever a size says (as GNU tar reads it).
      const dataSize = header.type === '5' ? 0 : sizeRecord === undefined ? header.size : Number(sizeRecord);
      if (!Number.isSafeInteger(dataSize)) return stopped(`the size of the member at ${memberStart} is out of range`);
      if (dataAt + dataSize > size) {
        return stopped(`the member at ${memberStart} needs ${dataSize} bytes of data from ${dataAt}; the file ends at ${size}`);
      }
      const next = dataAt + dataSize + padding(dataSize);
      if (extension) {
        if (dataSize > MAX_PAX_BYTES) return stopped(`the extended header at ${pos} is larger than ${MAX_PAX_BYTES} bytes`);
        const data = Buffer.from(await read(dataAt, dataSize));
        try {
          if (header.type === 'x') pax = new Map([...(pax ?? []), ...parsePax(data)]);
          else if (header.type === 'g') {
            for (const [k, v] of parsePax(data)) {
              if (v === '') globals.delete(k);
              else globals.set(k, v);
            }
            // A global header is a member of its own for compaction, which copies it as it is
            // (between another member's extension headers, it stays part of that member).
            if (!pending) {
              foreign.push({ start: memberStart, end: next, key: undefined });
              memberStart = next;
            }
          } else if (header.type === 'L') longName = data.toString('utf8').replace(/\0+$/, '');
          // 'K' (a long link target) matters only to links, which the store skips.
        } catch (e) {
          return stopped(`${(e as Error).message} (the extended header at ${pos})`);
        }
        pos = next;
        continue;
      }
      const name = records?.get('path') ?? longName ?? header.name;
      const timeRecord = records?.get('mtime');
      if (timeRecord !== undefined && !/^-?\d+(\.\d+)?$/.test(timeRecord)) return stopped(`bad pax mtime ${JSON.stringify(timeRecord)}`);
      const seconds = timeRecord === undefined ? header.mtime : Number(timeRecord);
      const mtime = new Date(Math.round(seconds * 1000));
      const [key, namedDir] = keyOfName(name);
      const sparse = [...(records?.keys() ?? [])].some((k) => k.startsWith('GNU.sparse.'));
      const regular = (header.type === '0' || header.type === '7') && !sparse;
      if (records?.get('MORGANA.deleted') === '1') tree.del(key);
      else if (header.type === '5' || (namedDir && regular)) tree.ensureDictionary(key, mtime);
      else if (regular && !key.isRoot) tree.put(key, { offset: dataAt, size: dataSize, mtime, file });
      // Links, devices, FIFOs, sparse files: not part of the store, but kept by compaction.
      else foreign.push({ start: memberStart, end: next, key });
      pax = undefined;
      longName = undefined;
      pos = next;
      memberStart = pos;
    }
  }

  /**
   * What follows the zero block at `end`: nothing but zeros (`'none'`); an append interrupted
   * before its first block (`'unfinished'`: a lone zero block then data, which no tar writer
   * leaves, since an end-of-archive marker is two zero blocks and an append overwrites only the
   * second); or data after a full end marker (`'unread'`, such as a second archive).
   */
  static async #tail(file: FileRef, end: number, size: number): Promise<{ kind: Scan['tail']; at: number }> {
    const buf = Buffer.alloc(WINDOW);
    for (let at = end; at < size; at += WINDOW) {
      const { bytesRead } = await file.fh.read(buf, 0, Math.min(WINDOW, size - at), at);
      const nonZero = buf.subarray(0, bytesRead).findIndex((b) => b !== 0);
      if (nonZero >= 0) return { kind: at + nonZero < end + 2 * BLOCK ? 'unfinished' : 'unread', at: at + nonZero };
      if (bytesRead === 0) break;
    }
    return { kind: 'none', at: size };
  }

  /** Makes the file end with an end marker after `#end`, cutting off an interrupted append only. */
  async #repairTail(scan: Scan): Promise<void> {
    const fh = this.#file.fh;
    if (scan.tail === 'none' && scan.size >= this.#end + END_MARKER.length) return;
    // Only zeros (read) or the remains of an unfinished append of ours follow `#end`.
    if (scan.tail === 'unfinished') await fh.truncate(this.#end);
    await writeAll(fh, END_MARKER, this.#end);
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
        // A group's second block must not be zeros: see `#tail`. A pax comment puts text there.
        const zeroStart = pieces.length === 0 && op.data.length > 0 && isZeroes(op.data.subarray(0, BLOCK));
        const header = encodeEntry({ name, type: '0', size: op.data.length, mtime: mtimeSeconds, ...(zeroStart ? { pax: { comment: 'morgana-kv' } } : {}) });
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
    // A write at, above or below a foreign member's name replaces it (for the store and for tar).
    this.#foreign = this.#foreign.filter(
      (m) => m.key === undefined || !ops.some((op) => op.key.isPrefixOf(m.key!) || m.key!.isPrefixOf(op.key)),
    );
    this.#live = Math.max(0, this.#live - replaced) + sumPuts(ops);
    const kept = this.#keptBytes();
    if (this.#autoCompact && this.#end > 1 << 20 && this.#end - kept > kept) await this.#compact();
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
      // Then the members the store does not hold, as they were (global headers keep their place
      // before the members they apply to), unless the store now has their name or a value above it.
      const source = this.#file;
      source.active++;
      try {
        const { size } = await source.fh.stat();
        for (const member of this.#foreign) {
          if (member.key !== undefined && this.#shadowed(member.key)) continue;
          const end = Math.min(member.end, size);
          for (let at = member.start; at < end; at += 1 << 20) {
            const chunk = Buffer.alloc(Math.min(1 << 20, end - at));
            const { bytesRead } = await source.fh.read(chunk, 0, chunk.length, at);
            if (bytesRead !== chunk.length) throw new KvError('ERR_KV_CORRUPT', `tar: ${this.path} is shorter than its index`);
            await writeAll(out, chunk, pos);
            pos += chunk.length;
          }
          const pad = padding(pos);
          if (pad > 0) await writeAll(out, Buffer.alloc(pad), pos);
          pos += pad;
        }
      } finally {
        source.active--;
      }
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
    if (scanned.stop !== undefined) throw corruptAt(this.path, scanned.stop.offset, `after compaction: ${scanned.stop.reason}`);
    await this.gate.exclusive(async () => {
      const old = this.#file;
      this.#file = file;
      this.#foreign = scanned.foreign;
      this.tree = scanned.tree;
      this.#end = scanned.end;
      this.#live = liveBytes(this.tree.root);
      old.retired = true;
      release(old);
    });
  }

  /** True when the store holds `key` or a value above it: a foreign member there is replaced. */
  #shadowed(key: Key): boolean {
    for (let k = key; ; k = k.parent) {
      const node = this.tree.lookup(k);
      if (node !== undefined && (k === key || node.kind === 'value')) return true;
      if (k.isRoot) return false;
    }
  }

  /**
   * Set when a read-only mount with `allowIncomplete` stopped before the end of the archive: the
   * store then holds only the members before `offset`. Undefined when the archive was read whole.
   */
  get incomplete(): TarIncomplete | undefined {
    return this.#incomplete === undefined ? undefined : { ...this.#incomplete };
  }

  /** Bytes kept by compaction: the live entries and the members the store does not hold. */
  #keptBytes(): number {
    let n = this.#live;
    for (const m of this.#foreign) n += m.end - m.start;
    return n;
  }

  /** Bytes of the archive (before its end marker) and bytes compaction would keep. */
  stats(): { archiveBytes: number; liveBytes: number } {
    return { archiveBytes: this.#end, liveBytes: this.#keptBytes() };
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
 * creates a missing archive unless `create: false`). Fails with `ERR_KV_CORRUPT` (its `offset`
 * naming the byte where reading stopped) when the archive cannot be read to its end, unless a
 * read-only mount passes `allowIncomplete`. See the module notes.
 */
export async function tarKv(file: string, options: TarKvOptions = {}): Promise<TarKv> {
  return TarKv.open(file, options);
}
