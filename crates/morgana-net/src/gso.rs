//! Segmentation offload in software, and the offload metadata that frames carry, in the shape
//! of Linux's `virtio_net_hdr` (virtio 1.x §5.1.6): a TCP super-segment of up to 64 KiB and the
//! size it must be cut at (`gso_size`, the MSS) travels as one unit between parties that accept
//! it, and is cut here for those that do not — a device without TSO, a pcap capture, a link
//! with injected faults. Every segment gets the super-segment's headers with its own sequence
//! number, lengths, IPv4 identification (the super-frame's plus its index, as Linux does) and
//! checksums; FIN and PSH ride on the last segment only, CWR on the first.
//!
//! Only TCP directly after the IP header is cut (no IPv6 extension headers, no IPv4 options
//! beyond the header length): that is what Morgana's engine and Linux's GSO produce.

use crate::checksum::{checksum, ipv4_pseudo_header_sum, ipv6_pseudo_header_sum};

/// `flags`: the checksum from `csum_start` to the end is still to be computed and stored at
/// `csum_start + csum_offset` (the field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified (or the frame never crossed a wire).
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the sender uses ECN (CWR on the first segment only).
pub const GSO_ECN: u8 = 0x80;

const ETHERNET_HEADER: usize = 14;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame or segment cannot be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// Not Ethernet + IPv4/IPv6 + TCP, or lengths that do not add up.
    Malformed,
    /// `gso_size` is 0.
    BadSegmentSize,
    /// The output buffer or the lengths array is too small.
    BufferTooSmall,
}

impl GsoError {
    /// The stable error code exposed to JavaScript.
    pub fn code(self) -> &'static str {
        match self {
            GsoError::Malformed => "ERR_GSO_MALFORMED",
            GsoError::BadSegmentSize => "ERR_GSO_BAD_SEGMENT_SIZE",
            GsoError::BufferTooSmall => "ERR_BUFFER_TOO_SMALL",
        }
    }
}

/// The IP family of a frame or segment and where its pieces are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Offset of the IP header (0 for a bare segment, where there is none).
    ip: Option<usize>,
    v6: bool,
    /// Offset of the TCP header.
    tcp: usize,
    /// TCP header length.
    tcp_len: usize,
}

fn tcp_header_len(bytes: &[u8], at: usize) -> Result<usize, GsoError> {
    let len = usize::from(*bytes.get(at + 12).ok_or(GsoError::Malformed)? >> 4) * 4;
    if len < 20 || at + len > bytes.len() {
        return Err(GsoError::Malformed);
    }
    Ok(len)
}

fn frame_layout(frame: &[u8]) -> Result<Layout, GsoError> {
    if frame.len() < ETHERNET_HEADER + 20 {
        return Err(GsoError::Malformed);
    }
    let ip = ETHERNET_HEADER;
    let (v6, tcp) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let ihl = usize::from(frame[ip] & 0x0f) * 4;
            if frame[ip] >> 4 != 4 || ihl < 20 || frame[ip + 9] != 6 {
                return Err(GsoError::Malformed);
            }
            (false, ip + ihl)
        }
        0x86dd => {
            if frame.len() < ip + 40 || frame[ip] >> 4 != 6 || frame[ip + 6] != 6 {
                return Err(GsoError::Malformed);
            }
            (true, ip + 40)
        }
        _ => return Err(GsoError::Malformed),
    };
    let tcp_len = tcp_header_len(frame, tcp)?;
    Ok(Layout { ip: Some(ip), v6, tcp, tcp_len })
}

/// How many segments of at most `mss` payload bytes a TCP super-segment of `payload` bytes makes.
pub fn segment_count(payload: usize, mss: usize) -> usize {
    if mss == 0 {
        return 0;
    }
    payload.div_ceil(mss).max(1)
}

/// Cuts `bytes` (prefix + TCP header + payload, as `layout` says) into segments written back to
/// back in `out`, their lengths in `lengths`; `src`/`dst` are the pseudo-header addresses.
fn cut(
    bytes: &[u8],
    layout: Layout,
    src: &[u8],
    dst: &[u8],
    mss: usize,
    out: &mut [u8],
    lengths: &mut [u32],
) -> Result<usize, GsoError> {
    if mss == 0 {
        return Err(GsoError::BadSegmentSize);
    }
    let head = layout.tcp + layout.tcp_len;
    let payload = &bytes[head..];
    let count = segment_count(payload.len(), mss);
    if count > lengths.len() || head * count + payload.len() > out.len() {
        return Err(GsoError::BufferTooSmall);
    }
    let seq = u32::from_be_bytes(bytes[layout.tcp + 4..layout.tcp + 8].try_into().unwrap_or([0; 4]));
    let flags = bytes[layout.tcp + 13];
    let identification =
        layout.ip.filter(|_| !layout.v6).map(|ip| u16::from_be_bytes([bytes[ip + 4], bytes[ip + 5]]));
    let mut at = 0;
    for (i, chunk) in payload.chunks(mss.max(1)).chain(payload.is_empty().then_some(&[][..])).enumerate() {
        let len = head + chunk.len();
        let seg = &mut out[at..at + len];
        seg[..head].copy_from_slice(&bytes[..head]);
        seg[head..].copy_from_slice(chunk);
        let tcp_total = layout.tcp_len + chunk.len();
        if let Some(ip) = layout.ip {
            if layout.v6 {
                seg[ip + 4..ip + 6].copy_from_slice(&(tcp_total as u16).to_be_bytes());
            } else {
                let total = (len - ip) as u16;
                seg[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
                let id = identification.unwrap_or(0).wrapping_add(i as u16);
                seg[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
                seg[ip + 10] = 0;
                seg[ip + 11] = 0;
                let sum = checksum(&seg[ip..layout.tcp], 0);
                seg[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
            }
        }
        let t = layout.tcp;
        let s = seq.wrapping_add((i * mss) as u32);
        seg[t + 4..t + 8].copy_from_slice(&s.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        seg[t + 13] = f;
        seg[t + 16] = 0;
        seg[t + 17] = 0;
        let initial = pseudo_sum(src, dst, tcp_total).ok_or(GsoError::Malformed)?;
        let sum = checksum(&seg[t..], initial);
        seg[t + 16..t + 18].copy_from_slice(&sum.to_be_bytes());
        lengths[i] = len as u32;
        at += len;
        if i + 1 == count {
            break;
        }
    }
    Ok(count)
}

fn pseudo_sum(src: &[u8], dst: &[u8], len: usize) -> Option<u16> {
    match (src.len(), dst.len()) {
        (4, 4) => Some(ipv4_pseudo_header_sum(
            src.try_into().ok()?,
            dst.try_into().ok()?,
            6,
            u16::try_from(len).ok()?,
        )),
        (16, 16) => Some(ipv6_pseudo_header_sum(src.try_into().ok()?, dst.try_into().ok()?, 6, len as u32)),
        _ => None,
    }
}

/// Cuts an Ethernet frame carrying a TCP super-segment over IPv4 or IPv6 into frames of at
/// most `mss` TCP payload bytes, back to back in `out` with their lengths in `lengths`; returns
/// how many. Every checksum is computed afresh (a partial one, `F_NEEDS_CSUM`, is completed).
pub fn segment_frame(
    frame: &[u8],
    mss: usize,
    out: &mut [u8],
    lengths: &mut [u32],
) -> Result<usize, GsoError> {
    let layout = frame_layout(frame)?;
    let ip = ETHERNET_HEADER;
    let declared = if layout.v6 {
        40 + usize::from(u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]))
    } else {
        usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]))
    };
    // Link padding after the IP packet is not payload.
    let frame = frame.get(..ip + declared).ok_or(GsoError::Malformed)?;
    if frame.len() < layout.tcp + layout.tcp_len {
        return Err(GsoError::Malformed);
    }
    let (src, dst) = if layout.v6 {
        (&frame[ip + 8..ip + 24], &frame[ip + 24..ip + 40])
    } else {
        (&frame[ip + 12..ip + 16], &frame[ip + 16..ip + 20])
    };
    cut(frame, layout, src, dst, mss, out, lengths)
}

/// Cuts a bare TCP super-segment from `src` to `dst` (4 or 16 bytes each) into segments of at
/// most `mss` payload bytes, back to back in `out`; returns how many.
pub fn segment_tcp(
    segment: &[u8],
    src: &[u8],
    dst: &[u8],
    mss: usize,
    out: &mut [u8],
    lengths: &mut [u32],
) -> Result<usize, GsoError> {
    let tcp_len = tcp_header_len(segment, 0)?;
    if pseudo_sum(src, dst, 0).is_none() {
        return Err(GsoError::Malformed);
    }
    cut(segment, Layout { ip: None, v6: src.len() == 16, tcp: 0, tcp_len }, src, dst, mss, out, lengths)
}

/// Completes the checksum of a frame marked `F_NEEDS_CSUM`: sums from `csum_start` (offset in
/// the frame) to the end and stores the result at `csum_start + csum_offset`, whose field held
/// the pseudo-header sum.
pub fn complete_checksum(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<(), GsoError> {
    let at = csum_start + csum_offset;
    if at + 2 > frame.len() || csum_start > frame.len() {
        return Err(GsoError::Malformed);
    }
    let sum = checksum(&frame[csum_start..], 0);
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;

    /// An Ethernet + IPv4 + TCP frame with `payload`, valid checksums, PSH|FIN|ACK.
    fn frame4(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        let ip = 14;
        f[ip] = 0x45;
        f[ip + 2..ip + 4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
        f[ip + 4..ip + 6].copy_from_slice(&0xfffeu16.to_be_bytes());
        f[ip + 6] = 0x40;
        f[ip + 8] = 64;
        f[ip + 9] = 6;
        f[ip + 12..ip + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[ip + 16..ip + 20].copy_from_slice(&[10, 0, 0, 2]);
        let t = 34;
        f[t..t + 2].copy_from_slice(&1234u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&80u16.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        f[t + 12] = 5 << 4;
        f[t + 13] = 0x19;
        f.extend_from_slice(payload);
        f
    }

    fn tcp_ok(seg: &[u8], src: [u8; 4], dst: [u8; 4]) -> bool {
        checksum(seg, ipv4_pseudo_header_sum(src, dst, 6, seg.len() as u16)) == 0
    }

    #[test]
    fn cuts_an_ipv4_super_frame_into_valid_frames() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let f = frame4(&payload);
        let mut out = vec![0u8; 8192];
        let mut lengths = [0u32; 8];
        let n = segment_frame(&f, 1448, &mut out, &mut lengths).unwrap();
        assert_eq!(n, 3);
        assert_eq!(&lengths[..3], &[54 + 1448, 54 + 1448, 54 + 104]);
        let mut at = 0;
        let mut joined = Vec::new();
        for (i, &len) in lengths[..3].iter().enumerate() {
            let seg = &out[at..at + len as usize];
            let p = Ipv4Packet::parse(&seg[14..]).unwrap();
            assert_eq!(p.identification(), 0xfffeu16.wrapping_add(i as u16));
            assert_eq!(p.total_len(), len as usize - 14);
            assert!(tcp_ok(&seg[34..], [10, 0, 0, 1], [10, 0, 0, 2]));
            let seq = u32::from_be_bytes(seg[38..42].try_into().unwrap());
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add((i * 1448) as u32));
            let last = i == 2;
            assert_eq!(seg[47] & (TCP_FIN | TCP_PSH) != 0, last);
            joined.extend_from_slice(&seg[54..]);
            at += len as usize;
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn bare_ipv6_segments_and_errors() {
        let f = frame4(&[7u8; 100]);
        let seg = &f[34..];
        let (src, dst) = ([0u8; 16], [1u8; 16]);
        let mut out = vec![0u8; 1024];
        let mut lengths = [0u32; 4];
        assert_eq!(segment_tcp(seg, &src, &dst, 40, &mut out, &mut lengths), Ok(3));
        let sum = ipv6_pseudo_header_sum(src, dst, 6, 60);
        assert_eq!(checksum(&out[..60], sum), 0);
        assert_eq!(segment_tcp(seg, &src, &dst, 0, &mut out, &mut lengths), Err(GsoError::BadSegmentSize));
        assert_eq!(segment_tcp(seg, &src, &dst, 10, &mut out, &mut lengths), Err(GsoError::BufferTooSmall));
        assert_eq!(segment_frame(&f[..30], 10, &mut out, &mut lengths), Err(GsoError::Malformed));
        // No payload: one segment, the header alone.
        let empty = frame4(&[]);
        assert_eq!(segment_frame(&empty, 1448, &mut out, &mut lengths), Ok(1));
        assert_eq!(lengths[0], 54);
    }

    proptest::proptest! {
        /// Whatever the bytes and the segment size, cutting returns a result and never panics;
        /// what it returns adds up: the pieces fit the output and are at least a header long.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), mss in 0usize..3000, valid in proptest::bool::ANY) {
            let mut frame = if valid { frame4(&bytes) } else { bytes.clone() };
            if valid && !bytes.is_empty() {
                // Corrupt one header byte now and then.
                let i = usize::from(bytes[0]) % 54;
                frame[i] ^= bytes[bytes.len() - 1];
            }
            let mut out = vec![0u8; 16_384];
            let mut lengths = [0u32; 64];
            if let Ok(n) = segment_frame(&frame, mss, &mut out, &mut lengths) {
                let total: usize = lengths[..n].iter().map(|&l| l as usize).sum();
                proptest::prop_assert!(total <= out.len());
                proptest::prop_assert!(lengths[..n].iter().all(|&l| l >= 54));
            }
            let _ = segment_tcp(&frame, &[10, 0, 0, 1], &[10, 0, 0, 2], mss, &mut out, &mut lengths);
            let _ = complete_checksum(&mut frame, mss, 16);
        }
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut f = frame4(&[1, 2, 3, 4, 5]);
        let psum = ipv4_pseudo_header_sum([10, 0, 0, 1], [10, 0, 0, 2], 6, 25);
        // The field holds the (uncomplemented) pseudo-header sum, as Linux leaves it.
        f[50..52].copy_from_slice(&psum.to_be_bytes());
        complete_checksum(&mut f, 34, 16).unwrap();
        assert!(tcp_ok(&f[34..], [10, 0, 0, 1], [10, 0, 0, 2]));
    }
}
