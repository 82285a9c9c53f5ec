// Self-checking values for the crash test: a header naming the key and generation, then bytes
// derived from both, so a torn or mixed value is detected.
import { createHash } from 'node:crypto';

export const SINGLE_KEYS = ['/s/0', '/s/1', '/s/2', '/deep/a/b/c/s3'];
export const BATCH_KEYS = ['/b/0', '/b/1', '/b/2', '/b/3', '/b/4'];
export const RECORD = 4096;
export const RECORDS = 16;

function fill(seed, length) {
  const out = Buffer.alloc(length);
  let block = createHash('sha256').update(seed).digest();
  for (let at = 0; at < length; at += 32) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** The value of `key` at generation `gen`: 1 KiB to 192 KiB. */
export function valueFor(key, gen) {
  const length = 1024 + ((gen * 7919) % (191 * 1024));
  const head = Buffer.from(`${key}|${gen}|${length}|`);
  return Buffer.concat([head, fill(`${key}|${gen}`, length)]);
}

/** Parses and checks a value: its generation, or throws if it is not exactly valueFor(key, gen). */
export function checkValue(key, data) {
  const text = data.subarray(0, 200).toString('latin1');
  const [k, g] = text.split('|');
  const gen = Number(g);
  if (k !== key || !Number.isInteger(gen)) throw new Error(`${key}: bad header ${JSON.stringify(text.slice(0, 40))}`);
  if (!valueFor(key, gen).equals(data)) throw new Error(`${key}: torn value for generation ${gen} (${data.length} bytes)`);
  return gen;
}

/** One RECORD-byte record of /partial. */
export function recordFor(r, gen) {
  const head = Buffer.from(`${r}|${gen}|`);
  return Buffer.concat([head, fill(`rec${r}|${gen}`, RECORD - head.length)]);
}

/** Checks every whole record of /partial; returns their generations (undefined past the end). */
export function checkPartial(data) {
  const gens = [];
  for (let r = 0; r < RECORDS; r++) {
    const rec = data.subarray(r * RECORD, (r + 1) * RECORD);
    if (rec.length === 0) {
      gens.push(undefined);
      continue;
    }
    const [ri, g] = rec.subarray(0, 40).toString('latin1').split('|');
    const gen = Number(g);
    if (Number(ri) !== r || !recordFor(r, gen).equals(rec)) throw new Error(`/partial record ${r} is torn`);
    gens.push(gen);
  }
  return gens;
}
