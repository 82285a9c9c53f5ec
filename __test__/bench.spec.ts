import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type BenchCase, median, resolveBaselines, summarize } from '../bench/harness.js';
import { type ResultsFile, compare, refreshMarkdown, svgChart } from '../bench/report.js';

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
  const once = refreshMarkdown('# Benchmarks\n\nintro\n', 'TABLE 1');
  const twice = refreshMarkdown(`${once}\nafter\n`, 'TABLE 2');
  t.true(twice.includes('TABLE 2') && !twice.includes('TABLE 1') && twice.includes('intro') && twice.includes('after'));
  t.is(assertWellFormedXml(svgChart([], 'empty <&> run')), 'svg');
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

  t.is(written.schema, 1);
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
