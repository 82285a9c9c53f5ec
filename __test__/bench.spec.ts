import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type BenchCase, median, resolveBaselines, summarize, validateMetrics } from '../bench/harness.js';
import {
  RESULTS_SCHEMA,
  type ResultsFile,
  checkMetricGoal,
  compare,
  formatMetric,
  markdownTable,
  refreshMarkdown,
  svgChart,
  table,
} from '../bench/report.js';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const run = promisify(execFile);

/**
 * A minimal well-formedness check for the SVG the harness writes: one root element, every tag
 * closed in order, attributes quoted, no stray `<` or `&` in text.
 */
function assertWellFormedXml(text: string): string {
  const stack: string[] = [];
  let root: string | undefined;
  const token = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>|([^<]+)|(<)/g;
  for (const m of text.matchAll(token)) {
    const [, closing, name, , selfClosing, textPart, stray] = m;
    if (stray) throw new Error(`stray '<' at ${m.index}`);
    if (textPart !== undefined) {
      if (/&(?!(?:#\d+|#x[\da-f]+|amp|lt|gt|quot|apos);)/i.test(textPart)) throw new Error(`bad entity near ${m.index}`);
      if (stack.length === 0 && textPart.trim() !== '') throw new Error('text outside the root element');
      continue;
    }
    if (name === undefined) continue;
    if (closing) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else {
      if (stack.length === 0) {
        if (root !== undefined) throw new Error('more than one root element');
        root = name;
      }
      if (!selfClosing) stack.push(name);
    }
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (root === undefined) throw new Error('no root element');
  return root;
}

test('statistics: median and MAD', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.deepEqual(summarize([10, 12, 11, 30, 9]), { median: 11, min: 9, max: 30, mad: 1 });
});

test('baselines resolve by group, by case name and by group name', (t) => {
  const c = (name: string, group: string, baseline?: boolean | string): BenchCase => ({
    name,
    group,
    run() {},
    ...(baseline !== undefined && { baseline }),
  });
  const map = resolveBaselines([
    c('a · js', 'a', true),
    c('a · rust', 'a'),
    c('b · node', 'other', 'b · rust'),
    c('b · rust', 'b'),
    c('c · ref', 'elsewhere', 'c'),
    c('c · one', 'c'),
    c('c · two', 'c'),
    c('lonely', 'd'),
  ]);
  t.is(map.get('a · rust'), 'a · js');
  t.is(map.get('a · js'), undefined);
  t.is(map.get('b · rust'), 'b · node');
  t.is(map.get('c · one'), 'c · ref');
  t.is(map.get('c · two'), 'c · ref');
  t.is(map.get('lonely'), undefined);
  t.throws(() => resolveBaselines([c('x', 'g', 'nothing')]), { message: /names no case/ });
  t.throws(() => resolveBaselines([c('x', 'g', true), c('y', 'g', true), c('z', 'g')]), {
    message: /2 baselines/,
  });
});

test('regressions over 10 % are flagged, and the Markdown block is replaced in place', (t) => {
  const ops = (median: number) => ({ median, min: median, max: median, mad: 0 });
  const previous = {
    cases: [
      { name: 'fast', opsPerSec: ops(100) },
      { name: 'same', opsPerSec: ops(100) },
    ],
  } as ResultsFile;
  const current = [
    { name: 'fast', opsPerSec: ops(85) },
    { name: 'same', opsPerSec: ops(95) },
    { name: 'new', opsPerSec: ops(1) },
  ] as ResultsFile['cases'];
  const regressions = compare(previous, current, 0.1);
  t.deepEqual(
    regressions.map((r) => r.name),
    ['fast'],
  );
  t.is(regressions[0]!.measure, 'ops/s');
  const once = refreshMarkdown('# Benchmarks\n\nintro\n', 'TABLE 1');
  const twice = refreshMarkdown(`${once}\nafter\n`, 'TABLE 2');
  t.true(twice.includes('TABLE 2') && !twice.includes('TABLE 1') && twice.includes('intro') && twice.includes('after'));
  t.is(assertWellFormedXml(svgChart([], 'empty <&> run')), 'svg');
});

test('metrics: formatted with their unit, checked against their goal, compared in their better direction', (t) => {
  t.is(formatMetric(900, 'B'), '900 B');
  t.is(formatMetric(1536, 'B'), '1.50 KiB');
  t.is(formatMetric(3 * 2 ** 20, 'B'), '3.00 MiB');
  t.is(formatMetric(12.5, '%'), '12.5 %');
  const memory = { name: 'memory per connection', value: 5000, unit: 'B', better: 'lower' as const };
  t.deepEqual(checkMetricGoal({ ...memory, goal: { max: 4096, source: 'issue 5', note: 'an estimate' } }), {
    max: 4096,
    source: 'issue 5',
    note: 'an estimate',
    met: false,
    detail: '≤ 4.00 KiB (issue 5; an estimate)',
  });
  t.true(checkMetricGoal({ ...memory, value: 4096, goal: { max: 4096 } })!.met);
  t.is(checkMetricGoal(memory), undefined);
  t.deepEqual(validateMetrics([memory]), []);
  t.deepEqual(validateMetrics([{ ...memory, value: Number.NaN, better: 'more' }, memory]), [
    'metric #0: value must be a finite number',
    "metric #0: better must be 'lower' or 'higher'",
    "metric #1: name 'memory per connection' is used twice",
  ]);
  t.deepEqual(validateMetrics('no'), ['metrics() must return an array']);

  const ops = { median: 100, min: 100, max: 100, mad: 0 };
  const withMetrics = (memoryValue: number, rateValue: number) =>
    [
      {
        name: 'c',
        group: 'g',
        file: 'x.ts',
        unit: 'ops',
        isBaseline: false,
        opsPerSec: ops,
        metrics: [
          { ...memory, value: memoryValue },
          { name: 'rate', value: rateValue, unit: 'req/s', better: 'higher' as const },
        ],
      },
    ] as ResultsFile['cases'];
  const previous = { cases: withMetrics(1000, 100) } as ResultsFile;
  t.deepEqual(compare(previous, withMetrics(1090, 91)), [], 'within 10 % either way');
  const worse = compare(previous, withMetrics(1200, 80));
  t.deepEqual(
    worse.map((r) => [r.measure, r.better, r.previous, r.current]),
    [
      ['memory per connection', 'lower', 1000, 1200],
      ['rate', 'higher', 100, 80],
    ],
  );
  t.deepEqual(compare(previous, withMetrics(500, 200)), [], 'improvements are not regressions');

  // Metric rows sit under their case in both tables, the Markdown one with the descriptions below.
  const cases = withMetrics(5000, 100);
  cases[0]!.metrics![0] = { ...cases[0]!.metrics![0]!, description: 'RSS | growth', goal: checkMetricGoal({ ...memory, goal: { max: 4096 } })! };
  const text = table(cases);
  t.regex(text, /^ {4}↳ memory per connection +4\.88 KiB .*lower is better +MISSED: ≤ 4\.00 KiB$/m);
  const file = { startedAt: '2026-01-01T00:00:00Z', machine: { cpu: 'cpu', cores: 2, memoryBytes: 2 ** 30 }, versions: { node: 'v20', rustc: 'rustc 1' }, options: { quick: true, samples: 3, sampleMs: 40 }, cases } as ResultsFile;
  const md = markdownTable(file);
  t.true(md.includes('| g | ↳ memory per connection | 4.88 KiB | | | lower is better | ❌ ≤ 4.00 KiB |'), md);
  t.true(md.includes('- **c ↳ memory per connection**: RSS | growth'));
});

test('npm run bench --quick writes a valid results file and a well-formed SVG', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'morgana-bench-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // A previous run in which the napi case was 100 times faster: it must be flagged.
  const previous = {
    schema: 1,
    startedAt: '2000-01-01T00:00:00.000Z',
    options: { quick: true, samples: 3, sampleMs: 40 },
    cases: [{ name: 'checksum 64 B · napi call', opsPerSec: { median: 1e12, min: 1e12, max: 1e12, mad: 0 } }],
  };
  await writeFile(path.join(dir, '2000-01-01T00-00-00-000Z.json'), JSON.stringify(previous));

  const { stdout, stderr } = await run(
    process.execPath,
    ['--import', 'tsx', 'bench/run.ts', '--quick', '--filter', 'checksum 64 B · napi', '--json', '--results-dir', dir],
    { cwd: root, env: { ...process.env, FORCE_COLOR: '0' }, maxBuffer: 16 << 20 },
  );
  const printed = JSON.parse(stdout) as ResultsFile;
  t.regex(stderr, /\[1\/2\] checksum 64 B · pure JS/, 'the baseline of a filtered case runs too');
  t.regex(stderr, /REGRESSIONS/);

  const files = (await readdir(dir)).sort();
  t.is(files.length, 3);
  const jsonFile = files.find((f) => f.endsWith('.json') && !f.startsWith('2000'))!;
  const svgFile = files.find((f) => f.endsWith('.svg'))!;
  t.is(path.basename(jsonFile, '.json'), path.basename(svgFile, '.svg'));
  const written = JSON.parse(await readFile(path.join(dir, jsonFile), 'utf8')) as ResultsFile;
  t.deepEqual(written, printed);

  t.is(written.schema, RESULTS_SCHEMA);
  t.true(written.options.quick);
  t.true(written.machine.cores > 0 && written.machine.memoryBytes > 0 && written.machine.cpu.length > 0);
  t.is(written.versions.node, process.version);
  t.regex(written.versions.rustc, /^rustc \d+\.\d+/);
  t.deepEqual(
    written.cases.map((c) => c.name),
    ['checksum 64 B · pure JS', 'checksum 64 B · napi call'],
  );
  const [baseline, napi] = written.cases;
  t.true(baseline!.isBaseline);
  t.is(napi!.baseline, baseline!.name);
  for (const c of written.cases) {
    t.is(c.error, undefined);
    t.true(c.samples!.length >= 3);
    t.true(c.samples!.every((s) => s.iterations > 0 && s.ns > 0));
    t.true(c.opsPerSec!.min <= c.opsPerSec!.median && c.opsPerSec!.median <= c.opsPerSec!.max);
    t.true(c.bytesPerSec!.median > 0);
  }
  t.true(Math.abs(napi!.ratio! - napi!.opsPerSec!.median / baseline!.opsPerSec!.median) < 1e-9);
  t.is(written.comparison?.previousFile, '2000-01-01T00-00-00-000Z.json');
  t.deepEqual(
    written.comparison?.regressions.map((r) => r.name),
    ['checksum 64 B · napi call'],
  );

  const svg = await readFile(path.join(dir, svgFile), 'utf8');
  t.is(assertWellFormedXml(svg), 'svg');
  t.true(svg.includes('checksum 64 B · napi call'));
});

test('a metric (memory per idle connection) reaches the results file, both tables and the comparison', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'morgana-bench-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const morgana = 'TCP echo 64 B with 10,000 idle · Morgana stacks';
  // A previous run (of the older schema, still comparable) in which every connection cost 100 bytes.
  const previous = {
    schema: 1,
    startedAt: '2000-01-01T00:00:00.000Z',
    options: { quick: true, samples: 3, sampleMs: 40 },
    cases: [{ name: morgana, metrics: [{ name: 'process memory per idle connection', value: 100, unit: 'B', better: 'lower' }] }],
  };
  await writeFile(path.join(dir, '2000-01-01T00-00-00-000Z.json'), JSON.stringify(previous));
  const docs = path.join(dir, 'benchmarks.md');

  const { stdout, stderr } = await run(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'bench/run.ts', '--quick', '--filter', morgana, '--json', '--results-dir', dir, '--docs', docs],
    { cwd: root, env: { ...process.env, FORCE_COLOR: '0' }, maxBuffer: 16 << 20 },
  );
  const file = JSON.parse(stdout) as ResultsFile;
  const written = JSON.parse(await readFile(path.join(dir, (await readdir(dir)).find((f) => f.endsWith('.json') && !f.startsWith('2000'))!), 'utf8')) as ResultsFile;
  t.deepEqual(written, file);
  const ours = file.cases.find((c) => c.name === morgana)!;
  t.is(ours.error, undefined);
  t.deepEqual(
    ours.metrics!.map((m) => [m.name, m.unit, m.better]),
    [
      ['process memory per idle connection', 'B', 'lower'],
      ['JS heap per idle connection', 'B', 'lower'],
      ['engine memory per idle endpoint (estimate)', 'B', 'lower'],
    ],
  );
  for (const m of ours.metrics!) {
    t.true(Number.isFinite(m.value), m.name);
    t.true(typeof m.description === 'string' && m.description.length > 20, m.name);
  }
  t.true(ours.metrics![0]!.value > 0, 'holding 10,000 connections costs memory');
  const engine = ours.metrics![2]!;
  t.is(engine.goal?.max, 4096);
  t.is(engine.goal?.source, 'issue 5');
  t.regex(engine.goal!.note!, /estimate/);
  t.is(engine.goal!.met, engine.value <= 4096);
  // The baseline reports its own figures, without the engine estimate.
  const node = file.cases.find((c) => c.isBaseline)!;
  t.deepEqual(
    node.metrics!.map((m) => m.name),
    ['process memory per idle connection', 'JS heap per idle connection'],
  );
  // Compared with the previous file: memory that grew is a regression.
  t.is(file.comparison?.previousFile, '2000-01-01T00-00-00-000Z.json');
  const regression = file.comparison!.regressions.find((r) => r.name === morgana);
  t.like(regression, { measure: 'process memory per idle connection', unit: 'B', better: 'lower', previous: 100 });
  t.regex(stderr, /REGRESSIONS[\s\S]*idle · Morgana stacks — process memory per idle connection: 100 B →/);
  t.regex(stderr, /↳ engine memory per idle endpoint \(estimate\) +[\d.]+ (?:B|KiB)/);
  const markdown = await readFile(docs, 'utf8');
  t.regex(markdown, /\| ↳ engine memory per idle endpoint \(estimate\) \| [\d.]+ (?:B|KiB) \| \| \| lower is better \| [✅❌] ≤ 4\.00 KiB \(issue 5; estimated/);
  t.regex(markdown, /- \*\*TCP echo 64 B with 10,000 idle · Morgana stacks ↳ engine memory per idle endpoint \(estimate\)\*\*: the napi TCP engine/);
});
