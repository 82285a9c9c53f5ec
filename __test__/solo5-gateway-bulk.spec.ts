/**
 * Bulk TCP through the user-mode gateway on an in-process link (a VirtualSwitch in place of the
 * tender's bridge), no root needed: a Morgana stack plays the guest. The gateway's stack sends
 * TCP super-frames to a link that takes them (on the real link, its TAP with the
 * `virtio_net_hdr`, which the kernel cuts on the bridge) and cuts them itself for one that does
 * not; forwarded and proxied (address-translated) connections both keep every byte.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { VirtualSwitch, createStack } from 'morgana';
import { startUserGateway } from 'morgana/solo5';
import { HOST_READ_MAX } from '../ts/config/tcp-relay.js';

const MIB = 1 << 20;
const sha256 = (b: Buffer | Buffer[]) => {
  const h = createHash('sha256');
  for (const c of Array.isArray(b) ? b : [b]) h.update(c);
  return h.digest('hex');
};
/** `n` bytes that are not all alike (a run of one byte would hide misplaced data). */
const payload = (n: number, seed: number) => {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0, block = 0; i < n; block++) i += createHash('sha256').update(`${seed}:${block}`).digest().copy(out, i);
  return out;
};
/** Everything a stream delivers until its end. */
const drain = (s: NodeJS.ReadableStream) =>
  new Promise<Buffer[]>((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(chunks));
    s.on('error', reject);
  });
const TSO = { checksum: true, tso4: true, tso6: true } as const;

for (const link of ['a link that takes super-frames', 'a plain link (the gateway cuts its super-frames)'] as const) {
  const offloads = link.startsWith('a link') ? TSO : undefined;
  test(`forwarded TCP, 16 MiB each way, SHA-256 equal, over ${link}`, async (t) => {
    const sw = new VirtualSwitch();
    const gw = await startUserGateway({ forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 9 }] });
    t.teardown(() => gw.close());
    gw.attach(sw.connect(offloads ? { offloads } : {}));
    const guest = await createStack({ net: sw.connect(offloads ? { offloads } : {}), ipv4: gw.guest, gateway: gw.gateway });
    t.teardown(() => guest.close());
    const down = payload(16 * MIB, 1);
    const up = payload(16 * MIB, 2);
    // The guest's service: hashes what it is sent and sends `down` back, both at once.
    const guestGot = new Promise<string>((resolve, reject) => {
      guest.tcp.listen(
        9,
        (conn) => {
          drain(conn).then((chunks) => resolve(sha256(chunks)), reject);
          conn.end(down);
        },
        { allowHalfOpen: true },
      );
    });
    const host = net.connect(gw.forwards[0]!.hostPort, '127.0.0.1');
    const hostGot = drain(host);
    host.end(up);
    t.is(sha256(await hostGot), sha256(down));
    t.is(await guestGot, sha256(up));
    const link = gw.stats().link;
    if (offloads) {
      // Super-frames crossed the link: far fewer frames than 1,448-byte segments would need.
      t.true(link.txFrames < (16 * MIB) / 1448 / 4, `${link.txFrames} frames for 16 MiB`);
      t.is(gw.stats().segmented, 0);
    } else {
      t.true(gw.stats().segmented > 0);
      t.true(link.txFrames > (16 * MIB) / 1448, `${link.txFrames} frames for 16 MiB`);
      t.is(link.txDropped, 0);
    }
  });
}

test('outbound TCP through the proxy (translated super-frames), 8 MiB each way, SHA-256 equal', async (t) => {
  const sw = new VirtualSwitch();
  const gw = await startUserGateway({});
  t.teardown(() => gw.close());
  gw.attach(sw.connect({ offloads: TSO }));
  const guest = await createStack({ net: sw.connect({ offloads: TSO }), ipv4: gw.guest, gateway: gw.gateway });
  t.teardown(() => guest.close());
  const down = payload(8 * MIB, 3);
  const up = payload(8 * MIB, 4);
  let serverGot: Promise<Buffer[]> | undefined;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    serverGot = drain(s);
    s.end(down);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  // The gateway address stands for the host's loopback.
  const conn = await guest.tcp.connect(gw.gateway, (server.address() as net.AddressInfo).port, { allowHalfOpen: true });
  const guestGot = drain(conn);
  conn.end(up);
  t.is(sha256(await guestGot), sha256(down));
  t.is(sha256(await serverGot!), sha256(up));
  t.is(gw.stats().accepted.outboundTcp, 1);
  t.true(gw.stats().link.txFrames < (8 * MIB) / 1448 / 4);
});

test('close() ends promptly while a forwarded connection is half-open towards a guest that is gone', async (t) => {
  const sw = new VirtualSwitch();
  const gw = await startUserGateway({ forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 9 }] });
  gw.attach(sw.connect());
  const guest = await createStack({ net: sw.connect(), ipv4: gw.guest, gateway: gw.gateway });
  const accepted = new Promise<void>((resolve) => guest.tcp.listen(9, () => resolve(), { allowHalfOpen: true }));
  const host = net.connect(gw.forwards[0]!.hostPort, '127.0.0.1');
  host.on('error', () => {});
  await accepted;
  // The guest vanishes without a word (the tender was killed), then the client half-closes: its
  // FIN is relayed to nobody, and the gateway's side of the host socket stays open.
  await guest.close();
  host.end();
  await new Promise((r) => setTimeout(r, 200));
  const closed = gw.close().then(() => 'closed');
  const late = new Promise((r) => setTimeout(() => r('still closing after 20 s'), 20_000).unref());
  t.is(await Promise.race([closed, late]), 'closed');
  host.destroy();
});

test('a guest that stops reading: the gateway takes its 2 MiB send buffer and the guest window from the client, then stops reading it; the data then arrive intact', async (t) => {
  t.timeout(120_000);
  const sw = new VirtualSwitch();
  const gw = await startUserGateway({ forwards: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: undefined, guestPort: 9 }] });
  t.teardown(() => gw.close());
  gw.attach(sw.connect({ offloads: TSO }));
  // The guest's window is a stack's default, 512 KiB.
  const guest = await createStack({ net: sw.connect({ offloads: TSO }), ipv4: gw.guest, gateway: gw.gateway });
  t.teardown(() => guest.close());
  const conn = new Promise<NodeJS.ReadableStream & { pause(): void }>((resolve) => guest.tcp.listen(9, (c) => (c.pause(), resolve(c)), { allowHalfOpen: true }));
  const up = payload(24 * MIB, 5);
  const host = net.connect(gw.forwards[0]!.hostPort, '127.0.0.1');
  host.end(up);
  const guestConn = await conn;
  // Wait until the relay stops moving (the guest reads nothing): what the gateway took is its
  // send buffer, the guest's window and at most a read chunk (up to HOST_READ_MAX) in between.
  let last = -1;
  for (let since = Date.now(); ; await new Promise((r) => setTimeout(r, 5))) {
    const now = gw.stats().forwardedBytes.inward;
    if (now !== last) (last = now), (since = Date.now());
    else if (Date.now() - since > 1000) break;
  }
  t.true(last >= 2 * MIB, `the gateway took only ${last} bytes: its send buffer is smaller than 2 MiB`);
  t.true(last <= 2.5 * MIB + HOST_READ_MAX, `the gateway took ${last} bytes while the guest read nothing`);
  const got = drain(guestConn);
  guestConn.resume();
  t.is(sha256(await got), sha256(up));
  t.is(gw.stats().forwardedBytes.inward, 24 * MIB);
});
