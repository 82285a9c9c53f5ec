/**
 * The IPv6 network layer between Morgana stacks on a VirtualSwitch, on a virtual clock:
 * neighbour discovery, SLAAC from a Morgana router's advertisements, DAD, NUD, path MTU, MLD,
 * and what happens to malformed or unexpected packets (sent from a raw switch port).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import {
  type NetDevice,
  type Stack,
  type StackOptions,
  VirtualClock,
  VirtualSwitch,
  createStack,
  eui64Iid,
  formatIpv6Address,
  fragmentIpv6,
  icmpv6Wire,
  ipv6,
  parseIpv6Address,
  seededRandom,
} from 'morgana';

const { ICMPV6 } = icmpv6Wire;
const tick = () => new Promise((r) => setImmediate(r));

/** Advances a virtual clock in steps, letting the switch deliver between them. */
async function run(clock: VirtualClock, ms: number, stepMs = 10): Promise<void> {
  for (let done = 0; done < ms; done += stepMs) {
    await tick();
    await tick();
    clock.advance(Math.min(stepMs, ms - done));
  }
  await tick();
  await tick();
}

/** Drives the virtual clock until `promise` settles (at most `limitMs` of virtual time). */
async function until<T>(clock: VirtualClock, promise: Promise<T>, limitMs = 60_000, stepMs = 10): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  watched.catch(() => {});
  for (let spent = 0; !settled && spent < limitMs; spent += stepMs) {
    await tick();
    await tick();
    if (!settled) clock.advance(stepMs);
  }
  return watched;
}

function linkLocal(stack: Stack): string {
  const a = stack.ipv6!.addresses().find((x) => x.startsWith('fe80:'));
  if (!a) throw new Error('no link-local address');
  return a;
}

function solicitedNode(address: Buffer): Buffer {
  return Buffer.concat([Buffer.from('ff0200000000000000000001ff', 'hex'), address.subarray(13, 16)]);
}

function multicastMac(group: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x33, 0x33]), group.subarray(12, 16)]);
}

interface Received {
  frame: Buffer;
  dstMac: Buffer;
  packet: ipv6.Ipv6Packet;
  /** The ICMPv6 message, when there is one. */
  icmp?: Buffer;
}

/**
 * A hand-driven node on a switch port: it records every IPv6 frame it sees, answers neighbour
 * solicitations for its own address, and sends whatever packets a test builds.
 */
class RawNode {
  readonly port: NetDevice;
  readonly mac: Buffer;
  readonly address: Buffer;
  readonly received: Received[] = [];
  answerNs = true;

  constructor(sw: VirtualSwitch, address: string, mac = '02:aa:00:00:00:01') {
    this.port = sw.connect({ mac });
    this.mac = Buffer.from(mac.replaceAll(':', ''), 'hex');
    this.address = parseIpv6Address(address);
    this.port.listen((frame) => this.#receive(frame));
  }

  #receive(frame: Buffer): void {
    if (frame.readUInt16BE(12) !== 0x86dd) return;
    let packet: ipv6.Ipv6Packet;
    try {
      packet = ipv6.parse(frame.subarray(14));
    } catch {
      return;
    }
    const r: Received = { frame, dstMac: frame.subarray(0, 6), packet };
    if (packet.nextHeader === 58) r.icmp = packet.payload;
    this.received.push(r);
    if (this.answerNs && r.icmp?.[0] === ICMPV6.NEIGHBOR_SOLICITATION) {
      const ns = icmpv6Wire.parseNeighborSolicitation(r.icmp);
      if (ns.target.equals(this.address) && packet.src !== '::') {
        const na = icmpv6Wire.emitNeighborAdvertisement({ router: false, solicited: true, override: true }, this.address, [
          icmpv6Wire.emitLinkLayerOption(2, this.mac),
        ]);
        this.sendIcmp(parseIpv6Address(packet.src), frame.subarray(6, 12), na, { hopLimit: 255 });
      }
    }
  }

  /** Sends an IPv6 packet in an Ethernet frame to `dstMac`. */
  send(dstMac: Buffer, packet: Buffer): void {
    this.port.write(14 + packet.length, (b) => {
      dstMac.copy(b, 0);
      this.mac.copy(b, 6);
      b.writeUInt16BE(0x86dd, 12);
      packet.copy(b, 14);
      return 14 + packet.length;
    });
  }

  /** Sends an ICMPv6 message (checksum filled) from this node's address unless `src` says otherwise. */
  sendIcmp(dst: Buffer, dstMac: Buffer, message: Buffer, options: { hopLimit?: number; src?: Buffer; corrupt?: boolean } = {}): void {
    const src = options.src ?? this.address;
    icmpv6Wire.setIcmpv6Checksum(message, src, dst);
    if (options.corrupt) message[message.length - 1]! ^= 0xff;
    this.send(dstMac, ipv6.emit({ src, dst, nextHeader: 58, hopLimit: options.hopLimit ?? 64 }, message));
  }

  icmp(type: number): Received[] {
    return this.received.filter((r) => r.icmp?.[0] === type);
  }
}

async function pair(clock: VirtualClock, extra: Partial<StackOptions> = {}) {
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), ipv6: '2001:db8::1/64', clock, random: seededRandom(1), ...extra });
  const b = await createStack({ net: sw.connect(), ipv6: '2001:db8::2/64', clock, random: seededRandom(2), ...extra });
  await until(clock, Promise.all([a.slaac!.settled(), b.slaac!.settled()]));
  return { sw, a, b, close: () => Promise.all([a.close(), b.close()]) };
}

test('two stacks ping each other over link-local and static addresses; the echo data comes back intact', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', ipv6: '2001:db8::1/64', clock });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', ipv6: '2001:db8::2/64', clock });
  t.deepEqual(a.ipv6!.addresses(), [], 'tentative during DAD');
  await until(clock, Promise.all([a.slaac!.settled(), b.slaac!.settled()]));
  t.deepEqual(a.ipv6!.addresses().sort(), [linkLocal(a), '2001:db8::1'].sort());
  const reply = await until(clock, a.icmpv6!.ping(linkLocal(b), { size: 100 }));
  t.is(reply.from, linkLocal(b));
  t.is(reply.bytes, 108);
  t.deepEqual([...reply.data], Array.from({ length: 100 }, (_, i) => i & 0xff));
  const global = await until(clock, b.icmpv6!.ping('2001:db8::1', { size: 1000 }));
  t.is(global.from, '2001:db8::1');
  t.deepEqual([...global.data], Array.from({ length: 1000 }, (_, i) => i & 0xff));
  // Larger than the MTU: fragmented at the source, reassembled at both ends.
  const big = await until(clock, a.icmpv6!.ping('2001:db8::2', { size: 4000 }));
  t.is(big.data.length, 4000);
  t.true(a.stats().ipv6!.fragmentsSent >= 3 && b.stats().ipv6!.reassembly.reassembled === 1);
  t.is(a.stats().icmpv6!.echoRepliesSent, 1);
  t.is(a.stats().icmpv6!.badChecksum + b.stats().icmpv6!.badChecksum, 0);
  t.true(a.ndp!.neighbours().some((n) => n.address === '2001:db8::2' && n.mac === b.ethernet.net.mac));
  // Still IPv4 as before.
  t.is((await until(clock, a.icmp.ping('10.0.0.2'))).from, '10.0.0.2');
  await Promise.all([a.close(), b.close()]);
});

test('with the default limits, 32 KiB and the largest (65,527-byte) UDP datagrams pass over IPv6 at MTU 1500, reassembled in batches', async (t) => {
  const clock = new VirtualClock();
  const { a, b, close } = await pair(clock);
  const received: Buffer[] = [];
  b.udp.bind(5003, (data) => received.push(Buffer.from(data)));
  await until(clock, a.icmpv6!.ping('2001:db8::2'));
  // The receive path hands each turn's fragments to the reassembler in batches, never one by one.
  const batches: number[] = [];
  const reassembler = b.ipv6!.reassembler;
  const pushBatch = reassembler.pushBatch.bind(reassembler);
  reassembler.pushBatch = (data, spans, now, options) => {
    batches.push(options?.count ?? spans.length / 2);
    return pushBatch(data, spans, now, options);
  };
  reassembler.push = () => t.fail('a fragment was pushed on its own') as never;
  const sent = [randomBytes(32 * 1024), randomBytes(65_527), randomBytes(65_527)];
  for (const data of sent) a.udp.send('2001:db8::2', 5003, data);
  a.udp.send('2001:db8::2', 5003, Buffer.from('last'));
  for (let i = 0; i < 200 && received.length < sent.length + 1; i++) await tick();
  const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
  t.deepEqual(received.map(sha256), [...sent, Buffer.from('last')].map(sha256), 'intact and in order');
  const r = b.stats().ipv6!.reassembly;
  t.is(r.reassembled, 3);
  t.is(r.droppedTooManyFragments, 0);
  t.is(batches.reduce((x, y) => x + y, 0), r.fragments);
  t.true(batches.length <= 4, `${batches.length} batches: ${batches.join(', ')}`);
  await close();
});

test('link-local addresses: RFC 7217 stable identifiers by default, EUI-64 on request; ping without DAD on the system clock', async (t) => {
  const sw = new VirtualSwitch();
  const key = Buffer.alloc(16, 7);
  const a = await createStack({ net: sw.connect({ mac: '02:00:00:00:00:0a' }), ipv6: { dadTransmits: 0, secretKey: key, auto: false } });
  const b = await createStack({ net: sw.connect({ mac: '02:00:00:00:00:0b' }), ipv6: { dadTransmits: 0, iid: 'eui64', auto: false } });
  t.is(linkLocal(b), 'fe80::ff:fe00:b', 'EUI-64: ff:fe inserted, U/L bit flipped');
  t.is(formatIpv6Address(Buffer.concat([Buffer.alloc(8), eui64Iid(b.ethernet.mac)])), '::ff:fe00:b');
  // RFC 7217: a function of prefix, interface, counter and secret, not of the MAC.
  const again = await createStack({ net: new VirtualSwitch().connect({ mac: '02:00:00:00:00:99' }), ipv6: { dadTransmits: 0, secretKey: key, auto: false } });
  t.is(linkLocal(again), linkLocal(a), 'same secret and interface: same address, whatever the MAC');
  t.not(linkLocal(a), 'fe80::ff:fe00:a');
  const reply = await b.icmpv6!.ping(linkLocal(a), { size: 32 });
  t.is(reply.from, linkLocal(a));
  t.is(reply.hopLimit, 64);
  await Promise.all([a.close(), b.close(), again.close()]);
});

test('a Morgana router advertises a prefix: two hosts SLAAC global addresses, learn the router, MTU and RDNSS, and ping each other', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const router = await createStack({
    net: sw.connect(),
    clock,
    random: seededRandom(10),
    ipv6: {
      address: '2001:db8:1::1/64',
      routerAdvertisements: { prefixes: ['2001:db8:1::/64'], rdnss: ['2001:db8:1::53'], mtu: 1400, intervalMs: 30_000, curHopLimit: 77 },
    },
  });
  const hosts = await Promise.all(
    [11, 12].map((seed) => createStack({ net: sw.connect(), clock, random: seededRandom(seed), ipv6: 'auto' })),
  );
  const events: string[] = [];
  hosts[0]!.slaac!.onEvent((e) => e.origin === 'slaac' && events.push(`${e.type} ${e.origin}`));
  const globalOf = (s: Stack) => s.ipv6!.addresses().find((a) => a.startsWith('2001:db8:1:'));
  await run(clock, 5_000);
  const [h1, h2] = hosts as [Stack, Stack];
  const g1 = globalOf(h1);
  const g2 = globalOf(h2);
  t.truthy(g1, 'host 1 configured a global address');
  t.truthy(g2, 'host 2 configured a global address');
  t.not(g1, g2);
  t.deepEqual(events, ['tentative slaac', 'preferred slaac'], 'DAD ran on the autoconfigured address');
  // What the RA carried.
  const iface = h1.ipv6!.interfaces[0]!;
  t.deepEqual(iface.routers.map((r) => formatIpv6Address(r.address)), [linkLocal(router)]);
  t.is(iface.mtu, 1400);
  t.is(h1.ipv6!.hopLimit, 77);
  t.deepEqual(h1.dns.servers, ['2001:db8:1::53']);
  t.true(h1.ndp!.neighbours().some((n) => n.address === linkLocal(router) && n.isRouter));
  // The global addresses work both ways, from the global source (RFC 6724 rule 2).
  const reply = await until(clock, h1.icmpv6!.ping(g2!, { size: 200 }));
  t.is(reply.from, g2!);
  t.is(reply.hopLimit, 77);
  t.is(h1.ipv6!.route(parseIpv6Address(g2!))!.src.toString('hex'), parseIpv6Address(g1!).toString('hex'));
  t.is((await until(clock, h2.icmpv6!.ping('2001:db8:1::1'))).from, '2001:db8:1::1');
  // Off-link destinations go to the default router.
  const off = h1.ipv6!.route(parseIpv6Address('2001:db8:99::1'))!;
  t.is(formatIpv6Address(off.nextHop), linkLocal(router));
  t.is(off.mtu, 1400);
  t.true(router.stats().nd!.routerAdvertisementsSent >= 1);
  // The router leaves: its final advertisement (lifetime 0) removes it as a default router.
  await router.close();
  await run(clock, 100);
  t.deepEqual(iface.routers, []);
  t.is(h1.ipv6!.route(parseIpv6Address('2001:db8:99::1')), undefined);
  await Promise.all(hosts.map((h) => h.close()));
});

test('temporary addresses (RFC 8981) are formed next to the stable one and preferred as sources', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const router = await createStack({
    net: sw.connect(),
    clock,
    random: seededRandom(20),
    ipv6: { dadTransmits: 0, routerAdvertisements: { prefixes: [{ prefix: '2001:db8:2::/64', preferredLifetime: 3600, validLifetime: 7200 }] } },
  });
  const host = await createStack({ net: sw.connect(), clock, random: seededRandom(21), ipv6: { temporary: true } });
  await run(clock, 5_000);
  const addresses = host.slaac!.addresses().filter((a) => a.address.startsWith('2001:db8:2:'));
  t.deepEqual(addresses.map((a) => `${a.origin} ${a.state}`).sort(), ['slaac preferred', 'temporary preferred']);
  const temporary = addresses.find((a) => a.origin === 'temporary')!;
  t.true(temporary.preferredLifetimeMs <= 3600_000 && temporary.validLifetimeMs <= 7200_000);
  const src = host.ipv6!.route(parseIpv6Address('2001:db8:2::99'))!.src;
  t.is(formatIpv6Address(src), temporary.address, 'RFC 6724 rule 7');
  await Promise.all([router.close(), host.close()]);
});

test('the two-hour rule: a short valid lifetime in a prefix option cannot expire an address early', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const host = await createStack({ net: sw.connect(), clock, random: seededRandom(30), ipv6: { address: '2001:db8:3::5/64', auto: true, dadTransmits: 0 } });
  const node = new RawNode(sw, 'fe80::1');
  const ra = (valid: number, preferred: number) => {
    const prefix = { prefixLength: 64, onLink: true, autonomous: true, validLifetime: valid, preferredLifetime: preferred, prefix: parseIpv6Address('2001:db8:3::') };
    const m = icmpv6Wire.emitRouterAdvertisement(
      { curHopLimit: 0, managed: false, other: false, preference: 0, routerLifetime: 600, reachableTime: 0, retransTimer: 0 },
      [icmpv6Wire.emitLinkLayerOption(1, node.mac), icmpv6Wire.emitPrefixOption(prefix)],
    );
    node.sendIcmp(parseIpv6Address('ff02::1'), multicastMac(parseIpv6Address('ff02::1')), m, { hopLimit: 255 });
  };
  // Lifetimes count down from the moment the RA arrived (within the 20 ms each step runs).
  const valid = () => host.slaac!.addresses().find((a) => a.origin === 'slaac')?.validLifetimeMs ?? NaN;
  const about = (ms: number) => Math.abs(valid() - ms) <= 100;
  ra(30 * 86_400, 7 * 86_400);
  await run(clock, 20);
  t.true(about(30 * 86_400_000), `${valid()}`);
  ra(60, 30); // remaining > 2 h: cut to 2 h, not to 60 s
  await run(clock, 20);
  t.true(about(7_200_000), `${valid()}`);
  await run(clock, 60_000, 1_000);
  ra(60, 30); // remaining ≤ 2 h: ignored
  await run(clock, 20);
  t.true(about(7_140_000), `${valid()}`);
  ra(3 * 3600, 3600); // longer than 2 h: taken as is
  await run(clock, 20);
  t.true(about(3 * 3_600_000), `${valid()}`);
  ra(0, 0);
  await run(clock, 20);
  t.is(host.slaac!.addresses().find((a) => a.origin === 'slaac')!.state, 'deprecated', 'preferred lifetime 0 deprecates at once');
  t.is(formatIpv6Address(host.ipv6!.route(parseIpv6Address('2001:db8:3::99'))!.src), '2001:db8:3::5', 'RFC 6724 rule 3: not the deprecated address');
  // A hop limit of 254 means the RA crossed a router: ignored (RFC 4861 §6.1.2).
  const before = host.stats().nd!.routerAdvertisementsReceived;
  const m = icmpv6Wire.emitRouterAdvertisement({ curHopLimit: 9, managed: false, other: false, preference: 0, routerLifetime: 600, reachableTime: 0, retransTimer: 0 });
  node.sendIcmp(parseIpv6Address('ff02::1'), multicastMac(parseIpv6Address('ff02::1')), m, { hopLimit: 254 });
  await run(clock, 20);
  t.is(host.stats().nd!.routerAdvertisementsReceived, before);
  t.is(host.stats().nd!.invalid['hop-limit'], 1);
  t.not(host.ipv6!.hopLimit, 9);
  await host.close();
});

test('DAD: a second stack configured with an address already in use detects the conflict', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), clock, random: seededRandom(40), ipv6: '2001:db8::5/64' });
  await until(clock, a.slaac!.settled());
  const b = await createStack({ net: sw.connect(), clock, random: seededRandom(41), ipv6: '2001:db8::5/64' });
  const events: string[] = [];
  b.slaac!.onEvent((e) => events.push(`${e.type} ${e.address}`));
  const error = await until(clock, b.slaac!.settled()).then(() => undefined, (e: Error & { code?: string }) => e);
  t.is(error?.code, 'ERR_IPV6_DUPLICATE_ADDRESS');
  t.true(events.includes('duplicate 2001:db8::5'));
  t.is(b.stats().slaac!.dadFailed, 1);
  t.false(b.ipv6!.addresses().includes('2001:db8::5'));
  t.true(b.slaac!.addresses().some((x) => x.address === '2001:db8::5' && x.state === 'duplicated'));
  t.true(a.ipv6!.addresses().includes('2001:db8::5'), 'the holder keeps it');
  t.is(a.stats().slaac!.dadFailed, 0);
  // The duplicate gets nothing: pings reach the holder only.
  t.is((await until(clock, b.icmpv6!.ping(linkLocal(a)))).from, linkLocal(a));
  t.is(b.stats().icmpv6!.echoRequestsReceived, 0);
  await Promise.all([a.close(), b.close()]);
});

test('DAD: two stacks probing the same address at once both see the conflict; a stable link-local address is redrawn (RFC 7217 DAD counter)', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  // Both ports exist before either stack sends its first probe.
  const nets = [sw.connect(), sw.connect()];
  const [a, b] = await Promise.all(
    [50, 51].map((seed, i) => createStack({ net: nets[i]!, clock, random: seededRandom(seed), ipv6: { address: '2001:db8::7/64', auto: false } })),
  );
  await run(clock, 3_000);
  t.is(a!.stats().slaac!.dadFailed, 1);
  t.is(b!.stats().slaac!.dadFailed, 1);
  // Same secret, same interface name: the same link-local address, until the DAD counter moves on.
  const key = Buffer.alloc(16, 1);
  const c = await createStack({ net: sw.connect(), clock, random: seededRandom(52), ipv6: { secretKey: key, auto: false } });
  await until(clock, c.slaac!.settled());
  const d = await createStack({ net: sw.connect(), clock, random: seededRandom(53), ipv6: { secretKey: key, auto: false } });
  await until(clock, d.slaac!.settled());
  const dLinkLocal = d.slaac!.addresses().filter((x) => x.origin === 'link-local');
  t.deepEqual(dLinkLocal.map((x) => x.state), ['duplicated', 'preferred']);
  t.is(dLinkLocal[0]!.address, linkLocal(c));
  t.not(linkLocal(d), linkLocal(c));
  t.is((await until(clock, d.icmpv6!.ping(linkLocal(c)))).from, linkLocal(c));
  await Promise.all([a!.close(), b!.close(), c.close(), d.close()]);
});

test('NUD: REACHABLE → STALE → DELAY → PROBE → removed when the peer vanishes', async (t) => {
  const clock = new VirtualClock();
  const { a, b, close } = await pair(clock);
  await until(clock, a.icmpv6!.ping('2001:db8::2'));
  const state = () => a.ndp!.neighbours().find((n) => n.address === '2001:db8::2')?.state;
  t.is(state(), 'REACHABLE', 'a solicited advertisement confirmed it');
  const reachable = a.ndp!.reachableTimeMs(a.ipv6!.interfaces[0]!);
  t.true(reachable >= 15_000 && reachable <= 45_000, 'ReachableTime is 0.5–1.5 × 30 s');
  await run(clock, reachable + 10, 100);
  t.is(state(), 'STALE');
  await b.close(); // the peer vanishes
  const lost = a.icmpv6!.ping('2001:db8::2', { timeoutMs: 20_000 });
  lost.catch(() => {});
  await tick();
  t.is(state(), 'DELAY', 'sending to a STALE entry');
  const sentBefore = a.stats().nd!.neighborSolicitationsSent;
  await run(clock, 5_000, 100);
  t.is(state(), 'PROBE', 'no confirmation within DELAY_FIRST_PROBE_TIME');
  await run(clock, 2_500, 100);
  t.is(state(), 'PROBE');
  await run(clock, 1_000, 100);
  t.is(state(), undefined, 'removed after MAX_UNICAST_SOLICIT probes');
  t.is(a.stats().nd!.neighborSolicitationsSent - sentBefore, 3, 'three unicast probes');
  t.true(a.stats().nd!.removed >= 1);
  await t.throwsAsync(until(clock, lost, 30_000, 500), { code: 'ERR_PING_TIMEOUT' });
  await close();
});

test('an unanswered address resolution gives up after three solicitations and bounds its queue', async (t) => {
  const clock = new VirtualClock();
  const { a, close } = await pair(clock);
  for (let i = 0; i < 20; i++) a.icmpv6!.ping('2001:db8::77', { timeoutMs: 10_000 }).catch(() => {});
  t.is(a.stats().nd!.queueDrops, 20 - 16);
  t.is(a.ndp!.neighbours().find((n) => n.address === '2001:db8::77')?.state, 'INCOMPLETE');
  await run(clock, 3_100, 100);
  t.is(a.ndp!.neighbours().find((n) => n.address === '2001:db8::77'), undefined);
  t.is(a.stats().nd!.resolutionFailures, 16);
  await close();
});

test('Packet Too Big lowers the path MTU (not below 1280), later packets are fragmented to it, and it ages out', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), clock, random: seededRandom(60), ipv6: { address: '2001:db8::1/64', dadTransmits: 0 } });
  const node = new RawNode(sw, '2001:db8::9');
  const far = parseIpv6Address('2001:db8::9');
  a.icmpv6!.ping('2001:db8::9', { size: 1400 }).catch(() => {});
  await run(clock, 20);
  const echo = node.icmp(ICMPV6.ECHO_REQUEST)[0]!;
  t.is(echo.frame.length, 14 + 40 + 8 + 1400);
  const packet = echo.frame.subarray(14);
  const ptb = (mtu: number) => {
    const m = icmpv6Wire.emitError(ICMPV6.PACKET_TOO_BIG, 0, mtu, packet);
    node.sendIcmp(parseIpv6Address('2001:db8::1'), a.ethernet.mac, m);
  };
  const errors: number[] = [];
  a.ipv6!.onIcmpError(58, (r) => r.mtu !== undefined && errors.push(r.mtu));
  ptb(1300);
  await run(clock, 20);
  t.is(a.ipv6!.pathMtu(far, a.ipv6!.interfaces[0]!), 1300);
  t.deepEqual(errors, [1300], 'handed to the protocol the quote belongs to');
  ptb(1400); // a PTB never raises the path MTU
  await run(clock, 20);
  t.is(a.ipv6!.pathMtu(far, a.ipv6!.interfaces[0]!), 1300);
  ptb(600); // RFC 8201: below the IPv6 minimum, use 1280
  await run(clock, 20);
  t.is(a.ipv6!.pathMtu(far, a.ipv6!.interfaces[0]!), 1280);
  node.received.length = 0;
  a.icmpv6!.ping('2001:db8::9', { size: 1400 }).catch(() => {});
  await run(clock, 20);
  const pieces = node.received.filter((r) => r.packet.fragment);
  t.true(pieces.length >= 2);
  t.true(pieces.every((r) => r.frame.length - 14 <= 1280));
  t.throws(() => a.ipv6!.write('2001:db8::9', 17, { payloads: [Buffer.alloc(1300)], fragment: false }), { code: 'ERR_FRAGMENTATION_NEEDED', instanceOf: Error });
  await run(clock, 600_000, 10_000);
  t.is(a.ipv6!.pathMtu(far, a.ipv6!.interfaces[0]!), 1500, 'RFC 8201: the link MTU is tried again after 10 minutes');
  await a.close();
});

test('malformed packets are counted and dropped: truncated header, bad ICMPv6 checksum, NS with hop limit 254', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), clock, random: seededRandom(70), ipv6: { address: '2001:db8::1/64', dadTransmits: 0 } });
  const node = new RawNode(sw, '2001:db8::9');
  const us = parseIpv6Address('2001:db8::1');
  // A truncated header, then a payload length longer than the bytes.
  node.send(a.ethernet.mac, Buffer.from([0x60, 0, 0, 0, 0, 8, 58, 64, 0x20, 1]));
  const long = ipv6.emit({ src: node.address, dst: us, nextHeader: 59 }, Buffer.alloc(8));
  long.writeUInt16BE(100, 4);
  node.send(a.ethernet.mac, long);
  // An echo request with a bad checksum.
  node.sendIcmp(us, a.ethernet.mac, icmpv6Wire.emitEcho(ICMPV6.ECHO_REQUEST, 1, 1, Buffer.from('hello')), { corrupt: true });
  // A neighbour solicitation that crossed a router (hop limit 254).
  const ns = icmpv6Wire.emitNeighborSolicitation(us, [icmpv6Wire.emitLinkLayerOption(1, node.mac)]);
  node.sendIcmp(solicitedNode(us), multicastMac(solicitedNode(us)), ns, { hopLimit: 254 });
  await run(clock, 50);
  const stats = a.stats();
  t.is(stats.ipv6!.dropped.ERR_IPV6_TRUNCATED, 2);
  t.is(stats.icmpv6!.badChecksum, 1);
  t.is(stats.icmpv6!.echoRequestsReceived, 0);
  t.is(stats.nd!.invalid['hop-limit'], 1);
  t.is(stats.nd!.neighborSolicitationsReceived, 0);
  t.is(node.icmp(ICMPV6.NEIGHBOR_ADVERTISEMENT).length + node.icmp(ICMPV6.ECHO_REPLY).length, 0, 'nothing answered');
  t.deepEqual(a.ndp!.neighbours(), [], 'the invalid NS taught nothing');
  // The same NS with hop limit 255 is answered (so the drop above was for the hop limit).
  node.sendIcmp(solicitedNode(us), multicastMac(solicitedNode(us)), ns, { hopLimit: 255 });
  await run(clock, 50);
  const na = node.icmp(ICMPV6.NEIGHBOR_ADVERTISEMENT);
  t.is(na.length, 1);
  t.is(na[0]!.packet.hopLimit, 255);
  const parsed = icmpv6Wire.parseNeighborAdvertisement(na[0]!.icmp!);
  t.true(parsed.solicited && parsed.override && !parsed.router);
  t.deepEqual(parsed.options.targetLinkLayer, a.ethernet.mac);
  t.true(icmpv6Wire.verifyIcmpv6Checksum(na[0]!.icmp!, parseIpv6Address(na[0]!.packet.src), parseIpv6Address(na[0]!.packet.dst)));
  await a.close();
});

test('parameter problems: unknown next header (code 1) and unknown options by their high bits (code 2)', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), clock, random: seededRandom(80), ipv6: { address: '2001:db8::1/64', dadTransmits: 0 } });
  const node = new RawNode(sw, '2001:db8::9');
  const us = parseIpv6Address('2001:db8::1');
  const unknown = ipv6.emit({ src: node.address, dst: us, nextHeader: 253 }, Buffer.from('payload!'));
  node.send(a.ethernet.mac, unknown);
  await run(clock, 50);
  let problems = node.icmp(ICMPV6.PARAMETER_PROBLEM);
  t.is(problems.length, 1);
  let error = icmpv6Wire.parseError(problems[0]!.icmp!);
  t.is(error.code, 1);
  t.is(error.parameter, 6, 'points at the next header field');
  t.deepEqual(error.invoking, unknown, 'quotes the packet');
  t.is(problems[0]!.packet.src, '2001:db8::1');
  t.is(a.stats().ipv6!.dropped['unknown-next-header'], 1);
  // Hop-by-hop option types: 0x1e (00: skip), 0x5e (01: discard), 0x9e (10: discard + error even for multicast), 0xde (11: error unless multicast).
  const withOption = (type: number, dst: Buffer, upper = 59) => {
    const hbh = Buffer.from([upper, 0, type, 4, 0, 0, 0, 0]);
    return ipv6.emit({ src: node.address, dst, nextHeader: 0 }, hbh);
  };
  const allNodes = parseIpv6Address('ff02::1');
  for (const [type, dst] of [[0x1e, us], [0x5e, us], [0x9e, allNodes], [0xde, allNodes], [0xde, us]] as const) {
    node.send(isMulticastAddr(dst) ? multicastMac(dst) : a.ethernet.mac, withOption(type, dst));
  }
  await run(clock, 50);
  problems = node.icmp(ICMPV6.PARAMETER_PROBLEM).slice(1);
  t.is(problems.length, 2, 'one for 10 to multicast, one for 11 to unicast');
  for (const p of problems) {
    error = icmpv6Wire.parseError(p.icmp!);
    t.is(error.code, 2);
    t.is(error.parameter, 42, 'points at the option type');
  }
  t.is(a.stats().ipv6!.dropped['unknown-option'], 4);
  t.is(a.stats().ipv6!.dropped['no-next-header'], 1, 'the skippable option let the packet through');
  // The same for a packet that arrives in fragments: reassembled first, then refused.
  node.received.length = 0;
  const whole = ipv6.emit({ src: node.address, dst: us, nextHeader: 253 }, Buffer.alloc(3000, 0x5a));
  for (const piece of fragmentIpv6(whole, 1280, 0x1234)) node.send(a.ethernet.mac, piece);
  await run(clock, 50);
  const reassembled = node.icmp(ICMPV6.PARAMETER_PROBLEM);
  t.is(reassembled.length, 1);
  t.is(icmpv6Wire.parseError(reassembled[0]!.icmp!).code, 1);
  t.is(a.stats().ipv6!.reassembly.reassembled, 1);
  // Never an error about an error: an unknown next header inside a destination unreachable's quote is ignored.
  const before = a.stats().icmpv6!.errorsSent;
  node.sendIcmp(us, a.ethernet.mac, icmpv6Wire.emitError(ICMPV6.DESTINATION_UNREACHABLE, 3, 0, unknown));
  await run(clock, 50);
  t.is(a.stats().icmpv6!.errorsSent, before);
  await a.close();
});

function isMulticastAddr(a: Buffer): boolean {
  return a[0] === 0xff;
}

test('ICMPv6 errors are rate limited by a token bucket', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({
    net: sw.connect(),
    clock,
    random: seededRandom(90),
    ipv6: { address: '2001:db8::1/64', dadTransmits: 0, icmp: { errorRatePerSecond: 10 } },
  });
  const node = new RawNode(sw, '2001:db8::9');
  for (let i = 0; i < 30; i++) node.send(a.ethernet.mac, ipv6.emit({ src: node.address, dst: parseIpv6Address('2001:db8::1'), nextHeader: 253 }, Buffer.alloc(8)));
  await run(clock, 20);
  t.is(node.icmp(ICMPV6.PARAMETER_PROBLEM).length, 10);
  t.is(a.stats().icmpv6!.errorsRateLimited, 20);
  await run(clock, 1_000, 100);
  for (let i = 0; i < 30; i++) node.send(a.ethernet.mac, ipv6.emit({ src: node.address, dst: parseIpv6Address('2001:db8::1'), nextHeader: 253 }, Buffer.alloc(8)));
  await run(clock, 20);
  t.is(node.icmp(ICMPV6.PARAMETER_PROBLEM).length, 20, 'the bucket refilled');
  await a.close();
});

test('MLDv2: joining the solicited-node groups is reported with robustness retransmissions, and queries are answered', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const node = new RawNode(sw, 'fe80::1');
  const a = await createStack({ net: sw.connect(), clock, random: seededRandom(100), ipv6: { address: '2001:db8::1/64' } });
  await until(clock, a.slaac!.settled());
  await run(clock, 2_000);
  const reports = node.icmp(ICMPV6.MLD_REPORT_V2);
  const groups = (r: Received) => icmpv6Wire.parseMldv2Report(r.icmp!).map((x) => `${x.type} ${formatIpv6Address(x.group)}`);
  const solicitedGlobal = formatIpv6Address(solicitedNode(parseIpv6Address('2001:db8::1')));
  const joins = reports.flatMap(groups).filter((g) => g === `4 ${solicitedGlobal}`);
  t.is(joins.length, 2, 'CHANGE_TO_EXCLUDE_MODE sent twice (robustness 2)');
  for (const r of reports) {
    t.is(r.packet.hopLimit, 1);
    t.is(r.packet.dst, 'ff02::16');
    t.deepEqual(r.dstMac, Buffer.from('333300000016', 'hex'));
    t.deepEqual([...r.packet.extensions[0]!.bytes.subarray(2, 6)], [5, 2, 0, 0], 'router alert, MLD');
    t.true(icmpv6Wire.verifyIcmpv6Checksum(r.icmp!, parseIpv6Address(r.packet.src), parseIpv6Address(r.packet.dst)));
  }
  t.true(reports.some((r) => r.packet.src === '::'), 'the first reports precede a usable link-local address (RFC 3590)');
  // A general query from a link-local querier: one current-state report with every group but ff02::1.
  node.received.length = 0;
  const query = Buffer.alloc(28);
  query[0] = ICMPV6.MLD_QUERY;
  query.writeUInt16BE(1000, 4);
  const hbh = Buffer.from([58, 0, 5, 2, 0, 0, 1, 0]);
  icmpv6Wire.setIcmpv6Checksum(query, node.address, parseIpv6Address('ff02::1'));
  node.send(multicastMac(parseIpv6Address('ff02::1')), ipv6.emit({ src: node.address, dst: 'ff02::1', nextHeader: 0, hopLimit: 1 }, Buffer.concat([hbh, query])));
  await run(clock, 1_100);
  const answers = node.icmp(ICMPV6.MLD_REPORT_V2);
  t.is(answers.length, 1);
  const records = groups(answers[0]!).sort();
  t.deepEqual(records, [`2 ${solicitedGlobal}`, `2 ${formatIpv6Address(solicitedNode(parseIpv6Address(linkLocal(a))))}`].sort());
  t.is(a.stats().mld!.queriesReceived, 1);
  await a.close();
});

test('the summary shows IPv6 addresses and the neighbour cache', async (t) => {
  const clock = new VirtualClock();
  const { a, close } = await pair(clock);
  await until(clock, a.icmpv6!.ping('2001:db8::2'));
  const { formatStackSummary } = await import('morgana');
  const text = formatStackSummary(a);
  t.regex(text, /2001:db8::1\/64 \(static, preferred\)/);
  t.regex(text, /fe80::[0-9a-f:]+\/64 \(link-local, preferred\)/);
  t.regex(text, /2001:db8::2 02:[0-9a-f:]+ REACHABLE/);
  t.regex(text, /IPv6 +received \d+, delivered \d+/);
  await close();
});

test('router solicitation at start: at most three, four seconds apart, and none after an advertisement', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const node = new RawNode(sw, 'fe80::1');
  const host = await createStack({ net: sw.connect(), clock, random: seededRandom(110), ipv6: 'auto' });
  const sentAt: number[] = [];
  let seen = 0;
  const watch = async (ms: number) => {
    for (let i = 0; i < ms / 10; i++) {
      await run(clock, 10);
      const rs = node.icmp(ICMPV6.ROUTER_SOLICITATION);
      while (seen < rs.length) {
        seen++;
        sentAt.push(clock.now());
      }
    }
  };
  await watch(20_000);
  t.is(sentAt.length, 3, 'MAX_RTR_SOLICITATIONS');
  t.true(sentAt[0]! >= 1_000 && sentAt[0]! <= 2_020, 'after the link-local address is usable and a random delay of up to 1 s');
  t.true(Math.abs(sentAt[1]! - sentAt[0]! - 4_000) <= 10 && Math.abs(sentAt[2]! - sentAt[1]! - 4_000) <= 10, 'RTR_SOLICITATION_INTERVAL');
  const rs = node.icmp(ICMPV6.ROUTER_SOLICITATION)[0]!;
  t.is(rs.packet.dst, 'ff02::2');
  t.is(rs.packet.hopLimit, 255);
  t.is(rs.packet.src, linkLocal(host));
  t.deepEqual(icmpv6Wire.parseRouterSolicitation(rs.icmp!).options.sourceLinkLayer, host.ethernet.mac);
  await host.close();
  // A host that hears an advertisement before its first solicitation sends none.
  const other = await createStack({ net: sw.connect(), clock, random: seededRandom(111), ipv6: { auto: true, dadTransmits: 0 } });
  const ra = icmpv6Wire.emitRouterAdvertisement({ curHopLimit: 0, managed: false, other: false, preference: 0, routerLifetime: 600, reachableTime: 0, retransTimer: 0 });
  node.sendIcmp(parseIpv6Address('ff02::1'), multicastMac(parseIpv6Address('ff02::1')), ra, { hopLimit: 255 });
  await run(clock, 10_000, 100);
  t.is(other.stats().nd!.routerSolicitationsSent, 0);
  t.is(other.ipv6!.interfaces[0]!.routers.length, 1);
  await other.close();
});

test('a Morgana router answers solicitations: unicast to the soliciting host, multicast (rate limited) for ::', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const router = await createStack({
    net: sw.connect(),
    clock,
    random: seededRandom(120),
    ipv6: { dadTransmits: 0, routerAdvertisements: { prefixes: ['2001:db8:4::/64'], mtu: 1480, rdnss: ['2001:db8:4::53'], intervalMs: 600_000 } },
  });
  const node = new RawNode(sw, 'fe80::1');
  await run(clock, 100); // the first unsolicited advertisement
  node.received.length = 0;
  const solicit = (src: Buffer, options: Buffer[]) =>
    node.sendIcmp(parseIpv6Address('ff02::2'), multicastMac(parseIpv6Address('ff02::2')), icmpv6Wire.emitRouterSolicitation(options), { hopLimit: 255, src });
  solicit(node.address, [icmpv6Wire.emitLinkLayerOption(1, node.mac)]);
  await run(clock, 510);
  const answers = node.icmp(ICMPV6.ROUTER_ADVERTISEMENT);
  t.is(answers.length, 1, 'answered within MAX_RA_DELAY_TIME');
  t.is(answers[0]!.packet.dst, 'fe80::1');
  t.deepEqual(answers[0]!.dstMac, node.mac, 'learned from the source link-layer option');
  t.is(answers[0]!.packet.hopLimit, 255);
  t.is(answers[0]!.packet.src, linkLocal(router));
  const ra = icmpv6Wire.parseRouterAdvertisement(answers[0]!.icmp!);
  t.is(ra.routerLifetime, 1800);
  t.is(ra.curHopLimit, 64);
  t.is(ra.options.mtu, 1480);
  t.deepEqual(ra.options.prefixes.map((p) => [formatIpv6Address(p.prefix), p.prefixLength, p.onLink, p.autonomous, p.validLifetime, p.preferredLifetime]), [
    ['2001:db8:4::', 64, true, true, 2_592_000, 604_800],
  ]);
  t.deepEqual(ra.options.rdnss.flatMap((r) => r.servers.map(formatIpv6Address)), ['2001:db8:4::53']);
  t.deepEqual(ra.options.sourceLinkLayer, router.ethernet.mac);
  // From :: (no option allowed): a multicast answer, not within 3 s of the last multicast one.
  node.received.length = 0;
  solicit(parseIpv6Address('::'), []);
  solicit(parseIpv6Address('::'), []);
  await run(clock, 2_000);
  t.is(node.icmp(ICMPV6.ROUTER_ADVERTISEMENT).length, 0, 'MIN_DELAY_BETWEEN_RAS since the unsolicited one');
  await run(clock, 1_600);
  const multicast = node.icmp(ICMPV6.ROUTER_ADVERTISEMENT);
  t.is(multicast.length, 1, 'two solicitations, one answer');
  t.is(multicast[0]!.packet.dst, 'ff02::1');
  // An RS from :: carrying a link-layer option is invalid (RFC 4861 §6.1.1).
  solicit(parseIpv6Address('::'), [icmpv6Wire.emitLinkLayerOption(1, node.mac)]);
  await run(clock, 50);
  t.is(router.stats().nd!.invalid['unspecified-source'], 1);
  // Hosts ignore solicitations.
  const host = await createStack({ net: sw.connect(), clock, random: seededRandom(121), ipv6: { dadTransmits: 0 } });
  solicit(node.address, [icmpv6Wire.emitLinkLayerOption(1, node.mac)]);
  await run(clock, 600);
  t.is(host.stats().nd!.routerAdvertisementsSent, 0);
  await Promise.all([router.close(), host.close()]);
});

test('neighbour advertisements: override rules for unsolicited ones, and the validity checks', async (t) => {
  const clock = new VirtualClock();
  const { sw, a, b, close } = await pair(clock);
  await until(clock, a.icmpv6!.ping('2001:db8::2'));
  const node = new RawNode(sw, 'fe80::1', '02:aa:00:00:00:02');
  const entry = () => a.ndp!.neighbours().find((n) => n.address === '2001:db8::2')!;
  const target = parseIpv6Address('2001:db8::2');
  const allNodes = parseIpv6Address('ff02::1');
  const advertise = (flags: { solicited: boolean; override: boolean }, mac: Buffer, dst = allNodes) => {
    const na = icmpv6Wire.emitNeighborAdvertisement({ router: false, ...flags }, target, [icmpv6Wire.emitLinkLayerOption(2, mac)]);
    node.sendIcmp(dst, dst[0] === 0xff ? multicastMac(dst) : a.ethernet.mac, na, { hopLimit: 255, src: target });
  };
  const other = Buffer.from('02bbbbbbbbbb', 'hex');
  t.is(entry().state, 'REACHABLE');
  advertise({ solicited: false, override: false }, other);
  await run(clock, 20);
  t.is(entry().state, 'STALE', 'a different address without override makes a REACHABLE entry suspect');
  t.is(entry().mac, b.ethernet.net.mac, 'but does not replace it');
  advertise({ solicited: true, override: false }, other); // solicited to a multicast destination: invalid
  await run(clock, 20);
  t.is(a.stats().nd!.invalid['solicited-to-multicast'], 1);
  advertise({ solicited: false, override: true }, other);
  await run(clock, 20);
  t.is(entry().mac, '02:bb:bb:bb:bb:bb', 'override replaces it');
  t.is(entry().state, 'STALE');
  advertise({ solicited: true, override: true }, b.ethernet.mac, parseIpv6Address('2001:db8::1'));
  await run(clock, 20);
  t.is(entry().mac, b.ethernet.net.mac);
  t.is(entry().state, 'REACHABLE', 'a solicited advertisement confirms reachability');
  // An advertisement for a neighbour we have no entry for creates none.
  const na = icmpv6Wire.emitNeighborAdvertisement({ router: false, solicited: false, override: true }, parseIpv6Address('2001:db8::42'), [icmpv6Wire.emitLinkLayerOption(2, other)]);
  node.sendIcmp(allNodes, multicastMac(allNodes), na, { hopLimit: 255 });
  await run(clock, 20);
  t.false(a.ndp!.neighbours().some((n) => n.address === '2001:db8::42'));
  await close();
});

test('echo requests to ff02::1 are answered from a unicast address', async (t) => {
  const clock = new VirtualClock();
  const { a, b, close } = await pair(clock);
  const reply = await until(clock, a.icmpv6!.ping('ff02::1', { size: 16 }));
  t.is(reply.from, linkLocal(b));
  t.is(b.stats().icmpv6!.echoRepliesSent, 1);
  await close();
});

test('random ICMPv6 messages of every type with valid checksums are absorbed without a crash', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), clock, random: seededRandom(130), ipv6: { address: '2001:db8::1/64', dadTransmits: 0 } });
  const node = new RawNode(sw, 'fe80::9');
  const random = seededRandom(131);
  const types = [1, 2, 3, 4, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 143, 200];
  const targets = [parseIpv6Address('2001:db8::1'), parseIpv6Address('ff02::1'), solicitedNode(parseIpv6Address('2001:db8::1'))];
  let sent = 0;
  for (let round = 0; round < 40; round++) {
    for (const type of types) {
      const m = random.generate(4 + random.int(120));
      m[0] = type;
      if (random.int(2) === 0) m[1] = 0;
      // Half of them quote a plausible IPv6 header, so the error paths get past the first checks.
      if (type < 128 && m.length >= 48 && random.int(2) === 0) m[8] = 0x60;
      const dst = targets[random.int(targets.length)]!;
      node.sendIcmp(dst, dst[0] === 0xff ? multicastMac(dst) : a.ethernet.mac, m, { hopLimit: random.int(2) === 0 ? 255 : 1 });
      sent++;
    }
    await run(clock, 10);
  }
  const stats = a.stats();
  t.true(stats.icmpv6!.received >= sent, 'every message reached ICMPv6 (plus the answers to our own solicitations)');
  t.is(stats.icmpv6!.badChecksum, 0);
  // Still working.
  const peer = await createStack({ net: sw.connect(), clock, random: seededRandom(132), ipv6: { address: '2001:db8::2/64', dadTransmits: 0 } });
  t.is((await until(clock, peer.icmpv6!.ping('2001:db8::1'))).from, '2001:db8::1');
  await Promise.all([a.close(), peer.close()]);
});

test('TCP and UDP between two hosts on their SLAAC global addresses, through the prefix a Morgana router advertised', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const router = await createStack({
    net: sw.connect(),
    clock,
    random: seededRandom(20),
    ipv6: { address: '2001:db8:2::1/64', routerAdvertisements: { prefixes: ['2001:db8:2::/64'], intervalMs: 30_000 } },
  });
  const [h1, h2] = (await Promise.all(
    [21, 22].map((seed) => createStack({ net: sw.connect(), clock, random: seededRandom(seed), ipv6: 'auto' })),
  )) as [Stack, Stack];
  await run(clock, 5_000);
  const g1 = h1.ipv6!.addresses().find((a) => a.startsWith('2001:db8:2:'));
  const g2 = h2.ipv6!.addresses().find((a) => a.startsWith('2001:db8:2:'));
  t.truthy(g1 && g2, 'both hosts configured a global address');

  // TCP: 256 KiB each way over the autoconfigured addresses, compared byte for byte.
  const up = Buffer.alloc(256 * 1024);
  const down = Buffer.alloc(256 * 1024);
  for (let i = 0; i < up.length; i += 4) {
    up.writeUInt32BE((i * 2654435761) >>> 0, i);
    down.writeUInt32BE((i * 40503 + 7) >>> 0, i);
  }
  const collect = (conn: NodeJS.ReadableStream) =>
    new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      conn.on('data', (c: Buffer) => chunks.push(c));
      conn.on('end', () => resolve(Buffer.concat(chunks)));
    });
  let serverPeer = '';
  const serverGot = new Promise<Buffer>((resolve) =>
    h2.tcp.listen(8080, (conn) => {
      serverPeer = conn.remoteAddress;
      resolve(collect(conn));
      conn.end(down);
    }, { allowHalfOpen: true }),
  );
  const client = await until(clock, h1.tcp.connect(g2!, 8080, { allowHalfOpen: true }));
  t.is(client.remoteFamily, 'IPv6');
  t.is(client.localAddress, g1!, 'the global source, not the link-local one (RFC 6724)');
  const clientGot = collect(client);
  client.end(up);
  const [gotDown, gotUp] = await until(clock, Promise.all([clientGot, serverGot]));
  t.true(gotDown.equals(down));
  t.true(gotUp.equals(up));
  t.is(serverPeer, g1!);

  // UDP: a datagram each way between the same addresses.
  const received = new Promise<{ data: string; from: string }>((resolve) =>
    h2.udp.bind(5353, (data, from) => resolve({ data: data.toString(), from: from.address })),
  );
  h1.udp.send(g2!, 5353, Buffer.from('over SLAAC'), { srcPort: 4000 });
  t.deepEqual(await until(clock, received), { data: 'over SLAAC', from: g1! });
  t.is(h1.stats().udp.badChecksum + h2.stats().udp.badChecksum, 0);
  await Promise.all([h1.close(), h2.close(), router.close()]);
});
