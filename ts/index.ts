/**
 * Morgana: a library operating system toolkit for Node.js in the spirit of MirageOS.
 *
 * This entry point (`morgana`) is the network stack and its protocols, the network devices (TAP,
 * virtual switch, pcap), the key-value stores, the random device, clocks and the typed errors.
 * The other entry points, by purpose:
 *
 * - `morgana/wire`: the wire formats (IPv4, IPv6, ICMPv4/v6, ARP, UDP, DHCP, DNS) and checksums.
 * - `morgana/config`: the `config.ts` DSL and its targets.
 * - `morgana/solo5`: Solo5 images, manifests, deployment and the user-mode gateway.
 * - `morgana/daemon`: the daemon that supervises Solo5 and TypeScript unikernels.
 * - `morgana/iperf3`: the iperf3 server and client over a stack.
 *
 * The names of those entry points that this one exported before 0.2 (the wire namespaces and
 * checksums, `config`, the Solo5 functions, the iperf3 ones) are still exported here so that code
 * written against 0.1 keeps working; new code imports them from their own entry point.
 * @module
 */
export { checksum, checksumUpdate, onesComplementSum, pseudoHeaderSum, pseudoHeaderSum6 } from './checksum.js';
export { type Ipv4AddressLike, formatIpv4Address, parseIpv4Address, toIpv4Number } from './address.js';
export * as ipv4 from './wire/ipv4.js';
export { type Ipv6AddressLike, formatIpv6Address, parseIpv6Address, toIpv6Bytes } from './address.js';
export * as ipv6 from './wire/ipv6.js';
export { Ipv6ParseError, fragment as fragmentIpv6 } from './wire/ipv6.js';
export {
  DEFAULT_MAX_BYTES as REASSEMBLY_DEFAULT_MAX_BYTES,
  DEFAULT_MAX_FRAGMENTS as REASSEMBLY_DEFAULT_MAX_FRAGMENTS,
  DEFAULT_TIMEOUT_MS as REASSEMBLY_DEFAULT_TIMEOUT_MS,
  Ipv6Reassembler,
  type Ipv6ReassemblerOptions,
  type Ipv6ReassemblerStats,
  type Ipv6ReassemblyReport,
  type PushBatchOptions,
  Reassembler,
  type ReassemblerOptions,
  type ReassemblerStats,
} from './reassembly.js';
export {
  FragmentationNeededError,
  InvalidArgumentError,
  MorganaError,
  OutOfRangeError,
} from './errors.js';
export { type Clock, type Timer, VirtualClock, systemClock } from './clock.js';
export {
  DATA_VALID,
  ETHERNET_HEADER_LENGTH,
  type FrameFill,
  type FrameHandler,
  type FrameOffload,
  GSO_NONE,
  GSO_TCPV4,
  GSO_TCPV6,
  NEEDS_CSUM,
  type NetDevice,
  type NetOffloads,
  type NetStats,
  RECEIVE_LENGTH_MASK,
  type ReceiveBatch,
  type ReceiveSteer,
  type ReusingFrameHandler,
} from './net/device.js';
export { BROADCAST_MAC, formatMac, parseMac } from './net/mac.js';
export {
  type SwitchFaults,
  VirtualSwitch,
  type VirtualSwitchOptions,
  type VirtualSwitchStats,
} from './net/vswitch.js';
export { type Cidr, type InterfaceConfig, type Stack, type StackOptions, type StackStats, createStack, parseCidr } from './stack/index.js';
export type { ArpEntry } from './stack/arp.js';
export type { PingResult, TracerouteHop } from './stack/icmp.js';
export { type Ipv6Options, parseCidr6 } from './stack/index.js';
export {
  type DefaultRouter,
  type Icmpv6ErrorListener,
  type Icmpv6ErrorReport,
  type Ipv6AddressEntry,
  type Ipv6AddressOrigin,
  type Ipv6AddressState,
  type Ipv6Datagram,
  type Ipv6Handler,
  type Ipv6Interface,
  Ipv6Layer,
  type Ipv6LayerOptions,
  type Ipv6Stats,
  type Ipv6WriteOptions,
  type NeighbourResolver,
  type OnLinkPrefix,
  PacketTooBigError,
} from './stack/ipv6.js';
export { Icmpv6, type Icmpv6Options, type Icmpv6SendOptions, type Icmpv6Stats, type Ping6Result } from './stack/icmpv6.js';
export * as icmpv6Wire from './wire/icmpv6.js';
export { Icmpv6MalformedError } from './wire/icmpv6.js';
export {
  type AdvertisedPrefix,
  NeighbourCache,
  type NeighbourEntry,
  Ndp,
  type NdpOptions,
  type NdStats,
  type NudState,
  type RouterAdvertisementOptions,
} from './stack/ndp.js';
export { type Ipv6AddressEvent, type Ipv6AddressInfo, Slaac, type SlaacOptions, type SlaacStats, eui64Iid, stableIid } from './stack/slaac.js';
export { Mld, type MldOptions, type MldStats } from './stack/mld.js';
export type { UdpHandler, UdpPeer, UdpSocket } from './stack/udp.js';
export { UdpDgramSocket, type UdpBindOptions, type UdpMessage, type UdpRemoteInfo, type UdpSocketType } from './stack/udp-socket.js';
export { type TapDevice, type TapOffloads, type TapOptions, adoptTap, openTap, type TapNetDevice, tapNetDevice } from './net/tap.js';
export {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_LENGTH,
  VIRTIO_NET_HDR_NO_OFFLOAD,
  type VirtioNetHdr,
  parseVirtioNetHdr,
  writeVirtioNetHdr,
} from './net/vnet-hdr.js';
export { type PcapOptions, type PcapRecorder, pcapRecorder } from './net/pcap.js';
export {
  EntropyFeeder,
  type EntropyFeederOptions,
  type EntropySources,
  Fortuna,
  type FortunaMode,
  type FortunaOptions,
  type MonotonicClock,
  entropySources,
} from './fortuna.js';
export {
  BufferedRandom,
  type BufferedRandomOptions,
  type Random,
  type RandomFiller,
  defaultFortuna,
  defaultRandom,
  seededRandom,
} from './random.js';
export {
  type CrunchedData,
  CrunchKv,
  type CrunchOptions,
  type CrunchResult,
  DIR_KV_MAX_PATH_BYTES,
  DIR_KV_MAX_SEGMENT_BYTES,
  DIR_KV_META,
  DirKv,
  type DirKvOptions,
  type EntryKind,
  Key,
  type KeyLike,
  KvError,
  type KvErrorCode,
  type KvRo,
  type KvRw,
  MemKv,
  type MemKvOptions,
  type TarIncomplete,
  TarKv,
  type TarKvOptions,
  type ValueLike,
  crunchDirectory,
  crunchedKv,
  dirKv,
  memKv,
  tarKv,
} from './kv/index.js';
export {
  DhcpClient,
  type DhcpClientEvents,
  type DhcpClientOptions,
  type DhcpClientStats,
  type DhcpLease,
  type DhcpState,
} from './stack/dhcp-client.js';
export { type DhcpServer, type DhcpServerLease, type DhcpServerOptions, type DhcpServerStats, startDhcpServer } from './stack/dhcp-server.js';
export * as dhcp from './wire/dhcp.js';
export { parseArgv, quoteArgv } from './config/argv.js';
export * as config from './config/index.js';
export * from './solo5/index.js';
export * from './daemon/index.js';
export { formatStackSummary } from './stack/summary.js';
export { type InetAddressLike } from './stack/inet.js';
export { Tcp, TcpConnection, DEFAULT_CONNECT_TIMEOUT, type TcpCongestionControl, type TcpConnectionInfo, type TcpConnectOptions, type TcpListenOptions, type TcpOnRead, type TcpOptions, TcpServer, type TcpStats } from './stack/tcp.js';
export {
  type Iperf3ClientOptions,
  type Iperf3Interval,
  type Iperf3IntervalStream,
  type Iperf3IntervalSum,
  type Iperf3Protocol,
  type Iperf3Result,
  type Iperf3Server,
  type Iperf3ServerOptions,
  type Iperf3Sum,
  type Iperf3TcpStreamEnd,
  type Iperf3TestStart,
  type Iperf3UdpStreamEnd,
  IPERF3_STATE,
  runIperf3Client,
  startIperf3Server,
} from './apps/iperf3.js';
export * as dnsWire from './wire/dns.js';
export { DnsMalformedError, type DnsMessage, type DnsQuestion, type DnsRecord } from './wire/dns.js';
export {
  DnsError,
  type DnsServerAddress,
  Resolver,
  type ResolverCacheOptions,
  type ResolverOptions,
  type ResolverStack,
  type ResolverStats,
  type ResolveResult,
  createResolver,
} from './dns/resolver.js';
export { type DnsServer, type DnsServerOptions, type DnsServerStack, type DnsServerStats, startDnsServer } from './dns/server.js';
