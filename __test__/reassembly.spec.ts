import test from 'ava';
import { Reassembler, checksum, fragmentIpv6, ipv4, ipv6 } from 'morgana';
import { native } from '../ts/native.js';

const datagram = (id: number, size: number, src = '10.0.0.1') =>
  ipv4.emit(
    { src, dst: '10.0.0.2', protocol: 17, identification: id },
    Buffer.from(Array.from({ length: size }, (_, i) => (i * 13 + id) & 0xff)),
  );

/** An IPv6 packet of `size` bytes of payload (UDP's next header; the cache reads only the IPv6 headers). */
const ipv6Datagram = (size: number) =>
  ipv6.emit({ src: '2001:db8::1', dst: '2001:db8::2', nextHeader: 17 }, Buffer.from(Array.from({ length: size }, (_, i) => (i * 7) & 0xff)));

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('reassembles fragments in any order into the original packet', (t) => {
  const original = datagram(1, 60_000);
  const pieces = ipv4.fragment(original, 1500);
  for (let seed = 1; seed <= 20; seed++) {
    const r = new Reassembler({ maxFragments: 64 });
    const results = shuffle(pieces, seed).map((p) => r.push(p, 0));
    const done = results.filter((x) => x !== undefined);
    t.is(done.length, 1);
    t.deepEqual(Buffer.from(done[0]!), original);
    t.is(checksum(done[0]!.subarray(0, 20)), 0);
    t.like(r.stats(), { reassembled: 1, bufferedBytes: 0, pendingDatagrams: 0 });
  }
});

test('a packet that is not a fragment comes back as it is', (t) => {
  const r = new Reassembler();
  const packet = datagram(2, 100);
  t.is(r.push(packet, 0), packet);
});

test('malformed packets are counted and dropped, not thrown', (t) => {
  const r = new Reassembler();
  t.is(r.push(Buffer.from([0x45, 0, 0]), 0), undefined);
  t.is(r.push(Buffer.alloc(0), 0), undefined);
  t.is(r.stats().droppedMalformed, 2);
});

test('duplicates are ignored, overlaps drop the datagram', (t) => {
  const r = new Reassembler();
  const [a, b, c] = ipv4.fragment(datagram(3, 2000), 800);
  t.is(r.push(a!, 0), undefined);
  t.is(r.push(a!, 0), undefined);
  t.is(r.stats().duplicates, 1);
  // A forged fragment overlapping `a` with different bytes.
  const forged = Buffer.from(b!);
  const header = ipv4.parse(forged);
  forged.writeUInt16BE((header.fragmentOffset - 8) / 8 | 0x2000, 6);
  forged.writeUInt16BE(0, 10);
  forged.writeUInt16BE(checksum(forged.subarray(0, 20)), 10);
  t.is(r.push(forged, 0), undefined);
  t.is(r.stats().droppedOverlap, 1);
  t.is(r.stats().pendingDatagrams, 0);
  t.is(r.push(b!, 0), undefined);
  t.is(r.push(c!, 0), undefined, 'the dropped datagram does not complete later');
});

test('timeout counts from the first fragment, with a virtual clock', (t) => {
  const r = new Reassembler({ timeoutMs: 10_000 });
  const [a, b, c] = ipv4.fragment(datagram(4, 2000), 800);
  r.push(a!, 1_000);
  r.push(b!, 10_500);
  t.is(r.expire(10_999), 0);
  t.is(r.expire(11_000), 1);
  t.is(r.stats().droppedTimeout, 1);
  t.is(r.push(c!, 11_001), undefined);
});

test('memory cap evicts the least recently used datagram', (t) => {
  const r = new Reassembler({ maxBytes: 4000 });
  const first = ipv4.fragment(datagram(5, 3000), 1500);
  const second = ipv4.fragment(datagram(6, 3000), 1500);
  r.push(first[0]!, 0);
  r.push(second[0]!, 1);
  r.push(first[1]!, 2); // `first` is now the most recent; `second` must go
  t.is(r.stats().droppedMemory, 1);
  t.true(r.stats().bufferedBytes <= 4000);
  const done = r.push(first[2]!, 3);
  t.deepEqual(Buffer.from(done!), datagram(5, 3000));
});

test('more than maxFragments drops the datagram', (t) => {
  const r = new Reassembler({ maxFragments: 16 });
  const pieces = ipv4.fragment(datagram(7, 20_000), 1000);
  t.true(pieces.length > 16);
  for (const p of pieces) t.is(r.push(p, 0), undefined);
  t.true(r.stats().droppedTooManyFragments >= 1);
});

test('bounded under a flood of random fragments', (t) => {
  const r = new Reassembler({ maxBytes: 64 * 1024 });
  for (let i = 0; i < 20_000; i++) {
    const more = Math.random() < 0.8;
    const len = more ? 8 * (1 + Math.floor(Math.random() * 100)) : 1 + Math.floor(Math.random() * 800);
    const packet = ipv4.emit(
      {
        src: `10.0.${i % 7}.1`,
        dst: '10.0.0.2',
        protocol: 17,
        identification: Math.floor(Math.random() * 65536),
        moreFragments: more,
        fragmentOffset: 8 * Math.floor(Math.random() * 2000),
      },
      Buffer.alloc(len, i & 0xff),
    );
    r.push(packet, i);
    t.true(r.stats().bufferedBytes <= 64 * 1024);
  }
});

test('bad options get typed errors', (t) => {
  t.throws(() => new Reassembler({ maxFragments: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new Reassembler({ maxBytes: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new Reassembler().push('x' as unknown as Uint8Array, 0), { code: 'ERR_INVALID_ARG_TYPE' });
});

/** Packets back to back in one buffer (each after `gap` bytes, like Ethernet headers) with their spans. */
function contiguous(packets: Uint8Array[], gap = 0): { data: Buffer; spans: Uint32Array } {
  const parts: Uint8Array[] = [];
  const spans = new Uint32Array(2 * packets.length);
  let at = 0;
  packets.forEach((p, i) => {
    parts.push(Buffer.alloc(gap, 0xee), p);
    spans[2 * i] = at + gap;
    spans[2 * i + 1] = p.length;
    at += gap + p.length;
  });
  return { data: Buffer.concat(parts), spans };
}

test('pushBatch: the same results as push, packet by packet, across many datagrams in one call', (t) => {
  // Interleaved datagrams of several sizes, a packet that is no fragment, a duplicate and a
  // malformed packet in the middle.
  const originals = [datagram(10, 60_000), datagram(11, 3000), datagram(12, 65_515), datagram(13, 200)];
  const pieces = shuffle(
    originals.slice(0, 3).flatMap((d) => ipv4.fragment(d, 1500)),
    7,
  );
  const packets: Uint8Array[] = [...pieces.slice(0, 30), originals[3]!, pieces[3]!, Buffer.from([0x45, 0, 0]), ...pieces.slice(30)];
  const one = new Reassembler({ maxFragments: 64 });
  const expected = packets.map((p) => one.push(p, 0));
  const batched = new Reassembler({ maxFragments: 64 });
  const { data, spans } = contiguous(packets, 14);
  const malformed: Array<[number, string]> = [];
  const got = batched.pushBatch(data, spans, 0, { onMalformed: (i, error) => malformed.push([i, error.code]) });
  t.deepEqual(malformed, [[32, 'ERR_IPV4_TRUNCATED']], 'the malformed packet is reported with its error');
  t.is(got.length, packets.length);
  got.forEach((g, i) => t.deepEqual(g === undefined ? undefined : Buffer.from(g), expected[i] === undefined ? undefined : Buffer.from(expected[i]!), `packet ${i}`));
  t.is(got.filter((g) => g !== undefined).length, 4, 'three datagrams completed, one packet passed through');
  t.is(got[30]!.buffer, data.buffer, 'a packet that is not a fragment is a view of the input');
  t.deepEqual(batched.stats(), one.stats());
});

test('pushBatch without output: each completed datagram is a Buffer of its own, of its exact length', (t) => {
  const originals = Array.from({ length: 10 }, (_, id) => datagram(100 + id, id % 2 === 0 ? 65_515 : 3000 + id));
  const packets = originals.flatMap((d) => ipv4.fragment(d, 1500));
  const r = new Reassembler({ maxBytes: 1 << 20 });
  const got = r.pushBatch(contiguous(packets).data, contiguous(packets).spans, 0).filter((g) => g !== undefined);
  t.is(got.length, 10);
  got.forEach((g, i) => t.deepEqual(Buffer.from(g!), originals[i]));
  // Nothing shares memory: overwriting one leaves the others intact.
  got[0]!.fill(0);
  t.true(got.slice(1).every((g, i) => Buffer.from(g!).equals(originals[i + 1]!)));
  t.true(got.every((g) => g!.byteLength === g!.buffer.byteLength || g!.byteLength < 4096), 'not a view of a shared slab');
  t.is(r.stats().reassembled, 10);
});

test('pushBatch with output: datagrams are views of it, in order and apart; those that do not fit get their own Buffer', (t) => {
  const originals = Array.from({ length: 10 }, (_, id) => datagram(200 + id, id === 3 ? 500 : 65_515));
  const packets = originals.flatMap((d) => ipv4.fragment(d, 1500));
  const { data, spans } = contiguous(packets);
  const output = Buffer.alloc(128 * 1024);
  const r = new Reassembler({ maxBytes: 1 << 20 });
  const got = r.pushBatch(data, spans, 0, { output }).filter((g) => g !== undefined);
  t.is(got.length, 10);
  got.forEach((g, i) => t.deepEqual(Buffer.from(g!), originals[i], `datagram ${i}`));
  const inOutput = got.filter((g) => g!.buffer === output.buffer);
  // The first fills 65,535 of the 131,072 bytes; the 520-byte one fits behind it (at 65,536), the rest do not.
  t.is(inOutput.length, 2);
  t.is(inOutput[1]!.byteOffset, 65_536, 'placed at the next multiple of 8');
  // The same output again: the earlier views are overwritten, the new datagrams are intact.
  const again = originals.map((_, id) => datagram(300 + id, 20_000));
  const more = again.flatMap((d) => ipv4.fragment(d, 1500));
  const next = r.pushBatch(contiguous(more).data, contiguous(more).spans, 0, { output }).filter((g) => g !== undefined);
  next.forEach((g, i) => t.deepEqual(Buffer.from(g!), again[i]));
  t.is(next.filter((g) => g!.buffer === output.buffer).length, 6, 'six 20,020-byte datagrams fit in 128 KiB');
  t.throws(() => r.pushBatch(data, spans, 0, { output: 'x' as unknown as Uint8Array }), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('pushBatch: spans outside the data and bad arguments throw before anything is taken', (t) => {
  const r = new Reassembler();
  const [a, b] = ipv4.fragment(datagram(20, 2000), 1500);
  const { data, spans } = contiguous([a!, b!]);
  spans[3] = spans[3]! + 1; // the second packet runs one byte past the data
  t.throws(() => r.pushBatch(data, spans, 0), { code: 'ERR_OUT_OF_RANGE' });
  t.is(r.stats().fragments, 0, 'not even the first packet was taken');
  t.throws(() => r.pushBatch(data, spans, 0, { count: 3 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => r.pushBatch(data, spans, 0, { count: 1e12 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => r.pushBatch(data, spans, 0, { count: 'x' as unknown as number }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => r.pushBatch(data, [0, 1] as unknown as Uint32Array, 0), { code: 'ERR_INVALID_ARG_TYPE' });
  spans[3] = spans[3]! - 1;
  const done = r.pushBatch(data, spans, 0, { count: 2 });
  t.deepEqual(Buffer.from(done[1]!), datagram(20, 2000));
  t.deepEqual(r.pushBatch(data, spans, 0, { count: 0 }), []);
});

test('pushBatch: an output sharing memory with data or spans is a typed error, nothing taken', (t) => {
  const r = new Reassembler();
  const { data, spans } = contiguous(ipv4.fragment(datagram(21, 2000), 1500));
  t.throws(() => r.pushBatch(data, spans, 0, { output: data.subarray(100) }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => r.pushBatch(data, spans, 0, { output: new Uint8Array(spans.buffer) }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.is(r.stats().fragments, 0);
  // Apart (another part of the same memory): fine.
  const shared = Buffer.alloc(data.length + 4096);
  data.copy(shared);
  const done = r.pushBatch(shared.subarray(0, data.length), spans, 0, { output: shared.subarray(data.length + 8) });
  t.deepEqual(Buffer.from(done[1]!), datagram(21, 2000));
});

test('the fast native reassembly calls: the results of the methods, typed errors for bad arguments', (t) => {
  for (const family of [4, 6] as const) {
    const cache = family === 4 ? new native.NativeReassembler(1 << 18, 64, 10_000) : new native.NativeIpv6Reassembler(1 << 18, 64, 10_000, 16);
    const fast = family === 4 ? native.reassemblyFastCalls(cache as InstanceType<typeof native.NativeReassembler>) : native.ipv6ReassemblyFastCalls(cache as InstanceType<typeof native.NativeIpv6Reassembler>);
    const packet = family === 4 ? datagram(22, 2000) : ipv6Datagram(2000);
    const [a, b] = family === 4 ? ipv4.fragment(packet, 1500) : fragmentIpv6(packet, 1500, 7);
    t.is(fast.push(a!, 0), 1, 'held');
    const length = fast.push(b!, 0);
    t.is(length, packet.length);
    const whole = Buffer.alloc(length);
    t.is(fast.take(whole), length);
    t.deepEqual(whole, packet);
    t.is(fast.take(whole), 0, 'nothing held any more');
    t.throws(() => fast.push('x' as unknown as Uint8Array, 0), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    t.throws(() => fast.push(a!, 'x' as unknown as number), { name: 'TypeError' });
    t.throws(() => (fast.push as unknown as () => number)(), { name: 'TypeError' });
    t.throws(() => fast.take(new Uint32Array(4) as unknown as Uint8Array), { name: 'TypeError' });
    // pushBatch: the written arrays (out, results) may not overlap anything; data and spans may.
    const { data, spans } = contiguous([a!, b!]);
    const out = Buffer.alloc(4096);
    const results = new Uint32Array(4);
    t.throws(() => fast.pushBatch(data, spans, 0, 2, 0, data, 0, results), { name: 'TypeError' });
    t.throws(() => fast.pushBatch(data, spans, 0, 2, 0, out, 0, new Uint32Array(out.buffer, out.byteOffset, 4)), { name: 'TypeError' });
    t.throws(() => fast.pushBatch(data, spans, 0, 2, 0, new Uint8Array(results.buffer), 0, results), { name: 'TypeError' });
    t.throws(() => fast.pushBatch(data, new Uint8Array(8) as unknown as Uint32Array, 0, 2, 0, out, 0, results), { name: 'TypeError' });
    t.throws(() => fast.pushBatch(data, spans, 0, 3, 0, out, 0, results), { code: 'ERR_OUT_OF_RANGE' });
    spans[3] = spans[3]! + 1;
    t.throws(() => fast.pushBatch(data, spans, 0, 2, 0, out, 0, results), { code: 'ERR_OUT_OF_RANGE' });
    spans[3] = spans[3]! - 1;
    t.is(cache.stats().pendingDatagrams, 0, 'nothing taken by the failed calls');
    t.is(fast.pushBatch(data, spans, 0, 2, 0, out, 0, results), 2);
    t.deepEqual([...results], [1, 0, packet.length, 0]);
    t.deepEqual(out.subarray(0, packet.length), packet);
  }
});
