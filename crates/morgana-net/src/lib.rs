//! Morgana's sans-IO packet core.
//!
//! - [`checksum`]: the Internet checksum (RFC 1071), incremental update (RFC 1624) and the IPv4
//!   IPv4 and IPv6 pseudo-header sums.
//! - [`wire`]: wire formats, zero-copy parse and emit (IPv4, IPv6 and its extension headers).
//! - [`fragment`]: IPv4 fragmentation on send, and IPv6 fragmentation at the source
//!   ([`fragment::ipv6`]).
//! - [`ip_out`]: the IP send path's state for packets built in Rust (identification, neighbour
//!   entries of established flows, counters), owned by the TypeScript IP layers.
//! - [`gso`]: offload metadata in `virtio_net_hdr` shape and software segmentation of TCP
//!   super-frames (for devices, captures and links that take only real frames).
//! - [`steer`]: which frames of a received batch are plain IPv4 TCP segments for this host,
//!   for devices that hand a batch to the TCP engine in one crossing.
//! - [`reassembly`]: the bounded IPv4 reassembly cache (MirageOS 3.5 limits by default), and the
//!   IPv6 one on the same core ([`reassembly::ipv6`]).
//!
//! Nothing here owns sockets, threads or timers: time is an argument, so every timeout is
//! testable with a virtual clock.
#![deny(missing_docs)]

pub mod checksum;
pub mod fragment;
pub mod gso;
pub mod ip_out;
pub mod reassembly;
pub mod steer;
pub mod wire;
