import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtualSwitch, config, createStack } from 'morgana';

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
