/**
 * TAP offloads at the binding level: a device opened with `vnetHdr: true` carries a 12-byte
 * `virtio_net_hdr` in front of every frame. Against the kernel in a namespace, with a TCP peer
 * built by hand here (no Morgana stack: the stack does not speak offloads yet): the kernel's
 * bulk TCP send arrives as TSO super-frames (> 1514 bytes, GSO type TCPV4, NEEDS_CSUM) whose
 * partial checksums complete to valid ones and whose bytes are the bytes sent; a hand-built
 * TCPV4 super-segment written to the device reaches a kernel socket whole (SHA-256).
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  VIRTIO_NET_HDR_NO_OFFLOAD,
  type TapDevice,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_LENGTH,
  type VirtioNetHdr,
  checksum,
  ipv4,
  openTap,
  parseMac,
  parseVirtioNetHdr,
  pseudoHeaderSum,
  writeVirtioNetHdr,
} from 'morgana';
import { type Netns, kernelTest, withNetns } from './helpers/netns.js';

const KERNEL = '10.77.0.1';
const US = '10.77.0.2';
const TCP_SYN = 0x02;
const TCP_ACK = 0x10;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;

test('virtio_net_hdr: written fields parse back; short buffers and bad fields are refused', (t) => {
  const hdr: VirtioNetHdr = { flags: 1, gsoType: 0x81, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  const buffer = Buffer.alloc(20, 0xee);
  t.is(writeVirtioNetHdr(buffer, hdr, 4), VIRTIO_NET_HDR_LENGTH);
  t.deepEqual(parseVirtioNetHdr(buffer, 4), hdr);
  // Little-endian fields, num_buffers zero, nothing written outside the 12 bytes.
  t.deepEqual([...buffer.subarray(4, 16)], [1, 0x81, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
  t.is(buffer[3], 0xee);
  t.is(buffer[16], 0xee);
  t.deepEqual(parseVirtioNetHdr(Buffer.alloc(12)), { ...VIRTIO_NET_HDR_NO_OFFLOAD });
  t.throws(() => parseVirtioNetHdr(Buffer.alloc(11)), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => writeVirtioNetHdr(Buffer.alloc(12), hdr, 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => writeVirtioNetHdr(Buffer.alloc(12), { ...hdr, gsoSize: 70_000 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => writeVirtioNetHdr(Buffer.alloc(12), { ...hdr, flags: -1 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('openTap refuses a vnetHdr that is not a boolean', async (t) => {
  await t.throwsAsync(openTap({ name: 'mtap0', vnetHdr: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
});

/** A parsed TCP/IPv4 frame (after the virtio header). */
interface TcpFrame {
  hdr: VirtioNetHdr;
  /** The Ethernet frame. */
  frame: Buffer;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  payload: Buffer;
}

function parseTcpFrame(raw: Buffer): TcpFrame | undefined {
  const hdr = parseVirtioNetHdr(raw);
  const frame = raw.subarray(VIRTIO_NET_HDR_LENGTH);
  if (frame.length < 54 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 6) return undefined;
  const ihl = (frame[14]! & 0x0f) * 4;
  const total = frame.readUInt16BE(16);
  const tcp = frame.subarray(14 + ihl, 14 + total);
  const dataOffset = (tcp[12]! >> 4) * 4;
  return {
    hdr,
    frame: frame.subarray(0, 14 + total),
    srcPort: tcp.readUInt16BE(0),
    dstPort: tcp.readUInt16BE(2),
    seq: tcp.readUInt32BE(4),
    ack: tcp.readUInt32BE(8),
    flags: tcp[13]!,
    payload: tcp.subarray(dataOffset),
  };
}

/** A hand-built TCP segment, in a frame with its virtio header. */
interface Segment {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window?: number;
  options?: Buffer;
  payload?: Buffer;
  /** A TCPV4 super-segment cut at this MSS by the kernel; the TCP checksum left partial. */
  gsoSize?: number;
}

/** Writes `s` from US to KERNEL as one frame (header first). */
function sendSegment(tap: TapDevice, kernelMac: Buffer, s: Segment): void {
  const options = s.options ?? Buffer.alloc(0);
  const payload = s.payload ?? Buffer.alloc(0);
  const tcpLength = 20 + options.length + payload.length;
  const size = VIRTIO_NET_HDR_LENGTH + 14 + 20 + tcpLength;
  tap.write(size, (buffer) => {
    const partial = s.gsoSize !== undefined;
    writeVirtioNetHdr(
      buffer,
      partial
        ? { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 14 + 20 + 20 + options.length, gsoSize: s.gsoSize!, csumStart: 14 + 20, csumOffset: 16 }
        : VIRTIO_NET_HDR_NO_OFFLOAD,
    );
    const frame = buffer.subarray(VIRTIO_NET_HDR_LENGTH, size);
    kernelMac.copy(frame, 0);
    parseMac(tap.mac).copy(frame, 6);
    frame.writeUInt16BE(0x0800, 12);
    ipv4.emitHeader(frame, 14, { src: US, dst: KERNEL, protocol: 6, dontFragment: true, identification: s.seq & 0xffff }, tcpLength);
    const tcp = frame.subarray(34);
    tcp.writeUInt16BE(s.srcPort, 0);
    tcp.writeUInt16BE(s.dstPort, 2);
    tcp.writeUInt32BE(s.seq >>> 0, 4);
    tcp.writeUInt32BE(s.ack >>> 0, 8);
    tcp[12] = ((20 + options.length) / 4) << 4;
    tcp[13] = s.flags;
    tcp.writeUInt16BE(s.window ?? 0xffff, 14);
    tcp.writeUInt16BE(0, 16);
    tcp.writeUInt16BE(0, 18);
    options.copy(tcp, 20);
    payload.copy(tcp, 20 + options.length);
    const pseudo = pseudoHeaderSum(US, KERNEL, 6, tcpLength);
    // Partial: the field holds the pseudo-header sum over the whole super-segment, as Linux's
    // CHECKSUM_PARTIAL does; the kernel completes it per segment.
    tcp.writeUInt16BE(partial ? pseudo : checksum(tcp, pseudo), 16);
    return size;
  });
}

/** Opens a TAP with the header in `ns`, addresses the kernel side and pins our MAC as its neighbour. */
async function offloadTap(ns: Netns): Promise<{ tap: TapDevice; kernelMac: Buffer }> {
  const tap = await openTap({ name: 'mtapv0', netns: ns.name, vnetHdr: true });
  await ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtapv0');
  await ns.ip('link', 'set', 'mtapv0', 'up');
  await ns.ip('neigh', 'add', US, 'lladdr', tap.mac, 'dev', 'mtapv0', 'nud', 'permanent');
  const link = JSON.parse((await ns.ip('-j', 'link', 'show', 'mtapv0')).stdout)[0] as { address: string };
  return { tap, kernelMac: parseMac(link.address) };
}

/** The bytes a kernel peer sends or expects: a fixed pattern. */
function pattern(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + (i >> 8)) & 0xff;
  return out;
}
const PATTERN_PY = 'bytes(((i * 7 + (i >> 8)) & 0xff) for i in range(n))';

/** Waits until `done()` or the deadline (liveness only). */
async function until(done: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

kernelTest(
  test,
  'vnetHdr: the kernel sends bulk TCP as TSO super-frames (> 1514 B, TCPV4, NEEDS_CSUM) whose checksums complete and whose bytes arrive intact',
  async (t) => {
    await withNetns(async (ns) => {
      const { tap, kernelMac } = await offloadTap(ns);
      try {
        t.true(tap.vnetHdr, 'the kernel granted the header');
        t.deepEqual({ ...tap.kernelOffloads }, { checksum: true, tso4: true, tso6: true });
        const N = 512 * 1024;
        const PORT = 5555;
        const ISS = 1_000_000;
        const received: Buffer[] = [];
        let next = -1;
        let finished = false;
        const frames: TcpFrame[] = [];
        tap.listen((raw) => {
          const f = parseTcpFrame(raw);
          if (!f || f.dstPort !== PORT) return;
          frames.push(f);
          const reply = { srcPort: PORT, dstPort: f.srcPort, window: 0xffff };
          if (f.flags & TCP_SYN) {
            next = (f.seq + 1) >>> 0;
            // MSS 1460, window scale 7 (a 8 MiB window: the kernel's cwnd decides, not us).
            const options = Buffer.from([2, 4, 0x05, 0xb4, 1, 3, 3, 7]);
            sendSegment(tap, kernelMac, { ...reply, seq: ISS, ack: next, flags: TCP_SYN | TCP_ACK, options });
            return;
          }
          if (f.payload.length > 0 && f.seq === next) {
            received.push(Buffer.from(f.payload));
            next = (next + f.payload.length) >>> 0;
          }
          if (f.flags & TCP_FIN && f.seq + f.payload.length === next) {
            next = (next + 1) >>> 0;
            finished = true;
          }
          // Acknowledge every frame cumulatively (duplicates too, which is harmless).
          if (f.payload.length > 0 || f.flags & TCP_FIN) sendSegment(tap, kernelMac, { ...reply, seq: ISS + 1, ack: next, flags: TCP_ACK });
        });
        const client = ns.spawn('python3', [
          '-c',
          `import socket\nn=${N}\ns=socket.create_connection(('${US}', ${PORT}))\ns.sendall(${PATTERN_PY})\ns.shutdown(socket.SHUT_WR)\nimport time\ntime.sleep(30)`,
        ]);
        try {
          await until(() => finished, 'the kernel to send everything and FIN');
        } finally {
          client.kill();
        }
        const data = Buffer.concat(received);
        t.is(data.length, N);
        t.is(createHash('sha256').update(data).digest('hex'), createHash('sha256').update(pattern(N)).digest('hex'));
        const supers = frames.filter((f) => f.frame.length > 1514);
        t.log(`${frames.length} TCP frames from the kernel, ${supers.length} super-frames, largest ${Math.max(...frames.map((f) => f.frame.length))} B`);
        t.true(supers.length > 0, 'the kernel sent frames longer than 1514 bytes');
        for (const f of supers) {
          t.is(f.hdr.gsoType & 0x7f, VIRTIO_NET_HDR_GSO_TCPV4);
          t.is(f.hdr.gsoSize, 1460, 'cut at the MSS we announced');
          t.is(f.hdr.hdrLen <= 14 + 60 + 60, true);
        }
        // Every NEEDS_CSUM frame's checksum, completed as its header says, verifies.
        const partial = frames.filter((f) => f.hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
        t.true(partial.length >= supers.length, 'super-frames come with partial checksums');
        for (const f of partial) {
          const frame = Buffer.from(f.frame);
          t.is(f.hdr.csumStart, 34);
          t.is(f.hdr.csumOffset, 16);
          frame.writeUInt16BE(checksum(frame.subarray(f.hdr.csumStart)), f.hdr.csumStart + f.hdr.csumOffset);
          const tcp = frame.subarray(34);
          t.is(checksum(tcp, pseudoHeaderSum(KERNEL, US, 6, tcp.length)), 0, 'the completed checksum is valid');
        }
        t.true(frames.every((f) => f.frame.length <= 14 + 65_535));
        t.true(frames.some((f) => f.hdr.gsoType === VIRTIO_NET_HDR_GSO_NONE), 'plain frames (SYN, FIN) carry GSO_NONE');
      } finally {
        await tap.close();
      }
    });
  },
  ['python3'],
);

kernelTest(
  test,
  'vnetHdr: a hand-built TCPV4 super-segment (40,000 B at MSS 1400) written to the device reaches a kernel socket whole',
  async (t) => {
    await withNetns(async (ns) => {
      const { tap, kernelMac } = await offloadTap(ns);
      const PORT = 6666;
      const server = ns.spawn('python3', [
        '-c',
        `import hashlib, socket\nl=socket.socket()\nl.bind(('${KERNEL}', ${PORT}))\nl.listen(1)\nprint('ready', flush=True)\nc,_=l.accept()\nd=b''\nwhile True:\n  b=c.recv(1<<20)\n  if not b: break\n  d+=b\nprint(len(d), hashlib.sha256(d).hexdigest(), flush=True)`,
      ]);
      let out = '';
      server.stdout!.on('data', (d) => (out += d));
      server.stderr!.on('data', (d) => (out += d));
      const exited = once(server, 'exit');
      try {
        await until(() => out.includes('ready\n'), 'the listener');
        let synAck: TcpFrame | undefined;
        const acks: number[] = [];
        tap.listen((raw) => {
          const f = parseTcpFrame(raw);
          if (!f || f.srcPort !== PORT) return;
          if (f.flags & TCP_SYN) synAck = f;
          else acks.push(f.ack);
        });
        const ISS = 7_000_000;
        const base = { srcPort: 40_000, dstPort: PORT };
        sendSegment(tap, kernelMac, { ...base, seq: ISS, ack: 0, flags: TCP_SYN, options: Buffer.from([2, 4, 0x05, 0xb4]) });
        await until(() => synAck !== undefined, 'the SYN-ACK');
        const ack = (synAck!.seq + 1) >>> 0;
        sendSegment(tap, kernelMac, { ...base, seq: ISS + 1, ack, flags: TCP_ACK });
        const payload = pattern(40_000);
        sendSegment(tap, kernelMac, { ...base, seq: ISS + 1, ack, flags: TCP_ACK | TCP_PSH, payload, gsoSize: 1400 });
        const end = ISS + 1 + payload.length;
        await until(() => acks.includes(end), 'the kernel to acknowledge the whole super-segment');
        sendSegment(tap, kernelMac, { ...base, seq: end, ack, flags: TCP_ACK | TCP_FIN });
        await until(() => out.split('\n').length >= 3, 'the listener to report');
        const [length, digest] = out.split('\n')[1]!.split(' ');
        t.is(Number(length), payload.length);
        t.is(digest, createHash('sha256').update(payload).digest('hex'));
        const stats = tap.stats();
        t.is(stats.txDropped, 0);
      } finally {
        server.kill();
        await exited.catch(() => {});
        await tap.close();
      }
    });
  },
  ['python3'],
);

kernelTest(test, 'vnetHdr false (the default): plain frames, no offloads', async (t) => {
  await withNetns(async (ns) => {
    const tap = await openTap({ name: 'mtapv1', netns: ns.name });
    try {
      t.false(tap.vnetHdr);
      t.deepEqual({ ...tap.kernelOffloads }, { checksum: false, tso4: false, tso6: false });
    } finally {
      await tap.close();
    }
  });
});

kernelTest(test, 'vnetHdr on a persistent TAP that `ip tuntap` created without the header: the header is per attachment (with it, then without it)', async (t) => {
  await withNetns(async (ns) => {
    await ns.ip('tuntap', 'add', 'dev', 'mtapv2', 'mode', 'tap');
    const tap = await openTap({ name: 'mtapv2', netns: ns.name, vnetHdr: true });
    try {
      t.true(tap.vnetHdr);
      await ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtapv2');
      await ns.ip('link', 'set', 'mtapv2', 'up');
      // The kernel's ARP request for an address on the link arrives with a GSO_NONE header.
      const arp = new Promise<Buffer>((resolve) => tap.listen((raw) => raw.readUInt16BE(VIRTIO_NET_HDR_LENGTH + 12) === 0x0806 && resolve(raw)));
      void ns.exec('ping', ['-c', '1', '-W', '1', US], { allowFailure: true });
      const raw = await arp;
      t.is(parseVirtioNetHdr(raw).gsoType, VIRTIO_NET_HDR_GSO_NONE);
      t.is(raw.readUInt16BE(VIRTIO_NET_HDR_LENGTH + 20), 1, 'an ARP request after the 12-byte header');
    } finally {
      await tap.close();
    }
    // Attached again without the header, the same interface gives plain frames.
    const plain = await openTap({ name: 'mtapv2', netns: ns.name });
    try {
      t.false(plain.vnetHdr);
      const arp = new Promise<Buffer>((resolve) => plain.listen((raw) => raw.readUInt16BE(12) === 0x0806 && resolve(raw)));
      await ns.ip('neigh', 'flush', 'dev', 'mtapv2');
      void ns.exec('ping', ['-c', '1', '-W', '1', US], { allowFailure: true });
      t.is((await arp).readUInt16BE(20), 1, 'an ARP request at offset 0');
    } finally {
      await plain.close();
      await ns.ip('tuntap', 'del', 'dev', 'mtapv2', 'mode', 'tap');
    }
  });
});
