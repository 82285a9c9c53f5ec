import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { configureAndBuild, exampleArgs, freePort, morgana, project, start, tcpExchange, udpExchange } from './helpers/unikernel.js';

function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET') {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const hasCurl = spawnSync('curl', ['--version']).status === 0;
const hasPing = spawnSync('ping', ['-c', '1', '-W', '1', '127.0.0.1']).status === 0;
const hasDot = spawnSync('dot', ['-V']).status === 0;

// ---------------------------------------------------------------------------------------------
// vnet

test('echo on vnet: UDP and TCP through forwarded host ports', async (t) => {
  const { args, buildDir } = exampleArgs('echo');
  await configureAndBuild(args, ['-t', 'vnet', '--forward', 'udp:0:7', '--forward', '0:7']);
  const pkg = JSON.parse(readFileSync(join(buildDir, 'package.json'), 'utf8'));
  t.is(pkg.dependencies.morgana, '>=0.1.0 <0.2.0');
  const u = start(buildDir, []);
  try {
    const udpPort = Number((await u.waitFor(/forwarding udp 127\.0\.0\.1:(\d+)/))[1]);
    const tcpPort = Number((await u.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+)/))[1]);
    await u.waitFor(/echo: UDP 10\.0\.0\.2 port 7/);
    t.is(await udpExchange(udpPort, 'hello over vnet'), 'hello over vnet');
    await u.waitFor(/echo: TCP 10\.0\.0\.2 port 7/);
    const big = Buffer.alloc(100_000, 'abcdefghij').toString();
    const echoed = await tcpExchange(tcpPort, big);
    t.is(echoed.length, big.length);
    t.true(echoed === big, 'the echo is identical');
  } finally {
    t.is(await u.stop(), 0, JSON.stringify(u.output()));
  }
});

test('ping on vnet: pings the gateway, reports RTTs, exit 1 when an address is silent', async (t) => {
  const { args } = exampleArgs('ping');
  await configureAndBuild(args, ['-t', 'vnet', '--count=2']);
  const ok = await morgana(['run', ...args, '--', '10.0.0.1', '--interval=10ms']);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /64 bytes from 10\.0\.0\.1: icmp_seq=1 ttl=64 time=[\d.]+ ms/);
  t.regex(ok.stdout, /--- 10\.0\.0\.1: 2 sent, 2 received, 0% loss, rtt min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms/);
  const silent = await morgana(['run', ...args, '--', '10.0.0.1', '10.0.0.77', '--count=1', '--timeout=200ms']);
  t.is(silent.code, 1);
  t.regex(silent.stdout, /--- 10\.0\.0\.77: 1 sent, 0 received, 100% loss/);
  const none = await morgana(['run', ...args]);
  t.is(none.code, 64);
});

test('static-website on vnet: HTTP through the forwarded port', async (t) => {
  const { args, buildDir } = exampleArgs('static-website');
  await configureAndBuild(args, ['-t', 'vnet', '--forward', '0:80']);
  const u = start(buildDir, []);
  try {
    const port = Number((await u.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+)/))[1]);
    await u.waitFor(/serving on port 80/);
    const page = await get(port, '/');
    t.is(page.status, 200);
    t.is(page.headers['content-type'], 'text/html; charset=utf-8');
    t.regex(page.body, /Hello from a Morgana unikernel/);
    if (hasCurl) {
      const curl = spawnSync('curl', ['-sf', '--max-time', '10', `http://127.0.0.1:${port}/css/site.css`], { encoding: 'utf8' });
      t.is(curl.status, 0);
      t.regex(curl.stdout, /font-family/);
    }
  } finally {
    t.is(await u.stop(), 0);
  }
});

// ---------------------------------------------------------------------------------------------
// unix --net socket

test('echo on unix --net socket: the same unikernel on host sockets', async (t) => {
  const { args, buildDir } = exampleArgs('echo');
  await configureAndBuild(args, ['-t', 'unix', '--net', 'socket', '--bind', '127.0.0.1']);
  const port = await freePort();
  const u = start(buildDir, [`--port=${port}`]);
  try {
    await u.waitFor(new RegExp(`echo: TCP 127\\.0\\.0\\.1 port ${port}`));
    t.is(await udpExchange(port, 'udp on the host'), 'udp on the host');
    t.is(await tcpExchange(port, 'tcp on the host'), 'tcp on the host');
  } finally {
    t.is(await u.stop(), 0);
  }
});

(hasPing ? test : test.skip)('ping on unix --net socket: the system ping answers for ICMP', async (t) => {
  const { args } = exampleArgs('ping');
  await configureAndBuild(args, ['-t', 'unix', '--net', 'socket']);
  const r = await morgana(['run', ...args, '--', '127.0.0.1', '--count=1']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /bytes from 127\.0\.0\.1: icmp_seq=1 ttl=\d+ time=[\d.]+ ms/);
});

test('static-website on unix --net socket: types, ETag, Last-Modified, conditional GET, ranges', async (t) => {
  const { args, buildDir } = exampleArgs('static-website');
  await configureAndBuild(args, ['-t', 'unix', '--net', 'socket', '--bind', '127.0.0.1']);
  const port = await freePort();
  const u = start(buildDir, [`--port=${port}`]);
  try {
    await u.waitFor(/serving on port/);
    const css = await get(port, '/css/site.css');
    t.is(css.status, 200);
    t.is(css.headers['content-type'], 'text/css; charset=utf-8');
    t.is(css.headers['accept-ranges'], 'bytes');
    const etag = css.headers.etag!;
    t.regex(etag, /^"[0-9a-f]{32}"$/);
    const lastModified = css.headers['last-modified']!;
    t.false(Number.isNaN(Date.parse(lastModified)));
    t.is((await get(port, '/css/site.css', { 'If-None-Match': etag })).status, 304);
    t.is((await get(port, '/css/site.css', { 'If-None-Match': `"other", W/${etag}` })).status, 304);
    t.is((await get(port, '/css/site.css', { 'If-None-Match': '"other"' })).status, 200);
    t.is((await get(port, '/css/site.css', { 'If-Modified-Since': lastModified })).status, 304);
    t.is((await get(port, '/css/site.css', { 'If-Modified-Since': new Date(Date.parse(lastModified) - 1000).toUTCString() })).status, 200);

    const robots = 'User-agent: *\nAllow: /\n';
    const part = await get(port, '/robots.txt', { Range: 'bytes=5-9' });
    t.is(part.status, 206);
    t.is(part.body, robots.slice(5, 10));
    t.is(part.headers['content-range'], `bytes 5-9/${robots.length}`);
    t.is((await get(port, '/robots.txt', { Range: 'bytes=-4' })).body, robots.slice(-4));
    t.is((await get(port, '/robots.txt', { Range: 'bytes=10-' })).body, robots.slice(10));
    const unsatisfiable = await get(port, '/robots.txt', { Range: 'bytes=999-' });
    t.is(unsatisfiable.status, 416);
    t.is(unsatisfiable.headers['content-range'], `bytes */${robots.length}`);
    const robotsTag = (await get(port, '/robots.txt')).headers.etag!;
    t.is((await get(port, '/robots.txt', { Range: 'bytes=0-3', 'If-Range': robotsTag })).status, 206);
    t.is((await get(port, '/robots.txt', { Range: 'bytes=0-3', 'If-Range': '"stale"' })).status, 200);

    const head = await get(port, '/', {}, 'HEAD');
    t.is(head.status, 200);
    t.is(head.body, '');
    t.truthy(head.headers['content-length']);
    t.is((await get(port, '/missing.html')).status, 404);
    t.is((await get(port, '/../config.ts')).status, 404);
    t.is((await get(port, '/', {}, 'POST')).status, 405);
  } finally {
    t.is(await u.stop(), 0);
  }
});

// ---------------------------------------------------------------------------------------------
// describe, query, help, clean

(hasDot ? test : test.skip)('describe --dot output parses with Graphviz dot', async (t) => {
  const { args } = exampleArgs('static-website');
  const r = await morgana(['describe', ...args, '--dot']);
  t.is(r.code, 0, r.stderr);
  const dot = spawnSync('dot', ['-Tsvg'], { input: r.stdout, encoding: 'utf8' });
  t.is(dot.status, 0, dot.stderr);
  t.regex(dot.stdout, /<svg/);
  const text = await morgana(['describe', ...args]);
  t.regex(text.stdout, /defaultNet0: defaultNet\(\) \[net\]\n\s+stack0: stack\(.*\) \[stack\] <- net=defaultNet0\n\s+http0: http\(\) \[http\] <- stack=stack0 {2}-> start: http\n\s+crunch0: crunch\(dir="\.\/htdocs"\) \[kv\] {2}-> start: htdocs/);
});

test('query packages, devices and keys', async (t) => {
  const { args } = exampleArgs('ping');
  const packages = await morgana(['query', 'packages', ...args, '--json']);
  t.is(packages.code, 0, packages.stderr);
  t.deepEqual(JSON.parse(packages.stdout), { morgana: '>=0.1.0 <0.2.0' });
  const devices = await morgana(['query', 'devices', ...args]);
  t.is(devices.stdout, 'defaultNet0 defaultNet [net]\nstack0 stack [stack] <- net=defaultNet0 -> stack\n');
  const keys = JSON.parse((await morgana(['query', 'keys', ...args, '--json'])).stdout) as Array<{ name: string; type: string; default: string | null }>;
  t.deepEqual(
    keys.map((k) => [k.name, k.type, k.default]),
    [
      ['count', 'int', '3'],
      ['interval', 'duration', '200ms'],
      ['timeout', 'duration', '1s'],
      ['size', 'int', '56'],
      ['interface', 'string', 'tap0'],
      ['tap-offload', 'bool', 'true'],
      ['ipv4', 'ipv4', '10.0.0.2/24'],
      ['ipv4-gateway', 'ipv4Address', null],
      ['ipv6', 'ipv6', null],
      ['ipv6-gateway', 'ipv6Address', null],
      ['accept-router-advertisements', 'bool', 'true'],
      ['ipv4-only', 'bool', 'false'],
      ['ipv6-only', 'bool', 'false'],
    ],
  );
  const solo5 = await morgana(['query', 'manifest', ...args]);
  t.is(solo5.code, 64);
  t.regex(solo5.stderr, /Solo5 targets/);
  t.is((await morgana(['query', ...args])).code, 64);
});

test('--help on every command, and the unikernel --help lists runtime keys with configured defaults', async (t) => {
  for (const command of ['configure', 'build', 'run', 'clean', 'describe', 'query']) {
    const r = await morgana([command, '--help']);
    t.is(r.code, 0, command);
    t.regex(r.stdout, new RegExp(`^usage: morgana ${command}`), command);
  }
  t.regex((await morgana(['configure', '--help'])).stdout, /vnet .*forward/s);
  const { args } = exampleArgs('ping');
  await configureAndBuild(args, ['-t', 'vnet', '--count=9']);
  const help = await morgana(['run', ...args, '--', '--help']);
  t.is(help.code, 63);
  t.regex(help.stdout, /--count=INT\s+Echo requests sent to each address\. \(default 9\)/);
  t.regex(help.stdout, /--timeout=DURATION\s+How long to wait for each reply\. \(default 1s\)/);
});

test('configure writes dependencies with ranges and pins; build links local pins and reports missing packages', async (t) => {
  const lib = project({ 'package.json': JSON.stringify({ name: 'my-lib', version: '1.0.0', type: 'module', main: 'index.js' }), 'index.js': 'export const answer = 42;\n' });
  const dir = project({
    'config.ts': `import { main, npmPackage } from 'morgana/config';
export default main('./unikernel.ts', {}, { packages: [npmPackage('my-lib', { path: ${JSON.stringify(lib)} }), npmPackage('left-pad', '>=1.2.0'), npmPackage('left-pad', '<1.4.0'), npmPackage('some-tool', { git: 'https://example.org/some-tool.git#v2' })] });
`,
    'unikernel.ts': `import { answer } from 'my-lib';\nexport async function start() { console.log('answer', answer); }\n`,
  });
  const r = await morgana(['configure', '-t', 'vnet'], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  const pkg = JSON.parse(readFileSync(join(dir, '_build', 'package.json'), 'utf8'));
  t.deepEqual(pkg.dependencies, {
    morgana: '>=0.1.0 <0.2.0',
    'left-pad': '>=1.2.0 <1.4.0',
    'my-lib': `file:${join('..', '..', lib.split('/').pop()!)}`,
    'some-tool': 'git+https://example.org/some-tool.git#v2',
  });
  t.is(pkg.type, 'module');
  const b = await morgana(['build'], { cwd: dir });
  t.is(b.code, 1);
  t.regex(b.stderr, /missing dependencies left-pad@>=1\.2\.0 <1\.4\.0, some-tool@git\+https/);
  t.true(existsSync(join(dir, '_build', 'node_modules', 'my-lib', 'index.js')));
});

test('clean removes the build folder, and only one that configure made', async (t) => {
  const dir = project({ 'config.ts': `import { main } from 'morgana/config';\nexport default main('./unikernel.ts', {});\n`, 'unikernel.ts': 'export async function start() {}\n' });
  t.is((await morgana(['configure', '-t', 'vnet'], { cwd: dir })).code, 0);
  t.is((await morgana(['build'], { cwd: dir })).code, 0);
  const run = await morgana(['run'], { cwd: dir });
  t.is(run.code, 0, run.stderr);
  t.true(statSync(join(dir, '_build')).isDirectory());
  t.is((await morgana(['clean'], { cwd: dir })).code, 0);
  t.false(existsSync(join(dir, '_build')));
  t.regex((await morgana(['clean'], { cwd: dir })).stdout, /nothing to clean/);
  const other = project({ 'config.ts': `import { main } from 'morgana/config';\nexport default main('./u.ts', {});\n`, 'mine/keep.txt': 'precious' });
  const refused = await morgana(['clean', '-b', 'mine'], { cwd: other });
  t.is(refused.code, 64);
  t.true(existsSync(join(other, 'mine', 'keep.txt')));
});

// ---------------------------------------------------------------------------------------------
// Errors a user can act on

test('errors: unknown target, unsupported device, missing config.ts, bad key values, wrong order (exit 64)', async (t) => {
  const { args } = exampleArgs('echo');
  const unknownTarget = await morgana(['configure', ...args, '-t', 'xen']);
  t.is(unknownTarget.code, 64);
  t.regex(unknownTarget.stderr, /unknown target "xen".*targets: unix, vnet/);

  const withTap = project({
    'config.ts': `import { main, stack, tap } from 'morgana/config';\nexport default main('./unikernel.ts', { stack: stack(tap('tap7')) });\n`,
    'unikernel.ts': 'export async function start() {}\n',
  });
  const unsupported = await morgana(['configure', '-t', 'vnet'], { cwd: withTap });
  t.is(unsupported.code, 64);
  t.regex(unsupported.stderr, /device tap0: tap\(\) needs a TAP device, which target vnet cannot provide/);
  const socketTap = await morgana(['configure', '-t', 'unix', '--net', 'socket'], { cwd: withTap });
  t.is(socketTap.code, 64);
  t.regex(socketTap.stderr, /unix --net socket has none/);

  const empty = project({ 'README': 'no config here' });
  const missing = await morgana(['configure', '-t', 'vnet'], { cwd: empty });
  t.is(missing.code, 64);
  t.regex(missing.stderr, /no config\.ts in /);
  t.is((await morgana(['describe'], { cwd: empty })).code, 64);

  const badValue = await morgana(['configure', ...args, '-t', 'vnet', '--port=seven']);
  t.is(badValue.code, 64);
  t.regex(badValue.stderr, /invalid value "seven" for --port \(int\): expected an integer/);
  const unknownKey = await morgana(['configure', ...args, '-t', 'vnet', '--colour=blue']);
  t.is(unknownKey.code, 64);
  t.regex(unknownKey.stderr, /unknown option --colour/);
  t.is((await morgana(['configure', ...args, '-t', 'vnet', '--forward', '80'])).code, 64);
  t.is((await morgana(['configure', ...args, '-t', 'unix', '--forward', '8080:80'])).code, 64);
  t.is((await morgana(['configure', ...args, '-t', 'unix', '--net', 'wifi'])).code, 64);

  const notConfigured = await morgana(['build', ...args]);
  t.is(notConfigured.code, 64);
  t.regex(notConfigured.stderr, /not configured: run morgana configure/);
  t.is((await morgana(['run', ...args])).code, 64);
  t.is((await morgana(['build', ...args, '--frobnicate'])).code, 64);
  t.is((await morgana(['run', ...args, 'stray'])).code, 64);

  const broken = project({ 'config.ts': `import { main } from 'morgana/config';\nexport default main('./u.ts', {}) +;\n` });
  const syntax = await morgana(['configure', '-t', 'vnet'], { cwd: broken });
  t.is(syntax.code, 64);
  t.regex(syntax.stderr, /^morgana configure: config\.ts:2:36: error TS1109: Expression expected\.$/m);
  const noDefault = project({ 'config.ts': `export const x = 1;\n` });
  const notMain = await morgana(['configure', '-t', 'vnet'], { cwd: noDefault });
  t.is(notMain.code, 64);
  t.regex(notMain.stderr, /must export default main/);
});

test('errors at boot: bad and unknown runtime keys, bad quoting (exit 64), runtime-only keys refused at configure', async (t) => {
  const dir = project({
    'config.ts': `import { key, main } from 'morgana/config';
const hello = key.string('hello', { default: 'Hello World!', doc: 'How to say hello.', stage: 'runtime' });
const times = key.int('times', { default: 1, doc: 'How often.' });
export default main('./unikernel.ts', {}, { keys: { hello, times } });
`,
    'unikernel.ts': `export async function start(_d, { keys, argv }) { for (let i = 0; i < keys.times; i++) console.log(JSON.stringify([keys.hello, ...argv])); }\n`,
  });
  const refused = await morgana(['configure', '-t', 'vnet', '--hello=x'], { cwd: dir });
  t.is(refused.code, 64);
  t.regex(refused.stderr, /--hello is a runtime key/);
  t.is((await morgana(['configure', '-t', 'vnet', '--times=2'], { cwd: dir })).code, 0);
  t.is((await morgana(['build'], { cwd: dir })).code, 0);
  const ok = await morgana(['run', '--', '--hello=foo\\ bar', 'a"b c"', 'd'], { cwd: dir });
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout, '["foo bar","ab c","d"]\n["foo bar","ab c","d"]\n');
  const bad = await morgana(['run', '--', '--times=lots'], { cwd: dir });
  t.is(bad.code, 64);
  t.regex(bad.stderr, /invalid value "lots" for --times/);
  const unknown = await morgana(['run', '--', '--goodbye'], { cwd: dir });
  t.is(unknown.code, 64);
  t.regex(unknown.stderr, /unknown option --goodbye/);
  const quoting = await morgana(['run', '--', '"unterminated'], { cwd: dir });
  t.is(quoting.code, 64);
  t.regex(quoting.stderr, /unterminated double quote/);
});

test('stack(…, { dhcp: true }) on vnet: the gateway serves DHCP, and forwards reach the leased address', async (t) => {
  const dir = project({
    'config.ts': `import { defaultNet, main, stack } from 'morgana/config';\nexport default main('./unikernel.ts', { stack: stack(defaultNet(), { dhcp: true }) });\n`,
    'unikernel.ts': `export async function start({ stack }, { signal }) {
  const reply = await stack.icmp.ping('10.0.0.1');
  const socket = stack.udp.bind(7, (data, from) => socket.send(from.address, from.port, data));
  console.log('leased ' + stack.address + ', gateway answered from ' + reply.from);
  await new Promise((resolve) => signal.addEventListener('abort', resolve));
}
`,
  });
  t.is((await morgana(['configure', '-t', 'vnet', '--forward', 'udp:0:7'], { cwd: dir })).code, 0);
  t.is((await morgana(['build'], { cwd: dir })).code, 0);
  const u = start(join(dir, '_build'), []);
  try {
    const m = await u.waitFor(/leased (10\.0\.0\.\d+), gateway answered from 10\.0\.0\.1/);
    t.not(m[1], '10.0.0.1');
    const port = Number((await u.waitFor(/forwarding udp 127\.0\.0\.1:(\d+) -> (10\.0\.0\.\d+):7/))[1]);
    t.is(await udpExchange(port, 'via dhcp'), 'via dhcp');
  } finally {
    t.is(await u.stop(), 0);
  }
});
