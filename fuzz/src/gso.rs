//! Target `gso`: software segmentation offload ([`morgana_net::gso`]) on super-frames whose
//! bytes and offload metadata a hostile port controls. Any port of a VirtualSwitch, and the
//! kernel through a vnet-header TAP, hands frames with a `gso_size` and checksum offsets that the
//! stack cuts or completes in Rust before anything else looks at them.
//!
//! Input: a mode byte (bit 0 IPv6; bit 1 raw: the rest of the input is the frame, as it came);
//! the segment size (u16, the MSS); then, unless raw, a generated super-frame: payload length
//! (u16, clamped to what an IP packet holds), TCP options length (byte mod 11, in 4-byte
//! words), TCP flags, sequence number (u32), IPv4 identification (u16), then up to
//! `count` (byte mod 8) corruptions of (position u16, XOR byte); last, a checksum request:
//! `csum_start` (u16) and `csum_offset` (byte).
//!
//! Invariants: no panic, whatever the input. A cut that succeeds writes pieces that fit the
//! output and are each at least an Ethernet, IP and TCP header long, and never more pieces than
//! the lengths array holds. For an intact generated frame the cut is exact: as many pieces as
//! [`segment_count`] says, an output one byte too small is refused, and every piece is a valid
//! frame: its IP length fields and (IPv4) header checksum, identification (the super-frame's
//! plus the piece's index), its TCP checksum over the right pseudo-header, its sequence number
//! (the super-frame's plus `index × mss`), FIN and PSH on the last piece only, CWR on the first
//! only; and the pieces' payloads, end to end, are the super-frame's. Completing the checksum of
//! an intact frame whose field holds the pseudo-header sum gives a TCP checksum that verifies.

use crate::{content, Input, DST, SRC};
use morgana_net::checksum::{checksum, ipv4_pseudo_header_sum, ipv6_pseudo_header_sum};
use morgana_net::gso::{complete_checksum, segment_count, segment_frame, GsoError};

const ETHERNET: usize = 14;
/// Source and destination of generated IPv6 frames.
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// Pieces the cut may write: enough for a 64 KiB payload at an MSS of 64 and more.
const MAX_PIECES: usize = 1100;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// What a generated frame was built from, to check the pieces against.
struct Built {
    v6: bool,
    /// Offset of the TCP header and its length.
    tcp: usize,
    tcp_len: usize,
    payload: Vec<u8>,
    seq: u32,
    flags: u8,
    identification: u16,
}

/// An Ethernet + IPv4/IPv6 + TCP super-frame with valid checksums.
fn build(input: &mut Input, v6: bool) -> (Vec<u8>, Built) {
    let ip_len = if v6 { 40 } else { 20 };
    let options_len = usize::from(input.byte() % 11) * 4;
    let tcp_len = 20 + options_len;
    let most = 65_535 - tcp_len - if v6 { 0 } else { ip_len };
    let payload_len = usize::from(input.u16()).min(most);
    let flags = input.byte();
    let seq = input.u32();
    let identification = input.u16();
    let payload: Vec<u8> = (0..payload_len).map(|i| content(identification, i)).collect();

    let tcp = ETHERNET + ip_len;
    let mut frame = vec![0u8; tcp + tcp_len + payload_len];
    frame[12..14].copy_from_slice(&(if v6 { 0x86dd_u16 } else { 0x0800 }).to_be_bytes());
    let ip = ETHERNET;
    if v6 {
        frame[ip] = 0x60;
        frame[ip + 4..ip + 6].copy_from_slice(&((tcp_len + payload_len) as u16).to_be_bytes());
        frame[ip + 6] = 6;
        frame[ip + 7] = 64;
        frame[ip + 8..ip + 24].copy_from_slice(&SRC6);
        frame[ip + 24..ip + 40].copy_from_slice(&DST6);
    } else {
        frame[ip] = 0x45;
        frame[ip + 2..ip + 4].copy_from_slice(&((ip_len + tcp_len + payload_len) as u16).to_be_bytes());
        frame[ip + 4..ip + 6].copy_from_slice(&identification.to_be_bytes());
        frame[ip + 6] = 0x40;
        frame[ip + 8] = 64;
        frame[ip + 9] = 6;
        frame[ip + 12..ip + 16].copy_from_slice(&SRC);
        frame[ip + 16..ip + 20].copy_from_slice(&DST);
        let sum = checksum(&frame[ip..tcp], 0);
        frame[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
    }
    frame[tcp..tcp + 2].copy_from_slice(&40_000u16.to_be_bytes());
    frame[tcp + 2..tcp + 4].copy_from_slice(&80u16.to_be_bytes());
    frame[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    frame[tcp + 12] = ((tcp_len / 4) as u8) << 4;
    frame[tcp + 13] = flags;
    frame[tcp + 14..tcp + 16].copy_from_slice(&65_535u16.to_be_bytes());
    frame[tcp + 20..tcp + tcp_len].fill(1); // NOP options
    frame[tcp + tcp_len..].copy_from_slice(&payload);
    let sum = checksum(&frame[tcp..], pseudo(v6, tcp_len + payload_len));
    frame[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
    (frame, Built { v6, tcp, tcp_len, payload, seq, flags, identification })
}

/// The TCP pseudo-header sum of a generated frame's addresses for a segment of `len` bytes.
fn pseudo(v6: bool, len: usize) -> u16 {
    if v6 {
        ipv6_pseudo_header_sum(SRC6, DST6, 6, len as u32)
    } else {
        ipv4_pseudo_header_sum(SRC, DST, 6, len as u16)
    }
}

/// Checks each piece of an intact frame's cut (see the module doc).
fn check_pieces(built: &Built, mss: usize, out: &[u8], lengths: &[u32]) {
    let head = built.tcp + built.tcp_len;
    let mut at = 0;
    let mut payload = Vec::with_capacity(built.payload.len());
    let last = lengths.len() - 1;
    for (i, &len) in lengths.iter().enumerate() {
        let piece = &out[at..at + len as usize];
        at += len as usize;
        assert!(piece.len() >= head, "piece {i} shorter than its headers");
        let ip = &piece[ETHERNET..built.tcp];
        let tcp_bytes = piece.len() - built.tcp;
        if built.v6 {
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[4], ip[5]])),
                tcp_bytes,
                "piece {i}: IPv6 payload length"
            );
        } else {
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                piece.len() - ETHERNET,
                "piece {i}: IPv4 total length"
            );
            assert_eq!(checksum(ip, 0), 0, "piece {i}: IPv4 header checksum");
            let id = u16::from_be_bytes([ip[4], ip[5]]);
            assert_eq!(id, built.identification.wrapping_add(i as u16), "piece {i}: identification");
        }
        let tcp = &piece[built.tcp..];
        assert_eq!(checksum(tcp, pseudo(built.v6, tcp_bytes)), 0, "piece {i}: TCP checksum");
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        assert_eq!(seq, built.seq.wrapping_add((i * mss) as u32), "piece {i}: sequence number");
        let flags = tcp[13];
        if i != last {
            assert_eq!(flags & (FIN | PSH), 0, "piece {i}: FIN or PSH before the last piece");
        } else {
            assert_eq!(flags & (FIN | PSH), built.flags & (FIN | PSH), "the last piece keeps FIN and PSH");
        }
        if i != 0 {
            assert_eq!(flags & CWR, 0, "piece {i}: CWR after the first piece");
        }
        assert!(tcp_bytes - built.tcp_len <= mss.max(1), "piece {i}: more than the MSS");
        payload.extend_from_slice(&piece[head..]);
    }
    assert_eq!(payload, built.payload, "the pieces' payloads are the super-frame's");
}

/// Runs one input (see the module doc).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let v6 = mode & 1 != 0;
    let mss = usize::from(input.u16());
    let (mut frame, built) = if mode & 2 != 0 {
        (input.rest().to_vec(), None)
    } else {
        let (frame, built) = build(&mut input, v6);
        (frame, Some(built))
    };
    let mut corrupted = false;
    if built.is_some() {
        for _ in 0..input.byte() % 8 {
            let at = usize::from(input.u16()) % frame.len();
            let xor = input.byte();
            corrupted |= xor != 0;
            frame[at] ^= xor;
        }
    }
    let csum_start = usize::from(input.u16());
    let csum_offset = usize::from(input.byte());

    let mut lengths = vec![0u32; MAX_PIECES];
    match built.as_ref().filter(|_| !corrupted) {
        Some(built) if mss > 0 && segment_count(built.payload.len(), mss) <= MAX_PIECES => {
            let count = segment_count(built.payload.len(), mss);
            let needed = (built.tcp + built.tcp_len) * count + built.payload.len();
            let mut out = vec![0u8; needed];
            assert_eq!(
                segment_frame(&frame, mss, &mut out[..needed - 1], &mut lengths),
                Err(GsoError::BufferTooSmall),
                "an output one byte short is refused"
            );
            let n = segment_frame(&frame, mss, &mut out, &mut lengths).expect("an intact frame is cut");
            assert_eq!(n, count);
            check_pieces(built, mss, &out, &lengths[..n]);
        }
        _ => {
            let mut out = vec![0u8; 2 * 65_536 + 4096];
            if let Ok(n) = segment_frame(&frame, mss, &mut out, &mut lengths) {
                assert!(n <= lengths.len());
                let total: usize = lengths[..n].iter().map(|&l| l as usize).sum();
                assert!(total <= out.len(), "pieces overrun the output");
                assert!(lengths[..n].iter().all(|&l| l >= 54), "a piece shorter than its headers");
            }
        }
    }

    // Checksum completion at offsets the sender chose.
    let _ = complete_checksum(&mut frame.clone(), csum_start, csum_offset);
    if let Some(built) = built.filter(|_| !corrupted) {
        // As Linux leaves a partial checksum: the field holds the pseudo-header sum.
        let tcp_bytes = frame.len() - built.tcp;
        frame[built.tcp + 16..built.tcp + 18].copy_from_slice(&pseudo(built.v6, tcp_bytes).to_be_bytes());
        complete_checksum(&mut frame, built.tcp, 16).expect("an intact frame's checksum completes");
        assert_eq!(
            checksum(&frame[built.tcp..], pseudo(built.v6, tcp_bytes)),
            0,
            "the completed checksum verifies"
        );
    }
}
