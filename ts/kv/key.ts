/**
 * Keys of the key-value stores: a path of segments, such as `/a/b`.
 *
 * Unlike mirage-kv, keys are strict: a segment is non-empty, contains no `/` and no NUL, is not
 * `.` or `..`, and is well-formed Unicode (no lone surrogates). Anything else is rejected with
 * `ERR_KV_INVALID_KEY`; nothing is silently normalised, so `'/a//b'` is an error, not `/a/b`.
 * @module
 */
import { KvError } from './errors.js';

/** A key, or something {@link Key.from} turns into one: a string path or an array of segments. */
export type KeyLike = Key | string | readonly string[];

// A lone surrogate: in a `u` regular expression, a well-formed pair is one code point and does
// not match, so this finds only unpaired halves.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Why `segment` is not a valid key segment, or undefined when it is. */
function segmentProblem(segment: unknown): string | undefined {
  if (typeof segment !== 'string') return 'a segment must be a string';
  if (segment.length === 0) return 'empty segment';
  if (segment === '.' || segment === '..') return `segment '${segment}' is not allowed`;
  if (segment.includes('/')) return "a segment may not contain '/'";
  if (segment.includes('\0')) return 'a segment may not contain NUL';
  if (LONE_SURROGATE.test(segment)) return 'a segment must be well-formed Unicode';
  return undefined;
}

/**
 * Compares two segments by Unicode code point, which is also the byte order of their UTF-8
 * encodings (plain `<` on JS strings compares UTF-16 code units, which differs above U+E000).
 */
export function compareSegments(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    const sa = ca >= 0xd800 && ca <= 0xdfff;
    const sb = cb >= 0xd800 && cb <= 0xdfff;
    // With equal prefixes, a surrogate here starts a pair: a code point above every BMP one.
    if (sa !== sb) return sa ? 1 : -1;
    return ca < cb ? -1 : 1;
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

/**
 * An immutable key: a path of segments. `Key.root` has no segments and prints as `/`.
 *
 * ```ts
 * const k = Key.from('/a/b');            // or Key.from(['a', 'b'])
 * k.parent.equals('/a');                 // true
 * k.append('c').toString();              // '/a/b/c'
 * ```
 */
export class Key {
  /** The root key, `/`: the dictionary that holds everything. */
  static readonly root: Key = new Key([]);

  /** The segments, first to last. */
  readonly segments: readonly string[];

  private constructor(segments: readonly string[]) {
    this.segments = Object.freeze(segments.slice());
  }

  /** True when `segment` may appear in a key. */
  static isValidSegment(segment: string): boolean {
    return segmentProblem(segment) === undefined;
  }

  /**
   * Parses a path. A leading `/` is optional; `''` and `'/'` are the root. Throws
   * `ERR_KV_INVALID_KEY` for an empty segment (`'//'`, a trailing `/`), `.`, `..`, NUL or a lone
   * surrogate.
   */
  static parse(path: string): Key {
    if (typeof path !== 'string') throw new KvError('ERR_KV_INVALID_KEY', 'a key path must be a string');
    if (path === '' || path === '/') return Key.root;
    const body = path.startsWith('/') ? path.slice(1) : path;
    return Key.of(body.split('/'), path);
  }

  /** A key from its segments; each is checked as {@link Key.parse} does. */
  static of(segments: readonly string[], shown?: string): Key {
    if (!Array.isArray(segments)) throw new KvError('ERR_KV_INVALID_KEY', 'key segments must be an array');
    for (const s of segments) {
      const problem = segmentProblem(s);
      if (problem !== undefined) {
        const where = shown ?? JSON.stringify(segments);
        throw new KvError('ERR_KV_INVALID_KEY', `invalid key ${JSON.stringify(where)}: ${problem}`);
      }
    }
    return segments.length === 0 ? Key.root : new Key(segments);
  }

  /** A key from a `Key` (returned as is), a string path or an array of segments. */
  static from(key: KeyLike): Key {
    if (key instanceof Key) return key;
    if (typeof key === 'string') return Key.parse(key);
    if (Array.isArray(key)) return Key.of(key);
    throw new KvError('ERR_KV_INVALID_KEY', 'a key must be a Key, a string path or an array of segments');
  }

  /** Orders keys segment by segment (code point order), a parent before its descendants. */
  static compare(a: KeyLike, b: KeyLike): number {
    const x = Key.from(a).segments;
    const y = Key.from(b).segments;
    const n = Math.min(x.length, y.length);
    for (let i = 0; i < n; i++) {
      const c = compareSegments(x[i]!, y[i]!);
      if (c !== 0) return c;
    }
    return x.length - y.length < 0 ? -1 : x.length > y.length ? 1 : 0;
  }

  /** True for the root key. */
  get isRoot(): boolean {
    return this.segments.length === 0;
  }

  /** The number of segments. */
  get depth(): number {
    return this.segments.length;
  }

  /** The last segment; `''` for the root. */
  get basename(): string {
    return this.segments[this.segments.length - 1] ?? '';
  }

  /** The key without its last segment; the root is its own parent. */
  get parent(): Key {
    return this.segments.length <= 1 ? Key.root : new Key(this.segments.slice(0, -1));
  }

  /** This key followed by segments or by the segments of other keys. */
  append(...parts: Array<string | Key>): Key {
    const out = this.segments.slice();
    for (const part of parts) {
      if (part instanceof Key) out.push(...part.segments);
      else {
        const problem = segmentProblem(part);
        if (problem !== undefined) {
          throw new KvError('ERR_KV_INVALID_KEY', `invalid key segment ${JSON.stringify(part)}: ${problem}`);
        }
        out.push(part);
      }
    }
    return out.length === 0 ? Key.root : new Key(out);
  }

  /** True when `other` is this key or lies under it. */
  isPrefixOf(other: KeyLike): boolean {
    const o = Key.from(other).segments;
    if (o.length < this.segments.length) return false;
    return this.segments.every((s, i) => s === o[i]);
  }

  /** The segments of `this` after `ancestor`, which must be a prefix of it. */
  relativeTo(ancestor: KeyLike): Key {
    const a = Key.from(ancestor);
    if (!a.isPrefixOf(this)) throw new KvError('ERR_KV_INVALID_KEY', `${a} is not a prefix of ${this}`);
    return Key.of(this.segments.slice(a.depth));
  }

  /** Structural equality with another key or path. */
  equals(other: KeyLike): boolean {
    return Key.compare(this, other) === 0;
  }

  /** Ordering as {@link Key.compare}. */
  compare(other: KeyLike): number {
    return Key.compare(this, other);
  }

  /** `/` followed by the segments joined with `/`; the root is `/`. */
  toString(): string {
    return `/${this.segments.join('/')}`;
  }

  /** The path string, so `JSON.stringify` prints keys readably. */
  toJSON(): string {
    return this.toString();
  }
}
