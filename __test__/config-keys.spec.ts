import test from 'ava';
import { config } from 'morgana';

const { key, parseKeyArguments } = config;

test('each key type parses and normalises its values', (t) => {
  t.is(key.string('s').parse('a b'), 'a b');
  t.is(key.int('i').parse('-42'), -42);
  t.is(key.int('i').parse('+7'), 7);
  t.true(key.bool('b').parse('yes'));
  t.false(key.bool('b').parse('FALSE'));
  t.is(key.ipv4('a').parse('10.0.0.2/24'), '10.0.0.2/24');
  t.is(key.ipv4('a').parse('192.168.1.1/0'), '192.168.1.1/0');
  t.is(key.ipv4Address('g').parse('10.0.0.1'), '10.0.0.1');
  t.is(key.mac('m').parse('02:AB:cd:00:00:01'), '02:ab:cd:00:00:01');
  t.is(key.duration('d').parse('1500ms'), 1500);
  t.is(key.duration('d').parse('2s'), 2000);
  t.is(key.duration('d').parse('1m30s'), 90_000);
  t.is(key.duration('d').parse('1.5h'), 5_400_000);
  t.is(key.duration('d').parse('0'), 0);
  t.is(config.formatDuration(90_000), '90s');
  t.is(config.formatDuration(1500), '1500ms');
});

test('bad values are ERR_INVALID_KEY_VALUE, naming the option and what was expected', (t) => {
  const bad: Array<[config.Key<unknown>, string]> = [
    [key.int('port'), '8o'],
    [key.int('port'), '1.5'],
    [key.int('port'), ''],
    [key.bool('debug'), 'maybe'],
    [key.ipv4('ipv4'), '10.0.0.2'],
    [key.ipv4('ipv4'), '10.0.0.2/33'],
    [key.ipv4('ipv4'), '10.0.0.256/24'],
    [key.ipv4('ipv4'), '010.0.0.2/24'],
    [key.ipv4Address('gateway'), '10.0.0'],
    [key.mac('mac'), '02:00:00:00:00'],
    [key.duration('timeout'), '10'],
    [key.duration('timeout'), '5 s'],
    [key.duration('timeout'), 's'],
  ];
  for (const [k, text] of bad) {
    const error = t.throws(() => k.parse(text), { code: 'ERR_INVALID_KEY_VALUE' }, `${k.name} ${text}`);
    t.regex(error!.message, new RegExp(`--${k.name}`));
  }
});

test('keys carry defaults, docs and stages; bad definitions fail at once', (t) => {
  const k = key.duration('timeout', { default: 1000, doc: 'How long.', stage: 'runtime' });
  t.is(k.default, 1000);
  t.is(k.doc, 'How long.');
  t.is(k.stage, 'runtime');
  t.is(key.string('x').stage, 'both');
  t.is(key.string('x').default, undefined);
  t.throws(() => key.string('Bad_Name'), { code: 'ERR_CONFIG_INVALID_KEY' });
  t.throws(() => key.ipv4('a', { default: 'nope' }), { code: 'ERR_INVALID_KEY_VALUE' });
  t.throws(() => key.int('a', { stage: 'later' as never }), { code: 'ERR_CONFIG_INVALID_KEY' });
});

test('parseKeyArguments: --k=v, --k v, bare bool flags, positionals and --', (t) => {
  const keys = new Map<string, config.Key<unknown>>([
    ['port', key.int('port')],
    ['verbose', key.bool('verbose')],
    ['hello', key.string('hello')],
  ]);
  const r = parseKeyArguments(['--port=80', 'a', '--verbose', 'b', '--hello', 'hi there', '--', '--port=1'], keys);
  t.deepEqual([...r.values], [
    ['port', 80],
    ['verbose', true],
    ['hello', 'hi there'],
  ]);
  t.deepEqual(r.positional, ['a', 'b', '--port=1']);
  t.false(r.help);
  t.deepEqual([...parseKeyArguments(['--verbose', 'false'], keys).values], [['verbose', false]]);
  t.true(parseKeyArguments(['--help'], keys).help);
  t.true(parseKeyArguments(['--help=plain'], keys).help);
  t.throws(() => parseKeyArguments(['--nope=1'], keys), { code: 'ERR_UNKNOWN_KEY', message: /--nope.*known: --port/ });
  t.throws(() => parseKeyArguments(['--hello'], keys), { code: 'ERR_MISSING_KEY_VALUE' });
  t.throws(() => parseKeyArguments(['--port=x'], keys), { code: 'ERR_INVALID_KEY_VALUE' });
});
