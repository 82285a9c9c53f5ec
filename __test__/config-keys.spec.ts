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
  // IPv6 text comes back in its RFC 5952 form, so configured and default values compare equal.
  t.is(key.ipv6('a6').parse('2001:DB8:0:0:0:0:0:2/64'), '2001:db8::2/64');
  t.is(key.ipv6('a6').parse('fd00::1:0:0:7/48'), 'fd00::1:0:0:7/48');
  t.is(key.ipv6('a6').parse('2001:db8::2/128'), '2001:db8::2/128');
  t.is(key.ipv6('a6').parse('2001:db8::2/0'), '2001:db8::2/0');
  t.is(key.ipv6('a6').parse('::ffff:10.0.0.2/96'), '::ffff:10.0.0.2/96');
  t.is(key.ipv6Address('g6').parse('FE80:0::1'), 'fe80::1');
  t.is(key.ipv6Address('g6').parse('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  t.is(key.ipv6('a6').docv, 'ADDRESS/PREFIX');
  t.is(key.ipv6Address('g6').docv, 'ADDRESS');
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
    [key.ipv6('ipv6'), '2001:db8::2'],
    [key.ipv6('ipv6'), '2001:db8::2/129'],
    [key.ipv6('ipv6'), '2001:db8::2/064'],
    [key.ipv6('ipv6'), '2001:db8::2/'],
    [key.ipv6('ipv6'), '2001:db8:::2/64'],
    [key.ipv6('ipv6'), '10.0.0.2/24'],
    [key.ipv6('ipv6'), '[2001:db8::2]/64'],
    [key.ipv6('ipv6'), 'ff02::1/64'],
    [key.ipv6('ipv6'), '::/0'],
    [key.ipv6Address('ipv6-gateway'), 'fe80::1%net0'],
    [key.ipv6Address('ipv6-gateway'), '2001:db8::1/64'],
    [key.ipv6Address('ipv6-gateway'), '12345::1'],
    [key.ipv6Address('ipv6-gateway'), 'ff02::2'],
    [key.ipv6Address('ipv6-gateway'), '::'],
    [key.ipv6Address('ipv6-gateway'), '10.0.0.1'],
    [key.mac('mac'), '02:00:00:00:00'],
    [key.duration('timeout'), '10'],
    [key.duration('timeout'), '5 s'],
    [key.duration('timeout'), 's'],
  ];
  for (const [k, text] of bad) {
    const error = t.throws(() => k.parse(text), { code: 'ERR_INVALID_KEY_VALUE' }, `${k.name} ${text}`);
    t.regex(error!.message, new RegExp(`--${k.name} `));
  }
  t.regex(t.throws(() => key.ipv6('ipv6').parse('2001:db8::2'))!.message, /invalid value "2001:db8::2" for --ipv6 \(ipv6\): expected an IPv6 unicast address with its prefix such as 2001:db8::2\/64/);
  t.regex(t.throws(() => key.ipv6Address('ipv6-gateway').parse('ff02::2'))!.message, /--ipv6-gateway \(ipv6Address\): expected an IPv6 unicast address such as fe80::1/);
});

test("the stack's keys: MirageOS names, types and defaults (dual-stack unless told otherwise)", (t) => {
  const k = config.defaultKeys;
  const rows = Object.values(k as Record<string, config.Key<unknown>>).map((x) => [x.name, x.type, x.default === undefined ? null : x.format(x.default)]);
  t.deepEqual(rows, [
    ['interface', 'string', 'tap0'],
    ['tap-offload', 'bool', 'true'],
    ['ipv4', 'ipv4', '10.0.0.2/24'],
    ['ipv4-gateway', 'ipv4Address', null],
    ['ipv6', 'ipv6', null],
    ['ipv6-gateway', 'ipv6Address', null],
    ['accept-router-advertisements', 'bool', 'true'],
    ['ipv4-only', 'bool', 'false'],
    ['ipv6-only', 'bool', 'false'],
  ]);
  const keys = new Map(Object.values(k).map((x) => [x.name, x as config.Key<unknown>]));
  const r = parseKeyArguments(['--ipv6', '2001:DB8::2/64', '--ipv6-gateway=fe80::1', '--accept-router-advertisements', 'false', '--ipv6-only'], keys);
  t.deepEqual([...r.values], [
    ['ipv6', '2001:db8::2/64'],
    ['ipv6-gateway', 'fe80::1'],
    ['accept-router-advertisements', false],
    ['ipv6-only', true],
  ]);
  t.throws(() => parseKeyArguments(['--ipv6=2001:db8::2'], keys), { code: 'ERR_INVALID_KEY_VALUE', message: /--ipv6 \(ipv6\)/ });
  t.throws(() => parseKeyArguments(['--ipv6'], keys), { code: 'ERR_MISSING_KEY_VALUE', message: /--ipv6 needs a value \(ADDRESS\/PREFIX\)/ });
  t.throws(() => parseKeyArguments(['--ipv6-only=maybe'], keys), { code: 'ERR_INVALID_KEY_VALUE', message: /--ipv6-only \(bool\)/ });
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
