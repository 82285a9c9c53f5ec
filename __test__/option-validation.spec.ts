/**
 * Options are checked where they enter (issue 20 item 6): a bad value is refused with a typed
 * error naming the option and its range, instead of being accepted and stalling transfers later
 * (`recvBuffer: -1`, buffers of 0 or 2**40, `mtu: 1e9`) or failing with an unrelated TypeError
 * (`new BufferedRandom(null)`).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import {
  BufferedRandom,
  InvalidArgumentError,
  MorganaError,
  OutOfRangeError,
  type TcpOptions,
  VirtualSwitch,
  createStack,
} from 'morgana';
import { collect, sha256, writeAll } from './helpers/streams.js';

const bad: Array<[TcpOptions & Record<string, unknown>, RegExp]> = [
  [{ recvBuffer: -1 }, /tcp\.recvBuffer must be an integer from 1024 to 1073741824, got -1/],
  [{ recvBuffer: 0 }, /tcp\.recvBuffer .* got 0/],
  [{ sendBuffer: 2 ** 40 }, /tcp\.sendBuffer must be an integer from 1024 to 1073741824/],
  [{ sendBuffer: 1.5e3 + 0.5 }, /tcp\.sendBuffer/],
  [{ rtoMinMs: Number.NaN }, /tcp\.rtoMinMs/],
  [{ delayedAckMs: 501 }, /tcp\.delayedAckMs must be an integer from 0 to 500/],
  [{ synRetries: -1 }, /tcp\.synRetries/],
  [{ maxConnections: 0 }, /tcp\.maxConnections/],
  [{ rtoMinMs: 5_000, rtoMaxMs: 1_000 }, /tcp\.rtoMinMs \(5000\) must not exceed tcp\.rtoMaxMs \(1000\)/],
];

for (const [tcp, message] of bad) {
  test(`createStack refuses tcp ${JSON.stringify(tcp)} with ERR_OUT_OF_RANGE`, async (t) => {
    const sw = new VirtualSwitch();
    const error = await t.throwsAsync(createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', tcp }), { instanceOf: OutOfRangeError, message });
    t.is((error as OutOfRangeError).code, 'ERR_OUT_OF_RANGE');
  });
}

test('createStack refuses unknown and mistyped TCP options', async (t) => {
  const sw = new VirtualSwitch();
  const net = sw.connect();
  await t.throwsAsync(createStack({ net, ipv4: '10.0.0.1/24', tcp: { mtu: 1e9 } as TcpOptions }), {
    instanceOf: MorganaError,
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown TCP option tcp\.mtu \(the MSS follows the interface MTU\)/,
  });
  await t.throwsAsync(createStack({ net, ipv4: '10.0.0.1/24', tcp: { timestamps: 'yes' } as unknown as TcpOptions }), {
    instanceOf: InvalidArgumentError,
    message: /tcp\.timestamps must be a boolean/,
  });
  await t.throwsAsync(createStack({ net, ipv4: '10.0.0.1/24', tcp: { recvBuffer: '65536' } as unknown as TcpOptions }), {
    instanceOf: InvalidArgumentError,
    message: /tcp\.recvBuffer must be a number/,
  });
  await t.throwsAsync(createStack({ net, ipv4: '10.0.0.1/24', tcp: { congestionControl: 'bbr' } as unknown as TcpOptions }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /congestionControl must be one of newreno, cubic/,
  });
});

test('the bounds themselves are accepted and a transfer works at the smallest buffers', async (t) => {
  const sw = new VirtualSwitch();
  const tcp = { recvBuffer: 1024, sendBuffer: 1024, delayedAckMs: 0, synRetries: 0, maxOutOfOrder: 0 };
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', tcp });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', tcp: { ...tcp, recvBuffer: 1 << 30, sendBuffer: 1 << 30 } });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close()]);
  });
  const data = randomBytes(64 * 1024);
  const received = new Promise<Buffer>((resolve) => b.tcp.listen(80, (conn) => resolve(collect(conn))));
  const client = await a.tcp.connect('10.0.0.2', 80);
  await writeAll(client, data);
  t.is(sha256(await received), sha256(data));
});

test('BufferedRandom refuses a source without fill() and bad options up front', (t) => {
  for (const source of [null, undefined, 42, { size: -1 }, { fill: 'no' }]) {
    t.throws(() => new BufferedRandom(source as never), { instanceOf: InvalidArgumentError, message: /source must be a random source/ });
  }
  const source = { fill: <T extends Uint8Array>(b: T) => b.fill(7) };
  t.throws(() => new BufferedRandom(source, null as never), { instanceOf: InvalidArgumentError, message: /options must be an object/ });
  t.throws(() => new BufferedRandom(source, { chunkBytes: -1 }), { instanceOf: OutOfRangeError, message: /chunkBytes must be an integer from 64 to 1048576/ });
  t.is(new BufferedRandom(source).uint32(), 0x07070707);
});
