/**
 * The README's main job: `npm start` (morgana start) serves the static-website example on the
 * vnet target through a forwarded host port. Started, fetched from outside, and stopped.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { kernelTest } from './helpers/netns.js';
import { run } from './helpers/unikernel.js';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

test('morgana start serves the front page through the forwarded port until Ctrl-C', async (t) => {
  const child = spawn(process.execPath, [cli, 'start', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL within 60 s; stderr:\n${stderr}`)), 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const m = /^Serving (http:\/\/127\.0\.0\.1:\d+\/)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`exited with ${code} before serving; stderr:\n${stderr}`)));
  });
  t.true(lines.some((l) => /^Self-check: GET .* -> 200 OK/.test(l)), lines.join('\n'));
  // The summary (stderr) is printed before "Serving" (stdout), but two pipes are read apart:
  // wait for it (liveness only; the deadline is generous).
  for (let i = 0; i < 200 && !/TCP +\d+ connection/.test(stderr); i++) await new Promise((r) => setTimeout(r, 50));
  t.regex(stderr, /TCP +\d+ connection/, 'the stack summary was printed');
  // Dual-stack: the summary shows the unikernel's link-local address (usable: DAD is done before
  // it starts), and the address line repeats it next to the IPv4 one.
  t.regex(stderr, /IPv6 +fe80::[0-9a-f:]+\/64 \(link-local, preferred\)/);
  t.true(lines.some((l) => /^Unikernel addresses: 10\.0\.0\.2 · fe80::[0-9a-f:]+ \(link-local\)/.test(l)), lines.join('\n'));

  const page = await fetch(url);
  t.is(page.status, 200);
  t.regex(await page.text(), /<title>Morgana<\/title>/);
  const css = await fetch(new URL('css/site.css', url));
  t.is(css.headers.get('content-type'), 'text/css; charset=utf-8');
  const etag = page.headers.get('etag')!;
  t.is((await fetch(url, { headers: { 'if-none-match': etag } })).status, 304);

  child.kill('SIGINT');
  t.is(await exited, 0);
});

kernelTest(test, 'morgana start --tap serves the page on a TAP device in a namespace, checked with curl from the kernel side', async (t) => {
  const result = spawnSync(process.execPath, [cli, 'start', '--tap', '--self-check-only'], { encoding: 'utf8', timeout: 120_000 });
  t.is(result.status, 0, `${result.stdout}\n${result.stderr}`);
  t.regex(result.stdout, /Self-check: curl http:\/\/10\.0\.0\.2\/ .* -> 200 \d+ bytes/);
  t.regex(result.stdout, /Self-check: curl http:\/\/\[fe80::[0-9a-f:]+%25mtap0\]\/ over IPv6 -> 200 \d+ bytes/);
  t.regex(result.stderr, /TCP +\d+ connection/, 'the stack summary was printed');
  t.regex(result.stderr, /IPv6 +fe80::[0-9a-f:]+\/64 \(link-local, preferred\)/);
  t.regex(result.stdout, /Unikernel addresses: 10\.0\.0\.2 · fe80::[0-9a-f:]+ \(link-local\)/);
  t.false(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.includes(`morgana-start-${result.pid}`), 'the namespace is gone');
}, ['curl']);

test('morgana start --json: the self-check, addresses and both stacks\' summary as one JSON object on stdout, the text on stderr', async (t) => {
  // Spawned asynchronously: a spawnSync would stall the other tests of this file meanwhile.
  const result = await run(process.execPath, [cli, 'start', '--port', '0', '--self-check-only', '--json'], { timeoutMs: 120_000 });
  t.is(result.code, 0, result.stderr);
  const lines = result.stdout.trim().split('\n');
  t.is(lines.length, 1, result.stdout);
  const report = JSON.parse(lines[0]!) as {
    ok: boolean;
    url: string;
    selfCheck: { status: number; bytes: number };
    addresses: { ipv4: string; ipv6: string[] };
    summary: { name: string; stacks: Record<string, { interfaces: Array<{ address: string }>; stats: { tcp: { segmentsIn: number } } }> };
  };
  t.true(report.ok);
  t.regex(report.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  t.is(report.selfCheck.status, 200);
  t.true(report.selfCheck.bytes > 0);
  t.is(report.addresses.ipv4, '10.0.0.2');
  t.true(report.addresses.ipv6.some((a) => a.startsWith('fe80:')));
  t.is(report.summary.name, 'static-website');
  t.is(report.summary.stacks.stack0?.interfaces[0]?.address, '10.0.0.2/24');
  // The self-check's GET reached the unikernel's TCP.
  t.true(report.summary.stacks.stack0!.stats.tcp.segmentsIn > 0);
  t.truthy(report.summary.stacks['vnet gateway']);
  t.regex(result.stderr, /Self-check: GET http:\/\/127\.0\.0\.1:\d+\/ through the forwarded port -> 200 OK/);
  t.notRegex(result.stderr, /morganaSummary/);
});
