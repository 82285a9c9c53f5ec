/**
 * `morgana iperf3`: an iperf3-protocol server (`-s`) or client (`-c HOST`) on a Morgana stack
 * over a TAP device, so that Debian's `iperf3` and Morgana can measure each other.
 * @module
 */
import { parseArgs } from 'node:util';
import { type Iperf3Result, runIperf3Client, startIperf3Server } from '../apps/iperf3.js';
import type { Command } from '../cli.js';
import { EXIT_USAGE } from '../cli.js';
import { openTap } from '../net/tap.js';
import { createStack } from '../stack/index.js';

const USAGE = `morgana iperf3 (-s | -c HOST) --tap NAME --ipv4 ADDR/PREFIX [options]

  -s, --server          serve iperf3 tests (one at a time) until Ctrl-C
  -1, --one-off         with -s: serve one test, then exit
  -c, --client HOST     run one test against the iperf3 server at HOST
  --tap NAME            TAP device for the userspace stack (created if missing; needs root)
  --netns NS            network namespace to create the TAP device in
  --ipv4 ADDR/PREFIX    the stack's address, e.g. 10.0.0.2/24
  --gateway ADDR        default gateway
  -p, --port PORT       server port (default 5201)
  -t, --time SECONDS    test duration (default 10)
  -P, --parallel N      parallel streams (default 1)
  -R, --reverse         reverse mode: the server sends
  -l, --length BYTES    block size (default 131072)
  -J, --json            print the result as JSON`;

function formatBits(bps: number): string {
  const units = ['bits/sec', 'Kbits/sec', 'Mbits/sec', 'Gbits/sec'];
  let v = bps;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(2)} ${units[u]}`;
}

function formatBytes(n: number): string {
  const units = ['Bytes', 'KBytes', 'MBytes', 'GBytes'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

/** A short iperf3-like text report. */
export function formatIperf3Result(result: Iperf3Result): string {
  const line = (label: string, s: Iperf3Result['end']['sum_sent']) =>
    `[SUM]   0.00-${s.seconds.toFixed(2)} sec  ${formatBytes(s.bytes).padStart(12)}  ${formatBits(s.bits_per_second).padStart(16)}  ${label}`;
  const lines = result.intervals.map(
    (i) => `[SUM]   ${i.sum.start.toFixed(2)}-${i.sum.end.toFixed(2)} sec  ${formatBytes(i.sum.bytes).padStart(12)}  ${formatBits(i.sum.bits_per_second).padStart(16)}`,
  );
  return [
    `Connected ${result.start.test_start.num_streams} stream(s), ${result.start.test_start.reverse ? 'reverse mode' : 'normal mode'}`,
    ...lines,
    '- - - - - - - - - - - - - - - - - - - - - - - - -',
    line('sender', result.end.sum_sent),
    line('receiver', result.end.sum_received),
    '',
  ].join('\n');
}

/** The iperf3 command. */
export const iperf3: Command = {
  summary: 'iperf3-protocol server or client on a userspace stack over a TAP device',
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
          port: { type: 'string', short: 'p', default: '5201' },
          time: { type: 'string', short: 't', default: '10' },
          parallel: { type: 'string', short: 'P', default: '1' },
          reverse: { type: 'boolean', short: 'R' },
          length: { type: 'string', short: 'l', default: '131072' },
          json: { type: 'boolean', short: 'J' },
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
    if (typeof values.tap !== 'string' || typeof values.ipv4 !== 'string') return usage('--tap NAME and --ipv4 ADDR/PREFIX are required');
    const port = Number(values.port);
    const duration = Number(values.time);
    const parallel = Number(values.parallel);
    const blockSize = Number(values.length);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) return usage(`bad port ${String(values.port)}`);
    if (!(duration > 0)) return usage(`bad duration ${String(values.time)}`);
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 128) return usage(`bad stream count ${String(values.parallel)}`);
    if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 1 << 20) return usage(`bad block size ${String(values.length)}`);

    const tap = await openTap({ name: values.tap, ...(typeof values.netns === 'string' ? { netns: values.netns } : {}) });
    const stack = await createStack({
      net: tap,
      ipv4: values.ipv4,
      ...(typeof values.gateway === 'string' ? { gateway: values.gateway } : {}),
    });
    const print = (result: Iperf3Result): void => {
      process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : formatIperf3Result(result));
    };
    try {
      if (host !== undefined) {
        const result = await runIperf3Client(stack, host, { port, duration, parallel, reverse: values.reverse === true, blockSize });
        print(result);
        return 0;
      }
      const oneOff = values['one-off'] === true;
      const srv = startIperf3Server(stack, {
        port,
        oneOff,
        onResult: print,
        onError: (error) => process.stderr.write(`morgana iperf3: test failed: ${error.message}\n`),
      });
      process.stderr.write(`Server listening on ${values.ipv4.split('/')[0]} port ${port} (TAP ${values.tap})\n`);
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
      await stack.close();
    }
  },
};
