/**
 * The conformance suites every key-value backend passes: `kvRwConformance` for read-write stores
 * (memory, directory, writable tar) and `kvRoConformance` for read-only ones (a tar archive written
 * by GNU tar, a crunched module), which are built from the fixture tree {@link FIXTURE}.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ExecutionContext, TestFn } from 'ava';
import { Key, type KvRo, type KvRw, memKv } from 'morgana';

/** A fresh store plus how to reopen it (durable backends) and clean up. */
export interface RwInstance {
  kv: KvRw;
  reopen?: () => Promise<KvRw>;
  cleanup(): Promise<void>;
}

export interface RwBackend {
  name: string;
  open(): Promise<RwInstance>;
  /** Run the 100 MiB value test (default true). */
  huge?: boolean;
  /** The store persists: `open` gives `reopen`, and the reopening test runs. */
  durable?: boolean;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** A deterministic pattern of `n` bytes, different for each `seed`. */
export function pattern(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Names whose order differs between UTF-16 code units and code points (and bytes). */
export const ORDER_NAMES = ['B', 'a', 'b', 'caf\u00e9', 'cafe\u0301', 'z', '\uff5e', '\u{1f600}', '日本'];
/** The expected listing order: by code point. */
export const ORDER_SORTED = ['B', 'a', 'b', 'cafe\u0301', 'caf\u00e9', 'z', '日本', '\uff5e', '\u{1f600}'];

/** Keys every store refuses: malformed paths, traversal, NUL, lone surrogates, non-keys. */
export const HOSTILE_KEYS: unknown[] = [
  '/a/../b',
  '/../etc/passwd',
  '..',
  '/a/./b',
  '//a',
  '/a/',
  'a\0b',
  '/\ud800',
  '/a/\udc00b',
  ['a', ''],
  ['a/b'],
  ['..'],
  ['.'],
  ['a', '\0'],
  null,
  undefined,
  42,
  {},
  ['a', 7],
];

/** Valid segments that look like something else: kept as they are by every store. */
export const ODD_NAMES = [
  '...',
  ' ',
  ' lead and trail ',
  '.hidden',
  '-rf',
  'a\\b',
  '%2e%2e',
  'new\nline',
  'tab\there',
  'CON',
  'a:b',
  '\u00e9',
  'e\u0301',
  '\u202eevil',
  '\u{1f600}',
  '*?[]',
];

const LONG = 'segment-'.repeat(20); // 160 bytes, longer than a ustar name field
const DEEP = Array.from({ length: 40 }, (_, i) => `d${i}`);

/** The fixture the read-only suites are built from: path → content. */
export const FIXTURE: Array<[string, Buffer]> = [
  ['/empty', Buffer.alloc(0)],
  ['/binary', allBytes],
  ['/text.txt', Buffer.from('hello, world\n')],
  ['/.dotfile', Buffer.from('hidden')],
  ['/dup1', Buffer.from('same content')],
  ['/dir/dup2', Buffer.from('same content')],
  ['/dir/sub/value', pattern(10_000, 7)],
  [`/long/${LONG}/${LONG}`, Buffer.from('long names')],
  [`/${DEEP.join('/')}`, Buffer.from('deep')],
  ...ORDER_NAMES.map((n): [string, Buffer] => [`/order/${n}`, Buffer.from(n)]),
];

/** Writes {@link FIXTURE} (plus `extra`) under `dir`. */
export async function writeFixture(dir: string, extra: Array<[string, Buffer]> = []): Promise<void> {
  for (const [path, data] of [...FIXTURE, ...extra]) {
    const file = join(dir, ...Key.from(path).segments);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, data);
  }
}

/** An in-memory store with the fixture, the reference for digests. */
export async function fixtureMem(extra: Array<[string, Buffer]> = []): Promise<KvRw> {
  const kv = await memKv();
  for (const [path, data] of [...FIXTURE, ...extra]) await kv.set(path, data);
  return kv;
}

const codeOf = (code: string) => ({ code });

/** Byte equality without ava's deep diff (which cannot walk 100 MiB). */
export function sameBytes(t: ExecutionContext, actual: Buffer, expected: Buffer, message?: string): void {
  t.true(actual.length === expected.length && actual.equals(expected), message ?? `${actual.length} bytes differ from ${expected.length} expected`);
}

/** The read-write conformance suite. */
export function kvRwConformance(test: TestFn, backend: RwBackend): void {
  const it = (title: string, fn: (t: ExecutionContext, kv: KvRw, inst: RwInstance) => Promise<void>) =>
    test(`${backend.name}: ${title}`, async (t) => {
      const inst = await backend.open();
      try {
        await fn(t, inst.kv, inst);
      } finally {
        await inst.kv.close().catch(() => undefined);
        await inst.cleanup();
      }
    });

  it('an empty store has only the root dictionary', async (t, kv) => {
    t.is(await kv.exists('/'), 'dictionary');
    t.deepEqual(await kv.list('/'), []);
    t.is(await kv.exists('/a'), undefined);
    await t.throwsAsync(kv.get('/a'), codeOf('ERR_KV_NOT_FOUND'));
    await t.throwsAsync(kv.list('/a'), codeOf('ERR_KV_NOT_FOUND'));
    await t.throwsAsync(kv.size('/a'), codeOf('ERR_KV_NOT_FOUND'));
    await t.throwsAsync(kv.get('/'), codeOf('ERR_KV_VALUE_EXPECTED'));
  });

  it('set and get round-trip strings, binary and empty values, copying buffers', async (t, kv) => {
    await kv.set('/s', 'héllo');
    await kv.set(['b'], allBytes);
    await kv.set(Key.from('/e'), Buffer.alloc(0));
    t.deepEqual(await kv.get('/s'), Buffer.from('héllo'));
    t.deepEqual(await kv.get('/b'), allBytes);
    t.deepEqual(await kv.get('/e'), Buffer.alloc(0));
    t.is(await kv.exists('/e'), 'value');
    t.is(await kv.size('/e'), 0);
    t.is(await kv.size('/b'), 256);
    const mine = Buffer.from('original');
    await kv.set('/m', mine);
    mine.fill(0);
    const got = await kv.get('/m');
    t.is(got.toString(), 'original');
    got.fill(1);
    t.is((await kv.get('/m')).toString(), 'original');
  });

  it('set creates parents; list gives absolute keys in code point order', async (t, kv) => {
    for (const n of [...ORDER_NAMES].reverse()) await kv.set(['order', n], n);
    await kv.set('/order/sub/x', 'x');
    t.is(await kv.exists('/order'), 'dictionary');
    t.is(await kv.exists('/order/sub'), 'dictionary');
    const listing = await kv.list('/order');
    t.deepEqual(
      listing.map(([k, kind]) => [k.toString(), kind]),
      [...ORDER_SORTED.slice(0, 5), 'sub', ...ORDER_SORTED.slice(5)].map((n) => [`/order/${n}`, n === 'sub' ? 'dictionary' : 'value']),
    );
    t.true(listing.every(([k]) => k instanceof Key));
    t.notDeepEqual(await kv.get('/order/caf\u00e9'), await kv.get('/order/cafe\u0301')); // NFC and NFD are distinct keys
    t.is((await kv.get('/order/\u{1f600}')).toString(), '\u{1f600}');
  });

  it('kinds are enforced: no value over a dictionary, nothing under a value', async (t, kv) => {
    await kv.set('/a/b', '1');
    await t.throwsAsync(kv.set('/a', 'x'), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.set('/', 'x'), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.set('/a/b/c', 'x'), codeOf('ERR_KV_DICTIONARY_EXPECTED'));
    await t.throwsAsync(kv.set('/a/b/c/d', 'x'), codeOf('ERR_KV_DICTIONARY_EXPECTED'));
    await t.throwsAsync(kv.get('/a'), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.size('/a'), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.list('/a/b'), codeOf('ERR_KV_DICTIONARY_EXPECTED'));
    await t.throwsAsync(kv.get('/a/b/c'), codeOf('ERR_KV_NOT_FOUND'));
    t.is(await kv.exists('/a/b/c'), undefined);
    t.is((await kv.get('/a/b')).toString(), '1');
    t.deepEqual((await kv.list('/')).map(([k, kind]) => [k.toString(), kind]), [['/a', 'dictionary']]);
  });

  it('overwriting replaces the value and its size', async (t, kv) => {
    await kv.set('/k', pattern(5000));
    await kv.set('/k', 'short');
    t.is((await kv.get('/k')).toString(), 'short');
    t.is(await kv.size('/k'), 5);
  });

  it('getPartial reads a range, short at the end, empty past it', async (t, kv) => {
    const data = pattern(10_000, 3);
    await kv.set('/p', data);
    t.deepEqual(await kv.getPartial('/p', 100, 50), data.subarray(100, 150));
    t.deepEqual(await kv.getPartial('/p', 9_990, 50), data.subarray(9_990));
    t.deepEqual(await kv.getPartial('/p', 10_000, 5), Buffer.alloc(0));
    t.deepEqual(await kv.getPartial('/p', 50_000, 5), Buffer.alloc(0));
    t.deepEqual(await kv.getPartial('/p', 0, 0), Buffer.alloc(0));
    await t.throwsAsync(kv.getPartial('/p', -1, 5), codeOf('ERR_OUT_OF_RANGE'));
    await t.throwsAsync(kv.getPartial('/p', 0.5, 5), codeOf('ERR_OUT_OF_RANGE'));
    await kv.set('/d/x', 'x');
    await t.throwsAsync(kv.getPartial('/d', 0, 1), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.getPartial('/nope', 0, 1), codeOf('ERR_KV_NOT_FOUND'));
  });

  it('setPartial patches in place, appends past the end, creates a missing key', async (t, kv) => {
    await kv.set('/v', 'abcdef');
    await kv.setPartial('/v', 2, 'XY');
    t.is((await kv.get('/v')).toString(), 'abXYef');
    await kv.setPartial('/v', 5, '123');
    t.is((await kv.get('/v')).toString(), 'abXYe123');
    await kv.setPartial('/v', 1000, '!');
    t.is((await kv.get('/v')).toString(), 'abXYe123!'); // no hole
    await kv.setPartial('/new/w', 7, 'zz');
    t.is((await kv.get('/new/w')).toString(), 'zz');
    await t.throwsAsync(kv.setPartial('/new', 0, 'x'), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.setPartial('/v', -1, 'x'), codeOf('ERR_OUT_OF_RANGE'));
  });

  it('remove deletes values and whole dictionaries and prunes empty parents', async (t, kv) => {
    await kv.set('/a/b/c', '1');
    await kv.set('/a/b/d', '2');
    await kv.set('/a/e', '3');
    await kv.set('/f', '4');
    await kv.remove('/a/b/c');
    t.is(await kv.exists('/a/b/c'), undefined);
    t.is(await kv.exists('/a/b'), 'dictionary');
    await kv.remove('/a/b');
    t.is(await kv.exists('/a/b'), undefined);
    t.is(await kv.exists('/a/b/d'), undefined);
    t.is((await kv.get('/a/e')).toString(), '3');
    await kv.remove('/a/e');
    t.is(await kv.exists('/a'), undefined, 'the emptied dictionary is gone');
    await kv.remove('/missing');
    await kv.remove('/f/under/a/value');
    t.is((await kv.get('/f')).toString(), '4');
    await kv.set('/g/h', '5');
    await kv.remove('/');
    t.deepEqual(await kv.list('/'), []);
    t.is(await kv.exists('/'), 'dictionary');
  });

  it('rename moves values and dictionaries with the documented rules', async (t, kv) => {
    await kv.set('/a', 'A');
    await kv.set('/b', 'B');
    await kv.rename('/a', '/b'); // over an existing value: replaced
    t.is(await kv.exists('/a'), undefined);
    t.is((await kv.get('/b')).toString(), 'A');
    await kv.rename('/b', '/x/y/z'); // parents created
    t.is((await kv.get('/x/y/z')).toString(), 'A');
    await kv.set('/x/y/w', 'W');
    await kv.rename('/x', '/moved'); // a whole dictionary
    t.is(await kv.exists('/x'), undefined);
    t.deepEqual((await kv.list('/moved/y')).map(([k]) => k.toString()), ['/moved/y/w', '/moved/y/z']);
    await kv.rename('/moved/y/w', '/moved/y/w'); // to itself: nothing
    t.is((await kv.get('/moved/y/w')).toString(), 'W');
    await t.throwsAsync(kv.rename('/moved', '/moved/y/inside'), codeOf('ERR_KV_RENAME_SOURCE_PREFIX'));
    await t.throwsAsync(kv.rename('/nope', '/q'), codeOf('ERR_KV_NOT_FOUND'));
    await kv.set('/v', 'V');
    await t.throwsAsync(kv.rename('/v', '/moved'), codeOf('ERR_KV_ALREADY_PRESENT')); // onto a dictionary
    await t.throwsAsync(kv.rename('/moved', '/v'), codeOf('ERR_KV_ALREADY_PRESENT')); // dictionary onto a value
    await t.throwsAsync(kv.rename('/moved/y/z', '/v/under'), codeOf('ERR_KV_DICTIONARY_EXPECTED'));
    await kv.rename('/moved/y/z', '/v'); // value over value
    t.is((await kv.get('/v')).toString(), 'A');
    await kv.rename('/moved/y/w', '/top');
    t.is(await kv.exists('/moved'), undefined, 'emptied source parents are pruned');
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/top', '/v']);
  });

  it('digest is SHA-256 of a value and covers a dictionary\'s content', async (t, kv) => {
    await kv.set('/d/a', 'alpha');
    await kv.set('/d/sub/b', allBytes);
    t.deepEqual(await kv.digest('/d/a'), sha256(Buffer.from('alpha')));
    const ref = await memKv();
    await ref.set('/d/a', 'alpha');
    await ref.set('/d/sub/b', allBytes);
    const before = await kv.digest('/d');
    t.is(before.length, 32);
    t.deepEqual(before, await ref.digest('/d'), 'same content, same digest as the memory store');
    t.deepEqual(await kv.digest('/'), await ref.digest('/'));
    await kv.set('/d/sub/b', 'changed');
    t.notDeepEqual(await kv.digest('/d'), before);
    await kv.set('/d/sub/b', allBytes);
    t.deepEqual(await kv.digest('/d'), before);
    await kv.rename('/d/sub/b', '/d/sub/c');
    t.notDeepEqual(await kv.digest('/d'), before, 'names count');
    await t.throwsAsync(kv.digest('/nope'), codeOf('ERR_KV_NOT_FOUND'));
  });

  it('lastModified brackets the write; a dictionary shows its newest value', async (t, kv) => {
    const before = Date.now();
    await kv.set('/t/a', '1');
    const after = Date.now();
    const m = (await kv.lastModified('/t/a')).getTime();
    t.true(m >= Math.floor(before / 1000) * 1000 - 1000 && m <= after + 1000, `${m} in [${before}, ${after}]`);
    t.is((await kv.lastModified('/t')).getTime(), m);
    await t.throwsAsync(kv.lastModified('/nope'), codeOf('ERR_KV_NOT_FOUND'));
  });

  it('deep paths work', async (t, kv) => {
    const deep = `/${DEEP.join('/')}`;
    await kv.set(deep, 'deep');
    t.is((await kv.get(deep)).toString(), 'deep');
    t.is(await kv.exists(`/${DEEP.slice(0, 20).join('/')}`), 'dictionary');
    await kv.remove(deep);
    t.deepEqual(await kv.list('/'), []);
  });

  it('invalid keys are refused by every method', async (t, kv) => {
    for (const bad of ['/a/../b', '/a/./b', '//a', '/a/', 'a\0b', ['a', ''], ['a/b'], ['..'], '/\ud800']) {
      await t.throwsAsync(kv.set(bad, 'x'), codeOf('ERR_KV_INVALID_KEY'), String(bad));
      await t.throwsAsync(kv.get(bad), codeOf('ERR_KV_INVALID_KEY'));
      await t.throwsAsync(kv.exists(bad), codeOf('ERR_KV_INVALID_KEY'));
      await t.throwsAsync(kv.remove(bad), codeOf('ERR_KV_INVALID_KEY'));
    }
    t.deepEqual(await kv.list('/'), []);
  });

  it('hostile keys are refused by every method, batches and renames included, leaving nothing behind', async (t, kv) => {
    await kv.set('/keep', 'k');
    const before = await kv.digest('/');
    const bad = codeOf('ERR_KV_INVALID_KEY');
    for (const key of HOSTILE_KEYS) {
      const what = JSON.stringify(key);
      await t.throwsAsync(kv.set(key as string, 'x'), bad, what);
      await t.throwsAsync(kv.setPartial(key as string, 0, 'x'), bad, what);
      await t.throwsAsync(kv.get(key as string), bad, what);
      await t.throwsAsync(kv.getPartial(key as string, 0, 1), bad, what);
      await t.throwsAsync(kv.exists(key as string), bad, what);
      await t.throwsAsync(kv.size(key as string), bad, what);
      await t.throwsAsync(kv.list(key as string), bad, what);
      await t.throwsAsync(kv.digest(key as string), bad, what);
      await t.throwsAsync(kv.lastModified(key as string), bad, what);
      await t.throwsAsync(kv.remove(key as string), bad, what);
      await t.throwsAsync(kv.rename('/keep', key as string), bad, what);
      await t.throwsAsync(kv.rename(key as string, '/elsewhere'), bad, what);
      await t.throwsAsync(
        kv.batch(async (tx) => {
          await tx.set('/in-batch', 'x');
          await tx.set(key as string, 'x');
        }),
        bad,
        what,
      );
    }
    t.deepEqual(await kv.digest('/'), before, 'nothing was written');
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/keep']);
  });

  it('odd but valid names are kept exactly as given, never normalised or interpreted', async (t, kv) => {
    for (const [i, name] of ODD_NAMES.entries()) await kv.set(['odd', name], `v${i}`);
    const listed = (await kv.list('/odd')).map(([k]) => k.basename);
    t.deepEqual(listed, [...ODD_NAMES].sort((a, b) => Key.compare([a], [b])));
    for (const [i, name] of ODD_NAMES.entries()) t.is((await kv.get(['odd', name])).toString(), `v${i}`, JSON.stringify(name));
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/odd'], 'nothing landed outside /odd');
    await kv.remove('/odd');
    t.deepEqual(await kv.list('/'), []);
  });

  it('an extreme key is stored whole or refused without a trace', async (t, kv, inst) => {
    const extremes = [
      `/${'a/'.repeat(2100)}z`, // 2,101 segments
      `/${'s'.repeat(255)}`, // NAME_MAX
      `/${'s'.repeat(256)}`, // NAME_MAX + 1
      `/${'é'.repeat(200)}`, // 400 bytes of UTF-8 in one segment
      `/${Array.from({ length: 30 }, () => 'p'.repeat(200)).join('/')}`, // a 6 KB path
    ];
    const stored: string[] = [];
    const top = (key: string): string => Key.from(key).segments[0]!;
    for (const key of extremes) {
      try {
        await kv.set(key, key);
        t.is((await kv.get(key)).toString(), key);
        t.is(await kv.size(key), Buffer.byteLength(key));
        stored.push(key);
      } catch (e) {
        t.is((e as { code?: string }).code, 'ERR_KV_INVALID_KEY', key.slice(0, 40));
      }
      // Each extreme key has its own first segment: the root shows exactly the stored ones.
      const root = (await kv.list('/')).map(([k]) => k.basename);
      t.deepEqual(root, stored.map(top).sort((a, b) => Key.compare([a], [b])), `after ${key.slice(0, 40)}…: a refused key leaves nothing`);
    }
    if (backend.durable && stored.length > 0) {
      await kv.close();
      const again = await inst.reopen!();
      inst.kv = again;
      for (const key of stored) t.is((await again.get(key)).toString(), key);
      kv = again;
    }
    for (const key of stored) await kv.remove(Key.from(key).segments[0]!);
    t.deepEqual(await kv.list('/'), [], 'every stored key could be removed');
  });

  it('batch applies all or nothing; reads inside see the batch', async (t, kv) => {
    await kv.set('/keep', 'k');
    await kv.set('/gone/x', 'g');
    const r = await kv.batch(async (tx) => {
      await tx.set('/n/1', 'one');
      await tx.set('/n/2', 'two');
      await tx.remove('/gone');
      await tx.rename('/keep', '/kept');
      t.is((await tx.get('/n/1')).toString(), 'one');
      t.is(await tx.exists('/gone'), undefined);
      t.is(await tx.exists('/keep'), undefined);
      t.deepEqual((await tx.list('/')).map(([k]) => k.toString()), ['/kept', '/n']);
      t.is(await kv.exists('/n'), undefined, 'not visible outside before the end');
      return 42;
    });
    t.is(r, 42);
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/kept', '/n']);
    t.is((await kv.get('/n/2')).toString(), 'two');
    await t.throwsAsync(
      kv.batch(async (tx) => {
        await tx.set('/n/1', 'changed');
        await tx.remove('/kept');
        throw new Error('abort');
      }),
      { message: 'abort' },
    );
    t.is((await kv.get('/n/1')).toString(), 'one');
    t.is(await kv.exists('/kept'), 'value');
    await t.throwsAsync(kv.batch(async (tx) => tx.set('/kept/x', 'x')), codeOf('ERR_KV_DICTIONARY_EXPECTED'));
  });

  it('batch can replace a dictionary with a value and the reverse', async (t, kv) => {
    await kv.set('/a/b', '1');
    await kv.set('/c', '2');
    await kv.batch(async (tx) => {
      await tx.remove('/a');
      await tx.set('/a', 'now a value');
      await tx.remove('/c');
      await tx.set('/c/d', 'now a dictionary');
    });
    t.is((await kv.get('/a')).toString(), 'now a value');
    t.is((await kv.get('/c/d')).toString(), 'now a dictionary');
    await kv.batch(async (tx) => {
      await tx.remove('/');
      await tx.set('/only', 'x');
    });
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/only']);
  });

  it('concurrent readers see a batch before or after, never a mix', async (t, kv) => {
    const keys = Array.from({ length: 16 }, (_, i) => `/b/${String(i).padStart(2, '0')}`);
    for (const k of keys) await kv.set(k, pattern(2000, 1));
    const before = await kv.digest('/b');
    const seen = new Set<string>();
    let done = false;
    const readers = Array.from({ length: 3 }, async () => {
      while (!done) seen.add((await kv.digest('/b')).toString('hex'));
    });
    await kv.batch(async (tx) => {
      for (const k of keys) await tx.set(k, pattern(2000, 2));
    });
    const after = await kv.digest('/b');
    done = true;
    await Promise.all(readers);
    t.notDeepEqual(before, after);
    for (const s of seen) t.true(s === before.toString('hex') || s === after.toString('hex'), 'a mixed state was seen');
  });

  it('concurrent sets on one key serialise: the last one wins, whole', async (t, kv) => {
    const values = Array.from({ length: 12 }, (_, i) => pattern(64 * 1024, i + 1));
    await Promise.all(values.map((v) => kv.set('/k', v)));
    t.deepEqual(await kv.get('/k'), values[values.length - 1]);
    await Promise.all(values.map((v, i) => kv.set(`/many/${i}`, v)));
    for (let i = 0; i < values.length; i++) t.deepEqual(await kv.get(`/many/${i}`), values[i]);
  });

  it('a closed store refuses calls', async (t, kv) => {
    await kv.set('/a', '1');
    await kv.close();
    await t.throwsAsync(kv.get('/a'), codeOf('ERR_KV_CLOSED'));
    await t.throwsAsync(kv.set('/a', '2'), codeOf('ERR_KV_CLOSED'));
  });

  if (backend.durable) it('contents survive reopening', async (t, kv, inst) => {
    await kv.set('/a/b', 'persisted');
    await kv.batch(async (tx) => {
      await tx.set('/c', allBytes);
      await tx.set('/a/d', '');
    });
    await kv.remove('/a/b');
    const digest = await kv.digest('/');
    await kv.close();
    const again = await inst.reopen!();
    try {
      t.deepEqual(await again.digest('/'), digest);
      t.deepEqual(await again.get('/c'), allBytes);
      t.is(await again.exists('/a/b'), undefined);
      t.is(await again.size('/a/d'), 0);
    } finally {
      await again.close();
    }
  });

  if (backend.huge ?? true) {
    it('a 100 MiB value with partial reads', async (t, kv, inst) => {
      const size = 100 * 1024 * 1024;
      const big = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) big.writeUInt32LE(i, i);
      await kv.set('/big', big);
      t.is(await kv.size('/big'), size);
      sameBytes(t, await kv.getPartial('/big', size - 8, 100), big.subarray(size - 8));
      t.deepEqual(await kv.getPartial('/big', 50 * 1024 * 1024 + 4, 8), big.subarray(50 * 1024 * 1024 + 4, 50 * 1024 * 1024 + 12));
      t.deepEqual(await kv.digest('/big'), sha256(big));
      await kv.setPartial('/big', size - 4, Buffer.from('tail!'));
      t.is(await kv.size('/big'), size + 1);
      t.is((await kv.getPartial('/big', size - 4, 10)).toString(), 'tail!');
      if (inst.reopen) {
        await kv.close();
        const again = await inst.reopen();
        t.is((await again.getPartial('/big', size - 4, 10)).toString(), 'tail!');
        t.deepEqual(await again.getPartial('/big', 4096, 4), big.subarray(4096, 4100));
        await again.close();
      }
    });
  }
}

/** A read-only backend built from {@link FIXTURE} (plus `extra`). */
export interface RoBackend {
  name: string;
  extra: Array<[string, Buffer]>;
  open(): Promise<{ kv: KvRo; cleanup(): Promise<void> }>;
}

/** The read-only conformance suite. */
export function kvRoConformance(test: TestFn, backend: RoBackend): void {
  const it = (title: string, fn: (t: ExecutionContext, kv: KvRo) => Promise<void>) =>
    test(`${backend.name}: ${title}`, async (t) => {
      const inst = await backend.open();
      try {
        await fn(t, inst.kv);
      } finally {
        await inst.cleanup();
      }
    });

  it('holds the fixture, byte for byte', async (t, kv) => {
    for (const [path, data] of [...FIXTURE, ...backend.extra]) {
      t.is(await kv.exists(path), 'value', path);
      t.is(await kv.size(path), data.length, path);
      sameBytes(t, await kv.get(path), data, path);
      t.deepEqual(await kv.digest(path), sha256(data), path);
    }
  });

  it('lists in code point order, with kinds', async (t, kv) => {
    t.deepEqual((await kv.list('/order')).map(([k, kind]) => [k.toString(), kind]), ORDER_SORTED.map((n) => [`/order/${n}`, 'value']));
    const root = (await kv.list('/')).map(([k, kind]) => `${k}:${kind}`);
    t.true(root.includes('/.dotfile:value') && root.includes('/dir:dictionary') && root.includes('/empty:value'));
    t.deepEqual(root, [...root].sort((a, b) => Key.compare(a.split(':')[0]!, b.split(':')[0]!)));
  });

  it('has the same digests as the memory store with the same content', async (t, kv) => {
    const ref = await fixtureMem(backend.extra);
    t.deepEqual(await kv.digest('/'), await ref.digest('/'));
    t.deepEqual(await kv.digest('/dir'), await ref.digest('/dir'));
  });

  it('reports the documented errors', async (t, kv) => {
    await t.throwsAsync(kv.get('/missing'), codeOf('ERR_KV_NOT_FOUND'));
    await t.throwsAsync(kv.get('/dir'), codeOf('ERR_KV_VALUE_EXPECTED'));
    await t.throwsAsync(kv.list('/text.txt'), codeOf('ERR_KV_DICTIONARY_EXPECTED'));
    await t.throwsAsync(kv.get('/text.txt/x'), codeOf('ERR_KV_NOT_FOUND'));
    for (const key of HOSTILE_KEYS) {
      const bad = codeOf('ERR_KV_INVALID_KEY');
      const reads: Array<[string, (k: string) => Promise<unknown>]> = [
        ['get', (k) => kv.get(k)],
        ['exists', (k) => kv.exists(k)],
        ['size', (k) => kv.size(k)],
        ['list', (k) => kv.list(k)],
        ['digest', (k) => kv.digest(k)],
        ['lastModified', (k) => kv.lastModified(k)],
      ];
      for (const [name, read] of reads) await t.throwsAsync(read(key as string), bad, `${name}(${JSON.stringify(key)})`);
      await t.throwsAsync(kv.getPartial(key as string, 0, 1), bad, JSON.stringify(key));
    }
    t.is(await kv.exists('/dir/sub'), 'dictionary');
    t.is(await kv.exists('/nothing/here'), undefined);
    const w = kv as Partial<KvRw>;
    if (typeof w.set === 'function') await t.throwsAsync(w.set('/x', 'y'), codeOf('ERR_KV_READ_ONLY'));
  });

  it('reads partial ranges', async (t, kv) => {
    const data = FIXTURE.find(([p]) => p === '/dir/sub/value')![1];
    t.deepEqual(await kv.getPartial('/dir/sub/value', 5000, 100), data.subarray(5000, 5100));
    t.deepEqual(await kv.getPartial('/dir/sub/value', 9_950, 100), data.subarray(9_950));
    t.deepEqual(await kv.getPartial('/dir/sub/value', 20_000, 100), Buffer.alloc(0));
    t.deepEqual(await kv.getPartial('/empty', 0, 10), Buffer.alloc(0));
  });

  it('has a modification time for values and dictionaries', async (t, kv) => {
    const v = await kv.lastModified('/text.txt');
    t.true(v.getTime() > 0);
    t.true((await kv.lastModified('/dir')).getTime() >= v.getTime() - 24 * 3600 * 1000);
  });
}
