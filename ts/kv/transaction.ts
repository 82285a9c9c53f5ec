/**
 * The transaction behind every backend's `batch`: an overlay of writes over a base store. Reads see
 * the base plus the overlay; at commit the overlay becomes a list of primitive operations
 * ({@link Op}) that the backend applies atomically.
 * @module
 */
import { createHash } from 'node:crypto';
import {
  checkSettable,
  clip,
  dictionaryDigest,
  Mutex,
  newestUnder,
  patch,
  planRename,
  toBuffer,
  valuesUnder,
} from './common.js';
import { closed, dictionaryExpected, notFound, valueExpected } from './errors.js';
import { compareSegments, Key, type KeyLike } from './key.js';
import type { EntryKind, KvRo, KvRw, ValueLike } from './types.js';

/**
 * A primitive write. `put` replaces whatever is at `key` (a value or a whole dictionary) and
 * creates the parents, replacing values in their way; `del` removes what is at `key`, then the
 * dictionaries it leaves empty. In a commit list every `del` comes before every `put`, and no `put`
 * lies at or under a `del`, so applying the list again after a partial application (crash
 * recovery) gives the same result.
 */
export type Op = { op: 'put'; key: Key; data: Buffer } | { op: 'del'; key: Key };

type OValue = { t: 'value'; data: Buffer; mtime: Date };
type ODeleted = { t: 'deleted' };
/** A dictionary in the overlay; `opaque` hides the base's content at this key. */
type ODir = { t: 'dir'; opaque: boolean; children: Map<string, ONode> };
type ONode = OValue | ODeleted | ODir;

type Resolved = OValue | ODeleted | { t: 'base' } | { t: 'here'; node: ODir; opaque: boolean };

const dir = (opaque: boolean): ODir => ({ t: 'dir', opaque, children: new Map() });

function hasPut(node: ODir): boolean {
  for (const child of node.children.values()) {
    if (child.t === 'value' || (child.t === 'dir' && hasPut(child))) return true;
  }
  return false;
}

/** A transaction over `base`; see {@link KvRw.batch}. */
export class Transaction implements KvRw {
  readonly #base: KvRo;
  #root: ODir = dir(false);
  readonly #lock = new Mutex();
  #finished = false;

  /** A transaction whose reads fall through to `base`. */
  constructor(base: KvRo) {
    this.#base = base;
  }

  /** Marks the transaction finished: later calls fail with `ERR_KV_CLOSED`. */
  finish(): void {
    this.#finished = true;
  }

  #check(): void {
    if (this.#finished) throw closed();
  }

  #resolve(key: Key): Resolved {
    let node = this.#root;
    let opaque = node.opaque;
    const segs = key.segments;
    for (let i = 0; i < segs.length; i++) {
      const child = node.children.get(segs[i]!);
      if (child === undefined) return opaque ? { t: 'deleted' } : { t: 'base' };
      if (child.t === 'deleted') return child;
      if (child.t === 'value') return i === segs.length - 1 ? child : { t: 'deleted' };
      node = child;
      opaque = opaque || child.opaque;
    }
    return { t: 'here', node, opaque };
  }

  async #entries(key: Key, node: ODir, opaque: boolean): Promise<Map<string, EntryKind>> {
    const out = new Map<string, EntryKind>();
    if (!opaque && (await this.#base.exists(key)) === 'dictionary') {
      for (const [k, kind] of await this.#base.list(key)) out.set(k.basename, kind);
    }
    for (const [name, child] of node.children) {
      if (child.t === 'value') out.set(name, 'value');
      else if (child.t === 'deleted') out.delete(name);
      else if ((await this.#entries(key.append(name), child, opaque || child.opaque)).size > 0) out.set(name, 'dictionary');
      else out.delete(name);
    }
    return out;
  }

  async exists(keyLike: KeyLike): Promise<EntryKind | undefined> {
    this.#check();
    const key = Key.from(keyLike);
    if (key.isRoot) return 'dictionary';
    const r = this.#resolve(key);
    if (r.t === 'value') return 'value';
    if (r.t === 'deleted') return undefined;
    if (r.t === 'base') return this.#base.exists(key);
    return (await this.#entries(key, r.node, r.opaque)).size > 0 ? 'dictionary' : undefined;
  }

  async get(keyLike: KeyLike): Promise<Buffer> {
    this.#check();
    const key = Key.from(keyLike);
    const r = this.#resolve(key);
    if (r.t === 'value') return Buffer.from(r.data);
    if (r.t === 'base') return this.#base.get(key);
    if ((await this.exists(key)) === 'dictionary') throw valueExpected(key);
    throw notFound(key);
  }

  async getPartial(keyLike: KeyLike, offset: number, length: number): Promise<Buffer> {
    const key = Key.from(keyLike);
    const r = this.#resolve(key);
    if (r.t === 'base') return this.#base.getPartial(key, offset, length);
    const data = await this.get(key);
    const [start, n] = clip(data.length, offset, length);
    return data.subarray(start, start + n);
  }

  async size(keyLike: KeyLike): Promise<number> {
    const key = Key.from(keyLike);
    const r = this.#resolve(key);
    if (r.t === 'base') return this.#base.size(key);
    return (await this.get(key)).length;
  }

  async list(keyLike: KeyLike): Promise<Array<[Key, EntryKind]>> {
    this.#check();
    const key = Key.from(keyLike);
    const r = this.#resolve(key);
    if (r.t === 'base') return this.#base.list(key);
    if (r.t === 'value') throw dictionaryExpected(key);
    if (r.t === 'deleted') throw notFound(key);
    const entries = await this.#entries(key, r.node, r.opaque);
    if (entries.size === 0 && !key.isRoot) throw notFound(key);
    return [...entries]
      .sort((a, b) => compareSegments(a[0], b[0]))
      .map(([name, kind]): [Key, EntryKind] => [key.append(name), kind]);
  }

  async lastModified(keyLike: KeyLike): Promise<Date> {
    const key = Key.from(keyLike);
    const r = this.#resolve(key);
    if (r.t === 'value') return r.mtime;
    if (r.t === 'base') return this.#base.lastModified(key);
    const kind = await this.exists(key);
    if (kind === undefined) throw notFound(key);
    return (await newestUnder(this, key)) ?? new Date(0);
  }

  async digest(keyLike: KeyLike): Promise<Buffer> {
    const key = Key.from(keyLike);
    const r = this.#resolve(key);
    if (r.t === 'value') return createHash('sha256').update(r.data).digest();
    if (r.t === 'base') return this.#base.digest(key);
    if ((await this.exists(key)) === undefined) throw notFound(key);
    return dictionaryDigest(this, key);
  }

  async close(): Promise<void> {}

  /** Records `key` as `node` in the overlay, making its ancestors overlay dictionaries. */
  #place(key: Key, node: OValue | ODeleted): void {
    let cur = this.#root;
    const segs = key.segments;
    for (let i = 0; i < segs.length - 1; i++) {
      const child = cur.children.get(segs[i]!);
      let next: ODir;
      if (child === undefined) next = dir(false);
      else if (child.t === 'dir') next = child;
      else next = dir(true); // a deleted entry (or a value being replaced by a dictionary)
      cur.children.set(segs[i]!, next);
      cur = next;
    }
    cur.children.set(segs[segs.length - 1]!, node);
  }

  async set(keyLike: KeyLike, value: ValueLike): Promise<void> {
    const key = Key.from(keyLike);
    const data = toBuffer(value);
    return this.#lock.run(async () => {
      this.#check();
      await checkSettable(this, key);
      this.#place(key, { t: 'value', data, mtime: new Date() });
    });
  }

  async remove(keyLike: KeyLike): Promise<void> {
    const key = Key.from(keyLike);
    return this.#lock.run(async () => {
      this.#check();
      if (key.isRoot) {
        this.#root = dir(true);
        return;
      }
      if ((await this.exists(key)) === undefined) return;
      this.#place(key, { t: 'deleted' });
    });
  }

  async rename(fromLike: KeyLike, toLike: KeyLike): Promise<void> {
    const from = Key.from(fromLike);
    const to = Key.from(toLike);
    return this.#lock.run(async () => {
      this.#check();
      const plan = await planRename(this, from, to);
      if (plan.kind === 'noop') return;
      const moves: Array<[Key, Buffer, Date]> = [];
      const sources = plan.kind === 'value' ? [from] : await valuesUnder(this, from);
      for (const k of sources) moves.push([to.append(k.relativeTo(from)), await this.get(k), await this.lastModified(k)]);
      this.#place(from, { t: 'deleted' });
      for (const [k, data, mtime] of moves) this.#place(k, { t: 'value', data, mtime });
    });
  }

  async setPartial(keyLike: KeyLike, offset: number, value: ValueLike): Promise<void> {
    const key = Key.from(keyLike);
    const data = toBuffer(value);
    return this.#lock.run(async () => {
      this.#check();
      await checkSettable(this, key);
      const old = (await this.exists(key)) === 'value' ? await this.get(key) : Buffer.alloc(0);
      this.#place(key, { t: 'value', data: patch(old, offset, data), mtime: new Date() });
    });
  }

  /** Nested batches join the enclosing one. */
  async batch<T>(fn: (tx: KvRw) => Promise<T>): Promise<T> {
    this.#check();
    return fn(this);
  }

  /**
   * The overlay as primitive operations against `base` (which must show the store as it is now,
   * without locking: the caller holds the store's write lock): deletions first, then puts.
   */
  async ops(base: KvRo): Promise<Op[]> {
    await this.#lock.run(async () => undefined);
    const dels: Op[] = [];
    const puts: Op[] = [];
    const emit = async (node: ODir, key: Key, hidden: boolean): Promise<void> => {
      const opaque = hidden || node.opaque;
      if (opaque) {
        const kind = key.isRoot ? 'dictionary' : await base.exists(key);
        if (kind === 'dictionary') {
          for (const [child] of await base.list(key)) {
            if (!node.children.has(child.basename)) dels.push({ op: 'del', key: child });
          }
        } else if (kind === 'value' && !hasPut(node)) dels.push({ op: 'del', key });
      }
      for (const [name, child] of node.children) {
        const k = key.append(name);
        if (child.t === 'value') puts.push({ op: 'put', key: k, data: child.data });
        else if (child.t === 'deleted') {
          if ((await base.exists(k)) !== undefined) dels.push({ op: 'del', key: k });
        } else await emit(child, k, opaque);
      }
    };
    await emit(this.#root, Key.root, false);
    return [...dels, ...puts];
  }
}
