/**
 * The slab allocator behind switch frames and TCP output (ts/net/slab.ts): views lent out are
 * never handed out again until every view lent from their slab came back.
 */
import test from 'ava';
import { Slab } from '../ts/net/slab.js';

test('a used-up slab is reused only once every view lent from it is released', (t) => {
  const slab = new Slab(1024, 2);
  const first = slab.take(600);
  const releaseA = slab.lend();
  slab.commit(300);
  const second = slab.take(200);
  const releaseB = slab.lend();
  slab.commit(200);
  t.is(second.buffer, first.buffer, 'carved from the same slab');
  // Too big for what is left: a new slab, while two views of the first are out.
  const third = slab.take(600);
  t.not(third.buffer, first.buffer);
  const releaseC = slab.lend();
  slab.commit(600);
  releaseA();
  const fourth = slab.take(600);
  t.not(fourth.buffer, first.buffer, 'one view of the first slab is still out');
  t.not(fourth.buffer, third.buffer, 'the second slab has a view out');
  slab.lend();
  slab.commit(600);
  releaseB();
  releaseB(); // a second release of the same view changes nothing
  releaseC();
  // Both earlier slabs came back whole: one of them is reused, from its start.
  const fifth = slab.take(600);
  t.true(fifth.buffer === first.buffer || fifth.buffer === third.buffer);
  t.is(fifth.byteOffset, 0);
});

test('without keep (the default) nothing is reused, lent or not', (t) => {
  const slab = new Slab(1024);
  const first = slab.take(600);
  slab.commit(600);
  const second = slab.take(600);
  slab.commit(600);
  const third = slab.take(600);
  t.not(second.buffer, first.buffer);
  t.not(third.buffer, first.buffer);
  t.not(third.buffer, second.buffer);
});

test('views never lent are the caller\'s own room: commit moves past them, take without commit reuses them', (t) => {
  const slab = new Slab(4096);
  const a = slab.take(1000);
  const b = slab.take(1000);
  t.is(a.byteOffset, b.byteOffset, 'nothing committed: the same room again');
  slab.commit(1000);
  const c = slab.take(1000);
  t.is(c.byteOffset, a.byteOffset + 1000);
  t.is(slab.left, 4096 - 1000);
});

test('a request larger than the slab size gets a slab of its own size', (t) => {
  const slab = new Slab(1024);
  t.is(slab.take(5000).length, 5000);
});
