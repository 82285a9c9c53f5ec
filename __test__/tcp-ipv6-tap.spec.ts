/**
 * TCP and UDP over IPv6 against the Linux kernel (issue 10): a Morgana stack on a TAP device
 * inside a network namespace the test creates, the kernel side at 2001:db8::1/64 (documentation
 * prefix, no DAD) and Morgana at 2001:db8::2/64. curl -6, python3's http.server bound to `::`,
 * socat UDP6 both ways, and tshark's judgement of a captured session.
 */
import test from 'ava';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Stack } from 'morgana';
import { expectedSha, generated, generatorShell } from './helpers/generated.js';
import {
  MIB,
  connectWhenListening,
  curlDownload,
  curlUpload,
  httpGetOver,
  serveHttp,
  synOptions,
  tsharkCount,
  tsharkProblems,
  withTapStack as withTap,
} from './helpers/kernel-tcp.js';
import { type Netns, kernelTest } from './helpers/netns.js';
import { digest } from './helpers/streams.js';

const KERNEL = '2001:db8::1';
const MORGANA = '2001:db8::2';
const HTTP = { url: `http://[${MORGANA}]:8080`, flags: '-6 -g' };

/** Runs `body` with an IPv6-only stack on a TAP whose kernel side is KERNEL/64, in a fresh namespace. */
function withTapStack(setup: { pcap?: string }, body: (stack: Stack, ns: Netns) => Promise<void>): Promise<void> {
  const kernel = async (ns: Netns) => {
    await ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=0']);
    await ns.ip('-6', 'addr', 'add', `${KERNEL}/64`, 'dev', 'mtap6', 'nodad');
  };
  return withTap({ ...setup, name: 'mtap6', kernel, stack: { ipv6: { address: `${MORGANA}/64`, dadTransmits: 0 } } }, body);
}

kernelTest(test, 'curl -6 downloads and uploads 20 MiB from/to a Morgana http.Server over IPv6, SHA-256 equal', async (t) => {
  t.timeout(180_000);
  const size = 20 * MIB;
  const expected = await expectedSha(size);
  await withTapStack({}, async (stack, ns) => {
    const server = serveHttp(stack, 8080);
    try {
      const down = await curlDownload(ns, HTTP, size, 100_000);
      t.is(down.sha, expected, 'download intact');
      t.is(down.peer, `IPv6 ${KERNEL}`, "the server saw the kernel's IPv6 address");
      const up = await curlUpload(ns, HTTP, size, 100_000);
      t.is(up.answer, `${expected} ${size}`, 'upload intact');
      const stats = stack.tcp.stats();
      t.is(stats.badChecksum, 0);
      t.is(stats.sendFailures, 0);
      const steered = stack.ethernet.net.stats().rxSteered ?? 0;
      t.true(steered > size / 65_536, `the kernel's IPv6 segments went into the engine a batch at a time (steered): ${steered} frames`);
      t.log(`20 MiB over IPv6: download ${down.mbps.toFixed(1)} MB/s, upload ${up.mbps.toFixed(1)} MB/s; retransmits ${stats.retransmits}`);
    } finally {
      server.close();
    }
  });
}, ['curl', 'openssl']);

kernelTest(test, 'a Morgana client fetches 16 MiB from python3 -m http.server --bind :: over IPv6', async (t) => {
  t.timeout(120_000);
  const size = 16 * MIB;
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-tcp6-tap-'));
  try {
    await pipeline(generated(size), createWriteStream(path.join(dir, 'blob')));
    const expected = await expectedSha(size);
    await withTapStack({}, async (stack, ns) => {
      ns.spawn('python3', ['-m', 'http.server', '8000', '--bind', '::', '--directory', dir], { stdio: 'ignore' });
      // Until python listens, the kernel answers RST: retry for a while.
      const conn = await connectWhenListening(stack, KERNEL, 8000);
      t.is(conn.remoteFamily, 'IPv6');
      t.is(conn.remoteAddress, KERNEL);
      t.is(conn.localAddress, MORGANA);
      const got = await httpGetOver(conn, KERNEL, 8000, '/blob');
      t.is(got.status, 200);
      t.is(got.length, size);
      t.is(got.sha, expected);
      // A port nobody listens on: the kernel's RST refuses the connection.
      await t.throwsAsync(stack.tcp.connect(KERNEL, 9), { code: 'ECONNREFUSED' });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, ['python3']);

kernelTest(test, 'socat UDP6 both ways, with datagrams larger than the MTU; tshark finds every checksum good', async (t) => {
  t.timeout(60_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-udp6-tap-'));
  const pcap = path.join(dir, 'udp6.pcap');
  try {
    await withTapStack({ pcap }, async (stack, ns) => {
      // Kernel → Morgana: socat sends to Morgana's bound port (small, then a 3000-byte datagram
      // the kernel fragments and Morgana reassembles).
      const received: Array<{ data: Buffer; from: string; family?: string }> = [];
      stack.udp.bind(7000, (data, from) => received.push({ data, from: from.address, family: from.family }));
      await ns.exec('bash', ['-c', `printf 'hello from the kernel' | socat -u - 'UDP6-SENDTO:[${MORGANA}]:7000'`]);
      await ns.exec('bash', ['-c', `head -c 3000 /dev/zero | tr '\\0' 'k' | socat -u -b 4000 - 'UDP6-SENDTO:[${MORGANA}]:7000'`]);
      for (let i = 0; i < 100 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      t.deepEqual(received[0], { data: Buffer.from('hello from the kernel'), from: KERNEL, family: 'IPv6' });
      t.true(received[1]?.data.equals(Buffer.alloc(3000, 'k')), 'a fragmented 3000-byte datagram reassembled');

      // Morgana → kernel and back: a socat echo server in the namespace (it drops datagrams
      // whose checksum fails, so an echo proves ours good).
      ns.spawn('socat', ['-b', '8192', `UDP6-LISTEN:7001,bind=[${KERNEL}],fork`, 'PIPE'], { stdio: 'ignore' });
      const echoes: Buffer[] = [];
      const sock = stack.udp.bind(0, (data) => echoes.push(data));
      const ask = async (payload: Buffer): Promise<Buffer> => {
        const before = echoes.length;
        for (let i = 0; i < 100 && echoes.length === before; i++) {
          sock.send(KERNEL, 7001, payload);
          await new Promise((r) => setTimeout(r, 50));
        }
        return echoes[before]!;
      };
      t.deepEqual(await ask(Buffer.from('ping over IPv6')), Buffer.from('ping over IPv6'));
      const big = Buffer.alloc(3000, 'm');
      t.true((await ask(big))?.equals(big), 'a 3000-byte datagram fragmented by Morgana, echoed by the kernel');
      t.is(stack.udp.stats().badChecksum + stack.udp.stats().zeroChecksum, 0);
    });
    t.is(tsharkProblems(pcap, ['tcp', 'udp']), '', 'tshark finds no malformed packets or bad checksums');
    t.true(tsharkCount(pcap, 'udp && ipv6.src == 2001:db8::2 && udp.checksum.status == "Good"') >= 2, 'our UDP checksums verified by tshark');
    t.true(tsharkCount(pcap, 'ipv6.fragment') > 0, 'fragments in both directions were captured');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, ['socat', 'tshark']);

kernelTest(test, 'tshark: an IPv6 TCP session each way has good checksums, no malformed segments and MSS 1440', async (t) => {
  t.timeout(60_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-tcp6-tap-'));
  const pcap = path.join(dir, 'session.pcap');
  try {
    const size = 2 * MIB;
    const expected = await expectedSha(size);
    await withTapStack({ pcap }, async (stack, ns) => {
      const server = serveHttp(stack, 8080);
      try {
        t.is((await curlDownload(ns, HTTP, size, 20_000)).sha, expected);
        t.is((await curlUpload(ns, HTTP, size, 20_000)).answer, `${expected} ${size}`);
      } finally {
        server.close();
      }
      // An active open: a Morgana client reads 2 MiB from socat listening on TCP6.
      ns.spawn('socat', ['-U', `TCP6-LISTEN:9000,bind=[${KERNEL}],reuseaddr`, `SYSTEM:${generatorShell(size)}`], { stdio: 'ignore' });
      const got = await digest(await connectWhenListening(stack, KERNEL, 9000));
      t.deepEqual(got, { sha: expected, length: size }, 'socat → Morgana intact');
    });
    t.is(tsharkProblems(pcap, ['tcp', 'udp']), '', 'tshark finds no malformed segments or bad checksums');
    t.true(tsharkCount(pcap, 'tcp && ipv6.src == 2001:db8::2 && tcp.checksum.status == "Good"') > 1000, 'our TCP checksums verified by tshark');
    const syns = synOptions(pcap, 'ipv6.src');
    t.true(syns.length >= 6, `three handshakes captured: ${JSON.stringify(syns)}`);
    // MTU 1500 − 40 (IPv6) − 20 (TCP), from both sides.
    for (const syn of syns) t.is(syn.mss, 1440, JSON.stringify(syn));
    t.is(syns.filter((s) => s.src === MORGANA && s.synAck).length, 2, 'Morgana answered the two curls');
    t.true(syns.some((s) => s.src === MORGANA && !s.synAck), 'and opened one');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, ['curl', 'openssl', 'tshark', 'socat']);
