import test from 'ava';
import { VirtualSwitch } from 'morgana';
import { frame, netConformance } from './helpers/net-conformance.js';

netConformance(test, 'VirtualSwitch', async () => {
  const sw = new VirtualSwitch();
  return { a: sw.connect(), b: sw.connect() };
});

function collect(device: ReturnType<VirtualSwitch['connect']>) {
  const got: Buffer[] = [];
  device.listen((f) => got.push(f));
  return got;
}

const tick = () => new Promise((r) => setImmediate(r));

test('learns MACs: unicast goes only to the learned port, unknown is flooded', async (t) => {
  const sw = new VirtualSwitch();
  const [a, b, c] = [sw.connect(), sw.connect(), sw.connect()];
  const [ga, gb, gc] = [collect(a), collect(b), collect(c)];
  // b is unknown yet: flooded to b and c.
  a.write(60, (buf) => frame(b.mac, a.mac, Buffer.alloc(46)).copy(buf));
  await tick();
  t.is(gb.length, 1);
  t.is(gc.length, 1);
  // b answers; the switch learns b and a, so the next frame to b reaches b only.
  b.write(60, (buf) => frame(a.mac, b.mac, Buffer.alloc(46)).copy(buf));
  await tick();
  t.is(ga.length, 1);
  t.is(gc.length, 1, 'a was learned: the reply is not flooded');
  a.write(60, (buf) => frame(b.mac, a.mac, Buffer.alloc(46)).copy(buf));
  await tick();
  t.is(gb.length, 2);
  t.is(gc.length, 1);
  t.like(sw.stats(), { flooded: 1, forwarded: 2 });
});

test('a reply written inside a listener is delivered on a later turn, not recursively', async (t) => {
  const sw = new VirtualSwitch();
  const [a, b] = [sw.connect(), sw.connect()];
  let depth = 0;
  let maxDepth = 0;
  let count = 0;
  const bounce = (self: typeof a, other: typeof a) => (f: Buffer) => {
    depth++;
    maxDepth = Math.max(maxDepth, depth);
    if (++count < 1000) self.write(f.length, (buf) => frame(other.mac, self.mac, f.subarray(14)).copy(buf));
    depth--;
  };
  a.listen(bounce(a, b));
  b.listen(bounce(b, a));
  a.write(60, (buf) => frame(b.mac, a.mac, Buffer.alloc(46)).copy(buf));
  while (count < 1000) await tick();
  t.is(maxDepth, 1);
});

test('faults are injected reproducibly from the seed', async (t) => {
  const run = async () => {
    let state = 42;
    const random = { uint32: () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) };
    const sw = new VirtualSwitch({ random, faults: { loss: 0.1, duplicate: 0.1, reorder: 0.1 } });
    const [a, b] = [sw.connect({ mac: '02:00:00:00:00:0a' }), sw.connect({ mac: '02:00:00:00:00:0b' })];
    const got: number[] = [];
    b.listen((f) => got.push(f.readUInt32BE(14)));
    for (let i = 0; i < 2000; i++) {
      const payload = Buffer.alloc(46);
      payload.writeUInt32BE(i);
      a.write(60, (buf) => frame(b.mac, a.mac, payload).copy(buf));
      if (i % 50 === 0) await tick();
    }
    for (let i = 0; i < 5; i++) await tick();
    return { got, stats: sw.stats() };
  };
  const first = await run();
  const second = await run();
  t.deepEqual(first.got, second.got);
  t.true(first.stats.lost > 100 && first.stats.lost < 320, `lost ${first.stats.lost}`);
  t.true(first.stats.duplicated > 100, `duplicated ${first.stats.duplicated}`);
  t.true(first.stats.reordered > 100, `reordered ${first.stats.reordered}`);
  const sorted = [...first.got].sort((x, y) => x - y);
  t.notDeepEqual(first.got, sorted, 'some frames arrive out of order');
  t.true(new Set(first.got).size < first.got.length, 'some frames arrive twice');
});

test('delay uses the injected clock', async (t) => {
  const { VirtualClock } = await import('morgana');
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock, faults: { delayMs: 50 } });
  const [a, b] = [sw.connect(), sw.connect()];
  const got = collect(b);
  a.write(60, (buf) => frame(b.mac, a.mac, Buffer.alloc(46)).copy(buf));
  await tick();
  t.is(got.length, 0);
  clock.advance(49);
  await tick();
  t.is(got.length, 0);
  clock.advance(1);
  await tick();
  t.is(got.length, 1);
});

test('bad options are refused', (t) => {
  t.throws(() => new VirtualSwitch({ mtu: 10 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new VirtualSwitch({ faults: { loss: 2 } }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new VirtualSwitch().connect({ mac: 'zz' }), { code: 'ERR_INVALID_MAC' });
});

test('writeOwned hands the very bytes given to the receiver (no copy), and drops frames over the MTU', async (t) => {
  const sw = new VirtualSwitch();
  const [a, b] = [sw.connect(), sw.connect()];
  const got = collect(b);
  const given = frame(b.mac, a.mac, Buffer.from('given away, not copied'.padEnd(46, '.')));
  a.writeOwned!(given);
  a.writeOwned!(frame(b.mac, a.mac, Buffer.alloc(1501)));
  await tick();
  t.is(got.length, 1);
  t.deepEqual(got[0], given);
  // The receiver's frame is the sender's memory: a write to one shows in the other.
  given[20] = 0x21;
  t.is(got[0]![20], 0x21);
  t.like(a.stats(), { txFrames: 1, txBytes: given.length, txDropped: 1 });
  await a.close();
  t.throws(() => a.writeOwned!(given), { code: 'ERR_NET_CLOSED' });
});

test("a frame given away comes back (done) once a reusing listener says it kept nothing, or it was dropped; never from a plain listener", async (t) => {
  const sw = new VirtualSwitch();
  const [a, b, c] = [sw.connect(), sw.connect(), sw.connect()];
  // Learn every port so frames are forwarded, not flooded.
  for (const p of [a, b, c]) p.write(60, (buf) => frame('ff:ff:ff:ff:ff:ff', p.mac, Buffer.alloc(46)).copy(buf));
  let answer = true;
  const seenByB: Buffer[] = [];
  b.listenReusing!((f) => {
    seenByB.push(f);
    return answer;
  });
  c.listen(() => true as unknown as void); // a plain listener's result means nothing
  await tick();
  seenByB.length = 0;
  let backs = 0;
  const done = () => void backs++;
  a.writeOwned!(frame(b.mac, a.mac, Buffer.alloc(46)), undefined, done);
  t.is(backs, 0, 'not before the receiver had it');
  await tick();
  t.is(seenByB.length, 1);
  t.is(backs, 1);
  answer = false;
  a.writeOwned!(frame(b.mac, a.mac, Buffer.alloc(46)), undefined, done);
  await tick();
  t.is(backs, 1, 'the reusing listener kept it');
  a.writeOwned!(frame(c.mac, a.mac, Buffer.alloc(46)), undefined, done);
  await tick();
  t.is(backs, 1, 'a plain listener owns what it gets');
  a.writeOwned!(frame(b.mac, a.mac, Buffer.alloc(1501)), undefined, done);
  t.is(backs, 2, 'dropped as too long');
  sw.setFaults({ loss: 1 });
  a.writeOwned!(frame(b.mac, a.mac, Buffer.alloc(46)), undefined, done);
  t.is(backs, 3, 'lost');
});
