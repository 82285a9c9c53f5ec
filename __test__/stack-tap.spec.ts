/**
 * Kernel interop over TAP: a Morgana stack on a TAP device inside a network namespace the test
 * creates, with Linux's own stack and Debian's tools (ping, socat) as the peers, and tshark
 * judging a capture of the session.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ReassemblerOptions, type Stack, createStack, openTap, pcapRecorder } from 'morgana';
import { PAYLOADS_AS_DATA } from './helpers/kernel-tcp.js';
import { type Netns, kernelTest, withNetns } from './helpers/netns.js';

const KERNEL = '10.88.0.1';
const MORGANA = '10.88.0.2';

/** Runs `body` with a stack on a TAP whose kernel side is KERNEL/24, recording to a pcap. */
async function withTapStack(
  body: (stack: Stack, ns: Netns, pcap: string, dir: string) => Promise<void>,
  reassembly: ReassemblerOptions | undefined = { maxFragments: 64 },
): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-tap-stack-'));
  const pcap = path.join(dir, 'session.pcap');
  try {
    await withNetns(async (ns) => {
      const tap = await openTap({ name: 'mtap1', netns: ns.name });
      await ns.ip('addr', 'add', `${KERNEL}/24`, 'dev', 'mtap1');
      await ns.ip('link', 'set', 'mtap1', 'up');
      const stack = await createStack({
        net: pcapRecorder(tap, pcap),
        ipv4: `${MORGANA}/24`,
        gateway: KERNEL,
        reassembly,
      });
      try {
        await body(stack, ns, pcap, dir);
      } finally {
        await stack.close();
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Resolves once a UDP socket in the namespace is bound to `port` (socat was just started). */
async function udpBound(ns: Netns, port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await ns.exec('ss', ['-Hnul', `sport = :${port}`])).stdout.trim() !== '') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing bound UDP port ${port} in the namespace within 10 s`);
}

/** Frames tshark flags: malformed, expert errors, bad IPv4, UDP or ICMP checksums. Payloads are read as data. */
function tsharkProblems(pcap: string): string {
  return execFileSync(
    'tshark',
    ['-r', pcap, ...PAYLOADS_AS_DATA, '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-Y',
      '_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == "Bad" || udp.checksum.status == "Bad" || icmp.checksum.status == "Bad"',
      '-T', 'fields', '-e', 'frame.number', '-e', '_ws.expert.message'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  ).trim();
}

kernelTest(test, 'the kernel pings the stack: 100 echoes, then 4000-byte echoes fragmented both ways', async (t) => {
  await withTapStack(async (stack, ns, pcap) => {
    const quick = await ns.exec('ping', ['-c', '100', '-i', '0.01', '-W', '2', MORGANA], { timeoutMs: 30_000 });
    t.regex(quick.stdout, /100 packets transmitted, 100 received, 0% packet loss/);
    const big = await ns.exec('ping', ['-c', '5', '-i', '0.05', '-s', '4000', '-W', '2', MORGANA], { timeoutMs: 30_000 });
    t.regex(big.stdout, /5 packets transmitted, 5 received, 0% packet loss/);
    t.regex(big.stdout, /4008 bytes from 10\.88\.0\.2/);
    t.true(stack.ipv4.stats().reassembly.reassembled >= 5, 'the kernel fragmented its echo requests');
    t.true(stack.ipv4.stats().fragmentsSent >= 5 * 3, 'and we fragmented the replies');
    t.is(tsharkProblems(pcap), '', 'tshark finds no malformed packets or bad checksums');
  });
}, ['ping', 'tshark']);

kernelTest(test, 'the stack pings the kernel, small and fragmented', async (t) => {
  await withTapStack(async (stack) => {
    const small = await stack.icmp.ping(KERNEL, { timeoutMs: 3000 });
    t.is(small.from, KERNEL);
    t.is(small.ttl, 64);
    const big = await stack.icmp.ping(KERNEL, { size: 6000, timeoutMs: 3000 });
    t.is(big.bytes, 6008, 'the kernel reassembled our fragments and its reply reassembled here');
  });
}, ['ping']);

kernelTest(test, 'UDP both ways with socat, including an 8000-byte datagram the kernel fragments', async (t) => {
  await withTapStack(async (stack, ns, pcap) => {
    // Kernel → Morgana: an echo service on the stack answers socat.
    const echo = stack.udp.bind(7, (data, from) => echo.send(from.address, from.port, Buffer.concat([Buffer.from('echo:'), data])));
    const reply = await ns.exec('sh', ['-c', `printf hello | socat -T 3 - UDP4:${MORGANA}:7`], { timeoutMs: 10_000 });
    t.is(reply.stdout, 'echo:hello');

    const big = new Promise<Buffer>((resolve) => {
      const s = stack.udp.bind(5000, (data) => {
        s.close();
        resolve(data);
      });
    });
    await ns.exec('sh', ['-c', `head -c 8000 /dev/zero | tr '\\0' 'z' | socat -u -b 9000 - UDP4-SENDTO:${MORGANA}:5000`]);
    const data = await big;
    t.is(data.length, 8000);
    t.true(data.every((b) => b === 0x7a));

    // Morgana → kernel: socat receives what the stack sends, small and fragmented.
    const receiver = ns.spawn('socat', ['-u', '-b', '70000', `UDP4-RECV:9000,bind=${KERNEL}`, 'STDOUT']);
    let received = '';
    receiver.stdout!.on('data', (chunk: Buffer) => (received += chunk.toString()));
    await udpBound(ns, 9000);
    stack.udp.send(KERNEL, 9000, Buffer.from('from-morgana;'));
    stack.udp.send(KERNEL, 9000, Buffer.alloc(7000, 'q'));
    for (let i = 0; i < 50 && received.length < 13 + 7000; i++) await new Promise((r) => setTimeout(r, 100));
    receiver.kill();
    t.true(received.startsWith('from-morgana;'));
    t.is(received.length, 13 + 7000);
    t.is(tsharkProblems(pcap), '');
  });
}, ['socat', 'tshark']);

kernelTest(test, 'with the default limits, 32 KiB and 65,507-byte UDP datagrams from the kernel at MTU 1500 arrive intact, and ours reach it', async (t) => {
  const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
  await withTapStack(async (stack, ns, pcap, dir) => {
    // Kernel → Morgana: socat sends each file as one datagram, which the kernel cuts into 23
    // and 45 fragments (a 32 KiB one is what iperf3 -u sends by default).
    const datagrams = [randomBytes(32 * 1024), randomBytes(65_507)];
    const received: Buffer[] = [];
    const socket = stack.udp.bind(5000, (data) => received.push(Buffer.from(data)));
    for (const [i, data] of datagrams.entries()) {
      const file = path.join(dir, `datagram-${i}`);
      writeFileSync(file, data);
      await ns.exec('socat', ['-u', '-b', '70000', `OPEN:${file}`, `UDP4-SENDTO:${MORGANA}:5000`], { timeoutMs: 10_000 });
    }
    for (let i = 0; i < 50 && received.length < datagrams.length; i++) await new Promise((r) => setTimeout(r, 100));
    socket.close();
    t.deepEqual(received.map(sha256), datagrams.map(sha256));
    const r = stack.ipv4.stats().reassembly;
    t.is(r.reassembled, 2);
    t.is(r.fragments, 23 + 45);
    t.is(r.droppedTooManyFragments, 0);

    // Morgana → kernel: the largest datagram, fragmented here and reassembled by Linux.
    const receiver = ns.spawn('socat', ['-u', '-b', '70000', `UDP4-RECV:9001,bind=${KERNEL}`, 'STDOUT']);
    const chunks: Buffer[] = [];
    receiver.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
    await udpBound(ns, 9001);
    const ours = randomBytes(65_507);
    stack.udp.send(KERNEL, 9001, ours);
    for (let i = 0; i < 50 && Buffer.concat(chunks).length < ours.length; i++) await new Promise((r) => setTimeout(r, 100));
    receiver.kill();
    t.is(sha256(Buffer.concat(chunks)), sha256(ours));
    t.is(tsharkProblems(pcap), '');
  }, undefined);
}, ['socat', 'tshark']);
