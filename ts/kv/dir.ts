/**
 * `dirKv(path)`: a key-value store in a directory, one file per value, durable and crash-safe.
 *
 * - `set` and `setPartial` write a temporary file, `fdatasync` it, `rename` it over the value and
 *   `fsync` the directory (and the parents of any directory created): after a crash a key holds its
 *   old or its new value, never a torn one, and once the promise resolves the value is on disk.
 * - `batch` is atomic across keys through a redo journal in `<path>/.morgana-kv/tx/`: the new values
 *   and a manifest are written and synced in a staging directory whose rename is the commit point;
 *   the journal is then applied and removed. Opening the store replays a committed journal and drops
 *   an uncommitted one, so a batch survives a crash whole or not at all.
 * - `remove` of a dictionary renames it into `.morgana-kv/trash/` (atomic), then deletes it.
 * - Keys never leave the directory: `.` and `..` are not keys, the name `.morgana-kv` is reserved at
 *   the root, and symbolic links met on the way to a key are refused (`ERR_KV_UNSAFE_PATH`), never
 *   followed; `list` leaves them out. This defends against links planted in the directory, not
 *   against another process racing to swap a directory for a link between check and use.
 * - Writes to one key are serialised; `remove`, `rename` and the application of a batch take the
 *   store exclusively, so readers never see half of them.
 *
 * - Keys must fit the file system, checked before anything is created: each segment at most 255
 *   UTF-8 bytes (NAME_MAX), the whole path (store directory, separators and segments) at most
 *   4,095 bytes (PATH_MAX less its NUL), which also bounds the depth; anything longer is
 *   `ERR_KV_INVALID_KEY`, as is a `rename` that would push a key under the moved dictionary past
 *   the limit. Removal deletes without recursion or over-long paths, so it copes with any tree,
 *   however deep, this store (or an older version of it) could have left.
 *
 * One process at a time may open a directory (opening runs recovery).
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { assertInteger } from '../errors.js';
import {
  clip,
  dictionaryDigest,
  Gate,
  KeyedMutex,
  MAX_OFFSET,
  newestUnder,
  planRename,
  toBuffer,
} from './common.js';
import { closed, dictionaryExpected, KvError, notFound, storageError, valueExpected } from './errors.js';
import { compareSegments, Key, type KeyLike } from './key.js';
import { type Op, Transaction } from './transaction.js';
import type { EntryKind, KvRo, KvRw, ValueLike } from './types.js';

/** The directory Morgana keeps its temporary files, journal and trash in; a reserved name at the root. */
export const DIR_KV_META = '.morgana-kv';

/** Options of {@link dirKv}. */
export interface DirKvOptions {
  /** Create the directory if it is missing (default true). */
  create?: boolean;
}

/** NAME_MAX: the longest segment, in UTF-8 bytes. */
export const DIR_KV_MAX_SEGMENT_BYTES = 255;
/**
 * PATH_MAX less its NUL: the longest path a key may have, the store's own directory, the `/`
 * separators and the segments in UTF-8 all counted. Every directory on the way to a key is
 * shorter, so checking the key checks its depth too (at most 2,047 segments, fewer with a longer
 * store path).
 */
export const DIR_KV_MAX_PATH_BYTES = 4095;
/** Below this length a child's path (this, `/` and a 255-byte name) still fits PATH_MAX. */
const SAFE_DIR_BYTES = DIR_KV_MAX_PATH_BYTES - 1 - DIR_KV_MAX_SEGMENT_BYTES;
const CHUNK = 1 << 20;

type Walk = { state: 'ok' } | { state: 'missing' } | { state: 'value'; at: Key };

const isMissing = (e: unknown): boolean => {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

const unsafe = (key: Key, why = 'a symbolic link'): KvError =>
  new KvError('ERR_KV_UNSAFE_PATH', `refusing ${why} on the way to ${key}`, { key });

async function lstatOrUndefined(path: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fsp.lstat(path);
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

async function syncDir(path: string): Promise<void> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    if (isMissing(e)) return;
    throw e;
  }
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeSynced(path: string, data: Buffer | string): Promise<void> {
  const fh = await fsp.open(path, 'wx', 0o644);
  try {
    await fh.writeFile(data);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** The store returned by {@link dirKv}. */
export class DirKv implements KvRw {
  /** The store's directory (its real path). */
  readonly path: string;
  readonly #meta: string;
  readonly #tmp: string;
  readonly #trash: string;
  readonly #tx: string;
  readonly #gate = new Gate();
  readonly #keys = new KeyedMutex();
  readonly #raw: KvRo;
  #closed = false;
  #seq = 0;

  private constructor(path: string) {
    this.path = path;
    this.#meta = join(path, DIR_KV_META);
    this.#tmp = join(this.#meta, 'tmp');
    this.#trash = join(this.#meta, 'trash');
    this.#tx = join(this.#meta, 'tx');
    // The same reads without the gate, for use while holding it.
    this.#raw = {
      exists: (k) => this.#exists(Key.from(k)),
      get: (k) => this.#get(Key.from(k)),
      getPartial: (k, o, l) => this.#getPartial(Key.from(k), o, l),
      list: (k) => this.#list(Key.from(k)),
      lastModified: (k) => this.#lastModified(Key.from(k)),
      digest: (k) => this.#digest(Key.from(k)),
      size: (k) => this.#size(Key.from(k)),
      close: async () => undefined,
    };
  }

  /** Opens (and recovers) the store in `path`. Use {@link dirKv}. */
  static async open(path: string, options: DirKvOptions = {}): Promise<DirKv> {
    const wanted = resolve(path);
    try {
      if ((options.create ?? true) && (await lstatOrUndefined(wanted)) === undefined) await fsp.mkdir(wanted, { recursive: true });
      const real = await fsp.realpath(wanted);
      const st = await fsp.stat(real);
      if (!st.isDirectory()) throw dictionaryExpected(Key.root);
      const kv = new DirKv(real);
      for (const d of [kv.#meta, kv.#tmp, kv.#trash, kv.#tx]) {
        const s = await lstatOrUndefined(d);
        if (s === undefined) await fsp.mkdir(d);
        else if (!s.isDirectory()) throw unsafe(Key.root, `${d}, which is not a directory,`);
      }
      await kv.#recover();
      return kv;
    } catch (e) {
      if (e instanceof KvError) throw e;
      if (isMissing(e)) throw new KvError('ERR_KV_NOT_FOUND', `no directory ${wanted}`, { cause: e });
      throw storageError(e, undefined, `cannot open ${wanted}`);
    }
  }

  // ---- paths -------------------------------------------------------------------------------

  /** The path of `key`; refuses, before anything touches the disk, a key the file system could not hold. */
  #file(key: Key): string {
    if (key.segments[0] === DIR_KV_META) {
      throw new KvError('ERR_KV_INVALID_KEY', `the key ${key} is reserved by the directory store`, { key });
    }
    let bytes = Buffer.byteLength(this.path);
    for (const s of key.segments) {
      const n = Buffer.byteLength(s);
      if (n > DIR_KV_MAX_SEGMENT_BYTES) {
        throw new KvError('ERR_KV_INVALID_KEY', `a segment of ${shortKey(key)} is longer than ${DIR_KV_MAX_SEGMENT_BYTES} bytes`, { key });
      }
      bytes += 1 + n;
    }
    if (bytes > DIR_KV_MAX_PATH_BYTES) {
      throw new KvError(
        'ERR_KV_INVALID_KEY',
        `the key ${shortKey(key)} (${key.depth} segments) makes a path of ${bytes} bytes in ${this.path}; at most ${DIR_KV_MAX_PATH_BYTES} fit`,
        { key },
      );
    }
    return key.isRoot ? this.path : join(this.path, ...key.segments);
  }

  /** Checks the proper ancestors of `key`: all directories, none missing, none a link. */
  async #walk(key: Key): Promise<Walk> {
    let path = this.path;
    const segs = key.segments;
    for (let i = 0; i < segs.length - 1; i++) {
      path = join(path, segs[i]!);
      const st = await lstatOrUndefined(path);
      if (st === undefined) return { state: 'missing' };
      if (st.isDirectory()) continue;
      const at = Key.of(segs.slice(0, i + 1));
      if (st.isFile()) return { state: 'value', at };
      throw unsafe(key, st.isSymbolicLink() ? `the symbolic link ${at}` : `the special file ${at}`);
    }
    return { state: 'ok' };
  }

  /** What `path` (for `key`) is: refusing links and special files. */
  #kindOf(key: Key, st: import('node:fs').Stats | undefined): EntryKind | undefined {
    if (st === undefined) return undefined;
    if (st.isDirectory()) return 'dictionary';
    if (st.isFile()) return 'value';
    throw unsafe(key, st.isSymbolicLink() ? `the symbolic link ${key}` : `the special file ${key}`);
  }

  async #exists(key: Key): Promise<EntryKind | undefined> {
    const file = this.#file(key);
    if (key.isRoot) return 'dictionary';
    if ((await this.#walk(key)).state !== 'ok') return undefined;
    return this.#kindOf(key, await lstatOrUndefined(file));
  }

  /** Opens the value at `key` for reading, without following a link. */
  async #openValue(key: Key): Promise<[fsp.FileHandle, number, Date]> {
    const file = this.#file(key);
    if (key.isRoot) throw valueExpected(key);
    if ((await this.#walk(key)).state !== 'ok') throw notFound(key);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if (isMissing(e)) throw notFound(key);
      if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw unsafe(key, `the symbolic link ${key}`);
      throw e;
    }
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw valueExpected(key);
      if (!st.isFile()) throw unsafe(key, `the special file ${key}`);
      return [fh, st.size, st.mtime];
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async #get(key: Key): Promise<Buffer> {
    const [fh, size] = await this.#openValue(key);
    try {
      return await readFully(fh, 0, size);
    } finally {
      await fh.close();
    }
  }

  async #getPartial(key: Key, offset: number, length: number): Promise<Buffer> {
    clip(0, offset, length); // argument checks first
    const [fh, size] = await this.#openValue(key);
    try {
      const [start, n] = clip(size, offset, length);
      return await readFully(fh, start, n);
    } finally {
      await fh.close();
    }
  }

  async #size(key: Key): Promise<number> {
    const [fh, size] = await this.#openValue(key);
    await fh.close();
    return size;
  }

  async #list(key: Key): Promise<Array<[Key, EntryKind]>> {
    const file = this.#file(key);
    if (!key.isRoot) {
      if ((await this.#walk(key)).state !== 'ok') throw notFound(key);
      const kind = this.#kindOf(key, await lstatOrUndefined(file));
      if (kind === undefined) throw notFound(key);
      if (kind === 'value') throw dictionaryExpected(key);
    }
    let dirents: import('node:fs').Dirent[];
    try {
      dirents = await fsp.readdir(file, { withFileTypes: true });
    } catch (e) {
      if (isMissing(e)) throw notFound(key);
      throw e;
    }
    const out: Array<[string, EntryKind]> = [];
    for (const d of dirents) {
      if (key.isRoot && d.name === DIR_KV_META) continue;
      if (!Key.isValidSegment(d.name)) continue;
      if (d.isFile()) out.push([d.name, 'value']);
      else if (d.isDirectory()) out.push([d.name, 'dictionary']);
      // links, sockets, devices: not part of the store
    }
    out.sort((a, b) => compareSegments(a[0], b[0]));
    return out.map(([name, kind]): [Key, EntryKind] => [key.append(name), kind]);
  }

  async #lastModified(key: Key): Promise<Date> {
    const kind = await this.#exists(key);
    if (kind === undefined) throw notFound(key);
    if (kind === 'dictionary') {
      return (await newestUnder(this.#raw, key)) ?? (await fsp.lstat(this.#file(key))).mtime;
    }
    const [fh, , mtime] = await this.#openValue(key);
    await fh.close();
    return mtime;
  }

  async #digest(key: Key): Promise<Buffer> {
    const kind = await this.#exists(key);
    if (kind === undefined) throw notFound(key);
    if (kind === 'dictionary') return dictionaryDigest(this.#raw, key);
    const [fh, size] = await this.#openValue(key);
    try {
      const hash = createHash('sha256');
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(size, 1)));
      for (let at = 0; ; ) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        at += bytesRead;
      }
      return hash.digest();
    } finally {
      await fh.close();
    }
  }

  // ---- public reads --------------------------------------------------------------------------

  #read<T>(keyLike: KeyLike, fn: (key: Key) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closed());
    let key: Key;
    try {
      key = Key.from(keyLike);
      this.#file(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#gate.shared(async () => {
      try {
        return await fn(key);
      } catch (e) {
        throw storageError(e, key);
      }
    });
  }

  exists(key: KeyLike): Promise<EntryKind | undefined> {
    return this.#read(key, (k) => this.#exists(k));
  }
  get(key: KeyLike): Promise<Buffer> {
    return this.#read(key, (k) => this.#get(k));
  }
  getPartial(key: KeyLike, offset: number, length: number): Promise<Buffer> {
    return this.#read(key, (k) => this.#getPartial(k, offset, length));
  }
  list(key: KeyLike): Promise<Array<[Key, EntryKind]>> {
    return this.#read(key, (k) => this.#list(k));
  }
  lastModified(key: KeyLike): Promise<Date> {
    return this.#read(key, (k) => this.#lastModified(k));
  }
  digest(key: KeyLike): Promise<Buffer> {
    return this.#read(key, (k) => this.#digest(k));
  }
  size(key: KeyLike): Promise<number> {
    return this.#read(key, (k) => this.#size(k));
  }

  /** Waits for running operations, then refuses new ones. */
  async close(): Promise<void> {
    await this.#gate.exclusive(async () => {
      this.#closed = true;
    });
  }

  // ---- writes --------------------------------------------------------------------------------

  async #tempFile(): Promise<string> {
    return join(this.#tmp, `${process.pid}-${++this.#seq}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * Makes `dir` and its ancestors directories, creating the missing ones. With `replace`, anything
   * else in the way is moved to the trash; without it, a value in the way is an error. Adds the
   * directories to sync to `sync`.
   */
  async #mkdirs(dir: Key, sync: Set<string>, replace: boolean): Promise<void> {
    let path = this.path;
    for (let i = 0; i < dir.depth; i++) {
      const parent = path;
      path = join(path, dir.segments[i]!);
      let st = await lstatOrUndefined(path);
      if (st !== undefined && !st.isDirectory()) {
        const at = Key.of(dir.segments.slice(0, i + 1));
        if (!replace) {
          if (st.isFile()) throw dictionaryExpected(at);
          throw unsafe(at, st.isSymbolicLink() ? `the symbolic link ${at}` : `the special file ${at}`);
        }
        await this.#toTrash(path);
        st = undefined;
      }
      if (st === undefined) {
        try {
          await fsp.mkdir(path, 0o755);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          if (!(await fsp.lstat(path)).isDirectory()) throw dictionaryExpected(Key.of(dir.segments.slice(0, i + 1)));
        }
        sync.add(parent);
        sync.add(path);
      }
    }
  }

  async #toTrash(path: string): Promise<string> {
    const to = join(this.#trash, `${process.pid}-${++this.#seq}-${randomBytes(6).toString('hex')}`);
    await fsp.rename(path, to);
    return to;
  }

  async #emptyTrash(): Promise<void> {
    for (const name of await fsp.readdir(this.#trash)) await this.#removeTree(join(this.#trash, name));
  }

  /**
   * Deletes the tree at `root` (in the trash or the temporary directory) without recursion and
   * without ever forming a path longer than PATH_MAX: a directory whose path grows past
   * `SAFE_DIR_BYTES` is first moved up into the trash, where its own path is short again. So it
   * copes with any tree this store could have left, however deep.
   */
  async #removeTree(root: string): Promise<void> {
    const roots = [root];
    while (roots.length > 0) {
      const stack = [roots.pop()!];
      while (stack.length > 0) {
        const dir = stack[stack.length - 1]!;
        const st = await lstatOrUndefined(dir);
        if (st === undefined) {
          stack.pop();
          continue;
        }
        if (!st.isDirectory()) {
          await fsp.unlink(dir).catch((e: unknown) => {
            if (!isMissing(e)) throw e;
          });
          stack.pop();
          continue;
        }
        const names = await fsp.readdir(dir);
        if (names.length === 0) {
          await fsp.rmdir(dir).catch((e: unknown) => {
            if (!isMissing(e)) throw e;
          });
          stack.pop();
          continue;
        }
        for (const name of names) {
          const child = join(dir, name);
          if (Buffer.byteLength(child) > SAFE_DIR_BYTES) roots.push(await this.#toTrash(child));
          else stack.push(child);
        }
      }
    }
  }

  /** Removes the empty directories from `dir` up (not the root); adds what to sync to `sync`. */
  async #prune(dir: Key, sync: Set<string>): Promise<void> {
    for (let k = dir; !k.isRoot; k = k.parent) {
      const path = this.#file(k);
      try {
        await fsp.rmdir(path);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') return;
        throw e;
      }
      sync.delete(path);
      sync.add(dirname(path));
    }
  }

  /** Refuses to move the dictionary `from` to `to` if a key under it would then be too long. */
  async #checkMovedPaths(from: Key, to: Key): Promise<void> {
    const growth = Buffer.byteLength(this.#file(to)) - Buffer.byteLength(this.#file(from));
    if (growth <= 0) return;
    const stack: string[] = [this.#file(from)];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      for (const d of await fsp.readdir(dir, { withFileTypes: true })) {
        const child = join(dir, d.name);
        if (Buffer.byteLength(child) + growth > DIR_KV_MAX_PATH_BYTES) {
          const under = Key.of(child.slice(this.path.length + 1).split('/')).relativeTo(from);
          throw new KvError(
            'ERR_KV_INVALID_KEY',
            `renaming ${shortKey(from)} to ${shortKey(to)} would make ${shortKey(to.append(under))} longer than ${DIR_KV_MAX_PATH_BYTES} bytes`,
            { key: to },
          );
        }
        if (d.isDirectory()) stack.push(child);
      }
    }
  }

  async #syncAll(dirs: Iterable<string>): Promise<void> {
    for (const d of dirs) await syncDir(d);
  }

  /** Writes `data` for `key` via a synced temporary file; `fill` may patch the temporary file. */
  async #replace(key: Key, write: (tmp: string, existing: boolean) => Promise<void>): Promise<void> {
    const file = this.#file(key);
    if (key.isRoot) throw valueExpected(key);
    const walk = await this.#walk(key);
    if (walk.state === 'value') throw dictionaryExpected(walk.at);
    const kind = walk.state === 'ok' ? this.#kindOf(key, await lstatOrUndefined(file)) : undefined;
    if (kind === 'dictionary') throw valueExpected(key);
    const tmp = await this.#tempFile();
    let madeDirs = false;
    try {
      await write(tmp, kind === 'value');
      const sync = new Set<string>();
      madeDirs = true;
      await this.#mkdirs(key.parent, sync, false);
      try {
        await fsp.rename(tmp, file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EISDIR') throw valueExpected(key);
        throw e;
      }
      sync.add(dirname(file));
      await this.#syncAll(sync);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      // Leave no empty directories behind for a value that was not written.
      if (madeDirs && (await lstatOrUndefined(file)) === undefined) await this.#prune(key.parent, new Set()).catch(() => undefined);
      throw e;
    }
  }

  #write(keyLike: KeyLike, fn: (key: Key) => Promise<void>): Promise<void> {
    if (this.#closed) return Promise.reject(closed());
    let key: Key;
    try {
      key = Key.from(keyLike);
      this.#file(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#gate.shared(() =>
      this.#keys.run(key.toString(), async () => {
        if (this.#closed) throw closed();
        try {
          await fn(key);
        } catch (e) {
          throw storageError(e, key);
        }
      }),
    );
  }

  #exclusive<T>(fn: () => Promise<T>, key?: Key): Promise<T> {
    return this.#gate.exclusive(async () => {
      if (this.#closed) throw closed();
      try {
        return await fn();
      } catch (e) {
        throw storageError(e, key);
      }
    });
  }

  set(keyLike: KeyLike, value: ValueLike): Promise<void> {
    let data: Buffer;
    try {
      data = toBuffer(value);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#write(keyLike, (key) => this.#replace(key, (tmp) => writeSynced(tmp, data)));
  }

  setPartial(keyLike: KeyLike, offset: number, value: ValueLike): Promise<void> {
    let data: Buffer;
    try {
      assertInteger(offset, 'offset', 0, MAX_OFFSET);
      data = toBuffer(value);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#write(keyLike, (key) =>
      this.#replace(key, async (tmp, existing) => {
        if (existing) await fsp.copyFile(this.#file(key), tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
        const fh = await fsp.open(tmp, existing ? 'r+' : 'wx', 0o644);
        try {
          const { size } = await fh.stat();
          await fh.write(data, 0, data.length, Math.min(offset, size));
          await fh.datasync();
        } finally {
          await fh.close();
        }
      }),
    );
  }

  remove(keyLike: KeyLike): Promise<void> {
    if (this.#closed) return Promise.reject(closed());
    let key: Key;
    try {
      key = Key.from(keyLike);
      this.#file(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#exclusive(async () => {
      if (key.isRoot) {
        const ops = (await this.#list(key)).map(([k]): Op => ({ op: 'del', key: k }));
        if (ops.length > 0) await this.#commit(ops);
        return;
      }
      const kind = await this.#exists(key);
      if (kind === undefined) return;
      const file = this.#file(key);
      const sync = new Set<string>([dirname(file)]);
      if (kind === 'value') await fsp.unlink(file);
      else await this.#toTrash(file);
      await this.#prune(key.parent, sync);
      await this.#syncAll(sync);
      await this.#emptyTrash();
    }, key);
  }

  rename(fromLike: KeyLike, toLike: KeyLike): Promise<void> {
    if (this.#closed) return Promise.reject(closed());
    let from: Key;
    let to: Key;
    try {
      from = Key.from(fromLike);
      to = Key.from(toLike);
      this.#file(from);
      this.#file(to);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#exclusive(async () => {
      const plan = await planRename(this.#raw, from, to);
      if (plan.kind === 'noop') return;
      if (plan.kind === 'dictionary') await this.#checkMovedPaths(from, to);
      const sync = new Set<string>();
      await this.#mkdirs(to.parent, sync, false);
      await fsp.rename(this.#file(from), this.#file(to));
      sync.add(dirname(this.#file(from)));
      sync.add(dirname(this.#file(to)));
      await this.#prune(from.parent, sync);
      await this.#syncAll(sync);
    }, from);
  }

  async batch<T>(fn: (tx: KvRw) => Promise<T>): Promise<T> {
    if (this.#closed) throw closed();
    const tx = new Transaction(this);
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      tx.finish();
      throw error;
    }
    await this.#exclusive(async () => {
      const ops = await tx.ops(this.#raw);
      tx.finish();
      if (ops.length > 0) await this.#commit(ops);
    });
    return result;
  }

  // ---- the journal ---------------------------------------------------------------------------

  /** Writes `ops` as a journal, commits it by a rename, then applies it. */
  async #commit(ops: Op[]): Promise<void> {
    const id = `${String(Date.now()).padStart(15, '0')}-${process.pid}-${++this.#seq}`;
    const staging = join(this.#tx, `${id}.tmp`);
    await fsp.mkdir(staging);
    try {
      const manifest: Array<{ del: readonly string[] } | { put: readonly string[]; blob: string }> = [];
      let n = 0;
      for (const op of ops) {
        this.#file(op.key);
        if (op.op === 'del') manifest.push({ del: op.key.segments });
        else {
          const blob = `v${n++}`;
          await writeSynced(join(staging, blob), op.data);
          manifest.push({ put: op.key.segments, blob });
        }
      }
      await writeSynced(join(staging, 'manifest.json'), JSON.stringify({ version: 1, ops: manifest }));
      await syncDir(staging);
    } catch (e) {
      await fsp.rm(staging, { recursive: true, force: true });
      throw e;
    }
    const committed = join(this.#tx, id);
    await fsp.rename(staging, committed);
    await syncDir(this.#tx);
    await this.#apply(committed);
  }

  /** Applies a committed journal; safe to run again after a partial run. */
  async #apply(journal: string): Promise<void> {
    let ops: Array<{ op: 'del'; key: Key } | { op: 'put'; key: Key; blob: string }>;
    try {
      const manifest = JSON.parse(await fsp.readFile(join(journal, 'manifest.json'), 'utf8')) as {
        version: number;
        ops: Array<{ del?: string[]; put?: string[]; blob?: string }>;
      };
      if (manifest.version !== 1 || !Array.isArray(manifest.ops)) throw new Error('unknown manifest version');
      ops = manifest.ops.map((o) => {
        if (o.del !== undefined) return { op: 'del', key: Key.of(o.del) };
        if (o.put !== undefined && typeof o.blob === 'string' && /^v\d+$/.test(o.blob)) {
          return { op: 'put', key: Key.of(o.put), blob: o.blob };
        }
        throw new Error('malformed operation');
      });
    } catch (e) {
      throw new KvError('ERR_KV_CORRUPT', `unreadable journal ${journal}: ${(e as Error).message}`, { cause: e });
    }
    const sync = new Set<string>();
    const emptied: Key[] = [];
    for (const op of ops) {
      if (op.op !== 'del') continue;
      const file = this.#file(op.key);
      if ((await this.#walk(op.key)).state !== 'ok') continue;
      if ((await lstatOrUndefined(file)) === undefined) continue;
      await this.#toTrash(file);
      sync.add(dirname(file));
      emptied.push(op.key.parent);
    }
    for (const op of ops) {
      if (op.op !== 'put') continue;
      const blob = join(journal, op.blob);
      if ((await lstatOrUndefined(blob)) === undefined) continue; // applied before a crash
      const file = this.#file(op.key);
      await this.#mkdirs(op.key.parent, sync, true);
      const st = await lstatOrUndefined(file);
      if (st !== undefined && !st.isFile()) await this.#toTrash(file);
      await fsp.rename(blob, file);
      sync.add(dirname(file));
    }
    for (const k of emptied) await this.#prune(k, sync);
    await this.#syncAll(sync);
    // One rename retires the journal: a recursive rm could be killed half-way and leave a
    // journal without its manifest, which recovery would then refuse as corrupt.
    await this.#toTrash(journal);
    await syncDir(this.#tx);
    await this.#emptyTrash();
  }

  async #recover(): Promise<void> {
    for (const name of await fsp.readdir(this.#tmp)) await this.#removeTree(join(this.#tmp, name));
    const journals = (await fsp.readdir(this.#tx)).sort();
    for (const name of journals) {
      const path = join(this.#tx, name);
      if (name.endsWith('.tmp')) await this.#removeTree(path);
      else await this.#apply(path);
    }
    await syncDir(this.#tx);
    await this.#emptyTrash();
  }
}

/** A key for a message: long ones shortened. */
function shortKey(key: Key): string {
  const text = key.toString();
  return text.length <= 80 ? text : `${text.slice(0, 60)}…${text.slice(-16)}`;
}

async function readFully(fh: fsp.FileHandle, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, length - done, offset + done);
    if (bytesRead === 0) break; // shrank meanwhile
    done += bytesRead;
  }
  return done === length ? out : out.subarray(0, done);
}

/**
 * Opens the key-value store kept in the directory `path` (created if missing, unless
 * `create: false`), replaying or dropping an interrupted batch. Keys are limited to segments of
 * {@link DIR_KV_MAX_SEGMENT_BYTES} and paths of {@link DIR_KV_MAX_PATH_BYTES} (the store's own
 * path included); longer ones are `ERR_KV_INVALID_KEY`. See the module notes for the durability
 * and safety guarantees.
 */
export async function dirKv(path: string, options: DirKvOptions = {}): Promise<DirKv> {
  return DirKv.open(path, options);
}
