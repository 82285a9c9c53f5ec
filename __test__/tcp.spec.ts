import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import {
  type Stack,
  type SwitchFaults,
  type TcpConnection,
  type TcpOptions,
  VirtualClock,
  VirtualSwitch,
  checksum,
  createStack,
  parseIpv4Address,
  pseudoHeaderSum,
} from 'morgana';
import { collect, digest, sha256, writeAll } from './helpers/streams.js';

const tick = () => new Promise((r) => setImmediate(r));

async function pair(t: ExecutionContext, options: { faults?: SwitchFaults; clock?: VirtualClock; mtu?: number; tcp?: TcpOptions } = {}) {
  const sw = new VirtualSwitch({ faults: options.faults, mtu: options.mtu, clock: options.clock });
  const common = { clock: options.clock, tcp: options.tcp };
  const a = await createStack({ net: sw.connect(), ipv4: '10.0.0.1/24', ...common });
  const b = await createStack({ net: sw.connect(), ipv4: '10.0.0.2/24', ...common });
  // The system clock's timers are unref'd and a VirtualSwitch does no I/O: keep the process
  // alive while the test runs, as a real NET device would.
  const alive = setInterval(() => {}, 1_000);
  t.teardown(() => {
    clearInterval(alive);
    void a.close();
    void b.close();
  });
  return {
    sw,
    a,
    b,
    close: async () => {
      clearInterval(alive);
      await Promise.all([a.close(), b.close()]);
    },
  };
}

async function exchange(a: Stack, b: Stack, size: number) {
  const up = randomBytes(size);
  const down = randomBytes(size);
  let serverGot!: Promise<Buffer>;
  let serverClosed!: Promise<unknown>;
  const accepted = new Promise<TcpConnection>((resolve) => {
    b.tcp.listen(7000, (conn) => {
      serverGot = collect(conn);
      serverClosed = once(conn, 'close');
      void writeAll(conn, down);
      resolve(conn);
    }, { allowHalfOpen: true });
  });
  const client = await a.tcp.connect('10.0.0.2', 7000, { allowHalfOpen: true });
  const clientGot = collect(client);
  const clientClosed = once(client, 'close');
  await writeAll(client, up);
  await accepted;
  const [gotUp, gotDown] = await Promise.all([serverGot, clientGot]);
  await Promise.all([clientClosed, serverClosed]);
  return { ok: sha256(gotUp) === sha256(up) && sha256(gotDown) === sha256(down), gotUp: gotUp.length, gotDown: gotDown.length };
}

test('4 MiB each way, clean link: SHA-256 equal, both sides closed', async (t) => {
  const { a, b, close } = await pair(t);
  const result = await exchange(a, b, 4 << 20);
  t.true(result.ok);
  t.is(result.gotUp, 4 << 20);
  // Nothing is lost on a clean link, so no loss recovery may start; a timer-driven probe
  // (TLP/RTO) can still fire spuriously when the machine stalls the event loop, so it is not counted.
  t.is(a.tcp.stats().fastRetransmits + b.tcp.stats().fastRetransmits, 0);
  t.is(a.tcp.stats().badChecksum + b.tcp.stats().badChecksum, 0);
  await close();
});

test('4 MiB each way with 1 % loss, reordering and duplication', async (t) => {
  const { a, b, sw, close } = await pair(t, { faults: { loss: 0.01, reorder: 0.01, duplicate: 0.01 } });
  const result = await exchange(a, b, 4 << 20);
  t.true(result.ok);
  t.true(sw.stats().lost > 0);
  t.true(a.tcp.stats().retransmits + b.tcp.stats().retransmits > 0);
  await close();
});

test('4 MiB at MTU 65535', async (t) => {
  const { a, b, close } = await pair(t, { mtu: 65_535 });
  const result = await exchange(a, b, 4 << 20);
  t.true(result.ok);
  await close();
});

test('half-close in both directions', async (t) => {
  const { a, b, close } = await pair(t);
  const accepted = new Promise<TcpConnection>((resolve) => b.tcp.listen(80, resolve, { allowHalfOpen: true }));
  const client = await a.tcp.connect('10.0.0.2', 80, { allowHalfOpen: true });
  const server = await accepted;
  const closed = Promise.all([once(client, 'close'), once(server, 'close')]);
  t.is(server.remoteAddress, '10.0.0.1');
  t.is(server.remotePort, client.localPort);
  t.is(client.remotePort, 80);
  t.is(client.localAddress, '10.0.0.1');
  // Client → server, then FIN; the server can still answer afterwards.
  const serverGot = collect(server);
  client.end('question');
  t.is((await serverGot).toString(), 'question');
  t.regex(client.state, /^FIN-WAIT-[12]$/);
  const clientGot = collect(client);
  server.write('answer after your FIN');
  server.end(' and goodbye');
  t.is((await clientGot).toString(), 'answer after your FIN and goodbye');
  await closed;
  t.is(a.tcp.stats().timeWait, 1, 'the active closer waits in TIME_WAIT');

  // The other direction: the server closes first.
  const accepted2 = new Promise<TcpConnection>((resolve) => b.tcp.listen(81, resolve, { allowHalfOpen: true }));
  const client2 = await a.tcp.connect('10.0.0.2', 81, { allowHalfOpen: true });
  const server2 = await accepted2;
  const closed2 = Promise.all([once(client2, 'close'), once(server2, 'close')]);
  const c2 = collect(client2);
  server2.end('server speaks first');
  t.is((await c2).toString(), 'server speaks first');
  const s2 = collect(server2);
  client2.end('client still sends');
  t.is((await s2).toString(), 'client still sends');
  await closed2;
  await close();
});

test('without allowHalfOpen the write side ends when the peer ends (like net)', async (t) => {
  const { a, b, close } = await pair(t);
  b.tcp.listen(80, (conn) => conn.end('bye'));
  const client = await a.tcp.connect('10.0.0.2', 80);
  const closed = once(client, 'close');
  t.is((await collect(client)).toString(), 'bye');
  await closed;
  t.pass();
  await close();
});

test('connecting to a closed port rejects with ECONNREFUSED', async (t) => {
  const { a, b, close } = await pair(t);
  await t.throwsAsync(a.tcp.connect('10.0.0.2', 9), { code: 'ECONNREFUSED' });
  t.is(b.tcp.stats().closedPort, 1);
  t.is(b.tcp.stats().resetsSent, 1);
  await close();
});

test('connect times out with ETIMEDOUT when nobody answers (virtual clock)', async (t) => {
  const clock = new VirtualClock();
  const { a, sw, close } = await pair(t, { clock, tcp: { synRetries: 2 } });
  // Resolve ARP first, then lose everything.
  await a.arp.query('10.0.0.2');
  sw.setFaults({ loss: 1 });
  const pending = a.tcp.connect('10.0.0.2', 80);
  let settled = false;
  pending.catch(() => (settled = true));
  await tick();
  // 1 s, then 2 s, then 4 s of RTO: fails after 7 s.
  clock.advance(6_900);
  await tick();
  t.false(settled);
  clock.advance(200);
  await t.throwsAsync(pending, { code: 'ETIMEDOUT' });
  await close();
});

test('zero window, then resume: the persist timer and window updates avoid deadlock', async (t) => {
  const { a, b, close } = await pair(t, { tcp: { recvBuffer: 64 * 1024, sendBuffer: 64 * 1024 } });
  const data = randomBytes(1 << 20);
  const accepted = new Promise<TcpConnection>((resolve) => b.tcp.listen(80, resolve));
  const client = await a.tcp.connect('10.0.0.2', 80);
  const server = await accepted;
  server.pause();
  const writing = writeAll(client, data);
  // Until the receiver's buffer is full and the sender probes its zero window (a liveness
  // deadline: the RTO behind the persist timer grows when the machine is loaded).
  for (let i = 0; i < 200 && a.tcp.stats().windowProbes === 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.true(client.writableLength > 0 || client.writableNeedDrain, 'the writer is held back');
  const info = b.tcp.engine.info(server.handle)!;
  t.true(info.readable >= 64 * 1024 - 2048, `receiver buffer full (${info.readable})`);
  t.true(a.tcp.stats().windowProbes >= 1, 'zero-window probes were sent');
  const got = collect(server);
  server.resume();
  await writing;
  t.is(sha256(await got), sha256(data));
  await close();
});

test('keep-alive detects a peer that vanished (virtual clock)', async (t) => {
  const clock = new VirtualClock();
  const { a, b, sw, close } = await pair(t, { clock });
  b.tcp.listen(80, () => {});
  const client = await a.tcp.connect('10.0.0.2', 80);
  client.setKeepAlive(true, 10_000, { interval: 1_000, count: 3 });
  // Answered probes keep it alive.
  for (let i = 0; i < 30; i++) {
    clock.advance(1_000);
    await tick();
    await tick();
  }
  t.true(a.tcp.stats().keepaliveProbes >= 2);
  t.is(client.destroyed, false);
  sw.setFaults({ loss: 1 });
  const failed = once(client, 'error');
  for (let i = 0; i < 20; i++) {
    clock.advance(1_000);
    await tick();
  }
  const [error] = (await failed) as [Error & { code: string }];
  t.is(error.code, 'ETIMEDOUT');
  t.is(a.tcp.stats().keepaliveTimeouts, 1);
  await close();
});

test('TIME_WAIT expires after 2·MSL on a virtual clock', async (t) => {
  const clock = new VirtualClock();
  const { a, b, close } = await pair(t, { clock, tcp: { timeWaitMs: 4_000 } });
  b.tcp.listen(80, (conn) => conn.resume());
  const client = await a.tcp.connect('10.0.0.2', 80);
  client.resume();
  const closed = once(client, 'close');
  client.end('x');
  await closed;
  // Let the last ACK reach the peer before time moves (else its FIN is retransmitted and
  // TIME_WAIT restarts, as RFC 9293 says).
  await tick();
  await tick();
  t.is(a.tcp.stats().timeWait, 1);
  clock.advance(3_999);
  await tick();
  t.is(a.tcp.stats().timeWait, 1);
  clock.advance(1);
  await tick();
  t.is(a.tcp.stats().timeWait, 0);
  t.is(a.tcp.stats().connections, 0);
  await close();
});

test('destroy() with unread data sends RST: the peer sees ECONNRESET', async (t) => {
  const { a, b, close } = await pair(t);
  const accepted = new Promise<TcpConnection>((resolve) => b.tcp.listen(80, resolve));
  const client = await a.tcp.connect('10.0.0.2', 80);
  const server = await accepted;
  server.pause();
  client.write('unread');
  while (server.readableLength === 0 && b.tcp.engine.readable(server.handle) === 0) await tick();
  const error = once(client, 'error');
  server.destroy();
  const [e] = (await error) as [Error & { code: string }];
  t.is(e.code, 'ECONNRESET');
  await close();
});

test('150 concurrent connections each echo their own data', async (t) => {
  const { a, b, close } = await pair(t);
  b.tcp.listen(7, (conn) => conn.pipe(conn), { backlog: 256 });
  const results = await Promise.all(
    Array.from({ length: 150 }, async (_, i) => {
      const conn = await a.tcp.connect('10.0.0.2', 7);
      const data = randomBytes(8_000 + i);
      const got = collect(conn);
      conn.end(data);
      return (await got).equals(data);
    }),
  );
  t.true(results.every(Boolean));
  t.is(b.tcp.stats().passiveOpens, 150);
  await close();
});

test("Node's http runs over it: keep-alive request pair and a chunked upload", async (t) => {
  const { a, b, close } = await pair(t);
  const server = http.createServer((req, res) => {
    void digest(req).then(({ sha, length }) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url, bytes: length, sha, chunked: req.headers['transfer-encoding'] ?? null }));
    });
  });
  let served = 0;
  b.tcp.listen(80, (conn) => {
    served++;
    server.emit('connection', conn);
  }, { allowHalfOpen: true });

  const conn = await a.tcp.connect('10.0.0.2', 80);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let created = 0;
  (agent as unknown as { createConnection: () => TcpConnection }).createConnection = () => {
    created++;
    return conn;
  };
  const request = (path: string, body?: Buffer[]) =>
    new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
      const req = http.request({ host: '10.0.0.2', port: 80, path, method: body ? 'POST' : 'GET', agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString()) }));
      });
      req.on('error', reject);
      if (body) for (const part of body) req.write(part);
      req.end();
    });

  const first = await request('/one');
  const second = await request('/two');
  t.is(first.status, 200);
  t.is(first.json.url, '/one');
  t.is(second.json.url, '/two');
  // A chunked upload of 1 MiB in 33 writes, on the same kept-alive connection.
  const parts = Array.from({ length: 33 }, (_, i) => randomBytes(i === 32 ? 1 << 10 : 32 << 10));
  const whole = Buffer.concat(parts);
  const upload = await request('/upload', parts);
  t.is(upload.json.chunked, 'chunked');
  t.is(upload.json.bytes, whole.length);
  t.is(upload.json.sha, sha256(whole));
  t.is(created, 1, 'one connection for all three requests');
  t.is(served, 1);

  // http.request with createConnection directly (no agent).
  const conn2 = await a.tcp.connect('10.0.0.2', 80);
  const direct = await new Promise<string>((resolve, reject) => {
    const req = http.request({ path: '/direct', createConnection: () => conn2 as never }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    req.on('error', reject);
    req.end();
  });
  t.is(JSON.parse(direct).url, '/direct');
  agent.destroy();
  server.close();
  await close();
});

test('a SYN flood does not stop a legitimate client (SYN cookies once the SYN queue is full)', async (t) => {
  const { a, b, sw, close } = await pair(t);
  const attacker = await createStack({ net: sw.connect(), ipv4: '10.0.0.3/24' });
  t.teardown(() => attacker.close());
  b.tcp.listen(80, (conn) => conn.end('welcome'), { backlog: 8 });
  const dst = parseIpv4Address('10.0.0.2');
  await attacker.arp.query('10.0.0.2');
  for (let i = 0; i < 2000; i++) {
    // Spoofed on-link sources that will never answer, random-looking ports and sequence numbers.
    const src = parseIpv4Address(`10.0.0.${50 + (i % 200)}`);
    const syn = Buffer.alloc(20);
    syn.writeUInt16BE(1024 + ((i * 7919) % 60000), 0);
    syn.writeUInt16BE(80, 2);
    syn.writeUInt32BE((i * 2654435761) >>> 0, 4);
    syn[12] = 5 << 4;
    syn[13] = 0x02;
    syn.writeUInt16BE(65535, 14);
    syn.writeUInt16BE(checksum(syn, pseudoHeaderSum(src, dst, 6, 20)), 16);
    attacker.ipv4.write(dst, 6, { payloads: [syn], src });
  }
  for (let i = 0; i < 10 && b.tcp.stats().synCookiesSent < 1992; i++) await new Promise((r) => setTimeout(r, 20));
  const stats = b.tcp.stats();
  t.is(stats.halfOpen, 8);
  t.is(stats.synCookiesSent, 1992);
  const conn = await a.tcp.connect('10.0.0.2', 80);
  t.is((await collect(conn)).toString(), 'welcome');
  t.is(b.tcp.stats().synCookiesAccepted, 1);
  await close();
});

test('path-MTU discovery: a router with a smaller MTU reports "fragmentation needed" and the transfer adapts', async (t) => {
  // a — r1 —(MTU 1000)— r2 — b: both ends have MTU 1500 and advertise MSS 1460.
  const left = new VirtualSwitch();
  const middle = new VirtualSwitch({ mtu: 1000 });
  const right = new VirtualSwitch();
  const a = await createStack({ net: left.connect(), ipv4: '10.1.0.2/24', gateway: '10.1.0.1' });
  const r1 = await createStack({
    interfaces: [
      { net: left.connect(), ipv4: '10.1.0.1/24' },
      { net: middle.connect(), ipv4: '10.2.0.1/24' },
    ],
    routes: [{ destination: '10.3.0.0/24', gateway: '10.2.0.2' }],
    forwarding: true,
  });
  const r2 = await createStack({
    interfaces: [
      { net: middle.connect(), ipv4: '10.2.0.2/24' },
      { net: right.connect(), ipv4: '10.3.0.1/24' },
    ],
    routes: [{ destination: '10.1.0.0/24', gateway: '10.2.0.1' }],
    forwarding: true,
  });
  const b = await createStack({ net: right.connect(), ipv4: '10.3.0.2/24', gateway: '10.3.0.1' });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(() => {
    clearInterval(alive);
    void Promise.all([a.close(), b.close(), r1.close(), r2.close()]);
  });
  const data = randomBytes(256 * 1024);
  const got = new Promise<Buffer>((resolve) => b.tcp.listen(80, (conn) => void collect(conn).then(resolve)));
  const client = await a.tcp.connect('10.3.0.2', 80);
  client.end(data);
  t.is(sha256(await got), sha256(data));
  const stats = a.tcp.stats();
  t.is(stats.pathMtuUpdates, 1);
  t.true(stats.icmpErrors >= 1);
});

test('congestion control per stack and per connection; info() reports cwnd and loss counters', async (t) => {
  const { a, b, close } = await pair(t, { faults: { loss: 0.02 }, tcp: { congestionControl: 'newreno' } });
  const data = randomBytes(1 << 20);
  let server!: TcpConnection;
  const got = new Promise<Buffer>((resolve) =>
    b.tcp.listen(80, (conn) => {
      server = conn;
      const chunks: Buffer[] = [];
      let length = 0;
      conn.on('data', (c: Buffer) => {
        chunks.push(c);
        length += c.length;
        if (length === data.length) resolve(Buffer.concat(chunks));
      });
    }),
  );
  const client = await a.tcp.connect('10.0.0.2', 80, { congestionControl: 'cubic' });
  client.write(data);
  // Both stay open: info() describes live connections.
  t.is(sha256(await got), sha256(data));
  const info = client.info()!;
  t.is(info.congestionControl, 'cubic');
  t.is(server.info()!.congestionControl, 'newreno', 'the stack default');
  t.true(info.cwnd >= info.mss); // an RTO near the end may leave one segment (RFC 5681 LW)
  t.true(info.srttMs !== undefined && info.srttMs >= 0);
  t.true(info.retransmits > 0 && info.retransmits === a.tcp.stats().retransmits, 'one connection: its counters are the stack counters');
  client.setCongestionControl('newreno');
  t.is(client.info()!.congestionControl, 'newreno');
  t.throws(() => client.setCongestionControl('bbr' as 'cubic'), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.throwsAsync(a.tcp.connect('10.0.0.2', 80, { congestionControl: 'vegas' as 'cubic' }), { code: 'ERR_INVALID_ARG_VALUE' });
  client.end();
  await close();
});

// Strings reach the engine without a Buffer made for each (as net.Socket writes them): every
// encoding must still put the same bytes on the wire as Buffer.from would, whether the string
// fits the stack's scratch buffer or not, and whether the send buffer has room for all of it.
test('strings written in any encoding arrive as Buffer.from would encode them, also past a full send buffer', async (t) => {
  const { a, b } = await pair(t, { tcp: { sendBuffer: 16 * 1024 } });
  // Each connection's own strings, so that bytes taken from the other's would show.
  const pieces = (k: number): Array<[string, BufferEncoding | undefined]> => [
    [`connection ${k}: plain ascii, default encoding`, undefined],
    [`ünïcödé ✓ 𝄞 mixed widths ${k}`, 'utf8'],
    [`caf\u00e9 \u00ff latin1 ${k}`, 'latin1'],
    [`binary \u00fe\u00ff ${k}`, 'binary'],
    [`ascii ${k}`, 'ascii'],
    [`48656c6c6f0${k}`, 'hex'],
    [`aGVsbG8gYmFzZTY0${k}`, 'base64'],
    [`utf16 ✓ ${k}`, 'utf16le'],
    [(k ? 'y' : 'z').repeat(10_000), 'latin1'], // most of the 16 KiB send buffer
    [(k ? '€' : '₤').repeat(5000), 'utf8'], // 15,000 bytes: fits the scratch buffer, not the room left
    [`after the pending one ✓ ${k}`, 'utf8'],
    [(k ? '€' : '₤').repeat(6000), 'utf8'], // 18,000 bytes: more than the scratch buffer holds
    [(k ? 'x' : 'w').repeat(40_000), 'latin1'],
  ];
  const expected = [0, 1].map((k) => Buffer.concat(pieces(k).map(([s, e]) => Buffer.from(s, e))));
  const received: Array<Promise<Buffer>> = [];
  let accepted = 0;
  const both = new Promise<void>((resolve) => {
    b.tcp.listen(7000, (conn) => {
      received.push(collect(conn));
      if (++accepted === 2) resolve();
    });
  });
  // Two connections of one stack share its scratch buffer: what one could not send yet must
  // not be overwritten by the other's next string.
  const clients = [await a.tcp.connect('10.0.0.2', 7000), await a.tcp.connect('10.0.0.2', 7000)];
  await both;
  const lists = [pieces(0), pieces(1)];
  for (let i = 0; i < lists[0]!.length; i++) {
    // No waiting for 'drain': later strings queue behind ones the send buffer could not take.
    clients.forEach((client, k) => {
      const [s, e] = lists[k]![i]!;
      if (e) client.write(s, e);
      else client.write(s);
    });
  }
  for (const client of clients) client.end();
  // The server may accept them in either order: match each by its first bytes.
  const got = await Promise.all(received);
  for (let k = 0; k < 2; k++) {
    const match = got.find((g) => g.subarray(0, 40).equals(expected[k]!.subarray(0, 40)));
    t.true(match?.equals(expected[k]!), `connection ${k} received exactly its bytes`);
    t.is(clients[k]!.bytesWritten, expected[k]!.length);
  }
});

// A client closing first leaves each connection's addresses in TIME_WAIT for a minute: 16,384
// ephemeral ports would last 273 connections a second to one server. With timestamps on, a
// new connection takes over addresses whose TIME_WAIT is ours (as Linux's tcp_tw_reuse does).
test('a client opening and closing 20,000 connections to one server does not run out of ephemeral ports', async (t) => {
  t.timeout(120_000);
  const { a, b } = await pair(t);
  b.tcp.listen(7000, (conn) => conn.resume());
  for (let i = 0; i < 20_000; i++) {
    const c = await a.tcp.connect('10.0.0.2', 7000);
    const closed = once(c, 'close');
    c.resume();
    c.end();
    await closed;
  }
  t.true(a.tcp.stats().timeWaitRecycled > 20_000 - 16_384, `${a.tcp.stats().timeWaitRecycled} TIME_WAIT addresses handed on`);
});
