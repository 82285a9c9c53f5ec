/**
 * `morgana build` type-checks the unikernel against Morgana's types and keeps errors in place:
 * TypeScript diagnostics as `file:line:col: error TSxxxx: message`, syntax errors in config.ts
 * with their place, and source maps so a runtime stack trace names the .ts line.
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configureAndBuild, exampleArgs, morgana, project } from './helpers/unikernel.js';

const CONFIG = `import { defaultNet, key, main, stack } from 'morgana/config';
const port = key.port('port', { default: 7, doc: 'The port.' });
export default main('./unikernel.ts', { stack: stack(defaultNet()) }, { keys: { port } });
`;

/** A unikernel whose line 5 passes a string where udp.bind wants a port number. */
const BAD_BIND = `import type { Start } from 'morgana/config';
import type config from './config.js';

export const start: Start<typeof config> = async ({ stack }, { keys, signal }) => {
  const udp = stack.udp.bind(keys.port + "x", (data, from) => udp.send(from.address, from.port, data));
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  udp.close();
};
`;

test('a type error fails the build with file:line:col; --no-typecheck builds it', async (t) => {
  const dir = project({
    'config.ts': CONFIG,
    'unikernel.ts': BAD_BIND,
    // Not imported by the unikernel, still one of its sources: checked too, named by its path.
    'lib/util.ts': `export function twice(n: number): number {\n  return n * 2;\n}\nexport const wrong: string = twice(2);\n`,
  });
  t.is((await morgana(['configure', '-t', 'vnet'], { cwd: dir })).code, 0);
  const built = await morgana(['build'], { cwd: dir });
  t.is(built.code, 1, built.stderr);
  t.regex(built.stderr, /^morgana build: 2 type errors \(--no-typecheck builds without the check\):$/m);
  t.regex(built.stderr, /^unikernel\.ts:5:30: error TS2345: Argument of type 'string' is not assignable to parameter of type 'number'\.$/m);
  t.regex(built.stderr, /^lib\/util\.ts:4:14: error TS2322: Type 'number' is not assignable to type 'string'\.$/m);
  t.is(built.stdout, '');

  const unchecked = await morgana(['build', '--no-typecheck'], { cwd: dir });
  t.is(unchecked.code, 0, unchecked.stderr);
  t.regex(unchecked.stdout, /^built /);
  t.regex(readFileSync(join(dir, '_build', 'app', 'unikernel.js'), 'utf8'), /keys\.port \+ "x"/);
});

test('a syntax error in config.ts names config.ts:line:col (exit 64)', async (t) => {
  const dir = project({ 'config.ts': CONFIG, 'unikernel.ts': BAD_BIND.replace('keys.port + "x"', 'keys.port') });
  t.is((await morgana(['configure', '-t', 'vnet'], { cwd: dir })).code, 0);
  writeFileSync(join(dir, 'config.ts'), CONFIG.replace('default: 7,', 'default: 7,,'));
  const built = await morgana(['build'], { cwd: dir });
  t.is(built.code, 64, built.stderr);
  t.regex(built.stderr, /^morgana build: config\.ts:2:44: error TS1136: Property assignment expected\.$/m);
});

test('a throw in start() shows a stack trace line in unikernel.ts (source maps)', async (t) => {
  const dir = project({
    'config.ts': CONFIG,
    'unikernel.ts': `import type { Start } from 'morgana/config';
import type config from './config.js';

export const start: Start<typeof config> = async (_devices, { keys }) => {
  console.log(\`up on \${keys.port}\`);
  throw new Error('boom from start');
};
`,
  });
  t.is((await morgana(['configure', '-t', 'vnet'], { cwd: dir })).code, 0);
  const built = await morgana(['build'], { cwd: dir });
  t.is(built.code, 0, built.stderr);
  const map = JSON.parse(readFileSync(join(dir, '_build', 'app', 'unikernel.js.map'), 'utf8')) as { sources: string[] };
  t.deepEqual(map.sources, ['../../unikernel.ts']);
  const ran = await morgana(['run'], { cwd: dir });
  t.is(ran.code, 1, ran.stderr);
  t.regex(ran.stderr, /Error: boom from start/);
  t.true(ran.stderr.includes(`at start (${join(dir, 'unikernel.ts')}:6:9)`), ran.stderr);
});

for (const example of ['echo', 'ping', 'static-website']) {
  test(`examples/${example} type-checks and builds with source maps`, async (t) => {
    const { args, buildDir } = exampleArgs(example);
    await configureAndBuild(args, ['-t', 'vnet']);
    const map = JSON.parse(readFileSync(join(buildDir, 'app', 'unikernel.js.map'), 'utf8')) as { sources: string[] };
    t.is(join(buildDir, 'app', map.sources[0]!), join(args[1]!, '..', 'unikernel.ts'));
  });
}
