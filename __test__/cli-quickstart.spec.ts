/**
 * Issue 16 item 3: after the quick start there is a `morgana` command (npx morgana in the clone), the generated
 * `_build/package.json` scripts work, and the hints the CLI prints run as printed.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CLI, ROOT, exampleArgs, run } from './helpers/unikernel.js';

/** PATH without any folder holding a `morgana` command (so only what the test sets up is found). */
function pathWithoutMorgana(): string {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => !existsSync(join(dir, 'morgana')))
    .join(delimiter);
}

// ignore-scripts: npx links the clone into its cache; it must not run the clone's `prepare` (a full
// rebuild of dist/ and native/ while other test files use them).
const env = () => ({ ...process.env, PATH: pathWithoutMorgana(), npm_config_update_notifier: 'false', npm_config_offline: 'true', npm_config_ignore_scripts: 'true' });

test.serial('in the clone, npx morgana runs the clone\'s CLI from an example folder, and its hints say npx morgana', async (t) => {
  const example = join(ROOT, 'examples', 'echo');
  const version = await run('npx', ['--no-install', 'morgana', '--version'], { cwd: example, env: env() });
  t.is(version.code, 0, version.stderr);
  t.regex(version.stdout, /^morgana \d+\.\d+\.\d+ /);
  const { tempDir } = await import('./helpers/unikernel.js');
  const buildDir = join(tempDir(), 'build');
  const configured = await run('npx', ['--no-install', 'morgana', 'configure', '-b', buildDir], { cwd: example, env: env() });
  t.is(configured.code, 0, configured.stderr);
  t.regex(configured.stdout, new RegExp(`next: npx morgana build -b ${buildDir}\n`));
});

test.serial('the generated _build/package.json build script works (npm run build in the build folder)', async (t) => {
  const { args, buildDir } = exampleArgs('echo');
  const configured = await run(process.execPath, [CLI, 'configure', ...args]);
  t.is(configured.code, 0, configured.stderr);
  const r = await run('npm', ['run', 'build'], { cwd: buildDir, env: env() });
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /built echo in/);
});

test('hints run as printed: configure says how to build, build says how to run', async (t) => {
  const { args } = exampleArgs('echo');
  const configured = await run(process.execPath, [CLI, 'configure', ...args], { env: env() });
  t.is(configured.code, 0, configured.stderr);
  const next = /next: (.+)\n/.exec(configured.stdout)?.[1];
  t.truthy(next, configured.stdout);
  const built = await run('sh', ['-c', next!], { env: env() });
  t.is(built.code, 0, `${next}\n${built.stderr}`);
  const runHint = /run it with (.+) \(or node /.exec(built.stdout)?.[1];
  t.truthy(runHint, built.stdout);
  const help = await run('sh', ['-c', `${runHint} -- --help`], { env: env() });
  t.is(help.code, 63, `${runHint}\n${help.stderr}`);
  t.regex(help.stdout, /--port=PORT/);
});
