//! The IP send path's state for packets built in Rust: the IPv4 identification counter, the
//! TTL / hop limit, counters, and the neighbour entries of established flows.
//!
//! The TypeScript IP layers own this object (one per stack): they install a neighbour entry
//! (next hop's MAC, our MAC, the interface, the MTU towards that destination) once a
//! destination has resolved, withdraw it when the route or neighbour changes, and every entry
//! expires on its own at the time the installer gave (so a changed neighbour is re-learnt from
//! ARP / neighbour discovery). A transport that produces packets in Rust (the TCP engine) asks
//! [`IpOutput::neighbour`] for a fresh entry and has [`IpOutput::emit_headers`] write the
//! Ethernet and IP headers in front of its payload; without an entry the packet takes the
//! TypeScript layer's general path (ARP, fragmentation, ICMP), which owns everything else.

use crate::wire::ipv4::Ipv4Header;
use crate::wire::ipv6::Ipv6Header;
use std::collections::HashMap;
use std::net::IpAddr;

/// Ethernet II header length.
pub const ETHERNET_HEADER: usize = 14;
/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Most neighbour entries held; installing past it forgets them all (they are re-learnt).
pub const MAX_NEIGHBOURS: usize = 4096;

/// Where and how a packet to one destination leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// The interface's index in the stack (the TypeScript layer's numbering).
    pub iface: u32,
    /// The next hop's MAC.
    pub dst_mac: [u8; 6],
    /// The interface's MAC.
    pub src_mac: [u8; 6],
    /// The largest IP packet towards the destination (link MTU, or the path MTU for IPv6).
    pub mtu: usize,
    /// When the entry stops being used (ms, the stack's clock).
    pub expires_at: u64,
    /// The largest IP packet of a TCP super-frame the interface accepts (TSO, with `gso_size`
    /// metadata); 0 when it takes only real frames.
    pub tso_max: usize,
    /// The interface takes frames whose transport checksum is left partial (virtio's
    /// `NEEDS_CSUM`: the field holds the pseudo-header sum, the rest is summed where needed).
    pub partial_checksum: bool,
}

/// Counters of packets built here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpOutputStats {
    /// IPv4 packets whose headers were written here.
    pub sent_v4: u64,
    /// IPv6 packets whose headers were written here.
    pub sent_v6: u64,
}

/// The IP send path's state shared by the layers that build packets in Rust.
#[derive(Debug)]
pub struct IpOutput {
    identification: u16,
    /// IPv4 time to live.
    pub ttl: u8,
    /// IPv6 hop limit.
    pub hop_limit: u8,
    neighbours: HashMap<IpAddr, Neighbour>,
    stats: IpOutputStats,
}

impl IpOutput {
    /// A send path whose first IPv4 identification follows `identification` (random, from the
    /// stack's random device).
    pub fn new(identification: u16, ttl: u8, hop_limit: u8) -> Self {
        IpOutput {
            identification,
            ttl,
            hop_limit,
            neighbours: HashMap::new(),
            stats: IpOutputStats::default(),
        }
    }

    /// The next IPv4 identification (for every packet of the stack, whoever builds it).
    pub fn next_identification(&mut self) -> u16 {
        self.identification = self.identification.wrapping_add(1);
        self.identification
    }

    /// Skips `n` identifications: the pieces of a super-frame cut downstream take the ones
    /// after its own (as Linux's segmentation numbers them).
    pub fn skip_identifications(&mut self, n: usize) {
        self.identification = self.identification.wrapping_add(n as u16);
    }

    /// Installs (or replaces) the entry for `dst`.
    pub fn set_neighbour(&mut self, dst: IpAddr, entry: Neighbour) {
        if self.neighbours.len() >= MAX_NEIGHBOURS && !self.neighbours.contains_key(&dst) {
            self.neighbours.clear();
        }
        self.neighbours.insert(dst, entry);
    }

    /// Withdraws the entry for `dst`.
    pub fn withdraw(&mut self, dst: IpAddr) {
        self.neighbours.remove(&dst);
    }

    /// Withdraws every entry (addresses or routes changed).
    pub fn clear(&mut self) {
        self.neighbours.clear();
    }

    /// Entries installed (expired ones included until looked up).
    pub fn neighbours(&self) -> usize {
        self.neighbours.len()
    }

    /// The fresh entry for `dst`, if any; an expired one is dropped.
    pub fn neighbour(&mut self, dst: IpAddr, now: u64) -> Option<Neighbour> {
        let entry = *self.neighbours.get(&dst)?;
        if entry.expires_at <= now {
            self.neighbours.remove(&dst);
            return None;
        }
        Some(entry)
    }

    /// Length of the Ethernet and IP headers in front of a payload to `dst`.
    pub fn header_len(dst: IpAddr) -> usize {
        ETHERNET_HEADER + if dst.is_ipv4() { 20 } else { 40 }
    }

    /// Writes the Ethernet and IP headers of a packet from `src` to `dst` carrying
    /// `payload_len` bytes of `protocol` (IPv4: Don't Fragment, the next identification) at
    /// the start of `out`; returns their length, or `None` when `out` is short, the families
    /// differ or the packet is too long.
    pub fn emit_headers(
        &mut self,
        n: &Neighbour,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload_len: usize,
        out: &mut [u8],
    ) -> Option<usize> {
        let len = Self::header_len(dst);
        let out = out.get_mut(..len)?;
        out[0..6].copy_from_slice(&n.dst_mac);
        out[6..12].copy_from_slice(&n.src_mac);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let header = Ipv4Header {
                    src: s.octets(),
                    dst: d.octets(),
                    protocol,
                    ttl: self.ttl,
                    tos: 0,
                    identification: self.identification.wrapping_add(1),
                    dont_fragment: true,
                    more_fragments: false,
                    fragment_offset: 0,
                    options: &[],
                    payload_len,
                };
                header.emit(&mut out[ETHERNET_HEADER..]).ok()?;
                self.identification = self.identification.wrapping_add(1);
                self.stats.sent_v4 += 1;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                out[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let header = Ipv6Header {
                    traffic_class: 0,
                    flow_label: 0,
                    next_header: protocol,
                    hop_limit: self.hop_limit,
                    src: s.octets(),
                    dst: d.octets(),
                    payload_len,
                };
                header.emit(&mut out[ETHERNET_HEADER..]).ok()?;
                self.stats.sent_v6 += 1;
            }
            _ => return None,
        }
        Some(len)
    }

    /// Counters.
    pub fn stats(&self) -> IpOutputStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn entry(expires_at: u64) -> Neighbour {
        Neighbour {
            iface: 0,
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            expires_at,
            tso_max: 0,
            partial_checksum: false,
        }
    }

    #[test]
    fn ipv4_headers_carry_increasing_identifications_and_a_valid_checksum() {
        let mut o = IpOutput::new(0xfffe, 64, 255);
        let (s, d) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        let mut frame = [0u8; 34 + 8];
        for expected in [0xffffu16, 0] {
            let n = o.emit_headers(&entry(10), s, d, 6, 8, &mut frame).unwrap();
            assert_eq!(n, 34);
            assert_eq!(&frame[0..14], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
            let p = Ipv4Packet::parse(&frame[14..]).unwrap();
            assert_eq!(p.identification(), expected);
            assert_eq!(p.total_len(), 28);
            assert!(p.dont_fragment());
        }
        assert_eq!(o.next_identification(), 1);
        assert_eq!(o.stats().sent_v4, 2);
    }

    #[test]
    fn ipv6_headers_and_expiry() {
        let mut o = IpOutput::new(0, 64, 77);
        let (s, d) = (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        o.set_neighbour(d, entry(100));
        assert!(o.neighbour(d, 99).is_some());
        let mut frame = [0u8; 54];
        let n = o.emit_headers(&entry(100), s, d, 6, 0, &mut frame).unwrap();
        assert_eq!(n, 54);
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        assert_eq!(frame[14 + 7], 77);
        assert!(o.neighbour(d, 100).is_none());
        assert_eq!(o.neighbours(), 0);
        assert!(o.emit_headers(&entry(100), s, IpAddr::V4(Ipv4Addr::LOCALHOST), 6, 0, &mut frame).is_none());
    }
}
