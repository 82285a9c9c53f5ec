import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtualSwitch, config, createStack, memKv, startDnsServer } from 'morgana';

async function pair() {
  const sw = new VirtualSwitch();
  const server = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  const client = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  return { server, client, close: () => Promise.all([server.close(), client.close()]) };
}

test('the http device: Node http server and client over two Morgana stacks', async (t) => {
  const { server, client, close } = await pair();
  const listener = await config.httpOver(server).listen(80, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d));
    req.on('end', () => res.end(`${req.method} ${req.url} ${body.length}`));
  });
  t.is(listener.port, 80);
  const http = config.httpOver(client);
  const r = await http.get('http://10.0.0.1/hello');
  t.is(r.status, 200);
  t.is(r.body.toString(), 'GET /hello 0');
  const post = await new Promise<string>((resolve, reject) => {
    const req = http.request('http://10.0.0.1/upload', { method: 'POST' }, (res) => {
      let s = '';
      res.on('data', (d: Buffer) => (s += d)).on('end', () => resolve(s));
    });
    req.on('error', reject);
    req.end(Buffer.alloc(200_000, 1));
  });
  t.is(post, 'POST /upload 200000');
  await t.throwsAsync(http.get('http://10.0.0.1:81/'), { code: 'ECONNREFUSED' });
  await listener.close();
  await close();
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
(hasOpenssl ? test : test.skip)('the https device: node:tls over the stack, verified against the server certificate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'morgana-tls-'));
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=10.0.0.1', '-addext', 'subjectAltName=IP:10.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
  t.is(gen.status, 0, gen.stderr);
  const cert = readFileSync(join(dir, 'cert.pem'));
  const key = readFileSync(join(dir, 'key.pem'));
  rmSync(dir, { recursive: true, force: true });
  const { server, client, close } = await pair();
  const listener = await config.httpOver(server, { cert, key }).listen(443, (req, res) => res.end(`secure ${req.url} ${(req.socket as import('node:tls').TLSSocket).encrypted === true}`));
  const r = await config.httpOver(client, { cert, key, ca: cert }).get('https://10.0.0.1/x');
  t.is(r.status, 200);
  t.is(r.body.toString(), 'secure /x true');
  // Without the certificate as a trusted root the handshake fails.
  await t.throwsAsync(config.httpOver(client).get('https://10.0.0.1/x'));
  await listener.close();
  await close();
});

// ── the client over IPv6 and by name ─────────────────────────────────────────────────────────

/**
 * IPv6-only stacks on a switch: a name server that is also the router (it advertises
 * 2001:db8::/64 and itself as RDNSS), a web server at 2001:db8::80, and a client that
 * configures itself from the router advertisements.
 */
async function ipv6Network() {
  // The stacks' timers do not keep Node alive, and a switch has no I/O that would.
  const keepAlive = setInterval(() => {}, 1000);
  const sw = new VirtualSwitch();
  const ns = await createStack({
    net: sw.connect(),
    ipv6: { address: '2001:db8::53/64', dadTransmits: 0, routerAdvertisements: { prefixes: ['2001:db8::/64'], rdnss: ['2001:db8::53'] } },
  });
  const kv = await memKv();
  await kv.set('/@', JSON.stringify({ SOA: { mname: 'ns', rname: 'hostmaster', serial: 1, refresh: 60, retry: 60, expire: 600, minimum: 5 } }));
  // The A record is unreachable from IPv6-only stacks; the AAAA one is the server.
  await kv.set('/web', JSON.stringify({ A: ['192.0.2.80'], AAAA: ['2001:db8::80'] }));
  // The first AAAA address has nobody behind it.
  await kv.set('/flaky', JSON.stringify({ AAAA: ['2001:db8::81', '2001:db8::80'] }));
  const dns = await startDnsServer(ns, { origin: 'example.test', kv });
  const web = await createStack({ net: sw.connect(), ipv6: { address: '2001:db8::80/64', dadTransmits: 0 } });
  const client = await createStack({ net: sw.connect(), ipv6: 'auto' });
  const deadline = Date.now() + 15_000;
  while (!client.dns.servers.includes('2001:db8::53') || !client.ipv6!.addresses().some((a) => a.startsWith('2001:db8::'))) {
    if (Date.now() > deadline) {
      clearInterval(keepAlive);
      throw new Error('the client did not configure itself');
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    web,
    client,
    close: async () => {
      dns.close();
      await Promise.all([ns.close(), web.close(), client.close()]);
      clearInterval(keepAlive);
    },
  };
}

test('the http client over IPv6: bracketed literals, names through the stack’s resolver (RDNSS), a lookup of its own, per request too', async (t) => {
  const net = await ipv6Network();
  const listener = await config.httpOver(net.web).listen(80, (req, res) => res.end(`${req.headers.host} ${req.socket.remoteAddress} ${req.url}`));
  try {
    const me = net.client.ipv6!.addresses().find((a) => a.startsWith('2001:db8::'))!;
    const device = config.httpOver(net.client);
    const literal = await device.get('http://[2001:db8::80]/literal');
    t.is(literal.status, 200);
    t.is(literal.body.toString(), `[2001:db8::80] ${me} /literal`);
    // By name, with no lookup given: a resolver on the stack's name servers (from RDNSS). The A
    // record comes first and has no route here; the AAAA one is used.
    t.is((await device.get('http://web.example.test/by-name')).body.toString(), `web.example.test ${me} /by-name`);
    // Happy Eyeballs: the first address never answers; the second, tried 250 ms later, wins.
    t.is((await device.get('http://flaky.example.test/')).body.toString(), `flaky.example.test ${me} /`);
    await t.throwsAsync(device.get('http://nope.example.test/'), { code: 'ENOTFOUND' });

    // A lookup of the device's own, and one given with a request.
    const asked: string[] = [];
    const lookup: config.LookupFunction = (hostname, _options, callback) => {
      asked.push(hostname);
      callback(null, hostname === 'mine.test' ? [{ address: '2001:db8::80', family: 6 }] : []);
    };
    const own = config.httpOver(net.client, undefined, { lookup });
    t.is((await own.get('http://mine.test/')).body.toString(), `mine.test ${me} /`);
    t.deepEqual(asked, ['mine.test']);
    await t.throwsAsync(own.get('http://nothing.test/'), { code: 'ERR_NO_ADDRESS' });
    const perRequest = await device.get('http://mine.test/request', { lookup: lookup as never });
    t.is(perRequest.body.toString(), `mine.test ${me} /request`);
    t.deepEqual(asked, ['mine.test', 'nothing.test', 'mine.test']);
  } finally {
    await listener.close();
    await net.close();
  }
});

(hasOpenssl ? test : test.skip)('https by name over IPv6: the certificate is checked against the host name (SNI)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'morgana-tls6-'));
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=web.example.test', '-addext', 'subjectAltName=DNS:web.example.test', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
  t.is(gen.status, 0, gen.stderr);
  const cert = readFileSync(join(dir, 'cert.pem'));
  const key = readFileSync(join(dir, 'key.pem'));
  rmSync(dir, { recursive: true, force: true });
  const net = await ipv6Network();
  let servername: string | undefined;
  const listener = await config.httpOver(net.web, { cert, key }).listen(443, (req, res) => {
    servername = (req.socket as import('node:tls').TLSSocket).servername || undefined;
    res.end('secure by name');
  });
  try {
    const r = await config.httpOver(net.client, { cert, key, ca: cert }).get('https://web.example.test/');
    t.is(r.body.toString(), 'secure by name');
    t.is(servername, 'web.example.test');
    // The same server by address: the name in the certificate does not match it.
    await t.throwsAsync(config.httpOver(net.client, { cert, key, ca: cert }).get('https://[2001:db8::80]/'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  } finally {
    await listener.close();
    await net.close();
  }
});
