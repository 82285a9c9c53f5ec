/**
 * The vnet `--forward` relay (ts/config/tcp-relay.ts) between a real host socket on loopback and
 * a connection of a gateway stack, to a second stack on a VirtualSwitch whose ports take
 * super-frames, as the vnet target sets them up: data intact both ways (SHA-256), half-close
 * passed on, and the relay's own buffers bounded while either end stops reading.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Stack, VirtualSwitch, createStack } from 'morgana';
import { VNET_PORT_OFFLOADS } from '../ts/config/devices.js';
import { HOST_READ_BUFFER, HOST_READ_BUFFERS_KEPT, HOST_READ_GROWTH_BUDGET, HOST_READ_MAX, type TcpRelay, hostReadGrowth, relayAccepted, relayConnected } from '../ts/config/tcp-relay.js';
import { vnetForwards } from '../ts/config/vnet-gateway.js';
import { digest } from './helpers/streams.js';

const MIB = 1 << 20;
const GUEST_PORT = 7000;
/** Doublings from a relay's first read buffer to its largest. */
const GROWTH_STEPS = Math.log2(HOST_READ_MAX / HOST_READ_BUFFER);
/** Read buffers a relayed host socket may allocate: its first, its doublings, one lent per size, and those kept. */
const READ_BUFFERS_BOUND = 1 + 2 * GROWTH_STEPS + HOST_READ_BUFFERS_KEPT + 2;

interface Rig {
  sw: VirtualSwitch;
  gateway: Stack;
  guest: Stack;
  /** Where the host client connects. */
  port: number;
  /** The relays, in accept order. */
  relays: TcpRelay[];
  /** The guest's connections, in accept order. */
  accepted: AsyncGenerator<Duplex>;
  close(): Promise<void>;
}

async function rig(mtu: number): Promise<Rig> {
  const sw = new VirtualSwitch({ mtu });
  const gateway = await createStack({ net: sw.connect({ offloads: VNET_PORT_OFFLOADS }), ipv4: '10.0.0.1/24', tcp: { sendBuffer: 2 * MIB, recvBuffer: 2 * MIB } });
  const guest = await createStack({ net: sw.connect({ offloads: VNET_PORT_OFFLOADS }), ipv4: '10.0.0.2/24' });
  const queue: Duplex[] = [];
  let wake: (() => void) | undefined;
  guest.tcp.listen(GUEST_PORT, (c) => (queue.push(c), wake?.()), { allowHalfOpen: true });
  async function* accepted(): AsyncGenerator<Duplex> {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      yield queue.shift()!;
    }
  }
  const relays: TcpRelay[] = [];
  // As vnet --forward does: nothing read from the client until the guest accepted, then its
  // descriptor taken over by a socket reading into the relay's reused buffer.
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (host) => {
    void gateway.tcp.connect('10.0.0.2', GUEST_PORT, { allowHalfOpen: true }).then((inner) => relays.push(relayAccepted(host, inner).relay));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    sw,
    gateway,
    guest,
    port: (server.address() as net.AddressInfo).port,
    relays,
    accepted: accepted(),
    async close() {
      server.close();
      await gateway.close();
      await guest.close();
      await sw.close();
    },
  };
}

/** Writes `total` random bytes in 64 KiB pieces honouring backpressure, then ends; resolves to their SHA-256. */
async function sendRandom(stream: Duplex, total: number, onWritten?: (n: number) => void): Promise<string> {
  const hash = createHash('sha256');
  for (let at = 0; at < total; at += 64 * 1024) {
    const piece = randomBytes(Math.min(64 * 1024, total - at));
    hash.update(piece);
    const more = stream.write(piece);
    onWritten?.(at + piece.length);
    if (!more) await once(stream, 'drain');
  }
  stream.end();
  return hash.digest('hex');
}

for (const mtu of [1500, 65_520]) {
  test(`64 MiB each way through the relay at MTU ${mtu} arrive intact (SHA-256)`, async (t) => {
    t.timeout(300_000);
    const r = await rig(mtu);
    try {
      const host = net.connect({ port: r.port, host: '127.0.0.1', allowHalfOpen: true });
      const guestConn = (await r.accepted.next()).value as Duplex;
      const [hostGot, guestGot, hostSent, guestSent] = await Promise.all([digest(host), digest(guestConn), sendRandom(host, 64 * MIB), sendRandom(guestConn, 64 * MIB)]);
      t.is(guestGot.length, 64 * MIB);
      t.is(guestGot.sha, hostSent);
      t.is(hostGot.length, 64 * MIB);
      t.is(hostGot.sha, guestSent);
      t.is(r.relays[0]!.inward, 64 * MIB);
      t.is(r.relays[0]!.outward, 64 * MIB);
      // The guest's data came out of the gateway connection through the relay's reused buffer
      // (the stream, a Buffer per chunk, only while the host socket was full).
      t.true(r.relays[0]!.outwardViaBuffer >= 32 * MIB && r.relays[0]!.outwardViaBuffer <= 64 * MIB, `${r.relays[0]!.outwardViaBuffer} bytes through the buffer`);
      // The host socket read 64 MiB into a handful of reused buffers, not one per read.
      t.true(r.relays[0]!.hostReadBuffers >= 1 && r.relays[0]!.hostReadBuffers <= READ_BUFFERS_BOUND, `${r.relays[0]!.hostReadBuffers} read buffers`);
      // The guest super-frames crossed the switch whole: far fewer frames than 1500-byte segments.
      if (mtu === 1500) for (const port of r.sw.ports()) t.true(port.stats.rxFrames < (64 * MIB) / 1460 / 4, `port ${port.id}: ${port.stats.rxFrames} frames`);
    } finally {
      await r.close();
    }
  });
}

test('a bulk transfer grows the read buffers to their largest size both ways, and the relay gives the growth back when it ends', async (t) => {
  t.timeout(300_000);
  const r = await rig(1500);
  try {
    const before = hostReadGrowth();
    const host = net.connect({ port: r.port, host: '127.0.0.1', allowHalfOpen: true });
    const guestConn = (await r.accepted.next()).value as Duplex;
    // The largest growth seen while 32 MiB go each way: both directions reached the largest size.
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, hostReadGrowth() - before)), 1);
    const [hostGot, guestGot, hostSent, guestSent] = await Promise.all([digest(host), digest(guestConn), sendRandom(host, 32 * MIB), sendRandom(guestConn, 32 * MIB)]);
    clearInterval(sampler);
    t.is(guestGot.sha, hostSent);
    t.is(hostGot.sha, guestSent);
    t.true(most > HOST_READ_MAX - HOST_READ_BUFFER, `read buffers grew by at most ${most} bytes in all`);
    host.destroy();
    await once(host, 'close');
    // The relay's host socket closes once the client's RST or FIN reaches it.
    const deadline = Date.now() + 30_000;
    while (hostReadGrowth() !== before && Date.now() < deadline) await sleep(10);
    t.is(hostReadGrowth(), before);
  } finally {
    await r.close();
  }
});

test('a half-close from the guest is passed on while the host keeps sending', async (t) => {
  t.timeout(120_000);
  const r = await rig(1500);
  try {
    const host = net.connect({ port: r.port, host: '127.0.0.1', allowHalfOpen: true });
    const guestConn = (await r.accepted.next()).value as Duplex;
    const hostGot = digest(host);
    guestConn.end('bye');
    t.is((await hostGot).length, 3);
    const [guestGot, sent] = await Promise.all([digest(guestConn), sendRandom(host, 4 * MIB)]);
    t.is(guestGot.sha, sent);
  } finally {
    await r.close();
  }
});

/**
 * Waits until `progress()` has not moved for `quietMs` (the pipeline is full), sampling
 * `sample()` every millisecond meanwhile; resolves to the largest sample.
 */
async function untilStalled(progress: () => number, sample: () => number, quietMs: number): Promise<number> {
  let last = -1;
  let since = Date.now();
  let max = 0;
  for (;;) {
    max = Math.max(max, sample());
    const now = progress();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since > quietMs) return max;
    await sleep(1);
  }
}

test("stalled bulk transfers share the read buffers' growth budget: it binds and is never exceeded, and every stream then arrives intact", async (t) => {
  t.timeout(300_000);
  const r = await rig(1500);
  try {
    // Twice as many connections as the budget lets grow to the largest size, each one's guest
    // not reading: each relay grows its read buffer while the gateway's send buffer and the
    // guest's window fill, then stalls holding it (without the budget they grow past it).
    const connections = 2 * Math.ceil(HOST_READ_GROWTH_BUDGET / (HOST_READ_MAX - HOST_READ_BUFFER));
    const before = hostReadGrowth();
    let most = 0;
    let written = 0;
    const sampler = setInterval(() => (most = Math.max(most, hostReadGrowth())), 1);
    const pairs = await Promise.all(
      Array.from({ length: connections }, async () => {
        const host = net.connect({ port: r.port, host: '127.0.0.1', allowHalfOpen: true });
        const guestConn = (await r.accepted.next()).value as Duplex;
        guestConn.pause();
        return { host, guestConn, sent: sendRandom(host, 8 * MIB, () => (written += 64 * 1024)) };
      }),
    );
    await untilStalled(() => written, () => 0, 1500);
    clearInterval(sampler);
    t.true(most <= HOST_READ_GROWTH_BUDGET, `the read buffers grew by ${most} bytes in all`);
    t.true(most > HOST_READ_GROWTH_BUDGET - HOST_READ_MAX, `the read buffers grew by only ${most} bytes in all: the budget did not bind`);
    const results = await Promise.all(
      pairs.map(async ({ host, guestConn, sent }) => {
        const got = digest(guestConn);
        guestConn.resume();
        const ok = (await got).sha === (await sent);
        host.destroy();
        return ok;
      }),
    );
    t.deepEqual(results, results.map(() => true), 'a stream arrived changed');
    const deadline = Date.now() + 30_000;
    while (hostReadGrowth() !== before && Date.now() < deadline) await sleep(10);
    t.is(hostReadGrowth(), before);
  } finally {
    await r.close();
  }
});

/** What the relay may hold: two chunks of the largest read size and the four streams' high-water marks, with room. */
const RELAY_BOUND = 2 * HOST_READ_MAX + MIB;

test('a guest that stops reading stops the relay reading from the host: its buffers stay bounded, and the data then arrives intact', async (t) => {
  t.timeout(300_000);
  const r = await rig(1500);
  try {
    const total = 48 * MIB;
    const host = net.connect({ port: r.port, host: '127.0.0.1', allowHalfOpen: true });
    const guestConn = (await r.accepted.next()).value as Duplex;
    guestConn.pause();
    let written = 0;
    const sent = sendRandom(host, total, (n) => (written = n));
    const relay = r.relays[0]!;
    const max = await untilStalled(() => written, () => relay.buffered(), 1500);
    // Stalled well short of the total: the relay did not take everything the host offered.
    t.true(relay.inward < 16 * MIB, `relay took ${relay.inward} bytes while the guest read nothing`);
    t.true(written < total);
    t.true(max <= RELAY_BOUND, `relay held up to ${max} bytes`);
    const got = digest(guestConn);
    guestConn.resume();
    t.is((await got).sha, await sent);
    // The engine's full send buffer held a chunk, whose read buffer was lent (and came back).
    t.true(relay.hostReadBuffers >= 2 && relay.hostReadBuffers <= READ_BUFFERS_BOUND, `${relay.hostReadBuffers} read buffers`);
  } finally {
    await r.close();
  }
});

test('a host that stops reading stops the relay reading from the guest: its buffers stay bounded, and the data then arrives intact', async (t) => {
  t.timeout(300_000);
  const r = await rig(1500);
  try {
    const total = 48 * MIB;
    const host = net.connect({ port: r.port, host: '127.0.0.1', allowHalfOpen: true });
    const guestConn = (await r.accepted.next()).value as Duplex;
    host.pause();
    let written = 0;
    const sent = sendRandom(guestConn, total, (n) => (written = n));
    const relay = r.relays[0]!;
    const max = await untilStalled(() => written, () => relay.buffered(), 1500);
    t.true(written < total, 'the guest could write everything while the host read nothing');
    t.true(max <= RELAY_BOUND, `relay held up to ${max} bytes`);
    const got = digest(host);
    host.resume();
    t.is((await got).sha, await sent);
  } finally {
    await r.close();
  }
});

test("vnet --forward's stop() closes relayed connections that are still open (their sockets are no longer the server's)", async (t) => {
  t.timeout(120_000);
  const r = await rig(1500);
  try {
    const forwards = await vnetForwards(r.gateway as unknown as Parameters<typeof vnetForwards>[0], { forward: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestAddress: '10.0.0.2', guestPort: GUEST_PORT }] }, '10.0.0.2');
    const port = Number(/:(\d+)$/.exec(forwards.list[0]!.host)![1]);
    const host = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    host.on('error', () => {});
    const guestConn = (await r.accepted.next()).value as Duplex;
    guestConn.on('error', () => {});
    // One exchange each way first: the relay is up.
    host.write('ping');
    t.is(String((await once(guestConn, 'data'))[0]), 'ping');
    guestConn.write('pong');
    t.is(String((await once(host, 'data'))[0]), 'pong');
    // The client sees its connection end (FIN, or RST): it half-opens, so 'end' rather than 'close'.
    const hostEnded = new Promise((resolve) => (host.once('end', resolve), host.once('close', resolve)));
    const stopped = forwards.stop().then(() => 'stopped');
    const late = new Promise((resolve) => setTimeout(() => resolve('still stopping after 20 s'), 20_000).unref());
    t.is(await Promise.race([stopped, late]), 'stopped');
    await hostEnded;
    host.destroy();
  } finally {
    await r.close();
  }
});

test('an outbound relay (relayConnected): what the guest sends while the host socket still connects is kept, and 16 MiB each way arrive intact', async (t) => {
  t.timeout(300_000);
  const r = await rig(1500);
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  const hostGot = new Promise<{ sha: string; length: number }>((resolve, reject) => {
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      server.close();
      digest(socket).then(resolve, reject);
      void sendRandom(socket, 16 * MIB).then((sha) => (hostSent = sha));
    });
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      r.gateway.tcp.listen(8000, (inner) => relays.push(relayConnected({ host: '127.0.0.1', port }, inner).relay), { allowHalfOpen: true });
      listening();
    });
  });
  let hostSent = '';
  const relays: TcpRelay[] = [];
  try {
    await ready;
    const conn = await r.guest.tcp.connect('10.0.0.1', 8000, { allowHalfOpen: true });
    // Written at once: the gateway's host socket is still connecting, so its first chunk is kept.
    const [guestGot, guestSent] = await Promise.all([digest(conn), sendRandom(conn, 16 * MIB)]);
    const got = await hostGot;
    t.is(got.length, 16 * MIB);
    t.is(got.sha, guestSent);
    t.is(guestGot.length, 16 * MIB);
    t.is(guestGot.sha, hostSent);
    t.is(relays[0]!.outward, 16 * MIB);
    t.true(relays[0]!.outwardViaBuffer > 0 && relays[0]!.outwardViaBuffer <= 16 * MIB);
  } finally {
    await r.close();
  }
});
