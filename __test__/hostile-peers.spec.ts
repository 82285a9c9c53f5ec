/**
 * Hostile peers on a VirtualSwitch (issue 20): a raw port injects forged segments (a RST that
 * kills a connection, a spoofed SYN that used to start an endless ACK storm, a spoofed in-window
 * ACK closing the window), a SYN flood and a fragment flood. Each time the legitimate traffic
 * still completes (SHA-256 equal) and the counters say what was dropped and why.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  type NetDevice,
  type Stack,
  type TcpConnection,
  type TcpOptions,
  VirtualSwitch,
  checksum,
  createStack,
  parseIpv4Address,
  pseudoHeaderSum,
} from 'morgana';
import { collect, sha256, writeAll } from './helpers/streams.js';
import { until } from './helpers/wait.js';

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The TCP segments a device receives, as the fields the tests need. */
interface Seen {
  src: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  payload: number;
}

/** Wraps `device` so that `onSegment` sees every IPv4 TCP segment it receives. */
function sniffing(device: NetDevice, onSegment: (s: Seen) => void): NetDevice {
  return {
    get mac() {
      return device.mac;
    },
    get mtu() {
      return device.mtu;
    },
    write: (size, fill) => device.write(size, fill),
    listen: (handler) =>
      device.listen((frame) => {
        if (frame.length >= 54 && frame.readUInt16BE(12) === 0x0800 && frame[23] === 6) {
          const ihl = (frame[14] & 0x0f) * 4;
          const tcp = 14 + ihl;
          const dataOffset = (frame[tcp + 12] >> 4) * 4;
          onSegment({
            src: `${frame[26]}.${frame[27]}.${frame[28]}.${frame[29]}`,
            srcPort: frame.readUInt16BE(tcp),
            dstPort: frame.readUInt16BE(tcp + 2),
            seq: frame.readUInt32BE(tcp + 4),
            ack: frame.readUInt32BE(tcp + 8),
            flags: frame[tcp + 13],
            window: frame.readUInt16BE(tcp + 14),
            payload: 14 + frame.readUInt16BE(16) - tcp - dataOffset,
          });
        }
        handler(frame);
      }),
    stats: () => device.stats(),
    close: () => device.close(),
  };
}

/** A TCP segment (no options) with a valid checksum for `src` → `dst`. */
function segment(
  src: number,
  dst: number,
  f: { srcPort: number; dstPort: number; seq: number; ack?: number; flags: number; window?: number; payload?: Buffer },
): Buffer {
  const payload = f.payload ?? Buffer.alloc(0);
  const seg = Buffer.alloc(20 + payload.length);
  seg.writeUInt16BE(f.srcPort, 0);
  seg.writeUInt16BE(f.dstPort, 2);
  seg.writeUInt32BE(f.seq >>> 0, 4);
  seg.writeUInt32BE((f.ack ?? 0) >>> 0, 8);
  seg[12] = 5 << 4;
  seg[13] = f.flags;
  seg.writeUInt16BE(f.window ?? 65_535, 14);
  payload.copy(seg, 20);
  seg.writeUInt16BE(checksum(seg, pseudoHeaderSum(src, dst, 6, seg.length)), 16);
  return seg;
}

/** An IPv4 packet (no options) from `src` to `dst` with a valid header checksum. */
function ipv4Packet(
  src: number,
  dst: number,
  protocol: number,
  payload: Buffer,
  f: { id?: number; offsetUnits?: number; more?: boolean } = {},
): Buffer {
  const ip = Buffer.alloc(20 + payload.length);
  ip[0] = 0x45;
  ip.writeUInt16BE(ip.length, 2);
  ip.writeUInt16BE(f.id ?? 0, 4);
  ip.writeUInt16BE((f.more ? 0x2000 : 0) | (f.offsetUnits ?? 0), 6);
  ip[8] = 64;
  ip[9] = protocol;
  ip.writeUInt32BE(src >>> 0, 12);
  ip.writeUInt32BE(dst >>> 0, 16);
  ip.writeUInt16BE(checksum(ip.subarray(0, 20), 0), 10);
  payload.copy(ip, 20);
  return ip;
}

/**
 * A (10.0.0.1, its received segments sniffed), B (10.0.0.2) and a raw switch port that writes
 * any Ethernet frame: forged IPv4 packets with any source address, straight to A's or B's MAC.
 */
async function hosts(t: ExecutionContext, tcp?: TcpOptions) {
  const sw = new VirtualSwitch();
  const seenByA: Seen[] = [];
  const portA = sw.connect();
  const portB = sw.connect();
  const a = await createStack({ net: sniffing(portA, (s) => seenByA.push(s)), ipv4: '10.0.0.1/24', tcp });
  const b = await createStack({ net: portB, ipv4: '10.0.0.2/24', tcp });
  const raw = sw.connect();
  raw.listen(() => {});
  // A VirtualSwitch does no I/O: keep the process alive while the test runs.
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close(), raw.close()]);
  });
  const macs: Record<string, string> = { '10.0.0.1': portA.mac, '10.0.0.2': portB.mac };
  /** Writes an IPv4 packet to the host that owns `to`. */
  const inject = (to: string, packet: Buffer) => {
    const mac = Buffer.from(macs[to]!.replaceAll(':', ''), 'hex');
    raw.write(14 + packet.length, (frame) => {
      mac.copy(frame, 0);
      Buffer.from(raw.mac.replaceAll(':', ''), 'hex').copy(frame, 6);
      frame.writeUInt16BE(0x0800, 12);
      packet.copy(frame, 14);
      return 14 + packet.length;
    });
  };
  const forge = (from: string, to: string, seg: Parameters<typeof segment>[2]) => {
    const src = parseIpv4Address(from);
    const dst = parseIpv4Address(to);
    inject(to, ipv4Packet(src, dst, 6, segment(src, dst, seg)));
  };
  return { sw, a, b, seenByA, forge, inject };
}

/** Sends `size` random bytes from `from` to `to`:`port` over a new connection; true if intact. */
async function transfer(from: Stack, to: Stack, toAddress: string, port: number, size: number): Promise<boolean> {
  const data = randomBytes(size);
  const received = new Promise<Buffer>((resolve) => {
    const server = to.tcp.listen(port, (conn) => {
      server.close();
      resolve(collect(conn));
    });
  });
  const client = await from.tcp.connect(toAddress, port);
  await writeAll(client, data);
  return sha256(await received) === sha256(data);
}

/** B's SND.NXT on connection `port` → A, from the last segment A received from it. */
function sndNxt(seen: Seen[], port: number): number {
  const last = seen.filter((s) => s.src === '10.0.0.2' && s.srcPort === port).at(-1)!;
  return (last.seq + last.payload + (last.flags & (SYN | FIN) ? 1 : 0)) >>> 0;
}

test('a spoofed SYN for a connection the listener lost does not start an ACK storm', async (t) => {
  const { a, b, seenByA, forge } = await hosts(t);
  let serverSide!: TcpConnection;
  const accepted = new Promise<void>((resolve) =>
    a.tcp.listen(7000, (conn) => {
      serverSide = conn;
      resolve();
    }),
  );
  const client = await b.tcp.connect('10.0.0.1', 7000);
  client.on('error', () => {});
  client.write('hello');
  await accepted;
  const serverError = once(serverSide, 'error');
  await once(serverSide, 'data');
  await delay(100); // A's delayed ACK, so B is idle
  const port = client.localPort;
  const next = sndNxt(seenByA, port);
  // A loses the connection: a RST at B's SND.NXT (RFC 5961 lets only an exact match reset).
  forge('10.0.0.2', '10.0.0.1', { srcPort: port, dstPort: 7000, seq: next, flags: RST });
  const [err] = (await serverError) as [NodeJS.ErrnoException];
  t.is(err.code, 'ECONNRESET');
  t.is(client.state, 'ESTABLISHED', 'B still holds the connection');
  // A SYN with B's 4-tuple and a sequence number past B's SND.NXT: A answers SYN-ACK, B a
  // challenge ACK, and each finds the other's ACKs out of its window.
  const before = a.tcp.stats().segmentsOut + b.tcp.stats().segmentsOut;
  forge('10.0.0.2', '10.0.0.1', { srcPort: port, dstPort: 7000, seq: next + 1000, flags: SYN });
  await delay(3_000);
  const sent = a.tcp.stats().segmentsOut + b.tcp.stats().segmentsOut - before;
  // SYN-ACK (+ its retransmissions at 1 and 3 s), B's challenge ACKs and the ACKs answering
  // unacceptable ACKs, one per 500 ms per connection at most: a handful, not ~70,000/s.
  t.true(sent < 40, `${sent} segments in 3 s`);
  const sa = a.tcp.stats();
  const sb = b.tcp.stats();
  t.true(sa.unacceptableAcks >= 1, 'A answered an unacceptable ACK');
  t.true(sb.challengeAcks >= 1, 'B challenged the SYN-ACK');
  t.true(sa.unacceptableAcksSuppressed + sb.unacceptableAcksSuppressed + sb.challengeAcksSuppressed >= 1, 'and the rest was suppressed');
  t.true(client.info()!.acksRateLimited >= 1, "B's connection counts the ACKs it held back");
  // Legitimate traffic between the two hosts is unaffected.
  t.true(await transfer(b, a, '10.0.0.1', 7001, 1 << 20));
  client.destroy();
});

test('a spoofed in-window ACK with window 0 does not pin the send window', async (t) => {
  const { a, b, seenByA, forge } = await hosts(t);
  const received = new Promise<Buffer>((resolve) => a.tcp.listen(7002, (conn) => resolve(collect(conn))));
  const client = await b.tcp.connect('10.0.0.1', 7002);
  await delay(100); // B is idle: its last segment carries its SND.NXT and RCV.NXT
  const port = client.localPort;
  const last = seenByA.filter((s) => s.src === '10.0.0.2' && s.srcPort === port).at(-1)!;
  // From A's address: a sequence number 1000 ahead of what B expects (in its window), B's
  // SND.NXT as ACK (acceptable), window 0.
  forge('10.0.0.1', '10.0.0.2', { srcPort: 7002, dstPort: port, seq: last.ack + 1000, ack: sndNxt(seenByA, port), flags: ACK, window: 0 });
  // The forged frame reaches B a few event-loop turns later (switch, then the engine's turn).
  await until('the forged window was taken', () => client.info()?.sendWindow === 0, 10_000);
  const data = randomBytes(1 << 20);
  void writeAll(client, data);
  // A liveness deadline only: before the fix nothing moved in 10 s.
  const got = await Promise.race([received, delay(30_000).then(() => undefined)]);
  t.truthy(got, '1 MiB arrived');
  t.is(sha256(got ?? Buffer.alloc(0)), sha256(data));
});

test('forged segments into a live connection: dropped, counted, and the transfer is intact', async (t) => {
  const { a, b, seenByA, forge, inject } = await hosts(t);
  const data = randomBytes(1 << 20);
  const received = new Promise<Buffer>((resolve) => a.tcp.listen(7003, (conn) => resolve(collect(conn))));
  const client = await b.tcp.connect('10.0.0.1', 7003);
  await delay(100);
  const port = client.localPort;
  const next = sndNxt(seenByA, port);
  const ack = seenByA.filter((s) => s.src === '10.0.0.2' && s.srcPort === port).at(-1)!.ack;
  const before = a.tcp.stats();
  const base = { srcPort: port, dstPort: 7003 };
  for (let i = 0; i < 50; i++) {
    // Blind RSTs: out of the window (ignored) and in it but not exact (challenged, RFC 5961 §3).
    forge('10.0.0.2', '10.0.0.1', { ...base, seq: next + 0x4000_0000 + i * 7919, flags: RST });
    forge('10.0.0.2', '10.0.0.1', { ...base, seq: next + 1 + i, flags: RST });
    // Blind SYNs (challenged, §4), data far outside the window (answered, not taken).
    forge('10.0.0.2', '10.0.0.1', { ...base, seq: next + 5000 + i, flags: SYN });
    forge('10.0.0.2', '10.0.0.1', { ...base, seq: next - 100_000, ack, flags: ACK, payload: Buffer.from('forged') });
    // A corrupted checksum, and a data offset below 5 (malformed).
    const bad = segment(parseIpv4Address('10.0.0.2'), parseIpv4Address('10.0.0.1'), { ...base, seq: next, ack, flags: ACK, payload: Buffer.from('x') });
    bad[16] ^= 0xff;
    inject('10.0.0.1', ipv4Packet(parseIpv4Address('10.0.0.2'), parseIpv4Address('10.0.0.1'), 6, bad));
    const short = segment(parseIpv4Address('10.0.0.2'), parseIpv4Address('10.0.0.1'), { ...base, seq: next, ack, flags: ACK });
    short[12] = 4 << 4;
    short.writeUInt16BE(0, 16);
    short.writeUInt16BE(checksum(short, pseudoHeaderSum(parseIpv4Address('10.0.0.2'), parseIpv4Address('10.0.0.1'), 6, short.length)), 16);
    inject('10.0.0.1', ipv4Packet(parseIpv4Address('10.0.0.2'), parseIpv4Address('10.0.0.1'), 6, short));
  }
  await delay(100);
  await writeAll(client, data);
  t.is(sha256(await received), sha256(data), 'the transfer is intact');
  const after = a.tcp.stats();
  const d = (k: keyof typeof after) => (after[k] as number) - (before[k] as number);
  t.is(d('badChecksum'), 50);
  t.is(d('malformed'), 50);
  t.is(d('resetsReceived'), 50, 'the in-window RSTs were seen');
  t.true(d('challengeAcks') >= 1 && d('challengeAcks') + d('challengeAcksSuppressed') === 100, 'one challenge per blind RST or SYN, most suppressed');
  t.true(d('unacceptableAcks') >= 50, 'out-of-window data is always answered');
  t.is(d('bytesIn') - (1 << 20), 0, 'no forged byte was taken');
});

test('a SYN flood from spoofed sources: SYN cookies answer it, a legitimate client completes', async (t) => {
  const { a, b, forge } = await hosts(t);
  const received = new Promise<Buffer>((resolve) => a.tcp.listen(80, (conn) => resolve(collect(conn)), { backlog: 16 }));
  for (let i = 0; i < 3000; i++) {
    forge(`10.0.0.${100 + (i % 100)}`, '10.0.0.1', { srcPort: 1024 + ((i * 7919) % 60_000), dstPort: 80, seq: (i * 2_654_435_761) >>> 0, flags: SYN });
  }
  await delay(200);
  const stats = a.tcp.stats();
  t.is(stats.halfOpen, 16, 'the SYN queue is full, not over');
  t.is(stats.synCookiesSent, 3000 - 16, 'the rest were answered with cookies, holding nothing');
  const data = randomBytes(1 << 20);
  const client = await b.tcp.connect('10.0.0.1', 80);
  await writeAll(client, data);
  t.is(sha256(await received), sha256(data));
  t.is(a.tcp.stats().synCookiesAccepted, 1, 'the legitimate client came in on a cookie');
});

test('a fragment flood: memory stays bounded, drops are counted by reason, real datagrams pass', async (t) => {
  const { a, b, inject } = await hosts(t);
  const src = parseIpv4Address('10.0.0.2');
  const dst = parseIpv4Address('10.0.0.1');
  const got: Buffer[] = [];
  a.udp.bind(5000, (data) => got.push(data));
  let n = 0;
  for (let id = 0; id < 2000; id++) {
    // Incomplete datagrams (a first fragment only), …
    inject('10.0.0.1', ipv4Packet(src, dst, 17, randomBytes(1024), { id, more: true }));
    n++;
    if (id % 10 === 0) {
      // … overlapping ones, …
      inject('10.0.0.1', ipv4Packet(src, dst, 17, randomBytes(1024), { id, offsetUnits: 64, more: true }));
      n++;
    }
    if (id % 100 === 0) {
      // … and one with 200 fragments (over the default limit of 128), the rest of which come after the drop.
      for (let k = 0; k < 200; k++) inject('10.0.0.1', ipv4Packet(src, dst, 17, randomBytes(16), { id: 30_000 + id, offsetUnits: k * 2, more: k < 199 }));
      n += 200;
    }
  }
  await delay(200);
  const r = a.ipv4.stats().reassembly;
  t.true(r.bufferedBytes <= 256 * 1024, `${r.bufferedBytes} bytes held`);
  t.true(r.droppedMemory > 1000, 'old incomplete datagrams were evicted');
  t.true(r.droppedOverlap >= 100, 'overlaps dropped their datagram');
  t.is(r.droppedTooManyFragments, 20, 'each over-long datagram was dropped once…');
  t.is(r.droppedDiscarded, 20 * 71, '…and its 71 later fragments on arrival');
  t.log(`${n} forged fragments:`, r);
  // A real 8 KiB datagram (six fragments) and a TCP transfer still pass.
  const datagram = randomBytes(8000);
  b.udp.send('10.0.0.1', 5000, datagram);
  for (let i = 0; i < 100 && got.length === 0; i++) await delay(20);
  t.is(got.length, 1);
  t.is(sha256(got[0]!), sha256(datagram));
  t.true(await transfer(b, a, '10.0.0.1', 7004, 1 << 20));
});
