/**
 * The user-mode gateway's outbound TCP proxy (the guest dials out through the gateway to a host
 * socket) on an in-process link: what either end sends before it closes arrives whole at the
 * other, even when it closes at once (a FIN right behind megabytes still in flight), and each
 * direction ends on its own (half-close), as through the kernel.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { VirtualSwitch, createStack } from 'morgana';
import { startUserGateway } from 'morgana/solo5';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function rig(t: import('ava').ExecutionContext, server: net.Server, faults?: { delayMs?: number; loss?: number }) {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => void server.close());
  const sw = new VirtualSwitch({ faults });
  const gw = await startUserGateway({ forwards: [] });
  t.teardown(() => gw.close());
  gw.attach(sw.connect());
  const guest = await createStack({ net: sw.connect(), ipv4: gw.guest, gateway: gw.gateway });
  t.teardown(() => guest.close());
  const port = (server.address() as net.AddressInfo).port;
  // 10.0.2.2 is the host's loopback through the gateway (hostLoopback, the default).
  return guest.tcp.connect(gw.gateway, port);
}

test('host → guest: 8 MiB written and closed at once by the host all reach the guest', async (t) => {
  const payload = randomBytes(8 << 20);
  const conn = await rig(t, net.createServer((s) => s.end(payload)));
  const chunks: Buffer[] = [];
  conn.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => conn.on('end', resolve).on('error', reject));
  const got = Buffer.concat(chunks);
  t.is(got.length, payload.length);
  t.is(sha(got), sha(payload));
  conn.end();
});

test('guest → host: 8 MiB written and ended at once by the guest all reach the host, which still answers after the guest\'s FIN', async (t) => {
  const payload = randomBytes(8 << 20);
  let received: Promise<Buffer> = Promise.reject(new Error('no connection'));
  received.catch(() => {});
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    received = new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => {
        const all = Buffer.concat(chunks);
        // Half-close: the host answers after it has seen the guest's FIN.
        s.end(`got ${all.length} ${sha(all)}`);
        resolve(all);
      });
      s.on('error', reject);
    });
  });
  const conn = await rig(t, server);
  const answer: Buffer[] = [];
  conn.on('data', (c: Buffer) => answer.push(c));
  const ended = new Promise<void>((resolve, reject) => conn.on('end', resolve).on('error', reject));
  conn.end(payload);
  await ended;
  const got = await received;
  t.is(sha(got), sha(payload));
  t.is(Buffer.concat(answer).toString(), `got ${payload.length} ${sha(payload)}`);
});

test('host → guest over a slow, lossy link: the host closes long before the guest has its data, and nothing is lost', async (t) => {
  const payload = randomBytes(4 << 20);
  const conn = await rig(t, net.createServer((s) => s.end(payload)), { delayMs: 5, loss: 0.01 });
  const chunks: Buffer[] = [];
  conn.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => conn.on('end', resolve).on('error', reject));
  t.is(sha(Buffer.concat(chunks)), sha(payload));
  conn.end();
});
