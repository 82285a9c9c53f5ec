/**
 * The small-request path of TCP (issue 14): node:http serving keep-alive requests over a
 * stack's connections, counted on the wire (segments per request) and in timers, and the idle
 * timeout a server's socket gets from node:http. On a VirtualClock that is never advanced
 * during the exchange, so no delayed-ACK or retransmission timer can add a segment: what the
 * counts show is what the request path itself sends.
 */
import test, { type ExecutionContext } from 'ava';
import http from 'node:http';
import { once } from 'node:events';
import { type TcpConnection, VirtualClock, VirtualSwitch, createStack } from 'morgana';
import { native } from '../ts/native.js';

const tick = () => new Promise((r) => setImmediate(r));

/** A VirtualClock that counts the timers armed on it. */
class CountingClock extends VirtualClock {
  armed = 0;
  override setTimer(delayMs: number, callback: () => void) {
    this.armed++;
    return super.setTimer(delayMs, callback);
  }
}

async function pair(t: ExecutionContext, clock: VirtualClock) {
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', clock });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', clock });
  // The switch does no I/O: keep the process alive while the test runs.
  const alive = setInterval(() => {}, 1_000);
  const close = async () => {
    clearInterval(alive);
    await Promise.all([a.close(), b.close()]);
  };
  t.teardown(close);
  return { sw, a, b, close };
}

/** TCP segments seen on the switch, by source address: [with payload, without]. */
function countSegments(sw: VirtualSwitch) {
  const counts = new Map<string, [number, number]>();
  const stop = sw.mirror((frame) => {
    if (frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 6) return;
    const ip = frame.subarray(14);
    const payload = ip.readUInt16BE(2) - (ip[0]! & 0x0f) * 4 - (ip[(ip[0]! & 0x0f) * 4 + 12]! >> 4) * 4;
    const src = `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`;
    const c = counts.get(src) ?? [0, 0];
    c[payload > 0 ? 0 : 1]++;
    counts.set(src, c);
  });
  return { counts, stop };
}

const BODY = 'Hello, world!\n';
const REQUEST = 'GET / HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n';

/** Sends `n` keep-alive GETs one after the other on `client`, each after the previous response. */
async function requests(client: TcpConnection, n: number): Promise<number> {
  let text = '';
  let answered = 0;
  let next: (() => void) | undefined;
  client.setEncoding('latin1');
  client.on('data', (chunk: string) => {
    text += chunk;
    for (let end = text.indexOf(BODY); end >= 0; end = text.indexOf(BODY)) {
      text = text.slice(end + BODY.length);
      answered++;
      next?.();
    }
  });
  for (let i = 0; i < n; i++) {
    const done = new Promise<void>((r) => (next = r));
    client.write(REQUEST);
    await done;
  }
  return answered;
}

test('keep-alive requests to node:http: one segment each way per request, ACKs riding on data, no idle timer per request', async (t) => {
  const clock = new CountingClock();
  const { sw, a, b, close } = await pair(t, clock);
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  b.tcp.listen(80, (conn) => server.emit('connection', conn));
  const client = await a.tcp.connect('10.0.0.2', 80);
  // Warm up (the first response, node:http's first keep-alive timer), then count.
  t.is(await requests(client, 1), 1);
  await tick();
  const armedBefore = clock.armed;
  const wire = countSegments(sw);
  const N = 50;
  let answered = 0;
  client.removeAllListeners('data');
  answered = await requests(client, N);
  wire.stop();
  t.is(answered, N);
  // The server: the response alone, as one segment carrying the request's ACK.
  t.deepEqual(wire.counts.get('10.0.0.2'), [N, 0]);
  // The client: each request after the first carries the previous response's ACK; the last
  // response's ACK waits for the delayed-ACK timer, which this clock does not run.
  t.deepEqual(wire.counts.get('10.0.0.1'), [N, 0]);
  // node:http sets the socket's timeout after every response and clears it on the next
  // request; with the connections' reads and writes that is four resets a request. They
  // must not each arm a timer (an armed one that fires early re-arms for the rest).
  const armed = clock.armed - armedBefore;
  t.log(`timers armed over ${N} requests: ${armed}`);
  t.true(armed < N / 2, `${armed} timers armed for ${N} requests`);
  client.destroy();
  server.close();
  await close();
});

test('idle timeout: activity postpones it, setTimeout(0) cancels it, the latest setTimeout counts, it fires once per idle period', async (t) => {
  const clock = new VirtualClock();
  const { a, b, close } = await pair(t, clock);
  let server!: TcpConnection;
  b.tcp.listen(80, (conn) => {
    server = conn;
    conn.resume();
  });
  const client = await a.tcp.connect('10.0.0.2', 80);
  client.resume();
  await tick();
  let timeouts = 0;
  client.on('timeout', () => timeouts++);

  client.setTimeout(1_000);
  clock.advance(999);
  t.is(timeouts, 0);
  client.write('x'); // a write is activity: the idle period starts again
  clock.advance(999);
  t.is(timeouts, 0);
  clock.advance(1);
  t.is(timeouts, 1);
  clock.advance(5_000);
  t.is(timeouts, 1, 'once per idle period');

  // Received data is activity too.
  client.setTimeout(1_000);
  clock.advance(500);
  server.write('y');
  const got = once(client, 'data');
  await tick();
  await tick();
  await got;
  clock.advance(999);
  t.is(timeouts, 1);
  clock.advance(1);
  t.is(timeouts, 2);

  client.setTimeout(1_000);
  client.setTimeout(0);
  clock.advance(5_000);
  t.is(timeouts, 2, 'setTimeout(0) turns it off');

  client.setTimeout(60_000);
  client.setTimeout(100);
  clock.advance(100);
  t.is(timeouts, 3, 'a shorter timeout set later fires at its own time');

  client.setTimeout(100);
  client.setTimeout(1_000);
  clock.advance(999);
  t.is(timeouts, 3, 'a longer timeout set later replaces the shorter one');
  clock.advance(1);
  t.is(timeouts, 4);

  client.destroy();
  clock.advance(5_000);
  t.is(timeouts, 4, 'no timeout after destroy');
  await close();
});

test('the fast TCP calls check their arguments and report engine errors as the methods do', (t) => {
  const engine = new native.NativeTcpEngine({ mtu: 1500, gsoMax: 0 }, Buffer.alloc(16));
  const fast = native.tcpFastCalls(engine, new native.NativeIpOutput(1, 64, 64));
  const buffer = Buffer.alloc(8);
  t.throws(() => fast.send('x' as unknown as number, buffer), { name: 'TypeError' });
  t.throws(() => fast.recv(1, 'x' as unknown as Uint8Array), { name: 'TypeError' });
  t.throws(() => (fast.readable as unknown as () => number)(), { name: 'TypeError' });
  // An unknown handle: the same negative code as the napi methods, 0 readable.
  t.is(fast.send(7, buffer), engine.send(7, buffer));
  t.true(fast.send(7, buffer) < 0);
  t.is(fast.recv(7, buffer), engine.recv(7, buffer));
  t.is(fast.readable(7), 0);
  // turn: the arrays must be of their types and must not overlap (the engine writes to them).
  const input = Buffer.alloc(64);
  const meta = new Uint32Array(10);
  const out = Buffer.alloc(4096);
  const outMeta = new Uint32Array(30);
  const events = new Uint32Array(30);
  const result = new Float64Array(4).fill(7);
  fast.turn(input, meta, 0, 0, out, outMeta, events, result);
  t.deepEqual([...result], [0, 0, -1, 0], 'an idle engine: no packets, no events, no deadline');
  t.throws(() => fast.turn(input, meta, 0, 0, input, outMeta, events, result), { name: 'TypeError' });
  t.throws(() => fast.turn(input, meta, 0, 0, out, new Uint32Array(events.buffer, 0, 10), events, result), { name: 'TypeError' });
  t.throws(() => fast.turn(input, new Float64Array(4) as unknown as Uint32Array, 0, 0, out, outMeta, events, result), { name: 'TypeError' });
  // feed, drain, takeEvents: the methods' results; the arrays they write apart from the rest.
  const segment = Buffer.alloc(20); // a TCP header with a bad checksum: dropped
  segment[12] = 0x50;
  const addresses6 = Buffer.alloc(32);
  fast.feed(input, meta, 0, segment, 4, 0x0a000001, 0x0a000002, addresses6, 0);
  t.is(engine.stats().badChecksum, 1, 'the segment reached the engine');
  t.throws(() => fast.feed(input, meta, 0, input.subarray(8, 28), 4, 1, 2, addresses6, 0), { name: 'TypeError' });
  t.throws(() => fast.feed(input, new Uint32Array(input.buffer, input.byteOffset, 4), 0, segment, 4, 1, 2, addresses6, 0), { name: 'TypeError' });
  t.throws(() => fast.feed(input, meta, 0, segment, 'x' as unknown as number, 1, 2, addresses6, 0), { name: 'TypeError' });
  t.throws(() => (fast.feed as unknown as (...a: unknown[]) => void)(input, meta, 0, segment), { name: 'TypeError' });
  t.is(engine.stats().badChecksum, 1, 'nothing reached the engine from the rejected calls');
  t.is(fast.drain(out, outMeta, 0), 0);
  t.throws(() => fast.drain(out, new Uint32Array(out.buffer, out.byteOffset, 8), 0), { name: 'TypeError' });
  t.throws(() => fast.drain(out, outMeta, 'x' as unknown as number), { name: 'TypeError' });
  t.is(fast.takeEvents(events), 0);
  t.throws(() => fast.takeEvents(new Int32Array(3) as unknown as Uint32Array), { name: 'TypeError' });
});

test('the fast TCP calls of a closed stack fail like the methods, never crash', async (t) => {
  const clock = new VirtualClock();
  const sw = new VirtualSwitch({ clock });
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', clock });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', clock });
  const server = b.tcp.listen(80, (conn) => conn.write('hello'));
  const client = await a.tcp.connect('10.0.0.2', 80);
  const [data] = (await once(client, 'data')) as [Buffer];
  t.is(data.toString(), 'hello');
  const { fast, engine } = a.tcp;
  const handle = client.handle;
  server.close();
  await a.close();
  await b.close();
  const buffer = Buffer.alloc(64);
  t.is(fast.send(handle, buffer), engine.send(handle, buffer));
  t.is(fast.recv(handle, buffer), engine.recv(handle, buffer));
  t.is(fast.readable(handle), 0);
  const events = new Uint32Array(30);
  const out = Buffer.alloc(4096);
  const outMeta = new Uint32Array(30);
  fast.feed(Buffer.alloc(64), new Uint32Array(10), 0, Buffer.alloc(20), 4, 1, 2, Buffer.alloc(32), 0);
  t.is(typeof fast.drain(out, outMeta, 0), 'number');
  t.is(typeof fast.takeEvents(events), 'number');
  const result = new Float64Array(4);
  fast.turn(Buffer.alloc(64), new Uint32Array(10), 0, 0, out, outMeta, events, result);
  t.true(result.every((x) => Number.isFinite(x)));
});

test('the fast ipv4Validate gives the results of the napi function and checks its arguments', (t) => {
  const validate = native.ipv4FastValidate();
  // A 20-byte header with a good checksum and 4 bytes of payload, then 2 bytes of padding.
  const packet = Buffer.from('450000180001000040110000c0000201c000020201020304', 'hex');
  packet.writeUInt16BE(0xffff - (packet.subarray(0, 20).reduce((sum, _b, i, h) => (i % 2 ? sum : sum + h.readUInt16BE(i)), 0) % 0xffff), 10);
  const padded = Buffer.concat([packet, Buffer.alloc(2)]);
  t.is(validate(padded, true), 24);
  t.is(validate(padded, true), native.ipv4Validate(padded, true));
  const bad = Buffer.from(padded);
  bad[10]! ^= 1;
  t.true(validate(bad, true) < 0);
  t.is(validate(bad, true), native.ipv4Validate(bad, true));
  t.is(validate(bad, false), 24);
  t.is(validate(Buffer.alloc(3), true), native.ipv4Validate(Buffer.alloc(3), true));
  t.throws(() => validate('x' as unknown as Uint8Array, true), { name: 'TypeError' });
  t.throws(() => validate(padded, 1 as unknown as boolean), { name: 'TypeError' });
});
