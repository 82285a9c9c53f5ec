/**
 * IPv6 against the Linux kernel over TAP, inside a network namespace the test creates: the
 * kernel and the stack ping each other (link-local and global, fragmented echoes included), the
 * stack configures itself from dnsmasq's router advertisements (SLAAC, default router, RDNSS),
 * and tshark judges the capture.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type PcapRecorder, type Stack, type StackOptions, createStack, formatIpv6Address, openTap, parseIpv6Address, pcapRecorder } from 'morgana';
import { type Netns, kernelTest, withNetns } from './helpers/netns.js';

const TAP = 'm6tap0';
const KERNEL = '2001:db8:1::1';
const MORGANA = '2001:db8:1::2';

interface Session {
  stack: Stack;
  ns: Netns;
  /** The capture of everything the stack sent and received (flushed by the tshark helpers). */
  pcap: PcapRecorder & { file: string };
  /** The kernel's link-local address on the TAP. */
  kernelLinkLocal: string;
}

/** Runs `body` with a stack on a TAP whose kernel side has KERNEL/64, recording to a pcap. */
async function withTap6(ipv6: StackOptions['ipv6'], body: (s: Session) => Promise<void>, before?: (ns: Netns) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'morgana-ipv6-tap-'));
  const pcap = path.join(dir, 'session.pcap');
  try {
    await withNetns(async (ns) => {
      const tap = await openTap({ name: TAP, netns: ns.name });
      // The namespace starts with IPv6 off; turn it on for this link only, without the kernel's
      // own DAD delay, and without letting the kernel autoconfigure from anything it hears.
      await ns.exec('sysctl', ['-qw', `net.ipv6.conf.${TAP}.disable_ipv6=0`, `net.ipv6.conf.${TAP}.accept_dad=0`, `net.ipv6.conf.${TAP}.accept_ra=0`]);
      await ns.ip('-6', 'addr', 'add', `${KERNEL}/64`, 'dev', TAP, 'nodad');
      await ns.ip('link', 'set', TAP, 'up');
      const kernelLinkLocal = await linkLocalOf(ns);
      await before?.(ns);
      const recorder = Object.assign(pcapRecorder(tap, pcap), { file: pcap });
      const stack = await createStack({ net: recorder, ipv6 });
      try {
        await body({ stack, ns, pcap: recorder, kernelLinkLocal });
      } finally {
        await stack.close();
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function linkLocalOf(ns: Netns): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const { stdout } = await ns.exec('ip', ['-6', '-j', 'addr', 'show', 'dev', TAP]);
    const infos = (JSON.parse(stdout || '[]') as Array<{ addr_info?: Array<{ local: string; scope: string }> }>).flatMap((x) => x.addr_info ?? []);
    const ll = infos.find((a) => a.scope === 'link');
    if (ll) return ll.local;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the kernel has no link-local address on the TAP');
}

/** Frames tshark flags: malformed, expert errors, bad ICMPv6 checksums. */
function tsharkProblems(pcap: Session['pcap']): string {
  pcap.flush();
  return execFileSync(
    'tshark',
    ['-r', pcap.file, '-Y', '_ws.malformed || _ws.expert.severity >= error || icmpv6.checksum.status == "Bad"', '-T', 'fields', '-e', 'frame.number', '-e', '_ws.expert.message'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  ).trim();
}

/** How many frames of the capture match a display filter. */
function tsharkCount(pcap: Session['pcap'], filter: string): number {
  pcap.flush();
  const out = execFileSync('tshark', ['-r', pcap.file, '-Y', filter, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter(Boolean).length;
}

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

kernelTest(test, 'the kernel pings the stack over IPv6: link-local, global, and 4000-byte echoes fragmented both ways', async (t) => {
  await withTap6(`${MORGANA}/64`, async ({ stack, ns, pcap }) => {
    await stack.slaac!.settled();
    const ll = stack.ipv6!.addresses().find((a) => a.startsWith('fe80:'))!;
    const local = await ns.exec('ping', ['-6', '-c', '20', '-i', '0.05', '-W', '2', `${ll}%${TAP}`], { timeoutMs: 30_000 });
    t.regex(local.stdout, /20 packets transmitted, 20 received, 0% packet loss/);
    const global = await ns.exec('ping', ['-6', '-c', '20', '-i', '0.05', '-W', '2', MORGANA], { timeoutMs: 30_000 });
    t.regex(global.stdout, /20 packets transmitted, 20 received, 0% packet loss/);
    const big = await ns.exec('ping', ['-6', '-c', '3', '-i', '0.1', '-s', '4000', '-W', '2', MORGANA], { timeoutMs: 30_000 });
    t.regex(big.stdout, /3 packets transmitted, 3 received, 0% packet loss/);
    t.regex(big.stdout, /4008 bytes from 2001:db8:1::2/);
    t.true(stack.ipv6!.stats().reassembly.reassembled >= 3, 'the kernel fragmented its echo requests');
    t.true(stack.ipv6!.stats().fragmentsSent >= 3 * 3, 'and we fragmented the replies');
    t.is(stack.stats().icmpv6!.badChecksum, 0);
    // The kernel resolved us with neighbour discovery, and we answered.
    t.true(stack.stats().nd!.neighborAdvertisementsSent >= 1);
    t.is(tsharkProblems(pcap), '', 'tshark finds no malformed packets or bad checksums');
    t.true(tsharkCount(pcap, 'icmpv6.type == 129 && ipv6.src == 2001:db8:1::2') >= 23);
  });
}, ['ping', 'tshark']);

kernelTest(test, 'the stack pings the kernel over IPv6, link-local and global, small and fragmented', async (t) => {
  await withTap6({ address: `${MORGANA}/64`, dadTransmits: 0 }, async ({ stack, pcap, kernelLinkLocal }) => {
    const small = await stack.icmpv6!.ping(KERNEL, { timeoutMs: 3000 });
    t.is(small.from, KERNEL);
    t.is(small.hopLimit, 64);
    t.deepEqual([...small.data], Array.from({ length: 56 }, (_, i) => i));
    const local = await stack.icmpv6!.ping(kernelLinkLocal, { timeoutMs: 3000, size: 500 });
    t.is(local.from, kernelLinkLocal);
    t.is(local.data.length, 500);
    const big = await stack.icmpv6!.ping(KERNEL, { size: 6000, timeoutMs: 3000 });
    t.is(big.bytes, 6008, 'the kernel reassembled our fragments and its reply was reassembled here');
    t.deepEqual([...big.data], Array.from({ length: 6000 }, (_, i) => i & 0xff));
    t.true(stack.ndp!.neighbours().some((n) => n.address === KERNEL && n.state === 'REACHABLE'));
    t.is(tsharkProblems(pcap), '', 'tshark finds no malformed packets or bad checksums');
    // tshark agrees our neighbour solicitations carry our MAC and reached the solicited-node group.
    t.true(tsharkCount(pcap, `icmpv6.type == 135 && icmpv6.nd.ns.target_address == ${KERNEL} && ipv6.dst == ff02::1:ff00:1 && icmpv6.opt.linkaddr == ${stack.ethernet.net.mac}`) >= 1);
  });
}, ['tshark']);

kernelTest(test, 'the stack configures itself from dnsmasq router advertisements: SLAAC address, default router, RDNSS', async (t) => {
  let dnsmasqLog = '';
  let stop: (() => Promise<void>) | undefined;
  try {
    await withTap6(
      'auto',
      async ({ stack, ns, pcap, kernelLinkLocal }) => {
        const global = () => stack.ipv6!.addresses().find((a) => a.startsWith('2001:db8:1:'));
        await waitFor(`a SLAAC address (dnsmasq said: ${dnsmasqLog})`, () => global() !== undefined, 20_000);
        const address = global()!;
        const info = stack.slaac!.addresses().find((a) => a.address === address)!;
        t.is(info.origin, 'slaac');
        t.is(info.prefixLength, 64);
        t.true(info.validLifetimeMs > 0);
        // A stable, opaque identifier (RFC 7217), not the EUI-64 of our MAC.
        const mac = stack.ethernet.mac;
        const eui64 = Buffer.from([mac[0]! ^ 2, mac[1]!, mac[2]!, 0xff, 0xfe, mac[3]!, mac[4]!, mac[5]!]);
        t.false(parseIpv6Address(address).subarray(8).equals(eui64));
        const routers = stack.ipv6!.interfaces[0]!.routers.map((r) => formatIpv6Address(r.address));
        t.deepEqual(routers, [kernelLinkLocal], 'dnsmasq (the kernel side) is the default router');
        await waitFor('RDNSS servers', () => stack.dns.servers.includes('2001:db8:1::53'), 10_000);
        t.deepEqual(stack.dns.servers, ['2001:db8:1::53']);
        // Off-link destinations are routed to it.
        t.is(formatIpv6Address(stack.ipv6!.route(parseIpv6Address('2001:db8:99::1'))!.nextHop), kernelLinkLocal);
        // Both ways over the autoconfigured address.
        const reply = await stack.icmpv6!.ping(KERNEL, { timeoutMs: 3000 });
        t.is(reply.from, KERNEL);
        const ping = await ns.exec('ping', ['-6', '-c', '5', '-i', '0.1', '-W', '2', address], { timeoutMs: 20_000 });
        t.regex(ping.stdout, /5 packets transmitted, 5 received, 0% packet loss/);
        t.true(stack.stats().nd!.routerAdvertisementsReceived >= 1);
        t.is(stack.stats().slaac!.dadFailed, 0);
        t.is(tsharkProblems(pcap), '', 'tshark finds no malformed packets or bad checksums');
        t.true(tsharkCount(pcap, `icmpv6.type == 135 && ipv6.src == :: && icmpv6.nd.ns.target_address == ${address}`) >= 1, 'DAD probed the address');
        t.true(tsharkCount(pcap, 'icmpv6.type == 143 && icmpv6.mldr.mar.record_type == 4') >= 1, 'MLDv2 reports for our groups');
      },
      async (ns) => {
        const dnsmasq = ns.spawn('dnsmasq', [
          '--no-daemon',
          '--port=0',
          '--enable-ra',
          '--dhcp-range=2001:db8:1::,ra-only,64,1h',
          '--dhcp-option=option6:dns-server,[2001:db8:1::53]',
          '--no-resolv',
          '--no-hosts',
          '--conf-file=/dev/null',
          `--interface=${TAP}`,
          '--bind-interfaces',
          '--pid-file=',
          '--user=root',
          '--log-dhcp',
          '--log-facility=-',
        ]);
        dnsmasq.stdout!.on('data', (d: Buffer) => (dnsmasqLog += d.toString()));
        dnsmasq.stderr!.on('data', (d: Buffer) => (dnsmasqLog += d.toString()));
        const exited = new Promise<void>((resolve) => dnsmasq.once('exit', () => resolve()));
        for (let i = 0; i < 100 && !/started, version/.test(dnsmasqLog) && dnsmasq.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
        if (dnsmasq.exitCode !== null) throw new Error(`dnsmasq exited: ${dnsmasqLog}`);
        stop = async () => {
          dnsmasq.kill('SIGTERM');
          await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
        };
      },
    );
  } finally {
    await stop?.();
  }
}, ['dnsmasq', 'ping', 'tshark']);
