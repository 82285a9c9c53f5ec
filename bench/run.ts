/**
 * `npm run bench [-- options]`: discovers `bench/cases/*.ts`, measures every case (see
 * `harness.ts`), prints a table, writes `bench/results/<timestamp>.json` and `.svg`, compares
 * with the previous results file, and (on a full run) refreshes `docs/benchmarks.md`.
 *
 * Options:
 * - `--quick`: 3 short samples per case instead of 7 of ~200 ms;
 * - `--filter TEXT`: only cases whose name or group contains TEXT (case-insensitive), or matches
 *   `/regex/flags`; their baselines run too;
 * - `--json`: print the results JSON on stdout (the table and progress go to stderr);
 * - `--results-dir DIR`: where results files go (default `bench/results`);
 * - `--docs FILE` / `--no-docs`: refresh FILE's table, or no document; by default
 *   `docs/benchmarks.md` is refreshed after a full run (no `--quick`, no `--filter`) only;
 * - `--list`: list the cases and exit.
 * @module
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type BenchCase,
  DEFAULT_OPTIONS,
  type MeasureOptions,
  type Progress,
  QUICK_OPTIONS,
  measure,
  rates,
  resolveBaselines,
  summarize,
  validateCase,
  validateMetrics,
} from './harness.js';
import {
  COMPARABLE_SCHEMAS,
  type CaseResult,
  RESULTS_SCHEMA,
  type ResultsFile,
  bytesRate,
  checkGoal,
  checkMetricGoal,
  compare,
  describeRegression,
  formatMetric,
  markdownTable,
  refreshMarkdown,
  si,
  spread,
  svgChart,
  table,
} from './report.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const rootDir = path.dirname(benchDir);

interface LoadedCase {
  bench: BenchCase;
  file: string;
}

/** Imports every `cases/*.ts` module and checks its `cases` export. */
async function discover(): Promise<LoadedCase[]> {
  const dir = path.join(benchDir, 'cases');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).sort();
  const loaded: LoadedCase[] = [];
  const problems: string[] = [];
  for (const file of files) {
    const module = (await import(pathToFileURL(path.join(dir, file)).href)) as { cases?: unknown };
    if (!Array.isArray(module.cases)) {
      problems.push(`bench/cases/${file}: must export \`export const cases: BenchCase[] = [...]\``);
      continue;
    }
    module.cases.forEach((value: unknown, i: number) => {
      const found = validateCase(value);
      if (found.length > 0) problems.push(`bench/cases/${file} case #${i}: ${found.join('; ')}`);
      else loaded.push({ bench: value as BenchCase, file });
    });
  }
  const seen = new Map<string, string>();
  for (const { bench, file } of loaded) {
    const other = seen.get(bench.name);
    if (other !== undefined) problems.push(`case name '${bench.name}' is used in ${other} and ${file}`);
    seen.set(bench.name, file);
  }
  if (problems.length > 0) throw new Error(`invalid benchmark cases:\n  ${problems.join('\n  ')}`);
  return loaded;
}

/** A case-insensitive substring, or a `/regex/flags`. */
function matcher(filter: string | undefined): (text: string) => boolean {
  if (filter === undefined) return () => true;
  const regex = /^\/(.*)\/([a-z]*)$/s.exec(filter);
  if (regex) {
    const re = new RegExp(regex[1]!, regex[2]);
    return (text) => re.test(text);
  }
  const needle = filter.toLowerCase();
  return (text) => text.toLowerCase().includes(needle);
}

/** Groups stay together in order of first appearance; baselines first within a group. */
function ordered(cases: LoadedCase[]): LoadedCase[] {
  const groups = [...new Set(cases.map((c) => c.bench.group))];
  const isBaseline = (c: LoadedCase) => c.bench.baseline !== undefined && c.bench.baseline !== false;
  return groups.flatMap((g) => {
    const members = cases.filter((c) => c.bench.group === g);
    return [...members.filter(isBaseline), ...members.filter((c) => !isBaseline(c))];
  });
}

function command(file: string, args: string[]): string | undefined {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** Shows per-case progress: a redrawn bar on a terminal, plain lines otherwise. */
class ProgressView {
  readonly #tty = process.stderr.isTTY === true;
  #label = '';

  start(index: number, total: number, name: string): void {
    this.#label = `[${String(index).padStart(String(total).length)}/${total}] ${name}`;
    if (!this.#tty) process.stderr.write(`${this.#label} ...\n`);
  }

  update(p: Progress): void {
    if (!this.#tty) return;
    const width = 24;
    let bar: string;
    let note: string;
    if (p.phase === 'sample') {
      const filled = Math.round((p.done / p.total) * width);
      bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      note = `sample ${p.done}/${p.total} × ${si(p.iterations).trim()}`;
    } else {
      bar = '░'.repeat(width);
      note = p.phase === 'setup' ? 'setting up' : `calibrating (${si(p.iterations).trim()})`;
    }
    const columns = process.stderr.columns ?? 100;
    const line = `${this.#label}  ${bar}  ${note}`;
    process.stderr.write(`\r\x1b[K${line.slice(0, columns - 1)}`);
  }

  done(result: CaseResult): void {
    let summary: string;
    if (result.error !== undefined) summary = `FAILED: ${result.error}`;
    else if (result.skipped !== undefined) summary = `skipped: ${result.skipped}`;
    else {
      const o = result.opsPerSec!;
      summary = `${si(o.median)}${result.unit}/s ${spread(o)}`;
      if (result.bytesPerSec) summary += `, ${bytesRate(result.bytesPerSec.median)}`;
      if (result.ratio !== undefined) summary += `, ${result.ratio.toFixed(2)}× baseline`;
      for (const m of result.metrics ?? []) {
        summary += `; ${m.name}: ${formatMetric(m.value, m.unit)}${m.goal ? ` (goal ${m.goal.met ? 'met' : 'MISSED'})` : ''}`;
      }
    }
    if (this.#tty) process.stderr.write(`\r\x1b[K${this.#label}  ${summary}\n`);
    else process.stderr.write(`    ${summary}\n`);
  }
}

async function runCase(
  { bench, file }: LoadedCase,
  baseline: string | undefined,
  options: MeasureOptions,
  view: ProgressView,
): Promise<CaseResult> {
  const result: CaseResult = {
    name: bench.name,
    group: bench.group,
    file,
    unit: bench.unit ?? 'ops',
    isBaseline: bench.baseline !== undefined && bench.baseline !== false,
    ...(bench.description !== undefined && { description: bench.description }),
    ...(bench.bytesPerOp !== undefined && { bytesPerOp: bench.bytesPerOp }),
    ...(baseline !== undefined && { baseline }),
  };
  try {
    const reason = await bench.skip?.();
    if (reason !== undefined) {
      result.skipped = reason;
      return result;
    }
    view.update({ phase: 'setup' });
    await bench.setup?.();
    // Start each case from a clean heap when `npm run bench` exposed the collector, so garbage
    // left by the previous case is not collected on this one's time.
    (globalThis as { gc?: () => void }).gc?.();
    const m = await measure(bench, options, (p) => view.update(p));
    result.iterationsPerSample = m.iterationsPerSample;
    result.samples = m.samples;
    result.opsPerSec = m.opsPerSec;
    if (bench.bytesPerOp !== undefined) {
      result.bytesPerSec = summarize(rates(m.samples).map((r) => r * bench.bytesPerOp!));
    }
    if (bench.metrics) {
      const metrics = await bench.metrics();
      const problems = validateMetrics(metrics);
      if (problems.length > 0) throw new Error(`invalid metrics: ${problems.join('; ')}`);
      result.metrics = metrics.map((metric) => {
        const { goal: _goal, ...rest } = metric;
        const goal = checkMetricGoal(metric);
        return { ...rest, ...(goal && { goal }) };
      });
    }
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    try {
      await bench.teardown?.();
    } catch (error) {
      result.error ??= `teardown: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return result;
}

async function previousResults(dir: string, quick: boolean, names: Set<string>) {
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort().reverse();
  } catch {
    return undefined;
  }
  for (const name of files) {
    try {
      const file = JSON.parse(await readFile(path.join(dir, name), 'utf8')) as ResultsFile;
      if (!COMPARABLE_SCHEMAS.includes(file.schema) || file.options.quick !== quick) continue;
      if (file.cases.some((c) => names.has(c.name) && (c.opsPerSec || c.metrics))) return { name, file };
    } catch {
      // An unreadable file is not a baseline; try an older one.
    }
  }
  return undefined;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      filter: { type: 'string' },
      json: { type: 'boolean', default: false },
      'results-dir': { type: 'string' },
      docs: { type: 'string' },
      'no-docs': { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench -- [--quick] [--filter TEXT|/REGEX/] [--json] [--results-dir DIR] [--docs FILE | --no-docs] [--list]\n',
    );
    return 0;
  }
  const all = await discover();
  const baselines = resolveBaselines(all.map((c) => c.bench));
  const match = matcher(values.filter);
  const chosen = new Set(all.filter((c) => match(c.bench.name) || match(c.bench.group)).map((c) => c.bench.name));
  for (const name of [...chosen]) {
    const baseline = baselines.get(name);
    if (baseline !== undefined) chosen.add(baseline);
  }
  const selected = ordered(all.filter((c) => chosen.has(c.bench.name)));
  if (values.list) {
    for (const c of selected) process.stdout.write(`${c.bench.group}\t${c.bench.name}\t${c.file}\n`);
    return 0;
  }
  if (selected.length === 0) {
    process.stderr.write(`no benchmark case matches ${JSON.stringify(values.filter)}\n`);
    return 1;
  }

  const options = values.quick ? QUICK_OPTIONS : DEFAULT_OPTIONS;
  const startedAt = new Date();
  const rustc = command('rustc', ['--version']) ?? 'rustc unavailable';
  const gitCommit = command('git', ['-C', rootDir, 'rev-parse', '--short', 'HEAD']);
  const pkg = JSON.parse(await readFile(path.join(rootDir, 'package.json'), 'utf8')) as { version: string };
  const cpus = os.cpus();
  process.stderr.write(
    `Morgana benchmarks: ${selected.length} cases, ${options.samples} samples of ~${options.sampleMs} ms` +
      ` · ${cpus[0]?.model.trim() ?? 'unknown CPU'} × ${cpus.length} · Node ${process.version} · ${rustc}\n`,
  );

  const view = new ProgressView();
  const results: CaseResult[] = [];
  for (const [i, loaded] of selected.entries()) {
    view.start(i + 1, selected.length, loaded.bench.name);
    const result = await runCase(loaded, baselines.get(loaded.bench.name), options, view);
    const base = results.find((r) => r.name === result.baseline);
    if (base?.opsPerSec && result.opsPerSec) result.ratio = result.opsPerSec.median / base.opsPerSec.median;
    if (loaded.bench.goal) result.goal = checkGoal(loaded.bench.goal, result);
    results.push(result);
    view.done(result);
  }

  const resultsDir = path.resolve(values['results-dir'] ?? path.join(benchDir, 'results'));
  const previous = await previousResults(resultsDir, values.quick, new Set(results.map((r) => r.name)));
  const file: ResultsFile = {
    schema: RESULTS_SCHEMA,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: {
      quick: values.quick,
      ...(values.filter !== undefined && { filter: values.filter }),
      samples: options.samples,
      sampleMs: options.sampleMs,
    },
    machine: {
      cpu: cpus[0]?.model.trim() ?? 'unknown',
      cores: cpus.length,
      memoryBytes: os.totalmem(),
      platform: os.platform(),
      release: os.release(),
      arch: os.arch(),
      loadAverage: os.loadavg(),
    },
    versions: {
      node: process.version,
      v8: process.versions.v8,
      rustc,
      morgana: pkg.version,
      ...(gitCommit !== undefined && { gitCommit }),
    },
    cases: results,
  };
  if (previous) {
    file.comparison = { previousFile: previous.name, threshold: 0.1, regressions: compare(previous.file, results, 0.1) };
  }

  await mkdir(resultsDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const jsonPath = path.join(resultsDir, `${stamp}.json`);
  const svgPath = path.join(resultsDir, `${stamp}.svg`);
  await writeFile(jsonPath, `${JSON.stringify(file, null, 2)}\n`);
  await writeFile(svgPath, svgChart(results, `Morgana benchmarks, ${startedAt.toISOString().slice(0, 16)}Z`));

  const fullRun = !values.quick && values.filter === undefined;
  const docsPath = values['no-docs']
    ? undefined
    : values.docs !== undefined
      ? path.resolve(values.docs)
      : fullRun
        ? path.join(rootDir, 'docs', 'benchmarks.md')
        : undefined;
  if (docsPath !== undefined) {
    const chartName = `${path.basename(docsPath, '.md')}.svg`;
    await mkdir(path.dirname(docsPath), { recursive: true });
    await copyFile(svgPath, path.join(path.dirname(docsPath), chartName));
    let document = '# Benchmarks\n\n`npm run bench` refreshes the table below.\n';
    try {
      document = await readFile(docsPath, 'utf8');
    } catch {
      // First run: start the document.
    }
    await writeFile(docsPath, refreshMarkdown(document, markdownTable(file, chartName)));
  }

  const out = values.json ? process.stderr : process.stdout;
  out.write(`\n${table(results)}\n\n`);
  if (file.comparison) {
    const { regressions, previousFile } = file.comparison;
    if (regressions.length === 0) out.write(`No figure is more than 10 % worse than in ${previousFile}.\n`);
    else {
      out.write(`REGRESSIONS (more than 10 % worse than in ${previousFile}):\n`);
      for (const r of regressions) out.write(`  ${describeRegression(r)}\n`);
    }
  } else out.write('No earlier results file to compare with.\n');
  const relative = (p: string) => path.relative(process.cwd(), p) || p;
  out.write(`Results: ${relative(jsonPath)}, chart: ${relative(svgPath)}`);
  out.write(docsPath ? `, table: ${relative(docsPath)}\n` : '\n');
  if (values.json) process.stdout.write(`${JSON.stringify(file, null, 2)}\n`);
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return 1;
});
