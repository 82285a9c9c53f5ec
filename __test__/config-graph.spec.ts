import test from 'ava';
import { spawnSync } from 'node:child_process';
import { type Stack, config, createStack, parseIpv6Address } from 'morgana';
import { configureAndBuild, exampleArgs, morgana, project, start, tcpExchange, udpExchange } from './helpers/unikernel.js';

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
  t.is(targetConfig('vnet').mtu, 1500);
  t.is(targetConfig('vnet', { mtu: '65520' }).mtu, 65_520);
  for (const bad of ['67', '65536', '1500.5', 'jumbo', '', '-1']) t.throws(() => targetConfig('vnet', { mtu: bad }), { code: 'ERR_USAGE', message: /--mtu/ }, bad);
  t.throws(() => targetConfig('unix', { mtu: '9000' }), { code: 'ERR_USAGE', message: /vnet target only/ });
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
  t.regex(r.stdout, /accept-router-advertisements/, 'the IPv6 keys are in the labels');
  t.regex(
    config.describeText(cfg, deviceGraph(cfg)),
    /stack0: stack\(ipv4=--addr, gateway=--ipv4-gateway, ipv6=--ipv6, gateway6=--ipv6-gateway, acceptRouterAdvertisements=--accept-router-advertisements, ipv4Only=--ipv4-only, ipv6Only=--ipv6-only\) \[stack\] <- net=defaultNet0/,
  );
});

// ---------------------------------------------------------------------------------------------
// The stack device and its IPv6 keys, booted on the vnet target in this process

function vnetManifest(c: config.Config): config.BootManifest {
  return { ...manifestFor(c), target: targetConfig('vnet') };
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Runs `body` with what boot writes to stdout and stderr captured. */
async function captured<T>(body: () => Promise<T>): Promise<{ value: T; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write };
  process.stdout.write = ((chunk: string | Uint8Array) => ((out.stdout += chunk.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((out.stderr += chunk.toString()), true)) as typeof process.stderr.write;
  try {
    return { value: await body(), ...out };
  } finally {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
  }
}

/** Boots `stack(defaultNet())` (plus `extra` devices, connected first) on vnet with `args`, running `check` as the unikernel. */
async function bootStack(args: string[], check: (stack: Stack) => Promise<void>, extra: Record<string, config.Device<unknown>> = {}) {
  const cfg = main('./u.ts', { ...extra, stack: config.stack(config.defaultNet()) });
  let ran = false;
  const result = await captured(() =>
    boot(cfg, vnetManifest(cfg), args, async () => ({
      start: async ({ stack }: { stack: Stack }) => {
        await check(stack);
        ran = true;
      },
    })),
  );
  return { code: result.value, ran, stdout: result.stdout, stderr: result.stderr };
}

const VNET_PREFIX = 'fd6d:6f72:6761:6e61:';

test.serial('stack() on vnet is dual-stack by default: IPv4 as before, a usable link-local address at start, SLAAC from the gateway', async (t) => {
  const r = await bootStack([], async (stack) => {
    t.is(stack.address, '10.0.0.2');
    t.is((await stack.icmp.ping('10.0.0.1')).from, '10.0.0.1');
    const ll = stack.ipv6!.addresses().find((a) => a.startsWith('fe80:'));
    t.truthy(ll, 'the link-local address passed DAD before start');
    const global = await until('a SLAAC address', () => stack.ipv6!.addresses().find((a) => a.startsWith(VNET_PREFIX)));
    t.is(stack.slaac!.addresses().find((a) => a.address === global)!.origin, 'slaac');
    t.is(stack.ipv6!.interfaces[0]!.routers.length, 1, 'the gateway is the default router');
    t.is((await stack.icmpv6!.ping(`${VNET_PREFIX}:1`, { timeoutMs: 2000 })).from, `${VNET_PREFIX}:1`);
  });
  t.is(r.code, 0, r.stderr);
  t.true(r.ran);
  t.regex(r.stderr, /vnet: IPv6 router fd6d:6f72:6761:6e61::1\/64, advertising fd6d:6f72:6761:6e61::\/64/);
  t.regex(r.stderr, /stack0: IPv6 fe80::[0-9a-f:]+/);
});

test.serial('--ipv4-only: no IPv6 at all', async (t) => {
  const r = await bootStack(['--ipv4-only'], async (stack) => {
    t.is(stack.ipv6, undefined);
    t.is(stack.icmpv6, undefined);
    t.is(stack.slaac, undefined);
    t.is((await stack.icmp.ping('10.0.0.1')).from, '10.0.0.1');
    t.throws(() => stack.udp.send('fe80::1', 7, Buffer.from('x')), { code: 'ERR_NO_ROUTE' });
  });
  t.is(r.code, 0, r.stderr);
  t.true(r.ran);
  t.notRegex(r.stderr, /IPv6 router/, 'nor does the gateway route IPv6');
});

test.serial('--ipv6-only: no IPv4 address, IPv6 autoconfigured', async (t) => {
  const r = await bootStack(['--ipv6-only=true'], async (stack) => {
    t.is(stack.address, '0.0.0.0');
    await t.throwsAsync(stack.icmp.ping('10.0.0.1', { timeoutMs: 300 }));
    const global = await until('a SLAAC address', () => stack.ipv6!.addresses().find((a) => a.startsWith(VNET_PREFIX)));
    t.truthy(global);
    t.is((await stack.icmpv6!.ping(`${VNET_PREFIX}:1`, { timeoutMs: 2000 })).from, `${VNET_PREFIX}:1`);
  });
  t.is(r.code, 0, r.stderr);
  t.true(r.ran);
});

test.serial('--ipv6 and --ipv6-gateway: a static address; the gateway routes that prefix and advertises it without SLAAC', async (t) => {
  const r = await bootStack(['--ipv6=2001:DB8::2/64', '--ipv6-gateway', '2001:db8::1'], async (stack) => {
    t.true(stack.ipv6!.addresses().includes('2001:db8::2'), 'the static address passed DAD before start');
    t.is(stack.slaac!.addresses().find((a) => a.address === '2001:db8::2')!.origin, 'static');
    t.is((await stack.icmpv6!.ping('2001:db8::1', { timeoutMs: 2000 })).from, '2001:db8::1');
    await until('the gateway router advertisement', () => stack.ipv6!.interfaces[0]!.routers.length > 0);
    t.deepEqual(
      stack.slaac!.addresses().filter((a) => a.origin === 'slaac').map((a) => a.address),
      [],
      'the prefix was advertised without the A flag',
    );
  });
  t.is(r.code, 0, r.stderr);
  t.true(r.ran);
  t.regex(r.stderr, /IPv6 router 2001:db8::1\/64, advertising 2001:db8::\/64/);
});

/** A router on the vnet switch that advertises 2001:db8:77::/64 ten times a second. */
function chattyRouter() {
  return config.device<Stack>({
    impl: 'router',
    provides: 'router',
    connect: (ctx) =>
      createStack({
        net: ctx.vswitch!.connect(),
        ipv6: { address: '2001:db8:77::1/64', dadTransmits: 0, routerAdvertisements: { prefixes: ['2001:db8:77::/64'], intervalMs: 100 } },
      }),
    disconnect: (s) => s.close(),
  });
}

test.serial('--accept-router-advertisements=false: advertisements are heard and ignored (no SLAAC, no router, no route)', async (t) => {
  const ignoring = await bootStack(
    ['--accept-router-advertisements=false'],
    async (stack) => {
      await until('router advertisements', () => stack.stats().nd!.routerAdvertisementsReceived >= 2);
      t.deepEqual(stack.ipv6!.interfaces[0]!.routers, []);
      t.deepEqual(stack.ipv6!.addresses().filter((a) => !a.startsWith('fe80:')), []);
      t.is(stack.ipv6!.route(parseIpv6Address('2001:db8:77::1')), undefined);
      t.is(stack.stats().nd!.routerSolicitationsSent, 0, 'nor does it solicit them');
    },
    { router: chattyRouter() },
  );
  t.is(ignoring.code, 0, ignoring.stderr);
  t.true(ignoring.ran);
  // The same router with the default (true): an address in its prefix.
  const accepting = await bootStack(
    [],
    async (stack) => {
      const address = await until('a SLAAC address from the router', () => stack.ipv6!.addresses().find((a) => a.startsWith('2001:db8:77:')));
      t.is((await stack.icmpv6!.ping('2001:db8:77::1', { timeoutMs: 2000, size: 64 })).from, '2001:db8:77::1', `from ${address}`);
    },
    { router: chattyRouter() },
  );
  t.is(accepting.code, 0, accepting.stderr);
  t.true(accepting.ran);
});

test.serial('a static IPv6 address already on the link fails the boot (duplicate address detection)', async (t) => {
  const squatter = config.device<Stack>({
    impl: 'squatter',
    provides: 'other',
    connect: (ctx) => createStack({ net: ctx.vswitch!.connect(), ipv6: { address: '2001:db8::2/64', dadTransmits: 0 } }),
    disconnect: (s) => s.close(),
  });
  const r = await bootStack(['--ipv6=2001:db8::2/64'], async () => {}, { squatter });
  t.is(r.code, 1);
  t.false(r.ran);
  t.regex(r.stderr, /boot failed: 2001:db8::2 is already in use on the link/);
});

test.serial('conflicting stack keys are usage errors at boot (exit 64), and --help lists the IPv6 keys', async (t) => {
  const both = await bootStack(['--ipv4-only', '--ipv6-only'], async () => {});
  t.is(both.code, 64);
  t.false(both.ran);
  t.regex(both.stderr, /device stack0: --ipv4-only and --ipv6-only exclude each other/);
  const bad = await bootStack(['--ipv6=2001:db8::2'], async () => {});
  t.is(bad.code, 64);
  t.regex(bad.stderr, /invalid value "2001:db8::2" for --ipv6 \(ipv6\): expected an IPv6 unicast address with its prefix/);
  const badGateway = await bootStack(['--ipv6-gateway=ff02::2'], async () => {});
  t.is(badGateway.code, 64);
  const help = await bootStack(['--help'], async () => {});
  t.is(help.code, 63);
  t.regex(help.stdout, /--ipv6=ADDRESS\/PREFIX +A static IPv6 address and prefix of the unikernel .*\(no default\)/);
  t.regex(help.stdout, /--ipv6-gateway=ADDRESS +IPv6 default router/);
  t.regex(help.stdout, /--accept-router-advertisements=BOOL +Accept IPv6 router advertisements.*\(default true\)/);
  t.regex(help.stdout, /--ipv4-only=BOOL +IPv4 only.*\(default false\)/);
  t.regex(help.stdout, /--ipv6-only=BOOL +IPv6 only.*\(default false\)/);
  // DHCP is IPv4: a DHCP stack cannot be IPv6-only.
  const dhcp = main('./u.ts', { stack: config.stack(config.defaultNet(), { dhcp: true }) });
  const refused = await captured(() => boot(dhcp, vnetManifest(dhcp), ['--ipv6-only'], async () => ({ start: async () => {} })));
  t.is(refused.value, 64);
  t.regex(refused.stderr, /--ipv6-only turns IPv4 off, and this stack is configured by DHCP/);
  // Literal options are named as such.
  const literal = main('./u.ts', { stack: config.stack(config.defaultNet(), { ipv4Only: true, ipv6Only: true }) });
  const r = await captured(() => boot(literal, vnetManifest(literal), [], async () => ({ start: async () => {} })));
  t.is(r.value, 64);
  t.regex(r.stderr, /ipv4Only and ipv6Only exclude each other/);
});

test('morgana configure refuses conflicting stack keys and bad IPv6 values (exit 64); describe and query show the keys', async (t) => {
  const dir = project({
    'config.ts': `import { defaultNet, main, stack } from 'morgana/config';\nexport default main('./unikernel.ts', { stack: stack(defaultNet()) });\n`,
    'unikernel.ts': 'export async function start() {}\n',
  });
  const both = await morgana(['configure', '-t', 'vnet', '--ipv4-only', '--ipv6-only'], { cwd: dir });
  t.is(both.code, 64);
  t.regex(both.stderr, /--ipv4-only and --ipv6-only exclude each other/);
  const bad = await morgana(['configure', '-t', 'vnet', '--ipv6-gateway=2001:db8::1/64'], { cwd: dir });
  t.is(bad.code, 64);
  t.regex(bad.stderr, /invalid value "2001:db8::1\/64" for --ipv6-gateway \(ipv6Address\)/);
  const ok = await morgana(['configure', '-t', 'vnet', '--ipv6', '2001:DB8::2/64', '--ipv6-only'], { cwd: dir });
  t.is(ok.code, 0, ok.stderr);
  const describe = await morgana(['describe'], { cwd: dir });
  t.regex(describe.stdout, /stack0: stack\(ipv4=--ipv4, gateway=--ipv4-gateway, ipv6=--ipv6, gateway6=--ipv6-gateway, acceptRouterAdvertisements=--accept-router-advertisements, ipv4Only=--ipv4-only, ipv6Only=--ipv6-only\)/);
  t.regex(describe.stdout, /keys: .*--ipv6 \(ipv6, both\), --ipv6-gateway \(ipv6Address, both\), --accept-router-advertisements \(bool, both\), --ipv4-only \(bool, both\), --ipv6-only \(bool, both\)/);
  const keys = JSON.parse((await morgana(['query', 'keys', '--json'], { cwd: dir })).stdout) as Array<{ name: string; type: string; default: string | null }>;
  t.deepEqual(
    keys.map((k) => [k.name, k.type, k.default]),
    [
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
  // The configured values are normalised and become the boot defaults.
  const saved = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(`${dir}/_build/.morgana.json`, 'utf8'))) as { manifest: config.BootManifest };
  t.deepEqual(saved.manifest.configured, { ipv6: '2001:db8::2/64', 'ipv6-only': 'true' });
  // Configured --ipv6-only and a runtime --ipv4-only meet at boot: refused there.
  t.is((await morgana(['build'], { cwd: dir })).code, 0);
  const run = await morgana(['run', '--', '--ipv4-only'], { cwd: dir });
  t.is(run.code, 64);
  t.regex(run.stderr, /exclude each other/);
});

test('vnet --mtu sets the link between the unikernel and the gateway: a forwarded TCP echo over a 65,520-byte MTU', async (t) => {
  const echo = exampleArgs('echo');
  const configured = await morgana(['configure', ...echo.args, '-t', 'vnet', '--mtu', '65520', '--forward', '0:7']);
  t.is(configured.code, 0, configured.stderr);
  t.regex(configured.stdout, /for vnet --mtu 65520 --forward tcp:127\.0\.0\.1:0:7/);
  const built = await morgana(['build', ...echo.args]);
  t.is(built.code, 0, built.stderr);
  const e = start(echo.buildDir, []);
  try {
    const port = Number((await e.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+) -> /))[1]);
    await e.waitFor(/echo: .*port 7/);
    t.regex(e.output().stderr, /vnet: link MTU 65520/);
    const big = Buffer.alloc(1 << 20, 'jumbo').toString();
    t.true((await tcpExchange(port, big)) === big, 'a 1 MiB TCP echo comes back identical');
  } finally {
    t.is(await e.stop(), 0, JSON.stringify(e.output()));
  }
});

test('the examples on vnet over IPv6: ping pings the gateway over ICMPv6; IPv6-only echo and static-website behind forwarded ports', async (t) => {
  const ping = exampleArgs('ping');
  await configureAndBuild(ping.args, ['-t', 'vnet', '--count=2']);
  const pinged = await morgana(['run', ...ping.args, '--', 'fd6d:6f72:6761:6e61::1', '10.0.0.1', '--interval=10ms']);
  t.is(pinged.code, 0, pinged.stderr);
  t.regex(pinged.stdout, /\d+ bytes from fd6d:6f72:6761:6e61::1: icmp_seq=2 ttl=64 time=[\d.]+ ms/);
  t.regex(pinged.stdout, /--- fd6d:6f72:6761:6e61::1: 2 sent, 2 received, 0% loss/);
  t.regex(pinged.stdout, /--- 10\.0\.0\.1: 2 sent, 2 received, 0% loss/);
  const v4only = await morgana(['run', ...ping.args, '--', 'fd6d:6f72:6761:6e61::1', '--ipv4-only', '--count=1']);
  t.is(v4only.code, 1);
  t.regex(v4only.stdout, /this stack has no IPv6/);

  // IPv6-only unikernels: the forwards go to their link-local address, over IPv6 from the gateway.
  const echo = exampleArgs('echo');
  await configureAndBuild(echo.args, ['-t', 'vnet', '--forward', 'udp:0:7', '--forward', '0:7', '--ipv6-only']);
  const e = start(echo.buildDir, []);
  try {
    const udpPort = Number((await e.waitFor(/forwarding udp 127\.0\.0\.1:(\d+) -> \[fe80::[0-9a-f:]+\]:7/))[1]);
    const tcpPort = Number((await e.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+) -> \[fe80::[0-9a-f:]+\]:7/))[1]);
    await e.waitFor(/echo: IPv6 fe80::[0-9a-f:]+(, [0-9a-f:]+)* port 7/);
    t.regex(e.output().stderr, /vnet: gateway 10\.0\.0\.1\/24, unikernel IPv6-only/);
    t.is(await udpExchange(udpPort, 'udp into an IPv6-only unikernel'), 'udp into an IPv6-only unikernel');
    const big = Buffer.alloc(50_000, 'ipv6').toString();
    t.true((await tcpExchange(tcpPort, big)) === big, 'the TCP echo is identical');
  } finally {
    t.is(await e.stop(), 0, JSON.stringify(e.output()));
  }
  const site = exampleArgs('static-website');
  await configureAndBuild(site.args, ['-t', 'vnet', '--forward', '0:80', '--ipv6-only']);
  const w = start(site.buildDir, []);
  try {
    const port = Number((await w.waitFor(/forwarding tcp 127\.0\.0\.1:(\d+) -> \[fe80::/))[1]);
    await w.waitFor(/serving on port 80/);
    const page = await fetch(`http://127.0.0.1:${port}/`);
    t.is(page.status, 200);
    t.regex(await page.text(), /Hello from a Morgana unikernel/);
  } finally {
    t.is(await w.stop(), 0);
  }
});
