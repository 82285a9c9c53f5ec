/**
 * tarKv specifics: archives it writes are read by GNU tar (ustar prefix and pax long names), an
 * interrupted append is invisible and repaired, compaction, and refused member names.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, truncate, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { tarKv } from 'morgana';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'morgana-kv-tar-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const prefixName = `${'p'.repeat(90)}/${'q'.repeat(80)}/file`; // 176 bytes: ustar prefix + name
const paxName = `${'x'.repeat(200)}/${'y'.repeat(200)}`; // needs a pax path
const unicodeName = 'dossier/été/日本語.txt';

test('GNU tar reads what tarKv writes, long and unicode names included', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    const kv = await tarKv(file, { writable: true });
    await kv.set(prefixName, 'prefix');
    await kv.set(paxName, 'pax');
    await kv.set(unicodeName, 'unicode');
    await kv.set('/bin', Buffer.from([0, 1, 2, 255]));
    await kv.close();
    const listed = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n').sort();
    t.deepEqual(listed, [paxName, prefixName, '/bin'.slice(1), unicodeName].sort());
    const out = join(dir, 'out');
    await mkdir(out);
    execFileSync('tar', ['-xf', file, '-C', out]);
    t.is(await readFile(join(out, prefixName), 'utf8'), 'prefix');
    t.is(await readFile(join(out, paxName), 'utf8'), 'pax');
    t.is(await readFile(join(out, unicodeName), 'utf8'), 'unicode');
    t.deepEqual(await readFile(join(out, 'bin')), Buffer.from([0, 1, 2, 255]));
  });
});

test('later entries win; removals are tombstones until compaction; compaction keeps the content', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    const kv = await tarKv(file, { writable: true, autoCompact: false });
    await kv.set('/a/x', 'old');
    await kv.set('/a/x', 'new');
    await kv.set('/a/y', 'y');
    await kv.set('/b', 'b');
    await kv.remove('/a/y');
    const digest = await kv.digest('/');
    const before = kv.stats();
    t.true(before.archiveBytes > before.liveBytes);
    await kv.compact();
    const after = kv.stats();
    t.true(after.archiveBytes < before.archiveBytes);
    t.deepEqual(await kv.digest('/'), digest);
    t.is((await kv.get('/a/x')).toString(), 'new');
    await kv.close();
    t.deepEqual(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n'), ['a/x', 'b']);
    const ro = await tarKv(file);
    t.deepEqual(await ro.digest('/'), digest);
    await ro.close();
  });
});

test('automatic compaction bounds the archive', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    const kv = await tarKv(file, { writable: true });
    const big = Buffer.alloc(300 * 1024, 7);
    for (let i = 0; i < 12; i++) await kv.set('/big', big);
    await kv.set('/small', 's');
    t.true((await stat(file)).size < 1.5 * 1024 * 1024, `${(await stat(file)).size} bytes`);
    t.deepEqual(await kv.get('/big'), big);
    await kv.close();
    const ro = await tarKv(file);
    t.is((await ro.get('/small')).toString(), 's');
    await ro.close();
  });
});

test('an append interrupted before its first block is invisible, and a writable open repairs the tail', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    let kv = await tarKv(file, { writable: true });
    await kv.set('/first', 'one');
    await kv.close();
    const end = (await stat(file)).size - 1024; // where the next group starts
    kv = await tarKv(file, { writable: true });
    await kv.set('/second', 'two');
    await kv.set('/third', Buffer.alloc(5000, 3));
    await kv.close();
    // The state a crash between the two syncs leaves: all but the group's first block written.
    const fh = await open(file, 'r+');
    await fh.write(Buffer.alloc(512), 0, 512, end);
    await fh.close();
    const ro = await tarKv(file);
    t.deepEqual((await ro.list('/')).map(([k]) => k.toString()), ['/first']);
    await ro.close();
    kv = await tarKv(file, { writable: true });
    t.is((await stat(file)).size, end + 1024, 'the unfinished groups are cut off');
    await kv.set('/again', 'ok');
    await kv.close();
    t.deepEqual(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n'), ['first', 'again']);
  });
});

test('an interrupted append whose value starts with zeros is still recognised and cut off', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    let kv = await tarKv(file, { writable: true });
    await kv.set('/first', 'one');
    await kv.close();
    const end = (await stat(file)).size - 1024;
    kv = await tarKv(file, { writable: true });
    const zeros = Buffer.alloc(4096);
    zeros[4000] = 1;
    await kv.set('/zeros', zeros);
    await kv.close();
    t.deepEqual(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n'), ['first', 'zeros']);
    const fh = await open(file, 'r+');
    await fh.write(Buffer.alloc(512), 0, 512, end); // the crash: the group's first block never landed
    await fh.close();
    kv = await tarKv(file, { writable: true });
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/first']);
    t.is((await stat(file)).size, end + 1024);
    await kv.close();
  });
});

test('a truncated archive (a torn data write) is refused, or mounted up to the cut when asked, saying so', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    const kv = await tarKv(file, { writable: true });
    await kv.set('/a', 'a');
    await kv.set('/b', Buffer.alloc(10_000, 1));
    await kv.close();
    await truncate(file, 512 * 2 + 512 + 4000); // a, then b's header and part of its data
    await t.throwsAsync(tarKv(file), { code: 'ERR_KV_CORRUPT', message: /past byte 1024/ });
    await t.throwsAsync(tarKv(file, { writable: true }), { code: 'ERR_KV_CORRUPT' });
    t.is((await stat(file)).size, 512 * 2 + 512 + 4000, 'the writable open cut nothing');
    const ro = await tarKv(file, { allowIncomplete: true });
    t.deepEqual((await ro.list('/')).map(([k]) => k.toString()), ['/a']);
    t.is(ro.incomplete?.offset, 1024);
    await ro.close();
  });
});

test('member names that would escape are refused; links are skipped', async (t) => {
  await withDir(async (dir) => {
    const tree = join(dir, 'tree');
    await mkdir(tree);
    await writeFile(join(tree, 'file'), 'f');
    await symlink('/etc/passwd', join(tree, 'link'));
    const ok = join(dir, 'ok.tar');
    execFileSync('tar', ['-cf', ok, '-C', tree, '.']);
    const kv = await tarKv(ok);
    t.deepEqual((await kv.list('/')).map(([k, kind]) => `${k}:${kind}`), ['/file:value']);
    await kv.close();
    const evil = join(dir, 'evil.tar');
    execFileSync('tar', ['-P', '-cf', evil, `${tree}/../tree/file`]);
    await t.throwsAsync(tarKv(evil), { code: 'ERR_KV_INVALID_KEY' });
  });
});

test('read-only mounts refuse every write', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'a.tar');
    await (await tarKv(file, { writable: true })).close();
    const kv = await tarKv(file);
    const ro = { code: 'ERR_KV_READ_ONLY' };
    await t.throwsAsync(kv.set('/a', 'x'), ro);
    await t.throwsAsync(kv.remove('/a'), ro);
    await t.throwsAsync(kv.rename('/a', '/b'), ro);
    await t.throwsAsync(kv.setPartial('/a', 0, 'x'), ro);
    await t.throwsAsync(kv.batch(async () => undefined), ro);
    await t.throwsAsync(kv.compact(), ro);
    await kv.close();
    await t.throwsAsync(tarKv(join(dir, 'missing.tar')), { code: 'ERR_KV_NOT_FOUND' });
  });
});
