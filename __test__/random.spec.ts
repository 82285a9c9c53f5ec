import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  BufferedRandom,
  Fortuna,
  type FortunaMode,
  MorganaError,
  defaultFortuna,
  defaultRandom,
  entropySources,
  seededRandom,
} from 'morgana';

// ---------------------------------------------------------------------------------------------
// An independent model of Fortuna built on Node's crypto (AES-256-ECB over counter blocks, and
// SHA-256), written from the specification in issue 3, not from the implementation.

const SPEC = {
  book: { zeroPrefix: true, littleEndian: true, chunk: 1 << 20 },
  mirage: { zeroPrefix: false, littleEndian: false, chunk: 1 << 16 },
} as const;

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest();

function shaD(mode: FortunaMode, ...parts: Uint8Array[]): Buffer {
  const prefix = SPEC[mode].zeroPrefix ? [Buffer.alloc(64)] : [];
  return sha256(sha256(Buffer.concat([...prefix, ...parts])));
}

function counterBlocks(mode: FortunaMode, first: bigint, count: number): Buffer {
  const out = Buffer.alloc(count * 16);
  const mask = (1n << 64n) - 1n;
  for (let i = 0; i < count; i++) {
    const c = (first + BigInt(i)) & ((1n << 128n) - 1n);
    if (SPEC[mode].littleEndian) {
      out.writeBigUInt64LE(c & mask, i * 16);
      out.writeBigUInt64LE(c >> 64n, i * 16 + 8);
    } else {
      out.writeBigUInt64BE(c >> 64n, i * 16);
      out.writeBigUInt64BE(c & mask, i * 16 + 8);
    }
  }
  return out;
}

class ModelFortuna {
  key: Buffer = Buffer.alloc(32);
  counter = 0n;
  reseeds = 0;
  lastReseedMs = 0;
  /** Framed events per pool, and data bytes per pool. */
  pools: Buffer[] = Array.from({ length: 32 }, () => Buffer.alloc(0));
  dataBytes: number[] = new Array(32).fill(0);

  constructor(readonly mode: FortunaMode) {}

  reseed(seed: Uint8Array): void {
    this.key = shaD(this.mode, this.key, seed);
    this.counter += 1n;
  }

  addEvent(source: number, pool: number, data: Uint8Array): void {
    this.pools[pool] = Buffer.concat([this.pools[pool]!, Buffer.from([source, data.length & 0xff]), data]);
    this.dataBytes[pool]! += data.length;
  }

  /** The reseed-from-pools rule, checked before every request. */
  maybeReseed(nowMs: number): boolean {
    const book = this.mode === 'book';
    const size = book ? this.pools[0]!.length : this.dataBytes[0]!;
    const elapsed = nowMs - this.lastReseedMs;
    const due = book ? size >= 64 && elapsed >= 100 : size > 64 && elapsed > 1000;
    if (!due) return false;
    this.reseeds++;
    this.lastReseedMs = nowMs;
    const parts: Buffer[] = [];
    for (let i = 0; i < 32; i++) {
      if (this.reseeds % 2 ** i !== 0) continue;
      parts.push(shaD(this.mode, this.pools[i]!));
      this.pools[i] = Buffer.alloc(0);
      this.dataBytes[i] = 0;
    }
    this.reseed(Buffer.concat(parts));
    return true;
  }

  #keystream(blocks: number): Buffer {
    const cipher = createCipheriv('aes-256-ecb', this.key, null);
    cipher.setAutoPadding(false);
    const out = Buffer.concat([cipher.update(counterBlocks(this.mode, this.counter, blocks)), cipher.final()]);
    this.counter += BigInt(blocks);
    return out;
  }

  generate(n: number, nowMs = 0): Buffer {
    this.maybeReseed(nowMs);
    if (this.counter === 0n) throw new Error('model unseeded');
    const pieces: Buffer[] = [];
    for (let done = 0; done < n; ) {
      const m = Math.min(SPEC[this.mode].chunk, n - done);
      const blocks = Math.ceil(m / 16);
      const stream = this.#keystream(blocks + 2);
      pieces.push(stream.subarray(0, m));
      this.key = Buffer.from(stream.subarray(blocks * 16, blocks * 16 + 32));
      done += m;
    }
    return Buffer.concat(pieces);
  }
}

const MODES: FortunaMode[] = ['book', 'mirage'];

/** A clock the test moves by hand. */
function manualClock(start = 0) {
  const clock = { ms: start, now: () => clock.ms };
  return clock;
}

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + seed * 17 + 5) & 0xff));

// ---------------------------------------------------------------------------------------------
// Known answers.

for (const mode of MODES) {
  test(`${mode}: reseed → generate sequences match AES-256-ECB over counter blocks`, (t) => {
    const fortuna = Fortuna.create({ mode, clock: manualClock() });
    const model = new ModelFortuna(mode);
    const seed = Buffer.from('Morgana known-answer seed');
    fortuna.reseed(seed);
    model.reseed(seed);
    for (const n of [1, 16, 1 << 20, (1 << 20) + 16, 0, 15, 17, 4096, 65_536, 65_537, 33]) {
      const got = fortuna.generate(n);
      t.is(got.length, n);
      t.true(got.equals(model.generate(n)), `request of ${n} bytes`);
    }
    // A second reseed mixes into the current key.
    const again = Buffer.from([1, 2, 3]);
    fortuna.reseed(again);
    model.reseed(again);
    t.true(fortuna.generate(100).equals(model.generate(100)));
    t.true(fortuna.generate(16).equals(model.generate(16)));
  });

  test(`${mode}: fill and uint32 are Fortuna requests too`, (t) => {
    const fortuna = Fortuna.create({ mode, seed: Buffer.from('fill'), clock: manualClock() });
    const model = new ModelFortuna(mode);
    model.reseed(Buffer.from('fill'));
    const target = new Uint8Array(40);
    t.is(fortuna.fill(target), target);
    t.deepEqual(Buffer.from(target), model.generate(40));
    // fill writes only inside the view it is given.
    const backing = Buffer.alloc(48, 0xee);
    fortuna.fill(backing.subarray(8, 40));
    t.true(backing.subarray(8, 40).equals(model.generate(32)));
    t.true(backing.subarray(0, 8).equals(Buffer.alloc(8, 0xee)));
    t.true(backing.subarray(40).equals(Buffer.alloc(8, 0xee)));
    t.is(fortuna.uint32(), model.generate(4).readUInt32LE(0));
  });
}

test('the two modes give different output for the same seed', (t) => {
  const a = Fortuna.create({ mode: 'book', seed: Buffer.from('same') }).generate(32);
  const b = Fortuna.create({ mode: 'mirage', seed: Buffer.from('same') }).generate(32);
  t.false(a.equals(b));
});

// ---------------------------------------------------------------------------------------------
// Pools and the reseed schedule.

for (const mode of MODES) {
  test(`${mode}: reseed r draws on pool i exactly when 2^i divides r`, (t) => {
    const clock = manualClock();
    const fortuna = Fortuna.create({ mode, clock, seed: Buffer.from('schedule') });
    const model = new ModelFortuna(mode);
    model.reseed(Buffer.from('schedule'));
    const add = (source: number, pool: number, data: Buffer) => {
      fortuna.addRandomEvent(source, pool, data);
      model.addEvent(source, pool, data);
    };
    for (let r = 1; r <= 34; r++) {
      for (let pool = 0; pool < 32; pool++) add(r & 0xff, pool, bytes(1 + ((r + pool) % 32), r * 32 + pool));
      for (let k = 0; k < 3; k++) add(200, 0, bytes(32, r + k));
      clock.ms += 1001;
      t.true(model.maybeReseed(clock.ms));
      const got = fortuna.generate(48);
      t.is(fortuna.reseedCount, r);
      t.true(got.equals(model.generate(48, clock.ms)), `output after reseed ${r}`);
      for (let i = 0; i < 32; i++) {
        const expected = mode === 'book' ? model.pools[i]!.length : model.dataBytes[i]!;
        t.is(fortuna.poolSize(i), expected, `pool ${i} after reseed ${r}`);
      }
    }
    // Pools 0..5 were emptied by reseed 32, pool 6 and up never.
    t.true(model.pools[6]!.length > 0);
  });
}

test('book: pool 0 needs 64 bytes (headers included) and 100 ms since the last reseed', (t) => {
  const clock = manualClock();
  const fortuna = Fortuna.create({ mode: 'book', clock, seed: Buffer.from('rule') });
  const model = new ModelFortuna('book');
  model.reseed(Buffer.from('rule'));
  const draw = () => t.true(fortuna.generate(16).equals(model.generate(16, clock.ms)));

  // 2 × (2 + 29) = 62 bytes: not enough, however long we wait.
  for (const data of [bytes(29, 1), bytes(29, 2)]) {
    fortuna.addRandomEvent(1, 0, data);
    model.addEvent(1, 0, data);
  }
  t.is(fortuna.poolSize(0), 62);
  clock.ms = 10_000;
  draw();
  t.is(fortuna.reseedCount, 0);
  // A 1-byte event appends 3 more: 65, enough (the first reseed only waits 100 ms from time 0).
  fortuna.addRandomEvent(1, 0, bytes(1, 3));
  model.addEvent(1, 0, bytes(1, 3));
  t.is(fortuna.poolSize(0), 65);
  draw();
  t.is(fortuna.reseedCount, 1);
  t.is(fortuna.poolSize(0), 0);

  // 64 bytes again, but only 99 ms later: no; at exactly 100 ms: yes.
  for (const data of [bytes(30, 4), bytes(30, 5)]) {
    fortuna.addRandomEvent(2, 0, data);
    model.addEvent(2, 0, data);
  }
  t.is(fortuna.poolSize(0), 64);
  clock.ms += 99;
  draw();
  t.is(fortuna.reseedCount, 1);
  clock.ms += 1;
  draw();
  t.is(fortuna.reseedCount, 2);
});

test('mirage: pool 0 needs more than 64 data bytes and more than 1 s', (t) => {
  const clock = manualClock();
  const fortuna = Fortuna.create({ mode: 'mirage', clock, seed: Buffer.from('rule') });
  const model = new ModelFortuna('mirage');
  model.reseed(Buffer.from('rule'));
  const draw = () => t.true(fortuna.generate(16).equals(model.generate(16, clock.ms)));
  const add = (data: Buffer) => {
    fortuna.addRandomEvent(4, 0, data);
    model.addEvent(4, 0, data);
  };
  add(bytes(64, 1));
  t.is(fortuna.poolSize(0), 64, 'data bytes only');
  clock.ms = 5000;
  draw();
  t.is(fortuna.reseedCount, 0, '64 bytes is not more than 64');
  add(bytes(1, 2));
  clock.ms = 1000;
  draw();
  t.is(fortuna.reseedCount, 0, 'exactly 1 s is not more than 1 s');
  clock.ms = 1000.5;
  draw();
  t.is(fortuna.reseedCount, 1);
  add(bytes(200, 3)); // any length in mirage mode
  clock.ms = 2000.5;
  draw();
  t.is(fortuna.reseedCount, 1);
  clock.ms = 2001;
  draw();
  t.is(fortuna.reseedCount, 2);
});

test('pool events alone can seed a fresh generator', (t) => {
  const clock = manualClock(50);
  const fortuna = Fortuna.create({ clock });
  const model = new ModelFortuna('book');
  for (let i = 0; i < 3; i++) {
    fortuna.addRandomEvent(9, 0, bytes(32, i));
    model.addEvent(9, 0, bytes(32, i));
  }
  t.throws(() => fortuna.generate(8), { code: 'ERR_RNG_UNSEEDED' });
  t.false(fortuna.seeded);
  clock.ms = 100;
  t.true(fortuna.generate(8).equals(model.generate(8, 100)));
  t.true(fortuna.seeded);
});

// ---------------------------------------------------------------------------------------------
// Errors.

for (const mode of MODES) {
  test(`${mode}: every output call refuses before seeding`, (t) => {
    const fortuna = Fortuna.create({ mode });
    fortuna.addRandomEvent(0, 1, Buffer.from([1, 2, 3]));
    const calls: Array<() => unknown> = [
      () => fortuna.generate(16),
      () => fortuna.generate(0),
      () => fortuna.fill(new Uint8Array(8)),
      () => fortuna.uint32(),
      () => fortuna.int(6),
      () => new BufferedRandom(fortuna).uint32(),
    ];
    for (const call of calls) {
      const error = t.throws(call, { instanceOf: MorganaError });
      t.is(error?.code, 'ERR_RNG_UNSEEDED');
    }
    fortuna.reseed(new Uint8Array(0));
    t.is(fortuna.generate(16).length, 16, 'even an empty seed counts as seeding');
  });
}

test('book: events must be 1 to 32 bytes, pools 0 to 31, sources 0 to 255', (t) => {
  const fortuna = Fortuna.create({ mode: 'book' });
  const bad: Array<[number, number, Uint8Array]> = [
    [0, 0, new Uint8Array(0)],
    [0, 0, new Uint8Array(33)],
    [0, 32, new Uint8Array(4)],
    [0, -1, new Uint8Array(4)],
    [0, 1.5, new Uint8Array(4)],
    [256, 0, new Uint8Array(4)],
    [-1, 0, new Uint8Array(4)],
  ];
  for (const [source, pool, data] of bad) {
    t.throws(() => fortuna.addRandomEvent(source, pool, data), { code: 'ERR_RNG_BAD_EVENT' }, `${source} ${pool} ${data.length}`);
  }
  for (let i = 0; i < 32; i++) t.is(fortuna.poolSize(i), 0, 'rejected events leave the pools alone');
  t.throws(() => fortuna.addRandomEvent(0, 0, [1, 2] as unknown as Uint8Array), { code: 'ERR_INVALID_ARG_TYPE' });
  fortuna.addRandomEvent(255, 31, new Uint8Array(32));
  fortuna.addRandomEvent(0, 0, new Uint8Array(1));
  t.is(fortuna.poolSize(31), 34);
  t.is(fortuna.poolSize(0), 3);
});

test('mirage: any event length is accepted, pools still 0 to 31', (t) => {
  const fortuna = Fortuna.create({ mode: 'mirage' });
  fortuna.addRandomEvent(0, 0, new Uint8Array(0));
  fortuna.addRandomEvent(0, 0, new Uint8Array(33));
  fortuna.addRandomEvent(0, 0, new Uint8Array(300));
  t.is(fortuna.poolSize(0), 333);
  t.throws(() => fortuna.addRandomEvent(0, 32, new Uint8Array(1)), { code: 'ERR_RNG_BAD_EVENT' });
});

test('argument checks', (t) => {
  const fortuna = Fortuna.create({ seed: Buffer.from('args') });
  t.throws(() => fortuna.generate(-1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => fortuna.generate(1.5), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => fortuna.fill('abc' as unknown as Uint8Array), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => fortuna.reseed('abc' as unknown as Uint8Array), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => Fortuna.create({ mode: 'fast' as FortunaMode }), { code: 'ERR_INVALID_ARG_VALUE' });
  for (const below of [0, -3, 1.5, 2 ** 53 + 2, Number.NaN]) {
    t.throws(() => fortuna.int(below), { code: 'ERR_OUT_OF_RANGE' }, String(below));
  }
});

// ---------------------------------------------------------------------------------------------
// The random device.

test('seededRandom is the book Fortuna seeded once, drawn in 4 KiB chunks', (t) => {
  const model = new ModelFortuna('book');
  model.reseed(Buffer.from('simulation 7', 'utf8'));
  const chunk = model.generate(4096);
  const r = seededRandom('simulation 7');
  t.true(r.generate(16).equals(chunk.subarray(0, 16)));
  t.is(r.uint32(), chunk.readUInt32LE(16));
  t.true(r.fill(Buffer.alloc(5)).equals(chunk.subarray(20, 25)));
  // uint32 skips to the next whole word only at the end of a chunk, not mid-chunk.
  t.is(r.uint32(), chunk.readUInt32LE(25));
  // A request of a quarter chunk or more is one request of its own.
  t.true(r.generate(1024).equals(model.generate(1024)));
  t.true(r.generate(3).equals(chunk.subarray(29, 32)));
});

test('seededRandom: same seed, same sequence; different seeds differ', (t) => {
  const run = (seed: string | number | Uint8Array) => {
    const r = seededRandom(seed);
    return [r.uint32(), r.int(1000), r.generate(40).toString('hex'), r.uint32(), r.int(2 ** 40)].join(',');
  };
  t.is(run('a'), run('a'));
  t.is(run(42), run('42'), 'numbers seed by their decimal digits');
  t.is(run(Buffer.from('a')), run('a'));
  t.not(run('a'), run('b'));
  t.not(run(1), run(2));
});

test('uint32 and int(below) stay in range and cover it', (t) => {
  const r = seededRandom('ranges');
  const seen = new Array(6).fill(0);
  for (let i = 0; i < 60_000; i++) seen[r.int(6)]++;
  for (const count of seen) t.true(Math.abs(count - 10_000) < 600, `face count ${count}`);
  for (let i = 0; i < 1000; i++) t.is(r.int(1), 0);
  let high = 0;
  for (let i = 0; i < 10_000; i++) {
    const x = r.uint32();
    t.true(Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff);
    if (x >= 0x8000_0000) high++;
  }
  t.true(Math.abs(high - 5000) < 300);
  for (const below of [2 ** 32, 2 ** 32 + 1, 2 ** 53, 3 * 2 ** 40]) {
    for (let i = 0; i < 200; i++) {
      const x = r.int(below);
      t.true(Number.isInteger(x) && x >= 0 && x < below);
    }
  }
  // Above 2^32, values beyond 32 bits do come out.
  t.true(Array.from({ length: 50 }, () => r.int(2 ** 53)).some((x) => x > 2 ** 32));
});

test('defaultRandom is one process-wide, entropy-seeded, fed Fortuna', (t) => {
  const r = defaultRandom();
  t.is(defaultRandom(), r);
  const fortuna = defaultFortuna();
  t.true(fortuna.seeded);
  t.is(fortuna.mode, 'book');
  const a = r.generate(32);
  const b = r.generate(32);
  t.false(a.equals(b));
  t.false(a.equals(Buffer.alloc(32)));
});

// ---------------------------------------------------------------------------------------------
// Entropy.

test('entropy sources report what this machine has', (t) => {
  const sources = entropySources();
  t.true(sources.os, 'getrandom works');
  if (process.arch === 'x64') {
    t.is(sources.cycleCounter, 'rdtsc');
    if (process.platform === 'linux') {
      const flags = new Set(
        (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/),
      );
      // The self-test can only reject an instruction cpuid lists, never invent one.
      t.is(sources.rdrand, flags.has('rdrand'));
      t.is(sources.rdseed, flags.has('rdseed'));
    }
  } else {
    t.false(sources.rdrand);
    t.false(sources.rdseed);
  }
});

test('a feeding round adds one CPU sample per pool and one jitter reading', (t) => {
  const fortuna = Fortuna.create({ seed: Buffer.from('feed') });
  const { rdrand, rdseed } = entropySources();
  const cpu = rdrand || rdseed;
  const added = fortuna.feedEntropy();
  t.is(added, cpu ? 33 : 1);
  // Book sizes include the 2 header bytes: 10 per CPU sample, 6 for the 4-byte jitter reading.
  t.is(fortuna.poolSize(0), (cpu ? 10 : 0) + 6);
  t.is(fortuna.poolSize(1), cpu ? 10 : 0);
  fortuna.feedEntropy();
  t.is(fortuna.poolSize(1), (cpu ? 20 : 0) + 6, 'the jitter source moved on to pool 1');
  if (cpu) {
    const stats = entropySources();
    t.true(stats.rdrandCalls + stats.rdseedCalls >= 64);
  }
});

test('the periodic feeder feeds on its timer and stops cleanly', async (t) => {
  const fortuna = Fortuna.create({ seed: Buffer.from('timer') });
  const feeder = fortuna.startFeeding({ intervalMs: 5 });
  t.is(fortuna.startFeeding(), feeder, 'one feeder per Fortuna');
  t.true(feeder.running);
  // Other tests in this file block the event loop at times, so wait for rounds, not for time.
  const deadline = Date.now() + 10_000;
  while (feeder.rounds < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  t.true(feeder.rounds >= 3, `rounds ${feeder.rounds}`);
  t.true(fortuna.poolSize(0) > 0);
  feeder.stop();
  t.false(feeder.running);
  const rounds = feeder.rounds;
  const sizes = Array.from({ length: 32 }, (_, i) => fortuna.poolSize(i));
  await new Promise((resolve) => setTimeout(resolve, 40));
  t.is(feeder.rounds, rounds);
  t.deepEqual(
    Array.from({ length: 32 }, (_, i) => fortuna.poolSize(i)),
    sizes,
  );
  feeder.stop();
});

const childScript = `
  import { defaultRandom } from 'morgana';
  process.stdout.write(defaultRandom().generate(32).toString('hex'));
`;

test('seeded output differs across processes, and the feeder does not keep a process alive', (t) => {
  const outputs = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', childScript], {
      cwd: process.cwd(),
      encoding: 'utf8',
      timeout: 20_000,
    });
    t.is(child.status, 0, child.stderr);
    t.is(child.signal, null, 'exited on its own despite the 1 s feeding timer');
    t.true(Date.now() - started < 15_000);
    t.regex(child.stdout, /^[0-9a-f]{64}$/);
    outputs.add(child.stdout);
  }
  outputs.add(defaultRandom().generate(32).toString('hex'));
  t.is(outputs.size, 4);
});

test('chi-square smoke test over 1 MiB of default output', (t) => {
  const data = defaultRandom().generate(1 << 20);
  const counts = new Array(256).fill(0);
  for (const byte of data) counts[byte]++;
  const expected = data.length / 256;
  const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  // 255 degrees of freedom: mean 255, standard deviation about 22.6; ±5 sd is a smoke test that
  // a uniform source fails about once in a million runs.
  t.true(chi2 > 142 && chi2 < 368, `chi-square ${chi2.toFixed(1)}`);
  // Also catch gross structure a byte histogram misses: repeated 16-byte blocks.
  const blocks = new Set<string>();
  for (let i = 0; i < data.length; i += 16) blocks.add(data.subarray(i, i + 16).toString('hex'));
  t.is(blocks.size, data.length / 16);
});
