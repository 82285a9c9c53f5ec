/**
 * The key-value stores: keys, the `KvRo`/`KvRw` interfaces, and the memory, directory, tar and
 * crunch backends.
 * @module
 */
export { Key, type KeyLike, compareSegments } from './key.js';
export { KvError, type KvErrorCode } from './errors.js';
export type { EntryKind, KvRo, KvRw, ValueLike } from './types.js';
export { MemKv, type MemKvOptions, memKv } from './mem.js';
export { DIR_KV_MAX_PATH_BYTES, DIR_KV_MAX_SEGMENT_BYTES, DIR_KV_META, DirKv, type DirKvOptions, dirKv } from './dir.js';
export { type TarIncomplete, TarKv, type TarKvOptions, tarKv } from './tar.js';
export {
  type CrunchedData,
  CrunchKv,
  type CrunchOptions,
  type CrunchResult,
  crunchDirectory,
  crunchedKv,
} from './crunch.js';
