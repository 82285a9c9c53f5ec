/**
 * Issue 16 item 10: `exports` is ESM-only, so `require('morgana')` needs a Node.js with
 * require(esm) unflagged (20.19+, 22.12+); `engines` must not allow older ones.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, run, tempDir } from './helpers/unikernel.js';

type Version = [number, number, number];
const parse = (v: string): Version => {
  const [a = 0, b = 0, c = 0] = v.replace(/^v/, '').split('.').map(Number);
  return [a, b, c];
};
const compare = (x: Version, y: Version) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2];

/** Whether `version` satisfies a range made of `||` alternatives of space-separated `>=V` / `<V` / `>V` / `<=V`. */
function satisfies(version: string, range: string): boolean {
  const v = parse(version);
  return range.split('||').some((alternative) =>
    alternative
      .trim()
      .split(/\s+/)
      .every((comparator) => {
        const m = /^(>=|<=|>|<)(\d+(?:\.\d+){0,2})$/.exec(comparator);
        if (!m) throw new Error(`comparator ${comparator} not understood by this test`);
        const c = compare(v, parse(m[2]!));
        return m[1] === '>=' ? c >= 0 : m[1] === '<=' ? c <= 0 : m[1] === '>' ? c > 0 : c < 0;
      }),
  );
}

test('engines allows only Node.js releases where require(esm) is unflagged', (t) => {
  const { engines } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
  for (const old of ['20.17.0', '20.18.3', '21.7.0', '22.11.0']) t.false(satisfies(old, engines.node), `${old} has no unflagged require(esm)`);
  for (const ok of ['20.19.0', '20.20.2', '22.12.0', '24.0.0']) t.true(satisfies(ok, engines.node), ok);
  t.true(satisfies(process.version, engines.node), `the Node.js running the tests (${process.version})`);
});

test('require("morgana") and require("morgana/config") work from a CommonJS module', async (t) => {
  const dir = tempDir();
  const { mkdirSync, symlinkSync, writeFileSync } = await import('node:fs');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'morgana'), 'dir');
  writeFileSync(
    join(dir, 'main.cjs'),
    `const morgana = require('morgana');
const config = require('morgana/config');
console.log(typeof morgana.createStack, typeof morgana.VirtualSwitch, typeof config.main);\n`,
  );
  const r = await run(process.execPath, ['--no-warnings', join(dir, 'main.cjs')], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), 'function function function');
});

test('typescript, which configure and build load at run time, is a runtime dependency (not dev-only)', (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  t.truthy(pkg.dependencies?.typescript, 'dependencies.typescript');
  t.is(pkg.devDependencies?.typescript, undefined);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  t.not(lock.packages['node_modules/typescript']?.dev, true, 'the lock file agrees');
});
