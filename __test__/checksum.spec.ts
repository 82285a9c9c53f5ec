import test from 'ava';
import { randomBytes } from 'node:crypto';
import { checksum, checksumUpdate, onesComplementSum, pseudoHeaderSum, pseudoHeaderSum6 } from 'morgana';
import { JS_MAX_LENGTH } from '../ts/checksum.js';
import { native } from '../ts/native.js';

/** RFC 1071 word by word, independent of the Rust implementation. */
function referenceSum(data: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < data.length; i += 2) {
    sum += (data[i]! << 8) | (data[i + 1] ?? 0);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return sum;
}

test('RFC 1071 worked example', (t) => {
  const data = Buffer.from('0001f203f4f5f6f7', 'hex');
  t.is(onesComplementSum(data), 0xddf2);
  t.is(checksum(data), 0xddf2 ^ 0xffff);
});

test('a header with a correct checksum field sums to zero', (t) => {
  const header = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  const value = checksum(header);
  t.is(value, 0xb861);
  header.writeUInt16BE(value, 10);
  t.is(checksum(header), 0);
});

test('matches the reference on random lengths, offsets and initial values', (t) => {
  const backing = randomBytes(70_000);
  for (let i = 0; i < 400; i++) {
    const start = i % 7;
    const length = i < 200 ? i : Math.floor(Math.random() * 65_536);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + start, length);
    const initial = (i * 7919) & 0xffff;
    t.is(onesComplementSum(view, initial), referenceSum(view, initial), `length ${length} at offset ${start}`);
  }
});

test('incremental update agrees with recomputing (TTL decrement)', (t) => {
  const header = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  header.writeUInt16BE(checksum(header), 10);
  const oldWord = header.readUInt16BE(8);
  header[8]! -= 1;
  const updated = checksumUpdate(header.readUInt16BE(10), oldWord, header.readUInt16BE(8));
  header.writeUInt16BE(updated, 10);
  t.is(checksum(header), 0);
});

test('pseudo-header sum chains into a UDP checksum', (t) => {
  // UDP 10.0.0.1:1234 -> 10.0.0.2:53, payload "hi"; checksum computed by hand below.
  const udp = Buffer.from([0x04, 0xd2, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 0x68, 0x69]);
  const pseudo = Buffer.from([10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 10]);
  const expected = referenceSum(udp, referenceSum(pseudo)) ^ 0xffff;
  const sum = pseudoHeaderSum('10.0.0.1', '10.0.0.2', 17, udp.length);
  t.is(sum, referenceSum(pseudo));
  t.is(checksum(udp, sum), expected);
  udp.writeUInt16BE(expected, 6);
  t.is(checksum(udp, pseudoHeaderSum(Uint8Array.of(10, 0, 0, 1), 0x0a000002, 17, 10)), 0);
});

test('does not copy or modify the input', (t) => {
  const data = randomBytes(1500);
  const copy = Buffer.from(data);
  checksum(data);
  t.deepEqual(data, copy);
});

test('bad arguments get typed errors', (t) => {
  t.throws(() => checksum('abc' as unknown as Uint8Array), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => checksum(Buffer.alloc(2), 0x10000), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => checksum(Buffer.alloc(2), -1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => checksumUpdate(0, 0, 1.5), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => pseudoHeaderSum('10.0.0.256', '10.0.0.1', 6, 20), { code: 'ERR_INVALID_IP_ADDRESS' });
  t.throws(() => pseudoHeaderSum('10.0.0.1', '010.0.0.1', 6, 20), { code: 'ERR_INVALID_IP_ADDRESS' });
});

test('short buffers (summed in JS) and longer ones (in Rust) agree at the boundary', (t) => {
  // checksum() sums up to JS_MAX_LENGTH bytes in JavaScript and hands longer buffers to Rust.
  const edge = JS_MAX_LENGTH;
  for (const fill of [0x00, 0xff, -1]) {
    for (const length of [0, 1, 2, 3, edge - 2, edge - 1, edge, edge + 1, edge + 2, edge + 3, 1500, 1501]) {
      const data = fill < 0 ? randomBytes(length) : Buffer.alloc(length, fill);
      for (const initial of [0, 1, 0xfffe, 0xffff]) {
        const sum = referenceSum(data, initial);
        t.is(onesComplementSum(data, initial), sum, `length ${length}, fill ${fill}, initial ${initial}`);
        t.is(checksum(data, initial), sum ^ 0xffff);
      }
    }
  }
});

test('the pseudo-header sums (in JS) agree with the Rust ones, including all-ones and all-zero words', (t) => {
  const rng = randomBytes(32 * 300);
  for (let i = 0; i < 300; i++) {
    const pick = i % 3;
    const src6 = pick === 0 ? rng.subarray(32 * i, 32 * i + 16) : Buffer.alloc(16, pick === 1 ? 0xff : 0);
    const dst6 = pick === 0 ? rng.subarray(32 * i + 16, 32 * i + 32) : Buffer.alloc(16, pick === 1 ? 0xff : 0);
    const src = src6.readUInt32BE(0);
    const dst = dst6.readUInt32BE(4);
    const protocol = pick === 1 ? 0xff : pick === 2 ? 0 : i & 0xff;
    const length = pick === 1 ? 0xffff : pick === 2 ? 0 : (i * 977) & 0xffff;
    const length6 = pick === 1 ? 0xffffffff : pick === 2 ? 0 : (i * 1_000_003) >>> 0;
    t.is(pseudoHeaderSum(src, dst, protocol, length), native.pseudoHeaderSum(src, dst, protocol, length), `IPv4 case ${i}`);
    t.is(pseudoHeaderSum6(src6, dst6, protocol, length6), native.pseudoHeaderSum6(src6, dst6, protocol, length6), `IPv6 case ${i}`);
  }
  t.throws(() => pseudoHeaderSum6(Buffer.alloc(15), Buffer.alloc(16), 17, 8), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('the bound native sums check their arguments: a typed error, never a crash', (t) => {
  const fast = native.checksumFastCalls();
  const data = randomBytes(301);
  t.is(fast.checksum(data, 5), native.checksum(data, 5));
  t.is(fast.onesComplementSum(data, 0xffff), native.onesComplementSum(data, 0xffff));
  t.is(fast.onesComplementSum(new Uint8Array(0), 7), 7);
  t.throws(() => fast.checksum('abc' as unknown as Uint8Array, 0), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => fast.checksum(new Uint16Array(4) as unknown as Uint8Array, 0), { name: 'TypeError' });
  t.throws(() => fast.onesComplementSum(data, 'x' as unknown as number), { name: 'TypeError' });
  t.throws(() => (fast.checksum as unknown as (d: Uint8Array) => number)(data), { name: 'TypeError' });
});
