import test from 'ava';
import { spawnSync } from 'node:child_process';
import { config } from 'morgana';

const { device, key, main, deviceGraph, boot, targetConfig } = config;

type Events = string[];

function recorded(events: Events, name: string, deps: Record<string, config.Device<unknown>> = {}, fail = false) {
  return device<string, Record<string, config.Device<unknown>>>({
    impl: name,
    provides: 'thing',
    deps,
    async connect(_ctx, d) {
      events.push(`connect ${name}(${Object.entries(d).map(([k, v]) => `${k}=${v}`).join(',')})`);
      if (fail) throw new Error(`${name} refused`);
      return `${name}!`;
    },
    async disconnect(value) {
      events.push(`disconnect ${value}`);
    },
  });
}

function manifestFor(c: config.Config, configured: Record<string, string> = {}): config.BootManifest {
  return {
    name: 'test',
    target: targetConfig('unix', { net: 'socket', bind: '127.0.0.1' }),
    configured,
    projectDir: process.cwd(),
    buildDir: process.cwd(),
    devices: deviceGraph(c).nodes.map((n) => n.id),
    morgana: '0.0.0',
  };
}

function diamond(events: Events) {
  const random = recorded(events, 'random');
  const a = recorded(events, 'a', { random });
  const b = recorded(events, 'b', { random });
  const c = recorded(events, 'c', { left: a, right: b });
  return { random, a, b, c };
}

test('the graph holds each shared device once, dependencies first', (t) => {
  const { c, a } = diamond([]);
  const graph = deviceGraph(main('./u.ts', { top: c, alsoA: a }));
  t.deepEqual(
    graph.nodes.map((n) => n.id),
    ['random0', 'a0', 'b0', 'c0'],
  );
  t.deepEqual(graph.nodes[3]!.deps, { left: 'a0', right: 'b0' });
  t.deepEqual(graph.nodes[1]!.roles, ['alsoA']);
  t.deepEqual(graph.nodes[3]!.roles, ['top']);
  const twice = recorded([], 'x');
  t.deepEqual(deviceGraph(main('./u.ts', { one: twice, two: twice })).nodes.map((n) => [n.id, n.roles]), [['x0', ['one', 'two']]]);
});

test('boot connects in dependency order, once each, and stops in reverse', async (t) => {
  const events: Events = [];
  const { c, a } = diamond(events);
  const cfg = main('./u.ts', { top: c, alsoA: a });
  let seen: unknown;
  const code = await boot(cfg, manifestFor(cfg), [], async () => ({
    start: async (devices: unknown) => {
      seen = devices;
      events.push('start');
    },
  }));
  t.is(code, 0);
  t.deepEqual(seen, { top: 'c!', alsoA: 'a!' });
  t.deepEqual(events, [
    'connect random()',
    'connect a(random=random!)',
    'connect b(random=random!)',
    'connect c(left=a!,right=b!)',
    'start',
    'disconnect c!',
    'disconnect b!',
    'disconnect a!',
    'disconnect random!',
  ]);
});

test('a device that fails to connect stops the ones already connected, exit 1', async (t) => {
  const events: Events = [];
  const random = recorded(events, 'random');
  const a = recorded(events, 'a', { random });
  const broken = recorded(events, 'broken', { a }, true);
  const cfg = main('./u.ts', { broken });
  const code = await boot(cfg, manifestFor(cfg), [], async () => ({ start: async () => events.push('start') }));
  t.is(code, 1);
  t.deepEqual(events, ['connect random()', 'connect a(random=random!)', 'connect broken(a=a!)', 'disconnect a!', 'disconnect random!']);
});

test('key values: runtime over configure-time over default; configure-only keys are not boot options', async (t) => {
  const greeting = key.string('greeting', { default: 'hello' });
  const times = key.int('times', { default: 1, stage: 'runtime' });
  const mode = key.string('mode', { default: 'fast', stage: 'configure' });
  const cfg = main('./u.ts', {}, { keys: { greeting, times, mode } });
  const run = async (configured: Record<string, string>, args: string[]) => {
    let got: unknown;
    const code = await boot(cfg, manifestFor(cfg, configured), args, async () => ({
      start: async (_d: unknown, ctx: { keys: unknown; argv: string[] }) => {
        got = { keys: ctx.keys, argv: ctx.argv };
        return 0;
      },
    }));
    return { code, got };
  };
  t.deepEqual(await run({}, []), { code: 0, got: { keys: { greeting: 'hello', times: 1, mode: 'fast' }, argv: [] } });
  t.deepEqual(await run({ greeting: 'hi', mode: 'slow' }, []), { code: 0, got: { keys: { greeting: 'hi', times: 1, mode: 'slow' }, argv: [] } });
  t.deepEqual(await run({ greeting: 'hi' }, ['--greeting=hey\\', 'you', '--times', '3', 'rest']), {
    code: 0,
    got: { keys: { greeting: 'hey you', times: 3, mode: 'fast' }, argv: ['rest'] },
  });
  t.is((await run({}, ['--mode=slow'])).code, 64, 'configure-time key at boot');
  t.is((await run({}, ['--times=many'])).code, 64, 'bad value');
  t.is((await run({}, ['"unterminated'])).code, 64, 'bad boot command line');
  t.is((await run({}, ['--help'])).code, 63, 'help');
});

test('start: its integer result is the exit code, a failure exits 1, a missing start exits 1', async (t) => {
  const cfg = main('./u.ts', {});
  t.is(await boot(cfg, manifestFor(cfg), [], async () => ({ start: async () => 3 })), 3);
  t.is(await boot(cfg, manifestFor(cfg), [], async () => ({ start: async () => Promise.reject(new Error('boom')) })), 1);
  t.is(await boot(cfg, manifestFor(cfg), [], async () => ({})), 1);
  const changed = { ...manifestFor(cfg), devices: ['other0'] };
  t.is(await boot(cfg, changed, [], async () => ({ start: async () => 0 })), 1, 'config changed since configure');
});

test('two different keys with one name are refused', (t) => {
  const cfg = main('./u.ts', {}, { keys: { a: key.int('port'), b: key.int('port') } });
  t.throws(() => deviceGraph(cfg), { code: 'ERR_CONFIG_DUPLICATE_KEY' });
});

test('a target says which devices it cannot provide', (t) => {
  const withTap = deviceGraph(main('./u.ts', { s: config.stack(config.tap('tap0')) }));
  t.throws(() => config.checkTarget(withTap, targetConfig('vnet')), { code: 'ERR_DEVICE_UNSUPPORTED', message: /tap\(\).*vnet/ });
  t.throws(() => config.checkTarget(withTap, targetConfig('unix', { net: 'socket' })), { code: 'ERR_DEVICE_UNSUPPORTED' });
  t.notThrows(() => config.checkTarget(withTap, targetConfig('unix')));
  const withVnet = deviceGraph(main('./u.ts', { s: config.stack(config.vnet()) }));
  t.throws(() => config.checkTarget(withVnet, targetConfig('unix')), { code: 'ERR_DEVICE_UNSUPPORTED', message: /vnet\(\)/ });
  const portable = deviceGraph(main('./u.ts', { s: config.stack(config.defaultNet()), kv: config.memKv(), r: config.random(), c: config.console() }));
  for (const t1 of [targetConfig('vnet'), targetConfig('unix'), targetConfig('unix', { net: 'socket' })]) t.notThrows(() => config.checkTarget(portable, t1));
});

test('target options are checked', (t) => {
  t.throws(() => targetConfig('hvt'), { code: 'ERR_UNKNOWN_TARGET', message: /unix, vnet/ });
  t.throws(() => targetConfig('unix', { forward: ['8080:80'] }), { code: 'ERR_USAGE' });
  t.throws(() => targetConfig('vnet', { net: 'socket' }), { code: 'ERR_USAGE' });
  t.throws(() => targetConfig('unix', { net: 'carrier-pigeon' }), { code: 'ERR_USAGE' });
  t.deepEqual(config.parseForward('8080:80'), { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestAddress: undefined, guestPort: 80 });
  t.deepEqual(config.parseForward('udp:0.0.0.0:5353:10.0.0.3:53'), { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 5353, guestAddress: '10.0.0.3', guestPort: 53 });
  t.deepEqual(config.parseForward('127.0.0.1:0:80').hostAddress, '127.0.0.1');
  t.deepEqual(config.parseForward('8080:10.0.0.5:80').guestAddress, '10.0.0.5');
  for (const bad of ['80', '8080:0', '70000:80', 'sctp:1:2', 'a:b', '1:2:3:4:5']) t.throws(() => config.parseForward(bad), { code: 'ERR_USAGE' }, bad);
});

test('npm packages: ranges intersect, pins win, Morgana gets lower and upper bounds', (t) => {
  const { npmPackage, mergePackages, morganaRange, dependencyValue } = config;
  t.is(morganaRange('0.1.0'), '>=0.1.0 <0.2.0');
  t.is(morganaRange('1.4.2'), '>=1.4.2 <2.0.0');
  const merged = mergePackages([npmPackage('b', '>=1.2.0'), npmPackage('a', '^2.0.0'), npmPackage('b', '<1.5.0'), npmPackage('c'), npmPackage('d', '^1'), npmPackage('d', { git: 'https://example.org/d.git#v1' })]);
  t.deepEqual(
    merged.map((p) => [p.name, dependencyValue(p, '/p', '/p/_build')]),
    [
      ['a', '^2.0.0'],
      ['b', '>=1.2.0 <1.5.0'],
      ['c', '*'],
      ['d', 'git+https://example.org/d.git#v1'],
    ],
  );
  t.is(dependencyValue(npmPackage('local', { path: '../lib' }), '/p/app', '/p/app/_build'), 'file:../../lib');
  t.is(dependencyValue(npmPackage('gh', { git: 'github:me/gh#main' }), '/p', '/p/_build'), 'github:me/gh#main');
  t.throws(() => mergePackages([npmPackage('x', { path: 'a' }), npmPackage('x', { path: 'b' })]), { code: 'ERR_CONFIG_PACKAGE_CONFLICT' });
  t.throws(() => npmPackage('Bad Name'), { code: 'ERR_CONFIG_INVALID_PACKAGE' });
  t.throws(() => npmPackage('x', 'not$a$range'), { code: 'ERR_CONFIG_INVALID_PACKAGE' });
});

const hasDot = spawnSync('dot', ['-V']).status === 0;
(hasDot ? test : test.skip)('describe as DOT parses with Graphviz', (t) => {
  const { c, a } = diamond([]);
  const port = key.int('port', { default: 80 });
  const cfg = main('./u "quoted".ts', { top: c, alsoA: a, s: config.stack(config.defaultNet(), { ipv4: key.ipv4('addr', { default: '10.0.0.9/24' }) }) }, { keys: { port } });
  const dot = config.describeDot(cfg, deviceGraph(cfg));
  const r = spawnSync('dot', ['-Tplain'], { input: dot, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  for (const id of ['random0', 'a0', 'b0', 'c0', 'defaultNet0', 'stack0', 'main']) t.regex(r.stdout, new RegExp(`^node ${id} `, 'm'));
  t.regex(r.stdout, /^edge c0 a0 /m);
  t.regex(r.stdout, /^edge main c0 /m);
  t.regex(config.describeText(cfg, deviceGraph(cfg)), /stack0: stack\(ipv4=--addr, gateway=--ipv4-gateway\) \[stack\] <- net=defaultNet0/);
});
