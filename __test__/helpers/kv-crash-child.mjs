// Child of __test__/kv-crash.spec.ts: writes to a store in a loop until it is killed.
// argv: <path> <first generation> [dir|tar]: a dirKv directory (default) or a writable tarKv
// archive. Prints "ready", then "ack <key> <gen>" after each write resolves.
import { dirKv, tarKv } from 'morgana';
import { valueFor, recordFor, RECORD, RECORDS, SINGLE_KEYS, BATCH_KEYS } from './kv-crash-values.mjs';

const [dir, first, kind = 'dir'] = process.argv.slice(2);
let gen = Number(first);
const kv = kind === 'tar' ? await tarKv(dir, { writable: true, create: false }) : await dirKv(dir);
process.stdout.write('ready\n');
let rng = gen % 2147483647 || 1;
const rand = (n) => {
  rng = (rng * 48271) % 2147483647;
  return rng % n;
};
for (;;) {
  gen++;
  const op = rand(10);
  if (op < 4) {
    const key = SINGLE_KEYS[rand(SINGLE_KEYS.length)];
    await kv.set(key, valueFor(key, gen));
    process.stdout.write(`ack ${key} ${gen}\n`);
  } else if (op < 7) {
    await kv.batch(async (tx) => {
      for (const key of BATCH_KEYS) await tx.set(key, valueFor(key, gen));
      await tx.remove('/bdir');
      await tx.set(`/bdir/m${gen % 5}`, valueFor('/bdir', gen));
    });
    process.stdout.write(`ack batch ${gen}\n`);
  } else if (op < 9) {
    const r = rand(RECORDS);
    await kv.setPartial('/partial', r * RECORD, recordFor(r, gen));
    process.stdout.write(`ack /partial#${r} ${gen}\n`);
  } else {
    await kv.set('/rn/src', valueFor('/rn', gen));
    await kv.rename('/rn/src', '/rn/dst');
    process.stdout.write(`ack /rn/dst ${gen}\n`);
  }
}
