/**
 * `morgana iperf3`: an iperf3-protocol server (`-s`) or client (`-c HOST`) on a Morgana stack
 * over a TAP device, or (`--vnet`, no root) on an in-process virtual network: a server whose
 * gateway forwards a host port to it, or a client whose gateway relays its connections and
 * datagrams to the server on the host, so that Debian's `iperf3` and Morgana can measure each
 * other. The options and the text report follow iperf3's.
 * @module
 */
import { parseArgs } from 'node:util';
import {
  IPERF3_DEFAULT_WINDOW,
  type Iperf3Interval,
  type Iperf3IntervalSum,
  type Iperf3Result,
  type Iperf3Sum,
  runIperf3Client,
  startIperf3Server,
} from '../apps/iperf3.js';
import type { Command } from './command.js';
import { EXIT_USAGE } from './command.js';
import { VirtualSwitch } from '../net/vswitch.js';
import { type Stack, createStack, parseCidr } from '../stack/index.js';
import { parseIpv4Address } from '../address.js';
import { VNET_PORT_OFFLOADS, describeTapOffloads, openTapNet } from '../config/devices.js';
import { DEFAULT_VNET_MTU } from '../config/targets.js';
import { type Running, vnetForwards, vnetGateway } from '../config/vnet-gateway.js';
import { relayOutbound } from './vnet-outbound.js';

/** The `--vnet` gateway's address, where the client's connections leave the virtual network. */
const VNET_GATEWAY = '10.0.0.1';

/** The `--vnet` server's address on its virtual network (the gateway is .1, as on the vnet target). */
const VNET_GUEST = '10.0.0.2/24';
/** The port the `--vnet` server listens on inside the virtual network. */
const VNET_GUEST_PORT = 5201;

const USAGE = `morgana iperf3 (-s | -c HOST) --tap NAME --ipv4 ADDR/PREFIX [options]
       morgana iperf3 (-s | -c HOST) --vnet [-p PORT] [options]

  -s, --server          serve iperf3 tests (one at a time) until Ctrl-C
  -1, --one-off         with -s: serve one test, then exit
  -c, --client HOST     run one test against the iperf3 server at HOST
  --tap NAME            TAP device for the userspace stack (created if missing; needs root)
  --netns NS            network namespace to create the TAP device in
  --ipv4 ADDR/PREFIX    the stack's address, e.g. 10.0.0.2/24
  --gateway ADDR        default gateway
  --no-offload          open the TAP without the kernel's checksum and TCP segmentation
                        offloads (plain 1514-byte frames both ways)
  --vnet                no root: the stack is ${VNET_GUEST} on an in-process virtual network
                        behind a gateway at ${VNET_GATEWAY}. With -s, served through
                        127.0.0.1:PORT (TCP and UDP) forwarded by the gateway (-p 0 picks a
                        free host port; the chosen one is printed; for -u tests the client
                        needs -l 1472 or less: larger datagrams are not fragmented on the
                        virtual link and get lost). With -c HOST, the client connects to the
                        gateway's PORT, which relays TCP and UDP to HOST:PORT from the host
  -p, --port PORT       server port (default 5201; with --vnet, the forwarded host port)
  -i, --interval SECS   seconds between interval reports (default 1; 0 for none)
  -J, --json            print the result as JSON (iperf3 -J shape)
  -w, --window N[KMG]   TCP send and receive buffer per connection (default 4M, the most Linux's
                        autotuning gives a socket; Morgana's TCP does not autotune)
 client only:
  -u, --udp             UDP streams instead of TCP
  -b, --bitrate N[KMG]  target bits/sec per stream (UDP default 1M; TCP default unlimited; 0 = unlimited)
  -t, --time SECONDS    test duration (default 10)
  -n, --bytes N[KMG]    transfer N bytes instead of running for a time
  -k, --blockcount N[KMG] transfer N blocks instead of running for a time
  -O, --omit SECONDS    leave the first SECONDS out of the results
  -P, --parallel N      parallel streams (default 1)
  -R, --reverse         reverse mode: the server sends
  --bidir               bidirectional mode: both ends send
  -l, --length N[KMG]   bytes per write, or per datagram with -u (default 128K, or 1460 with -u)
  --udp-counters-64bit  64-bit datagram counters`;

/** iperf3's sizes: K, M, G, T are powers of 1024. */
function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmgt]?)$/i.exec(text);
  if (!m) return Number.NaN;
  const scale = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * scale);
}

/** iperf3's rates: K, M, G, T are powers of 1000; a `/burst` suffix is accepted and ignored. */
function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmgt]?)(?:\/\d+)?$/i.exec(text);
  if (!m) return Number.NaN;
  const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * scale);
}

/** A figure with three significant digits and an adaptive unit, as iperf3 prints them. */
function adaptive(value: number, base: number, units: readonly string[]): string {
  let v = value;
  let u = 0;
  while (Math.abs(v) >= base && u < units.length - 1) {
    v /= base;
    u++;
  }
  const digits = Math.abs(v) < 9.995 ? 2 : Math.abs(v) < 99.95 ? 1 : 0;
  return `${v.toFixed(digits).padStart(4)} ${units[u]}`;
}

/** Bytes in iperf3's units (powers of 1024). */
export function formatBytes(n: number): string {
  return adaptive(n, 1024, ['Bytes', 'KBytes', 'MBytes', 'GBytes', 'TBytes']);
}

/** Bits per second in iperf3's units (powers of 1000). */
export function formatBits(bps: number): string {
  return adaptive(bps, 1000, ['bits/sec', 'Kbits/sec', 'Mbits/sec', 'Gbits/sec', 'Tbits/sec']);
}

type Span = Pick<Iperf3Sum, 'start' | 'end' | 'bytes' | 'bits_per_second'> &
  Partial<Pick<Iperf3Sum, 'jitter_ms' | 'lost_packets' | 'packets' | 'lost_percent'>>;

/** `[  1][TX-C]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec` and, for UDP, the datagram columns. */
function line(id: string, role: string, s: Span, udp: 'sender' | 'receiver' | undefined, label: string): string {
  const head = `[${id.padStart(3)}]${role} ${s.start.toFixed(2).padStart(6)}-${s.end.toFixed(2).padEnd(6)} sec  ${formatBytes(s.bytes)}  ${formatBits(s.bits_per_second)}`;
  let tail = '';
  if (udp === 'sender') tail = `  ${s.packets ?? 0}`;
  else if (udp === 'receiver') {
    tail = `  ${(s.jitter_ms ?? 0).toFixed(3)} ms  ${s.lost_packets ?? 0}/${s.packets ?? 0} (${Number((s.lost_percent ?? 0).toPrecision(2))}%)`;
  }
  return `${head}${tail}${label ? `  ${label}` : ''}`;
}

/** Role tag of bidirectional tests, `[TX-C]` and so on. */
function roleTag(bidir: boolean, sender: boolean, server: boolean): string {
  return bidir ? `[${sender ? 'TX' : 'RX'}-${server ? 'S' : 'C'}]` : '';
}

/** The lines printed when a test starts. */
export function formatIperf3Start(start: Iperf3Result['start'], server: boolean): string {
  const t = start.test_start;
  const lines = start.connected.map(
    (c) => `[${String(c.id).padStart(3)}] local ${c.local_host} port ${c.local_port} connected to ${c.remote_host} port ${c.remote_port}`,
  );
  if (!server && t.reverse) lines.push(`Reverse mode, remote host ${start.connected[0]?.remote_host ?? '?'} is sending`);
  const what = t.bytes > 0 ? `${t.bytes} bytes to send` : t.blocks > 0 ? `${t.blocks} blocks to send` : `${t.duration} second test`;
  lines.push(`Starting Test: protocol: ${t.protocol}, ${t.num_streams} streams, ${t.blksize} byte blocks, omitting ${t.omit} seconds, ${what}`);
  return `${lines.join('\n')}\n`;
}

/** The header of interval reports. */
export function formatIperf3IntervalHeader(start: Iperf3Result['start'], server: boolean): string {
  const t = start.test_start;
  const id = t.bidir ? '[ ID][Role]' : '[ ID]';
  if (t.protocol !== 'UDP') return `${id} Interval           Transfer     Bitrate\n`;
  const receives = server ? !t.reverse || t.bidir : t.reverse || t.bidir;
  return `${id} Interval           Transfer     Bitrate         ${receives ? 'Jitter    Lost/Total Datagrams' : 'Total Datagrams'}\n`;
}

/**
 * One interval report: a line per stream, and `[SUM]` lines when a direction has several
 * streams; with several streams or directions, reports after the first are set apart by a
 * separator line.
 */
export function formatIperf3Interval(interval: Iperf3Interval, start: Iperf3Result['start'], server: boolean, first: boolean): string {
  const t = start.test_start;
  const udp = t.protocol === 'UDP';
  const mark = (omitted: boolean) => (omitted ? '(omitted)' : '');
  const lines = !first && (t.num_streams > 1 || t.bidir) ? ['- - - - - - - - - - - - - - - - - - - - - - - - -'] : [];
  lines.push(...interval.streams.map((s) =>
    line(String(s.id), roleTag(t.bidir === 1, s.sender, server), s, udp ? (s.sender ? 'sender' : 'receiver') : undefined, mark(s.omitted)),
  ));
  if (t.num_streams > 1) {
    for (const sum of [interval.sum, interval.sum_bidir_reverse].filter((x): x is Iperf3IntervalSum => x !== undefined)) {
      lines.push(line('SUM', roleTag(t.bidir === 1, sum.sender, server), sum, udp ? (sum.sender ? 'sender' : 'receiver') : undefined, mark(sum.omitted)));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The summary at the end of a test, iperf3-like. */
export function formatIperf3Result(result: Iperf3Result, server = false): string {
  const t = result.start.test_start;
  const udp = t.protocol === 'UDP';
  const bidir = t.bidir === 1;
  const e = result.end;
  const lines = ['- - - - - - - - - - - - - - - - - - - - - - - - -'];
  lines.push(`${bidir ? '[ ID][Role]' : '[ ID]'} Interval           Transfer     Bitrate${udp ? '         Jitter    Lost/Total Datagrams' : ''}`);
  for (const stream of e.streams) {
    if ('udp' in stream) {
      const u = stream.udp;
      lines.push(line(String(u.id), roleTag(bidir, u.sender, server), u, 'receiver', ''));
    } else {
      const tag = roleTag(bidir, stream.sender.sender, server);
      lines.push(line(String(stream.sender.id), tag, stream.sender, undefined, 'sender'));
      lines.push(line(String(stream.receiver.id), tag, stream.receiver, undefined, 'receiver'));
    }
  }
  const sums: Array<[Iperf3Sum | undefined, Iperf3Sum | undefined]> = [
    [e.sum_sent, e.sum_received],
    [e.sum_sent_bidir_reverse, e.sum_received_bidir_reverse],
  ];
  if (udp || t.num_streams > 1) {
    for (const [sent, received] of sums) {
      if (sent) lines.push(line('SUM', roleTag(bidir, udp ? !received?.sender : sent.sender, server), sent, udp ? 'receiver' : undefined, 'sender'));
      if (received) lines.push(line('SUM', roleTag(bidir, udp ? !received.sender : received.sender, server), received, udp ? 'receiver' : undefined, 'receiver'));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The iperf3 command. */
export const iperf3: Command = {
  summary: 'iperf3-protocol server or client on a userspace stack over a TAP device, or on a virtual network (--vnet, no root)',
  usage: USAGE,
  async run(args) {
    let values: Record<string, string | boolean | undefined>;
    try {
      ({ values } = parseArgs({
        args,
        options: {
          server: { type: 'boolean', short: 's' },
          'one-off': { type: 'boolean', short: '1' },
          client: { type: 'string', short: 'c' },
          tap: { type: 'string' },
          netns: { type: 'string' },
          ipv4: { type: 'string' },
          gateway: { type: 'string' },
          'no-offload': { type: 'boolean' },
          vnet: { type: 'boolean' },
          port: { type: 'string', short: 'p', default: '5201' },
          interval: { type: 'string', short: 'i', default: '1' },
          json: { type: 'boolean', short: 'J' },
          window: { type: 'string', short: 'w' },
          udp: { type: 'boolean', short: 'u' },
          bitrate: { type: 'string', short: 'b' },
          time: { type: 'string', short: 't' },
          bytes: { type: 'string', short: 'n' },
          blockcount: { type: 'string', short: 'k' },
          omit: { type: 'string', short: 'O', default: '0' },
          parallel: { type: 'string', short: 'P', default: '1' },
          reverse: { type: 'boolean', short: 'R' },
          bidir: { type: 'boolean' },
          length: { type: 'string', short: 'l' },
          'udp-counters-64bit': { type: 'boolean' },
        },
      }));
    } catch (error) {
      process.stderr.write(`morgana iperf3: ${(error as Error).message}\n\nusage: ${USAGE}\n`);
      return EXIT_USAGE;
    }
    const usage = (message: string): number => {
      process.stderr.write(`morgana iperf3: ${message}\n\nusage: ${USAGE}\n`);
      return EXIT_USAGE;
    };
    const server = values.server === true;
    const host = typeof values.client === 'string' ? values.client : undefined;
    if (server === (host !== undefined)) return usage('give exactly one of -s or -c HOST');
    const vnet = values.vnet === true;
    if (vnet && (values.tap !== undefined || values.netns !== undefined || values.ipv4 !== undefined || values.gateway !== undefined || values['no-offload'] !== undefined)) {
      return usage('--vnet takes no --tap, --netns, --ipv4, --gateway or --no-offload (the virtual network is addressed 10.0.0.0/24)');
    }
    if (!vnet && (typeof values.tap !== 'string' || typeof values.ipv4 !== 'string')) return usage('--tap NAME and --ipv4 ADDR/PREFIX are required (or --vnet, without root)');
    const text = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
    const port = Number(values.port);
    const interval = Number(values.interval);
    const udp = values.udp === true;
    const duration = text('time') === undefined ? 10 : Number(text('time'));
    const bytes = text('bytes') === undefined ? 0 : parseSize(text('bytes')!);
    const blocks = text('blockcount') === undefined ? 0 : parseSize(text('blockcount')!);
    const omit = Number(values.omit);
    const parallel = Number(values.parallel);
    const blockSize = text('length') === undefined ? undefined : parseSize(text('length')!);
    const bitrate = text('bitrate') === undefined ? undefined : parseRate(text('bitrate')!);
    if (!Number.isInteger(port) || port < (vnet && server ? 0 : 1) || port > 65_535) return usage(`bad port ${String(values.port)}`);
    if (!(interval === 0 || (interval >= 0.1 && interval <= 60))) return usage(`bad interval ${String(values.interval)} (0, or 0.1 to 60 seconds)`);
    if (!(duration > 0 && duration <= 86_400)) return usage(`bad duration ${String(values.time)}`);
    if (!Number.isSafeInteger(bytes) || bytes < 0) return usage(`bad byte count ${String(values.bytes)}`);
    if (!Number.isSafeInteger(blocks) || blocks < 0) return usage(`bad block count ${String(values.blockcount)}`);
    if (!Number.isInteger(omit) || omit < 0 || omit > 600) return usage(`bad omit ${String(values.omit)}`);
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 128) return usage(`bad stream count ${String(values.parallel)}`);
    if (blockSize !== undefined && (!Number.isInteger(blockSize) || blockSize < (udp ? 16 : 1) || blockSize > (udp ? 65_507 : 1 << 20))) {
      return usage(`bad block size ${String(values.length)}`);
    }
    if (bitrate !== undefined && !Number.isSafeInteger(bitrate)) return usage(`bad bitrate ${String(values.bitrate)}`);
    const window = text('window') === undefined ? IPERF3_DEFAULT_WINDOW : parseSize(text('window')!);
    if (!Number.isInteger(window) || window < 1024 || window > 1 << 30) return usage(`bad window ${String(values.window)} (1K to 1G)`);
    const buffers = { sendBuffer: window, recvBuffer: window };
    if (values.reverse === true && values.bidir === true) return usage('-R and --bidir exclude each other');

    // Addresses are checked before the TAP device is opened: an error after it would leave its
    // reader holding the process open (the command printed its error and hung).
    let stack: Stack;
    let where: string;
    // --vnet: the gateway of the vnet target and its host port forwards, in front of the server.
    let gateway: Running | undefined;
    let forwards: Running | undefined;
    // -c --vnet: the client connects to the gateway, which relays to the host.
    let target = host;
    if (vnet && host !== undefined) {
      const sw = new VirtualSwitch({ mtu: DEFAULT_VNET_MTU });
      const gw = await vnetGateway(sw, { dhcp: false, ipv4: VNET_GUEST, gateway: undefined, ipv6: false, ipv6Only: false, ipv6Address: undefined, gateway6: undefined });
      gateway = gw;
      try {
        stack = await createStack({ net: sw.connect({ offloads: VNET_PORT_OFFLOADS }), ipv4: VNET_GUEST, gateway: VNET_GATEWAY, tcp: buffers });
      } catch (error) {
        await gw.stop();
        throw error;
      }
      forwards = relayOutbound(gw.stack, host, port, (message) => process.stderr.write(`morgana iperf3: vnet gateway: ${message}\n`));
      target = VNET_GATEWAY;
      where = `${host} port ${port} (vnet: from ${VNET_GUEST.split('/')[0]} through the gateway ${VNET_GATEWAY})`;
    } else if (vnet) {
      const sw = new VirtualSwitch({ mtu: DEFAULT_VNET_MTU });
      const guest = VNET_GUEST.split('/')[0]!;
      const gw = await vnetGateway(sw, { dhcp: false, ipv4: VNET_GUEST, gateway: undefined, ipv6: false, ipv6Only: false, ipv6Address: undefined, gateway6: undefined });
      gateway = gw;
      try {
        stack = await createStack({ net: sw.connect({ offloads: VNET_PORT_OFFLOADS }), ipv4: VNET_GUEST, gateway: '10.0.0.1', tcp: buffers });
      } catch (error) {
        await gw.stop();
        throw error;
      }
      try {
        // TCP first (its port may be 0, a free one), then UDP on the same host port for -u tests.
        const tcp = await vnetForwards(gw.stack, { forward: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: port, guestAddress: guest, guestPort: VNET_GUEST_PORT }] }, guest);
        const hostPort = Number(tcp.list[0]!.host.split(':').pop());
        const udp = await vnetForwards(gw.stack, { forward: [{ protocol: 'udp', hostAddress: '127.0.0.1', hostPort, guestAddress: guest, guestPort: VNET_GUEST_PORT }] }, guest).catch(
          (error: Error) => {
            process.stderr.write(`morgana iperf3: no UDP forward, -u tests will fail: ${error.message}\n`);
            return undefined;
          },
        );
        forwards = { stop: async () => void (await udp?.stop(), await tcp.stop()) };
        where = `127.0.0.1 port ${hostPort} (vnet: forwarded to ${guest} port ${VNET_GUEST_PORT})`;
      } catch (error) {
        await stack.close();
        await gw.stop();
        if ((error as { code?: unknown }).code === 'ERR_FORWARD') return usage((error as Error).message.replace(/^--forward \S+: /, `-p ${port}: `));
        throw error;
      }
    } else {
      if (typeof values.tap !== 'string' || typeof values.ipv4 !== 'string') return usage('--tap NAME and --ipv4 ADDR/PREFIX are required');
      try {
        parseCidr(values.ipv4);
        if (typeof values.gateway === 'string') parseIpv4Address(values.gateway);
      } catch (error) {
        return usage((error as Error).message);
      }
      // With the kernel's offloads unless --no-offload: TCP super-frames out, GRO'd frames in.
      const tap = await openTapNet({ name: values.tap, offload: values['no-offload'] !== true, ...(typeof values.netns === 'string' ? { netns: values.netns } : {}) });
      try {
        stack = await createStack({
          net: tap,
          ipv4: values.ipv4,
          tcp: buffers,
          ...(typeof values.gateway === 'string' ? { gateway: values.gateway } : {}),
        });
      } catch (error) {
        await tap.close();
        throw error;
      }
      where = `${values.ipv4.split('/')[0]} port ${port} (${describeTapOffloads(tap, values['no-offload'] !== true)})`;
    }
    const json = values.json === true;
    const out = (s: string): void => void process.stdout.write(s);
    // Live reports in text mode: the streams when the test starts, then each interval.
    let started: Iperf3Result['start'] | undefined;
    let reports = 0;
    const onStart = (start: Iperf3Result['start']): void => {
      started = start;
      reports = 0;
      if (json) return;
      out(formatIperf3Start(start, server));
      if (interval > 0) out(formatIperf3IntervalHeader(start, server));
    };
    const onInterval = (i: Iperf3Interval): void => {
      if (!json && started) out(formatIperf3Interval(i, started, server, reports++ === 0));
    };
    const print = (result: Iperf3Result): void => {
      out(json ? `${JSON.stringify(result, null, 2)}\n` : formatIperf3Result(result, server));
    };
    try {
      if (host !== undefined) {
        if (!json) out(`Connecting to host ${vnet ? where : `${host}, port ${port}`}\n`);
        const result = await runIperf3Client(stack, target!, {
          port,
          protocol: udp ? 'UDP' : 'TCP',
          duration,
          bytes,
          blocks,
          omit,
          interval,
          parallel,
          reverse: values.reverse === true,
          bidir: values.bidir === true,
          ...(blockSize !== undefined && { blockSize }),
          ...(bitrate !== undefined && { bitrate }),
          udpCounters64: values['udp-counters-64bit'] === true,
          onStart,
          onInterval,
        });
        print(result);
        if (!json) out('\niperf Done.\n');
        return 0;
      }
      const oneOff = values['one-off'] === true;
      const srv = startIperf3Server(stack, {
        port: vnet ? VNET_GUEST_PORT : port,
        oneOff,
        interval,
        onStart,
        onInterval,
        onResult: print,
        onError: (error) => process.stderr.write(`morgana iperf3: test failed: ${error.message}\n`),
      });
      process.stderr.write(`Server listening on ${where}\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          srv.close();
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        if (oneOff) {
          const next = (): void => void srv.nextResult().then(stop, next);
          next();
        }
      });
      return 0;
    } finally {
      await forwards?.stop();
      await stack.close();
      await gateway?.stop();
    }
  },
};
