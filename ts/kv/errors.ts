/**
 * Typed errors of the key-value stores. Every one is a {@link KvError} (a `MorganaError`) whose
 * `code` is stable; `key` names the key concerned, when there is one.
 * @module
 */
import { MorganaError } from '../errors.js';

/**
 * A key as an error names it: a `Key` (which prints as its path) or a path. Written structurally
 * so that this module does not import key.ts, which throws these errors.
 */
export interface KeyName {
  toString(): string;
}

/** The stable codes of {@link KvError}. */
export type KvErrorCode =
  /** The key holds nothing. */
  | 'ERR_KV_NOT_FOUND'
  /** A dictionary was needed (`list`, or a parent on the way to a key) and a value is there. */
  | 'ERR_KV_DICTIONARY_EXPECTED'
  /** A value was needed (`get`, `size`, `set` over an existing dictionary) and a dictionary is there. */
  | 'ERR_KV_VALUE_EXPECTED'
  /** The destination of a `rename` is occupied in a way that cannot be replaced. */
  | 'ERR_KV_ALREADY_PRESENT'
  /** The storage is full (ENOSPC, EDQUOT). */
  | 'ERR_KV_NO_SPACE'
  /** A write to a read-only store. */
  | 'ERR_KV_READ_ONLY'
  /** A malformed key (empty segment, `.`, `..`, `/` or NUL in a segment), or a reserved one. */
  | 'ERR_KV_INVALID_KEY'
  /** `rename` of a dictionary into itself. */
  | 'ERR_KV_RENAME_SOURCE_PREFIX'
  /** A symbolic link (or another file type) met on the way: refused rather than followed. */
  | 'ERR_KV_UNSAFE_PATH'
  /** The backing archive or journal is malformed. */
  | 'ERR_KV_CORRUPT'
  /** Another storage failure; `cause` holds the system error. */
  | 'ERR_KV_STORAGE'
  /** The store was closed. */
  | 'ERR_KV_CLOSED';

/** An error of a key-value store. */
export class KvError extends MorganaError {
  declare readonly code: KvErrorCode;
  /** The key concerned, as a path, when there is one. */
  readonly key: string | undefined;
  /** For `ERR_KV_CORRUPT`: the byte offset in the backing file where reading stopped, when known. */
  readonly offset: number | undefined;

  constructor(code: KvErrorCode, message: string, options?: { key?: KeyName; cause?: unknown; offset?: number }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KvError';
    this.key = options?.key === undefined ? undefined : String(options.key);
    this.offset = options?.offset;
  }
}

/** `ERR_KV_NOT_FOUND` for `key`. */
export const notFound = (key: KeyName): KvError =>
  new KvError('ERR_KV_NOT_FOUND', `Cannot find the key ${key}`, { key });
/** `ERR_KV_DICTIONARY_EXPECTED` for `key`. */
export const dictionaryExpected = (key: KeyName): KvError =>
  new KvError('ERR_KV_DICTIONARY_EXPECTED', `Expecting a dictionary for the key ${key}`, { key });
/** `ERR_KV_VALUE_EXPECTED` for `key`. */
export const valueExpected = (key: KeyName): KvError =>
  new KvError('ERR_KV_VALUE_EXPECTED', `Expecting a value for the key ${key}`, { key });
/** `ERR_KV_ALREADY_PRESENT` for `key`. */
export const alreadyPresent = (key: KeyName): KvError =>
  new KvError('ERR_KV_ALREADY_PRESENT', `Key ${key} is already present`, { key });
/** `ERR_KV_READ_ONLY`. */
export const readOnly = (what: string): KvError =>
  new KvError('ERR_KV_READ_ONLY', `${what} is read-only`);
/** `ERR_KV_CORRUPT` for the backing file `path`, unreadable from byte `offset` on. */
export const corruptAt = (path: string, offset: number, reason: string): KvError =>
  new KvError('ERR_KV_CORRUPT', `${path} cannot be read past byte ${offset}: ${reason}`, { offset });
/** `ERR_KV_CLOSED`. */
export const closed = (): KvError => new KvError('ERR_KV_CLOSED', 'the store is closed');

/**
 * Maps a Node system error met while working on `key` to a KvError: ENOSPC/EDQUOT become
 * `ERR_KV_NO_SPACE`, ELOOP `ERR_KV_UNSAFE_PATH`, ENAMETOOLONG `ERR_KV_INVALID_KEY`, anything else
 * `ERR_KV_STORAGE` (an error whose code starts with `ERR_` passes through unchanged).
 */
export function storageError(error: unknown, key?: KeyName, what = 'storage error'): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  // Morgana's own errors (and Node's ERR_* argument errors) pass through unchanged.
  if (error instanceof Error && typeof code === 'string' && code.startsWith('ERR_')) return error;
  const where = key === undefined ? '' : ` for ${key}`;
  const options = { cause: error, ...(key === undefined ? {} : { key }) };
  if (code === 'ENOSPC' || code === 'EDQUOT') return new KvError('ERR_KV_NO_SPACE', 'No space left on device', options);
  if (code === 'ELOOP') return new KvError('ERR_KV_UNSAFE_PATH', `refusing to follow a symbolic link${where}`, options);
  if (code === 'ENAMETOOLONG') return new KvError('ERR_KV_INVALID_KEY', `name too long${where}`, options);
  const message = error instanceof Error ? error.message : String(error);
  return new KvError('ERR_KV_STORAGE', `${what}${where}: ${message}`, options);
}
