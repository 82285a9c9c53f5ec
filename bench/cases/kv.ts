/**
 * The key-value stores (issue 6): `get` and `set` of 100 B, 4 KiB and 1 MiB values in memKv,
 * dirKv and a writable tarKv, next to plain `fs.readFile` / `fs.writeFile` of a file of the same
 * size, measured in the same run. dirKv's `set` is durable (temporary file, fdatasync, rename,
 * directory fsync) and tarKv's appends with two fdatasyncs, where `fs.writeFile` syncs nothing,
 * so the set ratios are mostly the price of durability.
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KvRw, dirKv, memKv, tarKv } from '../../ts/index.js';
import { type BenchCase, blackhole } from '../harness.js';

const SIZES: Array<[number, string]> = [
  [100, '100 B'],
  [4096, '4 KiB'],
  [1024 * 1024, '1 MiB'],
];

/** Eight keys in use, so a `get` is not always of one hot key. */
const KEYS = Array.from({ length: 8 }, (_, i) => `/bench/k${i}`);

type Backend = 'memKv' | 'dirKv' | 'tarKv';

function storeCases(backend: Backend, size: number, label: string): BenchCase[] {
  const value = Buffer.alloc(size, 0x61);
  let dir = '';
  let kv: KvRw | undefined;
  const open = async (): Promise<KvRw> => {
    dir = mkdtempSync(join(tmpdir(), 'morgana-bench-kv-'));
    if (backend === 'memKv') return memKv();
    if (backend === 'dirKv') return dirKv(join(dir, 'store'));
    return tarKv(join(dir, 'store.tar'), { writable: true });
  };
  const teardown = async () => {
    await kv?.close();
    kv = undefined;
    rmSync(dir, { recursive: true, force: true });
  };
  return [
    {
      name: `kv get ${label} · ${backend}`,
      group: `kv get ${label}`,
      bytesPerOp: size,
      unit: 'gets',
      description: `${backend}.get of a ${label} value (8 keys in turn)`,
      async setup() {
        kv = await open();
        for (const k of KEYS) await kv.set(k, value);
      },
      async run(n) {
        for (let i = 0; i < n; i++) blackhole(await kv!.get(KEYS[i & 7]!));
      },
      teardown,
    },
    {
      name: `kv set ${label} · ${backend}`,
      group: `kv set ${label}`,
      bytesPerOp: size,
      unit: 'sets',
      description: `${backend}.set of a ${label} value over an existing one (8 keys in turn)`,
      ...(size >= 1024 * 1024 ? { maxIterations: 200 } : {}),
      async setup() {
        kv = await open();
      },
      async run(n) {
        for (let i = 0; i < n; i++) await kv!.set(KEYS[i & 7]!, value);
      },
      teardown,
    },
  ];
}

function fsCases(size: number, label: string): BenchCase[] {
  const value = Buffer.alloc(size, 0x61);
  let dir = '';
  const files = () => KEYS.map((_, i) => join(dir, `k${i}`));
  return [
    {
      name: `kv get ${label} · fs.readFile`,
      group: `kv get ${label}`,
      baseline: true,
      bytesPerOp: size,
      unit: 'gets',
      description: `fs.promises.readFile of a ${label} file (8 files in turn)`,
      async setup() {
        dir = mkdtempSync(join(tmpdir(), 'morgana-bench-fs-'));
        for (const f of files()) await writeFile(f, value);
      },
      async run(n) {
        const paths = files();
        for (let i = 0; i < n; i++) blackhole(await readFile(paths[i & 7]!));
      },
      teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    },
    {
      name: `kv set ${label} · fs.writeFile`,
      group: `kv set ${label}`,
      baseline: true,
      bytesPerOp: size,
      unit: 'sets',
      description: `fs.promises.writeFile of a ${label} file, not synced (8 files in turn)`,
      setup() {
        dir = mkdtempSync(join(tmpdir(), 'morgana-bench-fs-'));
      },
      async run(n) {
        const paths = files();
        for (let i = 0; i < n; i++) await writeFile(paths[i & 7]!, value);
      },
      teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    },
  ];
}

/** The cases: per size, the fs baselines then memKv, dirKv and tarKv. */
export const cases: BenchCase[] = SIZES.flatMap(([size, label]) => [
  ...fsCases(size, label),
  ...(['memKv', 'dirKv', 'tarKv'] as const).flatMap((b) => storeCases(b, size, label)),
]);
