/**
 * Issue 16 item 2: every TypeScript block of the README is a tested example. Each block runs
 * as written, as a user would paste it into a file of a project depending on morgana (a
 * `// config.ts` block is configured and built with the static-website example's unikernel
 * instead), and must exit 0. The blocks are found by extraction, so a block added to the
 * README is tested without registering it.
 */
import test from 'ava';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES, ROOT, morgana, run, tempDir } from './helpers/unikernel.js';

/** The README's ```ts blocks, with the line each starts on. */
function tsBlocks(): Array<{ line: number; code: string }> {
  const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n');
  const blocks: Array<{ line: number; code: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '```ts') continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]!.trim() !== '```') end++;
    blocks.push({ line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** A folder whose node_modules/morgana is this checkout, as in a project depending on it. */
function consumer(): string {
  const dir = tempDir('morgana-readme-');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'morgana'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme-example', type: 'module', private: true }));
  return dir;
}

const blocks = tsBlocks();

test('the README has TypeScript blocks to test', (t) => {
  t.true(blocks.length >= 4, `${blocks.length} blocks`);
});

for (const { line, code } of blocks) {
  const first = code.split('\n')[0]!.trim();
  if (first === '// config.ts') {
    test(`README.md:${line}: the config.ts block configures and builds`, async (t) => {
      const dir = consumer();
      cpSync(join(EXAMPLES, 'static-website', 'unikernel.ts'), join(dir, 'unikernel.ts'));
      cpSync(join(EXAMPLES, 'static-website', 'htdocs'), join(dir, 'htdocs'), { recursive: true });
      writeFileSync(join(dir, 'config.ts'), `${code}\n`);
      for (const step of [['configure', '--forward', '0:80'], ['build']]) {
        const r = await morgana(step, { cwd: dir });
        t.is(r.code, 0, `${step.join(' ')}: ${r.stderr}`);
      }
      const help = await morgana(['run', '--', '--help'], { cwd: dir });
      t.is(help.code, 63, help.stderr);
      t.regex(help.stdout, /--port=PORT/);
    });
    continue;
  }
  test(`README.md:${line}: the block runs as written and exits 0`, async (t) => {
    const dir = consumer();
    const file = join(dir, `readme-${line}.ts`);
    writeFileSync(file, `${code}\n`);
    // tsx from this checkout runs it (cwd ROOT resolves --import tsx); morgana resolves from the file.
    const r = await run(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, timeoutMs: 120_000 });
    t.is(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    t.log(r.stdout.trim());
  });
}
