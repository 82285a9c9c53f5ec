//! IPv4 fragmentation on send (RFC 791 §3.2, "An Example Fragmentation Procedure"); IPv6
//! fragmentation is in [`ipv6`].
//!
//! A packet that is itself a fragment may be fragmented again (as a router does): offsets are
//! relative to the original datagram and the last piece keeps the packet's own More Fragments bit.

use crate::wire::ipv4::{self, Ipv4Error, Ipv4Header, Ipv4Packet};
use std::fmt;

pub mod ipv6;

/// Why a packet cannot be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentError {
    /// The input is not a well-formed IPv4 packet.
    Malformed(Ipv4Error),
    /// Don't Fragment is set and the packet is larger than the MTU; `mtu` is what the sender
    /// must fit (path-MTU discovery, RFC 1191).
    FragmentationNeeded {
        /// The MTU the packet did not fit.
        mtu: usize,
    },
    /// The MTU cannot hold a header (with its copied options) plus 8 bytes of payload.
    MtuTooSmall {
        /// The MTU that was asked for.
        mtu: usize,
    },
    /// The packet is a fragment whose offset plus length runs past 65,535 bytes, so its pieces'
    /// offsets would not fit the 13-bit field.
    OffsetOverflow,
}

impl FragmentError {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            FragmentError::Malformed(e) => e.code(),
            FragmentError::FragmentationNeeded { .. } => "ERR_FRAGMENTATION_NEEDED",
            FragmentError::MtuTooSmall { .. } => "ERR_MTU_TOO_SMALL",
            FragmentError::OffsetOverflow => "ERR_IPV4_FRAGMENT_OFFSET_OVERFLOW",
        }
    }
}

impl fmt::Display for FragmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FragmentError::Malformed(e) => e.fmt(f),
            FragmentError::FragmentationNeeded { mtu } => {
                write!(f, "packet larger than the MTU ({mtu}) has Don't Fragment set")
            }
            FragmentError::MtuTooSmall { mtu } => {
                write!(f, "MTU {mtu} cannot carry an IPv4 header and 8 bytes of payload")
            }
            FragmentError::OffsetOverflow => {
                f.write_str("fragment offset plus payload length runs past 65535 bytes")
            }
        }
    }
}

impl std::error::Error for FragmentError {}

impl From<Ipv4Error> for FragmentError {
    fn from(e: Ipv4Error) -> Self {
        FragmentError::Malformed(e)
    }
}

/// Splits `packet` into packets of at most `mtu` bytes, appending them back to back to `out` and
/// each one's length to `lengths`. A packet that already fits is appended unchanged.
///
/// The first fragment keeps all options; later ones keep only options with the copy bit set.
/// Header checksums are recomputed. Nothing is appended when an error is returned.
pub fn fragment_into(
    packet: &[u8],
    mtu: usize,
    out: &mut Vec<u8>,
    lengths: &mut Vec<usize>,
) -> Result<(), FragmentError> {
    let packet = Ipv4Packet::parse(packet)?;
    if packet.total_len() <= mtu {
        out.extend_from_slice(packet.as_bytes());
        lengths.push(packet.total_len());
        return Ok(());
    }
    if packet.dont_fragment() {
        return Err(FragmentError::FragmentationNeeded { mtu });
    }

    let mut copied_options = Vec::with_capacity(packet.options().len());
    for option in ipv4::options(packet.options())? {
        if option.copied() {
            copied_options.extend_from_slice(option.bytes);
        }
    }
    let first = packet.to_header();
    let later = Ipv4Header { options: &copied_options, ..first.clone() };
    let room = |header_len: usize| mtu.saturating_sub(header_len) / 8 * 8;
    let (first_room, later_room) = (room(first.header_len()), room(later.header_len()));
    if first_room == 0 || later_room == 0 {
        return Err(FragmentError::MtuTooSmall { mtu });
    }

    let payload = packet.payload();
    if packet.fragment_offset() + payload.len() > ipv4::MAX_PACKET_LEN {
        return Err(FragmentError::OffsetOverflow);
    }
    let start = out.len();
    let lengths_before = lengths.len();
    let mut offset = 0;
    while offset < payload.len() {
        let (template, room) = if offset == 0 { (&first, first_room) } else { (&later, later_room) };
        let len = room.min(payload.len() - offset);
        let last = offset + len == payload.len();
        let header = Ipv4Header {
            more_fragments: !last || packet.more_fragments(),
            fragment_offset: packet.fragment_offset() + offset,
            payload_len: len,
            ..template.clone()
        };
        let at = out.len();
        out.resize(at + header.header_len(), 0);
        if header.emit(&mut out[at..]).is_err() {
            // Unreachable after the checks above; never leave half a result behind.
            out.truncate(start);
            lengths.truncate(lengths_before);
            return Err(FragmentError::OffsetOverflow);
        }
        out.extend_from_slice(&payload[offset..offset + len]);
        lengths.push(out.len() - at);
        offset += len;
    }
    Ok(())
}

/// [`fragment_into`] returning one `Vec` per packet.
pub fn fragment(packet: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, FragmentError> {
    let mut out = Vec::with_capacity(packet.len() + 64);
    let mut lengths = Vec::new();
    fragment_into(packet, mtu, &mut out, &mut lengths)?;
    Ok(split(&out, &lengths))
}

/// Cuts packets written back to back into `out` (as `fragment_into` does) into one `Vec` each.
pub(crate) fn split(out: &[u8], lengths: &[usize]) -> Vec<Vec<u8>> {
    let mut at = 0;
    lengths
        .iter()
        .map(|&len| {
            at += len;
            out[at - len..at].to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::protocol;

    pub(crate) fn datagram(payload_len: usize, options: &[u8], dont_fragment: bool) -> Vec<u8> {
        let header = Ipv4Header {
            src: [192, 168, 1, 1],
            dst: [192, 168, 1, 2],
            protocol: protocol::UDP,
            ttl: 64,
            tos: 0,
            identification: 77,
            dont_fragment,
            more_fragments: false,
            fragment_offset: 0,
            options,
            payload_len,
        };
        let mut out = vec![0; header.header_len() + payload_len];
        let at = header.emit(&mut out).unwrap();
        for (i, b) in out[at..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        out
    }

    #[test]
    fn small_packet_is_unchanged() {
        let packet = datagram(100, &[], false);
        assert_eq!(fragment(&packet, 1500).unwrap(), vec![packet]);
    }

    #[test]
    fn splits_on_8_byte_boundaries() {
        let packet = datagram(4000, &[], false);
        let pieces = fragment(&packet, 1500).unwrap();
        assert_eq!(pieces.len(), 3);
        let mut expected_offset = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let p = Ipv4Packet::parse(piece).unwrap();
            assert!(piece.len() <= 1500);
            assert_eq!(p.fragment_offset(), expected_offset);
            assert_eq!(p.more_fragments(), i < 2);
            assert_eq!(p.identification(), 77);
            if i < 2 {
                assert_eq!(p.payload().len() % 8, 0);
            }
            expected_offset += p.payload().len();
        }
        assert_eq!(expected_offset, 4000);
        assert_eq!(Ipv4Packet::parse(&pieces[0]).unwrap().payload().len(), 1480);
    }

    #[test]
    fn only_copied_options_in_later_fragments() {
        // Router Alert (copy bit set) and Record Route (copy bit clear, 7 bytes).
        let options = [0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0];
        let packet = datagram(3000, &options, false);
        let pieces = fragment(&packet, 576).unwrap();
        let first = Ipv4Packet::parse(&pieces[0]).unwrap();
        assert_eq!(&first.options()[..11], &options);
        for piece in &pieces[1..] {
            let p = Ipv4Packet::parse(piece).unwrap();
            assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        }
    }

    #[test]
    fn dont_fragment_and_tiny_mtu() {
        let packet = datagram(2000, &[], true);
        assert_eq!(fragment(&packet, 1500), Err(FragmentError::FragmentationNeeded { mtu: 1500 }));
        let packet = datagram(2000, &[], false);
        assert_eq!(fragment(&packet, 27), Err(FragmentError::MtuTooSmall { mtu: 27 }));
        assert_eq!(fragment(&packet, 28).unwrap().len(), 250);
        assert_eq!(fragment(&packet[..10], 1500), Err(FragmentError::Malformed(Ipv4Error::Truncated)));
    }

    #[test]
    fn refragmenting_a_fragment_keeps_offsets_and_mf() {
        let packet = datagram(4000, &[], false);
        let pieces = fragment(&packet, 1500).unwrap();
        let again = fragment(&pieces[1], 600).unwrap();
        let mut offset = Ipv4Packet::parse(&pieces[1]).unwrap().fragment_offset();
        for piece in &again {
            let p = Ipv4Packet::parse(piece).unwrap();
            assert_eq!(p.fragment_offset(), offset);
            assert!(p.more_fragments(), "middle fragment pieces all keep MF");
            offset += p.payload().len();
        }
    }
}
