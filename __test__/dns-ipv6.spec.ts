/**
 * DNS over IPv6 (issue 10): Morgana's authoritative server and stub resolver on IPv6-only stacks
 * on the VirtualSwitch (UDP, TCP after truncation, servers from RDNSS, the address forms a server
 * may be given in), and against the Linux kernel over TAP inside a namespace the test creates:
 * dnsmasq sends router advertisements with RDNSS and answers over IPv6, and a page is fetched by
 * name from python's http.server over IPv6 with Node's http client on the stack.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import {
  type PcapRecorder,
  Resolver,
  type Stack,
  VirtualSwitch,
  config,
  createStack,
  dnsWire,
  memKv,
  openTap,
  pcapRecorder,
  seededRandom,
  startDnsServer,
} from 'morgana';
import { TCP_BAD_CHECKSUM } from './helpers/kernel-tcp.js';
import { type Netns, kernelTest, withNetns } from './helpers/netns.js';

const hasTshark = spawnSync('tshark', ['--version']).status === 0;

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Runs tshark on a capture (UDP and TCP checksums verified) and returns its output lines. */
function tshark(pcap: PcapRecorder, filter: string, fields: string[]): string[] {
  pcap.flush();
  const args = ['-r', pcap.file, '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-Y', filter, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])];
  return execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean);
}

/** Frames tshark flags: malformed, expert errors, bad UDP/TCP/ICMPv6 checksums (the kernel's 0xffff for zero is not bad: see TCP_BAD_CHECKSUM). */
function tsharkProblems(pcap: PcapRecorder): string[] {
  return tshark(pcap, `_ws.malformed || _ws.expert.severity >= error || udp.checksum.status == "Bad" || ${TCP_BAD_CHECKSUM} || icmpv6.checksum.status == "Bad"`, [
    'frame.number',
    '_ws.expert.message',
  ]);
}

// ── on the VirtualSwitch ─────────────────────────────────────────────────────────────────────

async function zoneKv() {
  const kv = await memKv();
  const put = (name: string, value: unknown) => kv.set(`/zone/${name}`, JSON.stringify(value));
  await put('@', { ttl: 300, SOA: { mname: 'ns1', rname: 'hostmaster', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 30 }, NS: ['ns1'] });
  await put('ns1', { AAAA: ['2001:db8::53'] });
  await put('www', { ttl: 60, A: ['192.0.2.7'], AAAA: ['2001:db8::7', '2001:db8::8'] });
  await put('alias', { CNAME: 'www' });
  await put('v6only', { AAAA: ['2001:db8::66'] });
  // Twelve 100-byte strings: over 512 bytes, so the UDP answer is truncated.
  await put('big', { TXT: Array.from({ length: 12 }, (_, i) => [`${i}`.padEnd(100, 'x')]) });
  return kv;
}

/**
 * Two IPv6-only stacks on a switch: the name server, which is also the link's router (it
 * advertises 2001:db8::/64 and itself as RDNSS), and a client that configures itself from that
 * ('auto'), its frames recorded.
 */
async function network(dir: string) {
  const sw = new VirtualSwitch();
  const ns = await createStack({
    net: sw.connect(),
    ipv6: { address: '2001:db8::53/64', dadTransmits: 0, routerAdvertisements: { prefixes: ['2001:db8::/64'], rdnss: ['2001:db8::53'] } },
  });
  const pcap = pcapRecorder(sw.connect(), path.join(dir, 'client.pcap'));
  const client = await createStack({ net: pcap, ipv6: 'auto', random: seededRandom(6) });
  const server = await startDnsServer(ns, { origin: 'example.test', kv: await zoneKv(), prefix: '/zone' });
  const stacks: Stack[] = [ns, client];
  return {
    sw,
    ns,
    client,
    server,
    pcap,
    stacks,
    async close() {
      server.close();
      await Promise.all(stacks.map((s) => s.close()));
    },
  };
}

async function withNetwork(body: (net: Awaited<ReturnType<typeof network>>) => Promise<void>): Promise<void> {
  // The stacks' timers (on the system clock) do not keep Node alive, and on the switch there is
  // no I/O that would: hold the event loop open while a query waits for a timeout.
  const keepAlive = setInterval(() => {}, 1000);
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-dns6-'));
  const net = await network(dir);
  try {
    await body(net);
  } finally {
    await net.close();
    rmSync(dir, { recursive: true, force: true });
    clearInterval(keepAlive);
  }
}

test('an IPv6-only resolver takes its server from RDNSS and asks the authoritative server over IPv6: A, AAAA, CNAME, lookup', async (t) => {
  await withNetwork(async ({ client, ns, server, pcap }) => {
    t.is(client.address, '0.0.0.0', 'no IPv4 on the client');
    t.is(ns.address, '0.0.0.0', 'nor on the server');
    await until('RDNSS from the router advertisement', () => client.dns.servers.includes('2001:db8::53'));
    await until('a SLAAC address', () => client.ipv6!.addresses().find((a) => a.startsWith('2001:db8::')));
    const r = new Resolver(client);
    t.deepEqual(r.servers, [{ address: '2001:db8::53', port: 53 }]);
    t.deepEqual(await r.resolve4('www.example.test'), ['192.0.2.7']);
    t.deepEqual(await r.resolve6('www.example.test'), ['2001:db8::7', '2001:db8::8']);
    t.deepEqual(await r.resolve6('alias.example.test'), ['2001:db8::7', '2001:db8::8']);
    t.deepEqual(await r.lookupAll('www.example.test', { order: 'ipv6first' } as never), [
      { address: '2001:db8::7', family: 6 },
      { address: '2001:db8::8', family: 6 },
      { address: '192.0.2.7', family: 4 },
    ]);
    const [error, address, family] = await new Promise<unknown[]>((resolve) => r.lookup('v6only.example.test', 0, (...args: unknown[]) => resolve(args)));
    t.deepEqual([error, address, family], [null, '2001:db8::66', 6]);
    await t.throwsAsync(r.resolve6('nope.example.test'), { code: 'ENOTFOUND' });
    t.is(server.stats().udpQueries, r.stats().udpSent);
    t.is(r.stats().ignored, 0);
    t.is(client.stats().udp.badChecksum, 0);
    t.is(ns.stats().udp.badChecksum, 0);
    r.close();
    if (hasTshark) {
      t.deepEqual(tsharkProblems(pcap), [], 'tshark finds no malformed frames or bad checksums');
      t.deepEqual(tshark(pcap, 'ip', ['frame.number']), [], 'not one IPv4 frame');
      const queries = tshark(pcap, 'dns && dns.flags.response == 0', ['ipv6.dst', 'udp.dstport', 'dns.qry.name', 'dns.qry.type']);
      t.true(queries.length >= 5, queries.join('\n'));
      t.true(queries.every((q) => q.startsWith('2001:db8::53\t53\t')), queries.join('\n'));
      t.true(queries.some((q) => q === '2001:db8::53\t53\twww.example.test\t28'), 'an AAAA query on the wire');
      const answers = tshark(pcap, 'dns && dns.flags.response == 1 && dns.qry.name == "www.example.test" && dns.qry.type == 28', ['ipv6.src', 'dns.aaaa']);
      t.true(answers.includes('2001:db8::53\t2001:db8::7,2001:db8::8'), answers.join('\n'));
    }
  });
});

test('a truncated answer is asked again over TCP, over IPv6', async (t) => {
  await withNetwork(async ({ client, server, pcap }) => {
    await until('a SLAAC address', () => client.ipv6!.addresses().find((a) => a.startsWith('2001:db8::')));
    const r = new Resolver(client, { servers: ['2001:db8::53'] });
    const txt = await r.resolveTxt('big.example.test');
    t.deepEqual(
      txt,
      Array.from({ length: 12 }, (_, i) => [`${i}`.padEnd(100, 'x')]),
    );
    t.is(r.stats().truncated, 1);
    t.is(r.stats().tcpQueries, 1);
    t.is(server.stats().truncated, 1);
    t.is(server.stats().tcpQueries, 1);
    t.true(client.stats().tcp.segmentsOut >= 3, 'the TCP exchange went through the client stack');
    r.close();
    if (hasTshark) {
      t.deepEqual(tsharkProblems(pcap), []);
      const truncated = tshark(pcap, 'udp && dns.flags.truncated == 1', ['ipv6.src', 'dns.qry.name']);
      t.deepEqual(truncated, ['2001:db8::53\tbig.example.test']);
      const overTcp = tshark(pcap, 'tcp && dns && dns.flags.response == 1', ['ipv6.src', 'tcp.srcport', 'dns.count.answers']);
      t.deepEqual(overTcp, ['2001:db8::53\t53\t12']);
      t.true(tshark(pcap, 'tcp.flags.syn == 1 && tcp.flags.ack == 0 && ipv6.dst == 2001:db8::53 && tcp.dstport == 53', ['frame.number']).length >= 1);
    }
  });
});

test('server addresses in any IPv6 form: non-canonical text, brackets with a port, link-local with a zone; a silent server is skipped', async (t) => {
  await withNetwork(async ({ client, ns, sw }) => {
    await until('a SLAAC address', () => client.ipv6!.addresses().find((a) => a.startsWith('2001:db8::')));
    // Replies come from the canonical address: the resolver must not compare the text given.
    const upper = new Resolver(client, { servers: ['2001:DB8:0:0::53'] });
    t.deepEqual(upper.servers, [{ address: '2001:db8::53', port: 53 }]);
    t.deepEqual(await upper.resolve6('www.example.test'), ['2001:db8::7', '2001:db8::8']);
    t.is(upper.stats().ignored, 0);
    const bracketed = new Resolver(client, { servers: ['[2001:db8:0::53]:53'] });
    t.deepEqual(await bracketed.resolve4('www.example.test'), ['192.0.2.7']);
    // The server's link-local address, with the zone naming our interface.
    const serverLinkLocal = ns.ipv6!.addresses().find((a) => a.startsWith('fe80:'))!;
    const local = new Resolver(client, { servers: [`${serverLinkLocal.toUpperCase()}%net0`] });
    t.deepEqual(local.servers, [{ address: `${serverLinkLocal}%net0`, port: 53 }]);
    t.deepEqual(await local.resolve6('v6only.example.test'), ['2001:db8::66']);
    // A host on the link that does not answer: the next server answers after the timeout.
    const silent = await createStack({ net: sw.connect(), ipv6: { address: '2001:db8::54/64', dadTransmits: 0 } });
    const heard: number[] = [];
    silent.udp.bind(53, (d) => heard.push(dnsWire.parseMessage(d).id));
    try {
      const failover = new Resolver(client, { servers: ['2001:db8::54', '2001:db8::53'], timeoutMs: 300 });
      t.deepEqual(await failover.resolve6('alias.example.test'), ['2001:db8::7', '2001:db8::8']);
      t.is(heard.length, 1, 'the silent server got the query over IPv6');
      t.is(failover.stats().timeouts, 1);
      // A port nobody listens on answers with ICMPv6 port unreachable: next server at once.
      const closed = new Resolver(client, { servers: ['[2001:db8::53]:5353', '2001:db8::53'], timeoutMs: 5000 });
      t.deepEqual(await closed.resolve4('www.example.test'), ['192.0.2.7']);
      t.is(closed.stats().timeouts, 0);
    } finally {
      await silent.close();
    }
    for (const r of [upper, bracketed, local]) r.close();
  });
});

// ── kernel interop: dnsmasq and python's http.server in a namespace the test creates ─────────

const TAP = 'm6dns0';
const KERNEL = '2001:db8:1::1';

/** python3 -m http.server bound to the kernel's IPv6 address in `ns`, serving `dir`; resolves once it listens. */
async function pythonHttpServer(ns: Netns, dir: string, port: number): Promise<() => Promise<void>> {
  const child = ns.spawn('python3', ['-u', '-m', 'http.server', String(port), '--bind', KERNEL, '--directory', dir]);
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await until(`python's http.server (${log})`, () => /Serving HTTP on/.test(log) || child.exitCode !== null, 10_000);
  if (child.exitCode !== null) throw new Error(`python3 -m http.server exited: ${log}`);
  return async () => {
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
  };
}

/** What `http.request` hands `createConnection`: the host, the port and the `lookup` given. */
interface ConnectOptions {
  host: string;
  port: number;
  lookup: Resolver['lookup'];
}

kernelTest(
  test,
  'IPv6-only against the kernel: RAs with RDNSS from dnsmasq, AAAA and A answered by it over IPv6, a page fetched by name from python over IPv6',
  async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'morgana-dns6-tap-'));
    writeFileSync(path.join(dir, 'hello.txt'), 'hello over IPv6, found by name\n');
    const stops: Array<() => Promise<void>> = [];
    try {
      await withNetns(async (ns) => {
        const tap = await openTap({ name: TAP, netns: ns.name });
        // IPv6 on for this link only, the kernel's address usable at once, no autoconfiguration of its own.
        await ns.exec('sysctl', ['-qw', `net.ipv6.conf.${TAP}.disable_ipv6=0`, `net.ipv6.conf.${TAP}.accept_dad=0`, `net.ipv6.conf.${TAP}.accept_ra=0`]);
        await ns.ip('-6', 'addr', 'add', `${KERNEL}/64`, 'dev', TAP, 'nodad');
        await ns.ip('link', 'set', TAP, 'up');
        let log = '';
        const dnsmasq = ns.spawn('dnsmasq', [
          '--no-daemon',
          '--port=53',
          '--enable-ra',
          '--dhcp-range=2001:db8:1::,ra-only,64,1h',
          `--dhcp-option=option6:dns-server,[${KERNEL}]`,
          `--host-record=web.example.test,${KERNEL},192.0.2.80`,
          '--address=/v4.example.test/192.0.2.7',
          '--address=/v6.example.test/2001:db8:1::99',
          '--no-resolv',
          '--no-hosts',
          '--conf-file=/dev/null',
          `--interface=${TAP}`,
          '--bind-interfaces',
          '--pid-file=',
          '--user=root',
          '--log-queries',
          '--log-facility=-',
        ]);
        dnsmasq.stdout!.on('data', (d: Buffer) => (log += d.toString()));
        dnsmasq.stderr!.on('data', (d: Buffer) => (log += d.toString()));
        const exited = new Promise<void>((resolve) => dnsmasq.once('exit', () => resolve()));
        stops.push(async () => {
          dnsmasq.kill('SIGTERM');
          await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
        });
        await until(`dnsmasq (${log})`, () => /started, version/.test(log) || dnsmasq.exitCode !== null, 10_000);
        t.is(dnsmasq.exitCode, null, `dnsmasq is running: ${log}`);
        stops.push(await pythonHttpServer(ns, dir, 8080));

        const pcap = pcapRecorder(tap, path.join(dir, 'session.pcap'));
        const stack = await createStack({ net: pcap, ipv6: 'auto' });
        try {
          t.is(stack.address, '0.0.0.0', 'IPv6 only');
          const address = await until(`a SLAAC address (dnsmasq said: ${log})`, () => stack.ipv6!.addresses().find((a) => a.startsWith('2001:db8:1:')));
          await until('the RDNSS server', () => stack.dns.servers.includes(KERNEL));
          t.deepEqual(stack.dns.servers, [KERNEL]);
          const r = new Resolver(stack, { timeoutMs: 2000 });
          t.deepEqual(await r.resolve6('web.example.test'), [KERNEL]);
          t.deepEqual(await r.resolve4('web.example.test'), ['192.0.2.80']);
          t.deepEqual(await r.resolve4('v4.example.test'), ['192.0.2.7']);
          t.deepEqual(await r.resolve6('deep.v6.example.test'), ['2001:db8:1::99']);
          await until('dnsmasq logged our AAAA query', () => new RegExp(`query\\[AAAA\\] web\\.example\\.test from ${address.replace(/\./g, '\\.')}`).test(log), 5_000);

          // Node's http client on the stack: the name through the resolver, the connection on the
          // stack. The A record (192.0.2.80) is unreachable from an IPv6-only stack, so the
          // connection goes to the AAAA one.
          const get = (requestPath: string) =>
            new Promise<{ status: number; body: string; remote: string | undefined }>((resolve, reject) => {
              const req = http.request(
                {
                  host: 'web.example.test',
                  port: 8080,
                  path: requestPath,
                  lookup: r.lookup,
                  createConnection: ((options: ConnectOptions, done: (error: Error | null, socket?: Duplex) => void) => {
                    options.lookup(options.host, { all: true }, (error, addresses) => {
                      if (error) return done(error);
                      const v6 = addresses.filter((a) => a.family === 6);
                      if (v6.length === 0) return done(new Error(`no AAAA for ${options.host}`));
                      stack.tcp.connect(v6[0]!.address, options.port).then((c) => done(null, c), done);
                    });
                    return undefined;
                  }) as never,
                },
                (res) => {
                  let body = '';
                  res.setEncoding('utf8');
                  res.on('data', (c: string) => (body += c));
                  res.on('end', () => resolve({ status: res.statusCode!, body, remote: (res.socket as { remoteAddress?: string }).remoteAddress }));
                },
              );
              req.on('error', reject);
              req.end();
            });
          const page = await get('/hello.txt');
          t.is(page.status, 200);
          t.is(page.body, 'hello over IPv6, found by name\n');
          t.is(page.remote, KERNEL);
          t.is((await get('/missing.txt')).status, 404);

          // The http device: by name with the resolver on the stack's own servers (RDNSS) by
          // default, trying the A record first as lookup orders it and falling back to AAAA.
          const device = config.httpOver(stack);
          const byDefault = await device.get('http://web.example.test:8080/hello.txt');
          t.is(byDefault.status, 200);
          t.is(byDefault.body.toString(), 'hello over IPv6, found by name\n');
          const literal = await device.get(`http://[${KERNEL}]:8080/hello.txt`);
          t.is(literal.body.toString(), 'hello over IPv6, found by name\n');
          r.close();

          // curl -6 from the kernel side to a Morgana HTTP server on the autoconfigured address.
          const listener = await device.listen(8081, (req, res) => res.end(`morgana ${req.socket.remoteAddress} ${req.url}`));
          try {
            const curl = await ns.exec('curl', ['-6', '-s', '--max-time', '5', `http://[${address}]:8081/x`]);
            t.is(curl.stdout, `morgana ${KERNEL} /x`);
          } finally {
            await listener.close();
          }
          t.is(stack.stats().udp.badChecksum, 0);
          t.is(stack.stats().tcp.badChecksum, 0);
          if (hasTshark) {
            t.deepEqual(tsharkProblems(pcap), [], 'tshark finds no malformed frames or bad checksums');
            t.deepEqual(tshark(pcap, 'ip', ['frame.number']), [], 'not one IPv4 frame');
            const queries = tshark(pcap, 'dns && dns.flags.response == 0', ['ipv6.src', 'ipv6.dst', 'dns.qry.name']);
            t.true(queries.length >= 4 && queries.every((q) => q.startsWith(`${address}\t${KERNEL}\t`)), queries.join('\n'));
            t.true(tshark(pcap, `http.request && ipv6.dst == ${KERNEL} && tcp.dstport == 8080`, ['frame.number']).length >= 3);
          }
        } finally {
          await stack.close();
        }
      });
    } finally {
      for (const stop of stops.reverse()) await stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  ['dnsmasq', 'python3', 'curl'],
);
