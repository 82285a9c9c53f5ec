/**
 * The daemon's web view (issue 19): `morgana daemon serve --http` shows the unikernels it
 * supervises, their consoles and the event log, as JSON and as a live page in a real browser
 * (Debian's chromium driven by playwright-core), with a TypeScript unikernel run by `run -d`.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CLI, morgana, project, tempDir } from './helpers/unikernel.js';
import { until } from './helpers/wait.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const artefacts = fileURLToPath(new URL('../test-artifacts/', import.meta.url));

const children = new Set<ChildProcess>();
test.after.always(() => {
  for (const c of children) c.kill('SIGKILL');
});

async function daemonWithWeb(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, 'daemon', 'serve', '--dir', dir, '--http', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no web view URL in 30 s:\n${stderr}`)), 30_000);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr += `${line}\n`;
      const m = /web view on (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`the daemon exited with ${code}:\n${stderr}`)));
  });
  return { child, url };
}

test('morgana daemon serve --http: unikernels, consoles and events as JSON and as a live page', async (t) => {
  t.timeout(240_000);
  const dir = project({
    'config.ts': `import { main } from 'morgana/config';\nexport default main('./unikernel.ts', {});\n`,
    'unikernel.ts': `export async function start(_d, { signal }) {
  console.log('hello from the web view test');
  let n = 0;
  const timer = setInterval(() => console.log('tick ' + n++), 200);
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  clearInterval(timer);
}
`,
  });
  t.is((await morgana(['configure', '-t', 'vnet'], { cwd: dir })).code, 0);
  t.is((await morgana(['build'], { cwd: dir })).code, 0);
  const daemonDir = join(tempDir('morgana-daemon-web-'), 'd');
  mkdirSync(daemonDir, { recursive: true, mode: 0o700 });
  const { child, url } = await daemonWithWeb(daemonDir);
  const env = { ...process.env, MORGANA_DAEMON_DIR: daemonDir };
  const started = await morgana(['run', '-d', '--name', 'web'], { cwd: dir, env });
  t.is(started.code, 0, started.stderr);
  try {
    const get = async (path: string) => (await fetch(new URL(path, url))).json() as Promise<any>;
    const list = await get('/api/unikernels');
    t.like(list[0], { name: 'web', state: 'running', target: 'node' });
    t.true(list[0].pid > 0);
    await until('the console line', async () => (await get('/api/console/web')).some((l: any) => l.line === 'hello from the web view test'), 20_000);
    const events = await get('/api/events');
    t.true(events.some((e: any) => e.name === 'web' && e.type === 'started'), JSON.stringify(events));
    t.is((await fetch(new URL('/api/console/nobody', url))).status, 404);
    t.is((await fetch(new URL('/api/unikernels', url), { method: 'POST' })).status, 405);

    if (!CHROMIUM) {
      t.log('chromium not installed: the page was not opened');
      return;
    }
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
      await page.goto(url);
      await page.waitForSelector('#unikernels tr[data-name="web"][data-state="running"]');
      // The console of the selected unikernel: its history, then new lines as they come.
      await page.waitForFunction(() => (globalThis as any).document.getElementById('console').textContent.includes('hello from the web view test'));
      const ticks = async () => Number(/tick (\d+)\s*$/.exec(await page.textContent('#console') ?? '')?.[1] ?? -1);
      const first = await ticks();
      await page.waitForFunction((n) => {
        const m = /tick (\d+)\s*$/.exec((globalThis as any).document.getElementById('console').textContent);
        return m !== null && Number(m[1]) > n + 2;
      }, first, { timeout: 20_000 });
      await page.waitForSelector('#events tr[data-type="started"][data-name="web"]');
      mkdirSync(artefacts, { recursive: true });
      await page.screenshot({ path: join(artefacts, 'daemon-web.png'), fullPage: true });
      // Stopping it shows in the page (the row goes, an event says why).
      t.is((await morgana(['stop', 'web'], { env })).code, 0);
      await page.waitForSelector('#unikernels tr[data-name="web"]', { state: 'detached', timeout: 20_000 });
      const types = await page.$$eval('#events tr', (trs: any[]) => trs.map((tr) => tr.dataset.type));
      t.true(types.some((ty) => ty !== 'started' && ty !== 'created'), types.join(' '));
    } finally {
      await browser.close();
    }
  } finally {
    await morgana(['stop', 'web'], { env });
    child.kill('SIGTERM');
  }
});
