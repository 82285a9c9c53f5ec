/**
 * dirKv specifics: keys never leave the directory (traversal, planted symbolic links, the reserved
 * name), and opening recovers an interrupted batch or set.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { DIR_KV_MAX_PATH_BYTES, DIR_KV_MAX_SEGMENT_BYTES, DIR_KV_META, dirKv } from 'morgana';

const unsafe = { code: 'ERR_KV_UNSAFE_PATH' };

async function withDirs(fn: (store: string, outside: string) => Promise<void>): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'morgana-kv-dir-'));
  const store = join(base, 'store');
  const outside = join(base, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'secret');
  try {
    await fn(store, outside);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

test('traversal attempts are refused before touching the disk', async (t) => {
  await withDirs(async (store, outside) => {
    const kv = await dirKv(store);
    for (const bad of ['/../outside/secret', '../outside/secret', '/a/../../outside/secret', ['..', 'outside', 'secret'], ['/etc/passwd'], ['.']]) {
      await t.throwsAsync(kv.get(bad), { code: 'ERR_KV_INVALID_KEY' });
      await t.throwsAsync(kv.set(bad, 'x'), { code: 'ERR_KV_INVALID_KEY' });
      await t.throwsAsync(kv.remove(bad), { code: 'ERR_KV_INVALID_KEY' });
      await t.throwsAsync(kv.rename('/x', bad), { code: 'ERR_KV_INVALID_KEY' });
    }
    // An "absolute" path is a key inside the store.
    await kv.set('/etc/passwd', 'mine');
    t.is(await readFile(join(store, 'etc', 'passwd'), 'utf8'), 'mine');
    t.is(await readFile(join(outside, 'secret'), 'utf8'), 'secret');
    await kv.close();
  });
});

test('symbolic links planted inside the root are refused, never followed', async (t) => {
  await withDirs(async (store, outside) => {
    const kv = await dirKv(store);
    await symlink(outside, join(store, 'dirlink'));
    await symlink(join(outside, 'secret'), join(store, 'filelink'));
    await kv.set('/real/x', 'x');
    await symlink(outside, join(store, 'real', 'nested'));

    await t.throwsAsync(kv.get('/dirlink/secret'), unsafe);
    await t.throwsAsync(kv.exists('/dirlink/secret'), unsafe);
    await t.throwsAsync(kv.list('/dirlink'), unsafe);
    await t.throwsAsync(kv.exists('/dirlink'), unsafe);
    await t.throwsAsync(kv.set('/dirlink/new', 'x'), unsafe);
    await t.throwsAsync(kv.set('/real/nested/new', 'x'), unsafe);
    await t.throwsAsync(kv.setPartial('/dirlink/secret', 0, 'x'), unsafe);
    await t.throwsAsync(kv.get('/filelink'), unsafe);
    await t.throwsAsync(kv.size('/filelink'), unsafe);
    await t.throwsAsync(kv.digest('/filelink'), unsafe);
    await t.throwsAsync(kv.set('/filelink', 'overwrite'), unsafe);
    await t.throwsAsync(kv.setPartial('/filelink', 0, 'overwrite'), unsafe);
    await t.throwsAsync(kv.remove('/dirlink'), unsafe);
    await t.throwsAsync(kv.rename('/dirlink', '/elsewhere'), unsafe);
    await t.throwsAsync(kv.rename('/real/x', '/dirlink/x'), unsafe);
    await t.throwsAsync(kv.batch(async (tx) => tx.set('/dirlink/b', 'x')), unsafe);

    // Listings leave links out; the outside is untouched.
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/real']);
    t.deepEqual((await kv.list('/real')).map(([k]) => k.toString()), ['/real/x']);
    t.deepEqual(await readdir(outside), ['secret']);
    t.is(await readFile(join(outside, 'secret'), 'utf8'), 'secret');
    await kv.close();
  });
});

test('the metadata directory is reserved and hidden', async (t) => {
  await withDirs(async (store) => {
    const kv = await dirKv(store);
    await t.throwsAsync(kv.set(`/${DIR_KV_META}/tx/x`, 'x'), { code: 'ERR_KV_INVALID_KEY' });
    await t.throwsAsync(kv.remove(`/${DIR_KV_META}`), { code: 'ERR_KV_INVALID_KEY' });
    await kv.set(`/a/${DIR_KV_META}`, 'allowed below the root');
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/a']);
    await t.throwsAsync(kv.set(`/${'x'.repeat(256)}`, 'x'), { code: 'ERR_KV_INVALID_KEY' });
    await kv.close();
  });
});

test('opening replays a committed journal and drops an uncommitted one and temporary files', async (t) => {
  await withDirs(async (store) => {
    let kv = await dirKv(store);
    await kv.set('/old/a', 'A');
    await kv.set('/keep', 'K');
    await kv.close();
    const tx = join(store, DIR_KV_META, 'tx');
    // A committed journal whose application was interrupted after its first put.
    const committed = join(tx, '000000000000001-1-1');
    await mkdir(committed);
    await writeFile(join(committed, 'v1'), 'second');
    await writeFile(
      join(committed, 'manifest.json'),
      JSON.stringify({ version: 1, ops: [{ del: ['old'] }, { put: ['n', 'first'], blob: 'v0' }, { put: ['n', 'second'], blob: 'v1' }] }),
    );
    await mkdir(join(store, 'n'));
    await writeFile(join(store, 'n', 'first'), 'first'); // v0 was already moved into place
    // An uncommitted one, and a stray temporary file.
    const staged = join(tx, '000000000000002-1-2.tmp');
    await mkdir(staged);
    await writeFile(join(staged, 'v0'), 'never');
    await writeFile(join(staged, 'manifest.json'), JSON.stringify({ version: 1, ops: [{ put: ['never'], blob: 'v0' }] }));
    await writeFile(join(store, DIR_KV_META, 'tmp', '1-1-abc'), 'torn');

    kv = await dirKv(store);
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/keep', '/n']);
    t.is((await kv.get('/n/first')).toString(), 'first');
    t.is((await kv.get('/n/second')).toString(), 'second');
    t.deepEqual(await readdir(tx), []);
    t.deepEqual(await readdir(join(store, DIR_KV_META, 'tmp')), []);
    t.false(existsSync(join(store, 'old')));
    await kv.close();
  });
});

test('a corrupt journal stops the store from opening', async (t) => {
  await withDirs(async (store) => {
    await (await dirKv(store)).close();
    const committed = join(store, DIR_KV_META, 'tx', '000000000000001-1-1');
    await mkdir(committed);
    await writeFile(join(committed, 'manifest.json'), JSON.stringify({ version: 1, ops: [{ put: ['..', 'escape'], blob: 'v0' }] }));
    await t.throwsAsync(dirKv(store), { code: 'ERR_KV_CORRUPT' });
  });
});

test('opening checks the directory', async (t) => {
  await withDirs(async (store, outside) => {
    await t.throwsAsync(dirKv(store, { create: false }), { code: 'ERR_KV_NOT_FOUND' });
    await t.throwsAsync(dirKv(join(outside, 'secret')), { code: 'ERR_KV_DICTIONARY_EXPECTED' });
  });
});

/** Creates `a/a/a/…` under `dir` until the file system refuses (ENAMETOOLONG), as an old set did. */
async function deepTree(dir: string): Promise<number> {
  let path = dir;
  let depth = 0;
  for (;;) {
    try {
      await mkdir(join(path, 'a'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENAMETOOLONG') return depth;
      throw e;
    }
    path = join(path, 'a');
    depth++;
  }
}

/** A key starting with `prefix` whose path is exactly `bytes` long, in segments of up to 200 bytes. */
function keyOfBytes(prefix: string, bytes: number): string {
  let key = prefix;
  while (bytes - key.length > 201) key += `/${'s'.repeat(200)}`;
  return `${key}/${'s'.repeat(bytes - key.length - 1)}`;
}

test('a key too deep or too long for the file system is refused before anything is created', async (t) => {
  await withDirs(async (store) => {
    const kv = await dirKv(store);
    const deep = '/a'.repeat(2100);
    await t.throwsAsync(kv.set(deep, 'x'), { code: 'ERR_KV_INVALID_KEY', message: /at most 4095/ });
    await t.throwsAsync(kv.setPartial(deep, 0, 'x'), { code: 'ERR_KV_INVALID_KEY' });
    await t.throwsAsync(kv.batch(async (tx) => tx.set(deep, 'x')), { code: 'ERR_KV_INVALID_KEY' });
    t.deepEqual(await readdir(store), [DIR_KV_META], 'no directory was left behind');
    t.deepEqual(await kv.list('/'), []);

    // The limit is exact: the store path, separators and segments, up to PATH_MAX less its NUL.
    const longest = keyOfBytes('', DIR_KV_MAX_PATH_BYTES - Buffer.byteLength(kv.path));
    const segments = longest.split('/').slice(1);
    t.is(Buffer.byteLength(kv.path) + Buffer.byteLength(longest), DIR_KV_MAX_PATH_BYTES);
    await kv.set(longest, 'fits');
    t.is((await kv.get(longest)).toString(), 'fits');
    await t.throwsAsync(kv.set(`${longest}x`, 'x'), { code: 'ERR_KV_INVALID_KEY' });
    await kv.remove(`/${segments[0]}`);
    t.deepEqual(await readdir(store), [DIR_KV_META]);

    await kv.set(`/${'n'.repeat(DIR_KV_MAX_SEGMENT_BYTES)}`, 'name max');
    await t.throwsAsync(kv.set(`/${'n'.repeat(256)}`, 'x'), { code: 'ERR_KV_INVALID_KEY', message: /255 bytes/ });
    await t.throwsAsync(kv.set(`/${'é'.repeat(128)}`, 'x'), { code: 'ERR_KV_INVALID_KEY' }, '256 bytes in UTF-8');
    await kv.close();
  });
});

test('a rename that would push a key under the moved dictionary past PATH_MAX is refused', async (t) => {
  await withDirs(async (store) => {
    const kv = await dirKv(store);
    const inner = keyOfBytes('/d', DIR_KV_MAX_PATH_BYTES - Buffer.byteLength(kv.path) - 10);
    await kv.set(inner, 'deep');
    await t.throwsAsync(kv.rename('/d', `/${'r'.repeat(20)}`), { code: 'ERR_KV_INVALID_KEY', message: /would make/ });
    t.is((await kv.get(inner)).toString(), 'deep', 'nothing moved');
    await kv.rename('/d', '/e'); // same length: fine
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/e']);
    await kv.close();
  });
});

test('a deep tree left by an older version is listed, removed, and does not stop a reopen', async (t) => {
  await withDirs(async (store) => {
    let kv = await dirKv(store);
    const depth = await deepTree(store);
    t.true(depth > 1000, `${depth} levels`);
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/a']);
    await kv.remove('/a');
    t.deepEqual(await kv.list('/'), []);
    t.deepEqual(await readdir(join(store, DIR_KV_META, 'trash')), []);
    await kv.close();

    // The same tree half-removed into the trash (an older remove failed there): opening empties it.
    const trashed = join(store, DIR_KV_META, 'trash', '1234-1-abcdefabcdef');
    await mkdir(trashed);
    t.true((await deepTree(trashed)) > 1000);
    await writeFile(join(store, 'kept'), 'kept');
    kv = await dirKv(store, { create: false });
    t.deepEqual(await readdir(join(store, DIR_KV_META, 'trash')), []);
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/kept']);
    await kv.close();
  });
});
