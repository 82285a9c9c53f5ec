/**
 * The benchmark results file format and what is made from it: the console table, the
 * comparison with an earlier run, the SVG chart of ratios and the Markdown table.
 * @module
 */
import type { BenchGoal, BenchMetric, MetricGoal, Sample, Summary } from './harness.js';

/**
 * Bumped when the results file changes incompatibly. 2: cases may carry `metrics`, and
 * regressions name what regressed (`measure`) with generic `previous`/`current` values.
 * Files of schema 1 have the same case shape and are still read for comparison.
 */
export const RESULTS_SCHEMA = 2;
/** Schemas whose files can serve as the previous run to compare with. */
export const COMPARABLE_SCHEMAS: readonly number[] = [1, 2];

/** A {@link BenchMetric} as written into a results file, its goal evaluated. */
export interface MetricResult extends Omit<BenchMetric, 'goal'> {
  goal?: MetricGoal & { met: boolean; detail: string };
}

/** The result of one case in a results file. */
export interface CaseResult {
  name: string;
  group: string;
  /** Module file the case came from, relative to `bench/cases/`. */
  file: string;
  unit: string;
  description?: string;
  bytesPerOp?: number;
  /** True for a case that is a baseline. */
  isBaseline: boolean;
  /** The name of the case this one is compared with. */
  baseline?: string;
  /** Set when the case did not run; `error` when it failed. */
  skipped?: string;
  error?: string;
  iterationsPerSample?: number;
  samples?: Sample[];
  opsPerSec?: Summary;
  bytesPerSec?: Summary;
  /** Median ops/s divided by the baseline's median ops/s (> 1: faster than the baseline). */
  ratio?: number;
  goal?: BenchGoal & { met: boolean; detail: string };
  /** Figures other than the rate (memory per connection, …), see {@link BenchMetric}. */
  metrics?: MetricResult[];
}

/**
 * A figure that got worse by more than the threshold since the previous results file: a case's
 * median rate that fell, or one of its metrics that moved the wrong way.
 */
export interface Regression {
  /** The case. */
  name: string;
  /** `ops/s` for the case's median rate, else the metric's name. */
  measure: string;
  /** Unit of `previous` and `current` (the case's unit per second, or the metric's unit). */
  unit: string;
  better: 'lower' | 'higher';
  previous: number;
  current: number;
  /** Relative change, e.g. -0.23 for a rate 23 % lower, 0.3 for memory 30 % higher. */
  change: number;
}

/** A `bench/results/<timestamp>.json` file. */
export interface ResultsFile {
  schema: number;
  startedAt: string;
  finishedAt: string;
  options: { quick: boolean; filter?: string; samples: number; sampleMs: number };
  machine: {
    cpu: string;
    cores: number;
    memoryBytes: number;
    platform: string;
    release: string;
    arch: string;
    loadAverage: number[];
  };
  versions: { node: string; v8: string; rustc: string; morgana: string; gitCommit?: string };
  cases: CaseResult[];
  comparison?: { previousFile: string; threshold: number; regressions: Regression[] };
}

/** 1234567 → "1.23 M". */
export function si(value: number, digits = 3): string {
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, unit] of units) {
    if (Math.abs(value) >= scale) return `${(value / scale).toPrecision(digits)} ${unit}`;
  }
  return `${value.toPrecision(digits)} `;
}

/** Bytes per second in decimal units (GB/s = 10^9 B/s). */
export function bytesRate(value: number): string {
  return `${si(value)}B/s`;
}

/** The spread of a summary as ± MAD in percent of the median. */
export function spread(s: Summary): string {
  return `±${((s.mad / s.median) * 100).toFixed(1)}%`;
}

/**
 * A metric's value with its unit: bytes in binary multiples (`3.41 KiB`), anything else with an
 * SI prefix (`1.25 ms` stays `1.25 ms`, 1500 µs becomes `1.50 kµs`, so pick the unit to fit).
 */
export function formatMetric(value: number, unit: string): string {
  if (unit === 'B') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = value;
    let u = 0;
    while (Math.abs(v) >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return u === 0 ? `${Math.round(v)} B` : `${v.toPrecision(3)} ${units[u]}`;
  }
  return `${si(value)}${unit}`;
}

/** Evaluates a metric's goal. */
export function checkMetricGoal(metric: BenchMetric): MetricResult['goal'] {
  const goal = metric.goal;
  if (!goal) return undefined;
  const parts: string[] = [];
  let met = true;
  if (goal.max !== undefined) {
    met &&= metric.value <= goal.max;
    parts.push(`≤ ${formatMetric(goal.max, metric.unit)}`);
  }
  if (goal.min !== undefined) {
    met &&= metric.value >= goal.min;
    parts.push(`≥ ${formatMetric(goal.min, metric.unit)}`);
  }
  const why = [goal.source, goal.note].filter((x) => x !== undefined && x !== '').join('; ');
  return { ...goal, met, detail: `${parts.join(', ')}${why ? ` (${why})` : ''}` };
}

/** Evaluates a goal against a measured case. */
export function checkGoal(goal: BenchGoal, c: CaseResult): CaseResult['goal'] {
  const parts: string[] = [];
  let met = true;
  if (goal.minRatio !== undefined) {
    const ok = c.ratio !== undefined && c.ratio >= goal.minRatio;
    met &&= ok;
    parts.push(`ratio ≥ ${goal.minRatio}×`);
  }
  if (goal.minOpsPerSec !== undefined) {
    const ok = (c.opsPerSec?.median ?? 0) >= goal.minOpsPerSec;
    met &&= ok;
    parts.push(`≥ ${si(goal.minOpsPerSec)}${c.unit}/s`);
  }
  if (goal.minBytesPerSec !== undefined) {
    const ok = (c.bytesPerSec?.median ?? 0) >= goal.minBytesPerSec;
    met &&= ok;
    parts.push(`≥ ${bytesRate(goal.minBytesPerSec)}`);
  }
  const detail = `${parts.join(', ')}${goal.source ? ` (${goal.source})` : ''}`;
  return { ...goal, met, detail };
}

/**
 * Figures that got worse by more than `threshold` relative to `previous`: median ops/s that fell,
 * and metrics that moved against their `better` direction (memory that grew, say).
 */
export function compare(previous: ResultsFile, current: readonly CaseResult[], threshold = 0.1): Regression[] {
  const before = new Map(previous.cases.map((c) => [c.name, c]));
  const regressions: Regression[] = [];
  const check = (name: string, measure: string, unit: string, better: 'lower' | 'higher', old: number | undefined, now: number | undefined) => {
    if (old === undefined || now === undefined || !(old > 0)) return;
    const change = now / old - 1;
    if (better === 'higher' ? change < -threshold : change > threshold) {
      regressions.push({ name, measure, unit, better, previous: old, current: now, change });
    }
  };
  for (const c of current) {
    const old = before.get(c.name);
    if (!old) continue;
    check(c.name, 'ops/s', `${c.unit}/s`, 'higher', old.opsPerSec?.median, c.opsPerSec?.median);
    for (const m of c.metrics ?? []) {
      const was = old.metrics?.find((p) => p.name === m.name && p.unit === m.unit);
      check(c.name, m.name, m.unit, m.better, was?.value, m.value);
    }
  }
  return regressions;
}

/** One line describing a regression, e.g. `kv get · memKv: 1.00 M→ 800 kgets/s (-20.0 %)`. */
export function describeRegression(r: Regression): string {
  const value = (v: number) => (r.measure === 'ops/s' ? `${si(v)}${r.unit}` : formatMetric(v, r.unit));
  const what = r.measure === 'ops/s' ? r.name : `${r.name} — ${r.measure}`;
  return `${what}: ${value(r.previous)} → ${value(r.current)} (${r.change >= 0 ? '+' : ''}${(r.change * 100).toFixed(1)} %)`;
}

function pad(text: string, width: number, right = false): string {
  const len = [...text].length;
  return len >= width ? text : right ? ' '.repeat(width - len) + text : text + ' '.repeat(width - len);
}

/** The console table: one section per group. */
export function table(results: readonly CaseResult[]): string {
  const rows: string[][] = [['case', 'median', 'spread (MAD)', 'min – max', 'throughput', 'vs baseline', 'goal']];
  let group: string | undefined;
  const groupRows: number[] = [];
  for (const c of results) {
    if (c.group !== group) {
      group = c.group;
      groupRows.push(rows.length);
      rows.push([c.group]);
    }
    if (c.skipped !== undefined || c.error !== undefined || c.opsPerSec === undefined) {
      rows.push([`  ${c.name}`, c.error ? `FAILED: ${c.error}` : `skipped: ${c.skipped ?? '?'}`]);
      continue;
    }
    const o = c.opsPerSec;
    rows.push([
      `  ${c.name}`,
      `${si(o.median)}${c.unit}/s`,
      spread(o),
      `${si(o.min)}– ${si(o.max)}`,
      c.bytesPerSec ? bytesRate(c.bytesPerSec.median) : '',
      c.isBaseline ? 'baseline' : c.ratio !== undefined ? `${c.ratio.toFixed(2)}×` : '',
      c.goal ? `${c.goal.met ? 'met' : 'MISSED'}: ${c.goal.detail}` : '',
    ]);
    for (const m of c.metrics ?? []) {
      rows.push([
        `    ↳ ${m.name}`,
        formatMetric(m.value, m.unit),
        '',
        '',
        '',
        `${m.better} is better`,
        m.goal ? `${m.goal.met ? 'met' : 'MISSED'}: ${m.goal.detail}` : '',
      ]);
    }
  }
  const widths: number[] = [];
  rows.forEach((row, i) => {
    if (groupRows.includes(i)) return;
    row.forEach((cell, j) => (widths[j] = Math.max(widths[j] ?? 0, [...cell].length)));
  });
  return rows
    .map((row, i) =>
      groupRows.includes(i) || row.length < 3
        ? row.join('  ')
        : row.map((cell, j) => pad(cell, widths[j]!, j >= 1 && j <= 5)).join('  ').trimEnd(),
    )
    .join('\n');
}

function xml(text: string): string {
  return text.replace(/[<>&"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * A horizontal bar chart of every ratio (log scale, 1× marked), hand-written SVG. Bars are
 * green when at least 1×, red below; whiskers show the ratio's range from the samples' min–max.
 */
export function svgChart(results: readonly CaseResult[], title: string): string {
  const bars = results.filter((c) => c.ratio !== undefined && c.opsPerSec !== undefined);
  const byName = new Map(results.map((c) => [c.name, c]));
  const rowHeight = 26;
  const labelWidth = 330;
  const plotWidth = 420;
  const top = 48;
  const height = top + Math.max(bars.length, 1) * rowHeight + 44;
  const width = labelWidth + plotWidth + 90;
  const ranges = bars.map((c) => {
    const base = byName.get(c.baseline ?? '')?.opsPerSec;
    const o = c.opsPerSec!;
    return base ? { lo: o.min / base.max, hi: o.max / base.min } : { lo: c.ratio!, hi: c.ratio! };
  });
  const all = [1, ...bars.map((c) => c.ratio!), ...ranges.flatMap((r) => [r.lo, r.hi])].filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all) * 1.05)));
  const x = (v: number) =>
    labelWidth + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotWidth;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${xml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${xml(title)}</text>`,
    `<text x="10" y="38" fill="#555555">median ops/s relative to the baseline measured in the same run (log scale; whiskers: min–max)</text>`,
  );
  for (let decade = lo; decade <= hi * 1.0001; decade *= 10) {
    const gx = x(decade).toFixed(1);
    out.push(
      `<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${height - 36}" stroke="${decade === 1 ? '#333333' : '#dddddd'}"/>`,
      `<text x="${gx}" y="${height - 20}" text-anchor="middle" fill="#555555">${decade >= 1 ? decade : decade.toPrecision(1)}×</text>`,
    );
  }
  bars.forEach((c, i) => {
    const y = top + i * rowHeight;
    const x0 = x(1);
    const x1 = x(c.ratio!);
    const colour = c.ratio! >= 1 ? '#3a8a3a' : '#b03a2e';
    const r = ranges[i]!;
    out.push(
      `<text x="${labelWidth - 8}" y="${y + 16}" text-anchor="end">${xml(c.name)}</text>`,
      `<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y + 5}" width="${Math.max(Math.abs(x1 - x0), 1).toFixed(1)}" height="${rowHeight - 10}" fill="${colour}"/>`,
      `<line x1="${x(r.lo).toFixed(1)}" y1="${y + rowHeight / 2}" x2="${x(r.hi).toFixed(1)}" y2="${y + rowHeight / 2}" stroke="#222222"/>`,
      `<text x="${(Math.max(x0, x1, x(r.hi)) + 6).toFixed(1)}" y="${y + 16}">${c.ratio!.toFixed(2)}×</text>`,
    );
  });
  if (bars.length === 0) out.push(`<text x="${labelWidth}" y="${top + 16}">no case with a baseline ran</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}

const START = '<!-- bench:table:start (written by npm run bench) -->';
const END = '<!-- bench:table:end -->';

/** The Markdown table of a run, with a line on the machine. */
export function markdownTable(file: ResultsFile, chartPath?: string): string {
  const lines = [
    `Measured ${file.startedAt.slice(0, 10)} on ${file.machine.cpu} (${file.machine.cores} cores, ` +
      `${(file.machine.memoryBytes / 2 ** 30).toFixed(0)} GiB), Node ${file.versions.node}, ${file.versions.rustc}` +
      `${file.options.quick ? ', quick pass' : ''}${file.options.filter ? `, cases matching \`${file.options.filter}\`` : ''}` +
      `; ${file.options.samples} samples of ~${file.options.sampleMs} ms per case.`,
    '',
    '| Group | Case | Median | Spread (MAD) | Throughput | vs baseline | Goal |',
    '| --- | --- | ---: | ---: | ---: | ---: | --- |',
  ];
  const cell = (text: string) => text.replace(/\|/g, '\\|');
  for (const c of file.cases) {
    if (c.opsPerSec === undefined) {
      lines.push(`| ${cell(c.group)} | ${cell(c.name)} | ${c.error ? 'failed' : `skipped: ${cell(c.skipped ?? '')}`} | | | | |`);
      continue;
    }
    lines.push(
      `| ${cell(c.group)} | ${cell(c.name)} | ${si(c.opsPerSec.median)}${cell(c.unit)}/s | ${spread(c.opsPerSec)} | ` +
        `${c.bytesPerSec ? bytesRate(c.bytesPerSec.median) : ''} | ` +
        `${c.isBaseline ? 'baseline' : c.ratio !== undefined ? `**${c.ratio.toFixed(2)}×**` : ''} | ` +
        `${c.goal ? `${c.goal.met ? '✅' : '❌'} ${cell(c.goal.detail)}` : ''} |`,
    );
    for (const m of c.metrics ?? []) {
      lines.push(
        `| ${cell(c.group)} | ↳ ${cell(m.name)} | ${formatMetric(m.value, m.unit)} | | | ${m.better} is better | ` +
          `${m.goal ? `${m.goal.met ? '✅' : '❌'} ${cell(m.goal.detail)}` : ''} |`,
      );
    }
  }
  const described = file.cases.flatMap((c) => (c.metrics ?? []).filter((m) => m.description).map((m) => ({ c, m })));
  if (described.length > 0) {
    lines.push('', 'Rows marked ↳ are figures other than rates, measured during the case above them:', '');
    for (const { c, m } of described) lines.push(`- **${c.name} ↳ ${m.name}**: ${m.description}`);
  }
  if (chartPath) lines.push('', `![Ratios to the baselines](${chartPath})`);
  return lines.join('\n');
}

/** Replaces the table between the markers in `document` (or appends one). */
export function refreshMarkdown(document: string, tableText: string): string {
  const block = `${START}\n${tableText}\n${END}`;
  const start = document.indexOf(START);
  const end = document.indexOf(END);
  if (start >= 0 && end > start) return document.slice(0, start) + block + document.slice(end + END.length);
  return `${document.trimEnd()}\n\n${block}\n`;
}
