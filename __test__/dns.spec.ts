import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type DnsRecord,
  MorganaError,
  Resolver,
  type Stack,
  VirtualClock,
  VirtualSwitch,
  config,
  createStack,
  dnsWire,
  memKv,
  openTap,
  startDnsServer,
  seededRandom,
} from 'morgana';
import { kernelTest, withNetns } from './helpers/netns.js';

const { emitMessage, parseMessage, TYPE, CLASS_IN, RCODE } = dnsWire;
const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

// ── codec ────────────────────────────────────────────────────────────────────────────────────

const sample = (): dnsWire.DnsMessage => ({
  id: 0xbeef,
  qr: true,
  opcode: 0,
  aa: true,
  tc: false,
  rd: true,
  ra: false,
  ad: false,
  cd: false,
  rcode: 0,
  questions: [{ name: 'www.Example.test', type: TYPE.A, class: CLASS_IN }],
  answers: [
    { name: 'www.Example.test', class: 1, ttl: 300, type: 'CNAME', data: 'web.example.test' },
    { name: 'web.example.test', class: 1, ttl: 60, type: 'A', data: '10.0.0.7' },
    { name: 'web.example.test', class: 1, ttl: 60, type: 'AAAA', data: '2001:db8::7' },
    { name: 'example.test', class: 1, ttl: 60, type: 'MX', data: { preference: 10, exchange: 'mail.example.test' } },
    { name: 'example.test', class: 1, ttl: 60, type: 'TXT', data: [Buffer.from('v=spf1 -all'), Buffer.alloc(0), Buffer.alloc(255, 0x61)] },
    { name: '_http._tcp.example.test', class: 1, ttl: 60, type: 'SRV', data: { priority: 1, weight: 5, port: 8080, target: 'web.example.test' } },
    { name: '7.0.0.10.in-addr.arpa', class: 1, ttl: 60, type: 'PTR', data: 'web.example.test' },
    { name: 'odd\\046label\\000x.example.test', class: 1, ttl: 1, type: 'OTHER', code: 99, data: Buffer.from([1, 2, 3]) },
  ],
  authorities: [
    { name: 'example.test', class: 1, ttl: 60, type: 'NS', data: 'ns1.example.test' },
    {
      name: 'example.test',
      class: 1,
      ttl: 60,
      type: 'SOA',
      data: { mname: 'ns1.example.test', rname: 'hostmaster.example.test', serial: 2026112501, refresh: 3600, retry: 600, expire: 604800, minimum: 30 },
    },
  ],
  additionals: [{ name: '', class: 1232, ttl: 0, type: 'OTHER', code: 41, data: Buffer.alloc(0) }],
});

test('codec: every record type round trips, names are compressed', (t) => {
  const message = sample();
  const bytes = emitMessage(message);
  t.deepEqual(parseMessage(bytes), message);
  // Every later 'example.test' points at the first, except in the SRV target (RFC 2782 forbids
  // compressing it); case is kept, so 'Example' stays as written.
  t.is(bytes.toString('latin1').split('example').length - 1, 2);
  t.is(bytes.toString('latin1').split('Example').length - 1, 1);
  t.true(bytes.includes(Buffer.from([0xc0])), 'has compression pointers');
  // Escapes: '\\.' and '\\046' are the same label byte; text comes back in the \\DDD form.
  const q = (name: string) => emitMessage({ id: 1, questions: [{ name, type: 1, class: 1 }] });
  t.deepEqual(q('a\\.b.test'), q('a\\046b.test'));
  t.is(parseMessage(q('a\\.b.test.')).questions[0]!.name, 'a\\046b.test');
});

test('codec: IPv6 text is canonical (RFC 5952)', (t) => {
  for (const [input, output] of [
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['::', '::'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1'], // IPv4-mapped: mixed notation (RFC 5952 §5)
    ['2001:db8:0:1:0:0:1:1', '2001:db8:0:1::1:1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ] as const) {
    t.is(dnsWire.formatIpv6(dnsWire.parseIpv6(input)), output);
  }
  t.throws(() => dnsWire.parseIpv6('1::2::3'), { code: 'ERR_DNS_MALFORMED' });
});

test('codec: malformed messages are ERR_DNS_MALFORMED', (t) => {
  const good = emitMessage(sample());
  const cases: Array<[string, Buffer]> = [
    ['short header', Buffer.alloc(11)],
    ['count larger than data', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])],
    // A pointer to itself, and one pointing forward.
    ['self pointer', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1])],
    ['forward pointer', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 0, 1, 0, 1, 0])],
    ['extended label type', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 1, 0, 1])],
    ['label past end', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 0x61, 0x62])],
  ];
  for (let cut = 12; cut < good.length; cut += 7) cases.push([`cut at ${cut}`, good.subarray(0, cut)]);
  // A name over 255 octets built from pointers chained backwards.
  const long = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  const parts: number[] = [];
  for (let i = 0; i < 5; i++) parts.push(60, ...Buffer.alloc(60, 0x61));
  cases.push(['name over 255 octets', Buffer.from([...long, ...parts, 0, 0, 1, 0, 1])]);
  // A records with wrong rdlength.
  const a = emitMessage({ id: 1, answers: [{ name: 'x', class: 1, ttl: 1, type: 'A', data: '1.2.3.4' }] });
  const badA = Buffer.from(a);
  badA.writeUInt16BE(3, badA.length - 6);
  cases.push(['A with 3 bytes', badA.subarray(0, badA.length - 1)]);
  for (const [what, bytes] of cases) {
    const error = t.throws(() => parseMessage(bytes), { instanceOf: MorganaError }, what);
    t.is(error?.code, 'ERR_DNS_MALFORMED', what);
  }
  // Emitting checks too.
  t.throws(() => emitMessage({ id: 1, questions: [{ name: 'a'.repeat(64), type: 1, class: 1 }] }), { code: 'ERR_DNS_MALFORMED' });
  t.throws(() => emitMessage({ id: 1, answers: [{ name: 'x', class: 1, ttl: 1, type: 'A', data: '1.2.3' }] }), { code: 'ERR_DNS_MALFORMED' });
  t.throws(() => emitMessage({ id: 70000 }), { code: 'ERR_DNS_MALFORMED' });
});

test('codec: random and mutated input never crashes', (t) => {
  const rng = seededRandom(42);
  const good = emitMessage(sample());
  let parsed = 0;
  for (let i = 0; i < 20_000; i++) {
    let bytes: Buffer;
    if (i % 2 === 0) {
      bytes = Buffer.alloc(rng.uint32() % 300);
      for (let j = 0; j < bytes.length; j++) bytes[j] = rng.uint32() & 0xff;
    } else {
      bytes = Buffer.from(good);
      for (let k = 0; k < 1 + (rng.uint32() % 4); k++) bytes[rng.uint32() % bytes.length] = rng.uint32() & 0xff;
    }
    try {
      const m = parseMessage(bytes);
      parsed++;
      // Whatever parses re-encodes (names with odd bytes come back escaped).
      emitMessage(m);
    } catch (error) {
      if ((error as MorganaError).code !== 'ERR_DNS_MALFORMED') t.fail(`unexpected ${String(error)} for ${bytes.toString('hex')}`);
    }
  }
  t.true(parsed > 100, `${parsed} parsed`);
});

// ── a zone and a network ─────────────────────────────────────────────────────────────────────

async function zoneKv() {
  const kv = await memKv();
  const put = (name: string, value: unknown) => kv.set(`/zone/${name}`, JSON.stringify(value));
  await put('@', {
    ttl: 300,
    SOA: { mname: 'ns1', rname: 'hostmaster', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 30 },
    NS: ['ns1'],
    MX: [{ preference: 10, exchange: 'mail' }],
    TXT: [['v=spf1 -all'], 'hello'],
  });
  await put('ns1', { A: ['10.0.0.53'] });
  await put('mail', { A: ['10.0.0.25'] });
  await put('www', { ttl: 60, A: ['10.0.0.7', '10.0.0.8'], AAAA: ['2001:db8::7'] });
  await put('alias', { CNAME: 'www' });
  await put('alias2', { CNAME: 'alias' });
  await put('loop1', { CNAME: 'loop2' });
  await put('loop2', { CNAME: 'loop1' });
  await put('outside', { CNAME: 'www.elsewhere.test.' });
  await put('_http._tcp', { SRV: [{ priority: 0, weight: 5, port: 80, target: 'www' }] });
  await put('big', { TXT: Array.from({ length: 12 }, (_, i) => [`${i}`.padEnd(100, 'x')]) });
  await put('host.sub', { A: ['10.0.0.9'] }); // sub.example.test is an empty non-terminal
  await put('web', { A: ['10.0.0.80'] });
  return kv;
}

async function network(options: { clock?: VirtualClock; servers?: number } = {}) {
  const sw = new VirtualSwitch();
  const common = { clock: options.clock };
  const client = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', random: seededRandom(7), ...common });
  const ns = await createStack({ net: sw.connect(), ipv4: '10.0.0.53/24', ...common });
  const kv = await zoneKv();
  const server = await startDnsServer(ns, { origin: 'example.test', kv, prefix: '/zone' });
  const stacks: Stack[] = [client, ns];
  const close = async () => {
    server.close();
    await Promise.all(stacks.map((s) => s.close()));
  };
  return { sw, client, ns, server, kv, stacks, close };
}

test('server + resolver: A, AAAA, CNAME chains, MX, TXT, SRV, NXDOMAIN, NODATA', async (t) => {
  const net = await network();
  try {
    const r = new Resolver(net.client, { servers: ['10.0.0.53'] });
    t.deepEqual(await r.resolve4('www.example.test'), ['10.0.0.7', '10.0.0.8']);
    t.deepEqual(await r.resolve6('WWW.example.test'), ['2001:db8::7']);
    t.deepEqual(await r.resolve4('alias2.example.test'), ['10.0.0.7', '10.0.0.8']);
    const chased = await r.resolve('alias2.example.test', 'A');
    t.deepEqual(
      chased.chain.map((c) => c.name),
      ['alias2.example.test', 'alias.example.test'],
    );
    t.deepEqual(await r.resolveMx('example.test'), [{ priority: 10, exchange: 'mail.example.test' }]);
    t.deepEqual(await r.resolveTxt('example.test'), [['v=spf1 -all'], ['hello']]);
    t.deepEqual(await r.resolveSrv('_http._tcp.example.test'), [{ priority: 0, weight: 5, port: 80, name: 'www.example.test' }]);
    t.is((await r.resolveSoa('example.test')).minttl, 30);
    await t.throwsAsync(r.resolve4('nope.example.test'), { code: 'ENOTFOUND' });
    await t.throwsAsync(r.resolve4('sub.example.test'), { code: 'ENODATA' }); // empty non-terminal
    await t.throwsAsync(r.resolveMx('www.example.test'), { code: 'ENODATA' });
    await t.throwsAsync(r.resolve4('loop1.example.test'), { code: 'ERR_DNS_CNAME_LIMIT' });
    // Not our zone, and no recursion.
    await t.throwsAsync(r.resolve4('www.elsewhere.test'), { code: 'EREFUSED' });
    const s = net.server.stats();
    t.true(s.nxdomain >= 1 && s.nodata >= 2 && s.refused >= 1, JSON.stringify(s));

    // The raw answers: AA set, RA clear, SOA in authority for negatives, glue for MX.
    const raw = async (name: string, type: number) => {
      const got: dnsWire.DnsMessage[] = [];
      const sock = net.client.udp.bind(0, (d) => got.push(parseMessage(d)));
      sock.send('10.0.0.53', 53, emitMessage({ id: 9, rd: true, questions: [{ name, type, class: 1 }] }));
      for (let i = 0; i < 50 && got.length === 0; i++) await ticks(2);
      sock.close();
      return got[0]!;
    };
    const nx = await raw('nope.example.test', TYPE.A);
    t.is(nx.rcode, RCODE.NXDOMAIN);
    t.true(nx.aa);
    t.false(nx.ra);
    t.is(nx.authorities[0]?.type, 'SOA');
    t.is(nx.authorities[0]?.ttl, 30, 'negative TTL is min(SOA TTL, MINIMUM)');
    const nodata = await raw('www.example.test', TYPE.MX);
    t.is(nodata.rcode, RCODE.NOERROR);
    t.is(nodata.answers.length, 0);
    t.is(nodata.authorities[0]?.type, 'SOA');
    const mx = await raw('example.test', TYPE.MX);
    t.deepEqual(
      mx.additionals.map((a) => a.data),
      ['10.0.0.25'],
    );
    const refused = await raw('example.org', TYPE.A);
    t.is(refused.rcode, RCODE.REFUSED);
    t.false(refused.ra);
    r.close();
  } finally {
    await net.close();
  }
});

test('resolver: caching honours TTLs and negative TTLs on the virtual clock', async (t) => {
  const clock = new VirtualClock();
  const net = await network({ clock });
  try {
    const r = new Resolver(net.client, { servers: ['10.0.0.53'] });
    const queries = () => net.server.stats().udpQueries;
    t.deepEqual(await r.resolve4('www.example.test', { ttl: true }), [
      { address: '10.0.0.7', ttl: 60 },
      { address: '10.0.0.8', ttl: 60 },
    ]);
    t.is(queries(), 1);
    clock.advance(59_000);
    t.deepEqual(await r.resolve4('www.example.test', { ttl: true }), [
      { address: '10.0.0.7', ttl: 1 },
      { address: '10.0.0.8', ttl: 1 },
    ]);
    t.is(queries(), 1, 'answered from the cache');
    clock.advance(1_000);
    await r.resolve4('www.example.test');
    t.is(queries(), 2, 'expired after 60 s');

    // CNAME chain parts are cached separately: alias (300 s) then www (60 s).
    await r.resolve4('alias.example.test');
    const afterAlias = queries();
    await r.resolve4('alias.example.test');
    t.is(queries(), afterAlias);

    // Negative caching (RFC 2308): 30 s from the SOA, for NXDOMAIN and NODATA.
    await t.throwsAsync(r.resolve4('nope.example.test'), { code: 'ENOTFOUND' });
    await t.throwsAsync(r.resolveMx('www.example.test'), { code: 'ENODATA' });
    const n = queries();
    clock.advance(29_000);
    await t.throwsAsync(r.resolve6('nope.example.test'), { code: 'ENOTFOUND' }, 'NXDOMAIN covers every type');
    await t.throwsAsync(r.resolveMx('www.example.test'), { code: 'ENODATA' });
    t.is(queries(), n);
    t.true(r.stats().negativeCacheHits >= 2);
    // The name appears; after the negative TTL the resolver sees it.
    await net.kv.set('/zone/nope', JSON.stringify({ A: ['10.0.0.99'] }));
    await net.server.reload();
    clock.advance(1_000);
    t.deepEqual(await r.resolve4('nope.example.test'), ['10.0.0.99']);
    t.is(queries(), n + 1);

    // The cache is bounded.
    const small = new Resolver(net.client, { servers: ['10.0.0.53'], cache: { maxEntries: 2 } });
    await small.resolve4('www.example.test');
    await small.resolve4('mail.example.test');
    await small.resolve4('ns1.example.test');
    t.is(small.stats().cacheSize, 2);
    t.is(small.stats().cacheEvictions, 1);
  } finally {
    await net.close();
  }
});

test('resolver: truncated UDP answers are asked again over TCP', async (t) => {
  const net = await network();
  try {
    const r = new Resolver(net.client, { servers: ['10.0.0.53'] });
    const txt = await r.resolveTxt('big.example.test');
    t.is(txt.length, 12);
    t.true(txt.every(([s]) => s!.length === 100));
    t.is(r.stats().truncated, 1);
    t.is(r.stats().tcpQueries, 1);
    t.is(net.server.stats().truncated, 1);
    t.is(net.server.stats().tcpQueries, 1);
  } finally {
    await net.close();
  }
});

test('resolver: fails over to the second server when the first is silent, and retries', async (t) => {
  const clock = new VirtualClock();
  const net = await network({ clock });
  const silent = await createStack({ net: net.sw.connect(), ipv4: '10.0.0.54/24', clock });
  net.stacks.push(silent);
  const heard: number[] = [];
  silent.udp.bind(53, (d) => heard.push(parseMessage(d).id));
  try {
    const r = new Resolver(net.client, { servers: ['10.0.0.54', '10.0.0.53'], timeoutMs: 1000 });
    const answer = r.resolve4('www.example.test');
    await ticks(20);
    t.is(heard.length, 1, 'the silent server got the first query');
    t.is(net.server.stats().udpQueries, 0);
    clock.advance(1000);
    await ticks(20);
    t.deepEqual(await answer, ['10.0.0.7', '10.0.0.8']);
    t.is(r.stats().timeouts, 1);

    // Every server silent: ETIMEOUT after attempts × servers timeouts; ids differ per try.
    const lonely = new Resolver(net.client, { servers: ['10.0.0.54'], timeoutMs: 500, attempts: 3 });
    const failed = t.throwsAsync(lonely.resolve4('mail.example.test'), { code: 'ETIMEOUT' });
    for (let i = 0; i < 3; i++) {
      await ticks(20);
      clock.advance(500);
    }
    await failed;
    t.is(heard.length, 4);
    t.is(new Set(heard.slice(1)).size, 3, 'a fresh id per attempt');

    // A closed port answers with ICMP port unreachable: next server at once, no timeout.
    const quick = new Resolver(net.client, { servers: ['10.0.0.53:5353', '10.0.0.53'] });
    t.deepEqual(await quick.resolve4('mail.example.test'), ['10.0.0.25']);
    t.is(quick.stats().timeouts, 0);
  } finally {
    await net.close();
  }
});

test('resolver: spoofed answers (wrong id, question, port or address) are ignored', async (t) => {
  const sw = new VirtualSwitch();
  const client = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const server = await createStack({ net: sw.connect(), ipv4: '10.0.0.53/24' });
  const attacker = await createStack({ net: sw.connect(), ipv4: '10.0.0.66/24' });
  const ports: number[] = [];
  const a = (data: string): DnsRecord => ({ name: 'www.example.test', class: 1, ttl: 60, type: 'A', data });
  const sock = server.udp.bind(53, (d, from) => {
    const q = parseMessage(d);
    ports.push(from.port);
    const reply = (over: Partial<dnsWire.DnsMessage>, answer: string) =>
      emitMessage({ id: q.id, qr: true, rd: true, ra: true, questions: q.questions, answers: [a(answer)], ...over });
    sock.send(from.address, from.port, reply({ id: (q.id + 1) & 0xffff }, '6.6.6.1'));
    sock.send(from.address, from.port, reply({ questions: [{ name: 'evil.example.test', type: 1, class: 1 }] }, '6.6.6.2'));
    server.udp.send(from.address, from.port, reply({}, '6.6.6.3'), { srcPort: 5353 });
    attacker.udp.send(from.address, from.port, reply({}, '6.6.6.4'), { srcPort: 53 });
    sock.send(from.address, from.port, reply({ qr: false }, '6.6.6.5'));
    sock.send(from.address, from.port, Buffer.from([1, 2, 3]));
    // The genuine answer comes last, once the resolver has seen all six others (the attacker's
    // needs ARP first): a fixed delay is not enough on a loaded machine. 10 s is only a deadline.
    const deadline = Date.now() + 10_000;
    const answerWhenSpoofsSeen = () => {
      if (r.stats().ignored >= 6 || Date.now() > deadline) sock.send(from.address, from.port, reply({}, '10.0.0.7'));
      else setTimeout(answerWhenSpoofsSeen, 10);
    };
    answerWhenSpoofsSeen();
  });
  const r = new Resolver(client, { servers: ['10.0.0.53'] });
  try {
    t.deepEqual(await r.resolve4('www.example.test'), ['10.0.0.7']);
    t.is(r.stats().ignored, 6);
    t.is(r.stats().malformed, 1);
    await r.resolve4('www2.example.test').catch(() => {});
    t.not(ports[0], ports[1], 'random source ports');
    t.true(ports.every((p) => p >= 49152));
  } finally {
    await Promise.all([client.close(), server.close(), attacker.close()]);
  }
});

test('resolver: servers come from the stack (DHCP option 6), none is ERR_DNS_NO_SERVERS', async (t) => {
  const sw = new VirtualSwitch();
  const s = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  try {
    const r = new Resolver(s);
    t.deepEqual(r.servers, []);
    await t.throwsAsync(r.resolve4('www.example.test'), { code: 'ERR_DNS_NO_SERVERS' });
    const fake = new Resolver({ ...s, udp: s.udp, clock: s.clock, random: s.random, dns: { servers: ['10.0.0.53', '[2001:db8::53]:5353'] } });
    t.deepEqual(fake.servers, [
      { address: '10.0.0.53', port: 53 },
      { address: '2001:db8::53', port: 5353 },
    ]);
    t.throws(() => new Resolver(s, { servers: ['nonsense'] }), { code: 'ERR_DNS_BAD_SERVER' });
    await t.throwsAsync(fake.resolve4('a..b'), { code: 'EBADNAME' });
    await t.throwsAsync(fake.resolve4(`${'a'.repeat(64)}.test`), { code: 'EBADNAME' });
  } finally {
    await s.close();
  }
});

test('lookup: dns.lookup shape, for http.request and net.connect', async (t) => {
  const net = await network();
  // A zone entry pointing at loopback, for Node's own sockets.
  await net.kv.set('/zone/loopback', JSON.stringify({ A: ['127.0.0.1'] }));
  await net.server.reload();
  const r = new Resolver(net.client, { servers: ['10.0.0.53'] });
  const lookup = (host: string, options: object) =>
    new Promise<unknown[]>((resolve) => r.lookup(host, options as { all: true }, (...args: unknown[]) => resolve(args)));
  try {
    t.deepEqual(await lookup('www.example.test', {}), [null, '10.0.0.7', 4]);
    t.deepEqual(await lookup('www.example.test', { all: true }), [
      null,
      [
        { address: '10.0.0.7', family: 4 },
        { address: '10.0.0.8', family: 4 },
        { address: '2001:db8::7', family: 6 },
      ],
    ]);
    t.deepEqual(await lookup('www.example.test', { family: 6 }), [null, '2001:db8::7', 6]);
    t.deepEqual(await lookup('10.1.2.3', {}), [null, '10.1.2.3', 4]);
    const [error] = (await lookup('nope.example.test', {})) as [NodeJS.ErrnoException];
    t.is(error.code, 'ENOTFOUND');
    t.is((error as { hostname?: string }).hostname, 'nope.example.test');

    // 1. Node's http client on kernel loopback sockets, the name resolved by the resolver.
    const local = http.createServer((_req, res) => res.end('hello from loopback'));
    await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve));
    try {
      const port = (local.address() as AddressInfo).port;
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: 'loopback.example.test', port, lookup: r.lookup, agent: false }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => resolve(text));
          })
          .on('error', reject);
      });
      t.is(body, 'hello from loopback');
    } finally {
      local.close();
    }

    // 2. A Morgana HTTP server on the switch, reached by name from the client stack.
    const web = await createStack({ net: net.sw.connect(), ipv4: '10.0.0.80/24' });
    net.stacks.push(web);
    const device = config.httpOver(web);
    const listener = await device.listen(80, (req, res) => res.end(`hello ${req.headers.host}`));
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request(
          {
            host: 'web.example.test',
            port: 80,
            lookup: r.lookup,
            // Node hands its options (lookup included) to createConnection: connect on the stack.
            createConnection: ((options: { host: string; port: number; lookup: Resolver['lookup'] }, done: (e: Error | null, s?: unknown) => void) => {
              options.lookup(options.host, { family: 4 }, (error, address) => {
                if (error) return done(error);
                net.client.tcp.connect(address, options.port).then((c) => done(null, c), done);
              });
              return undefined;
            }) as never,
          },
          (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () => resolve(text));
          },
        );
        req.on('error', reject);
        req.end();
      });
      t.is(body, 'hello web.example.test:80');
    } finally {
      await listener.close();
    }
  } finally {
    r.close();
    await net.close();
  }
});

test('server: bad zones are ERR_DNS_ZONE; FORMERR and NOTIMP answers', async (t) => {
  const sw = new VirtualSwitch();
  const s = await createStack({ net: sw.connect(), ipv4: '10.0.0.53/24' });
  const c = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  try {
    const kv = await memKv();
    await kv.set('/www', JSON.stringify({ A: ['10.0.0.1'] }));
    await t.throwsAsync(startDnsServer(s, { origin: 'example.test', kv }), { code: 'ERR_DNS_ZONE' }); // no SOA
    await kv.set('/@', JSON.stringify({ SOA: { mname: 'ns', rname: 'h' } }));
    await kv.set('/bad', JSON.stringify({ A: ['300.1.1.1'] }));
    await t.throwsAsync(startDnsServer(s, { origin: 'example.test', kv }), { code: 'ERR_DNS_ZONE' });
    await kv.set('/bad', JSON.stringify({ CNAME: 'www', A: ['10.0.0.2'] }));
    await t.throwsAsync(startDnsServer(s, { origin: 'example.test', kv }), { code: 'ERR_DNS_ZONE' });
    await kv.remove('/bad');
    const server = await startDnsServer(s, { origin: 'example.test', kv });
    const got: dnsWire.DnsMessage[] = [];
    const sock = c.udp.bind(0, (d) => got.push(parseMessage(d)));
    const garbage = Buffer.concat([emitMessage({ id: 77, questions: [] }).subarray(0, 4), Buffer.from([0, 1, 0, 0, 0, 0, 0, 0, 9])]);
    sock.send('10.0.0.53', 53, garbage);
    sock.send('10.0.0.53', 53, emitMessage({ id: 78, opcode: 2, questions: [{ name: 'www.example.test', type: 1, class: 1 }] }));
    sock.send('10.0.0.53', 53, emitMessage({ id: 79, qr: true, questions: [{ name: 'www.example.test', type: 1, class: 1 }] }));
    sock.send('10.0.0.53', 53, Buffer.from([1, 2, 3]));
    for (let i = 0; i < 50 && got.length < 2; i++) await ticks(2);
    await ticks(20);
    t.deepEqual(
      got.map((m) => [m.id, m.rcode]),
      [
        [77, RCODE.FORMERR],
        [78, RCODE.NOTIMP],
      ],
    );
    t.is(server.stats().dropped, 2);
    server.close();
  } finally {
    await Promise.all([s.close(), c.close()]);
  }
});

// ── kernel interop: dnsmasq in a namespace the test creates ──────────────────────────────────

kernelTest(
  test,
  'the stack resolves names against dnsmasq over TAP in a namespace',
  async (t) => {
    await withNetns(async (ns) => {
      const tap = await openTap({ name: 'mdns0', netns: ns.name });
      await ns.ip('addr', 'add', '10.99.0.1/24', 'dev', tap.name);
      await ns.ip('link', 'set', tap.name, 'up');
      const dnsmasq = ns.spawn('dnsmasq', [
        '--no-daemon',
        '--port=53',
        '--address=/example.test/10.99.0.7',
        '--txt-record=info.example.test,morgana test',
        // Three 200-byte strings: over 512 bytes, so dnsmasq truncates the UDP answer.
        `--txt-record=big.example.test,${['a', 'b', 'c'].map((c) => c.repeat(200)).join(',')}`,
        '--no-resolv',
        '--no-hosts',
        '--conf-file=/dev/null',
        `--interface=${tap.name}`,
        '--bind-interfaces',
        '--pid-file=',
        '--user=root',
        '--log-queries',
        '--log-facility=-',
      ]);
      let log = '';
      dnsmasq.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      dnsmasq.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<void>((resolve) => dnsmasq.once('exit', () => resolve()));
      for (let i = 0; i < 100 && !/started, version/.test(log) && dnsmasq.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      t.is(dnsmasq.exitCode, null, `dnsmasq is running: ${log}`);
      const stack = await createStack({ net: tap, ipv4: '10.99.0.2/24' });
      try {
        const r = new Resolver(stack, { servers: ['10.99.0.1'], timeoutMs: 2000 });
        t.deepEqual(await r.resolve4('www.example.test'), ['10.99.0.7']);
        t.deepEqual(await r.resolve4('deep.sub.example.test'), ['10.99.0.7']);
        t.deepEqual(await r.resolveTxt('info.example.test'), [['morgana test']]);
        // Truncated over UDP, asked again over TCP to the kernel's TCP.
        t.deepEqual(await r.resolveTxt('big.example.test'), [['a', 'b', 'c'].map((c) => c.repeat(200))]);
        t.is(r.stats().truncated, 1);
        t.is(r.stats().tcpQueries, 1);
        const [error, address, family] = await new Promise<unknown[]>((resolve) => r.lookup('api.example.test', 4, (...args: unknown[]) => resolve(args)));
        t.deepEqual([error, address, family], [null, '10.99.0.7', 4]);
        // Names outside the configured domain: dnsmasq has no upstream (--no-resolv).
        const other = await r.resolve4('www.example.org').then(
          () => 'answered',
          (e: MorganaError) => e.code,
        );
        t.true(['EREFUSED', 'ESERVFAIL', 'ENOTFOUND', 'ETIMEOUT'].includes(other), other);
        const logged = /query\[A\] www\.example\.test from 10\.99\.0\.2/;
        for (let i = 0; i < 100 && !logged.test(log); i++) await new Promise((r) => setTimeout(r, 20));
        t.regex(log, logged);
        r.close();
      } finally {
        await stack.close();
        dnsmasq.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
      }
    });
  },
  ['dnsmasq'],
);
