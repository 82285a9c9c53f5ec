/**
 * The benchmark harness: the case interface every `bench/cases/<area>.ts` module implements, and
 * the measurement (calibration, samples, statistics) that `bench/run.ts` drives.
 *
 * A case module exports its cases as an array:
 *
 * ```ts
 * import { type BenchCase, blackhole } from '../harness.js';
 *
 * export const cases: BenchCase[] = [
 *   { name: 'frobnicate 1 KiB · pure JS', group: 'frobnicate 1 KiB', baseline: true, bytesPerOp: 1024,
 *     run(n) { for (let i = 0; i < n; i++) blackhole(frobJs(buf)); } },
 *   { name: 'frobnicate 1 KiB · Rust', group: 'frobnicate 1 KiB', bytesPerOp: 1024, goal: { minRatio: 4 },
 *     run(n) { for (let i = 0; i < n; i++) blackhole(frob(buf)); } },
 * ];
 * ```
 *
 * `run(iterations)` performs exactly `iterations` operations; the harness picks `iterations` so
 * that one sample lasts about {@link MeasureOptions.sampleMs}, takes several samples, and reports
 * the median operations per second with its spread, the bytes per second when
 * {@link BenchCase.bytesPerOp} is given, and the ratio to the case's baseline measured in the
 * same run.
 *
 * Figures that are not rates (memory per connection, a latency percentile) are
 * {@link BenchMetric}s: a case returns them from {@link BenchCase.metrics}, and they are written,
 * tabulated, checked against their goal and compared with the previous run like the rates.
 * @module
 */

/** What a case is measured against; see {@link BenchCase.baseline}. */
export type BaselineSpec = boolean | string;

/** A goal from an issue, checked and reported (never asserted) after the measurement. */
export interface BenchGoal {
  /** The case's median must be at least this many times its baseline's (ops/s ratio). */
  minRatio?: number;
  /** Median operations per second at least this. */
  minOpsPerSec?: number;
  /** Median bytes per second at least this (needs {@link BenchCase.bytesPerOp}). */
  minBytesPerSec?: number;
  /** Where the goal comes from, e.g. 'issue 2'. */
  source?: string;
}

/** A goal for a {@link BenchMetric}: a bound on its value. */
export interface MetricGoal {
  /** The value must be at most this (e.g. bytes per connection). */
  max?: number;
  /** The value must be at least this. */
  min?: number;
  /** Where the goal comes from, e.g. 'issue 5'. */
  source?: string;
  /**
   * How the measured value relates to what the goal speaks of, when they differ (e.g. the goal
   * is about engine memory and the value is an estimate from process memory). Shown with the
   * verdict so that the goal column stays honest.
   */
  note?: string;
}

/**
 * A measured figure that is not a rate: one value with its unit, e.g. the memory each idle
 * connection costs. Reported beside the case's rate, written into the results file, checked
 * against its goal and compared with the previous run (a change over 10 % in the worse
 * direction is a regression).
 */
export interface BenchMetric {
  /** Stable within its case (runs are compared by case name and metric name). */
  name: string;
  value: number;
  /**
   * Unit of `value`. `B` is shown in binary multiples (KiB, MiB); anything else (`ms`, `µs`) is
   * shown as is after an SI prefix.
   */
  unit: string;
  /** Which direction is an improvement: `lower` for memory and latency. */
  better: 'lower' | 'higher';
  /** Exactly what was measured and how (shown under the Markdown table and kept in the JSON). */
  description?: string;
  goal?: MetricGoal;
}

/**
 * One benchmark case. Everything but `name`, `group` and `run` is optional.
 *
 * Life cycle: `skip()` (if present) → `setup()` → `run(1)` once as a smoke test and warm-up →
 * calibration runs with growing `iterations` → one discarded warm-up sample → the samples →
 * `teardown()` (always, even after an error). Cases run one after another, never concurrently:
 * modules in file-name order, cases in `cases` order, except that the cases of one group run
 * together with the group's baselines first. Hooks are called as methods of the case object.
 */
export interface BenchCase {
  /**
   * Unique across the suite; shown in the table, used by `--filter` and to compare with earlier
   * results files, so keep it stable. Convention: `<what> · <implementation>`, e.g.
   * `checksum 1500 B · napi`.
   */
  name: string;
  /**
   * The comparison this case belongs to (one table section, one chart bar per non-baseline
   * case), e.g. `checksum 1500 B`.
   */
  group: string;
  /**
   * Which case this one is the baseline for:
   * - `true`: the baseline of every other case in its {@link group};
   * - a string: the baseline of the case with that name, or, when no case has that name, of
   *   every other case of the group with that name.
   *
   * A case with no baseline of its own gets one named by a string first, else its group's
   * `true` one; more than one candidate is an error. Selecting a case with `--filter` also
   * runs its baseline, so every ratio comes from one run.
   */
  baseline?: BaselineSpec;
  /** Bytes processed by one operation, to report bytes per second. */
  bytesPerOp?: number;
  /** What one operation is, plural (default `ops`), e.g. `fragments`, `datagrams`, `requests`. */
  unit?: string;
  /** One line on what exactly is measured, for the Markdown table and the JSON. */
  description?: string;
  /** A goal (e.g. from an issue) to report as met or missed. */
  goal?: BenchGoal;
  /**
   * Return a reason to skip the case (e.g. `'needs root for a network namespace'`), or nothing
   * to run it. Called before `setup`.
   */
  skip?(): string | undefined | Promise<string | undefined>;
  /** Prepares state (buffers, servers, connections) outside the measured time. */
  setup?(): void | Promise<void>;
  /**
   * Performs exactly `iterations` operations. Only this call is timed. Keep per-call overhead
   * small (one loop; feed results to {@link blackhole} so they are not optimised away), and keep
   * state across calls if an operation depends on the previous one.
   */
  run(iterations: number): void | Promise<void>;
  /**
   * Figures other than the rate, returned once after the samples and before `teardown` (a case
   * usually measures them in `setup` and returns them here). See {@link BenchMetric}.
   */
  metrics?(): BenchMetric[] | Promise<BenchMetric[]>;
  /** Releases what `setup` created. */
  teardown?(): void | Promise<void>;
  /** Overrides the harness's samples per case (at least 1). */
  samples?: number;
  /** Overrides the target duration of one sample, in milliseconds. */
  sampleMs?: number;
  /** Upper bound on `iterations` for one `run` call (e.g. when state grows with iterations). */
  maxIterations?: number;
}

/** Measurement settings; {@link DEFAULT_OPTIONS} and {@link QUICK_OPTIONS} are the two presets. */
export interface MeasureOptions {
  /** Samples per case. */
  samples: number;
  /** Target duration of one sample (the iterations are calibrated to it). */
  sampleMs: number;
  /** Calibration stops growing the iterations once one call lasts this long. */
  calibrateMs: number;
}

/** `npm run bench`: 7 samples of about 200 ms. */
export const DEFAULT_OPTIONS: MeasureOptions = { samples: 7, sampleMs: 200, calibrateMs: 20 };
/** `npm run bench -- --quick`: 3 samples of about 40 ms. */
export const QUICK_OPTIONS: MeasureOptions = { samples: 3, sampleMs: 40, calibrateMs: 5 };

/** One timed call of `run(iterations)`. */
export interface Sample {
  iterations: number;
  /** Wall-clock duration in nanoseconds. */
  ns: number;
}

/** Median and spread of per-sample rates. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Median absolute deviation from the median. */
  mad: number;
}

/** Where measurement of a case has got to, for progress displays. */
export type Progress =
  | { phase: 'setup' }
  | { phase: 'calibrate'; iterations: number }
  | { phase: 'sample'; done: number; total: number; iterations: number };

/** Feeds a value where the optimiser cannot see it unused. */
export function blackhole(value: unknown): void {
  sink = value;
}
let sink: unknown;
/** The last value given to {@link blackhole} (so reading it is possible, and the store is live). */
export function lastBlackholed(): unknown {
  return sink;
}

async function timed(bench: BenchCase, iterations: number): Promise<number> {
  const start = process.hrtime.bigint();
  const pending = bench.run(iterations);
  if (pending !== undefined) await pending;
  return Number(process.hrtime.bigint() - start);
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median, extremes and median absolute deviation of a non-empty list. */
export function summarize(values: readonly number[]): Summary {
  const m = median(values);
  return {
    median: m,
    min: Math.min(...values),
    max: Math.max(...values),
    mad: median(values.map((v) => Math.abs(v - m))),
  };
}

/** Operations per second of each sample. */
export function rates(samples: readonly Sample[]): number[] {
  return samples.map((s) => (s.iterations * 1e9) / Math.max(s.ns, 1));
}

/**
 * Finds how many iterations make one sample last about `sampleMs`: doubles from 1 until a call
 * lasts `calibrateMs`, then scales (bounded by `maxIterations`).
 */
export async function calibrate(
  bench: BenchCase,
  options: MeasureOptions,
  onProgress: (p: Progress) => void = () => {},
): Promise<number> {
  const sampleMs = bench.sampleMs ?? options.sampleMs;
  const max = bench.maxIterations ?? 1e9;
  let iterations = 1;
  for (;;) {
    onProgress({ phase: 'calibrate', iterations });
    const ns = await timed(bench, iterations);
    if (ns >= options.calibrateMs * 1e6 || iterations >= max) {
      const perOp = ns / iterations;
      return Math.max(1, Math.min(max, Math.round((sampleMs * 1e6) / Math.max(perOp, 0.01))));
    }
    // Grow fast while calls are far too short, gently near the threshold.
    const factor = ns < 1e5 ? 10 : 2;
    iterations = Math.min(max, iterations * factor);
  }
}

/** The raw result of measuring one case. */
export interface Measurement {
  iterationsPerSample: number;
  samples: Sample[];
  opsPerSec: Summary;
}

/**
 * Measures a case that has been set up: a smoke run, calibration, a discarded warm-up sample,
 * then the samples.
 */
export async function measure(
  bench: BenchCase,
  options: MeasureOptions,
  onProgress: (p: Progress) => void = () => {},
): Promise<Measurement> {
  await timed(bench, 1);
  const iterations = await calibrate(bench, options, onProgress);
  const total = Math.max(1, bench.samples ?? options.samples);
  onProgress({ phase: 'sample', done: 0, total, iterations });
  await timed(bench, iterations);
  const samples: Sample[] = [];
  for (let i = 0; i < total; i++) {
    samples.push({ iterations, ns: await timed(bench, iterations) });
    onProgress({ phase: 'sample', done: i + 1, total, iterations });
  }
  return { iterationsPerSample: iterations, samples, opsPerSec: summarize(rates(samples)) };
}

/**
 * For every case, the name of its baseline (or `undefined`). Throws on a baseline string that
 * names nothing, or on more than one baseline for one case.
 */
export function resolveBaselines(cases: readonly BenchCase[]): Map<string, string | undefined> {
  const names = new Set(cases.map((c) => c.name));
  const groups = new Set(cases.map((c) => c.group));
  for (const c of cases) {
    if (typeof c.baseline === 'string' && !names.has(c.baseline) && !groups.has(c.baseline)) {
      throw new Error(`bench case '${c.name}': baseline '${c.baseline}' names no case and no group`);
    }
  }
  const result = new Map<string, string | undefined>();
  for (const c of cases) {
    if (c.baseline !== undefined && c.baseline !== false) {
      result.set(c.name, undefined);
      continue;
    }
    const byName = cases.filter((b) => b.baseline === c.name);
    const byGroup = cases.filter((b) => b !== c && b.baseline === c.group && !names.has(c.group));
    const byTrue = cases.filter((b) => b !== c && b.baseline === true && b.group === c.group);
    const candidates = byName.length > 0 ? byName : byGroup.length > 0 ? byGroup : byTrue;
    if (candidates.length > 1) {
      throw new Error(
        `bench case '${c.name}' has ${candidates.length} baselines: ${candidates.map((b) => b.name).join(', ')}`,
      );
    }
    result.set(c.name, candidates[0]?.name);
  }
  return result;
}

/** Checks the shape of a case module's export; returns the problems found. */
export function validateCase(value: unknown): string[] {
  if (typeof value !== 'object' || value === null) return ['a case must be an object'];
  const c = value as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof c.name !== 'string' || c.name === '') problems.push('name must be a non-empty string');
  if (typeof c.group !== 'string' || c.group === '') problems.push('group must be a non-empty string');
  if (typeof c.run !== 'function') problems.push('run must be a function');
  for (const hook of ['setup', 'teardown', 'skip', 'metrics'] as const) {
    if (c[hook] !== undefined && typeof c[hook] !== 'function') problems.push(`${hook} must be a function`);
  }
  if (c.baseline !== undefined && typeof c.baseline !== 'boolean' && typeof c.baseline !== 'string') {
    problems.push('baseline must be a boolean or a string');
  }
  for (const key of ['bytesPerOp', 'samples', 'sampleMs', 'maxIterations'] as const) {
    if (c[key] !== undefined && !(typeof c[key] === 'number' && c[key] > 0)) {
      problems.push(`${key} must be a positive number`);
    }
  }
  return problems;
}

/** Checks the metrics a case returned; returns the problems found. */
export function validateMetrics(value: unknown): string[] {
  if (!Array.isArray(value)) return ['metrics() must return an array'];
  const problems: string[] = [];
  const names = new Set<string>();
  value.forEach((m: unknown, i) => {
    const where = `metric #${i}`;
    if (typeof m !== 'object' || m === null) return void problems.push(`${where} must be an object`);
    const r = m as Record<string, unknown>;
    if (typeof r.name !== 'string' || r.name === '') problems.push(`${where}: name must be a non-empty string`);
    else if (names.has(r.name)) problems.push(`${where}: name '${r.name}' is used twice`);
    else names.add(r.name);
    if (typeof r.value !== 'number' || !Number.isFinite(r.value)) problems.push(`${where}: value must be a finite number`);
    if (typeof r.unit !== 'string' || r.unit === '') problems.push(`${where}: unit must be a non-empty string`);
    if (r.better !== 'lower' && r.better !== 'higher') problems.push(`${where}: better must be 'lower' or 'higher'`);
  });
  return problems;
}
