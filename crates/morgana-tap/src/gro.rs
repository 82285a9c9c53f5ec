//! Software receive coalescing (GRO) for TAPs without `virtio_net_hdr`.
//!
//! A TAP someone else opened plain (as Solo5 tenders do) gets no GRO from the kernel: every
//! 1,514-byte frame costs a stack its full per-frame work. [`coalesce`] rewrites a received
//! batch in place, merging each run of consecutive in-order TCP segments of one flow into one
//! super-frame (payloads appended, IP length and checksums fixed), the way Linux's
//! `tcp_gro_receive` decides: same Ethernet and IP addresses and ports, IPv4 without options or
//! fragments (or IPv6 without extension headers), same TTL/TOS (traffic class, flow label, hop
//! limit), byte-identical TCP options (so timestamps must be equal, as in Linux), only ACK (PSH
//! on the last) flags, contiguous sequence numbers, the same ACK number and window, every
//! segment's TCP checksum verified, no segment longer than the first (a shorter one ends the
//! run) and at most 65,535 bytes of IP packet. Only adjacent frames merge, so no frame moves
//! past another. Anything else, malformed frames included, stays as it was.
//!
//! A merged frame's entry in the lengths array carries its first segment's payload length
//! (the MSS to cut it at again) above [`GSO_SHIFT`]: `length | gso_size << GSO_SHIFT`.

/// Where a coalesced frame's segment size starts in its lengths entry.
pub const GSO_SHIFT: u32 = 17;
/// The bits of a lengths entry that hold the frame length.
pub const LENGTH_MASK: u32 = (1 << GSO_SHIFT) - 1;
/// Segments longer than this are not coalesced (their size must fit above [`GSO_SHIFT`]).
const MAX_GSO: usize = (1 << (32 - GSO_SHIFT)) - 1;
const ETH: usize = 14;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// What one call of [`coalesce`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced {
    /// Frames in the batch afterwards.
    pub frames: usize,
    /// Super-frames made.
    pub super_frames: u64,
    /// Segments that went into them.
    pub segments: u64,
}

/// A coalescible TCP segment, by offsets within its frame.
#[derive(Clone, Copy)]
struct Segment {
    v6: bool,
    /// TCP header start.
    tcp: usize,
    /// Payload start.
    payload: usize,
    len: usize,
    seq: u32,
    flags: u8,
    /// The payload's one's-complement sum (unfolded, as if at an even offset).
    payload_sum: u32,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The one's-complement sum of `b` (unfolded, in a u64 so it cannot overflow).
fn sum(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The pseudo-header sum of a TCP segment of `tcp_len` bytes in the IP packet at `ip`.
fn pseudo(f: &[u8], ip: usize, v6: bool, tcp_len: usize) -> u64 {
    let addrs = if v6 { &f[ip + 8..ip + 40] } else { &f[ip + 12..ip + 20] };
    sum(addrs) + 6 + tcp_len as u64
}

/// Parses `f` as a coalescible TCP segment with a valid checksum.
fn parse(f: &[u8]) -> Option<Segment> {
    if f.len() < ETH + 20 {
        return None;
    }
    let (v6, ip_len) = match be16(f, 12) {
        0x0800 => {
            let ip = &f[ETH..];
            if ip[0] != 0x45 || ip[9] != 6 || be16(ip, 6) & 0x3fff != 0 || fold(sum(&ip[..20])) != 0xffff {
                return None;
            }
            (false, 20)
        }
        0x86dd => {
            if f.len() < ETH + 40 || f[ETH] >> 4 != 6 || f[ETH + 6] != 6 {
                return None;
            }
            (true, 40)
        }
        _ => return None,
    };
    let ip = ETH;
    let packet_len = if v6 { 40 + usize::from(be16(f, ip + 4)) } else { usize::from(be16(f, ip + 2)) };
    if ETH + packet_len != f.len() {
        return None; // padded, truncated or longer than it says: leave it to the stack
    }
    let tcp = ip + ip_len;
    if f.len() < tcp + 20 {
        return None;
    }
    let doff = usize::from(f[tcp + 12] >> 4) * 4;
    let flags = f[tcp + 13];
    if doff < 20
        || f.len() < tcp + doff
        || f[tcp + 12] & 0x0f != 0
        || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH)
    {
        return None;
    }
    let payload = tcp + doff;
    let len = f.len() - payload;
    if len == 0 || len > MAX_GSO {
        return None;
    }
    let payload_sum = sum(&f[payload..]);
    let total = pseudo(f, ip, v6, f.len() - tcp) + sum(&f[tcp..payload]) + payload_sum;
    if fold(total) != 0xffff {
        return None;
    }
    Some(Segment {
        v6,
        tcp,
        payload,
        len,
        seq: be32(f, tcp + 4),
        flags,
        payload_sum: fold(payload_sum).into(),
    })
}

/// The super-frame being built: the last frame written out.
struct Open {
    /// Where it starts in the buffer.
    at: usize,
    /// Its length so far.
    len: usize,
    first: Segment,
    /// Payload bytes so far.
    payload: usize,
    /// Sum of the payload so far, at its real offsets.
    payload_sum: u64,
    segments: u64,
    /// A shorter segment or PSH ended it.
    closed: bool,
}

/// Whether segment `s` (frame `f`) continues `o` (whose bytes are `head`, its first segment's
/// headers).
fn continues(o: &Open, head: &[u8], f: &[u8], s: &Segment) -> bool {
    let p = &o.first;
    if o.closed
        || s.v6 != p.v6
        || s.payload != p.payload
        || s.len > p.len
        || o.len + s.len > ETH + 65_535 + if p.v6 { 40 } else { 0 }
    {
        return false;
    }
    if s.seq != p.seq.wrapping_add(o.payload as u32) || head[..ETH] != f[..ETH] {
        return false;
    }
    let ip_same = if p.v6 {
        // Version, traffic class, flow label; next header, hop limit; addresses.
        head[ETH..ETH + 4] == f[ETH..ETH + 4] && head[ETH + 6..ETH + 40] == f[ETH + 6..ETH + 40]
    } else {
        // Version/IHL, TOS; flags (DF); TTL, protocol; addresses.
        head[ETH..ETH + 2] == f[ETH..ETH + 2]
            && head[ETH + 6] == f[ETH + 6]
            && head[ETH + 8..ETH + 10] == f[ETH + 8..ETH + 10]
            && head[ETH + 12..ETH + 20] == f[ETH + 12..ETH + 20]
    };
    let t = p.tcp;
    // Ports; ACK number; data offset; window; urgent pointer; options, byte for byte.
    ip_same
        && head[t..t + 4] == f[t..t + 4]
        && head[t + 8..t + 13] == f[t + 8..t + 13]
        && head[t + 14..t + 16] == f[t + 14..t + 16]
        && head[t + 18..p.payload] == f[t + 18..p.payload]
}

/// Finishes the open super-frame: IP length (and IPv4 header checksum), TCP flags and checksum.
fn finish(buf: &mut [u8], lengths: &mut [u32], n: usize, o: &Open) {
    if o.segments < 2 {
        return; // a single segment stays exactly as received
    }
    let f = &mut buf[o.at..o.at + o.len];
    let p = &o.first;
    if p.v6 {
        f[ETH + 4..ETH + 6].copy_from_slice(&((o.len - ETH - 40) as u16).to_be_bytes());
    } else {
        f[ETH + 2..ETH + 4].copy_from_slice(&((o.len - ETH) as u16).to_be_bytes());
        f[ETH + 10..ETH + 12].fill(0);
        let c = !fold(sum(&f[ETH..ETH + 20]));
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
    }
    let t = p.tcp;
    f[t + 16..t + 18].fill(0);
    let total = pseudo(f, ETH, p.v6, o.len - t) + sum(&f[t..p.payload]) + o.payload_sum;
    f[t + 16..t + 18].copy_from_slice(&(!fold(total)).to_be_bytes());
    lengths[n] = o.len as u32 | (p.len as u32) << GSO_SHIFT;
}

/// Coalesces the first `count` frames of `buf` (back to back, their lengths in `lengths`) in
/// place; afterwards `lengths[..frames]` describes the batch (see the module docs).
pub fn coalesce(buf: &mut [u8], lengths: &mut [u32], count: usize) -> Coalesced {
    let mut out = Coalesced::default();
    let (mut r, mut w, mut n) = (0usize, 0usize, 0usize);
    let mut open: Option<Open> = None;
    for i in 0..count {
        let len = lengths[i] as usize;
        if r + len > buf.len() {
            break;
        }
        let seg = parse(&buf[r..r + len]);
        if let (Some(s), Some(o)) = (&seg, &mut open) {
            let (done, rest) = buf.split_at_mut(o.at + o.len);
            let head = &done[o.at..];
            let frame_at = r - (o.at + o.len);
            if continues(o, head, &rest[frame_at..frame_at + len], s) {
                // Append the payload where the super-frame ends (never after where it is read).
                rest.copy_within(frame_at + s.payload..frame_at + len, 0);
                let sum = u64::from(s.payload_sum as u16);
                o.payload_sum += if o.payload % 2 == 1 { u64::from((sum as u16).swap_bytes()) } else { sum };
                if s.flags & TCP_PSH != 0 {
                    buf[o.at + o.first.tcp + 13] |= TCP_PSH;
                }
                o.len += s.len;
                o.payload += s.len;
                o.segments += 1;
                o.closed = s.len < o.first.len || s.flags & TCP_PSH != 0;
                w = o.at + o.len;
                r += len;
                continue;
            }
        }
        if let Some(o) = open.take() {
            finish(buf, lengths, n - 1, &o);
            if o.segments >= 2 {
                out.super_frames += 1;
                out.segments += o.segments;
            }
        }
        if w != r {
            buf.copy_within(r..r + len, w);
        }
        lengths[n] = len as u32;
        if let Some(s) = seg {
            open = Some(Open {
                at: w,
                len,
                first: s,
                payload: s.len,
                payload_sum: u64::from(s.payload_sum),
                segments: 1,
                closed: s.flags & TCP_PSH != 0,
            });
        }
        n += 1;
        w += len;
        r += len;
    }
    if let Some(o) = open.take() {
        finish(buf, lengths, n - 1, &o);
        if o.segments >= 2 {
            out.super_frames += 1;
            out.segments += o.segments;
        }
    }
    out.frames = n;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 frame (10.0.0.1:5000 → 10.0.0.2:80) with correct checksums.
    fn seg4(seq: u32, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let tcp_len = 20 + options.len() + payload.len();
        let mut f = vec![0u8; ETH + 20 + tcp_len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = ETH;
        f[ip] = 0x45;
        f[ip + 2..ip + 4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        f[ip + 6] = 0x40; // DF
        f[ip + 8] = 64;
        f[ip + 9] = 6;
        f[ip + 12..ip + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[ip + 16..ip + 20].copy_from_slice(&[10, 0, 0, 2]);
        let c = !fold(sum(&f[ip..ip + 20]));
        f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        let t = ip + 20;
        f[t..t + 2].copy_from_slice(&5000u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&80u16.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&777u32.to_be_bytes());
        f[t + 12] = (((20 + options.len()) / 4) as u8) << 4;
        f[t + 13] = flags;
        f[t + 14..t + 16].copy_from_slice(&1000u16.to_be_bytes());
        f[t + 20..t + 20 + options.len()].copy_from_slice(options);
        f[t + 20 + options.len()..].copy_from_slice(payload);
        let c = !fold(pseudo(&f, ip, false, tcp_len) + sum(&f[t..]));
        f[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// A TCP/IPv6 frame with correct checksum.
    fn seg6(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let tcp_len = 20 + payload.len();
        let mut f = vec![0u8; ETH + 40 + tcp_len];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let ip = ETH;
        f[ip] = 0x60;
        f[ip + 4..ip + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        f[ip + 6] = 6;
        f[ip + 7] = 64;
        f[ip + 8] = 0xfd;
        f[ip + 24] = 0xfd;
        f[ip + 39] = 2;
        let t = ip + 40;
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 12] = 5 << 4;
        f[t + 13] = flags;
        f[t + 20..].copy_from_slice(payload);
        let c = !fold(pseudo(&f, ip, true, tcp_len) + sum(&f[t..]));
        f[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn batch(frames: &[Vec<u8>]) -> (Vec<u8>, Vec<u32>) {
        let mut buf = Vec::new();
        let mut lengths = Vec::new();
        for f in frames {
            buf.extend_from_slice(f);
            lengths.push(f.len() as u32);
        }
        (buf, lengths)
    }

    /// The batch's frames after coalescing, with their segment sizes.
    fn run(frames: &[Vec<u8>]) -> (Vec<(Vec<u8>, u32)>, Coalesced) {
        let (mut buf, mut lengths) = batch(frames);
        let c = coalesce(&mut buf, &mut lengths, frames.len());
        let mut at = 0;
        let mut out = Vec::new();
        for &l in &lengths[..c.frames] {
            let len = (l & LENGTH_MASK) as usize;
            out.push((buf[at..at + len].to_vec(), l >> GSO_SHIFT));
            at += len;
        }
        (out, c)
    }

    fn payload(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
    }

    #[test]
    fn contiguous_segments_merge_into_one_valid_frame() {
        let (a, b, c) = (payload(1448, 1), payload(1448, 2), payload(1001, 3));
        let ts = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7];
        let frames = [
            seg4(100, TCP_ACK, &ts, &a),
            seg4(1548, TCP_ACK, &ts, &b),
            seg4(2996, TCP_ACK | TCP_PSH, &ts, &c),
        ];
        let (out, stats) = run(&frames);
        assert_eq!(stats, Coalesced { frames: 1, super_frames: 1, segments: 3 });
        let all = [a, b, c].concat();
        // Exactly the frame a sender would have made of it in one segment.
        assert_eq!(out[0].0, seg4(100, TCP_ACK | TCP_PSH, &ts, &all));
        assert_eq!(out[0].1, 1448);
    }

    #[test]
    fn odd_payloads_keep_the_checksum_right() {
        let (a, b) = (payload(1001, 5), payload(1001, 6));
        let frames = [seg4(1, TCP_ACK, &[], &a), seg4(1002, TCP_ACK, &[], &b)];
        let (out, _) = run(&frames);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, seg4(1, TCP_ACK, &[], &[a, b].concat()));
    }

    #[test]
    fn ipv6_segments_merge() {
        let (a, b) = (payload(1440, 7), payload(1440, 8));
        let (out, stats) = run(&[seg6(9, TCP_ACK, &a), seg6(1449, TCP_ACK, &b)]);
        assert_eq!(stats.segments, 2);
        assert_eq!(out[0].0, seg6(9, TCP_ACK, &[a, b].concat()));
        assert_eq!(out[0].1, 1440);
    }

    fn unchanged(frames: &[Vec<u8>]) {
        let (out, stats) = run(frames);
        assert_eq!(stats.super_frames, 0);
        let got: Vec<Vec<u8>> = out
            .into_iter()
            .map(|(f, gso)| {
                assert_eq!(gso, 0);
                f
            })
            .collect();
        assert_eq!(got, frames);
    }

    #[test]
    fn what_may_not_merge_passes_unchanged_in_order() {
        let p = payload(1000, 9);
        // A gap in the sequence.
        unchanged(&[seg4(0, TCP_ACK, &[], &p), seg4(1001, TCP_ACK, &[], &p)]);
        // Another flow (other port).
        let mut other = seg4(1000, TCP_ACK, &[], &p);
        other[ETH + 20] = 0x99;
        let c = !fold(
            pseudo(&other, ETH, false, other.len() - ETH - 20)
                + sum(&{
                    let mut t = other[ETH + 20..].to_vec();
                    t[16] = 0;
                    t[17] = 0;
                    t
                }),
        );
        other[ETH + 36..ETH + 38].copy_from_slice(&c.to_be_bytes());
        assert!(parse(&other).is_some());
        unchanged(&[seg4(0, TCP_ACK, &[], &p), other]);
        // A flag beyond ACK/PSH (FIN), and a PSH that ends the first segment.
        unchanged(&[seg4(0, TCP_ACK, &[], &p), seg4(1000, TCP_ACK | 1, &[], &p)]);
        unchanged(&[seg4(0, TCP_ACK | TCP_PSH, &[], &p), seg4(1000, TCP_ACK, &[], &p)]);
        // A bad TCP checksum.
        let mut bad = seg4(1000, TCP_ACK, &[], &p);
        bad[ETH + 20 + 30] ^= 1;
        unchanged(&[seg4(0, TCP_ACK, &[], &p), bad]);
        // Options that differ (timestamps of another tick).
        unchanged(&[
            seg4(0, TCP_ACK, &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0], &p),
            seg4(1000, TCP_ACK, &[1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 0], &p),
        ]);
        // A longer segment after a shorter one.
        unchanged(&[seg4(0, TCP_ACK, &[], &p[..500]), seg4(500, TCP_ACK, &[], &p)]);
        // IPv4 options, and a fragment.
        let mut opts = seg4(1000, TCP_ACK, &[], &p);
        opts[ETH] = 0x46;
        unchanged(&[seg4(0, TCP_ACK, &[], &p), opts]);
        let mut frag = seg4(1000, TCP_ACK, &[], &p);
        frag[ETH + 6] = 0x20; // MF
        unchanged(&[seg4(0, TCP_ACK, &[], &p), frag]);
        // Truncated and malformed frames.
        unchanged(&[seg4(0, TCP_ACK, &[], &p), vec![0u8; 20], seg4(1000, TCP_ACK, &[], &p)[..100].to_vec()]);
    }

    #[test]
    fn runs_merge_around_frames_that_do_not() {
        let p = payload(1000, 4);
        let arp = vec![0xffu8; 42];
        let frames = [
            seg4(0, TCP_ACK, &[], &p),
            seg4(1000, TCP_ACK, &[], &p),
            arp.clone(),
            seg4(2000, TCP_ACK, &[], &p),
            seg4(3000, TCP_ACK, &[], &p),
        ];
        let (out, stats) = run(&frames);
        assert_eq!(stats, Coalesced { frames: 3, super_frames: 2, segments: 4 });
        assert_eq!(out[0].0, seg4(0, TCP_ACK, &[], &[p.clone(), p.clone()].concat()));
        assert_eq!(out[1], (arp, 0));
        assert_eq!(out[2].0, seg4(2000, TCP_ACK, &[], &[p.clone(), p.clone()].concat()));
    }

    #[test]
    fn super_frames_stop_at_64_kib() {
        let p = payload(1448, 2);
        let frames: Vec<Vec<u8>> = (0..50).map(|i| seg4(i * 1448, TCP_ACK, &[], &p)).collect();
        let (out, stats) = run(&frames);
        assert_eq!(stats.segments, 50);
        assert!(out.iter().all(|(f, _)| f.len() - ETH <= 65_535));
        assert_eq!(out[0].0.len() - ETH - 40, 45 * 1448);
        assert_eq!(out[1].0, seg4(45 * 1448, TCP_ACK, &[], &p.repeat(5)));
    }
}
