import type { Start } from 'morgana/config';
import type config from './config.js';

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** One echo request to `address`: ICMPv6 for an IPv6 address, ICMP otherwise. */
async function echoRequest(stack: Parameters<Start<typeof config>>[0]['stack'], address: string, size: number, timeoutMs: number) {
  if (!address.includes(':')) {
    const reply = await stack.icmp.ping(address, { size, timeoutMs });
    return { bytes: reply.bytes, from: reply.from, ttl: reply.ttl, rttMs: reply.rttMs };
  }
  if (!stack.icmpv6) throw new Error('this stack has no IPv6 (--ipv4-only?)');
  const reply = await stack.icmpv6.ping(address, { size, timeoutMs });
  return { bytes: reply.bytes, from: reply.from, ttl: reply.hopLimit, rttMs: reply.rttMs };
}

/**
 * Pings each address given as a boot argument (IPv4 or IPv6) `--count` times and prints one line
 * per reply and a summary per address. Exits 0 when every address answered, 1 otherwise, 64
 * without addresses.
 */
export const start: Start<typeof config> = async ({ stack }, { keys, argv, signal }) => {
  if (argv.length === 0) {
    console.error('ping: give the addresses to ping as boot arguments, e.g. morgana run -- 10.0.0.1');
    return 64;
  }
  let allAnswered = true;
  for (const address of argv) {
    const rtts: number[] = [];
    for (let seq = 1; seq <= keys.count && !signal.aborted; seq++) {
      try {
        const reply = await echoRequest(stack, address, keys.size, keys.timeout);
        rtts.push(reply.rttMs);
        console.log(`${reply.bytes} bytes from ${reply.from}: icmp_seq=${seq} ttl=${reply.ttl} time=${reply.rttMs.toFixed(3)} ms`);
      } catch (error) {
        console.log(`${address}: icmp_seq=${seq} ${(error as Error).message}`);
      }
      if (seq < keys.count) await sleep(keys.interval, signal);
    }
    const loss = keys.count === 0 ? 0 : Math.round((100 * (keys.count - rtts.length)) / keys.count);
    const stats = rtts.length
      ? `, rtt min/avg/max = ${Math.min(...rtts).toFixed(3)}/${(rtts.reduce((a, b) => a + b, 0) / rtts.length).toFixed(3)}/${Math.max(...rtts).toFixed(3)} ms`
      : '';
    console.log(`--- ${address}: ${keys.count} sent, ${rtts.length} received, ${loss}% loss${stats}`);
    if (rtts.length === 0) allAnswered = false;
  }
  return allAnswered ? 0 : 1;
};
