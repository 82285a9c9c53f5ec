import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { type Stack, VirtualClock, VirtualSwitch, checksum, createStack, ipv4 } from 'morgana';

const tick = () => new Promise((r) => setImmediate(r));
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function pair(options: { faults?: ConstructorParameters<typeof VirtualSwitch>[0]; clock?: VirtualClock; maxFragments?: number } = {}) {
  const sw = new VirtualSwitch(options.faults);
  const common = { clock: options.clock, ...(options.maxFragments !== undefined && { reassembly: { maxFragments: options.maxFragments } }) };
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', ...common });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', ...common });
  return { sw, a, b, close: async () => Promise.all([a.close(), b.close()]) };
}

function udpEcho(stack: Stack, port: number) {
  const socket = stack.udp.bind(port, (data, from) => socket.send(from.address, from.port, data));
  return socket;
}

function receiveOne(stack: Stack, port = 0): { port: number; next: Promise<{ data: Buffer; from: { address: string; port: number } }> } {
  let resolve!: (v: { data: Buffer; from: { address: string; port: number } }) => void;
  const next = new Promise<{ data: Buffer; from: { address: string; port: number } }>((r) => (resolve = r));
  const socket = stack.udp.bind(port, (data, from) => {
    socket.close();
    resolve({ data, from });
  });
  return { port: socket.port, next };
}

test('ARP resolves a neighbour, and the answer is cached', async (t) => {
  const { a, b, close } = await pair();
  t.is(await a.arp.query('10.0.0.2'), b.ethernet.net.mac);
  const entries = a.arp.entries();
  t.true(entries.some((e) => e.address === '10.0.0.2' && e.mac === b.ethernet.net.mac));
  // b learned a from the request addressed to it (RFC 826 merge).
  t.true(b.arp.entries().some((e) => e.address === '10.0.0.1'));
  const sent = a.arp.stats().requestsSent;
  await a.arp.query('10.0.0.2');
  t.is(a.arp.stats().requestsSent, sent, 'cached: no new request');
  await close();
});

test('ARP entries expire on the virtual clock; unanswered requests give up', async (t) => {
  const clock = new VirtualClock();
  const { a, close } = await pair({ clock });
  await a.arp.query('10.0.0.2');
  clock.advance(59_000);
  t.true(a.arp.entries().some((e) => e.address === '10.0.0.2'));
  clock.advance(1_001);
  t.false(a.arp.entries().some((e) => e.address === '10.0.0.2'));
  const lookup = a.arp.query('10.0.0.99');
  await tick();
  clock.advance(1000);
  await tick();
  clock.advance(1000);
  await tick();
  clock.advance(1000);
  await t.throwsAsync(lookup, { code: 'ERR_ARP_TIMEOUT' });
  t.is(a.arp.stats().requestsSent, 2 + 3 - 1, 'one request for .2, three tries for .99');
  await close();
});

test('ARP queue per destination is bounded and drops are counted', async (t) => {
  const { a, close } = await pair();
  for (let i = 0; i < 40; i++) a.udp.send('10.0.0.77', 9, Buffer.from('x'));
  t.is(a.arp.stats().queueDrops, 40 - 16);
  await close();
});

test('gratuitous ARP announces the address', async (t) => {
  const sw = new VirtualSwitch();
  const watcher = sw.connect();
  const seen: Buffer[] = [];
  watcher.listen((f) => seen.push(f));
  const s = await createStack({ net: sw.connect(), ipv4: '10.0.0.5/24' });
  await tick();
  const garp = seen.find((f) => f.readUInt16BE(12) === 0x0806);
  t.truthy(garp);
  t.is(garp!.readUInt32BE(14 + 14), 0x0a000005, 'sender IP');
  t.is(garp!.readUInt32BE(14 + 24), 0x0a000005, 'target IP = sender IP');
  await s.close();
});

test('ping between two stacks', async (t) => {
  const { a, b, close } = await pair();
  const reply = await a.icmp.ping('10.0.0.2', { size: 100, timeoutMs: 15_000 });
  t.is(reply.from, '10.0.0.2');
  t.is(reply.bytes, 108);
  t.true(reply.rttMs >= 0);
  t.is(b.icmp.stats().echoRepliesSent, 1);
  await close();
});

test('UDP echo, with checksums verified end to end', async (t) => {
  const { a, b, close } = await pair();
  udpEcho(b, 7);
  const { port, next } = receiveOne(a);
  a.udp.send('10.0.0.2', 7, Buffer.from('hello morgana'), { srcPort: port });
  const { data, from } = await next;
  t.is(data.toString(), 'hello morgana');
  t.deepEqual(from, { address: '10.0.0.2', family: 'IPv4', port: 7 });
  t.is(b.udp.stats().badChecksum, 0);
  await close();
});

for (const size of [8 * 1024, 60 * 1024]) {
  for (const faulty of [false, true]) {
    test(`${size / 1024} KiB UDP datagrams are fragmented and reassembled${faulty ? ' with reordering and duplication' : ''}`, async (t) => {
      const { a, b, sw, close } = await pair({ maxFragments: 64 });
      const received: Buffer[] = [];
      b.udp.bind(5000, (data) => received.push(data));
      await a.arp.query('10.0.0.2');
      if (faulty) sw.setFaults({ reorder: 0.3, duplicate: 0.2 });
      const sent: string[] = [];
      for (let i = 0; i < 5; i++) {
        const data = Buffer.alloc(size);
        for (let j = 0; j < size; j++) data[j] = (j * 7 + i) & 0xff;
        sent.push(createHash('sha256').update(data).digest('hex'));
        a.udp.send('10.0.0.2', 5000, data);
      }
      for (let i = 0; i < 50 && received.length < 5; i++) await tick();
      const got = received.map((d) => createHash('sha256').update(d).digest('hex'));
      t.deepEqual(new Set(got), new Set(sent));
      t.true(a.ipv4.stats().fragmentsSent >= 5 * Math.ceil(size / 1480));
      t.true(b.ipv4.stats().reassembly.reassembled >= 5);
      await close();
    });
  }
}

test('with the default limits, 32 KiB and the largest (65,507-byte) UDP datagrams pass at MTU 1500', async (t) => {
  // Regression: the default of 16 fragments per datagram dropped anything past 23,680 bytes
  // (iperf3's 32 KiB UDP datagrams, 23 fragments, delivered nothing).
  const { a, b, close } = await pair();
  const received: Buffer[] = [];
  b.udp.bind(5001, (data) => received.push(Buffer.from(data)));
  await a.arp.query('10.0.0.2');
  // The receive path hands each turn's fragments to the reassembler in batches, never one by one.
  const batches: number[] = [];
  const reassembler = b.ipv4.reassembler;
  const pushBatch = reassembler.pushBatch.bind(reassembler);
  reassembler.pushBatch = (data, spans, now, options) => {
    batches.push(options?.count ?? spans.length / 2);
    return pushBatch(data, spans, now, options);
  };
  reassembler.push = () => t.fail('a fragment was pushed on its own') as never;
  const sizes = [32 * 1024, 65_507, 65_507];
  const sent = sizes.map((size) => randomBytes(size));
  for (const data of sent) a.udp.send('10.0.0.2', 5001, data);
  // A small datagram sent last, in the same turn, is delivered last.
  a.udp.send('10.0.0.2', 5001, Buffer.from('last'));
  for (let i = 0; i < 200 && received.length < sent.length + 1; i++) await tick();
  t.deepEqual(received.map(sha256), [...sent, Buffer.from('last')].map(sha256));
  t.is(batches.reduce((x, y) => x + y, 0), 23 + 45 + 45);
  t.true(batches.length <= 4, `${batches.length} batches: ${batches.join(', ')}`);
  t.is(a.ipv4.stats().fragmentsSent, 23 + 45 + 45);
  const r = b.ipv4.stats().reassembly;
  t.is(r.reassembled, 3);
  t.is(r.droppedTooManyFragments, 0);
  t.is(r.pendingDatagrams, 0);
  await close();
});

test('fragments with a bad header checksum are dropped in the batch and counted by reason; the rest still reassemble', async (t) => {
  const sw = new VirtualSwitch();
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const raw = sw.connect();
  raw.listen(() => {});
  const received: Buffer[] = [];
  b.udp.bind(5002, (data) => received.push(Buffer.from(data)));
  const data = randomBytes(4000);
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(1234, 0);
  udp.writeUInt16BE(5002, 2);
  udp.writeUInt16BE(udp.length, 4);
  data.copy(udp, 8);
  const send = (id: number, corrupt: boolean) => {
    const packet = ipv4.emit({ src: '10.0.0.9', dst: '10.0.0.2', protocol: 17, identification: id }, udp);
    const pieces = ipv4.fragment(packet, 1500);
    if (corrupt) pieces[1]![10]! ^= 0xff;
    for (const piece of pieces) {
      raw.write(14 + piece.length, (frame) => {
        Buffer.from(b.ethernet.net.mac.replaceAll(':', ''), 'hex').copy(frame, 0);
        Buffer.from(raw.mac.replaceAll(':', ''), 'hex').copy(frame, 6);
        frame.writeUInt16BE(0x0800, 12);
        piece.copy(frame, 14);
        return 14 + piece.length;
      });
    }
  };
  send(1, true);
  send(2, false);
  for (let i = 0; i < 50 && received.length < 1; i++) await tick();
  t.is(received.length, 1);
  t.true(received[0]!.equals(data));
  t.is(b.ipv4.stats().dropped.ERR_IPV4_BAD_CHECKSUM, 1);
  t.is(b.ipv4.stats().reassembly.droppedMalformed, 1);
  t.is(b.ipv4.stats().reassembly.pendingDatagrams, 1, 'the datagram that lost a fragment waits for its timeout');
  await Promise.all([b.close(), raw.close()]);
});

test('a closed UDP port answers with ICMP port unreachable', async (t) => {
  const { a, b, close } = await pair();
  const socket = a.udp.bind(0, () => {});
  const error = new Promise<{ code: string }>((resolve) => socket.onError(resolve as never));
  socket.send('10.0.0.2', 9999, Buffer.from('anyone?'));
  t.is((await error).code, 'ERR_UDP_PORT_UNREACHABLE');
  t.is(b.udp.stats().noPort, 1);
  t.is(b.icmp.stats().errorsSent, 1);
  await close();
});

async function routedNetwork() {
  const left = new VirtualSwitch();
  const right = new VirtualSwitch();
  const a = await createStack({ net: left.connect(), ipv4: '10.1.0.2/24', gateway: '10.1.0.1' });
  const router = await createStack({
    interfaces: [
      { net: left.connect(), ipv4: '10.1.0.1/24' },
      { net: right.connect(), ipv4: '10.2.0.1/24' },
    ],
    forwarding: true,
  });
  const b = await createStack({ net: right.connect(), ipv4: '10.2.0.2/24', gateway: '10.2.0.1' });
  return { a, b, router, close: () => Promise.all([a.close(), b.close(), router.close()]) };
}

test('a third stack routes between two subnets, decrementing the TTL', async (t) => {
  const { a, b, router, close } = await routedNetwork();
  const reply = await a.icmp.ping('10.2.0.2', { timeoutMs: 15_000 });
  t.is(reply.from, '10.2.0.2');
  t.is(reply.ttl, 63, 'the reply crossed one router');
  udpEcho(b, 7);
  const { port, next } = receiveOne(a);
  a.udp.send('10.2.0.2', 7, Buffer.alloc(5000, 1), { srcPort: port });
  t.is((await next).data.length, 5000);
  t.true(router.ipv4.stats().forwarded >= 4);
  await close();
});

test('TTL 1 through a router gets time exceeded; traceroute lists the hops', async (t) => {
  const { a, close } = await routedNetwork();
  const error = await t.throwsAsync(a.icmp.ping('10.2.0.2', { ttl: 1 }), { code: 'ERR_ICMP_TIME_EXCEEDED' });
  t.is((error as unknown as { from: string }).from, '10.1.0.1');
  const hops = await a.icmp.traceroute('10.2.0.2');
  t.deepEqual(hops.map((h) => h.address), ['10.1.0.1', '10.2.0.2']);
  const socket = a.udp.bind(0, () => {});
  const udpError = new Promise<{ code: string }>((resolve) => socket.onError(resolve as never));
  socket.send('10.2.0.2', 7, Buffer.from('x'), { ttl: 1 });
  t.is((await udpError).code, 'ERR_ICMP_TIME_EXCEEDED');
  await close();
});

test('malformed frames are dropped and counted; nothing throws and the stack keeps working', async (t) => {
  const sw = new VirtualSwitch();
  const raw = sw.connect();
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24' });
  const bMac = Buffer.from(b.ethernet.net.mac.replaceAll(':', ''), 'hex');
  const rawMac = Buffer.from(raw.mac.replaceAll(':', ''), 'hex');
  const good = ipv4.emit({ src: '10.0.0.9', dst: '10.0.0.2', protocol: 17 }, Buffer.alloc(30));
  const send = (ethertype: number, payload: Buffer) =>
    raw.write(14 + payload.length, (f) => {
      bMac.copy(f, 0);
      rawMac.copy(f, 6);
      f.writeUInt16BE(ethertype, 12);
      payload.copy(f, 14);
      return 14 + payload.length;
    });
  const truncated = good.subarray(0, 30);
  const badChecksum = Buffer.from(good);
  badChecksum[8] = 1;
  const badIhl = Buffer.from(good);
  badIhl[0] = 0x43;
  send(0x0800, truncated);
  send(0x0800, badChecksum);
  send(0x0800, badIhl);
  send(0x0806, Buffer.alloc(10));
  send(0x1234, Buffer.alloc(40));
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.alloc(1 + (i % 200));
    for (let j = 0; j < junk.length; j++) junk[j] = (Math.random() * 256) | 0;
    if (i % 3 === 0) junk[0] = 0x45;
    send(i % 2 ? 0x0800 : 0x0806, junk);
  }
  for (let i = 0; i < 10; i++) await tick();
  const stats = b.stats();
  t.is(stats.ipv4.dropped.ERR_IPV4_TRUNCATED! >= 1, true);
  t.true(stats.ipv4.dropped.ERR_IPV4_BAD_CHECKSUM! >= 1);
  t.true(stats.ipv4.dropped.ERR_IPV4_BAD_IHL! >= 1);
  t.true(stats.arp[0]!.malformed >= 1);
  t.true(stats.ethernet[0]!.droppedUnknownType >= 1);
  // Still alive: a fresh stack can ping it.
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  t.is((await a.icmp.ping('10.0.0.2', { timeoutMs: 15_000 })).from, '10.0.0.2');
  t.is(checksum(Buffer.alloc(0)), 0xffff);
  await Promise.all([a.close(), b.close()]);
});

test('createStack validates its configuration', async (t) => {
  const sw = new VirtualSwitch();
  await t.throwsAsync(createStack({ net: sw.connect(), ipv4: '10.0.0.1' }), { code: 'ERR_INVALID_CIDR' });
  await t.throwsAsync(createStack({ net: sw.connect(), ipv4: '10.0.0.1/33' }), { code: 'ERR_INVALID_CIDR' });
  await t.throwsAsync(createStack({}), { code: 'ERR_STACK_CONFIG' });
  const s = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24' });
  t.throws(() => s.udp.send('192.168.9.9', 53, Buffer.from('x')), { code: 'ERR_NO_ROUTE' });
  await s.close();
});
