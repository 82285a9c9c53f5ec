/**
 * The user-mode gateway's frame rewriting: after an address or port is rewritten in place with
 * an incremental update, the IPv4, TCP and UDP checksums equal those computed from scratch over
 * the new bytes (RFC 1624), UDP's "no checksum" stays 0 and a computed 0 becomes 0xffff; built
 * UDP frames and ARP replies carry the fields asked for. (tshark checks the same on a live link
 * in solo5-user-net.spec.ts.)
 */
import test from 'ava';
import { checksum, pseudoHeaderSum } from 'morgana';
import { arpRequestTarget, l4View, rewriteAddress, rewritePort, writeArpReply, writeUdpFrame } from '../ts/solo5/gateway-wire.js';

const ip = (a: number, b: number, c: number, d: number) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

/** An Ethernet + IPv4 + TCP (or UDP) frame with correct checksums. */
function frame(protocol: 6 | 17, src: number, dst: number, sport: number, dport: number, payload: Buffer): Buffer {
  const l4len = (protocol === 6 ? 20 : 8) + payload.length;
  const f = Buffer.alloc(14 + 20 + l4len);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + l4len, 16);
  f[22] = 64;
  f[23] = protocol;
  f.writeUInt32BE(src, 26);
  f.writeUInt32BE(dst, 30);
  f.writeUInt16BE(checksum(f.subarray(14, 34)), 24);
  const l4 = f.subarray(34);
  l4.writeUInt16BE(sport, 0);
  l4.writeUInt16BE(dport, 2);
  if (protocol === 6) {
    l4[12] = 5 << 4;
    l4[13] = 0x02;
    l4.writeUInt16BE(65535, 14);
    payload.copy(l4, 20);
    l4.writeUInt16BE(checksum(l4, pseudoHeaderSum(src, dst, 6, l4len)), 16);
  } else {
    l4.writeUInt16BE(l4len, 4);
    payload.copy(l4, 8);
    l4.writeUInt16BE(checksum(l4, pseudoHeaderSum(src, dst, 17, l4len)) || 0xffff, 6);
  }
  return f;
}

/** Whether every checksum of the frame verifies. */
function valid(f: Buffer): boolean {
  const v = l4View(f)!;
  const l4 = f.subarray(v.l4, 14 + f.readUInt16BE(16));
  if (checksum(f.subarray(14, 34)) !== 0) return false;
  if (v.protocol === 17 && l4.readUInt16BE(6) === 0) return true;
  return checksum(l4, pseudoHeaderSum(v.src, v.dst, v.protocol, l4.length)) === 0;
}

test('rewritten addresses and ports keep every checksum valid (TCP and UDP, odd lengths, many values)', (t) => {
  let seed = 7;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let i = 0; i < 2000; i++) {
    const protocol = i % 2 ? 6 : 17;
    const payload = Buffer.alloc(rnd() % 61, rnd() & 0xff);
    const f = frame(protocol, ip(10, 0, 2, 15), rnd(), rnd() & 0xffff, rnd() & 0xffff, payload);
    const v = l4View(f)!;
    t.truthy(v);
    rewriteAddress(f, v, 'dst', rnd());
    rewritePort(f, v, 'dst', rnd() & 0xffff);
    rewriteAddress(f, v, 'src', rnd());
    rewritePort(f, v, 'src', rnd() & 0xffff);
    if (!valid(f)) return t.fail(`frame ${i}: ${f.toString('hex')}`);
    const again = l4View(f)!;
    t.deepEqual([again.src, again.dst, again.srcPort, again.dstPort], [v.src, v.dst, v.srcPort, v.dstPort]);
  }
  t.pass();
});

test('UDP without a checksum stays without one', (t) => {
  const f = frame(17, ip(10, 0, 2, 15), ip(10, 0, 2, 2), 5000, 53, Buffer.from('q'));
  f.writeUInt16BE(0, 34 + 6);
  const v = l4View(f)!;
  rewriteAddress(f, v, 'dst', ip(127, 0, 0, 1));
  rewritePort(f, v, 'dst', 5353);
  t.is(f.readUInt16BE(34 + 6), 0);
  t.is(checksum(f.subarray(14, 34)), 0);
});

test('fragments, truncated and non-IP frames are not translated', (t) => {
  const f = frame(6, ip(10, 0, 2, 15), ip(1, 2, 3, 4), 1, 2, Buffer.alloc(4));
  t.truthy(l4View(f));
  const fragment = Buffer.from(f);
  fragment.writeUInt16BE(0x2000, 20); // MF
  t.is(l4View(fragment), undefined);
  t.is(l4View(f.subarray(0, 40)), undefined);
  const arp = Buffer.from(f);
  arp.writeUInt16BE(0x0806, 12);
  t.is(l4View(arp), undefined);
});

test('built UDP frames and ARP replies', (t) => {
  const out = Buffer.alloc(1514);
  const n = writeUdpFrame(out, { dstMac: Buffer.alloc(6, 0xaa), srcMac: Buffer.alloc(6, 0xbb), src: ip(10, 0, 2, 3), dst: ip(10, 0, 2, 15), srcPort: 53, dstPort: 4444, identification: 9, payload: Buffer.from('answer!') });
  const f = out.subarray(0, n);
  t.is(n, 14 + 20 + 8 + 7);
  t.true(valid(f));
  t.like(l4View(f), { protocol: 17, src: ip(10, 0, 2, 3), dst: ip(10, 0, 2, 15), srcPort: 53, dstPort: 4444, payloadLength: 7 });
  const request = Buffer.alloc(42);
  Buffer.alloc(6, 0xff).copy(request, 0);
  Buffer.from([2, 0, 0, 0, 0, 0x0f]).copy(request, 6);
  request.writeUInt16BE(0x0806, 12);
  request.writeUInt16BE(1, 14);
  request.writeUInt16BE(0x0800, 16);
  request[18] = 6;
  request[19] = 4;
  request.writeUInt16BE(1, 20);
  Buffer.from([2, 0, 0, 0, 0, 0x0f]).copy(request, 22);
  request.writeUInt32BE(ip(10, 0, 2, 15), 28);
  request.writeUInt32BE(ip(10, 0, 2, 3), 38);
  t.is(arpRequestTarget(request), ip(10, 0, 2, 3));
  const reply = Buffer.alloc(42);
  t.is(writeArpReply(reply, request, Buffer.alloc(6, 0xbb), ip(10, 0, 2, 3)), 42);
  t.is(reply.subarray(0, 6).toString('hex'), '02000000000f');
  t.is(reply.readUInt16BE(20), 2);
  t.is(reply.readUInt32BE(28), ip(10, 0, 2, 3));
  t.is(reply.subarray(32, 38).toString('hex'), '02000000000f');
  t.is(reply.readUInt32BE(38), ip(10, 0, 2, 15));
  t.is(arpRequestTarget(reply), undefined); // a reply is not a request
});
