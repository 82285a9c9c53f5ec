/**
 * Issue 16 item 1 (left over): `morgana start --tap` killed with SIGKILL runs no cleanup of its
 * own, yet its network namespace (and the TAP device in it) must not stay behind. A watchdog
 * process holding a pipe to it deletes the namespace when the pipe breaks; and the next
 * `start --tap` sweeps namespaces of start processes that are gone.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { kernelTest } from './helpers/netns.js';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

const namespaces = (): string[] =>
  spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

kernelTest(test, 'start --tap killed with SIGKILL: its namespace is gone within seconds, and so is the unikernel', async (t) => {
  const child = spawn(process.execPath, [cli, 'start', '--tap'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const name = `morgana-start-${child.pid}`;
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d));
  child.stderr.on('data', (d: Buffer) => (output += d));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    await until('the Serving line', () => /Serving http:\/\/10\.0\.0\.2\//.test(output), 180_000);
    t.true(namespaces().includes(name), `${name} while serving`);
    const buildDir = /in (\S+morgana-start-\w+)\n/.exec(output)?.[1];
    t.truthy(buildDir, output);
    t.is(spawnSync('pgrep', ['-f', `${buildDir}/main.mjs`]).status, 0, 'the unikernel runs');
    child.kill('SIGKILL');
    await exited;
    await until(`${name} to disappear from ip netns list`, () => !namespaces().includes(name), 10_000);
    t.false(namespaces().includes(name));
    // The unikernel (`node <build folder>/main.mjs` in the namespace) stopped too, and its
    // temporary build folder went with it.
    await until('the unikernel to stop', () => spawnSync('pgrep', ['-f', `${buildDir}/main.mjs`]).status === 1, 15_000);
    await until('its build folder to go', () => !existsSync(buildDir!), 15_000);
  } finally {
    child.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', name]);
  }
});

kernelTest(test, 'the next start --tap deletes the namespace a dead start left behind, and no live one', async (t) => {
  // A start process that died without its watchdog: a namespace named after a pid that is gone.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const stale = `morgana-start-${dead.stdout}`;
  // And one of a start that is alive (our own pid stands for it).
  const alive = `morgana-start-${process.pid}`;
  for (const name of [stale, alive]) t.is(spawnSync('ip', ['netns', 'add', name]).status, 0);
  try {
    const r = spawnSync(process.execPath, [cli, 'start', '--tap', '--self-check-only'], { encoding: 'utf8', timeout: 180_000 });
    t.is(r.status, 0, r.stderr);
    const left = namespaces();
    t.false(left.includes(stale), `${stale} still listed`);
    t.true(left.includes(alive), `${alive} was deleted though its process lives`);
    // Any start --tap sweeps: one of another test file running beside this one may get there
    // first (it did in CI), and then this one has nothing left to delete and says nothing.
    if (!r.stderr.includes(`deleted ${stale}`)) t.log(`${stale} was swept by another start --tap running at the same time`);
  } finally {
    for (const name of [stale, alive]) spawnSync('ip', ['netns', 'del', name]);
  }
});
