//! Receive steering: which frames of a received batch are plain TCP segments for this host,
//! so that a device that receives in batches (a TAP) can hand them to the TCP engine in one
//! crossing, without the per-frame work of the Ethernet and IP layers above it.
//!
//! A frame is taken only when nothing but TCP has a say in it: unicast to our MAC; IPv4 with a
//! valid header, not a fragment, from a source that is not martian, or IPv6 with TCP right
//! after the fixed header (no extension headers) from a source that is not multicast; to one
//! of our usable addresses. Anything else — ARP, neighbour discovery, broadcasts and
//! multicast, fragments, extension headers, bad headers, odd offload metadata — is passed
//! over, untouched and unjudged, for the per-frame path, which also counts and explains drops.

use crate::gso::{F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const IPV6_HEADER: usize = 40;
const PROTOCOL_TCP: u8 = 6;
/// Where the checksum field lies in a TCP header.
const TCP_CHECKSUM_OFFSET: u16 = 16;
/// Bytes of `virtio_net_hdr` in front of each frame of a TAP opened with `IFF_VNET_HDR`.
pub const VIRTIO_NET_HDR_LENGTH: usize = 12;

/// What makes a frame ours: the link's framing, our MAC and our addresses.
#[derive(Debug, Clone, Copy)]
pub struct SteerFilter<'a> {
    /// Bytes in front of each Ethernet frame: 0, or [`VIRTIO_NET_HDR_LENGTH`].
    pub framing: usize,
    /// The receiving interface's MAC.
    pub mac: [u8; 6],
    /// The host's IPv4 addresses (0 entries are ignored).
    pub locals: &'a [u32],
    /// The host's usable IPv6 addresses, 16 bytes each (all-zero entries are ignored).
    pub locals6: &'a [u8],
}

/// A TCP segment taken from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeredSegment<'a> {
    /// The IP source.
    pub src: IpAddr,
    /// The IP destination (one of ours).
    pub dst: IpAddr,
    /// The TCP header and payload (the IP packet's, without Ethernet padding).
    pub segment: &'a [u8],
    /// The device vouched for the TCP checksum (`DATA_VALID`, `NEEDS_CSUM` naming the TCP
    /// checksum field, or coalesced by a receive path that checked every segment), so the
    /// engine need not sum it.
    pub checksum_verified: bool,
    /// The frame came with a partial checksum (`NEEDS_CSUM`).
    pub partial_checksum: bool,
    /// The frame is a coalesced (GRO) super-frame.
    pub coalesced: bool,
}

/// The TCP segment in `raw` (a frame behind `filter.framing` bytes of `virtio_net_hdr`), when it
/// is one this host takes without any other layer; `soft_coalesced`: the frame was coalesced by
/// Morgana's own receive path, which verified its segments' checksums.
pub fn steer_tcp<'a>(
    raw: &'a [u8],
    soft_coalesced: bool,
    filter: &SteerFilter<'_>,
) -> Option<SteeredSegment<'a>> {
    let framing = filter.framing;
    let frame = raw.get(framing..)?;
    let (mut verified, mut partial, mut coalesced) = (soft_coalesced, false, false);
    let mut gso = GSO_NONE;
    if framing == VIRTIO_NET_HDR_LENGTH {
        let flags = raw[0];
        gso = raw[1] & !GSO_ECN;
        if flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 || !matches!(gso, GSO_NONE | GSO_TCPV4 | GSO_TCPV6) {
            return None;
        }
        partial = flags & F_NEEDS_CSUM != 0;
        coalesced = gso != GSO_NONE;
        // As the IP layers judge the metadata (`transportChecksumCovered`): a partial checksum
        // vouches only when it names exactly the TCP checksum field, checked below.
        verified |= flags & F_DATA_VALID != 0 && !partial;
    } else if framing != 0 {
        return None;
    }
    if frame.len() < ETHERNET_HEADER || frame[..6] != filter.mac[..] {
        return None;
    }
    let (src, dst, segment) = match [frame[12], frame[13]] {
        ETHERTYPE_IPV4 if gso != GSO_TCPV6 => ipv4_segment(&frame[ETHERNET_HEADER..], filter.locals)?,
        ETHERTYPE_IPV6 if gso != GSO_TCPV4 => ipv6_segment(&frame[ETHERNET_HEADER..], filter.locals6)?,
        _ => return None,
    };
    if partial {
        let csum_start = usize::from(u16::from_le_bytes([raw[6], raw[7]]));
        let csum_offset = u16::from_le_bytes([raw[8], raw[9]]);
        let transport = segment.as_ptr() as usize - frame.as_ptr() as usize;
        verified |= csum_start == transport && csum_offset == TCP_CHECKSUM_OFFSET;
    }
    Some(SteeredSegment {
        src,
        dst,
        segment,
        checksum_verified: verified,
        partial_checksum: partial,
        coalesced,
    })
}

/// Source, destination and TCP segment of an IPv4 packet the IP layer would deliver to TCP as
/// it is.
fn ipv4_segment<'a>(bytes: &'a [u8], locals: &[u32]) -> Option<(IpAddr, IpAddr, &'a [u8])> {
    let packet = Ipv4Packet::parse(bytes).ok()?;
    if packet.is_fragment() || packet.protocol() != PROTOCOL_TCP {
        return None;
    }
    let src = u32::from_be_bytes(packet.src());
    let dst = u32::from_be_bytes(packet.dst());
    // Martian sources (multicast, limited broadcast, loopback) are the IP layer's to drop.
    if src >> 28 == 0xe || src == u32::MAX || src >> 24 == 127 {
        return None;
    }
    if dst == 0 || !locals.contains(&dst) {
        return None;
    }
    Some((IpAddr::V4(Ipv4Addr::from(src)), IpAddr::V4(Ipv4Addr::from(dst)), packet.payload()))
}

/// Likewise for IPv6: TCP right after the fixed header, to one of `locals6`.
fn ipv6_segment<'a>(bytes: &'a [u8], locals6: &[u8]) -> Option<(IpAddr, IpAddr, &'a [u8])> {
    let packet = Ipv6Packet::parse(bytes).ok()?;
    if packet.next_header() != PROTOCOL_TCP {
        return None;
    }
    let (src, dst) = (packet.src(), packet.dst());
    // A multicast source is the IP layer's to drop; multicast destinations are its to judge.
    if src[0] == 0xff || dst[0] == 0xff || dst == [0; 16] {
        return None;
    }
    if !locals6.chunks_exact(16).any(|local| local == dst) {
        return None;
    }
    Some((
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        &packet.as_bytes()[IPV6_HEADER..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::checksum;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const LOCAL: u32 = 0x0a00_0002;
    const PEER: u32 = 0x0a00_0001;
    const LOCAL6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const PEER6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn frame6(src: [u8; 16], dst: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        f.extend_from_slice(&ETHERTYPE_IPV6);
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next_header, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn takes_a_tcp_segment_over_ipv6_and_passes_over_the_rest() {
        let locals6: Vec<u8> = [[0u8; 16], LOCAL6].concat();
        let filter = SteerFilter { framing: 0, mac: MAC, locals: &[LOCAL], locals6: &locals6 };
        let mut f = frame6(PEER6, LOCAL6, 6, &[5; 24]);
        f.extend_from_slice(&[0; 8]); // padding
        let s = steer_tcp(&f, false, &filter).expect("taken");
        assert_eq!((s.src, s.dst), (IpAddr::V6(PEER6.into()), IpAddr::V6(LOCAL6.into())));
        assert_eq!(s.segment, &[5; 24]);
        let mut multicast = LOCAL6;
        multicast[0] = 0xff;
        let other = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        assert!(
            steer_tcp(&frame6(PEER6, LOCAL6, 0, &[6, 0, 1, 4, 0, 0, 0, 0]), false, &filter).is_none(),
            "hop-by-hop"
        );
        assert!(steer_tcp(&frame6(PEER6, LOCAL6, 17, &[0; 24]), false, &filter).is_none(), "UDP");
        assert!(
            steer_tcp(&frame6(PEER6, multicast, 6, &[0; 24]), false, &filter).is_none(),
            "multicast destination"
        );
        assert!(
            steer_tcp(&frame6(multicast, LOCAL6, 6, &[0; 24]), false, &filter).is_none(),
            "multicast source"
        );
        assert!(
            steer_tcp(&frame6(PEER6, other, 6, &[0; 24]), false, &filter).is_none(),
            "not ours (or not usable yet)"
        );
        assert!(steer_tcp(&frame6(PEER6, [0; 16], 6, &[0; 24]), false, &filter).is_none(), "unspecified");
        let good = frame6(PEER6, LOCAL6, 6, &[0; 24]);
        for cut in 0..good.len() - 24 {
            assert!(steer_tcp(&good[..cut], false, &filter).is_none(), "cut at {cut}");
        }
        // A partial checksum vouches when it names the TCP checksum field, right after the fixed header.
        let vnet = SteerFilter { framing: VIRTIO_NET_HDR_LENGTH, ..filter };
        let with = |start: u16, gso: u8| {
            let mut raw = vec![F_NEEDS_CSUM, gso, 0, 0, 0, 0];
            raw.extend_from_slice(&start.to_le_bytes());
            raw.extend_from_slice(&16u16.to_le_bytes());
            raw.extend_from_slice(&[0, 0]);
            raw.extend_from_slice(&good);
            raw
        };
        assert!(steer_tcp(&with(54, GSO_TCPV6), false, &vnet).unwrap().checksum_verified);
        assert!(!steer_tcp(&with(34, GSO_NONE), false, &vnet).unwrap().checksum_verified);
        assert!(steer_tcp(&with(54, GSO_TCPV4), false, &vnet).is_none(), "an IPv4 GSO type on IPv6");
    }

    fn frame(dst_mac: [u8; 6], src: u32, dst: u32, protocol: u8, fragment: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        f.extend_from_slice(&ETHERTYPE_IPV4);
        let total = (20 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, protocol, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6..8].copy_from_slice(&fragment.to_be_bytes());
        ip.extend_from_slice(&src.to_be_bytes());
        ip.extend_from_slice(&dst.to_be_bytes());
        let sum = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(payload);
        f
    }

    fn plain() -> SteerFilter<'static> {
        SteerFilter { framing: 0, mac: MAC, locals: &[0, LOCAL], locals6: &[] }
    }

    #[test]
    fn takes_a_tcp_segment_for_us_without_its_padding() {
        let mut f = frame(MAC, PEER, LOCAL, 6, 0x4000, &[7; 20]);
        f.extend_from_slice(&[0; 6]); // Ethernet padding
        let s = steer_tcp(&f, false, &plain()).expect("taken");
        assert_eq!((s.src, s.dst, s.segment.len()), (IpAddr::V4(PEER.into()), IpAddr::V4(LOCAL.into()), 20));
        assert!(!s.checksum_verified && !s.partial_checksum && !s.coalesced);
        assert!(steer_tcp(&f, true, &plain()).unwrap().checksum_verified);
    }

    #[test]
    fn passes_over_what_other_layers_must_see() {
        let f = plain();
        let other_mac = [2, 0, 0, 0, 0, 2];
        assert!(steer_tcp(&frame(other_mac, PEER, LOCAL, 6, 0, &[0; 20]), false, &f).is_none());
        assert!(steer_tcp(&frame([0xff; 6], PEER, LOCAL, 6, 0, &[0; 20]), false, &f).is_none());
        assert!(steer_tcp(&frame(MAC, PEER, LOCAL, 17, 0, &[0; 20]), false, &f).is_none(), "UDP");
        assert!(
            steer_tcp(&frame(MAC, PEER, LOCAL, 6, 0x2000, &[0; 20]), false, &f).is_none(),
            "first fragment"
        );
        assert!(
            steer_tcp(&frame(MAC, PEER, LOCAL, 6, 0x0001, &[0; 20]), false, &f).is_none(),
            "later fragment"
        );
        assert!(steer_tcp(&frame(MAC, PEER, 0x0a00_0003, 6, 0, &[0; 20]), false, &f).is_none(), "not ours");
        assert!(steer_tcp(&frame(MAC, PEER, 0, 6, 0, &[0; 20]), false, &f).is_none(), "address 0");
        for martian in [0x7f00_0001, 0xe000_0001, u32::MAX] {
            assert!(steer_tcp(&frame(MAC, martian, LOCAL, 6, 0, &[0; 20]), false, &f).is_none());
        }
        let mut bad_sum = frame(MAC, PEER, LOCAL, 6, 0, &[0; 20]);
        bad_sum[14 + 10] ^= 1;
        assert!(steer_tcp(&bad_sum, false, &f).is_none(), "header checksum");
        let mut arp = frame(MAC, PEER, LOCAL, 6, 0, &[0; 20]);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(steer_tcp(&arp, false, &f).is_none());
        let good = frame(MAC, PEER, LOCAL, 6, 0, &[0; 20]);
        for cut in 0..good.len() - 20 {
            assert!(steer_tcp(&good[..cut], false, &f).is_none(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Any bytes, with or without a virtio header: no panic, and what is taken is a TCP
        /// segment inside the frame, for one of our addresses, with a valid IPv4 header.
        #[test]
        fn any_bytes_are_judged_without_panic(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            framing in proptest::prop_oneof![proptest::strategy::Just(0usize), proptest::strategy::Just(12usize)],
            soft in proptest::prelude::any::<bool>(),
        ) {
            let filter = SteerFilter { framing, mac: MAC, locals: &[LOCAL], locals6: &LOCAL6 };
            if let Some(s) = steer_tcp(&raw, soft, &filter) {
                let start = s.segment.as_ptr() as usize - raw.as_ptr() as usize;
                proptest::prop_assert!(start + s.segment.len() <= raw.len());
                proptest::prop_assert!(s.dst == IpAddr::V4(LOCAL.into()) || s.dst == IpAddr::V6(LOCAL6.into()));
            }
        }

        /// A valid segment for us is taken whatever its payload and padding.
        #[test]
        fn valid_segments_are_taken(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            padding in 0usize..20,
        ) {
            let mut f = frame(MAC, PEER, LOCAL, 6, 0, &payload);
            f.extend(std::iter::repeat_n(0u8, padding));
            let s = steer_tcp(&f, false, &plain());
            proptest::prop_assert_eq!(s.map(|s| s.segment), Some(&payload[..]));
        }
    }

    #[test]
    fn reads_the_virtio_header() {
        let filter = SteerFilter { framing: VIRTIO_NET_HDR_LENGTH, mac: MAC, locals: &[LOCAL], locals6: &[] };
        let body = frame(MAC, PEER, LOCAL, 6, 0, &[0; 20]);
        let with_csum = |flags: u8, gso: u8, start: u16, offset: u16| {
            let mut raw = vec![flags, gso, 0, 0, 0, 0];
            raw.extend_from_slice(&start.to_le_bytes());
            raw.extend_from_slice(&offset.to_le_bytes());
            raw.extend_from_slice(&[0, 0]);
            raw.extend_from_slice(&body);
            raw
        };
        let with = |flags: u8, gso: u8| with_csum(flags, gso, 34, 16);
        let marks = |raw: &[u8]| {
            let s = steer_tcp(raw, false, &filter).expect("taken");
            assert_eq!(s.segment.len(), 20);
            (s.checksum_verified, s.partial_checksum, s.coalesced)
        };
        assert_eq!(marks(&with(0, GSO_NONE)), (false, false, false));
        assert_eq!(marks(&with(F_NEEDS_CSUM, GSO_TCPV4)), (true, true, true));
        assert_eq!(marks(&with(F_DATA_VALID, GSO_TCPV4 | GSO_ECN)), (true, false, true));
        // A partial checksum that names another field vouches for nothing: the engine sums it.
        assert_eq!(marks(&with_csum(F_NEEDS_CSUM, GSO_NONE, 40, 16)), (false, true, false));
        assert_eq!(marks(&with_csum(F_NEEDS_CSUM, GSO_NONE, 34, 6)), (false, true, false));
        assert_eq!(marks(&with_csum(F_NEEDS_CSUM | F_DATA_VALID, GSO_NONE, 34, 6)), (false, true, false));
        assert!(steer_tcp(&with(0, GSO_TCPV6), false, &filter).is_none(), "an IPv6 GSO type on IPv4");
        assert!(steer_tcp(&with(4, GSO_NONE), false, &filter).is_none(), "unknown flag");
        assert!(steer_tcp(&with(0, GSO_NONE)[..5], false, &filter).is_none());
        assert!(steer_tcp(&body, false, &SteerFilter { framing: 3, ..filter }).is_none());
    }
}
