/**
 * An in-memory tree of dictionaries and leaves, and the store classes built on it: the memory
 * store keeps values in its leaves, the tar store keeps offsets into the archive, crunch keeps
 * embedded blobs.
 * @module
 */
import { createHash } from 'node:crypto';
import {
  checkSettable,
  clip,
  encodeDictionaryDigest,
  Gate,
  Mutex,
  patch,
  planRename,
  toBuffer,
  valuesUnder,
} from './common.js';
import { closed, dictionaryExpected, notFound, valueExpected } from './errors.js';
import { compareSegments, Key, type KeyLike } from './key.js';
import { type Op, Transaction } from './transaction.js';
import type { EntryKind, KvRo, KvRw, ValueLike } from './types.js';

/** What every leaf records. */
export interface Leaf {
  size: number;
  mtime: Date;
}

/** A dictionary node; `mtime` is set for dictionaries read from an archive. */
export interface TreeDir<L> {
  kind: 'dictionary';
  children: Map<string, TreeNode<L>>;
  mtime?: Date;
}

/** A node of a {@link Tree}. */
export type TreeNode<L> = TreeDir<L> | { kind: 'value'; leaf: L };

const newDir = <L>(mtime?: Date): TreeDir<L> =>
  mtime === undefined ? { kind: 'dictionary', children: new Map() } : { kind: 'dictionary', children: new Map(), mtime };

/** A tree of dictionaries with leaves of type `L`, updated with the primitive operations of {@link Op}. */
export class Tree<L> {
  /** The root dictionary. */
  root: TreeDir<L> = newDir();

  /** The node at `key`, or undefined (also when the path runs through a value). */
  lookup(key: Key): TreeNode<L> | undefined {
    let node: TreeNode<L> = this.root;
    for (const seg of key.segments) {
      if (node.kind !== 'dictionary') return undefined;
      const next: TreeNode<L> | undefined = node.children.get(seg);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  #parentFor(key: Key, mtime?: Date): TreeDir<L> {
    let node = this.root;
    for (const seg of key.parent.segments) {
      let next = node.children.get(seg);
      if (next === undefined || next.kind !== 'dictionary') {
        next = newDir(mtime);
        node.children.set(seg, next);
      }
      node = next;
    }
    return node;
  }

  /** Binds `key` to `leaf`, replacing whatever is there and any value in the way. */
  put(key: Key, leaf: L): void {
    this.#parentFor(key).children.set(key.basename, { kind: 'value', leaf });
  }

  /** Makes `key` a dictionary (keeping it if it already is one); for archives' directory entries. */
  ensureDictionary(key: Key, mtime?: Date): void {
    if (key.isRoot) return;
    const parent = this.#parentFor(key, mtime);
    const node = parent.children.get(key.basename);
    if (node === undefined || node.kind !== 'dictionary') parent.children.set(key.basename, newDir(mtime));
    else if (mtime !== undefined) node.mtime = mtime;
  }

  /** Removes what is at `key` (everything, for the root) and the dictionaries this leaves empty. */
  del(key: Key): void {
    if (key.isRoot) {
      this.root = newDir();
      return;
    }
    const path: TreeDir<L>[] = [];
    let node: TreeNode<L> = this.root;
    for (const seg of key.parent.segments) {
      if (node.kind !== 'dictionary') return;
      path.push(node);
      const next: TreeNode<L> | undefined = node.children.get(seg);
      if (next === undefined) return;
      node = next;
    }
    if (node.kind !== 'dictionary') return;
    path.push(node);
    if (!node.children.delete(key.basename)) return;
    for (let i = path.length - 1; i > 0; i--) {
      if (path[i]!.children.size > 0) break;
      path[i - 1]!.children.delete(key.segments[i - 1]!);
    }
  }

  /** Applies primitive operations in order. */
  apply(ops: Iterable<Op>, leafOf: (op: Op & { op: 'put' }) => L): void {
    for (const op of ops) {
      if (op.op === 'del') this.del(op.key);
      else this.put(op.key, leafOf(op));
    }
  }
}

const CHUNK = 1 << 20;

function newest<L extends Leaf>(node: TreeDir<L>): Date | undefined {
  let out: Date | undefined;
  for (const child of node.children.values()) {
    const t = child.kind === 'value' ? child.leaf.mtime : newest(child);
    if (t !== undefined && (out === undefined || t.getTime() > out.getTime())) out = t;
  }
  return out;
}

const sortedChildren = <L>(node: TreeDir<L>): Array<[string, TreeNode<L>]> =>
  [...node.children].sort((a, b) => compareSegments(a[0], b[0]));

/**
 * A read-only store over a {@link Tree}; subclasses say how a leaf's bytes are read. Reads that
 * take several steps (a dictionary's digest) hold `gate` shared; changes to the tree are applied
 * holding it exclusively (see `applyOps`), so such reads see one state.
 */
export abstract class TreeKv<L extends Leaf> implements KvRo {
  /** The index. */
  protected tree = new Tree<L>();
  /** Orders multi-step reads against changes of the tree. */
  protected readonly gate = new Gate();
  /** Set by `close`. */
  protected isClosed = false;

  /** `length` bytes of `leaf` from `offset` (both already clipped to the leaf). */
  protected abstract readLeaf(leaf: L, offset: number, length: number): Promise<Buffer>;

  /** SHA-256 of a leaf; by default read in 1 MiB chunks. */
  protected async leafDigest(leaf: L): Promise<Buffer> {
    const hash = createHash('sha256');
    for (let at = 0; at < leaf.size; at += CHUNK) hash.update(await this.readLeaf(leaf, at, Math.min(CHUNK, leaf.size - at)));
    return hash.digest();
  }

  /** Throws `ERR_KV_CLOSED` after `close`. */
  protected checkOpen(): void {
    if (this.isClosed) throw closed();
  }

  #leaf(key: Key): L {
    this.checkOpen();
    const node = this.tree.lookup(key);
    if (node === undefined) throw notFound(key);
    if (node.kind === 'dictionary') throw valueExpected(key);
    return node.leaf;
  }

  async exists(keyLike: KeyLike): Promise<EntryKind | undefined> {
    this.checkOpen();
    return this.tree.lookup(Key.from(keyLike))?.kind;
  }

  async get(keyLike: KeyLike): Promise<Buffer> {
    const leaf = this.#leaf(Key.from(keyLike));
    return this.readLeaf(leaf, 0, leaf.size);
  }

  async getPartial(keyLike: KeyLike, offset: number, length: number): Promise<Buffer> {
    const leaf = this.#leaf(Key.from(keyLike));
    const [start, n] = clip(leaf.size, offset, length);
    return n === 0 ? Buffer.alloc(0) : this.readLeaf(leaf, start, n);
  }

  async size(keyLike: KeyLike): Promise<number> {
    return this.#leaf(Key.from(keyLike)).size;
  }

  async list(keyLike: KeyLike): Promise<Array<[Key, EntryKind]>> {
    this.checkOpen();
    const key = Key.from(keyLike);
    const node = this.tree.lookup(key);
    if (node === undefined) throw notFound(key);
    if (node.kind !== 'dictionary') throw dictionaryExpected(key);
    return sortedChildren(node).map(([name, child]): [Key, EntryKind] => [key.append(name), child.kind]);
  }

  async lastModified(keyLike: KeyLike): Promise<Date> {
    this.checkOpen();
    const key = Key.from(keyLike);
    const node = this.tree.lookup(key);
    if (node === undefined) throw notFound(key);
    if (node.kind === 'value') return new Date(node.leaf.mtime.getTime());
    return new Date((newest(node) ?? node.mtime ?? new Date(0)).getTime());
  }

  async digest(keyLike: KeyLike): Promise<Buffer> {
    this.checkOpen();
    const key = Key.from(keyLike);
    return this.gate.shared(async () => {
      const node = this.tree.lookup(key);
      if (node === undefined) throw notFound(key);
      if (node.kind === 'value') return this.leafDigest(node.leaf);
      return this.#treeDigest(node);
    });
  }

  async #treeDigest(node: TreeDir<L>): Promise<Buffer> {
    const entries: Array<[string, EntryKind, Buffer]> = [];
    for (const [name, child] of sortedChildren(node)) {
      entries.push([name, child.kind, child.kind === 'value' ? await this.leafDigest(child.leaf) : await this.#treeDigest(child)]);
    }
    return encodeDictionaryDigest(entries);
  }

  /** Applies `ops` to the tree once no multi-step read is running. */
  protected applyOps(ops: Op[], leafOf: (op: Op & { op: 'put' }) => L): Promise<void> {
    return this.gate.exclusive(async () => this.tree.apply(ops, leafOf));
  }

  async close(): Promise<void> {
    this.isClosed = true;
  }
}

/**
 * A read-write store over a {@link Tree}: every write is turned into primitive operations, which
 * the subclass's `commit` makes durable (or not) and then applies to the tree in one step, so
 * readers see a write whole or not at all. Writes are serialised.
 */
export abstract class TreeKvRw<L extends Leaf> extends TreeKv<L> implements KvRw {
  /** Serialises writes. */
  protected readonly writeLock = new Mutex();

  /** Makes `ops` happen (called holding `writeLock`). */
  protected abstract commit(ops: Op[]): Promise<void>;

  /** Throws unless writes are allowed (`ERR_KV_CLOSED`; read-only stores add `ERR_KV_READ_ONLY`). */
  protected checkWritable(): void {
    this.checkOpen();
  }

  async set(keyLike: KeyLike, value: ValueLike): Promise<void> {
    const key = Key.from(keyLike);
    const data = toBuffer(value);
    return this.writeLock.run(async () => {
      this.checkWritable();
      await checkSettable(this, key);
      await this.commit([{ op: 'put', key, data }]);
    });
  }

  async remove(keyLike: KeyLike): Promise<void> {
    const key = Key.from(keyLike);
    return this.writeLock.run(async () => {
      this.checkWritable();
      if (key.isRoot) {
        const ops = [...this.tree.root.children.keys()].map((name): Op => ({ op: 'del', key: Key.of([name]) }));
        if (ops.length > 0) await this.commit(ops);
      } else if (this.tree.lookup(key) !== undefined) await this.commit([{ op: 'del', key }]);
    });
  }

  async rename(fromLike: KeyLike, toLike: KeyLike): Promise<void> {
    const from = Key.from(fromLike);
    const to = Key.from(toLike);
    return this.writeLock.run(async () => {
      this.checkWritable();
      const plan = await planRename(this, from, to);
      if (plan.kind === 'noop') return;
      const ops: Op[] = [{ op: 'del', key: from }];
      const sources = plan.kind === 'value' ? [from] : await valuesUnder(this, from);
      for (const k of sources) ops.push({ op: 'put', key: to.append(k.relativeTo(from)), data: await this.get(k) });
      await this.commit(ops);
    });
  }

  async setPartial(keyLike: KeyLike, offset: number, value: ValueLike): Promise<void> {
    const key = Key.from(keyLike);
    const data = toBuffer(value);
    return this.writeLock.run(async () => {
      this.checkWritable();
      await checkSettable(this, key);
      const old = this.tree.lookup(key) === undefined ? Buffer.alloc(0) : await this.get(key);
      await this.commit([{ op: 'put', key, data: patch(old, offset, data) }]);
    });
  }

  async batch<T>(fn: (tx: KvRw) => Promise<T>): Promise<T> {
    this.checkWritable();
    const tx = new Transaction(this);
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      tx.finish();
      throw error;
    }
    await this.writeLock.run(async () => {
      this.checkWritable();
      const ops = await tx.ops(this);
      tx.finish();
      if (ops.length > 0) await this.commit(ops);
    });
    return result;
  }
}
