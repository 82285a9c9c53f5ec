/**
 * The random device (issue 3): generation of 4 B, 16 B, 4 KiB and 1 MiB requests from Fortuna
 * (Rust through napi-rs) against `crypto.randomBytes` in the same run.
 *
 * - `Fortuna.generate(n)`: one Fortuna request per call (reseed check, AES-256-CTR, rekey) into
 *   a new Buffer: the book semantics, nothing buffered.
 * - `Fortuna.fill(buf)`: the same request into a reused buffer (no allocation).
 * - `defaultRandom()`: the process-wide device the stack uses, which draws Fortuna in 4 KiB
 *   chunks and serves small requests from them (`generate(n)`, and `uint32()` for 4 B).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { Fortuna, type Random, defaultRandom } from '../../ts/index.js';
import { type BenchCase, blackhole } from '../harness.js';

const SIZES: Array<[number, string]> = [
  [4, '4 B'],
  [16, '16 B'],
  [4096, '4 KiB'],
  [1 << 20, '1 MiB'],
];

let fortuna: Fortuna | undefined;
let device: Random | undefined;

function prepare(): void {
  fortuna ??= Fortuna.create({ seed: 'entropy' });
  device ??= defaultRandom();
}

function sizeCases(size: number, label: string): BenchCase[] {
  const group = `random ${label}`;
  const goal =
    size === 16
      ? { minRatio: 3, source: 'issue 3' }
      : size === 1 << 20
        ? { minBytesPerSec: 1e9, source: 'issue 3' }
        : undefined;
  const out = Buffer.alloc(size);
  const cases: BenchCase[] = [
    {
      name: `${group} · crypto.randomBytes`,
      group,
      baseline: true,
      bytesPerOp: size,
      unit: 'requests',
      description: `crypto.randomBytes(${size}) from node:crypto (OpenSSL), a new Buffer per request`,
      run(n) {
        for (let i = 0; i < n; i++) blackhole(randomBytes(size));
      },
    },
    {
      name: `${group} · Fortuna.generate`,
      group,
      bytesPerOp: size,
      unit: 'requests',
      description: `Fortuna.generate(${size}) (book mode): one Fortuna request per call, a new Buffer each`,
      ...(goal !== undefined && { goal }),
      setup: prepare,
      run(n) {
        const f = fortuna!;
        for (let i = 0; i < n; i++) blackhole(f.generate(size));
      },
    },
    {
      name: `${group} · Fortuna.fill`,
      group,
      bytesPerOp: size,
      unit: 'requests',
      description: `Fortuna.fill() of a reused ${label} buffer: one Fortuna request per call, no allocation`,
      ...(goal !== undefined && { goal }),
      setup: prepare,
      run(n) {
        const f = fortuna!;
        for (let i = 0; i < n; i++) f.fill(out);
        blackhole(out);
      },
    },
  ];
  if (size <= 4096) {
    cases.push({
      name: `${group} · defaultRandom().generate`,
      group,
      bytesPerOp: size,
      unit: 'requests',
      description: `defaultRandom().generate(${size}): the stack's device, served from 4 KiB Fortuna chunks`,
      ...(goal !== undefined && { goal }),
      setup: prepare,
      run(n) {
        const r = device!;
        for (let i = 0; i < n; i++) blackhole(r.generate(size));
      },
    });
  }
  if (size === 4) {
    cases.push(
      {
        name: `${group} · Fortuna.uint32`,
        group,
        bytesPerOp: 4,
        unit: 'requests',
        description: 'Fortuna.uint32(): one 4-byte Fortuna request into a reused word, returned as a number',
        setup: prepare,
        run(n) {
          const f = fortuna!;
          let acc = 0;
          for (let i = 0; i < n; i++) acc ^= f.uint32();
          blackhole(acc);
        },
      },
      {
        name: `${group} · defaultRandom().uint32`,
        group,
        bytesPerOp: 4,
        unit: 'requests',
        description: "defaultRandom().uint32(): a number from the device's 4 KiB chunk, no allocation",
        setup: prepare,
        run(n) {
          const r = device!;
          let acc = 0;
          for (let i = 0; i < n; i++) acc ^= r.uint32();
          blackhole(acc);
        },
      },
    );
  }
  return cases;
}

export const cases: BenchCase[] = SIZES.flatMap(([size, label]) => sizeCases(size, label));
