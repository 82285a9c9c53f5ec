/**
 * tarKv against archives it did not write: GNU and pax archives made by GNU tar (base-256 numbers,
 * pax records, GNU long names and link targets), hand-made headers checked by GNU tar first, and
 * damaged archives (a bad checksum in the middle, a truncated member, a second archive after the
 * end marker). A writable open must never shrink or rewrite what it did not read; a read-only open
 * that stops early must say so.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { tarKv } from 'morgana';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'morgana-kv-tarx-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const fileSha = async (file: string): Promise<string> => sha256(await readFile(file));
const tarList = (file: string): string[] => execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
const keys = async (kv: { list(k: string): Promise<Array<[{ toString(): string }, string]>> }, at = '/'): Promise<string[]> =>
  (await kv.list(at)).map(([k]) => k.toString());

/** Offsets of the member headers GNU tar reports (`-R`: "block N: ..."). */
function headerOffsets(file: string): number[] {
  const out = execFileSync('tar', ['-tRf', file], { encoding: 'utf8' });
  return [...out.matchAll(/^block (\d+): /gm)].map((m) => Number(m[1]) * 512);
}

/** A tree of three files, the middle one dated before 1970. */
async function threeFiles(dir: string): Promise<{ src: string; contents: Record<string, Buffer> }> {
  const src = join(dir, 'src');
  await mkdir(src);
  const contents: Record<string, Buffer> = {
    a: Buffer.from('first member\n'),
    b: Buffer.alloc(3000, 0x62),
    c: Buffer.from('the member after the old one\n'),
  };
  for (const [name, data] of Object.entries(contents)) await writeFile(join(src, name), data);
  execFileSync('touch', ['-h', '-d', '1960-01-02 03:04:05 UTC', join(src, 'b')]);
  return { src, contents };
}

/** Recomputes the checksum of the header at `at` (as tar writes it: six octal digits, NUL, space). */
function fixChecksum(archive: Buffer, at: number): void {
  archive.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + 512; i++) sum += archive[i]!;
  archive.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
}

test('a GNU archive whose middle member is dated before 1970 (base-256 mtime) is read whole; a writable open changes nothing', async (t) => {
  await withDir(async (dir) => {
    const { src, contents } = await threeFiles(dir);
    const file = join(dir, 'gnu.tar');
    execFileSync('tar', ['--format=gnu', '-cf', file, '-C', src, 'a', 'b', 'c']);
    t.deepEqual(tarList(file), ['a', 'b', 'c']);
    const archive = await readFile(file);
    const bAt = headerOffsets(file)[1]!;
    t.is(archive[bAt + 136], 0xff, 'GNU tar wrote the mtime in negative base-256');
    const before = await fileSha(file);

    const ro = await tarKv(file);
    t.deepEqual(await keys(ro), ['/a', '/b', '/c']);
    t.is(ro.incomplete, undefined);
    for (const [name, data] of Object.entries(contents)) t.is(sha256(await ro.get(`/${name}`)), sha256(data));
    t.is((await ro.lastModified('/b')).toISOString(), '1960-01-02T03:04:05.000Z');
    await ro.close();

    const rw = await tarKv(file, { writable: true });
    t.deepEqual(await keys(rw), ['/a', '/b', '/c']);
    await rw.close();
    t.is(await fileSha(file), before, 'the archive is byte-identical after a writable open and close');
    t.is(archive.length, (await readFile(file)).length);
  });
});

test('a pax archive: long names, a long link target, a pre-1970 mtime, a global header', async (t) => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    const longDir = 'd'.repeat(120);
    const longName = `${longDir}/${'n'.repeat(150)}`;
    await mkdir(join(src, longDir), { recursive: true });
    await writeFile(join(src, longName), 'long');
    await writeFile(join(src, 'old'), 'old');
    execFileSync('touch', ['-h', '-d', '1901-12-14 00:00:00 UTC', join(src, 'old')]);
    await symlink('t'.repeat(300), join(src, 'link'));
    await writeFile(join(src, 'z'), 'last');
    const file = join(dir, 'pax.tar');
    execFileSync('tar', ['--format=pax', '--pax-option=globexthdr.name=g,comment=hello', '-cf', file, '-C', src, longDir, 'old', 'link', 'z']);
    t.deepEqual(tarList(file), [`${longDir}/`, longName, 'old', 'link', 'z']);
    const before = await fileSha(file);
    const kv = await tarKv(file);
    t.deepEqual(await keys(kv), [`/${longDir}`, '/old', '/z']);
    t.is((await kv.get(`/${longName}`)).toString(), 'long');
    t.is((await kv.get('/z')).toString(), 'last');
    t.is((await kv.lastModified('/old')).toISOString(), '1901-12-14T00:00:00.000Z');
    await kv.close();
    await (await tarKv(file, { writable: true })).close();
    t.is(await fileSha(file), before);
  });
});

test('GNU long names and long link targets (L and K members)', async (t) => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(src);
    const longName = 'L'.repeat(200);
    await writeFile(join(src, longName), 'long name');
    await symlink('K'.repeat(200), join(src, 'klink'));
    await writeFile(join(src, 'after'), 'after');
    const file = join(dir, 'gnu-long.tar');
    execFileSync('tar', ['--format=gnu', '-cf', file, '-C', src, longName, 'klink', 'after']);
    t.deepEqual(tarList(file), [longName, 'klink', 'after']);
    const kv = await tarKv(file);
    t.deepEqual(await keys(kv), [`/${longName}`, '/after']);
    t.is((await kv.get(`/${longName}`)).toString(), 'long name');
    t.is((await kv.get('/after')).toString(), 'after');
    await kv.close();
  });
});

test('hand-made numeric forms GNU tar accepts: base-256 size, space-terminated octal, pax size/mtime/path overrides', async (t) => {
  await withDir(async (dir) => {
    const { src } = await threeFiles(dir);
    const file = join(dir, 'crafted.tar');
    execFileSync('tar', ['--format=ustar', '--mtime=2001-02-03 04:05:06 UTC', '-cf', file, '-C', src, 'a', 'c']);
    const archive = await readFile(file);
    const [aAt, cAt] = headerOffsets(file) as [number, number];
    // a: the size in positive base-256, the mode and mtime octal terminated by spaces, not NULs.
    const aSize = 'first member\n'.length;
    archive.fill(0, aAt + 124, aAt + 136);
    archive[aAt + 124] = 0x80;
    archive[aAt + 135] = aSize;
    archive.write(' 000644 ', aAt + 100, 'latin1');
    archive.write(' 7236701562 ', aAt + 136, 'latin1');
    fixChecksum(archive, aAt);
    // c: a pax header in front overriding its path, size and mtime; the ustar fields say otherwise.
    const records = ['path=renamed/by pax', 'size=10', 'mtime=-86400.25'].map((r) => {
      const body = ` ${r}\n`;
      let n = body.length + 1;
      while (String(n).length + body.length !== n) n = String(n).length + body.length;
      return `${n}${body}`;
    });
    const paxData = Buffer.from(records.join(''), 'utf8');
    const paxHeader = Buffer.from(archive.subarray(cAt, cAt + 512));
    paxHeader.fill(0, 0, 100);
    paxHeader.write('PaxHeaders/c', 0, 'latin1');
    paxHeader.write(`${paxData.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
    paxHeader.write('x', 156, 'latin1');
    fixChecksum(paxHeader, 0);
    const cHeader = Buffer.from(archive.subarray(cAt, cAt + 512));
    cHeader.write(`${(999).toString(8).padStart(11, '0')}\0`, 124, 'latin1'); // overridden: 10
    fixChecksum(cHeader, 0);
    const cData = Buffer.alloc(512);
    Buffer.from('0123456789').copy(cData);
    const crafted = Buffer.concat([
      archive.subarray(0, cAt),
      paxHeader,
      paxData,
      Buffer.alloc((512 - (paxData.length % 512)) % 512),
      cHeader,
      cData,
      Buffer.alloc(1024),
    ]);
    await writeFile(file, crafted);
    // GNU tar is the judge of what these bytes mean.
    const listing = execFileSync('tar', ['--utc', '-tvf', file], { encoding: 'utf8' }).trim().split('\n');
    t.is(listing.length, 2);
    t.regex(listing[0]!, / 13 2001-02-03 04:05 a$/);
    t.regex(listing[1]!, / 10 1969-12-3\d \d\d:\d\d renamed\/by pax$/);
    const out = join(dir, 'out');
    await mkdir(out);
    execFileSync('tar', ['-xf', file, '-C', out]);

    const kv = await tarKv(file);
    t.deepEqual(await keys(kv), ['/a', '/renamed']);
    t.is(sha256(await kv.get('/a')), await fileSha(join(out, 'a')));
    t.is(sha256(await kv.get('/renamed/by pax')), await fileSha(join(out, 'renamed', 'by pax')));
    t.is((await kv.get('/renamed/by pax')).toString(), '0123456789');
    t.is((await stat(join(out, 'renamed', 'by pax'))).mtimeMs, -86400250, 'GNU tar applied the fractional pax mtime');
    t.is((await kv.lastModified('/renamed/by pax')).getTime(), -86400250);
    t.is((await kv.lastModified('/a')).toISOString(), '2001-02-03T04:05:06.000Z');
    await kv.close();
  });
});

test('a bad checksum in the middle: a read-only open refuses or says where it stopped; a writable open refuses and changes nothing', async (t) => {
  await withDir(async (dir) => {
    const { src } = await threeFiles(dir);
    const file = join(dir, 'bad.tar');
    execFileSync('tar', ['--format=gnu', '-cf', file, '-C', src, 'a', 'b', 'c']);
    const bAt = headerOffsets(file)[1]!;
    const archive = await readFile(file);
    archive[bAt] = 'B'.charCodeAt(0); // the name changes, the checksum does not
    await writeFile(file, archive);
    const gnu = spawnSync('tar', ['-tf', file], { encoding: 'utf8' });
    t.not(gnu.status, 0, 'GNU tar complains too');
    t.regex(gnu.stderr, /Skipping to next header/);
    const before = await fileSha(file);

    const refused = await t.throwsAsync(tarKv(file), { code: 'ERR_KV_CORRUPT' });
    t.is((refused as { offset?: number }).offset, bAt);
    t.true(refused!.message.includes(String(bAt)), refused!.message);

    const partial = await tarKv(file, { allowIncomplete: true });
    t.deepEqual(await keys(partial), ['/a']);
    t.is(partial.incomplete?.offset, bAt);
    t.regex(partial.incomplete?.reason ?? '', /checksum/);
    await partial.close();

    const rw = await t.throwsAsync(tarKv(file, { writable: true }), { code: 'ERR_KV_CORRUPT' });
    t.is((rw as { offset?: number }).offset, bAt);
    t.is(await fileSha(file), before, 'nothing was cut off or rewritten');
    await t.throwsAsync(tarKv(file, { writable: true, allowIncomplete: true }), { code: 'ERR_INVALID_ARG_VALUE' });
  });
});

test('a truncated member or a second archive after the end marker: a writable open refuses and changes nothing', async (t) => {
  await withDir(async (dir) => {
    const { src } = await threeFiles(dir);
    const one = join(dir, 'one.tar');
    execFileSync('tar', ['--format=gnu', '-cf', one, '-C', src, 'a', 'b']);
    const two = join(dir, 'two.tar');
    execFileSync('tar', ['--format=gnu', '-cf', two, '-C', src, 'c']);
    const archive = await readFile(one);

    const truncated = join(dir, 'truncated.tar');
    const bAt = headerOffsets(one)[1]!;
    await writeFile(truncated, archive.subarray(0, bAt + 512 + 1000)); // b's header and part of its data
    const before = await fileSha(truncated);
    const e = await t.throwsAsync(tarKv(truncated, { writable: true }), { code: 'ERR_KV_CORRUPT' });
    t.is((e as { offset?: number }).offset, bAt);
    t.is(await fileSha(truncated), before);
    const ro = await tarKv(truncated, { allowIncomplete: true });
    t.deepEqual(await keys(ro), ['/a']);
    t.is(ro.incomplete?.offset, bAt);
    await ro.close();

    const concatenated = join(dir, 'concatenated.tar');
    await writeFile(concatenated, Buffer.concat([archive, await readFile(two)]));
    t.deepEqual(execFileSync('tar', ['-itf', concatenated], { encoding: 'utf8' }).trim().split('\n'), ['a', 'b', 'c']);
    const cBefore = await fileSha(concatenated);
    const c = await t.throwsAsync(tarKv(concatenated, { writable: true }), { code: 'ERR_KV_CORRUPT' });
    t.is((c as { offset?: number }).offset, archive.length);
    t.is(await fileSha(concatenated), cBefore);
    await t.throwsAsync(tarKv(concatenated), { code: 'ERR_KV_CORRUPT' });
  });
});

test('what Morgana appends to and compacts from a GNU archive lists whole with tar and extracts byte-identical', async (t) => {
  await withDir(async (dir) => {
    const { src, contents } = await threeFiles(dir);
    await symlink('a', join(src, 'link-to-a'));
    const file = join(dir, 'store.tar');
    execFileSync('tar', ['--format=gnu', '-cf', file, '-C', src, 'a', 'b', 'link-to-a', 'c']);
    const kv = await tarKv(file, { writable: true, autoCompact: false });
    const added = Buffer.alloc(70_000);
    for (let i = 0; i < added.length; i++) added[i] = (i * 31) & 0xff;
    await kv.set('/added/value', added);
    await kv.set('/a', 'replaced');
    await kv.remove('/c');
    const expected: Record<string, string> = { a: sha256('replaced'), b: sha256(contents.b!), 'added/value': sha256(added) };
    const check = async (what: string): Promise<void> => {
      const listing = execFileSync('tar', ['--utc', '-tvf', file], { encoding: 'utf8' });
      t.regex(listing, / 1960-01-02 03:04 b\n/, `${what}: b keeps its pre-1970 date`);
      t.regex(listing, /link-to-a -> a\n/, `${what}: the link is kept`);
      const out = join(dir, `out-${what}`);
      await mkdir(out);
      execFileSync('tar', ['-xf', file, '-C', out]);
      for (const [name, digest] of Object.entries(expected)) t.is(await fileSha(join(out, name)), digest, `${what}: ${name}`);
      const reread = await tarKv(file);
      t.deepEqual(await keys(reread), ['/a', '/added', '/b']);
      for (const [name, digest] of Object.entries(expected)) t.is(sha256(await reread.get(`/${name}`)), digest);
      await reread.close();
    };
    await check('appended');
    await kv.compact();
    await check('compacted');
    t.false(tarList(file).includes('c'));
    await kv.close();
  });
});

test('no single corrupted byte makes a writable open change the archive, except in its end marker', async (t) => {
  await withDir(async (dir) => {
    const file = join(dir, 'store.tar');
    const kv = await tarKv(file, { writable: true });
    await kv.set('/a', 'alpha');
    await kv.set(`/long/${'n'.repeat(150)}`, Buffer.alloc(700, 1)); // a pax header
    await kv.remove('/a'); // a tombstone
    await kv.set('/z', 'last');
    await kv.close();
    const pristine = await readFile(file);
    const endMarker = pristine.length - 1024;
    let refused = 0;
    let opened = 0;
    // Every header byte and a sample of data bytes, each flipped in its turn.
    for (let at = 0; at < pristine.length; at += at % 512 < 160 || at >= endMarker ? 1 : 37) {
      const damaged = Buffer.from(pristine);
      damaged[at] ^= 0x5a;
      await writeFile(file, damaged);
      try {
        await (await tarKv(file, { writable: true })).close();
        opened++;
      } catch (e) {
        t.true(['ERR_KV_CORRUPT', 'ERR_KV_INVALID_KEY'].includes((e as { code: string }).code), `byte ${at}: ${(e as Error).message}`);
        refused++;
      }
      const after = await readFile(file);
      if (at < endMarker) t.true(after.equals(damaged), `byte ${at} changed the archive`);
      else t.true(after.subarray(0, endMarker).equals(pristine.subarray(0, endMarker)), `byte ${at} changed a member`);
    }
    t.log(`${refused} damaged archives refused, ${opened} opened; no member changed`);
    t.true(refused > 100 && opened > 100, `${refused} refused, ${opened} opened`);
  });
});

test('an archive ending right after its last member (no padding, no end marker) is read whole and completed', async (t) => {
  await withDir(async (dir) => {
    const { src } = await threeFiles(dir);
    const file = join(dir, 'short.tar');
    execFileSync('tar', ['--format=ustar', '-cf', file, '-C', src, 'a', 'c']);
    const cAt = headerOffsets(file)[1]!;
    const cut = (await readFile(file)).subarray(0, cAt + 512 + 'the member after the old one\n'.length);
    await writeFile(file, cut);
    const kv = await tarKv(file, { writable: true });
    t.deepEqual(await keys(kv), ['/a', '/c']);
    await kv.set('/d', 'added');
    await kv.close();
    const whole = await readFile(file);
    t.true(whole.subarray(0, cut.length).equals(cut), 'what was there is untouched');
    t.deepEqual(tarList(file), ['a', 'c', 'd']);
  });
});

test('compaction drops a foreign member only when a write took its name', async (t) => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'f'), 'f');
    await symlink('f', join(src, 'd', 'kept'));
    await symlink('f', join(src, 'replaced'));
    await symlink('f', join(src, 'under'));
    const file = join(dir, 'links.tar');
    execFileSync('tar', ['--format=gnu', '-cf', file, '-C', src, 'd', 'replaced', 'under']);
    const kv = await tarKv(file, { writable: true, autoCompact: false });
    await kv.set('/replaced', 'now a value');
    await kv.set('/under/x', 'a value below the link\'s name');
    await kv.compact();
    await kv.close();
    const listing = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
    t.regex(listing, /d\/kept -> f\n/);
    t.notRegex(listing, /replaced -> f/);
    t.notRegex(listing, /under -> f/);
    const out = join(dir, 'out');
    await mkdir(out);
    execFileSync('tar', ['-xf', file, '-C', out]);
    t.is(await readFile(join(out, 'replaced'), 'utf8'), 'now a value');
    t.is(await readFile(join(out, 'd', 'kept'), 'utf8'), 'f');
  });
});

test('a large member the store does not hold (a GNU sparse file) survives automatic compaction, which it does not trigger', async (t) => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(src);
    const sparse = join(src, 'sparse');
    const head = Buffer.alloc(2 << 20);
    for (let i = 0; i < head.length; i += 4) head.writeUInt32LE((i * 2654435761) >>> 0, i);
    const fh = await open(sparse, 'w');
    await fh.write(head, 0, head.length, 0);
    await fh.write(Buffer.from('end'), 0, 3, (3 << 20) + 7); // a hole in between
    await fh.close();
    const sparseSha = await fileSha(sparse);
    const file = join(dir, 'sparse.tar');
    execFileSync('tar', ['--format=gnu', '--sparse', '-cf', file, '-C', src, 'sparse']);
    const archive = await readFile(file);
    t.is(String.fromCharCode(archive[156]!), 'S', 'GNU tar wrote a sparse member');
    const kv = await tarKv(file, { writable: true });
    t.deepEqual(await keys(kv), []);
    let compactions = 0;
    let inode = (await stat(file)).ino; // compaction renames a new file over the archive
    const value = Buffer.alloc(100_000, 9);
    for (let i = 0; i < 40; i++) {
      await kv.set('/v', value);
      const now = (await stat(file)).ino;
      if (now !== inode) compactions++;
      inode = now;
    }
    t.true(compactions >= 1 && compactions <= 2, `${compactions} compactions in 40 writes`);
    await kv.close();
    const out = join(dir, 'out');
    await mkdir(out);
    execFileSync('tar', ['-xf', file, '-C', out]);
    t.is(await fileSha(join(out, 'sparse')), sparseSha, 'the sparse file extracts byte-identical');
    t.is(await fileSha(join(out, 'v')), sha256(value));
  });
});

test('every archive format GNU tar writes is read as GNU tar extracts it: contents and times', async (t) => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    const files: Record<string, Buffer> = {
      plain: Buffer.from('plain'),
      empty: Buffer.alloc(0),
      'sub/block-sized': Buffer.alloc(512, 0x41),
      'sub/odd': Buffer.alloc(1001, 0x42),
    };
    for (const [name, data] of Object.entries(files)) await writeFile(join(src, name), data);
    const dates: Record<string, string> = { plain: '1969-07-20 20:17:40 UTC', empty: '2038-01-19 03:14:08 UTC', 'sub/odd': '1901-01-01 00:00:00 UTC' };
    const formats: Array<[string, string[]]> = [
      ['gnu', ['--owner=big:3000000']], // a uid beyond 7 octal digits: base-256
      ['oldgnu', []],
      ['pax', []],
      ['posix', []],
      ['ustar', []],
      ['v7', []],
    ];
    for (const [format, extra] of formats) {
      const preEpoch = format !== 'ustar' && format !== 'v7'; // these cannot hold a negative time
      for (const [name, when] of Object.entries(dates)) {
        execFileSync('touch', ['-h', '-d', preEpoch || !when.startsWith('19') ? when : '1970-01-02 00:00:00 UTC', join(src, name)]);
      }
      const file = join(dir, `${format}.tar`);
      execFileSync('tar', [`--format=${format}`, ...extra, '-cf', file, '-C', src, ...Object.keys(files)]);
      const out = join(dir, `out-${format}`);
      await mkdir(out);
      execFileSync('tar', ['-xf', file, '-C', out]);
      const kv = await tarKv(file);
      for (const name of Object.keys(files)) {
        const extracted = join(out, name);
        t.is(sha256(await kv.get(`/${name}`)), await fileSha(extracted), `${format}: ${name}`);
        t.is((await kv.lastModified(`/${name}`)).getTime(), (await stat(extracted)).mtime.getTime(), `${format}: ${name} mtime`);
      }
      await kv.close();
    }
  });
});

test('a directory header with a size (as some writers put the stat size) has no data after it, as GNU tar reads it', async (t) => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'f'), 'inside');
    const file = join(dir, 'dirsize.tar');
    execFileSync('tar', ['--format=ustar', '-cf', file, '-C', src, 'd']);
    const archive = await readFile(file);
    const dAt = headerOffsets(file)[0]!;
    archive.write(`${(4096).toString(8).padStart(11, '0')}\0`, dAt + 124, 'latin1');
    fixChecksum(archive, dAt);
    await writeFile(file, archive);
    t.deepEqual(tarList(file), ['d/', 'd/f']);
    const kv = await tarKv(file);
    t.is((await kv.get('/d/f')).toString(), 'inside');
    await kv.close();
  });
});
