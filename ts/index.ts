/**
 * Morgana: a library operating system toolkit for Node.js in the spirit of MirageOS.
 *
 * This entry point exports the packet core (checksums, IPv4 wire format, fragmentation and
 * reassembly) and the typed errors.
 * @module
 */
export { checksum, checksumUpdate, onesComplementSum, pseudoHeaderSum } from './checksum.js';
export { type Ipv4AddressLike, formatIpv4Address, parseIpv4Address, toIpv4Number } from './address.js';
export * as ipv4 from './ipv4.js';
export { Reassembler, type ReassemblerOptions, type ReassemblerStats } from './reassembly.js';
export {
  FragmentationNeededError,
  InvalidArgumentError,
  MorganaError,
  OutOfRangeError,
} from './errors.js';
