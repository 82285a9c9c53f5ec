/**
 * `memKv()`: an in-memory key-value store (mirage-kv-mem), with atomic batches.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Op } from './transaction.js';
import { type Leaf, TreeKvRw } from './tree.js';
import type { KvRw } from './types.js';

/** Options of {@link memKv}. */
export interface MemKvOptions {
  /** The clock for `lastModified` (default `Date.now`), injectable for reproducible tests. */
  now?: () => number;
}

interface MemLeaf extends Leaf {
  data: Buffer;
}

/** The in-memory store returned by {@link memKv}. */
export class MemKv extends TreeKvRw<MemLeaf> {
  readonly #now: () => number;

  /** Use {@link memKv}. */
  constructor(options: MemKvOptions = {}) {
    super();
    this.#now = options.now ?? Date.now;
  }

  protected override async readLeaf(leaf: MemLeaf, offset: number, length: number): Promise<Buffer> {
    return Buffer.from(leaf.data.subarray(offset, offset + length));
  }

  protected override async leafDigest(leaf: MemLeaf): Promise<Buffer> {
    return createHash('sha256').update(leaf.data).digest();
  }

  protected override async commit(ops: Op[]): Promise<void> {
    const mtime = new Date(this.#now());
    await this.applyOps(ops, (op) => ({ data: op.data, size: op.data.length, mtime }));
  }

  override async close(): Promise<void> {
    await super.close();
    this.tree.root.children.clear();
  }
}

/**
 * An empty in-memory store. Every write is atomic with respect to readers, `batch` included; the
 * values are copied in and out, so callers may reuse their buffers.
 */
export async function memKv(options: MemKvOptions = {}): Promise<MemKv & KvRw> {
  return new MemKv(options);
}
