//! The TCP header and its options (RFC 9293 §3.1, RFC 7323, RFC 2018): parse and emit over byte
//! slices, every length checked. Parsing never panics on arbitrary bytes. Checksums cover the
//! IPv4 (RFC 9293 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header, chosen by the addresses' family.

use morgana_net::checksum::{checksum, ipv4_pseudo_header_sum, ipv6_pseudo_header_sum};
use std::net::IpAddr;

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// PSH flag.
pub const PSH: u8 = 0x08;
/// ACK flag.
pub const ACK: u8 = 0x10;
/// URG flag.
pub const URG: u8 = 0x20;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// IP protocol number of TCP.
pub const PROTOCOL: u8 = 6;
/// Most SACK blocks one header can carry.
pub const MAX_SACK_BLOCKS: usize = 4;

/// IP header plus TCP header without options for `addr`'s family: the advertised MSS is the
/// MTU minus this (40 for IPv4, 60 for IPv6).
#[inline]
pub fn ip_tcp_overhead(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => 40,
        IpAddr::V6(_) => 60,
    }
}

/// The smallest segment size path-MTU discovery may lower a connection to: the family's minimum
/// MTU (576 for IPv4, RFC 1122; 1280 for IPv6, RFC 8200 §5) minus [`ip_tcp_overhead`].
#[inline]
pub fn min_mss(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => 536,
        IpAddr::V6(_) => 1220,
    }
}

/// The pseudo-header sum for a segment of `len` bytes from `src` to `dst`, or `None` when the
/// length does not fit the family's length field or the families differ.
#[inline]
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> Option<u16> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(len).ok()?;
            Some(ipv4_pseudo_header_sum(s.octets(), d.octets(), PROTOCOL, len))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u32::try_from(len).ok()?;
            Some(ipv6_pseudo_header_sum(s.octets(), d.octets(), PROTOCOL, len))
        }
        _ => None,
    }
}

/// Why a segment was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header.
    Truncated,
    /// Data offset below 5 or beyond the segment.
    BadDataOffset,
    /// An option's length runs past the header or is invalid for its kind.
    BadOption,
    /// The checksum does not verify.
    BadChecksum,
    /// The output buffer is too small or the options do not fit 40 bytes.
    BufferTooSmall,
}

impl WireError {
    /// Stable code, e.g. `ERR_TCP_TRUNCATED`.
    pub fn code(self) -> &'static str {
        match self {
            WireError::Truncated => "ERR_TCP_TRUNCATED",
            WireError::BadDataOffset => "ERR_TCP_BAD_DATA_OFFSET",
            WireError::BadOption => "ERR_TCP_BAD_OPTION",
            WireError::BadChecksum => "ERR_TCP_BAD_CHECKSUM",
            WireError::BufferTooSmall => "ERR_BUFFER_TOO_SMALL",
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "TCP segment shorter than its header",
            WireError::BadDataOffset => "TCP data offset out of range",
            WireError::BadOption => "malformed TCP option",
            WireError::BadChecksum => "TCP checksum does not verify",
            WireError::BufferTooSmall => "buffer too small for the TCP segment",
        })
    }
}

impl std::error::Error for WireError {}

/// The options Morgana understands. Unknown options are skipped on parse and never emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2).
    pub mss: Option<u16>,
    /// Window scale shift (kind 3), as sent (values above 14 are kept; users clamp them).
    pub window_scale: Option<u8>,
    /// SACK permitted (kind 4).
    pub sack_permitted: bool,
    /// Timestamps (kind 8): TSval, TSecr.
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (kind 5): left and right edges; `sack_count` of them are valid.
    pub sack: [(u32, u32); MAX_SACK_BLOCKS],
    /// How many of `sack` are valid.
    pub sack_count: u8,
}

impl TcpOptions {
    /// Bytes these options take on the wire, padded to a multiple of 4.
    pub fn wire_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4; // NOP + 3
        }
        if self.sack_permitted && self.timestamps.is_none() {
            n += 4; // NOP NOP + 2
        }
        if self.timestamps.is_some() {
            n += 12; // (SACK-permitted or NOP NOP) + 10
        }
        if self.sack_count > 0 {
            // NOP NOP + 2 + 8n, with n clamped as `emit` clamps it.
            n += 4 + 8 * usize::from(self.sack_count).min(MAX_SACK_BLOCKS);
        }
        n
    }
}

/// A parsed TCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// Flags (FIN, SYN, RST, PSH, ACK, URG; CWR/ECE are kept in the upper bits).
    pub flags: u8,
    /// Window field as sent (unscaled).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpHeader {
    /// Whether `flag` is set.
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Header length with these options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.wire_len()
    }

    /// Parses a segment; returns the header and the offset of the payload. The checksum is
    /// verified when `addresses` (source, destination; both IPv4 or both IPv6) is given.
    pub fn parse(
        segment: &[u8],
        addresses: Option<(IpAddr, IpAddr)>,
    ) -> Result<(TcpHeader, usize), WireError> {
        if segment.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let data_offset = usize::from(segment[12] >> 4) * 4;
        if data_offset < HEADER_LEN || data_offset > segment.len() {
            return Err(WireError::BadDataOffset);
        }
        if let Some((src, dst)) = addresses {
            let Some(sum) = pseudo_header_sum(src, dst, segment.len()) else {
                // Too long for an IPv4 length field, or addresses of two families (which no
                // checksum can verify).
                return Err(if src.is_ipv4() == dst.is_ipv4() {
                    WireError::Truncated
                } else {
                    WireError::BadChecksum
                });
            };
            if checksum(segment, sum) != 0 {
                return Err(WireError::BadChecksum);
            }
        }
        let options = parse_options(&segment[HEADER_LEN..data_offset])?;
        let header = TcpHeader {
            src_port: u16::from_be_bytes([segment[0], segment[1]]),
            dst_port: u16::from_be_bytes([segment[2], segment[3]]),
            seq: u32::from_be_bytes([segment[4], segment[5], segment[6], segment[7]]),
            ack: u32::from_be_bytes([segment[8], segment[9], segment[10], segment[11]]),
            flags: segment[13],
            window: u16::from_be_bytes([segment[14], segment[15]]),
            urgent: u16::from_be_bytes([segment[18], segment[19]]),
            options,
        };
        Ok((header, data_offset))
    }

    /// Writes the header and `payload` into `out` with the checksum for `src` → `dst`; returns
    /// the segment length.
    pub fn emit(&self, out: &mut [u8], payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<usize, WireError> {
        let hlen = self.header_len();
        let total = hlen + payload.len();
        if hlen > MAX_HEADER_LEN
            || total > out.len()
            || total > usize::from(u16::MAX)
            || pseudo_header_sum(src, dst, total).is_none()
        {
            return Err(WireError::BufferTooSmall);
        }
        self.emit_header(&mut out[..hlen])?;
        out[hlen..total].copy_from_slice(payload);
        finish_checksum(&mut out[..total], src, dst);
        Ok(total)
    }

    /// Writes only the header (checksum field zero) into `out[..header_len()]`.
    pub fn emit_header(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let hlen = self.header_len();
        if hlen > MAX_HEADER_LEN || out.len() < hlen {
            return Err(WireError::BufferTooSmall);
        }
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.ack.to_be_bytes());
        out[12] = ((hlen / 4) as u8) << 4;
        out[13] = self.flags;
        out[14..16].copy_from_slice(&self.window.to_be_bytes());
        out[16..18].copy_from_slice(&[0, 0]);
        out[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        let o = &self.options;
        let mut at = HEADER_LEN;
        if let Some(mss) = o.mss {
            out[at..at + 4].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
            at += 4;
        }
        if let Some(shift) = o.window_scale {
            out[at..at + 4].copy_from_slice(&[1, 3, 3, shift]);
            at += 4;
        }
        if let Some((val, ecr)) = o.timestamps {
            if o.sack_permitted {
                out[at..at + 2].copy_from_slice(&[4, 2]);
            } else {
                out[at..at + 2].copy_from_slice(&[1, 1]);
            }
            out[at + 2] = 8;
            out[at + 3] = 10;
            out[at + 4..at + 8].copy_from_slice(&val.to_be_bytes());
            out[at + 8..at + 12].copy_from_slice(&ecr.to_be_bytes());
            at += 12;
        } else if o.sack_permitted {
            out[at..at + 4].copy_from_slice(&[1, 1, 4, 2]);
            at += 4;
        }
        if o.sack_count > 0 {
            let n = usize::from(o.sack_count).min(MAX_SACK_BLOCKS);
            out[at..at + 4].copy_from_slice(&[1, 1, 5, (2 + 8 * n) as u8]);
            at += 4;
            for &(l, r) in &o.sack[..n] {
                out[at..at + 4].copy_from_slice(&l.to_be_bytes());
                out[at + 4..at + 8].copy_from_slice(&r.to_be_bytes());
                at += 8;
            }
        }
        debug_assert_eq!(at, hlen);
        Ok(hlen)
    }
}

/// Computes and stores the checksum of a complete segment (checksum field zero on entry) over
/// the pseudo-header of `src`'s family. Families that differ (a caller bug) leave it zero.
pub fn finish_checksum(segment: &mut [u8], src: IpAddr, dst: IpAddr) {
    segment[16] = 0;
    segment[17] = 0;
    let Some(initial) = pseudo_header_sum(src, dst, segment.len()) else { return };
    let sum = checksum(segment, initial);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
}

fn parse_options(mut bytes: &[u8]) -> Result<TcpOptions, WireError> {
    let mut o = TcpOptions::default();
    while let Some(&kind) = bytes.first() {
        match kind {
            0 => break,
            1 => {
                bytes = &bytes[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = bytes.get(1) else {
            return Err(WireError::BadOption);
        };
        let len = usize::from(len);
        if len < 2 || len > bytes.len() {
            return Err(WireError::BadOption);
        }
        let body = &bytes[2..len];
        match kind {
            2 => {
                let [a, b] = body else { return Err(WireError::BadOption) };
                o.mss = Some(u16::from_be_bytes([*a, *b]));
            }
            3 => {
                let [s] = body else { return Err(WireError::BadOption) };
                o.window_scale = Some(*s);
            }
            4 => {
                if !body.is_empty() {
                    return Err(WireError::BadOption);
                }
                o.sack_permitted = true;
            }
            5 => {
                if body.is_empty() || !body.len().is_multiple_of(8) || body.len() / 8 > MAX_SACK_BLOCKS {
                    return Err(WireError::BadOption);
                }
                o.sack_count = 0;
                for chunk in body.chunks_exact(8) {
                    let l = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    let r = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
                    o.sack[usize::from(o.sack_count)] = (l, r);
                    o.sack_count += 1;
                }
            }
            8 => {
                if body.len() != 8 {
                    return Err(WireError::BadOption);
                }
                let val = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let ecr = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                o.timestamps = Some((val, ecr));
            }
            _ => {}
        }
        bytes = &bytes[len..];
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

    fn options() -> impl Strategy<Value = TcpOptions> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=14),
            any::<bool>(),
            proptest::option::of((any::<u32>(), any::<u32>())),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=3),
        )
            .prop_map(|(mss, window_scale, sack_permitted, timestamps, blocks)| {
                let mut o =
                    TcpOptions { mss, window_scale, sack_permitted, timestamps, ..TcpOptions::default() };
                // Only as many SACK blocks as fit the 40 option bytes with the rest.
                let room = (40 - o.wire_len()).saturating_sub(4) / 8;
                for b in blocks.into_iter().take(room) {
                    o.sack[usize::from(o.sack_count)] = b;
                    o.sack_count += 1;
                }
                o
            })
    }

    proptest! {
        #[test]
        fn parse_emit_roundtrip(
            src_port in any::<u16>(), dst_port in any::<u16>(), seq in any::<u32>(), ack in any::<u32>(),
            flags in any::<u8>(), window in any::<u16>(), urgent in any::<u16>(), options in options(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let h = TcpHeader { src_port, dst_port, seq, ack, flags, window, urgent, options };
            for (src, dst) in [(A, B), (A6, B6)] {
                let mut out = vec![0u8; 60 + payload.len()];
                let n = h.emit(&mut out, &payload, src, dst).unwrap();
                let (parsed, off) = TcpHeader::parse(&out[..n], Some((src, dst))).unwrap();
                prop_assert_eq!(parsed, h);
                prop_assert_eq!(&out[off..n], &payload[..]);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = TcpHeader::parse(&bytes, None);
            let _ = TcpHeader::parse(&bytes, Some((A, B)));
            let _ = TcpHeader::parse(&bytes, Some((A6, B6)));
            let _ = TcpHeader::parse(&bytes, Some((A, B6)));
        }
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(TcpHeader::parse(&[0; 19], None), Err(WireError::Truncated));
        let mut s = [0u8; 20];
        s[12] = 4 << 4;
        assert_eq!(TcpHeader::parse(&s, None), Err(WireError::BadDataOffset));
        s[12] = 6 << 4;
        assert_eq!(TcpHeader::parse(&s, None), Err(WireError::BadDataOffset));
        let mut s = [0u8; 24];
        s[12] = 6 << 4;
        s[20..24].copy_from_slice(&[2, 9, 0, 0]);
        assert_eq!(TcpHeader::parse(&s, None), Err(WireError::BadOption));
        s[20..24].copy_from_slice(&[2, 1, 0, 0]);
        assert_eq!(TcpHeader::parse(&s, None), Err(WireError::BadOption));
        s[20..24].copy_from_slice(&[1, 1, 1, 0]);
        assert!(TcpHeader::parse(&s, None).is_ok());
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let h = TcpHeader { src_port: 1, dst_port: 2, flags: SYN, ..TcpHeader::default() };
        let mut out = [0u8; 60];
        let n = h.emit(&mut out, b"abc", A, B).unwrap();
        out[n - 1] ^= 1;
        assert_eq!(TcpHeader::parse(&out[..n], Some((A, B))).unwrap_err(), WireError::BadChecksum);
    }

    /// The IPv6 checksum is the RFC 8200 §8.1 one: summed independently here over an explicit
    /// pseudo-header (addresses, 32-bit length, three zeros, next header 6) and the segment.
    #[test]
    fn ipv6_checksum_covers_the_ipv6_pseudo_header() {
        let h = TcpHeader { src_port: 40_000, dst_port: 80, seq: 7, flags: SYN, ..TcpHeader::default() };
        let mut out = [0u8; 60];
        let n = h.emit(&mut out, b"hello", A6, B6).unwrap();
        let (IpAddr::V6(s), IpAddr::V6(d)) = (A6, B6) else { unreachable!() };
        let mut whole = Vec::new();
        whole.extend_from_slice(&s.octets());
        whole.extend_from_slice(&d.octets());
        whole.extend_from_slice(&(n as u32).to_be_bytes());
        whole.extend_from_slice(&[0, 0, 0, PROTOCOL]);
        whole.extend_from_slice(&out[..n]);
        let mut sum: u32 = 0;
        for pair in whole.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "the stored checksum makes the one's-complement sum all ones");
        assert!(TcpHeader::parse(&out[..n], Some((A6, B6))).is_ok());
        // The IPv4 pseudo-header (or another IPv6 source) does not verify it.
        assert_eq!(TcpHeader::parse(&out[..n], Some((A, B))).unwrap_err(), WireError::BadChecksum);
        assert_eq!(TcpHeader::parse(&out[..n], Some((B6, B6))).unwrap_err(), WireError::BadChecksum);
        // Mixed families are refused rather than summed.
        assert!(h.emit(&mut out, b"", A, B6).is_err());
        assert_eq!(TcpHeader::parse(&out[..n], Some((A, B6))).unwrap_err(), WireError::BadChecksum);
    }
}
