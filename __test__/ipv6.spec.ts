import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  Ipv6ParseError,
  VirtualSwitch,
  checksum,
  formatIpv6Address,
  ipv6,
  parseIpv6Address,
  pcapRecorder,
  pseudoHeaderSum6,
} from 'morgana';

const payload = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff));

/** An options-style extension header (hop-by-hop, routing, destination options) of `units` × 8 bytes, PadN-filled. */
function optionsHeader(next: number, units: number): Buffer {
  const h = Buffer.alloc(units * 8);
  h[0] = next;
  h[1] = units - 1;
  h[2] = 1;
  h[3] = units * 8 - 4;
  return h;
}

function fragmentHeader(next: number, offset: number, more: boolean, id: number): Buffer {
  const h = Buffer.alloc(8);
  h[0] = next;
  h.writeUInt16BE(offset | (more ? 1 : 0), 2);
  h.writeUInt32BE(id, 4);
  return h;
}

test('emit then parse round-trips every field; addresses come back in RFC 5952 form', (t) => {
  const packet = ipv6.emit(
    {
      src: '2001:DB8:0:0:0:0:0:1',
      dst: 'fe80::0202:b3ff:fe1e:8329',
      nextHeader: ipv6.NEXT_HEADER.UDP,
      hopLimit: 17,
      trafficClass: 0xb8,
      flowLabel: 0xabcde,
    },
    payload(100),
  );
  t.is(packet.length, 140);
  const parsed = ipv6.parse(packet);
  t.like(parsed, {
    trafficClass: 0xb8,
    flowLabel: 0xabcde,
    payloadLength: 100,
    hopLimit: 17,
    src: '2001:db8::1',
    dst: 'fe80::202:b3ff:fe1e:8329',
    nextHeader: 17,
    nextHeaderPointer: 6,
    extensions: [],
    fragment: undefined,
  });
  t.deepEqual(parsed.payload, payload(100));
  t.is(parsed.payload.buffer, packet.buffer, 'payload is a view, not a copy');
});

test('parse ignores trailing link padding', (t) => {
  const packet = ipv6.emit({ src: '::1', dst: '::1', nextHeader: 59 });
  const parsed = ipv6.parse(Buffer.concat([packet, Buffer.alloc(20, 0xaa)]));
  t.is(parsed.payloadLength, 0);
  t.is(parsed.payload.length, 0);
});

test('extension headers are walked, atomic fragments recognised (RFC 6946)', (t) => {
  const icmp = Buffer.from([128, 0, 0, 0, 0, 1, 0, 1]);
  const chain = Buffer.concat([
    optionsHeader(ipv6.NEXT_HEADER.ROUTING, 1),
    optionsHeader(ipv6.NEXT_HEADER.FRAGMENT, 2),
    fragmentHeader(ipv6.NEXT_HEADER.DESTINATION_OPTIONS, 0, false, 0xcafef00d),
    optionsHeader(ipv6.NEXT_HEADER.ICMPV6, 1),
    icmp,
  ]);
  const parsed = ipv6.parse(ipv6.emit({ src: 'fe80::1', dst: 'ff02::1', nextHeader: ipv6.NEXT_HEADER.HOP_BY_HOP }, chain));
  t.deepEqual(
    parsed.extensions.map((e) => [e.type, e.offset, e.bytes.length]),
    [
      [0, 40, 8],
      [43, 48, 16],
      [44, 64, 8],
      [60, 72, 8],
    ],
  );
  t.is(parsed.nextHeader, ipv6.NEXT_HEADER.ICMPV6);
  t.is(parsed.nextHeaderPointer, 72);
  t.deepEqual(parsed.fragment, { offset: 0, moreFragments: false, identification: 0xcafef00d, atomic: true });
  t.deepEqual(parsed.payload, icmp);
});

test('a real fragment stops the walk: what follows is fragment data', (t) => {
  const data = Buffer.alloc(16, 0xff);
  const parsed = ipv6.parse(
    ipv6.emit(
      { src: '2001:db8::1', dst: '2001:db8::2', nextHeader: ipv6.NEXT_HEADER.FRAGMENT },
      Buffer.concat([fragmentHeader(ipv6.NEXT_HEADER.UDP, 1232, true, 42), data]),
    ),
  );
  t.deepEqual(parsed.fragment, { offset: 1232, moreFragments: true, identification: 42, atomic: false });
  t.is(parsed.nextHeader, 17);
  t.is(parsed.nextHeaderPointer, 40);
  t.deepEqual(parsed.payload, data);
});

test('an unknown next header is reported with the pointer a parameter problem needs', (t) => {
  const parsed = ipv6.parse(
    ipv6.emit({ src: '::', dst: '::1', nextHeader: ipv6.NEXT_HEADER.DESTINATION_OPTIONS }, Buffer.concat([optionsHeader(253, 1), payload(4)])),
  );
  t.is(parsed.nextHeader, 253);
  t.is(parsed.nextHeaderPointer, 40);
  t.deepEqual(parsed.payload, payload(4));
});

test('malformed packets get stable error codes (and pointers)', (t) => {
  const good = ipv6.emit({ src: '::1', dst: '::2', nextHeader: 17 }, payload(16));
  const mutate = (f: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  t.throws(() => ipv6.parse(good.subarray(0, 39)), { code: 'ERR_IPV6_TRUNCATED' });
  t.throws(() => ipv6.parse(good.subarray(0, 55)), { code: 'ERR_IPV6_TRUNCATED' });
  t.throws(() => ipv6.parse(mutate((b) => (b[0] = 0x45))), { code: 'ERR_IPV6_BAD_VERSION' });
  const ext = (next: number, body: Buffer) => ipv6.emit({ src: '::1', dst: '::2', nextHeader: next }, body);
  const bad = t.throws(() => ipv6.parse(ext(43, optionsHeader(17, 3).subarray(0, 16))), { instanceOf: Ipv6ParseError });
  t.is(bad?.code, 'ERR_IPV6_BAD_EXTENSION');
  t.is(bad?.pointer, 41, 'points at the length field');
  const misplaced = t.throws(() => ipv6.parse(ext(60, Buffer.concat([optionsHeader(0, 1), optionsHeader(17, 1)]))), {
    code: 'ERR_IPV6_MISPLACED_HOP_BY_HOP',
  });
  t.is((misplaced as Ipv6ParseError).pointer, 40);
  const long = Buffer.concat([...Array.from({ length: 9 }, () => optionsHeader(60, 1)), payload(8)]);
  t.throws(() => ipv6.parse(ext(60, long)), { code: 'ERR_IPV6_TOO_MANY_EXTENSIONS' });
  t.throws(() => ipv6.parse(mutate(() => {}).subarray(0, 10)), { instanceOf: Ipv6ParseError });
  t.is((t.throws(() => ipv6.parse(good.subarray(0, 10))) as Ipv6ParseError).pointer, undefined);
});

test('emit rejects bad fields', (t) => {
  const base = { src: '::1', dst: '::2', nextHeader: 59 };
  t.throws(() => ipv6.emit({ ...base, flowLabel: 0x100000 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => ipv6.emit({ ...base, src: '1.2.3.4' }), { code: 'ERR_INVALID_IP_ADDRESS' });
  t.throws(() => ipv6.emit({ ...base, dst: new Uint8Array(4) }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => ipv6.emitHeader(Buffer.alloc(39), 0, base, 0), { code: 'ERR_BUFFER_TOO_SMALL' });
  t.throws(() => ipv6.emit(base, Buffer.alloc(65_536)), { code: 'ERR_IPV6_PAYLOAD_TOO_LONG' });
});

test('IPv6 text: strict parsing, RFC 5952 canonical formatting', (t) => {
  const canonical: Array<[string, string]> = [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of equal runs
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'], // longest run
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not shortened
    ['2001:DB8::ABCD', '2001:db8::abcd'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['fe80::', 'fe80::'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
    ['::ffff:c000:0201', '::ffff:192.0.2.1'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['ff02::1:ff00:1', 'ff02::1:ff00:1'],
  ];
  for (const [input, output] of canonical) {
    const bytes = parseIpv6Address(input);
    t.is(bytes.length, 16);
    t.is(formatIpv6Address(bytes), output, input);
    t.deepEqual(parseIpv6Address(output), bytes, `${output} parses back`);
  }
  for (const bad of [
    '',
    ':',
    ':::',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1::2::3',
    ':1::2',
    '1::2:',
    '12345::',
    'g::1',
    'fe80::1%eth0',
    '[::1]',
    '::1/128',
    '::1.2.3',
    '::01.2.3.4',
    '::1.2.3.4:5',
    '1:2:3:4:5:6:7:1.2.3.4',
    ' ::1',
  ]) {
    t.throws(() => parseIpv6Address(bad), { code: 'ERR_INVALID_IP_ADDRESS' }, JSON.stringify(bad));
  }
  t.throws(() => formatIpv6Address(new Uint8Array(15)), { code: 'ERR_INVALID_ARG_TYPE' });
});

/** An independent pseudo-header sum: the 40 bytes of RFC 8200 §8.1 summed word by word. */
function referenceSum(src: Buffer, dst: Buffer, next: number, length: number): number {
  const bytes = Buffer.alloc(40);
  src.copy(bytes, 0);
  dst.copy(bytes, 16);
  bytes.writeUInt32BE(length, 32);
  bytes[39] = next;
  let sum = 0;
  for (let i = 0; i < 40; i += 2) sum += bytes.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

test('pseudoHeaderSum6 matches an independent implementation and a hand-computed value', (t) => {
  // fe80::1 -> fe80::2, echo request id 0x1234 seq 1: checksum 0x7083 worked out by hand.
  const echo = Buffer.from([0x80, 0, 0, 0, 0x12, 0x34, 0, 1]);
  const sum = pseudoHeaderSum6('fe80::1', 'fe80::2', 58, 8);
  t.is(checksum(echo, sum), 0x7083);
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 8;
  for (let i = 0; i < 200; i++) {
    const src = Buffer.from(Array.from({ length: 16 }, () => rand() & 0xff));
    const dst = Buffer.from(Array.from({ length: 16 }, () => (i % 7 === 0 ? 0xff : rand() & 0xff)));
    const next = rand() & 0xff;
    const length = i % 5 === 0 ? 0xffffffff : rand() % 70_000;
    const ours = pseudoHeaderSum6(src, dst, next, length);
    const theirs = referenceSum(src, dst, next, length);
    // 0x0000 and 0xffff are the same one's-complement number.
    t.true(ours === theirs || (ours | theirs) === 0xffff && (ours & theirs) === 0, `${ours} vs ${theirs}`);
  }
  t.throws(() => pseudoHeaderSum6('::1', new Uint8Array(4), 58, 8), { code: 'ERR_INVALID_ARG_TYPE' });
});

let tshark = true;
try {
  execFileSync('tshark', ['--version'], { stdio: 'ignore' });
} catch {
  tshark = false;
}

(tshark ? test : test.skip)(`tshark accepts the ICMPv6 checksum of an echo request${tshark ? '' : ' (skipped: no tshark)'}`, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-ipv6-'));
  const file = path.join(dir, 'echo6.pcap');
  try {
    const sw = new VirtualSwitch();
    const a = pcapRecorder(sw.connect(), file);
    const b = sw.connect();
    const src = 'fe80::200:5eff:fe00:5301';
    const dst = '2001:db8::2';
    const echo = Buffer.concat([Buffer.from([128, 0, 0, 0, 0xbe, 0xef, 0, 7]), Buffer.from('morgana ping6 payload')]);
    echo.writeUInt16BE(checksum(echo, pseudoHeaderSum6(src, dst, ipv6.NEXT_HEADER.ICMPV6, echo.length)), 2);
    const packet = ipv6.emit({ src, dst, nextHeader: ipv6.NEXT_HEADER.ICMPV6 }, echo);
    a.write(14 + packet.length, (buffer) => {
      buffer.fill(0xff, 0, 6); // broadcast is fine for a capture
      buffer.set(Buffer.from([0x02, 0, 0x5e, 0, 0x53, 0x01]), 6);
      buffer.writeUInt16BE(0x86dd, 12);
      packet.copy(buffer, 14);
      return 14 + packet.length;
    });
    await a.close();
    await b.close();
    const out = execFileSync(
      'tshark',
      ['-r', file, '-T', 'fields', '-e', 'ipv6.src', '-e', 'ipv6.dst', '-e', 'icmpv6.type', '-e', 'icmpv6.checksum.status', '-e', '_ws.expert.message'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const rows = out.split('\n').filter(Boolean).map((line) => line.split('\t'));
    t.is(rows.length, 1);
    const [s, d, type, status, expert] = rows[0]!;
    t.is(s, src);
    t.is(d, dst);
    t.is(type, '128');
    t.is(status, '1', 'checksum status Good (Wireshark PROTO_CHECKSUM_E_GOOD)');
    t.falsy(expert, 'no expert info');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
