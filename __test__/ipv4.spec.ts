import test from 'ava';
import { FragmentationNeededError, checksum, ipv4 } from 'morgana';

const payload = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff));

test('emit then parse round-trips every field', (t) => {
  const packet = ipv4.emit(
    {
      src: '192.168.1.10',
      dst: '192.168.1.20',
      protocol: ipv4.PROTOCOL.UDP,
      ttl: 17,
      tos: 0x10,
      identification: 0xbeef,
      dontFragment: true,
      options: Buffer.from([0x94, 4, 0, 0]),
    },
    payload(100),
  );
  t.is(packet.length, 124);
  t.is(checksum(packet.subarray(0, 24)), 0);
  const parsed = ipv4.parse(packet);
  t.like(parsed, {
    headerLength: 24,
    tos: 0x10,
    totalLength: 124,
    identification: 0xbeef,
    dontFragment: true,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: 17,
    protocol: 17,
    src: '192.168.1.10',
    dst: '192.168.1.20',
  });
  t.deepEqual(parsed.options, Buffer.from([0x94, 4, 0, 0]));
  t.deepEqual(parsed.payload, payload(100));
  t.is(parsed.payload.buffer, packet.buffer, 'payload is a view, not a copy');
});

test('parse ignores trailing Ethernet padding', (t) => {
  const packet = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 1 }, payload(6));
  const padded = Buffer.concat([packet, Buffer.alloc(20)]);
  const parsed = ipv4.parse(padded);
  t.is(parsed.totalLength, 26);
  t.is(parsed.payload.length, 6);
});

test('malformed packets get stable error codes', (t) => {
  const good = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 6 }, payload(40));
  const mutate = (f: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  t.throws(() => ipv4.parse(good.subarray(0, 19)), { code: 'ERR_IPV4_TRUNCATED' });
  t.throws(() => ipv4.parse(good.subarray(0, 50)), { code: 'ERR_IPV4_TRUNCATED' });
  t.throws(() => ipv4.parse(mutate((b) => (b[0] = 0x65))), { code: 'ERR_IPV4_BAD_VERSION' });
  t.throws(() => ipv4.parse(mutate((b) => (b[0] = 0x44))), { code: 'ERR_IPV4_BAD_IHL' });
  t.throws(() => ipv4.parse(mutate((b) => (b[0] = 0x4f)).subarray(0, 40)), { code: 'ERR_IPV4_TRUNCATED' });
  t.throws(() => ipv4.parse(mutate((b) => b.writeUInt16BE(12, 2))), { code: 'ERR_IPV4_BAD_TOTAL_LENGTH' });
  t.throws(() => ipv4.parse(mutate((b) => (b[8] = 1))), { code: 'ERR_IPV4_BAD_CHECKSUM' });
  t.notThrows(() => ipv4.parse(mutate((b) => (b[8] = 1)), { verifyChecksum: false }));
  t.throws(() => ipv4.parse(new Uint8Array(0)), { code: 'ERR_IPV4_TRUNCATED' });
});

test('random bytes never crash the parser', (t) => {
  let rejected = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.alloc(i % 80);
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(Math.random() * 256);
    if (i % 2 === 0 && bytes.length > 0) bytes[0] = 0x45;
    try {
      ipv4.parse(bytes);
    } catch (e) {
      t.regex((e as { code: string }).code, /^ERR_IPV4_/);
      rejected++;
    }
  }
  t.true(rejected > 19_000);
});

test('emit rejects bad fields', (t) => {
  const base = { src: '10.0.0.1', dst: '10.0.0.2', protocol: 17 };
  t.throws(() => ipv4.emit({ ...base, fragmentOffset: 3 }), { code: 'ERR_IPV4_BAD_FRAGMENT_OFFSET' });
  t.throws(() => ipv4.emit({ ...base, options: Buffer.alloc(41, 1) }), { code: 'ERR_IPV4_OPTIONS_TOO_LONG' });
  t.throws(() => ipv4.emit(base, Buffer.alloc(65_536)), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => ipv4.emit(base, Buffer.alloc(65_520)), { code: 'ERR_IPV4_PACKET_TOO_LONG' });
  t.throws(() => ipv4.emit({ ...base, ttl: 256 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => ipv4.emit({ ...base, src: 'nope' }), { code: 'ERR_INVALID_IP_ADDRESS' });
  t.throws(() => ipv4.emitHeader(Buffer.alloc(10), 0, base, 0), { code: 'ERR_BUFFER_TOO_SMALL' });
});

test('fragment splits on 8-byte boundaries with MF, offsets and checksums right', (t) => {
  const original = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, identification: 4242 }, payload(8000));
  const pieces = ipv4.fragment(original, 1500);
  t.is(pieces.length, 6);
  let offset = 0;
  const rebuilt: Buffer[] = [];
  pieces.forEach((piece, i) => {
    t.true(piece.length <= 1500);
    const p = ipv4.parse(piece);
    t.is(checksum(piece.subarray(0, p.headerLength)), 0);
    t.is(p.identification, 4242);
    t.is(p.fragmentOffset, offset);
    t.is(p.moreFragments, i < pieces.length - 1);
    if (i < pieces.length - 1) t.is(p.payload.length % 8, 0);
    offset += p.payload.length;
    rebuilt.push(p.payload);
  });
  t.deepEqual(Buffer.concat(rebuilt), payload(8000));
});

test('fragment keeps only copied options after the first fragment', (t) => {
  // Router Alert has the copy bit; Record Route (type 7) does not.
  const options = Buffer.from([0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0]);
  const original = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, options }, payload(3000));
  const pieces = ipv4.fragment(original, 576).map((p) => ipv4.parse(p));
  t.deepEqual(pieces[0]!.options.subarray(0, 11), options);
  for (const p of pieces.slice(1)) t.deepEqual(p.options, Buffer.from([0x94, 4, 0, 0]));
});

test('fragment: small packets pass, DF reports the MTU, tiny MTUs are refused', (t) => {
  const small = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17 }, payload(100));
  t.deepEqual(ipv4.fragment(small, 1500), [small]);
  const df = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, dontFragment: true }, payload(2000));
  const error = t.throws(() => ipv4.fragment(df, 1400), { instanceOf: FragmentationNeededError });
  t.is(error?.code, 'ERR_FRAGMENTATION_NEEDED');
  t.is((error as FragmentationNeededError).mtu, 1400);
  const big = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17 }, payload(2000));
  t.throws(() => ipv4.fragment(big, 27), { code: 'ERR_MTU_TOO_SMALL' });
  t.is(ipv4.fragment(big, 28).length, 250);
  t.throws(() => ipv4.fragment(big.subarray(0, 30), 1500), { code: 'ERR_IPV4_TRUNCATED' });
});
