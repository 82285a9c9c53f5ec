import test from 'ava';
import { Key, KvError, MorganaError } from 'morgana';

test('keys parse paths and segments, strictly', (t) => {
  t.deepEqual(Key.from('/a/b').segments, ['a', 'b']);
  t.deepEqual(Key.from('a/b').segments, ['a', 'b']);
  t.deepEqual(Key.from(['a', 'b c', 'é']).segments, ['a', 'b c', 'é']);
  t.true(Key.from('/').isRoot);
  t.true(Key.from('').isRoot);
  t.true(Key.from([]).isRoot);
  t.is(Key.root.toString(), '/');
  for (const bad of ['//a', '/a//b', '/a/', '/./a', '/a/..', 'a\0b', '/\udc00x']) {
    const e = t.throws(() => Key.from(bad), { code: 'ERR_KV_INVALID_KEY' });
    t.true(e instanceof KvError && e instanceof MorganaError);
  }
  for (const bad of [[''], ['a/b'], ['.'], ['..'], ['\0']]) t.throws(() => Key.from(bad), { code: 'ERR_KV_INVALID_KEY' });
  t.true(Key.isValidSegment('...'));
  t.false(Key.isValidSegment('..'));
});

test('root, parent, basename, append, toString', (t) => {
  const k = Key.from('/a/b/c');
  t.is(k.toString(), '/a/b/c');
  t.is(k.basename, 'c');
  t.is(k.depth, 3);
  t.true(k.parent.equals('/a/b'));
  t.true(k.parent.parent.parent.isRoot);
  t.true(Key.root.parent.isRoot);
  t.is(Key.root.basename, '');
  t.is(Key.root.append('x', Key.from('/y/z')).toString(), '/x/y/z');
  t.throws(() => k.append('a/b'), { code: 'ERR_KV_INVALID_KEY' });
  t.throws(() => k.append('..'), { code: 'ERR_KV_INVALID_KEY' });
  t.is(JSON.stringify({ k }), '{"k":"/a/b/c"}');
  t.true(Key.from('/a').isPrefixOf('/a/b'));
  t.true(Key.from('/a').isPrefixOf('/a'));
  t.false(Key.from('/a').isPrefixOf('/ab'));
  t.is(Key.from('/a/b/c').relativeTo('/a').toString(), '/b/c');
  t.true(Object.isFrozen(k.segments));
});

test('equality and ordering: segment-wise, by code point, parents first', (t) => {
  t.true(Key.from('/a/b').equals(['a', 'b']));
  t.false(Key.from('/a/b').equals('/a/b/c'));
  t.false(Key.from('/caf\u00e9').equals('/cafe\u0301'));
  const sorted = ['/a', '/a/b', '/a/b/c', '/a!', '/ab', '/b', '/\uff5e', '/\u{1f600}'];
  const shuffled = [...sorted].reverse();
  t.deepEqual(shuffled.map((s) => Key.from(s)).sort(Key.compare).map(String), sorted);
  t.is(Key.compare('/x', '/x'), 0);
  t.is(Key.from('/\uff5e').compare('/\u{1f600}'), -1, 'code point order, not UTF-16');
});
