/**
 * `morgana demo`: a short end-to-end tour of the Rust packet core through its public API.
 * @module
 */
import { parseArgs } from 'node:util';
import { type Command, EXIT_USAGE } from './command.js';
import { checksum, ipv4, Reassembler } from '../index.js';

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** `text` as a whole number in [min, max], or a message saying what is wrong. */
function wholeNumber(text: string, name: string, min: number, max: number): number | string {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) return `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`;
  return n;
}

/** The demo command. */
export const demo: Command = {
  summary: 'Fragment, scramble and reassemble a datagram through the Rust core, and report',
  usage: 'morgana demo [--size BYTES] [--mtu BYTES]',
  async run(args) {
    let values: { size: string; mtu: string };
    try {
      ({ values } = parseArgs({
        args,
        options: { size: { type: 'string', default: '60000' }, mtu: { type: 'string', default: '1500' } },
      }) as { values: { size: string; mtu: string } });
    } catch (error) {
      process.stderr.write(`morgana demo: ${(error as Error).message}\nusage: ${demo.usage}\n`);
      return EXIT_USAGE;
    }
    // An IPv4 datagram holds at most 65535 - 20 header bytes; fragments need room for 8 bytes of data.
    const size = wholeNumber(values.size, '--size', 0, 65_515);
    const mtu = wholeNumber(values.mtu, '--mtu', 68, 65_535);
    if (typeof size === 'string' || typeof mtu === 'string') {
      process.stderr.write(`morgana demo: ${typeof size === 'string' ? size : mtu}\nusage: ${demo.usage}\n`);
      return EXIT_USAGE;
    }
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) payload[i] = (i * 131 + 17) & 0xff;
    const packet = ipv4.emit({ src: '10.0.0.1', dst: '10.0.0.2', protocol: ipv4.PROTOCOL.UDP, identification: 7 }, payload);

    const fragments = ipv4.fragment(packet, mtu);
    // Arrival order scrambled, with two duplicates, as a lossy switch might deliver them.
    const arrivals = shuffled([...fragments, fragments[0]!, fragments[fragments.length - 1]!]);
    const reassembler = new Reassembler({ maxFragments: 64 });
    let whole: Uint8Array | undefined;
    for (const f of arrivals) whole = reassembler.push(f, Date.now()) ?? whole;
    const intact = whole !== undefined && Buffer.compare(Buffer.from(whole), packet) === 0;
    const header = whole ? ipv4.parse(whole) : undefined;

    const lines = [
      `Morgana packet core demo`,
      `  datagram         ${packet.length} bytes, UDP 10.0.0.1 -> 10.0.0.2, id 7`,
      `  fragmented       ${fragments.length} fragments at MTU ${mtu} (sizes ${[...new Set(fragments.map((f) => f.length))].join(', ')})`,
      `  delivered        ${arrivals.length} packets in random order, 2 duplicates`,
      `  reassembled      ${intact ? 'identical to the original' : 'FAILED'}; header checksum ${header && checksum(Buffer.from(whole!).subarray(0, header.headerLength)) === 0 ? 'verifies' : 'BAD'}`,
      `  reassembly stats ${JSON.stringify(reassembler.stats())}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return intact ? 0 : 1;
  },
};
