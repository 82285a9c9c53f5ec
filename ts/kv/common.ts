/**
 * Pieces shared by the key-value backends: argument checks, the write rules every backend applies,
 * the dictionary digest, and small async locks.
 * @module
 */
import { createHash } from 'node:crypto';
import { assertInteger, InvalidArgumentError } from '../errors.js';
import { alreadyPresent, dictionaryExpected, KvError, notFound, valueExpected } from './errors.js';
import { Key, type KeyLike } from './key.js';
import type { EntryKind, KvRo, ValueLike } from './types.js';

/** The bytes of a value, as a Buffer that the store owns (always a copy). */
export function toBuffer(value: ValueLike): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return Buffer.from(value); // copies
  throw new InvalidArgumentError('a value must be a Buffer, a Uint8Array or a string');
}

/** The largest offset or length accepted (2^53 - 1). */
export const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

/** Checks `getPartial`'s arguments and clips them to a value of `size` bytes: [start, length]. */
export function clip(size: number, offset: number, length: number): [number, number] {
  assertInteger(offset, 'offset', 0, MAX_OFFSET);
  assertInteger(length, 'length', 0, MAX_OFFSET);
  if (offset >= size) return [size, 0];
  return [offset, Math.min(length, size - offset)];
}

/** `value` written into `old` at `offset` (appended when `offset` is past the end). */
export function patch(old: Buffer, offset: number, value: Buffer): Buffer {
  assertInteger(offset, 'offset', 0, MAX_OFFSET);
  const at = Math.min(offset, old.length);
  const out = Buffer.alloc(Math.max(old.length, at + value.length));
  old.copy(out, 0);
  value.copy(out, at);
  return out;
}

const DICTIONARY_TAG = Buffer.from('morgana-kv dictionary v1\n');

/**
 * The digest of a dictionary: SHA-256 over a tag and, for each entry in order, its kind (1 value,
 * 2 dictionary), the UTF-8 length (32-bit big-endian) and bytes of its name, and its digest.
 */
export async function dictionaryDigest(kv: KvRo, key: Key): Promise<Buffer> {
  const entries: Array<[string, EntryKind, Buffer]> = [];
  for (const [child, kind] of await kv.list(key)) entries.push([child.basename, kind, await kv.digest(child)]);
  return encodeDictionaryDigest(entries);
}

/** The dictionary digest of sorted `[name, kind, digest]` entries; see {@link dictionaryDigest}. */
export function encodeDictionaryDigest(entries: Iterable<readonly [string, EntryKind, Buffer]>): Buffer {
  const hash = createHash('sha256').update(DICTIONARY_TAG);
  for (const [basename, kind, digest] of entries) {
    const name = Buffer.from(basename, 'utf8');
    const head = Buffer.alloc(5);
    head[0] = kind === 'value' ? 1 : 2;
    head.writeUInt32BE(name.length, 1);
    hash.update(head).update(name).update(digest);
  }
  return hash.digest();
}

/** The newest `lastModified` of the values under the dictionary `key`, or undefined if none. */
export async function newestUnder(kv: KvRo, key: Key): Promise<Date | undefined> {
  let newest: Date | undefined;
  for (const [child, kind] of await kv.list(key)) {
    const t = kind === 'value' ? await kv.lastModified(child) : await newestUnder(kv, child);
    if (t !== undefined && (newest === undefined || t.getTime() > newest.getTime())) newest = t;
  }
  return newest;
}

/** Every value under the dictionary `key`, as absolute keys, in order. */
export async function valuesUnder(kv: KvRo, key: Key): Promise<Key[]> {
  const out: Key[] = [];
  for (const [child, kind] of await kv.list(key)) {
    if (kind === 'value') out.push(child);
    else out.push(...(await valuesUnder(kv, child)));
  }
  return out;
}

/**
 * Throws unless `set(key)` may proceed against `kv`: the key is not the root nor a dictionary, and
 * no parent is a value.
 */
export async function checkSettable(kv: KvRo, key: Key): Promise<void> {
  if (key.isRoot) throw valueExpected(key);
  const kind = await kv.exists(key);
  if (kind === 'dictionary') throw valueExpected(key);
  if (kind === 'value') return;
  await checkParents(kv, key);
}

/** Throws `ERR_KV_DICTIONARY_EXPECTED` if the nearest existing ancestor of `key` is a value. */
export async function checkParents(kv: KvRo, key: Key): Promise<void> {
  for (let a = key.parent; !a.isRoot; a = a.parent) {
    const kind = await kv.exists(a);
    if (kind === 'value') throw dictionaryExpected(a);
    if (kind === 'dictionary') return;
  }
}

/** What a `rename` will do: nothing, or move a value or a dictionary (and whether `to` is replaced). */
export type RenamePlan = { kind: 'noop' } | { kind: EntryKind; replaces: boolean };

/** Checks `rename(from, to)` against `kv` and says what it does; throws the errors `rename` documents. */
export async function planRename(kv: KvRo, from: Key, to: Key): Promise<RenamePlan> {
  if (from.isRoot) {
    throw new KvError('ERR_KV_RENAME_SOURCE_PREFIX', `Rename: source ${from} is prefix of destination ${to}`, { key: from });
  }
  const kind = await kv.exists(from);
  if (kind === undefined) throw notFound(from);
  if (from.equals(to)) return { kind: 'noop' };
  if (kind === 'dictionary' && from.isPrefixOf(to)) {
    throw new KvError('ERR_KV_RENAME_SOURCE_PREFIX', `Rename: source ${from} is prefix of destination ${to}`, { key: from });
  }
  const target = to.isRoot ? 'dictionary' : await kv.exists(to);
  if (target === 'dictionary' || (target === 'value' && kind === 'dictionary')) throw alreadyPresent(to);
  if (target === undefined) await checkParents(kv, to);
  return { kind, replaces: target === 'value' };
}

/** Checks a key argument: Key, path or segments. */
export const keyOf = (key: KeyLike): Key => Key.from(key);

/** A FIFO async mutex. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every earlier `run` has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/** Mutexes by name, created on demand and dropped when idle. */
export class KeyedMutex {
  readonly #locks = new Map<string, { tail: Promise<unknown>; users: number }>();

  /** Runs `fn` after every earlier `run` with the same `name` has settled. */
  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    let lock = this.#locks.get(name);
    if (!lock) {
      lock = { tail: Promise.resolve(), users: 0 };
      this.#locks.set(name, lock);
    }
    lock.users++;
    const result = lock.tail.then(fn);
    lock.tail = result.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await result;
    } finally {
      if (--lock.users === 0) this.#locks.delete(name);
    }
  }
}

/**
 * A readers-writer gate: any number of `shared` holders, or one `exclusive` holder. Waiting
 * exclusive callers block new shared ones, so writers are not starved.
 */
export class Gate {
  #readers = 0;
  #writer = false;
  readonly #queue: Array<{ exclusive: boolean; grant: () => void }> = [];

  /** Runs `fn` while holding the gate shared. */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#writer || this.#queue.length > 0) {
      await new Promise<void>((grant) => this.#queue.push({ exclusive: false, grant }));
    } else this.#readers++;
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#drain();
    }
  }

  /** Runs `fn` while holding the gate exclusively. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#writer || this.#readers > 0 || this.#queue.length > 0) {
      await new Promise<void>((grant) => this.#queue.push({ exclusive: true, grant }));
    } else this.#writer = true;
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#drain();
    }
  }

  #drain(): void {
    while (this.#queue.length > 0 && !this.#writer) {
      const next = this.#queue[0]!;
      if (next.exclusive) {
        if (this.#readers > 0) return;
        this.#queue.shift();
        this.#writer = true;
        next.grant();
        return;
      }
      this.#queue.shift();
      this.#readers++;
      next.grant();
    }
  }
}
