/**
 * IPv6 fragmentation (`fragmentIpv6` / `ipv6.fragment`) and reassembly (`Ipv6Reassembler`)
 * through the public package: every arrival order, the RFC 5722 / 6946 / 7112 / 8200 rules with
 * their counters and ICMPv6 reports, the memory cap, timeouts on a virtual clock, and tshark as
 * an independent judge of the fragments we generate.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  Ipv6Reassembler,
  VirtualClock,
  VirtualSwitch,
  checksum,
  fragmentIpv6,
  ipv6,
  pcapRecorder,
  pseudoHeaderSum6,
} from 'morgana';

const SRC = '2001:db8::1';
const DST = '2001:db8::2';
const { UDP, ICMPV6, TCP, FRAGMENT, DESTINATION_OPTIONS, NO_NEXT_HEADER } = ipv6.NEXT_HEADER;

const bytes = (n: number, seed = 0) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + 3) & 0xff));

/** A UDP packet with a correct checksum and `size` bytes of data. */
function udpPacket(size: number, src = SRC, dst = DST): Buffer {
  const udp = Buffer.concat([Buffer.alloc(8), bytes(size)]);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(9, 2);
  udp.writeUInt16BE(udp.length, 4);
  udp.writeUInt16BE(checksum(udp, pseudoHeaderSum6(src, dst, UDP, udp.length)) || 0xffff, 6);
  return ipv6.emit({ src, dst, nextHeader: UDP }, udp);
}

/** A fragment made by hand: fixed header, fragment header (`next` at `offset`), then `data`. */
function piece(id: number, offset: number, data: Buffer, more: boolean, next: number = NO_NEXT_HEADER, dst = DST): Buffer {
  const frag = Buffer.alloc(8);
  frag[0] = next;
  frag.writeUInt16BE(offset | (more ? 1 : 0), 2);
  frag.writeUInt32BE(id, 4);
  return ipv6.emit({ src: SRC, dst, nextHeader: FRAGMENT }, Buffer.concat([frag, data]));
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

test('every permutation of a 4-fragment datagram reassembles to the original bytes', (t) => {
  const original = udpPacket(4000);
  const pieces = fragmentIpv6(original, 1280, 0xcafe);
  t.is(pieces.length, 4);
  const orders = permutations([0, 1, 2, 3]);
  t.is(orders.length, 24);
  const r = new Ipv6Reassembler();
  for (const order of orders) {
    const results = order.map((i) => r.push(pieces[i]!, 0));
    t.deepEqual(results.slice(0, 3), [undefined, undefined, undefined], `order ${order}`);
    const whole = results[3];
    t.true(whole instanceof Buffer, `order ${order} completes on its last fragment`);
    t.deepEqual(Buffer.from(whole!), original);
  }
  t.like(r.stats(), { reassembled: 24, fragments: 96, bufferedBytes: 0, pendingDatagrams: 0, droppedOverlap: 0 });
});

test('fragments carry the unfragmentable part, a fragment header and 8-byte-aligned offsets', (t) => {
  const original = udpPacket(3000);
  const pieces = ipv6.fragment(original, 1280, 0x12345678);
  let offset = 0;
  for (const [i, p] of pieces.entries()) {
    t.true(p.length <= 1280);
    const parsed = ipv6.parse(p);
    t.is(parsed.src, SRC);
    t.deepEqual(parsed.fragment, { offset, moreFragments: i < pieces.length - 1, identification: 0x12345678, atomic: false });
    t.is(parsed.extensions[0]!.bytes[0], UDP, 'the fragment header names UDP');
    if (i < pieces.length - 1) t.is(parsed.payload.length % 8, 0);
    offset += parsed.payload.length;
  }
  t.is(offset, 3008);
  // A packet that fits comes back as it is.
  const small = udpPacket(100);
  t.deepEqual(fragmentIpv6(small, 1280, 1), [small]);
  t.is(fragmentIpv6(small, 1280, 1)[0]!.buffer, small.buffer, 'a view, not a copy');
});

test('fragmentation errors are typed', (t) => {
  const original = udpPacket(3000);
  t.throws(() => fragmentIpv6(original, 55, 1), { code: 'ERR_MTU_TOO_SMALL', message: /MTU 55/ });
  t.is(fragmentIpv6(original, 56, 1).length, Math.ceil(3008 / 8), 'any MTU that holds header + 8 bytes works');
  t.throws(() => fragmentIpv6(fragmentIpv6(original, 1280, 1)[0]!, 600, 1), { code: 'ERR_IPV6_ALREADY_FRAGMENT' });
  t.throws(() => fragmentIpv6(original.subarray(0, 30), 1280, 1), { code: 'ERR_IPV6_TRUNCATED' });
  // 200 bytes of destination options before TCP do not fit a 72-byte first fragment (RFC 7112).
  const options = Buffer.alloc(200);
  options[0] = TCP;
  options[1] = 24;
  options[2] = 1;
  options[3] = 196;
  const tcp = ipv6.emit({ src: SRC, dst: DST, nextHeader: DESTINATION_OPTIONS }, Buffer.concat([options, bytes(2000)]));
  t.throws(() => fragmentIpv6(tcp, 128, 1), { code: 'ERR_IPV6_HEADER_CHAIN_TOO_LONG' });
  t.throws(() => fragmentIpv6(original, 1280, -1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => fragmentIpv6('nope' as unknown as Uint8Array, 1280, 1), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('packets without a fragment header and atomic fragments come back as they are', (t) => {
  const r = new Ipv6Reassembler();
  const plain = udpPacket(10);
  t.is(r.push(plain, 0), plain);
  // A pending fragment with the same identification is not disturbed by an atomic one.
  t.is(r.push(piece(7, 8, bytes(8), true), 0), undefined);
  const atomic = piece(7, 0, bytes(12), false, UDP);
  t.is(r.push(atomic, 0), atomic);
  t.like(r.stats(), { atomic: 1, fragments: 1, pendingDatagrams: 1 });
  t.is(r.push(piece(7, 0, bytes(8), true), 0), undefined);
  const whole = r.push(piece(7, 16, bytes(3), false), 0);
  t.is(whole?.length, 40 + 19);
  t.is(r.stats().reassembled, 1);
});

test('pushBatch: the same results, stats and reports as push, packet by packet; output views and own Buffers', (t) => {
  // Shuffled fragments of three packets, a plain packet, an atomic fragment, a duplicate, a
  // fragment with a bad length (a Parameter Problem report) and a malformed packet.
  const originals = [udpPacket(60_000), udpPacket(3000), udpPacket(65_000)];
  const pieces = originals.flatMap((p, id) => fragmentIpv6(p, 1500, 100 + id));
  for (let i = pieces.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
  }
  const atomic = piece(9, 0, bytes(12), false, UDP);
  const packets = [...pieces.slice(0, 20), udpPacket(10), atomic, pieces[3]!, piece(8, 0, bytes(12), true), Buffer.from([0x60, 0]), ...pieces.slice(20)];
  const one = new Ipv6Reassembler();
  const expected = packets.map((p) => one.push(p, 0));
  const reports = one.takeReports();
  t.is(reports.length, 1, 'a Parameter Problem for the fragment with a bad length');
  for (const output of [undefined, Buffer.alloc(96 * 1024)]) {
    const batched = new Ipv6Reassembler();
    const parts: Buffer[] = [];
    const spans = new Uint32Array(2 * packets.length);
    let at = 0;
    packets.forEach((p, i) => {
      parts.push(Buffer.alloc(14), p);
      spans[2 * i] = at + 14;
      spans[2 * i + 1] = p.length;
      at += 14 + p.length;
    });
    const data = Buffer.concat(parts);
    const got = batched.pushBatch(data, spans, 0, { output });
    t.is(got.length, packets.length);
    got.forEach((g, i) => t.deepEqual(g && Buffer.from(g), expected[i] && Buffer.from(expected[i]!), `packet ${i}`));
    t.is(got.filter((g) => g !== undefined).length, 5, 'three reassembled, a plain packet and an atomic fragment passed through');
    t.is(got[21]!.buffer, data.buffer, 'the atomic fragment is a view of the input');
    if (output) t.is(got.filter((g) => g?.buffer === output.buffer).length, 2, 'the 3 KiB packet and one 64 KiB packet fit in 96 KiB');
    t.deepEqual(batched.stats(), one.stats());
    t.deepEqual(batched.takeReports(), reports);
  }
});

test('an overlap drops the datagram and its later fragments, counted', (t) => {
  const r = new Ipv6Reassembler();
  const [a, b, c] = fragmentIpv6(udpPacket(3000), 1280, 5);
  t.is(r.push(a!, 0), undefined);
  // A forged fragment overlapping the end of `a`.
  t.is(r.push(piece(5, 1224, bytes(16, 9), true, UDP), 0), undefined);
  t.like(r.stats(), { droppedOverlap: 1, pendingDatagrams: 0 });
  t.is(r.push(b!, 0), undefined);
  t.is(r.push(c!, 0), undefined, 'the discarded datagram does not complete later');
  t.like(r.stats(), { droppedDiscarded: 2, reassembled: 0 });
  // Exact duplicates are not overlaps.
  const [d] = fragmentIpv6(udpPacket(3000), 1280, 6);
  r.push(d!, 0);
  r.push(d!, 0);
  t.like(r.stats(), { duplicates: 1, droppedOverlap: 1 });
});

test('RFC 8200 length rules and RFC 7112 produce ICMPv6 parameter problem reports', (t) => {
  const r = new Ipv6Reassembler();
  const misaligned = piece(1, 0, bytes(12), true);
  t.is(r.push(misaligned, 0), undefined);
  t.is(r.pendingReports, 1);
  const tooBig = piece(2, 65_528, bytes(8), false);
  t.is(r.push(tooBig, 0), undefined);
  const incomplete = piece(3, 0, bytes(16), true, TCP);
  t.is(r.push(incomplete, 0), undefined);
  // To a multicast group: dropped, but no report (RFC 4443 §2.4 (e)).
  t.is(r.push(piece(4, 0, bytes(12), true, NO_NEXT_HEADER, 'ff02::1'), 0), undefined);
  const reports = r.takeReports();
  t.deepEqual(
    reports.map(({ type, code, pointer }) => ({ type, code, pointer })),
    [
      { type: 4, code: 0, pointer: 4 },
      { type: 4, code: 0, pointer: 42 },
      { type: 4, code: 3, pointer: 0 },
    ],
  );
  t.deepEqual(reports[0]!.packet, misaligned);
  t.deepEqual(reports[1]!.packet, tooBig);
  t.deepEqual(reports[2]!.packet, incomplete);
  t.is(r.pendingReports, 0);
  t.deepEqual(r.takeReports(), []);
  t.like(r.stats(), { droppedBadLength: 2, droppedTooBig: 1, droppedIncompleteChain: 1, reports: 3, droppedReports: 0 });
});

test('the report queue is bounded', (t) => {
  const r = new Ipv6Reassembler({ maxReports: 2 });
  for (let id = 0; id < 5; id++) r.push(piece(id, 0, bytes(12), true), 0);
  t.is(r.pendingReports, 2);
  t.like(r.stats(), { reports: 2, droppedReports: 3 });
  t.is(r.takeReports().length, 2);
});

test('timeouts count from the first fragment and report Time Exceeded with a virtual clock', (t) => {
  const clock = new VirtualClock();
  const r = new Ipv6Reassembler({ timeoutMs: 10_000 });
  const [a, b, c] = fragmentIpv6(udpPacket(3000), 1280, 8);
  const [, e] = fragmentIpv6(udpPacket(3000), 1280, 9);
  r.push(a!, clock.now());
  r.push(e!, clock.now()); // datagram 9 never gets its first fragment
  clock.advance(9_000);
  t.is(r.push(b!, clock.now()), undefined);
  clock.advance(999);
  t.is(r.expire(clock.now()), 0);
  clock.advance(1);
  t.is(r.expire(clock.now()), 2);
  t.like(r.stats(), { droppedTimeout: 2, pendingDatagrams: 0, bufferedBytes: 0 });
  const reports = r.takeReports();
  t.is(reports.length, 1, 'only the datagram whose first fragment arrived is reported');
  t.like(reports[0], { type: 3, code: 1, pointer: 0 });
  t.deepEqual(reports[0]!.packet, a!.subarray(0, 1232), 'the first fragment, as much as an ICMPv6 error quotes');
  // The last fragment now starts a new datagram instead of completing the old one.
  t.is(r.push(c!, clock.now()), undefined);
  t.is(r.stats().pendingDatagrams, 1);
});

test('the memory cap holds under a flood, evicting the least recently used datagrams', (t) => {
  const r = new Ipv6Reassembler({ maxBytes: 16 * 1024 });
  for (let id = 0; id < 500; id++) {
    r.push(fragmentIpv6(udpPacket(3000), 1280, id)[0]!, id);
    t.true(r.stats().bufferedBytes <= 16 * 1024);
  }
  const stats = r.stats();
  t.true(stats.droppedMemory >= 480, `${stats.droppedMemory} evicted`);
  t.true(stats.pendingDatagrams > 0);
  // The most recent datagram survived and still completes.
  const [, b, c] = fragmentIpv6(udpPacket(3000), 1280, 499);
  r.push(b!, 500);
  t.deepEqual(Buffer.from(r.push(c!, 500)!), udpPacket(3000));
  // Options are validated.
  t.throws(() => new Ipv6Reassembler({ maxFragments: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new Ipv6Reassembler({ maxReports: -1 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('malformed packets are counted and dropped, not thrown', (t) => {
  const r = new Ipv6Reassembler();
  t.is(r.push(Buffer.from([0x60, 0, 0]), 0), undefined);
  t.is(r.push(Buffer.alloc(0), 0), undefined);
  t.is(r.stats().droppedMalformed, 2);
  t.throws(() => r.push('x' as unknown as Uint8Array, 0), { code: 'ERR_INVALID_ARG_TYPE' });
});

let tshark = true;
try {
  execFileSync('tshark', ['--version'], { stdio: 'ignore' });
} catch {
  tshark = false;
}

function tsharkFields(file: string, filter: string, fields: string[]): string[][] {
  const args = ['-r', file, '-o', 'udp.check_checksum:TRUE', '-o', 'ipv6.defragment:TRUE', '-Y', filter, '-T', 'fields'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.split('\n').filter(Boolean).map((line) => line.split('\t'));
}

(tshark ? test : test.skip)(`tshark reassembles our fragments with no malformed packets${tshark ? '' : ' (skipped: no tshark)'}`, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-ipv6-frag-'));
  const file = path.join(dir, 'fragments6.pcap');
  try {
    // UDP after a destination options header (in the fragmentable part), 4000 bytes of data.
    const udp = udpPacket(4000);
    const options = Buffer.from([UDP, 0, 1, 4, 0, 0, 0, 0]);
    const withOptions = ipv6.emit(
      { src: SRC, dst: DST, nextHeader: DESTINATION_OPTIONS },
      Buffer.concat([options, udp.subarray(40)]),
    );
    // An ICMPv6 echo request with 3000 bytes of data.
    const echo = Buffer.concat([Buffer.from([128, 0, 0, 0, 0x12, 0x34, 0, 1]), bytes(3000, 5)]);
    echo.writeUInt16BE(checksum(echo, pseudoHeaderSum6(SRC, DST, ICMPV6, echo.length)), 2);
    const ping = ipv6.emit({ src: SRC, dst: DST, nextHeader: ICMPV6 }, echo);
    const fragments = [...fragmentIpv6(withOptions, 1280, 0x1001), ...fragmentIpv6(ping, 1500, 0x1002)];
    t.is(fragments.length, 4 + 3);

    const sw = new VirtualSwitch();
    const a = pcapRecorder(sw.connect(), file);
    const b = sw.connect();
    for (const f of fragments) {
      a.write(14 + f.length, (buffer) => {
        buffer.set([0x33, 0x33, 0, 0, 0, 2, 0x02, 0, 0x5e, 0, 0x53, 0x01]);
        buffer.writeUInt16BE(0x86dd, 12);
        f.copy(buffer, 14);
        return 14 + f.length;
      });
    }
    await a.close();
    await b.close();

    t.is(tsharkFields(file, 'frame', ['frame.number']).length, 7);
    const bad = tsharkFields(
      file,
      '_ws.malformed || _ws.expert.severity >= warning || ipv6.fragment.error || ipv6.fragment.overlap || udp.checksum.status == "Bad" || icmpv6.checksum.status == "Bad"',
      ['frame.number', '_ws.expert.message'],
    );
    t.deepEqual(bad, [], 'no malformed frames, no fragment errors, no bad checksums');
    const reassembled = tsharkFields(file, 'ipv6.reassembled.length', [
      'ipv6.reassembled.length',
      'ipv6.fragment.count',
      'udp.length',
      'udp.checksum.status',
      'icmpv6.type',
      'icmpv6.checksum.status',
    ]);
    t.deepEqual(reassembled, [
      // Fragmentable part: 8 bytes of options + 8 of UDP header + 4000 of data, in 4 fragments.
      ['4016', '4', '4008', '1', '', ''],
      // 8 bytes of ICMPv6 header + 3000 of data, in 3 fragments; checksum status 1 is Good.
      ['3008', '3', '', '', '128', '1'],
    ]);

    // And our own reassembler turns the same fragments back into the originals.
    const r = new Ipv6Reassembler();
    const done = fragments.reverse().map((f) => r.push(f, 0)).filter((x) => x !== undefined);
    t.deepEqual(done.map((x) => Buffer.from(x)), [ping, withOptions]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
