/**
 * The key-value conformance suites against every backend: memory, directory and writable tar
 * (read-write), and a GNU tar archive and a crunched module (read-only).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { type CrunchKv, crunchDirectory, dirKv, memKv, tarKv } from 'morgana';
import { kvRoConformance, kvRwConformance, writeFixture } from './helpers/kv-conformance.js';

const temps: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'morgana-kv-'));
  temps.push(d);
  return d;
}
test.after.always(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

kvRwConformance(test, {
  name: 'memKv',
  async open() {
    return { kv: await memKv(), cleanup: async () => undefined };
  },
});

kvRwConformance(test, {
  name: 'dirKv',
  durable: true,
  async open() {
    const dir = await tempDir();
    const path = join(dir, 'store');
    return {
      kv: await dirKv(path),
      reopen: () => dirKv(path, { create: false }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
});

kvRwConformance(test, {
  name: 'tarKv writable',
  durable: true,
  async open() {
    const dir = await tempDir();
    const file = join(dir, 'store.tar');
    return {
      kv: await tarKv(file, { writable: true }),
      reopen: () => tarKv(file, { writable: true, create: false }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
});

/** A 100 MiB file for the read-only tar suite. */
function bigValue(): Buffer {
  const size = 100 * 1024 * 1024;
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) big.writeUInt32LE(i ^ 0x5a5a5a5a, i);
  return big;
}

let gnuTar: Promise<string> | undefined;
/** The fixture archived by GNU tar in pax format (long names in pax headers). */
function gnuTarArchive(extra: Array<[string, Buffer]>): Promise<string> {
  gnuTar ??= (async () => {
    const dir = await tempDir();
    await writeFixture(join(dir, 'tree'), extra);
    const file = join(dir, 'fixture.tar');
    execFileSync('tar', ['--format=pax', '-cf', file, '-C', join(dir, 'tree'), '.']);
    await rm(join(dir, 'tree'), { recursive: true });
    return file;
  })();
  return gnuTar;
}

const tarExtra: Array<[string, Buffer]> = [['/big', bigValue()]];
kvRoConformance(test, {
  name: 'tarKv read-only (GNU tar archive)',
  extra: tarExtra,
  async open() {
    const kv = await tarKv(await gnuTarArchive(tarExtra));
    return { kv, cleanup: () => kv.close() };
  },
});

test('tarKv read-only: partial reads of the 100 MiB member read only that range', async (t) => {
  const kv = await tarKv(await gnuTarArchive(tarExtra));
  const big = tarExtra[0]![1];
  const at = 77 * 1024 * 1024 + 3;
  t.deepEqual(await kv.getPartial('/big', at, 4096), big.subarray(at, at + 4096));
  t.deepEqual(await kv.getPartial('/big', big.length - 10, 4096), big.subarray(big.length - 10));
  await kv.close();
});

let crunched: Promise<CrunchKv> | undefined;
/** The fixture crunched into a module (importing this package by its file URL) and imported. */
function crunchedModule(): Promise<CrunchKv> {
  crunched ??= (async () => {
    const dir = await tempDir();
    await writeFixture(join(dir, 'tree'));
    const { source } = await crunchDirectory(join(dir, 'tree'), { importFrom: import.meta.resolve('morgana') });
    const file = join(dir, 'fixture.ts');
    await writeFile(file, source);
    const mod = (await import(pathToFileURL(file).href)) as { kv: CrunchKv; default: CrunchKv };
    return mod.kv;
  })();
  return crunched;
}

kvRoConformance(test, {
  name: 'crunch',
  extra: [],
  async open() {
    return { kv: await crunchedModule(), cleanup: async () => undefined };
  },
});
