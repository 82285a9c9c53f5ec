/**
 * Issue 16 item 7 (left over): a global `-v/--verbose` beside `-q/--quiet`. With it the CLI says
 * on stderr what it does: the files it writes (absolute paths), the commands it runs, how long
 * each step took. Without it, none of that. The tests spawn the real command.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exampleArgs, morgana } from './helpers/unikernel.js';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('-v/--verbose: configure, build, run and clean say which files they write, what they run, and how long it took', async (t) => {
  const { args, buildDir } = exampleArgs('echo');
  const dir = escape(buildDir);
  const configured = await morgana(['-v', 'configure', ...args, '-t', 'vnet']);
  t.is(configured.code, 0, configured.stderr);
  t.regex(configured.stdout, /configured echo for vnet/, 'the usual output is still there');
  t.regex(configured.stderr, new RegExp(`^morgana: configure: \\S+/examples/echo/config\\.ts for vnet$`, 'm'));
  t.regex(configured.stderr, new RegExp(`^morgana: configure: wrote ${dir}/package\\.json, ${dir}/main\\.mjs, ${dir}/\\.morgana\\.json in [\\d.]+ m?s$`, 'm'));
  t.regex(configured.stderr, /^morgana: configure exited 0 after [\d.]+ m?s$/m);

  const built = await morgana(['--verbose', 'build', ...args]);
  t.is(built.code, 0, built.stderr);
  t.regex(built.stderr, new RegExp(`^morgana: build: \\S+config\\.ts into ${dir}/app, type-checked$`, 'm'));
  t.regex(built.stderr, /^morgana: build: compiled and type-checked in [\d.]+ m?s$/m);
  t.regex(built.stderr, new RegExp(`^morgana: build: entry point ${dir}/main\\.mjs$`, 'm'));
  t.true(existsSync(join(buildDir, 'main.mjs')));

  // The unikernel's command line, as it is run (its --help exits 63).
  const ran = await morgana(['-v', 'run', ...args, '-p', '0:7', '--', '--help']);
  t.is(ran.code, 63, ran.stderr);
  t.regex(ran.stderr, new RegExp(`^morgana: run: MORGANA_FORWARD=tcp:127\\.0\\.0\\.1:0:7 \\S*node\\S* ${dir}/main\\.mjs --help$`, 'm'));
  t.regex(ran.stderr, /^morgana: run exited 63 after [\d.]+ m?s$/m);

  const cleaned = await morgana(['-v', 'clean', ...args]);
  t.is(cleaned.code, 0, cleaned.stderr);
  t.regex(cleaned.stderr, new RegExp(`^morgana: clean: ${dir}$`, 'm'));

  // Without -v: none of these lines.
  const plain = await morgana(['configure', ...args, '-t', 'vnet']);
  t.is(plain.code, 0, plain.stderr);
  t.notRegex(plain.stderr, /^morgana: /m);
});

test('-v start: the unikernel command it runs, after configure and build say what they wrote', async (t) => {
  const r = await morgana(['-v', 'start', '--port', '0', '--self-check-only'], { timeoutMs: 180_000 });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^morgana: configure: \S+\/examples\/static-website\/config\.ts for vnet --forward tcp:127\.0\.0\.1:0:80$/m);
  t.regex(r.stderr, /^morgana: build: compiled and type-checked in [\d.]+ m?s$/m);
  t.regex(r.stderr, /^morgana: start: the unikernel: MORGANA_TEMPORARY_BUILD_DIR=(\S+) \S*node\S* \1\/main\.mjs$/m);
  t.regex(r.stderr, /^morgana: start exited 0 after [\d.]+ m?s$/m);
});

test('-v and -q exclude each other (exit 64), and --help documents -v', async (t) => {
  const both = await morgana(['-q', '-v', 'clean']);
  t.is(both.code, 64);
  t.regex(both.stderr, /-q\/--quiet and -v\/--verbose exclude each other/);
  const help = await morgana(['--help']);
  t.regex(help.stdout, /usage: morgana \[-q\|--quiet \| -v\|--verbose\] <command>/);
  t.regex(help.stdout, /^ {2}-v, --verbose {3}more detail on stderr: the commands it runs/m);
});
