import test from 'ava';
import { config, parseArgv, quoteArgv } from 'morgana';

// The cases of mirage/parse-argv 0.3.0's own test suite, and the rules around them.
const cases: Array<[string, string[]]> = [
  ['foo bar baz', ['foo', 'bar', 'baz']],
  ['foo "bar" baz', ['foo', 'bar', 'baz']],
  ['f\\ oo b\\"r baz', ['f oo', 'b"r', 'baz']],
  ['foo bar"bie"boo baz', ['foo', 'barbieboo', 'baz']],
  ['foo "bar baz"', ['foo', 'bar baz']],
  ['foo bar\\ baz', ['foo', 'bar baz']],
  ['  ', []],
  ['', []],
  ['  a   b  ', ['a', 'b']],
  ['--hello=foo\\ bar', ['--hello=foo bar']],
  ['"a\\"b" c', ['a"b', 'c']],
  ['"back\\\\slash"', ['back\\slash']],
  ['a"b c"d', ['ab cd']],
  ['"" x ""', ['x']],
  ["it's 'single quotes'", ["it's", "'single", "quotes'"]],
  ['tab\there new\nline', ['tab\there', 'new\nline']],
  ['\\\\', ['\\']],
  ['"\\ "', [' ']],
];

for (const [input, expected] of cases) {
  test(`parseArgv ${JSON.stringify(input)}`, (t) => {
    t.deepEqual(parseArgv(input), expected);
  });
}

for (const bad of ['  \\', 'foo "bar', '"', 'a\\', '"abc\\"', '"x\\']) {
  test(`parseArgv rejects ${JSON.stringify(bad)}`, (t) => {
    t.throws(() => parseArgv(bad), { code: 'ERR_BAD_ARGV' });
  });
}

test('boot arguments are joined with single spaces and split again', (t) => {
  // What a shell delivers as three arguments arrives as parse-argv makes of the joined line.
  t.deepEqual(config.bootArguments(['--hello=foo\\', 'bar', 'x']), ['--hello=foo bar', 'x']);
  t.deepEqual(config.bootArguments(['"a', 'b"', 'c']), ['a b', 'c']);
  t.deepEqual(config.bootArguments(['a b', '']), ['a', 'b']);
  t.throws(() => config.bootArguments(['unterminated "quote']), { code: 'ERR_BAD_ARGV' });
});

test('quoteArgv carries any non-empty argument byte for byte', (t) => {
  const samples = ['plain', 'with space', 'quote"d', 'back\\slash', ' lead', 'trail ', '\t', 'é ü', '"', '\\', 'a  b'];
  const line = samples.map(quoteArgv).join(' ');
  t.deepEqual(parseArgv(line), samples);
  for (let i = 0; i < 200; i++) {
    const s = Array.from({ length: 1 + (i % 9) }, (_, j) => ' "\\ab\t'[(i * 7 + j * 3) % 7]).join('');
    t.deepEqual(parseArgv(quoteArgv(s)), [s]);
  }
  t.throws(() => quoteArgv(''), { code: 'ERR_BAD_ARGV' });
});
