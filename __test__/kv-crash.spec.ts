/**
 * Crash safety of dirKv and of a writable tarKv: a child process writes (single sets, batches,
 * partial writes, renames) in a loop and is killed with SIGKILL at random moments, many times.
 * After each kill the store is reopened (which recovers) and checked: every value is whole, one
 * generation's, never torn; every batch is all or nothing; every write the child saw acknowledged
 * is there (or a newer one).
 */
import { spawn } from 'node:child_process';
import { readdir, rm, stat, truncate, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { dirKv, type KvRw, tarKv } from 'morgana';
import * as v from './helpers/kv-crash-values.mjs';

const child = fileURLToPath(new URL('./helpers/kv-crash-child.mjs', import.meta.url));

/** Checks the store; returns the generation of every key (batch as 'batch', records as '/partial#r'). */
async function check(kv: KvRw): Promise<Map<string, number>> {
  const gens = new Map<string, number>();
  for (const key of v.SINGLE_KEYS) {
    if ((await kv.exists(key)) === 'value') gens.set(key, v.checkValue(key, await kv.get(key)));
  }
  const batch = await Promise.all(v.BATCH_KEYS.map(async (k) => v.checkValue(k, await kv.get(k))));
  if (new Set(batch).size !== 1) throw new Error(`a batch was applied in part: generations ${batch.join(', ')}`);
  const bdir = await kv.list('/bdir');
  if (bdir.length !== 1) throw new Error(`/bdir holds ${bdir.length} entries`);
  const marker = v.checkValue('/bdir', await kv.get(bdir[0]![0]));
  if (marker !== batch[0] || bdir[0]![0].basename !== `m${marker % 5}`) throw new Error('/bdir does not match its batch');
  gens.set('batch', batch[0]!);
  const records = v.checkPartial(await kv.get('/partial'));
  if (records.length !== v.RECORDS || records.includes(undefined)) throw new Error('/partial lost records');
  records.forEach((g, r) => gens.set(`/partial#${r}`, g!));
  for (const k of ['/rn/src', '/rn/dst']) if ((await kv.exists(k)) === 'value') v.checkValue('/rn', await kv.get(k));
  if ((await kv.exists('/rn/dst')) === 'value') gens.set('/rn/dst', v.checkValue('/rn', await kv.get('/rn/dst')));
  return gens;
}

async function seed(dir: string, kind: 'dir' | 'tar' = 'dir'): Promise<void> {
  const kv = kind === 'tar' ? await tarKv(dir, { writable: true }) : await dirKv(dir);
  await kv.set('/partial', Buffer.concat(Array.from({ length: v.RECORDS }, (_, r) => v.recordFor(r, 0))));
  await kv.batch(async (tx) => {
    for (const k of v.BATCH_KEYS) await tx.set(k, v.valueFor(k, 0));
    await tx.set('/bdir/m0', v.valueFor('/bdir', 0));
  });
  await kv.close();
}

function runChild(dir: string, first: number, killAfterMs: number, kind: 'dir' | 'tar' = 'dir'): Promise<{ acks: Array<[string, number]> }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, dir, String(first), kind], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // The kill comes at a random moment after the first acknowledged write, so every child makes
      // progress however loaded the machine is.
      if (timer === undefined && out.includes('\nack ')) timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    });
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited with ${code}: ${err}`));
      const acks = out
        .split('\n')
        .filter((l) => l.startsWith('ack '))
        .map((l): [string, number] => {
          const [, key, gen] = l.split(' ');
          return [key!, Number(gen)];
        });
      resolve({ acks });
    });
  });
}

test('the checker detects torn values and partial batches', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'morgana-kv-crash-'));
  try {
    await seed(dir);
    let kv = await dirKv(dir);
    await check(kv);
    await kv.set('/b/2', v.valueFor('/b/2', 5));
    await t.throwsAsync(check(kv), { message: /applied in part/ });
    await kv.set('/b/2', v.valueFor('/b/2', 0));
    await kv.set('/s/1', v.valueFor('/s/1', 9));
    await kv.close();
    await truncate(join(dir, 's', '1'), 3000);
    kv = await dirKv(dir);
    await t.throwsAsync(check(kv), { message: /torn/ });
    await kv.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// Serial: two crash loops at once starve each other's children on a loaded machine.
test.serial('dirKv survives SIGKILL at random moments', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'morgana-kv-crash-'));
  const budgetMs = 15_000;
  const started = Date.now();
  const acked = new Map<string, number>();
  let kills = 0;
  let totalAcks = 0;
  let interruptedSets = 0;
  let interruptedBatches = 0;
  let rng = 12345;
  try {
    await seed(dir);
    while (kills < 12 || (Date.now() - started < budgetMs && kills < 60)) {
      rng = (rng * 48271) % 2147483647;
      const { acks } = await runChild(dir, (kills + 1) * 1_000_000, 10 + (rng % 250));
      kills++;
      totalAcks += acks.length;
      for (const [key, gen] of acks) {
        const k = key === 'batch' ? 'batch' : key;
        acked.set(k, Math.max(acked.get(k) ?? -1, gen));
      }
      // What the kill left behind, before recovery.
      if ((await readdir(join(dir, '.morgana-kv', 'tmp'))).length > 0) interruptedSets++;
      if ((await readdir(join(dir, '.morgana-kv', 'tx'))).length > 0) interruptedBatches++;
      const kv = await dirKv(dir);
      try {
        const gens = await check(kv);
        for (const [key, gen] of acked) {
          const now = gens.get(key);
          if (now === undefined || now < gen) throw new Error(`${key}: acknowledged generation ${gen} lost (now ${now})`);
        }
        t.deepEqual(await readdir(join(dir, '.morgana-kv', 'tx')), [], 'recovery leaves no journal');
        t.deepEqual(await readdir(join(dir, '.morgana-kv', 'tmp')), [], 'recovery leaves no temporary file');
      } finally {
        await kv.close();
      }
    }
    t.log(`${kills} kills in ${Date.now() - started} ms, ${totalAcks} acknowledged writes; killed mid-set ${interruptedSets}×, mid-batch ${interruptedBatches}×`);
    t.true(interruptedSets + interruptedBatches > 0, 'some kills landed in the middle of a write');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('a writable tarKv survives SIGKILL at random moments, and reopens writable every time', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'morgana-kv-crash-tar-'));
  const file = join(dir, 'store.tar');
  const budgetMs = 15_000;
  const started = Date.now();
  const acked = new Map<string, number>();
  let kills = 0;
  let totalAcks = 0;
  let cutTails = 0;
  let rng = 54321;
  try {
    await seed(file, 'tar');
    while (kills < 12 || (Date.now() - started < budgetMs && kills < 60)) {
      rng = (rng * 48271) % 2147483647;
      const { acks } = await runChild(file, (kills + 1) * 1_000_000, 10 + (rng % 250), 'tar');
      kills++;
      totalAcks += acks.length;
      for (const [key, gen] of acks) acked.set(key, Math.max(acked.get(key) ?? -1, gen));
      const before = (await stat(file)).size;
      // A writable open must never refuse what a killed writer left: it cuts an unfinished append.
      const kv = await tarKv(file, { writable: true, create: false });
      try {
        if ((await stat(file)).size < before) cutTails++;
        const gens = await check(kv);
        for (const [key, gen] of acked) {
          const now = gens.get(key);
          if (now === undefined || now < gen) throw new Error(`${key}: acknowledged generation ${gen} lost (now ${now})`);
        }
      } finally {
        await kv.close();
      }
    }
    t.log(`${kills} kills in ${Date.now() - started} ms, ${totalAcks} acknowledged writes; ${cutTails} unfinished appends cut off`);
    t.true(acked.size > 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
