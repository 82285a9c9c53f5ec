import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import {
  type NetDevice,
  type Stack,
  type SwitchFaults,
  type TcpConnection,
  VirtualSwitch,
  checksum,
  createStack,
  onesComplementSum,
  parseIpv6Address,
  pseudoHeaderSum6,
  seededRandom,
} from 'morgana';
import { collect, digest, sha256, writeAll } from './helpers/streams.js';

// TCP and UDP over IPv6 between in-process stacks on a VirtualSwitch (issue 10). Every frame a
// stack sends is checked on the way out: TCP and UDP checksums must verify over the IPv6
// pseudo-header (RFC 8200 §8.1).

const A6 = '2001:db8::1';
const B6 = '2001:db8::2';

interface WireCheck {
  tcp6: number;
  udp6: number;
  bad: string[];
}

/**
 * Wraps a device so every frame written through it is checked (IPv6 TCP/UDP checksums), and
 * `drop` may swallow a frame (a link with a smaller MTU further on).
 */
function checked(device: NetDevice, wire: WireCheck, drop?: (frame: Buffer) => boolean): NetDevice {
  const inspect = (frame: Buffer) => {
    if (frame.length < 54 || frame.readUInt16BE(12) !== 0x86dd) return;
    const ip = frame.subarray(14);
    const nextHeader = ip[6]!;
    if (nextHeader !== 6 && nextHeader !== 17) return; // fragments and ICMPv6 are not looked at here
    const length = ip.readUInt16BE(4);
    const upper = ip.subarray(40, 40 + length);
    if (nextHeader === 17 && upper.readUInt16BE(6) === 0) wire.bad.push('UDP over IPv6 with a zero checksum');
    if (checksum(upper, pseudoHeaderSum6(ip.subarray(8, 24), ip.subarray(24, 40), nextHeader, length)) !== 0) {
      wire.bad.push(`${nextHeader === 6 ? 'TCP' : 'UDP'} checksum does not verify over the IPv6 pseudo-header`);
    }
    if (nextHeader === 6) {
      wire.tcp6++;
      const dataOffset = (upper[12]! >> 4) * 4;
      if (dataOffset < 20 || dataOffset > upper.length) wire.bad.push(`malformed TCP header (data offset ${dataOffset})`);
      if (40 + upper.length > device.mtu) wire.bad.push(`a ${40 + upper.length}-byte IPv6 packet above the MTU`);
    } else {
      wire.udp6++;
    }
  };
  return {
    get mac() {
      return device.mac;
    },
    get mtu() {
      return device.mtu;
    },
    write: (size, fill) => {
      if (drop) {
        const frame = Buffer.alloc(size);
        const n = fill(frame);
        if (drop(frame.subarray(0, n))) return;
        device.write(n, (buffer) => {
          frame.copy(buffer, 0, 0, n);
          inspect(buffer.subarray(0, n));
          return n;
        });
        return;
      }
      device.write(size, (buffer) => {
        const n = fill(buffer);
        inspect(buffer.subarray(0, n));
        return n;
      });
    },
    listen: (handler) => device.listen(handler),
    stats: () => device.stats(),
    close: () => device.close(),
  };
}

async function pair(t: ExecutionContext, options: { faults?: SwitchFaults; mtu?: number; ipv4?: boolean } = {}) {
  const sw = new VirtualSwitch({ faults: options.faults, mtu: options.mtu, random: seededRandom(0x1_0_6) });
  const wire: WireCheck = { tcp6: 0, udp6: 0, bad: [] };
  const make = (n: number) =>
    createStack({
      net: checked(sw.connect(), wire),
      ...(options.ipv4 ? { ipv4: `10.0.0.${n}/24` } : {}),
      ipv6: { address: `2001:db8::${n}/64`, dadTransmits: 0 },
    });
  const a = await make(1);
  const b = await make(2);
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
    wire,
    close: async () => {
      clearInterval(alive);
      await Promise.all([a.close(), b.close()]);
      t.deepEqual(wire.bad.slice(0, 5), [], 'every IPv6 segment and datagram on the wire verifies');
    },
  };
}

/** `size` bytes each way between a (client) and b (server on port 7000), compared by SHA-256. */
async function exchange(t: ExecutionContext, a: Stack, b: Stack, host: string, size: number) {
  const up = randomBytes(size);
  const down = randomBytes(size);
  let serverGot!: Promise<Buffer>;
  const accepted = new Promise<TcpConnection>((resolve) => {
    b.tcp.listen(
      7000,
      (conn) => {
        serverGot = collect(conn);
        void writeAll(conn, down);
        resolve(conn);
      },
      { allowHalfOpen: true },
    );
  });
  const client = await a.tcp.connect(host, 7000, { allowHalfOpen: true });
  const clientGot = collect(client);
  const closed = once(client, 'close');
  await writeAll(client, up);
  const server = await accepted;
  const [gotUp, gotDown] = await Promise.all([serverGot, clientGot]);
  await closed;
  t.is(sha256(gotUp), sha256(up));
  t.is(sha256(gotDown), sha256(down));
  return { client, server };
}

test('4 MiB each way over IPv6, SHA-256 equal; addresses in RFC 5952 text', async (t) => {
  const { a, b, wire, close } = await pair(t);
  const { client, server } = await exchange(t, a, b, '2001:0db8:0:0::2', 4 << 20);
  t.is(client.remoteFamily, 'IPv6');
  t.is(client.remoteAddress, B6, 'canonical text, whatever the caller wrote');
  t.is(client.localAddress, A6);
  t.deepEqual(client.address(), { address: A6, family: 'IPv6', port: client.localPort });
  t.is(server.remoteAddress, A6);
  t.is(server.remotePort, client.localPort);
  t.is(server.localFamily, 'IPv6');
  const sa = a.tcp.stats();
  // Nothing is lost on a clean link, so no loss recovery may start; a timer-driven probe
  // (TLP/RTO) can still fire spuriously when the machine stalls the event loop, so it is not counted.
  t.is(sa.fastRetransmits + b.tcp.stats().fastRetransmits, 0);
  t.is(sa.badChecksum + b.tcp.stats().badChecksum, 0);
  t.is(sa.sendFailures, 0);
  t.true(wire.tcp6 > 2 * ((4 << 20) / 1440), `${wire.tcp6} IPv6 segments checked`);
  await close();
});

test('4 MiB each way over IPv6 with 1 % loss, reordering and duplication', async (t) => {
  const { a, b, sw, close } = await pair(t, { faults: { loss: 0.01, reorder: 0.01, duplicate: 0.01 } });
  await exchange(t, a, b, B6, 4 << 20);
  t.true(sw.stats().lost > 0);
  t.true(a.tcp.stats().retransmits + b.tcp.stats().retransmits > 0);
  await close();
});

test('segments fit the IPv6 MTU: MSS is MTU − 60', async (t) => {
  const { a, b, wire, close } = await pair(t, { mtu: 1280 });
  const got = new Promise<Buffer>((resolve) => b.tcp.listen(80, (conn) => void collect(conn).then(resolve)));
  const data = randomBytes(100_000);
  const conn = await a.tcp.connect(B6, 80);
  conn.end(data);
  t.is(sha256(await got), sha256(data));
  // 100 000 bytes in segments of at most 1280 − 40 − 20 − 12 (timestamps) = 1208 bytes.
  t.true(wire.tcp6 >= Math.ceil(100_000 / 1208), `${wire.tcp6} segments`);
  t.deepEqual(wire.bad, [], 'none above the MTU');
  await close();
});

test('Packet Too Big from a router lowers the segment size and the transfer completes', async (t) => {
  // a's frames pass a "router" whose next link has MTU 1400: bigger IPv6 packets are dropped and
  // answered with ICMPv6 Packet Too Big (RFC 4443 §3.2) from the router's address.
  const sw = new VirtualSwitch();
  const wire: WireCheck = { tcp6: 0, udp6: 0, bad: [] };
  const LIMIT = 1400;
  let dropped = 0;
  let router!: Stack;
  const report = (frame: Buffer, type: number, code: number, parameter: number) => {
    const invoking = frame.subarray(14, 14 + 1280 - 48);
    const message = Buffer.alloc(8 + invoking.length);
    message[0] = type;
    message[1] = code;
    message.writeUInt32BE(parameter, 4);
    invoking.copy(message, 8);
    queueMicrotask(() => router.icmpv6!.send(A6, message));
  };
  const filter = (frame: Buffer): boolean => {
    if (frame.readUInt16BE(12) !== 0x86dd) return false;
    // Beyond the router, ports 81 and 82 are unreachable: administratively prohibited (a hard
    // error) and address unreachable (a soft one).
    const port = frame[14 + 6] === 6 ? frame.readUInt16BE(14 + 40 + 2) : 0;
    if (port === 81 || port === 82) {
      report(frame, 1, port === 81 ? 1 : 3, 0);
      return true;
    }
    if (frame.length - 14 <= LIMIT) return false;
    dropped++;
    report(frame, 2, 0, LIMIT); // Packet Too Big
    return true;
  };
  const a = await createStack({
    net: checked(sw.connect(), wire, filter),
    ipv6: { address: `${A6}/64`, dadTransmits: 0 },
    tcp: { rtoInitialMs: 200, synRetries: 2 },
  });
  const b = await createStack({ net: checked(sw.connect(), wire), ipv6: { address: `${B6}/64`, dadTransmits: 0 } });
  router = await createStack({ net: sw.connect(), ipv6: { address: '2001:db8::fe/64', dadTransmits: 0 } });
  const alive = setInterval(() => {}, 1_000);
  t.teardown(() => {
    clearInterval(alive);
    void Promise.all([a.close(), b.close(), router.close()]);
  });
  const data = randomBytes(512 * 1024);
  const got = new Promise<Buffer>((resolve) => b.tcp.listen(80, (conn) => void collect(conn).then(resolve)));
  const client = await a.tcp.connect(B6, 80);
  client.end(data);
  t.is(sha256(await got), sha256(data));
  t.true(dropped > 0);
  const stats = a.tcp.stats();
  t.is(stats.pathMtuUpdates, 1);
  t.true(stats.icmpErrors >= 1);
  t.true(a.ipv6!.pathMtuEntries().some((e) => e.destination === B6 && e.mtu === LIMIT));
  t.deepEqual(wire.bad, []);
  // Destination unreachable: a hard error fails the connect at once, a soft one when it times
  // out (RFC 1122 §4.2.3.9), reported as EHOSTUNREACH rather than ETIMEDOUT.
  const timeouts = a.tcp.stats().timeouts;
  await t.throwsAsync(a.tcp.connect(B6, 81), { code: 'ECONNREFUSED' });
  t.is(a.tcp.stats().timeouts, timeouts, 'refused before any SYN retransmission');
  await t.throwsAsync(a.tcp.connect(B6, 82), { code: 'EHOSTUNREACH' });
  t.true(a.tcp.stats().timeouts > timeouts);
});

test('a dual-stack listener accepts an IPv4 and an IPv6 client at once; ipv6Only refuses IPv4', async (t) => {
  const { a, b, close } = await pair(t, { ipv4: true });
  const accepted: TcpConnection[] = [];
  const both = new Promise<void>((resolve) =>
    b.tcp.listen(80, (conn) => {
      accepted.push(conn);
      conn.end(`hello ${conn.remoteFamily} ${conn.remoteAddress}`);
      if (accepted.length === 2) resolve();
    }),
  );
  const [c4, c6] = await Promise.all([a.tcp.connect('10.0.0.2', 80), a.tcp.connect(B6, 80)]);
  await both;
  t.is((await collect(c4)).toString(), 'hello IPv4 10.0.0.1');
  t.is((await collect(c6)).toString(), `hello IPv6 ${A6}`);
  t.is(c4.remoteFamily, 'IPv4');
  t.is(c6.remoteFamily, 'IPv6');
  t.deepEqual(accepted.map((c) => c.localAddress).sort(), ['10.0.0.2', B6]);
  // An IPv4-mapped address is IPv4.
  const mapped = await a.tcp.connect('::ffff:10.0.0.2', 80);
  t.is(mapped.remoteFamily, 'IPv4');
  t.is(mapped.remoteAddress, '10.0.0.2');
  mapped.destroy();

  // One port, one listener per family.
  t.throws(() => b.tcp.listen(80, () => {}, { ipv6Only: true }), { code: 'EADDRINUSE' });
  const only6 = b.tcp.listen(81, (conn) => conn.end('six'), { ipv6Only: true });
  t.is(only6.family, 'IPv6');
  const only4 = b.tcp.listen(81, (conn) => conn.end('four'), { host: '0.0.0.0' });
  t.is(only4.family, 'IPv4');
  t.is((await collect(await a.tcp.connect(B6, 81))).toString(), 'six');
  t.is((await collect(await a.tcp.connect('10.0.0.2', 81))).toString(), 'four');
  only4.close();
  await t.throwsAsync(a.tcp.connect('10.0.0.2', 81), { code: 'ECONNREFUSED' });
  t.is((await collect(await a.tcp.connect(B6, 81))).toString(), 'six', 'closing one family leaves the other');
  t.throws(() => b.tcp.listen(82, () => {}, { host: '10.0.0.2' as '::' }), { code: 'ERR_INVALID_ARG_VALUE' });
  await close();
});

test('RST to a closed IPv6 port: ECONNREFUSED; IPv6 without a route or on an IPv4-only stack: ERR_NO_ROUTE', async (t) => {
  const { a, b, close } = await pair(t);
  const before = b.tcp.stats();
  const error = await t.throwsAsync(a.tcp.connect(B6, 9), { code: 'ECONNREFUSED' });
  t.regex(error!.message, /\[2001:db8::2\]:9/);
  const after = b.tcp.stats();
  t.is(after.closedPort - before.closedPort, 1);
  t.is(after.resetsSent - before.resetsSent, 1);
  await t.throwsAsync(a.tcp.connect('2001:db8:1::9', 80), { code: 'ERR_NO_ROUTE' });
  t.throws(() => a.udp.send('2001:db8:1::9', 53, Buffer.from('x')), { code: 'ERR_NO_ROUTE' });
  await t.throwsAsync(a.tcp.connect('fe80::2%net7', 80), { code: 'ERR_NO_ROUTE' });
  await t.throwsAsync(a.tcp.connect('2001:db8::zz', 80), { code: 'ERR_INVALID_IP_ADDRESS' });

  const sw = new VirtualSwitch();
  const v4only = await createStack({ net: sw.connect(), ipv4: '10.9.0.1/24' });
  t.teardown(() => v4only.close());
  t.is(v4only.ipv6, undefined);
  await t.throwsAsync(v4only.tcp.connect(B6, 80), { code: 'ERR_NO_ROUTE' });
  t.throws(() => v4only.udp.send(B6, 53, Buffer.from('x')), { code: 'ERR_NO_ROUTE' });
  await close();
});

test('a link-local destination with a zone', async (t) => {
  const { a, b, close } = await pair(t);
  const linkLocal = b.ipv6!.addresses().find((x) => x.startsWith('fe80:'))!;
  t.truthy(linkLocal);
  b.tcp.listen(80, (conn) => conn.end(conn.localAddress));
  const conn = await a.tcp.connect(`${linkLocal}%net0`, 80);
  t.is((await collect(conn)).toString(), linkLocal);
  t.true(conn.localAddress.startsWith('fe80:'), 'a link-local source for a link-local destination (RFC 6724)');
  await close();
});

test("Node's http.Server over an IPv6 connection", async (t) => {
  const { a, b, close } = await pair(t);
  const server = http.createServer((req, res) => {
    void digest(req).then(({ sha, length }) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, bytes: length, sha, from: req.socket.remoteAddress, family: req.socket.remoteFamily }));
    });
  });
  b.tcp.listen(80, (conn) => server.emit('connection', conn), { allowHalfOpen: true });
  const body = randomBytes(300_000);
  const conn = await a.tcp.connect(B6, 80);
  const reply = await new Promise<string>((resolve, reject) => {
    const req = http.request({ method: 'POST', path: '/v6', createConnection: () => conn as never }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    req.on('error', reject);
    req.end(body);
  });
  t.deepEqual(JSON.parse(reply), { url: '/v6', bytes: body.length, sha: sha256(body), from: A6, family: 'IPv6' });
  server.close();
  await close();
});

test('UDP over IPv6 both ways, including a datagram larger than the MTU', async (t) => {
  const { a, b, wire, close } = await pair(t);
  const atB: Array<{ data: Buffer; from: string; port: number; family?: string; to: string; hopLimit: number }> = [];
  const atA: Buffer[] = [];
  const sockB = b.udp.bind(5353, (data, from, info) => {
    atB.push({ data, from: from.address, port: from.port, family: from.family, to: info.to, hopLimit: info.ttl });
    sockB.send(from.address, from.port, Buffer.concat([Buffer.from('echo:'), data]));
  });
  const sockA = a.udp.bind(0, (data) => atA.push(data));
  const small = Buffer.from('over IPv6');
  const big = randomBytes(4000);
  const gotBoth = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (atA.length >= 2) {
        clearInterval(check);
        resolve();
      }
    }, 5);
  });
  sockA.send(B6, 5353, small);
  sockA.send(B6, 5353, big);
  await gotBoth;
  t.deepEqual(atB[0], { data: small, from: A6, port: sockA.port, family: 'IPv6', to: B6, hopLimit: 64 });
  t.true(atB[1]!.data.equals(big), 'a 4000-byte datagram crosses a 1500-byte MTU (fragmented and reassembled)');
  t.true(atA[0]!.equals(Buffer.concat([Buffer.from('echo:'), small])));
  t.true(atA[1]!.equals(Buffer.concat([Buffer.from('echo:'), big])));
  t.true(a.ipv6!.stats().fragmentsSent > 0);
  t.is(b.udp.stats().received, 2);
  t.true(wire.udp6 >= 2);
  // Don't-fragment refuses rather than fragments.
  t.throws(() => sockA.send(B6, 5353, big, { dontFragment: true }), { code: 'ERR_FRAGMENTATION_NEEDED' });
  await close();
});

test('UDP over IPv6: zero checksums are dropped and counted, bad ones too; a closed port answers ICMPv6', async (t) => {
  const { a, b, wire, close } = await pair(t);
  const got: Buffer[] = [];
  b.udp.bind(7, (data) => got.push(data));
  const src = parseIpv6Address(A6);
  const dst = parseIpv6Address(B6);
  const raw = (payload: Buffer, sum: (header: Buffer) => number, dstPort = 7) => {
    const header = Buffer.alloc(8);
    header.writeUInt16BE(40_000, 0);
    header.writeUInt16BE(dstPort, 2);
    header.writeUInt16BE(8 + payload.length, 4);
    header.writeUInt16BE(sum(header), 6);
    a.ipv6!.write(dst, 17, { payloads: [header, payload], src });
  };
  const correct = (payload: Buffer) => (header: Buffer) => checksum(payload, onesComplementSum(header, pseudoHeaderSum6(src, dst, 17, 8 + payload.length)));
  raw(Buffer.from('zero'), () => 0);
  raw(Buffer.from('wrong'), (h) => (correct(Buffer.from('wrong'))(h) + 1) & 0xffff);
  raw(Buffer.from('right'), correct(Buffer.from('right')));
  const errors: string[] = [];
  const sock = a.udp.bind(40_001, () => {});
  sock.onError((e) => errors.push(e.code));
  sock.send(B6, 9999, Buffer.from('nobody'));
  for (let i = 0; i < 100 && (got.length < 1 || errors.length < 1); i++) await new Promise((r) => setTimeout(r, 5));
  t.deepEqual(got.map(String), ['right']);
  // The wire check saw the two forged datagrams for what they are: a zero checksum (which
  // does not verify either) and a wrong one.
  t.deepEqual(wire.bad.splice(0), [
    'UDP over IPv6 with a zero checksum',
    'UDP checksum does not verify over the IPv6 pseudo-header',
    'UDP checksum does not verify over the IPv6 pseudo-header',
  ]);
  const s = b.udp.stats();
  t.is(s.zeroChecksum, 1);
  t.is(s.badChecksum, 1);
  t.is(s.noPort, 1);
  t.deepEqual(errors, ['ERR_UDP_PORT_UNREACHABLE']);
  await close();
});
