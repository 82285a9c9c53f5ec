//! IPv4 header parsing and emission (RFC 791), zero-copy over byte slices.
//!
//! [`Ipv4Packet::parse`] checks every length before any field is read, so accessors never index
//! out of bounds. Options are kept opaque except for [`options`], which walks them for the
//! fragmenter (which must know each option's copy bit).

use crate::checksum;
use std::fmt;

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Length of an IPv4 header with the largest options area (IHL = 15).
pub const MAX_HEADER_LEN: usize = 60;
/// The largest IPv4 datagram (the total-length field is 16 bits).
pub const MAX_PACKET_LEN: usize = 65_535;
/// The smallest MTU every IPv4 link must carry (RFC 791).
pub const MIN_MTU: usize = 68;

/// IP protocol numbers used by Morgana.
pub mod protocol {
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// Why bytes are not a well-formed IPv4 packet. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Fewer bytes than the header or the total length says.
    Truncated,
    /// The version field is not 4.
    BadVersion,
    /// IHL below 5 (a header shorter than 20 bytes).
    BadIhl,
    /// The total length is smaller than the header.
    BadTotalLength,
    /// The header checksum does not verify.
    BadChecksum,
    /// An option's length runs past the options area or is below 2.
    BadOptions,
}

impl Ipv4Error {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            Ipv4Error::Truncated => "ERR_IPV4_TRUNCATED",
            Ipv4Error::BadVersion => "ERR_IPV4_BAD_VERSION",
            Ipv4Error::BadIhl => "ERR_IPV4_BAD_IHL",
            Ipv4Error::BadTotalLength => "ERR_IPV4_BAD_TOTAL_LENGTH",
            Ipv4Error::BadChecksum => "ERR_IPV4_BAD_CHECKSUM",
            Ipv4Error::BadOptions => "ERR_IPV4_BAD_OPTIONS",
        }
    }
}

impl fmt::Display for Ipv4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Ipv4Error::Truncated => "IPv4 packet truncated: fewer bytes than its header or total length",
            Ipv4Error::BadVersion => "not an IPv4 packet: version field is not 4",
            Ipv4Error::BadIhl => "IPv4 header length (IHL) below 5 words",
            Ipv4Error::BadTotalLength => "IPv4 total length smaller than its header",
            Ipv4Error::BadChecksum => "IPv4 header checksum does not verify",
            Ipv4Error::BadOptions => "IPv4 options malformed",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Ipv4Error {}

/// A validated view of an IPv4 packet: the header and exactly `total length` bytes.
///
/// Bytes after the total length (Ethernet padding) are not part of the view.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Checks lengths, version and the header checksum, and returns a view of the packet.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Ipv4Error> {
        let packet = Self::parse_unchecked_checksum(bytes)?;
        if checksum::checksum(packet.header(), 0) != 0 {
            return Err(Ipv4Error::BadChecksum);
        }
        Ok(packet)
    }

    /// As [`parse`](Self::parse) but without verifying the header checksum, for callers that
    /// build or rewrite packets themselves.
    pub fn parse_unchecked_checksum(bytes: &'a [u8]) -> Result<Self, Ipv4Error> {
        if bytes.len() < MIN_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if bytes[0] >> 4 != 4 {
            return Err(Ipv4Error::BadVersion);
        }
        let header_len = usize::from(bytes[0] & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Ipv4Error::BadIhl);
        }
        if header_len > bytes.len() {
            return Err(Ipv4Error::Truncated);
        }
        let total_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if total_len < header_len {
            return Err(Ipv4Error::BadTotalLength);
        }
        if total_len > bytes.len() {
            return Err(Ipv4Error::Truncated);
        }
        Ok(Ipv4Packet { bytes: &bytes[..total_len] })
    }

    /// The whole packet (header and payload), without trailing padding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Header length in bytes (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes[0] & 0x0f) * 4
    }
    /// The header, options included.
    pub fn header(&self) -> &'a [u8] {
        &self.bytes[..self.header_len()]
    }
    /// The options area (possibly empty), opaque.
    pub fn options(&self) -> &'a [u8] {
        &self.bytes[MIN_HEADER_LEN..self.header_len()]
    }
    /// The payload after the header, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.header_len()..]
    }
    /// Type of service / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        self.bytes[1]
    }
    /// Total length field.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }
    /// Identification field.
    pub fn identification(&self) -> u16 {
        u16::from_be_bytes([self.bytes[4], self.bytes[5]])
    }
    fn flags_and_offset(&self) -> u16 {
        u16::from_be_bytes([self.bytes[6], self.bytes[7]])
    }
    /// The reserved (evil) bit.
    pub fn reserved_flag(&self) -> bool {
        self.flags_and_offset() & 0x8000 != 0
    }
    /// Don't Fragment.
    pub fn dont_fragment(&self) -> bool {
        self.flags_and_offset() & FLAG_DF != 0
    }
    /// More Fragments.
    pub fn more_fragments(&self) -> bool {
        self.flags_and_offset() & FLAG_MF != 0
    }
    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn fragment_offset(&self) -> usize {
        usize::from(self.flags_and_offset() & OFFSET_MASK) * 8
    }
    /// Whether this packet is a fragment of a larger datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.bytes[8]
    }
    /// Protocol number of the payload.
    pub fn protocol(&self) -> u8 {
        self.bytes[9]
    }
    /// Header checksum field as stored.
    pub fn header_checksum(&self) -> u16 {
        u16::from_be_bytes([self.bytes[10], self.bytes[11]])
    }
    /// Source address.
    pub fn src(&self) -> [u8; 4] {
        [self.bytes[12], self.bytes[13], self.bytes[14], self.bytes[15]]
    }
    /// Destination address.
    pub fn dst(&self) -> [u8; 4] {
        [self.bytes[16], self.bytes[17], self.bytes[18], self.bytes[19]]
    }
}

/// An IPv4 option as found in the options area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// Option type byte: copy bit (0x80), class and number.
    pub kind: u8,
    /// The whole option, type (and length) bytes included.
    pub bytes: &'a [u8],
}

impl Ipv4Option<'_> {
    /// Whether the option must be copied into every fragment (RFC 791 §3.1).
    pub fn copied(&self) -> bool {
        self.kind & 0x80 != 0
    }
}

/// Walks an options area: stops at End of Option List, steps over No Operation, and checks every
/// length. Returns the options in order (No Operation and End of Option List are not returned).
pub fn options(area: &[u8]) -> Result<Vec<Ipv4Option<'_>>, Ipv4Error> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < area.len() {
        match area[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let len = usize::from(*area.get(at + 1).ok_or(Ipv4Error::BadOptions)?);
                if len < 2 || at + len > area.len() {
                    return Err(Ipv4Error::BadOptions);
                }
                found.push(Ipv4Option { kind, bytes: &area[at..at + len] });
                at += len;
            }
        }
    }
    Ok(found)
}

/// The fields of an IPv4 header to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Header<'a> {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Payload protocol number.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Type of service byte.
    pub tos: u8,
    /// Identification.
    pub identification: u16,
    /// Don't Fragment.
    pub dont_fragment: bool,
    /// More Fragments.
    pub more_fragments: bool,
    /// Fragment offset in bytes; must be a multiple of 8.
    pub fragment_offset: usize,
    /// Options area; padded with zeros (End of Option List) to a multiple of 4 bytes.
    pub options: &'a [u8],
    /// Payload length in bytes.
    pub payload_len: usize,
}

/// Why a header cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// Options longer than 40 bytes.
    OptionsTooLong,
    /// Header plus payload over 65,535 bytes.
    PacketTooLong,
    /// Fragment offset not a multiple of 8 or beyond the 13-bit field.
    BadFragmentOffset,
    /// The output buffer is shorter than the header.
    BufferTooSmall,
}

impl EmitError {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            EmitError::OptionsTooLong => "ERR_IPV4_OPTIONS_TOO_LONG",
            EmitError::PacketTooLong => "ERR_IPV4_PACKET_TOO_LONG",
            EmitError::BadFragmentOffset => "ERR_IPV4_BAD_FRAGMENT_OFFSET",
            EmitError::BufferTooSmall => "ERR_BUFFER_TOO_SMALL",
        }
    }
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            EmitError::OptionsTooLong => "IPv4 options longer than 40 bytes",
            EmitError::PacketTooLong => "IPv4 packet longer than 65535 bytes",
            EmitError::BadFragmentOffset => "IPv4 fragment offset not a multiple of 8 below 65536",
            EmitError::BufferTooSmall => "output buffer too small for the IPv4 header",
        };
        f.write_str(text)
    }
}

impl std::error::Error for EmitError {}

impl Ipv4Header<'_> {
    /// Header length once options are padded to 4 bytes.
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    /// Writes the header, checksum included, at the start of `out` and returns its length.
    /// The payload itself is the caller's to place after it.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        if self.options.len() > MAX_HEADER_LEN - MIN_HEADER_LEN {
            return Err(EmitError::OptionsTooLong);
        }
        let header_len = self.header_len();
        let total_len = header_len + self.payload_len;
        if total_len > MAX_PACKET_LEN {
            return Err(EmitError::PacketTooLong);
        }
        if !self.fragment_offset.is_multiple_of(8) || self.fragment_offset / 8 > usize::from(OFFSET_MASK) {
            return Err(EmitError::BadFragmentOffset);
        }
        let out = out.get_mut(..header_len).ok_or(EmitError::BufferTooSmall)?;
        let mut flags = (self.fragment_offset / 8) as u16;
        if self.dont_fragment {
            flags |= FLAG_DF;
        }
        if self.more_fragments {
            flags |= FLAG_MF;
        }
        out[0] = 0x40 | (header_len / 4) as u8;
        out[1] = self.tos;
        out[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
        out[4..6].copy_from_slice(&self.identification.to_be_bytes());
        out[6..8].copy_from_slice(&flags.to_be_bytes());
        out[8] = self.ttl;
        out[9] = self.protocol;
        out[10..12].fill(0);
        out[12..16].copy_from_slice(&self.src);
        out[16..20].copy_from_slice(&self.dst);
        out[MIN_HEADER_LEN..MIN_HEADER_LEN + self.options.len()].copy_from_slice(self.options);
        out[MIN_HEADER_LEN + self.options.len()..].fill(0);
        let sum = checksum::checksum(out, 0);
        out[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(header_len)
    }
}

impl<'a> Ipv4Packet<'a> {
    /// The fields of this packet's header, for re-emitting it with changes.
    pub fn to_header(&self) -> Ipv4Header<'a> {
        Ipv4Header {
            src: self.src(),
            dst: self.dst(),
            protocol: self.protocol(),
            ttl: self.ttl(),
            tos: self.tos(),
            identification: self.identification(),
            dont_fragment: self.dont_fragment(),
            more_fragments: self.more_fragments(),
            fragment_offset: self.fragment_offset(),
            options: self.options(),
            payload_len: self.payload().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8], options: &[u8]) -> Vec<u8> {
        let header = Ipv4Header {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            protocol: protocol::UDP,
            ttl: 64,
            tos: 0,
            identification: 0x1234,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            options,
            payload_len: payload.len(),
        };
        let mut out = vec![0; header.header_len() + payload.len()];
        let len = header.emit(&mut out).unwrap();
        out[len..].copy_from_slice(payload);
        out
    }

    #[test]
    fn emit_then_parse() {
        let bytes = sample(b"hello", &[]);
        let packet = Ipv4Packet::parse(&bytes).unwrap();
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 25);
        assert_eq!(packet.identification(), 0x1234);
        assert!(packet.dont_fragment() && !packet.more_fragments() && !packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), 17);
        assert_eq!(packet.src(), [10, 0, 0, 1]);
        assert_eq!(packet.dst(), [10, 0, 0, 2]);
        assert_eq!(packet.payload(), b"hello");
    }

    #[test]
    fn options_are_padded_and_walked() {
        // Router Alert (copied, 4 bytes) followed by a 3-byte unknown uncopied option.
        let bytes = sample(b"x", &[0x94, 4, 0, 0, 0x07, 3, 9]);
        let packet = Ipv4Packet::parse(&bytes).unwrap();
        assert_eq!(packet.header_len(), 28);
        let opts = options(packet.options()).unwrap();
        assert_eq!(opts.len(), 2);
        assert!(opts[0].copied() && !opts[1].copied());
        assert_eq!(options(&[0x07, 1]), Err(Ipv4Error::BadOptions));
        assert_eq!(options(&[0x07, 9, 0]), Err(Ipv4Error::BadOptions));
        assert_eq!(options(&[0x07]), Err(Ipv4Error::BadOptions));
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut bytes = sample(b"abc", &[]);
        bytes.extend_from_slice(&[0; 20]);
        let packet = Ipv4Packet::parse(&bytes).unwrap();
        assert_eq!(packet.payload(), b"abc");
    }

    #[test]
    fn malformed_inputs() {
        let good = sample(b"hello", &[]);
        assert_eq!(Ipv4Packet::parse(&good[..19]).unwrap_err(), Ipv4Error::Truncated);
        assert_eq!(Ipv4Packet::parse(&good[..24]).unwrap_err(), Ipv4Error::Truncated);
        let mut bad = good.clone();
        bad[0] = 0x65;
        assert_eq!(Ipv4Packet::parse(&bad).unwrap_err(), Ipv4Error::BadVersion);
        bad[0] = 0x44;
        assert_eq!(Ipv4Packet::parse(&bad).unwrap_err(), Ipv4Error::BadIhl);
        bad[0] = 0x4f;
        assert_eq!(Ipv4Packet::parse(&bad).unwrap_err(), Ipv4Error::Truncated);
        let mut bad = good.clone();
        bad[3] = 10;
        assert_eq!(Ipv4Packet::parse(&bad).unwrap_err(), Ipv4Error::BadTotalLength);
        let mut bad = good.clone();
        bad[8] = 1;
        assert_eq!(Ipv4Packet::parse(&bad).unwrap_err(), Ipv4Error::BadChecksum);
        assert!(Ipv4Packet::parse_unchecked_checksum(&bad).is_ok());
    }

    #[test]
    fn emit_rejects_bad_fields() {
        let header = Ipv4Header {
            src: [0; 4],
            dst: [0; 4],
            protocol: 0,
            ttl: 1,
            tos: 0,
            identification: 0,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 3,
            options: &[],
            payload_len: 0,
        };
        let mut out = [0u8; 60];
        assert_eq!(header.emit(&mut out), Err(EmitError::BadFragmentOffset));
        let header = Ipv4Header { fragment_offset: 0, payload_len: 65_516, ..header };
        assert_eq!(header.emit(&mut out), Err(EmitError::PacketTooLong));
        let header = Ipv4Header { payload_len: 0, options: &[1; 41], ..header };
        assert_eq!(header.emit(&mut out), Err(EmitError::OptionsTooLong));
        let header = Ipv4Header { options: &[], ..header };
        assert_eq!(header.emit(&mut out[..10]), Err(EmitError::BufferTooSmall));
    }
}
