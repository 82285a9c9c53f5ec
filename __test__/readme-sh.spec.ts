/**
 * Issue 16 item 2 (left over): the README's shell blocks run in CI, as a new user would type
 * them. Every ```sh/```bash block carries an HTML comment on the line before it saying how the
 * test treats it, and the test fails for a block without one:
 *
 * - `<!-- readme-sh: run -->`: run to completion (bash -e -o pipefail), exit 0;
 * - `<!-- readme-sh: serve until /REGEX/ then fetch URL -->`: started, ready once REGEX matches
 *   its output, checked with a GET of URL (`$1` is the REGEX's first group) that must answer
 *   200, then stopped with SIGINT to its process group (Ctrl-C) and expected to exit by itself;
 * - `<!-- readme-sh: serve until /REGEX/ then run the next block -->`: the same, with the next
 *   block (a `run` one) as the check, run while it serves;
 * - `<!-- readme-sh: skip (REASON) -->`: not run, for the reason given (root and TAP devices,
 *   long runs, inputs a reader brings).
 *
 * The blocks run in README order in one fresh folder holding the README's `config.ts` with the
 * static-website example's unikernel and htdocs, with `morgana` on PATH (as `npm link` puts it)
 * and a fresh HOME, inside a network namespace of the test's own: the fixed host ports the README
 * uses (8080, 5201, …) cannot meet another program's, and no traffic leaves.
 */
import test from 'ava';
import { type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Netns, createNetns, kernelTestsUnavailable } from './helpers/netns.js';
import { CLI, EXAMPLES, ROOT, tempDir } from './helpers/unikernel.js';

type Mode =
  | { kind: 'run' }
  | { kind: 'skip'; reason: string }
  | { kind: 'serve'; ready: RegExp; fetch?: string; nextBlock?: boolean };

interface Block {
  line: number;
  code: string;
  mode: Mode | { kind: 'unmarked'; marker: string };
}

/** The README's shell blocks, each with the marker on the line before its fence. */
function shellBlocks(readme: string): Block[] {
  const lines = readme.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i]!.trim())) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]!.trim() !== '```') end++;
    const marker = (lines[i - 1] ?? '').trim();
    blocks.push({ line: start, code: lines.slice(start, end).join('\n'), mode: parseMarker(marker) });
    i = end;
  }
  return blocks;
}

function parseMarker(marker: string): Block['mode'] {
  const m = /^<!-- readme-sh: (.*) -->$/.exec(marker);
  const text = m?.[1] ?? '';
  if (text === 'run') return { kind: 'run' };
  const skip = /^skip \((.+)\)$/.exec(text);
  if (skip) return { kind: 'skip', reason: skip[1]! };
  const serve = /^serve until \/(.+)\/ then (?:fetch (\S+)|(run the next block))$/.exec(text);
  if (serve) return { kind: 'serve', ready: new RegExp(serve[1]!), ...(serve[2] ? { fetch: serve[2] } : { nextBlock: true }) };
  return { kind: 'unmarked', marker };
}

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const blocks = shellBlocks(readme);

test('every shell block of the README is run or says why not', (t) => {
  t.true(blocks.length >= 8, `${blocks.length} shell blocks`);
  for (const block of blocks) {
    t.not(block.mode.kind, 'unmarked', `README.md:${block.line}: a shell block needs <!-- readme-sh: run | serve until /RE/ then … | skip (why) --> on the line before its fence (found ${JSON.stringify((block.mode as { marker?: string }).marker)})`);
    if (block.mode.kind === 'serve' && block.mode.nextBlock) {
      const next = blocks[blocks.indexOf(block) + 1];
      t.is(next?.mode.kind, 'run', `README.md:${block.line}: the block after a "then run the next block" one must be a run block`);
    }
  }
  t.true(blocks.filter((b) => b.mode.kind !== 'skip').length >= 4, 'most blocks run');
});

test('the marker parser refuses what it does not know (so a typo is not a silent skip)', (t) => {
  t.is(parseMarker('<!-- readme-sh: skip -->').kind, 'unmarked');
  t.is(parseMarker('<!-- readme-sh: runs -->').kind, 'unmarked');
  t.is(parseMarker('<!-- some other comment -->').kind, 'unmarked');
  t.is(parseMarker('<!-- readme-sh: skip (needs root) -->').kind, 'skip');
  t.deepEqual(parseMarker('<!-- readme-sh: serve until /x (\\d+)/ then fetch http://127.0.0.1:$1/ -->'), { kind: 'serve', ready: /x (\d+)/, fetch: 'http://127.0.0.1:$1/' });
});

/** The README's `config.ts` with the static-website unikernel, `morgana` on PATH, a HOME. */
function workspace(): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = tempDir('morgana-readme-sh-');
  const config = /```ts\n(\/\/ config\.ts\n[\s\S]*?)```/.exec(readme)?.[1];
  if (!config) throw new Error('the README has no // config.ts block');
  writeFileSync(join(dir, 'config.ts'), config);
  cpSync(join(EXAMPLES, 'static-website', 'unikernel.ts'), join(dir, 'unikernel.ts'));
  cpSync(join(EXAMPLES, 'static-website', 'htdocs'), join(dir, 'htdocs'), { recursive: true });
  // A project depending on morgana (as the README's config.ts imports it).
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'morgana'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme-sh', type: 'module', private: true }));
  const bin = join(dir, '.bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'morgana'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  const home = join(dir, '.home');
  mkdirSync(home);
  return { dir, env: { PATH: `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: home, LANG: 'C.UTF-8', TMPDIR: process.env.TMPDIR ?? '/tmp' } };
}

/** Starts a block in the namespace, in its own process group (so SIGINT reaches it as Ctrl-C does). */
function startBlock(ns: Netns, code: string, cwd: string, env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = ns.spawn('bash', ['-e', '-o', 'pipefail', '-c', code], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d));
  child.stderr!.on('data', (d: Buffer) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return { child, output: () => output, exited };
}

/** Kills what a block started (its whole process group), if anything of it is left. */
function killGroup(block: ReturnType<typeof startBlock>): void {
  try {
    process.kill(-block.child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Runs a block to completion (180 s at most); resolves with its exit code. */
async function runBlock(block: ReturnType<typeof startBlock>, where: string): Promise<number | null> {
  try {
    return await within(block.exited, 180_000, () => `${where} still running after 180 s:\n${block.output()}`);
  } finally {
    killGroup(block);
  }
}

async function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what())), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the first match of `pattern` in the output, or rejects when the block exits or time runs out. */
async function ready(block: ReturnType<typeof startBlock>, pattern: RegExp, ms: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + ms;
  let done = false;
  void block.exited.then(() => (done = true));
  for (;;) {
    const m = pattern.exec(block.output());
    if (m) return m;
    if (done) throw new Error(`exited before ${pattern}:\n${block.output()}`);
    if (Date.now() > deadline) throw new Error(`not ready (${pattern}) after ${ms} ms:\n${block.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const runnable = !kernelTestsUnavailable();
(runnable ? test.serial : test.skip)(`the README's shell blocks run as written${runnable ? '' : ` (skipped: ${kernelTestsUnavailable()})`}`, async (t) => {
  const { dir, env } = workspace();
  const ns = await createNetns();
  t.teardown(() => ns.destroy());
  const ran: string[] = [];
  for (let i = 0; i < blocks.length; i++) {
    const { line, code, mode } = blocks[i]!;
    const where = `README.md:${line}`;
    if (mode.kind === 'skip') {
      t.log(`${where}: skipped (${mode.reason})`);
      continue;
    }
    if (mode.kind === 'run') {
      const block = startBlock(ns, code, dir, env);
      const exit = await runBlock(block, where);
      t.is(exit, 0, `${where} exited ${exit}:\n${block.output()}`);
      ran.push(where);
      continue;
    }
    if (mode.kind !== 'serve') throw new Error(`${where}: unmarked`);
    const server = startBlock(ns, code, dir, env);
    try {
      const match = await ready(server, mode.ready, 120_000);
      if (mode.fetch) {
        const url = mode.fetch.replace('$1', match[1] ?? '');
        const got = await ns.exec('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '20', url], { allowFailure: true });
        t.is(got.stdout, '200', `${where}: GET ${url} -> ${got.stdout} ${got.stderr}\n${server.output()}`);
      } else {
        const next = blocks[++i]!;
        const check = startBlock(ns, next.code, dir, env);
        const exit = await runBlock(check, `README.md:${next.line}`);
        t.is(exit, 0, `README.md:${next.line} (while ${where} serves) exited ${exit}:\n${check.output()}`);
        ran.push(`README.md:${next.line}`);
      }
      // Ctrl-C: SIGINT to the block's process group; it must stop by itself.
      process.kill(-server.child.pid!, 'SIGINT');
      const exit = await within(server.exited, 30_000, () => `${where} did not stop on SIGINT:\n${server.output()}`);
      t.true(exit === 0 || exit === 130, `${where} exited ${exit} on SIGINT:\n${server.output()}`);
      ran.push(where);
    } finally {
      killGroup(server);
    }
  }
  t.log(`ran ${ran.join(', ')}`);
});
