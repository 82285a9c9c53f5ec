//! IPv6 fragmentation at the source (RFC 8200 §4.5).
//!
//! The packet is split into its *unfragmentable part* (the fixed header and the extension
//! headers routers process: everything up to and including the last Routing header if there is
//! one, else the Hop-by-Hop Options header if there is one, else just the fixed header) and its
//! *fragmentable part* (the rest: further extension headers and the upper-layer data). Each
//! fragment is a copy of the unfragmentable part whose last Next Header field is changed to 44,
//! a Fragment header carrying the fragmentable part's first Next Header value, an offset in
//! 8-byte units and the caller's 32-bit identification, and a slice of the fragmentable part
//! (a multiple of 8 bytes in all but the last fragment).
//!
//! As RFC 7112 requires, the first fragment must carry the whole header chain through the
//! upper-layer header ([`header_chain_len`]); an MTU too small for that is an error.

use crate::wire::ipv6::{
    next_header, FragmentHeader, Ipv6Error, Ipv6Packet, FRAGMENT_HEADER_LEN, HEADER_LEN, MAX_EXTENSION_BYTES,
    MAX_EXTENSION_HEADERS,
};
use std::fmt;

/// Why a packet cannot be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6FragmentError {
    /// The input is not a well-formed IPv6 packet (or its extension headers are malformed).
    Malformed(Ipv6Error),
    /// The packet already has a Fragment header (IPv6 packets are fragmented only once, at the
    /// source).
    AlreadyFragment,
    /// The MTU cannot hold the unfragmentable part, a Fragment header and 8 bytes of data.
    MtuTooSmall {
        /// The MTU that was asked for.
        mtu: usize,
    },
    /// The MTU leaves the first fragment too little room for the whole header chain through the
    /// upper-layer header (RFC 7112).
    HeaderChainTooLong {
        /// The MTU that was asked for.
        mtu: usize,
    },
}

impl Ipv6FragmentError {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            Ipv6FragmentError::Malformed(e) => e.code(),
            Ipv6FragmentError::AlreadyFragment => "ERR_IPV6_ALREADY_FRAGMENT",
            Ipv6FragmentError::MtuTooSmall { .. } => "ERR_MTU_TOO_SMALL",
            Ipv6FragmentError::HeaderChainTooLong { .. } => "ERR_IPV6_HEADER_CHAIN_TOO_LONG",
        }
    }
}

impl fmt::Display for Ipv6FragmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv6FragmentError::Malformed(e) => e.fmt(f),
            Ipv6FragmentError::AlreadyFragment => {
                f.write_str("the IPv6 packet already has a fragment header")
            }
            Ipv6FragmentError::MtuTooSmall { mtu } => write!(
                f,
                "MTU {mtu} cannot carry the unfragmentable part, a fragment header and 8 bytes of data"
            ),
            Ipv6FragmentError::HeaderChainTooLong { mtu } => write!(
                f,
                "MTU {mtu} cannot carry the whole IPv6 header chain in the first fragment (RFC 7112)"
            ),
        }
    }
}

impl std::error::Error for Ipv6FragmentError {}

impl From<Ipv6Error> for Ipv6FragmentError {
    fn from(e: Ipv6Error) -> Self {
        Ipv6FragmentError::Malformed(e)
    }
}

/// The bytes at the start of a fragmentable part `data`, whose first header is `first`, that
/// hold its whole header chain: the extension headers and the fixed part of the upper-layer
/// header (20 bytes of TCP, 8 of UDP, ICMPv6 or ESP, none after No Next Header, 1 of anything
/// else). `None` when `data` ends before that (an incomplete chain, RFC 7112).
///
/// A chain longer than the extension walk's bounds is not judged here (the walk of the
/// reassembled packet rejects it): the bytes walked so far are returned.
pub fn header_chain_len(first: u8, data: &[u8]) -> Option<usize> {
    let (mut kind, mut at) = (first, 0usize);
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match kind {
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DESTINATION_OPTIONS => {
                (usize::from(*data.get(at + 1)?) + 1) * 8
            }
            next_header::FRAGMENT => FRAGMENT_HEADER_LEN,
            // The authentication header's length is in 4-byte units, minus 2 (RFC 4302 §2.2).
            next_header::AH => (usize::from(*data.get(at + 1)?) + 2) * 4,
            upper => {
                let fixed = match upper {
                    next_header::TCP => 20,
                    next_header::UDP | next_header::ICMPV6 | next_header::ESP => 8,
                    next_header::NO_NEXT_HEADER => 0,
                    _ => 1,
                };
                return (at + fixed <= data.len()).then_some(at + fixed);
            }
        };
        if at + len > data.len() {
            return None;
        }
        kind = data[at];
        at += len;
        if at > MAX_EXTENSION_BYTES {
            break;
        }
    }
    Some(at)
}

/// Where a packet splits: `(unfragmentable length, offset of the Next Header field to rewrite)`.
fn unfragmentable(packet: &Ipv6Packet<'_>) -> Result<(usize, usize), Ipv6FragmentError> {
    let ext = packet.extensions()?;
    if ext.fragment.is_some() {
        return Err(Ipv6FragmentError::AlreadyFragment);
    }
    let last_routed = |kind: u8| ext.headers().iter().rev().find(|h| h.kind == kind).copied();
    Ok(match last_routed(next_header::ROUTING).or_else(|| last_routed(next_header::HOP_BY_HOP)) {
        Some(h) => (h.offset + h.len, h.offset),
        None => (HEADER_LEN, 6),
    })
}

/// The number of fragments and bytes [`fragment_into`] produces for `packet` at `mtu`, or the
/// error it returns.
pub fn fragment_size(packet: &[u8], mtu: usize) -> Result<(usize, usize), Ipv6FragmentError> {
    let p = Ipv6Packet::parse(packet)?;
    let total = p.as_bytes().len();
    if total <= mtu {
        return Ok((1, total));
    }
    let (unfrag, pointer) = unfragmentable(&p)?;
    let room = checked_room(&p, unfrag, pointer, mtu)?;
    let data = total - unfrag;
    let count = data.div_ceil(room);
    Ok((count, data + count * (unfrag + FRAGMENT_HEADER_LEN)))
}

/// Data bytes per fragment at `mtu`, after the MTU and RFC 7112 checks.
fn checked_room(
    p: &Ipv6Packet<'_>,
    unfrag: usize,
    pointer: usize,
    mtu: usize,
) -> Result<usize, Ipv6FragmentError> {
    let room = mtu.saturating_sub(unfrag + FRAGMENT_HEADER_LEN) / 8 * 8;
    if room == 0 {
        return Err(Ipv6FragmentError::MtuTooSmall { mtu });
    }
    let bytes = p.as_bytes();
    // A packet whose own chain is incomplete cannot do better split; only a complete chain
    // that does not fit is an error.
    if header_chain_len(bytes[pointer], &bytes[unfrag..]).is_some_and(|chain| chain > room) {
        return Err(Ipv6FragmentError::HeaderChainTooLong { mtu });
    }
    Ok(room)
}

/// Splits `packet` into packets of at most `mtu` bytes with Fragment headers carrying
/// `identification`, appending them back to back to `out` and each one's length to `lengths`
/// (see the module documentation). A packet that already fits is appended unchanged (without a
/// Fragment header); trailing bytes past its payload length are not copied. Nothing is appended
/// when an error is returned.
pub fn fragment_into(
    packet: &[u8],
    mtu: usize,
    identification: u32,
    out: &mut Vec<u8>,
    lengths: &mut Vec<usize>,
) -> Result<(), Ipv6FragmentError> {
    let p = Ipv6Packet::parse(packet)?;
    let bytes = p.as_bytes();
    if bytes.len() <= mtu {
        out.extend_from_slice(bytes);
        lengths.push(bytes.len());
        return Ok(());
    }
    let (unfrag, pointer) = unfragmentable(&p)?;
    let room = checked_room(&p, unfrag, pointer, mtu)?;
    let data = &bytes[unfrag..];
    let first_next_header = bytes[pointer];
    out.reserve(data.len() + data.len().div_ceil(room) * (unfrag + FRAGMENT_HEADER_LEN));
    let mut offset = 0;
    while offset < data.len() {
        let len = room.min(data.len() - offset);
        let more = offset + len < data.len();
        let at = out.len();
        out.extend_from_slice(&bytes[..unfrag]);
        out[at + pointer] = next_header::FRAGMENT;
        let payload_len = (unfrag - HEADER_LEN + FRAGMENT_HEADER_LEN + len) as u16;
        out[at + 4..at + 6].copy_from_slice(&payload_len.to_be_bytes());
        let mut header = [0; FRAGMENT_HEADER_LEN];
        FragmentHeader { next_header: first_next_header, offset, more_fragments: more, identification }
            .emit(&mut header)
            .expect("offsets of a 65,535-byte payload fit the fragment header");
        out.extend_from_slice(&header);
        out.extend_from_slice(&data[offset..offset + len]);
        lengths.push(out.len() - at);
        offset += len;
    }
    Ok(())
}

/// [`fragment_into`] returning one `Vec` per packet.
pub fn fragment(packet: &[u8], mtu: usize, identification: u32) -> Result<Vec<Vec<u8>>, Ipv6FragmentError> {
    let mut out = Vec::new();
    let mut lengths = Vec::new();
    fragment_into(packet, mtu, identification, &mut out, &mut lengths)?;
    Ok(super::split(&out, &lengths))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::ipv6::Ipv6Header;
    use proptest::prelude::*;

    pub(crate) const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    pub(crate) const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A packet: fixed header, then `headers` (each an extension header's kind and its bytes),
    /// then `upper` with `data_len` bytes of pattern data.
    pub(crate) fn packet(headers: &[(u8, Vec<u8>)], upper: u8, data_len: usize, seed: u8) -> Vec<u8> {
        let mut payload = Vec::new();
        for (i, (_, bytes)) in headers.iter().enumerate() {
            let mut bytes = bytes.clone();
            bytes[0] = headers.get(i + 1).map_or(upper, |h| h.0);
            payload.extend_from_slice(&bytes);
        }
        payload.extend((0..data_len).map(|i| (i as u8).wrapping_mul(31) ^ seed));
        let header = Ipv6Header {
            traffic_class: 0,
            flow_label: 0x54321,
            next_header: headers.first().map_or(upper, |h| h.0),
            hop_limit: 64,
            src: SRC,
            dst: DST,
            payload_len: payload.len(),
        };
        let mut out = vec![0; HEADER_LEN];
        header.emit(&mut out).unwrap();
        out.extend_from_slice(&payload);
        out
    }

    /// An options-style extension header of `units` 8-byte units filled with PadN.
    pub(crate) fn options(units: usize) -> Vec<u8> {
        let len = units * 8;
        let mut h = vec![0, (units - 1) as u8, 1, (len - 4) as u8];
        h.resize(len, 0);
        h
    }

    fn split(piece: &[u8]) -> (Ipv6Packet<'_>, FragmentHeader, usize) {
        let p = Ipv6Packet::parse(piece).unwrap();
        let ext = p.extensions().unwrap();
        (p, ext.fragment.unwrap(), ext.payload_offset)
    }

    #[test]
    fn small_packet_is_unchanged() {
        let original = packet(&[], next_header::UDP, 100, 1);
        assert_eq!(fragment(&original, 1280, 9).unwrap(), vec![original.clone()]);
        assert_eq!(fragment_size(&original, 1280), Ok((1, original.len())));
    }

    #[test]
    fn splits_with_copied_unfragmentable_part() {
        // Hop-by-hop, destination options (before routing: unfragmentable), routing, then
        // destination options again (fragmentable) and UDP.
        let headers = [
            (next_header::HOP_BY_HOP, options(1)),
            (next_header::DESTINATION_OPTIONS, options(2)),
            (next_header::ROUTING, options(1)),
            (next_header::DESTINATION_OPTIONS, options(1)),
        ];
        let original = packet(&headers, next_header::UDP, 4000, 2);
        let unfrag = 40 + 8 + 16 + 8;
        let pieces = fragment(&original, 1280, 0xfeed_f00d).unwrap();
        assert_eq!(fragment_size(&original, 1280), Ok((pieces.len(), pieces.iter().map(Vec::len).sum())));
        let room = (1280 - unfrag - 8) / 8 * 8;
        assert_eq!(pieces.len(), (original.len() - unfrag).div_ceil(room));
        let mut offset = 0;
        let mut rebuilt = original[..unfrag].to_vec();
        for (i, piece) in pieces.iter().enumerate() {
            assert!(piece.len() <= 1280);
            let (p, f, data_at) = split(piece);
            assert_eq!(data_at, unfrag + 8);
            assert_eq!(&piece[8..64], &original[8..64], "addresses and headers copied");
            assert_eq!(&piece[65..unfrag], &original[65..unfrag]);
            assert_eq!(piece[64], next_header::FRAGMENT, "the routing header now names the fragment header");
            assert_eq!(f.next_header, next_header::DESTINATION_OPTIONS);
            assert_eq!(f.identification, 0xfeed_f00d);
            assert_eq!(f.offset, offset);
            assert_eq!(f.more_fragments, i + 1 < pieces.len());
            let data = &p.as_bytes()[data_at..];
            if f.more_fragments {
                assert_eq!(data.len(), room);
            }
            rebuilt.extend_from_slice(data);
            offset += data.len();
        }
        assert_eq!(&rebuilt[unfrag..], &original[unfrag..]);
    }

    #[test]
    fn errors() {
        let original = packet(&[], next_header::UDP, 3000, 3);
        assert_eq!(fragment(&original, 55, 1), Err(Ipv6FragmentError::MtuTooSmall { mtu: 55 }));
        assert_eq!(fragment(&original, 56, 1).unwrap().len(), 3000usize.div_ceil(8));
        assert_eq!(
            fragment(&original[..30], 1280, 1),
            Err(Ipv6FragmentError::Malformed(Ipv6Error::Truncated))
        );
        let pieces = fragment(&original, 1280, 1).unwrap();
        assert_eq!(fragment(&pieces[0], 600, 1), Err(Ipv6FragmentError::AlreadyFragment));
        // A 200-byte destination options header before TCP does not fit a 64-byte first fragment.
        let long = packet(&[(next_header::DESTINATION_OPTIONS, options(25))], next_header::TCP, 3000, 4);
        assert_eq!(fragment(&long, 120, 1), Err(Ipv6FragmentError::HeaderChainTooLong { mtu: 120 }));
        assert!(
            fragment(&long, 40 + 8 + 232, 1).is_ok(),
            "200 bytes of options and a 20-byte TCP header fit in 232"
        );
        assert_eq!(Ipv6FragmentError::HeaderChainTooLong { mtu: 1 }.code(), "ERR_IPV6_HEADER_CHAIN_TOO_LONG");
    }

    #[test]
    fn chain_lengths() {
        assert_eq!(header_chain_len(next_header::UDP, &[0; 8]), Some(8));
        assert_eq!(header_chain_len(next_header::UDP, &[0; 7]), None);
        assert_eq!(header_chain_len(next_header::TCP, &[0; 19]), None);
        assert_eq!(header_chain_len(next_header::NO_NEXT_HEADER, &[]), Some(0));
        let mut dest = options(2);
        dest[0] = next_header::ICMPV6;
        dest.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(header_chain_len(next_header::DESTINATION_OPTIONS, &dest), Some(24));
        assert_eq!(header_chain_len(next_header::DESTINATION_OPTIONS, &dest[..23]), None);
        assert_eq!(header_chain_len(next_header::DESTINATION_OPTIONS, &dest[..1]), None);
        // Authentication header: payload length 4 means (4 + 2) * 4 = 24 bytes.
        let mut ah = vec![next_header::UDP, 4];
        ah.resize(24 + 8, 0);
        assert_eq!(header_chain_len(next_header::AH, &ah), Some(32));
    }

    proptest! {
        #[test]
        fn pieces_cover_the_original(len in 0usize..20_000, mtu in 56usize..9000, dest in 0usize..4, id: u32) {
            let headers: Vec<_> = (0..dest.min(1)).map(|_| (next_header::DESTINATION_OPTIONS, options(dest))).collect();
            let original = packet(&headers, next_header::NO_NEXT_HEADER, len, 5);
            let pieces = match fragment(&original, mtu, id) {
                Ok(p) => p,
                Err(Ipv6FragmentError::HeaderChainTooLong { .. }) => {
                    prop_assert!(dest * 8 > (mtu - 48) / 8 * 8);
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            };
            let (count, bytes) = fragment_size(&original, mtu).unwrap();
            prop_assert_eq!(count, pieces.len());
            prop_assert_eq!(bytes, pieces.iter().map(Vec::len).sum::<usize>());
            if original.len() <= mtu {
                prop_assert_eq!(&pieces, &vec![original]);
                return Ok(());
            }
            let mut data = Vec::new();
            for piece in &pieces {
                prop_assert!(piece.len() <= mtu);
                let (p, f, at) = split(piece);
                prop_assert_eq!(f.offset, data.len());
                prop_assert_eq!(f.identification, id);
                data.extend_from_slice(&p.as_bytes()[at..]);
            }
            prop_assert_eq!(&data[..], &original[40..]);
        }
    }
}
