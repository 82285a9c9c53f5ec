//! IPv6 header parsing and emission (RFC 8200), zero-copy over byte slices, and a bounded walk of
//! the extension headers.
//!
//! [`Ipv6Packet::parse`] checks the fixed header (length, version, payload length against the
//! bytes) before any field is read; bytes after the payload length (link padding) are not part of
//! the view. [`Ipv6Packet::extensions`] then walks the extension headers this module knows
//! (hop-by-hop options, routing, fragment, destination options), checking every length and the
//! options inside hop-by-hop and destination options headers, and stops at the first header it
//! does not walk: an upper-layer protocol, No Next Header, or a value it does not know. That value
//! and the offset of the field that named it are reported, so a later ICMPv6 parameter problem
//! (RFC 8200 §4, code 1) can point at it.
//!
//! The walk is bounded: at most [`MAX_EXTENSION_HEADERS`] headers and
//! [`MAX_EXTENSION_BYTES`] bytes of them, and it allocates nothing.
//!
//! A fragment header ends the walk unless it is an atomic fragment (offset 0, M flag clear,
//! RFC 6946), which is processed as if the fragment header were not there: the bytes after the
//! fragment header of a real fragment are part of the fragmentable part and are only walked
//! after reassembly.

use std::fmt;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The largest payload without a jumbo payload option (the payload-length field is 16 bits).
pub const MAX_PAYLOAD_LEN: usize = 65_535;
/// The smallest MTU every IPv6 link must carry (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;
/// The most extension headers [`Ipv6Packet::extensions`] walks before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;
/// The most bytes of extension headers [`Ipv6Packet::extensions`] walks before giving up.
pub const MAX_EXTENSION_BYTES: usize = 1024;
/// Length of a fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Next-header values (IANA "Assigned Internet Protocol Numbers") used by Morgana.
pub mod next_header {
    /// Hop-by-hop options (RFC 8200 §4.3); only directly after the fixed header.
    pub const HOP_BY_HOP: u8 = 0;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// Routing header (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// Fragment header (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No next header (RFC 8200 §4.7).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// Destination options (RFC 8200 §4.6).
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// Why bytes are not a well-formed IPv6 packet. Each variant has a stable [`code`](Self::code).
///
/// Extension errors carry `pointer`, the offset from the start of the packet of the byte at
/// fault, as an ICMPv6 parameter problem reports it (RFC 4443 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Fewer bytes than the fixed header or the payload length says.
    Truncated,
    /// The version field is not 6.
    BadVersion,
    /// An extension header (or an option inside one) runs past the payload.
    BadExtension {
        /// Offset of the extension header's (or option's) length field, or of its start.
        pointer: usize,
    },
    /// A hop-by-hop options header anywhere but directly after the fixed header.
    MisplacedHopByHop {
        /// Offset of the next-header field that named it.
        pointer: usize,
    },
    /// More than [`MAX_EXTENSION_HEADERS`] headers or [`MAX_EXTENSION_BYTES`] bytes of them.
    TooManyExtensions {
        /// Offset of the next-header field naming the header that went over the bound.
        pointer: usize,
    },
}

impl Ipv6Error {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            Ipv6Error::Truncated => "ERR_IPV6_TRUNCATED",
            Ipv6Error::BadVersion => "ERR_IPV6_BAD_VERSION",
            Ipv6Error::BadExtension { .. } => "ERR_IPV6_BAD_EXTENSION",
            Ipv6Error::MisplacedHopByHop { .. } => "ERR_IPV6_MISPLACED_HOP_BY_HOP",
            Ipv6Error::TooManyExtensions { .. } => "ERR_IPV6_TOO_MANY_EXTENSIONS",
        }
    }

    /// The parameter-problem pointer, for the errors that have one.
    pub fn pointer(self) -> Option<usize> {
        match self {
            Ipv6Error::Truncated | Ipv6Error::BadVersion => None,
            Ipv6Error::BadExtension { pointer }
            | Ipv6Error::MisplacedHopByHop { pointer }
            | Ipv6Error::TooManyExtensions { pointer } => Some(pointer),
        }
    }
}

impl fmt::Display for Ipv6Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Ipv6Error::Truncated => "IPv6 packet truncated: fewer bytes than its header or payload length",
            Ipv6Error::BadVersion => "not an IPv6 packet: version field is not 6",
            Ipv6Error::BadExtension { .. } => "IPv6 extension header malformed or running past the payload",
            Ipv6Error::MisplacedHopByHop { .. } => {
                "IPv6 hop-by-hop options header not directly after the IPv6 header"
            }
            Ipv6Error::TooManyExtensions { .. } => "IPv6 extension header chain longer than Morgana walks",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Ipv6Error {}

/// A validated view of an IPv6 packet: the fixed header and exactly `payload length` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Checks the length, version and payload length, and returns a view of the packet.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Ipv6Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Ipv6Error::Truncated);
        }
        if bytes[0] >> 4 != 6 {
            return Err(Ipv6Error::BadVersion);
        }
        let total = HEADER_LEN + usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
        if total > bytes.len() {
            return Err(Ipv6Error::Truncated);
        }
        Ok(Ipv6Packet { bytes: &bytes[..total] })
    }

    /// The whole packet (header and payload), without trailing padding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.bytes[0] << 4) | (self.bytes[1] >> 4)
    }
    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        u32::from_be_bytes([0, self.bytes[1] & 0x0f, self.bytes[2], self.bytes[3]])
    }
    /// Payload length field: the bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> usize {
        self.bytes.len() - HEADER_LEN
    }
    /// The next-header field of the fixed header (the first extension header, if any).
    pub fn next_header(&self) -> u8 {
        self.bytes[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes[7]
    }
    /// Source address.
    pub fn src(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.bytes[8..24]);
        a
    }
    /// Destination address.
    pub fn dst(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.bytes[24..40]);
        a
    }
    /// Everything after the fixed header, extension headers included.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// Walks the extension headers (see the module documentation).
    pub fn extensions(&self) -> Result<Extensions, Ipv6Error> {
        walk(self.bytes)
    }

    /// The fields of this packet's fixed header, for re-emitting it with changes.
    pub fn to_header(&self) -> Ipv6Header {
        Ipv6Header {
            traffic_class: self.traffic_class(),
            flow_label: self.flow_label(),
            next_header: self.next_header(),
            hop_limit: self.hop_limit(),
            src: self.src(),
            dst: self.dst(),
            payload_len: self.payload_len(),
        }
    }
}

/// One extension header found by the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionHeader {
    /// Its next-header value: [`next_header::HOP_BY_HOP`], `ROUTING`, `FRAGMENT` or
    /// `DESTINATION_OPTIONS`.
    pub kind: u8,
    /// Offset of its first byte from the start of the packet.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
}

impl ExtensionHeader {
    /// Its bytes within `packet` (the packet it was found in).
    pub fn bytes<'p>(&self, packet: &Ipv6Packet<'p>) -> &'p [u8] {
        &packet.as_bytes()[self.offset..self.offset + self.len]
    }
}

/// A parsed fragment header (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// The next-header value of the fragmentable part.
    pub next_header: u8,
    /// Offset of this fragment's data in the original fragmentable part, in bytes (a multiple
    /// of 8 below 65,536).
    pub offset: usize,
    /// More fragments follow.
    pub more_fragments: bool,
    /// Identification shared by the fragments of one packet.
    pub identification: u32,
}

impl FragmentHeader {
    /// Parses the 8 bytes of a fragment header; `None` if fewer are given.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..FRAGMENT_HEADER_LEN)?;
        let word = u16::from_be_bytes([b[2], b[3]]);
        Some(FragmentHeader {
            next_header: b[0],
            offset: usize::from(word & 0xfff8),
            more_fragments: word & 1 != 0,
            identification: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// An atomic fragment (RFC 6946): a fragment header for a packet that was not fragmented.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more_fragments
    }

    /// Writes the header into `out[..8]`. The offset must be a multiple of 8 below 65,536.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Ipv6EmitError> {
        if !self.offset.is_multiple_of(8) || self.offset > 0xfff8 {
            return Err(Ipv6EmitError::BadFragmentOffset);
        }
        let out = out.get_mut(..FRAGMENT_HEADER_LEN).ok_or(Ipv6EmitError::BufferTooSmall)?;
        let word = self.offset as u16 | u16::from(self.more_fragments);
        out[0] = self.next_header;
        out[1] = 0;
        out[2..4].copy_from_slice(&word.to_be_bytes());
        out[4..8].copy_from_slice(&self.identification.to_be_bytes());
        Ok(FRAGMENT_HEADER_LEN)
    }
}

/// The result of walking a packet's extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    headers: [ExtensionHeader; MAX_EXTENSION_HEADERS],
    count: usize,
    /// The next-header value where the walk stopped: an upper-layer protocol, No Next Header, a
    /// header the walk does not know, or (after a non-atomic fragment header) the first header of
    /// the fragmentable part.
    pub next_header: u8,
    /// Offset from the start of the packet of the next-header field holding
    /// [`next_header`](Self::next_header): the pointer of an ICMPv6 parameter problem reporting
    /// it as unrecognised.
    pub next_header_pointer: usize,
    /// Offset from the start of the packet where that header (or the fragment data) starts.
    pub payload_offset: usize,
    /// The fragment header, if the walk met one.
    pub fragment: Option<FragmentHeader>,
}

impl Extensions {
    /// The extension headers walked, in order.
    pub fn headers(&self) -> &[ExtensionHeader] {
        &self.headers[..self.count]
    }

    /// Whether the walk stopped at a non-atomic fragment header, so that the bytes at
    /// [`payload_offset`](Self::payload_offset) are fragment data to reassemble rather than the
    /// header named by [`next_header`](Self::next_header).
    pub fn is_fragment_data(&self) -> bool {
        matches!(self.fragment, Some(f) if !f.is_atomic())
    }
}

/// Checks the type-length-value options of a hop-by-hop or destination options header whose
/// options area is `area`, starting at `base` in the packet.
fn check_options(area: &[u8], base: usize) -> Result<(), Ipv6Error> {
    let mut at = 0;
    while at < area.len() {
        if area[at] == 0 {
            // Pad1: a single byte.
            at += 1;
            continue;
        }
        let Some(&len) = area.get(at + 1) else {
            return Err(Ipv6Error::BadExtension { pointer: base + at });
        };
        let end = at + 2 + usize::from(len);
        if end > area.len() {
            return Err(Ipv6Error::BadExtension { pointer: base + at + 1 });
        }
        at = end;
    }
    Ok(())
}

fn walk(packet: &[u8]) -> Result<Extensions, Ipv6Error> {
    let mut found = Extensions {
        headers: [ExtensionHeader::default(); MAX_EXTENSION_HEADERS],
        count: 0,
        next_header: packet[6],
        next_header_pointer: 6,
        payload_offset: HEADER_LEN,
        fragment: None,
    };
    let mut total = 0;
    loop {
        let kind = found.next_header;
        let at = found.payload_offset;
        let pointer = found.next_header_pointer;
        let len = match kind {
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DESTINATION_OPTIONS => {
                if kind == next_header::HOP_BY_HOP && at != HEADER_LEN {
                    return Err(Ipv6Error::MisplacedHopByHop { pointer });
                }
                let ext_len = *packet.get(at + 1).ok_or(Ipv6Error::BadExtension { pointer: at })?;
                (usize::from(ext_len) + 1) * 8
            }
            next_header::FRAGMENT => FRAGMENT_HEADER_LEN,
            _ => return Ok(found),
        };
        if found.count == MAX_EXTENSION_HEADERS || total + len > MAX_EXTENSION_BYTES {
            return Err(Ipv6Error::TooManyExtensions { pointer });
        }
        if at + len > packet.len() {
            // Point at the length field when there is one, else at the header itself.
            let pointer = if kind == next_header::FRAGMENT { at } else { at + 1 };
            return Err(Ipv6Error::BadExtension { pointer });
        }
        let bytes = &packet[at..at + len];
        if kind == next_header::HOP_BY_HOP || kind == next_header::DESTINATION_OPTIONS {
            check_options(&bytes[2..], at + 2)?;
        }
        found.headers[found.count] = ExtensionHeader { kind, offset: at, len };
        found.count += 1;
        total += len;
        found.next_header = bytes[0];
        found.next_header_pointer = at;
        found.payload_offset = at + len;
        if kind == next_header::FRAGMENT {
            let fragment = FragmentHeader::parse(bytes).ok_or(Ipv6Error::BadExtension { pointer: at })?;
            found.fragment = Some(fragment);
            if !fragment.is_atomic() {
                return Ok(found);
            }
        }
    }
}

/// The fields of a fixed IPv6 header to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// Flow label; at most 20 bits.
    pub flow_label: u32,
    /// The first extension header or the upper-layer protocol.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Bytes after the fixed header, extension headers included.
    pub payload_len: usize,
}

/// Why a header cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6EmitError {
    /// Payload over 65,535 bytes (jumbograms are not supported).
    PayloadTooLong,
    /// Flow label wider than 20 bits.
    BadFlowLabel,
    /// Fragment offset not a multiple of 8 below 65,536.
    BadFragmentOffset,
    /// The output buffer is shorter than the header.
    BufferTooSmall,
}

impl Ipv6EmitError {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            Ipv6EmitError::PayloadTooLong => "ERR_IPV6_PAYLOAD_TOO_LONG",
            Ipv6EmitError::BadFlowLabel => "ERR_IPV6_BAD_FLOW_LABEL",
            Ipv6EmitError::BadFragmentOffset => "ERR_IPV6_BAD_FRAGMENT_OFFSET",
            Ipv6EmitError::BufferTooSmall => "ERR_BUFFER_TOO_SMALL",
        }
    }
}

impl fmt::Display for Ipv6EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Ipv6EmitError::PayloadTooLong => "IPv6 payload longer than 65535 bytes",
            Ipv6EmitError::BadFlowLabel => "IPv6 flow label wider than 20 bits",
            Ipv6EmitError::BadFragmentOffset => "IPv6 fragment offset not a multiple of 8 below 65536",
            Ipv6EmitError::BufferTooSmall => "output buffer too small for the IPv6 header",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Ipv6EmitError {}

impl Ipv6Header {
    /// Writes the fixed header at the start of `out` and returns its length (40). The payload
    /// (extension headers included) is the caller's to place after it.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Ipv6EmitError> {
        if self.payload_len > MAX_PAYLOAD_LEN {
            return Err(Ipv6EmitError::PayloadTooLong);
        }
        if self.flow_label > 0xf_ffff {
            return Err(Ipv6EmitError::BadFlowLabel);
        }
        let out = out.get_mut(..HEADER_LEN).ok_or(Ipv6EmitError::BufferTooSmall)?;
        let word = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label;
        out[0..4].copy_from_slice(&word.to_be_bytes());
        out[4..6].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
        out[6] = self.next_header;
        out[7] = self.hop_limit;
        out[8..24].copy_from_slice(&self.src);
        out[24..40].copy_from_slice(&self.dst);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let header = Ipv6Header {
            traffic_class: 0xb8,
            flow_label: 0x12345,
            next_header: next,
            hop_limit: 64,
            src: SRC,
            dst: DST,
            payload_len: payload.len(),
        };
        let mut out = vec![0; HEADER_LEN + payload.len()];
        assert_eq!(header.emit(&mut out), Ok(HEADER_LEN));
        out[HEADER_LEN..].copy_from_slice(payload);
        out
    }

    /// An options-style extension header (hop-by-hop, routing, destination options) of
    /// `units` 8-byte units, filled with PadN.
    fn options_header(next: u8, units: usize) -> Vec<u8> {
        let len = units * 8;
        let mut h = vec![next, (units - 1) as u8, 1, (len - 4) as u8];
        h.resize(len, 0);
        h
    }

    #[test]
    fn emit_then_parse() {
        let bytes = packet(next_header::UDP, b"hello");
        let p = Ipv6Packet::parse(&bytes).unwrap();
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 5);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), SRC);
        assert_eq!(p.dst(), DST);
        assert_eq!(p.payload(), b"hello");
        let ext = p.extensions().unwrap();
        assert!(ext.headers().is_empty());
        assert_eq!((ext.next_header, ext.next_header_pointer, ext.payload_offset), (17, 6, 40));
        assert_eq!(p.to_header().payload_len, 5);
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut bytes = packet(next_header::NO_NEXT_HEADER, &[]);
        bytes.extend_from_slice(&[0xaa; 20]);
        let p = Ipv6Packet::parse(&bytes).unwrap();
        assert_eq!(p.as_bytes().len(), 40);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn malformed_headers() {
        let good = packet(next_header::UDP, &[0; 8]);
        assert_eq!(Ipv6Packet::parse(&good[..39]).unwrap_err(), Ipv6Error::Truncated);
        assert_eq!(Ipv6Packet::parse(&good[..47]).unwrap_err(), Ipv6Error::Truncated);
        let mut bad = good.clone();
        bad[0] = 0x46;
        assert_eq!(Ipv6Packet::parse(&bad).unwrap_err(), Ipv6Error::BadVersion);
        assert_eq!(Ipv6Error::BadVersion.code(), "ERR_IPV6_BAD_VERSION");
    }

    #[test]
    fn extension_chain() {
        let mut payload = options_header(next_header::ROUTING, 1);
        // Routing header: type 4 (segment routing), segments left 0, one unit.
        payload.extend_from_slice(&[next_header::FRAGMENT, 0, 4, 0, 0, 0, 0, 0]);
        // Atomic fragment: the walk continues past it.
        let mut frag = [0; 8];
        FragmentHeader {
            next_header: next_header::DESTINATION_OPTIONS,
            offset: 0,
            more_fragments: false,
            identification: 0xdead_beef,
        }
        .emit(&mut frag)
        .unwrap();
        payload.extend_from_slice(&frag);
        payload.extend_from_slice(&options_header(next_header::ICMPV6, 2));
        payload.extend_from_slice(&[128, 0, 0, 0]);
        let bytes = packet(next_header::HOP_BY_HOP, &payload);
        let p = Ipv6Packet::parse(&bytes).unwrap();
        let ext = p.extensions().unwrap();
        let kinds: Vec<_> = ext.headers().iter().map(|h| (h.kind, h.offset, h.len)).collect();
        assert_eq!(kinds, [(0, 40, 8), (43, 48, 8), (44, 56, 8), (60, 64, 16)]);
        assert_eq!(ext.next_header, next_header::ICMPV6);
        assert_eq!(ext.next_header_pointer, 64);
        assert_eq!(ext.payload_offset, 80);
        let f = ext.fragment.unwrap();
        assert!(f.is_atomic() && !ext.is_fragment_data());
        assert_eq!(f.identification, 0xdead_beef);
        assert_eq!(ext.headers()[1].bytes(&p)[2], 4);
    }

    #[test]
    fn fragment_stops_the_walk() {
        let mut frag = [0; 8];
        let header = FragmentHeader {
            next_header: next_header::HOP_BY_HOP,
            offset: 1448,
            more_fragments: true,
            identification: 7,
        };
        header.emit(&mut frag).unwrap();
        let mut payload = frag.to_vec();
        payload.extend_from_slice(&[0xff; 16]); // fragment data, not headers
        let bytes = packet(next_header::FRAGMENT, &payload);
        let ext = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap();
        assert_eq!(ext.fragment, Some(header));
        assert!(ext.is_fragment_data());
        assert_eq!((ext.next_header, ext.next_header_pointer, ext.payload_offset), (0, 40, 48));
        assert_eq!(
            FragmentHeader { offset: 3, ..header }.emit(&mut frag),
            Err(Ipv6EmitError::BadFragmentOffset)
        );
        assert_eq!(header.emit(&mut frag[..7]), Err(Ipv6EmitError::BufferTooSmall));
    }

    #[test]
    fn unknown_next_header_is_reported() {
        let mut payload = options_header(143, 1); // Ethernet-in-IPv6 after destination options
        payload.extend_from_slice(&[1, 2, 3]);
        let bytes = packet(next_header::DESTINATION_OPTIONS, &payload);
        let ext = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap();
        assert_eq!((ext.next_header, ext.next_header_pointer, ext.payload_offset), (143, 40, 48));
    }

    #[test]
    fn malformed_extensions() {
        // Hop-by-hop after another header.
        let payload = options_header(next_header::HOP_BY_HOP, 1);
        let bytes = packet(next_header::DESTINATION_OPTIONS, &payload);
        let err = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err();
        assert_eq!(err, Ipv6Error::MisplacedHopByHop { pointer: 40 });
        // Length running past the payload.
        let mut payload = options_header(next_header::UDP, 2);
        payload.truncate(12);
        let bytes = packet(next_header::ROUTING, &payload);
        let err = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err();
        assert_eq!(err, Ipv6Error::BadExtension { pointer: 41 });
        // No length byte at all.
        let bytes = packet(next_header::ROUTING, &[17]);
        assert_eq!(
            Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err(),
            Ipv6Error::BadExtension { pointer: 40 }
        );
        // Truncated fragment header.
        let bytes = packet(next_header::FRAGMENT, &[17, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err(),
            Ipv6Error::BadExtension { pointer: 40 }
        );
        // An option running past its header: PadN of length 10 in an 8-byte header.
        let bytes = packet(next_header::DESTINATION_OPTIONS, &[17, 0, 1, 10, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err(),
            Ipv6Error::BadExtension { pointer: 43 }
        );
        // An option type with no length byte.
        let bytes = packet(next_header::DESTINATION_OPTIONS, &[17, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(
            Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err(),
            Ipv6Error::BadExtension { pointer: 47 }
        );
    }

    #[test]
    fn chain_is_bounded() {
        let mut payload = Vec::new();
        for _ in 0..MAX_EXTENSION_HEADERS {
            payload.extend_from_slice(&options_header(next_header::DESTINATION_OPTIONS, 1));
        }
        payload.extend_from_slice(&options_header(next_header::UDP, 1));
        let bytes = packet(next_header::DESTINATION_OPTIONS, &payload);
        let err = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err();
        assert_eq!(err, Ipv6Error::TooManyExtensions { pointer: 40 + 8 * (MAX_EXTENSION_HEADERS - 1) });
        // One header over the byte bound (its length field allows 2048 bytes).
        let payload = options_header(next_header::UDP, MAX_EXTENSION_BYTES / 8 + 1);
        let bytes = packet(next_header::ROUTING, &payload);
        let err = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap_err();
        assert_eq!(err, Ipv6Error::TooManyExtensions { pointer: 6 });
    }

    #[test]
    fn emit_rejects_bad_fields() {
        let header = Ipv6Header {
            traffic_class: 0,
            flow_label: 0x10_0000,
            next_header: 59,
            hop_limit: 1,
            src: SRC,
            dst: DST,
            payload_len: 0,
        };
        let mut out = [0; 40];
        assert_eq!(header.emit(&mut out), Err(Ipv6EmitError::BadFlowLabel));
        let header = Ipv6Header { flow_label: 0, payload_len: 65_536, ..header };
        assert_eq!(header.emit(&mut out), Err(Ipv6EmitError::PayloadTooLong));
        let header = Ipv6Header { payload_len: 0, ..header };
        assert_eq!(header.emit(&mut out[..39]), Err(Ipv6EmitError::BufferTooSmall));
    }

    /// A random chain of known extension headers (hop-by-hop only first) then an upper layer.
    fn chain() -> impl Strategy<Value = (Vec<(u8, usize)>, u8)> {
        let kind = prop_oneof![
            Just(next_header::ROUTING),
            Just(next_header::DESTINATION_OPTIONS),
            Just(next_header::FRAGMENT)
        ];
        (
            any::<bool>(),
            proptest::collection::vec((kind, 1usize..4), 0..6),
            prop_oneof![Just(6u8), Just(17u8), Just(58u8), Just(59u8)],
        )
            .prop_map(|(hbh, mut rest, upper)| {
                if hbh {
                    rest.insert(0, (next_header::HOP_BY_HOP, 1));
                }
                (rest, upper)
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), version_six: bool, fix_len: bool) {
            let mut bytes = bytes;
            if version_six && !bytes.is_empty() {
                bytes[0] = 0x60 | (bytes[0] & 0x0f);
            }
            if fix_len && bytes.len() >= HEADER_LEN {
                let len = (bytes.len() - HEADER_LEN) as u16;
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Ipv6Packet::parse(&bytes) {
                if let Ok(ext) = p.extensions() {
                    prop_assert!(ext.payload_offset <= p.as_bytes().len());
                    for h in ext.headers() {
                        prop_assert_eq!(h.bytes(&p).len(), h.len);
                    }
                }
            }
        }

        #[test]
        fn emit_parse_round_trip(tc: u8, flow in 0u32..0x10_0000, next: u8, hop: u8, src: [u8; 16], dst: [u8; 16], payload in proptest::collection::vec(any::<u8>(), 0..100), pad in 0usize..30) {
            let header = Ipv6Header { traffic_class: tc, flow_label: flow, next_header: next, hop_limit: hop, src, dst, payload_len: payload.len() };
            let mut out = vec![0; HEADER_LEN + payload.len() + pad];
            prop_assert_eq!(header.emit(&mut out), Ok(HEADER_LEN));
            out[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(&payload);
            let p = Ipv6Packet::parse(&out).unwrap();
            prop_assert_eq!(p.to_header(), header);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn extension_chains_walk(spec in chain(), id: u32) {
            let (headers, upper) = spec;
            let mut payload = Vec::new();
            let mut expected = Vec::new();
            for (i, &(kind, units)) in headers.iter().enumerate() {
                let next = headers.get(i + 1).map_or(upper, |h| h.0);
                let at = HEADER_LEN + payload.len();
                if kind == next_header::FRAGMENT {
                    let mut f = [0; 8];
                    FragmentHeader { next_header: next, offset: 0, more_fragments: false, identification: id }.emit(&mut f).unwrap();
                    payload.extend_from_slice(&f);
                    expected.push((kind, at, 8));
                } else {
                    payload.extend_from_slice(&options_header(next, units));
                    expected.push((kind, at, units * 8));
                }
            }
            payload.extend_from_slice(b"upper");
            let first = headers.first().map_or(upper, |h| h.0);
            let bytes = packet(first, &payload);
            let ext = Ipv6Packet::parse(&bytes).unwrap().extensions().unwrap();
            let got: Vec<_> = ext.headers().iter().map(|h| (h.kind, h.offset, h.len)).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(ext.next_header, upper);
            prop_assert_eq!(&bytes[ext.payload_offset..], b"upper");
            prop_assert_eq!(bytes[ext.next_header_pointer], upper);
        }
    }
}
