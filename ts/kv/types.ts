/**
 * The key-value store interfaces, after mirage-kv's `RO` and `RW`, with one set of semantics that
 * every Morgana backend implements (and the conformance tests check):
 *
 * - The root always exists and is a dictionary. A dictionary exists while something is under it:
 *   removing the last value of a dictionary removes the dictionary (backends that mount existing
 *   data, a directory or an archive, may also show the empty dictionaries they find).
 * - A path that runs through a value (`/a/b` when `/a` is a value) holds nothing: reads give
 *   `ERR_KV_NOT_FOUND`, writes `ERR_KV_DICTIONARY_EXPECTED`.
 * - `list` returns absolute keys in {@link Key.compare} order (code point order of the names).
 * - `digest` is SHA-256: of the bytes for a value, and for a dictionary of its sorted entries'
 *   names, kinds and digests, so equal content gives equal digests in every backend.
 * - `lastModified` of a dictionary is the newest `lastModified` of the values under it.
 * @module
 */
import type { Key, KeyLike } from './key.js';

/** What a key holds. */
export type EntryKind = 'value' | 'dictionary';

/** A value to store: bytes, or a string stored as UTF-8. */
export type ValueLike = Uint8Array | string;

/** A read-only key-value store (mirage-kv `RO`). Every method accepts a `Key` or a path. */
export interface KvRo {
  /** `'value'`, `'dictionary'`, or undefined when the key holds nothing. */
  exists(key: KeyLike): Promise<EntryKind | undefined>;
  /** The value's bytes. `ERR_KV_NOT_FOUND`, or `ERR_KV_VALUE_EXPECTED` for a dictionary. */
  get(key: KeyLike): Promise<Buffer>;
  /**
   * Up to `length` bytes of the value from `offset`: shorter at the end, empty past it. Only that
   * range is read where the backend allows it.
   */
  getPartial(key: KeyLike, offset: number, length: number): Promise<Buffer>;
  /** The entries of a dictionary as absolute keys, sorted. `ERR_KV_DICTIONARY_EXPECTED` for a value. */
  list(key: KeyLike): Promise<Array<[Key, EntryKind]>>;
  /** When a value was last written; for a dictionary the newest of the values under it. */
  lastModified(key: KeyLike): Promise<Date>;
  /** SHA-256 (32 raw bytes) of a value, or of a dictionary's content. */
  digest(key: KeyLike): Promise<Buffer>;
  /** The size in bytes of a value. `ERR_KV_VALUE_EXPECTED` for a dictionary. */
  size(key: KeyLike): Promise<number>;
  /** Releases the store's resources; later calls fail with `ERR_KV_CLOSED`. */
  close(): Promise<void>;
}

/** A read-write key-value store (mirage-kv `RW`, with `batch` as in mirage-kv 2.x–5.x). */
export interface KvRw extends KvRo {
  /**
   * Binds `key` to `value`, replacing a value and creating parent dictionaries.
   * `ERR_KV_VALUE_EXPECTED` if `key` is a dictionary (it is never silently replaced) and
   * `ERR_KV_DICTIONARY_EXPECTED` if a parent is a value.
   */
  set(key: KeyLike, value: ValueLike): Promise<void>;
  /** Removes a value, or a dictionary and everything under it. Removing nothing is not an error. */
  remove(key: KeyLike): Promise<void>;
  /**
   * Moves a value or a dictionary. A value replaces a value at `to`; otherwise `to` must be free
   * (`ERR_KV_ALREADY_PRESENT`). `ERR_KV_NOT_FOUND` without a source and
   * `ERR_KV_RENAME_SOURCE_PREFIX` when moving a dictionary under itself.
   */
  rename(from: KeyLike, to: KeyLike): Promise<void>;
  /**
   * Writes `value` into the value at `offset`, keeping the bytes after it; an offset past the end
   * appends (no hole), and a missing key is created.
   */
  setPartial(key: KeyLike, offset: number, value: ValueLike): Promise<void>;
  /**
   * Runs `fn` with a transaction and applies all its writes at once: they become visible together
   * or not at all (also across a crash, for durable backends), and concurrent readers see the state
   * before or after, never a mix. Reads inside `fn` see the store plus the transaction's own
   * writes; they are not isolated from concurrent writers, which are ordered before the batch.
   * If `fn` throws, nothing is written.
   */
  batch<T>(fn: (tx: KvRw) => Promise<T>): Promise<T>;
}
