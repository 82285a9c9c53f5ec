/**
 * `morgana crunch`: the command line, deterministic output honouring SOURCE_DATE_EPOCH, content
 * deduplication, and refusal of links. (The generated store itself passes the read-only
 * conformance suite in kv.spec.ts.)
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import test from 'ava';
import type { CrunchKv } from 'morgana';

const cli = fileURLToPath(new URL('cli.js', import.meta.resolve('morgana')));
const morgana = import.meta.resolve('morgana');

function crunch(args: string[], env: Record<string, string | undefined> = {}) {
  const r = spawnSync(process.execPath, [cli, 'crunch', ...args], {
    encoding: 'utf8',
    env: { ...process.env, SOURCE_DATE_EPOCH: undefined, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function withTree(fn: (dir: string, tree: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'morgana-crunch-'));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'sub', 'empty'), { recursive: true });
  await writeFile(join(tree, 'a.txt'), 'same');
  await writeFile(join(tree, 'sub', 'b.txt'), 'same');
  await writeFile(join(tree, 'sub', 'c.bin'), Buffer.from([0, 255, 10, 13]));
  await writeFile(join(tree, '.hidden'), 'dot');
  try {
    await fn(dir, tree);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('bad usage exits with 64', (t) => {
  t.is(crunch([]).code, 64);
  t.is(crunch(['some-dir']).code, 64);
  t.is(crunch(['a', 'b', '-o', 'x.ts']).code, 64);
  t.is(crunch(['--bogus']).code, 64);
});

test('the output is deterministic and honours SOURCE_DATE_EPOCH', async (t) => {
  await withTree(async (dir, tree) => {
    const out1 = join(dir, 'one.ts');
    const out2 = join(dir, 'two.ts');
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    t.is(crunch([tree, '-o', out1, '--import-from', morgana], env).code, 0);
    await utimes(join(tree, 'a.txt'), new Date(), new Date()); // mtimes do not matter then
    t.is(crunch([tree, '-o', out2, '--import-from', morgana], env).code, 0);
    const one = await readFile(out1, 'utf8');
    t.is(one, await readFile(out2, 'utf8'));
    t.true(one.includes('2023-11-14T22:13:20.000Z'));
    const { kv } = (await import(pathToFileURL(out1).href)) as { kv: CrunchKv };
    t.is((await kv.lastModified('/sub/c.bin')).getTime(), 1_700_000_000_000);
    t.deepEqual((await kv.list('/')).map(([k]) => k.toString()), ['/.hidden', '/a.txt', '/sub']);
    t.deepEqual((await kv.list('/sub')).map(([k]) => k.toString()), ['/sub/b.txt', '/sub/c.bin'], 'empty directories are not kept');
    t.deepEqual(await kv.get('/sub/c.bin'), Buffer.from([0, 255, 10, 13]));
    t.is((one.match(/^ {2}'[A-Za-z0-9+/=]*',$/gm) ?? []).length, 3, 'identical contents are stored once');
    t.is(crunch([tree, '-o', out1], { SOURCE_DATE_EPOCH: 'yesterday' }).code, 1);
  });
});

test('without SOURCE_DATE_EPOCH the newest file time is used, never the clock', async (t) => {
  await withTree(async (dir, tree) => {
    const when = new Date('2001-02-03T04:05:06Z');
    for (const f of ['a.txt', 'sub/b.txt', 'sub/c.bin', '.hidden']) await utimes(join(tree, f), when, when);
    const out1 = join(dir, 'one.ts');
    t.is(crunch([tree, '-o', out1]).code, 0);
    const text = await readFile(out1, 'utf8');
    t.true(text.includes(`mtime: ${when.getTime()}`));
    t.true(text.includes(`from "morgana"`));
    const out2 = join(dir, 'two.ts');
    t.is(crunch([tree, '-o', out2]).code, 0);
    t.is(await readFile(out2, 'utf8'), text);
  });
});

test('symbolic links are refused', async (t) => {
  await withTree(async (dir, tree) => {
    await symlink('/etc/passwd', join(tree, 'link'));
    const r = crunch([tree, '-o', join(dir, 'x.ts')]);
    t.is(r.code, 1);
    t.regex(r.stderr, /refusing .*link/);
  });
});
