/**
 * `morgana/wire`: the wire formats, pure functions over bytes with every length checked and no
 * state. One namespace per protocol; the stack's layers (ts/stack/) keep state and I/O and use
 * these to read and write their headers.
 *
 * - {@link ipv4} (RFC 791) and {@link ipv6} (RFC 8200): parse, emit, fragment (validation in Rust).
 * - {@link icmpv4} (RFC 792) and {@link icmpv6} (RFC 4443, 4861, 3810).
 * - {@link arp} (RFC 826), {@link udp} (RFC 768), {@link dhcp} (RFC 2131/2132), {@link dns} (RFC 1035).
 * - The Internet checksum and pseudo-header sums.
 * @module
 */
export { checksum, checksumUpdate, onesComplementSum, pseudoHeaderSum, pseudoHeaderSum6 } from '../checksum.js';
export * as arp from './arp.js';
export * as dhcp from './dhcp.js';
export * as dns from './dns.js';
export * as icmpv4 from './icmpv4.js';
export * as icmpv6 from './icmpv6.js';
export * as ipv4 from './ipv4.js';
export * as ipv6 from './ipv6.js';
export * as udp from './udp.js';
export { DnsMalformedError } from './dns.js';
export { Icmpv6MalformedError } from './icmpv6.js';
export { Ipv6ParseError } from './ipv6.js';
