//! Fuzz checks for `morgana-net` and `morgana-tcp`: each target module has a `check(&[u8])` that derives inputs
//! from the fuzzer's bytes, drives the code under test and asserts its invariants (a failed
//! assertion or a panic is a crash for libFuzzer). The libFuzzer binaries in `fuzz_targets/` are
//! one-line wrappers around these, and `src/bin/seeds.rs` writes the seed corpus with the
//! encoders below, so seeds and decoders cannot drift apart.
//!
//! Every input is valid: reads past the end of the input yield zeros.

use morgana_net::checksum;
use morgana_net::reassembly::ReassemblyConfig;
use morgana_net::wire::ipv4::{Ipv4Header, Ipv4Packet, MAX_PACKET_LEN, MIN_HEADER_LEN};

/// A reader over the fuzzer's bytes that yields zeros once they run out.
pub struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    /// Reads `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, at: 0 }
    }
    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }
    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    /// The next `n` bytes, or fewer at the end of the input.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = self.at.saturating_add(n).min(self.data.len());
        self.at = self.at.saturating_add(n);
        &self.data[start..end]
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        self.at = self.data.len();
        &self.data[start..]
    }
}

/// The payload byte at `position` of the datagram with identification `id`. Every generated
/// packet uses it, so any reassembled datagram can be checked byte for byte.
pub fn content(id: u16, position: usize) -> u8 {
    let x = (position as u32).wrapping_mul(2_654_435_761) ^ u32::from(id).wrapping_mul(40_503);
    (x >> 24) as u8 ^ (position >> 8) as u8
}

/// Source and destination of generated packets.
pub const SRC: [u8; 4] = [10, 9, 0, 1];
/// Destination of generated packets.
pub const DST: [u8; 4] = [10, 9, 0, 2];

/// Recomputes the header checksum of `packet` in place (when its IHL fits the buffer).
pub fn fix_checksum(packet: &mut [u8]) {
    if packet.len() < MIN_HEADER_LEN {
        return;
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    if header_len < MIN_HEADER_LEN || header_len > packet.len() {
        return;
    }
    packet[10..12].fill(0);
    let sum = checksum::checksum(&packet[..header_len], 0);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The cache limits that start a reassembly input: `max_bytes / 4` (u16), `max_fragments - 1`
/// (mod 64) and the timeout (u16 ms).
pub fn reassembly_config(input: &mut Input) -> ReassemblyConfig {
    ReassemblyConfig {
        max_bytes: usize::from(input.u16()) * 4,
        max_fragments: usize::from(input.byte() % 64) + 1,
        timeout_ms: u64::from(input.u16()),
    }
}

/// Encodes [`reassembly_config`]'s bytes (for the seed generator).
pub fn encode_reassembly_config(max_bytes_quarter: u16, max_fragments: u8, timeout_ms: u16) -> Vec<u8> {
    let mut out = max_bytes_quarter.to_be_bytes().to_vec();
    out.push(max_fragments.saturating_sub(1));
    out.extend_from_slice(&timeout_ms.to_be_bytes());
    out
}

/// The clock of the reassembly inputs after one step: 255 jumps to `u64::MAX`, 254 goes back
/// 20 s, else `now += 16 * step` ms.
pub fn step_clock(now: u64, step: u8) -> u64 {
    match step {
        255 => u64::MAX,
        254 => now.saturating_sub(20_000),
        step => now.saturating_add(u64::from(step) * 16),
    }
}

/// Encodes a raw-bytes operation of the reassembly inputs: kind 1 (plus 4 with `fix`), the
/// clock step, a length byte and at most 255 bytes.
pub fn encode_raw(out: &mut Vec<u8>, step: u8, bytes: &[u8], fix: bool) {
    out.extend_from_slice(&[1 | if fix { 4 } else { 0 }, step, bytes.len() as u8]);
    out.extend_from_slice(&bytes[..bytes.len().min(255)]);
}

/// A well-formed IPv4 packet described by a few fuzzer bytes; see [`PacketSpec::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketSpec {
    /// Bit 0 Don't Fragment, bit 1 More Fragments, bit 2 the reserved bit.
    pub flags: u8,
    /// Options area, at most 40 bytes (padded with zeros to 4).
    pub options: Vec<u8>,
    /// Fragment offset in 8-byte units (13 bits).
    pub offset_units: u16,
    /// Identification; also seeds the payload bytes ([`content`]).
    pub identification: u16,
    /// Protocol number.
    pub protocol: u8,
    /// Payload length (clamped so the packet stays within 65,535 bytes).
    pub payload_len: u16,
}

impl PacketSpec {
    /// Decodes a spec: flags, options length (mod 41) and bytes, offset, identification,
    /// protocol, payload length.
    pub fn read(input: &mut Input<'_>) -> Self {
        let flags = input.byte();
        let options_len = usize::from(input.byte()) % 41;
        let options = input.take(options_len).to_vec();
        PacketSpec {
            flags,
            options,
            offset_units: input.u16() & 0x1fff,
            identification: input.u16(),
            protocol: input.byte(),
            payload_len: input.u16(),
        }
    }

    /// The inverse of [`read`](Self::read).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        out.push(self.options.len() as u8);
        out.extend_from_slice(&self.options);
        out.extend_from_slice(&self.offset_units.to_be_bytes());
        out.extend_from_slice(&self.identification.to_be_bytes());
        out.push(self.protocol);
        out.extend_from_slice(&self.payload_len.to_be_bytes());
    }

    /// The packet, with a correct header checksum.
    pub fn build(&self) -> Vec<u8> {
        let options = &self.options[..self.options.len().min(40)];
        let mut header = Ipv4Header {
            src: SRC,
            dst: DST,
            protocol: self.protocol,
            ttl: 64,
            tos: 0,
            identification: self.identification,
            dont_fragment: self.flags & 1 != 0,
            more_fragments: self.flags & 2 != 0,
            fragment_offset: usize::from(self.offset_units & 0x1fff) * 8,
            options,
            payload_len: 0,
        };
        header.payload_len = usize::from(self.payload_len).min(MAX_PACKET_LEN - header.header_len());
        let mut out = vec![0; header.header_len() + header.payload_len];
        let at = header.emit(&mut out).expect("a spec always describes an emittable header");
        for (i, b) in out[at..].iter_mut().enumerate() {
            *b = content(self.identification, i);
        }
        if self.flags & 4 != 0 {
            out[6] |= 0x80;
            fix_checksum(&mut out);
        }
        out
    }
}

/// Target `ipv4_parse`: `Ipv4Packet::parse`, `parse_unchecked_checksum`, `options` and the
/// parse → `to_header` → `emit` round trip, over the raw input and over a copy whose header
/// checksum was made right (so the fuzzer reaches past the checksum test).
pub mod ipv4_parse {
    use super::*;
    use morgana_net::wire::ipv4::{options, Ipv4Error};

    /// Runs every check on `data`.
    pub fn check(data: &[u8]) {
        check_packet(data);
        check_options(data);
        let mut fixed = data.to_vec();
        fix_checksum(&mut fixed);
        check_packet(&fixed);
    }

    fn check_packet(data: &[u8]) {
        let unchecked = Ipv4Packet::parse_unchecked_checksum(data);
        match Ipv4Packet::parse(data) {
            Ok(packet) => {
                assert!(unchecked.is_ok());
                assert_eq!(checksum::checksum(packet.header(), 0), 0);
                round_trip(&packet);
            }
            Err(Ipv4Error::BadChecksum) => assert!(unchecked.is_ok()),
            Err(e) => assert_eq!(unchecked.unwrap_err(), e),
        }
        let Ok(packet) = unchecked else { return };
        let header_len = packet.header_len();
        assert!((MIN_HEADER_LEN..=60).contains(&header_len));
        assert_eq!(packet.total_len(), usize::from(u16::from_be_bytes([data[2], data[3]])));
        assert!(header_len <= packet.total_len() && packet.total_len() <= data.len());
        assert_eq!(packet.as_bytes(), &data[..packet.total_len()]);
        assert_eq!(packet.header(), &data[..header_len]);
        assert_eq!(packet.options().len(), header_len - MIN_HEADER_LEN);
        assert_eq!(packet.payload().len(), packet.total_len() - header_len);
        assert_eq!(packet.fragment_offset() % 8, 0);
        assert_eq!(packet.is_fragment(), packet.more_fragments() || packet.fragment_offset() != 0);
        check_options(packet.options());
    }

    /// `options` either fails or returns options that tile a prefix of `area`.
    fn check_options(area: &[u8]) {
        let Ok(found) = options(area) else { return };
        let range = area.as_ptr_range();
        let mut previous_end = area.as_ptr();
        for option in found {
            assert!(option.bytes.len() >= 2 && option.kind > 1);
            assert_eq!(option.bytes[0], option.kind);
            assert_eq!(usize::from(option.bytes[1]), option.bytes.len());
            let span = option.bytes.as_ptr_range();
            assert!(range.start <= span.start && span.end <= range.end);
            assert!(span.start >= previous_end, "options are returned in order, without overlap");
            previous_end = span.end;
        }
    }

    /// Re-emitting a parsed header reproduces it (but for the reserved bit, which the emitter
    /// never sets, and the checksum field, where 0x0000 and 0xffff may both verify).
    fn round_trip(packet: &Ipv4Packet<'_>) {
        let header = packet.to_header();
        let mut out = vec![0u8; header.header_len() + packet.payload().len()];
        let len = header.emit(&mut out).expect("a parsed header can be emitted again");
        assert_eq!(len, packet.header_len());
        out[len..].copy_from_slice(packet.payload());
        let mut expected = packet.header().to_vec();
        expected[6] &= 0x7f;
        expected[10..12].copy_from_slice(&out[10..12]);
        assert_eq!(&out[..len], &expected[..]);
        let again = Ipv4Packet::parse(&out).expect("an emitted packet parses");
        assert_eq!(again.payload(), packet.payload());
    }
}

/// Target `fragment`: `fragment_into` over a generated packet (or raw bytes) and an MTU, checking
/// every piece, and, for a whole datagram, that the reassembler turns the pieces back into it in
/// an order chosen by the input.
///
/// Input: MTU (u16), mode (bit 0: the rest is a raw packet, bit 1: fix its checksum), shuffle
/// seed (u32), then a [`PacketSpec`] or the raw packet.
pub mod fragment {
    use super::*;
    use morgana_net::fragment::{fragment_into, FragmentError};
    use morgana_net::reassembly::{Pushed, Reassembler, ReassemblyConfig};
    use morgana_net::wire::ipv4::options;

    /// Encodes an input for [`check`] (used by the seed generator).
    pub fn encode(mtu: u16, seed: u32, spec: &PacketSpec) -> Vec<u8> {
        let mut out = mtu.to_be_bytes().to_vec();
        out.push(0);
        out.extend_from_slice(&seed.to_be_bytes());
        spec.write(&mut out);
        out
    }

    /// Runs every check on `data`.
    pub fn check(data: &[u8]) {
        let mut input = Input::new(data);
        let mtu = usize::from(input.u16());
        let mode = input.byte();
        let seed = input.u32();
        let packet = if mode & 1 != 0 {
            let mut raw = input.rest().to_vec();
            if mode & 2 != 0 {
                fix_checksum(&mut raw);
            }
            raw
        } else {
            PacketSpec::read(&mut input).build()
        };
        check_packet(&packet, mtu, seed);
    }

    fn check_packet(bytes: &[u8], mtu: usize, seed: u32) {
        // Results are appended: a prefix must survive, and nothing may be added on error.
        let prefix = [0xee_u8; 3];
        let mut out = prefix.to_vec();
        let mut lengths = vec![usize::MAX];
        let result = fragment_into(bytes, mtu, &mut out, &mut lengths);
        if let Err(e) = result {
            assert_eq!(out, prefix, "nothing appended on error");
            assert_eq!(lengths, [usize::MAX]);
            match (e, Ipv4Packet::parse(bytes)) {
                (FragmentError::Malformed(e), Err(parse_error)) => assert_eq!(e, parse_error),
                (FragmentError::Malformed(e), Ok(p)) => assert_eq!(options(p.options()).unwrap_err(), e),
                (FragmentError::FragmentationNeeded { mtu: m }, Ok(p)) => {
                    assert!(m == mtu && p.dont_fragment() && p.total_len() > mtu)
                }
                (FragmentError::MtuTooSmall { mtu: m }, Ok(p)) => assert!(m == mtu && p.total_len() > mtu),
                (FragmentError::OffsetOverflow, Ok(p)) => {
                    assert!(p.fragment_offset() + p.payload().len() > MAX_PACKET_LEN)
                }
                (e, Err(_)) => panic!("{e:?} for a packet that does not parse"),
            }
            return;
        }
        let original = Ipv4Packet::parse(bytes).expect("only valid packets fragment");
        assert_eq!(&out[..3], &prefix);
        assert_eq!(lengths[0], usize::MAX);
        assert_eq!(lengths[1..].iter().sum::<usize>(), out.len() - 3);
        let mut pieces = Vec::new();
        let mut at = 3;
        for &len in &lengths[1..] {
            pieces.push(&out[at..at + len]);
            at += len;
        }
        if original.total_len() <= mtu {
            assert_eq!(pieces, [original.as_bytes()]);
            return;
        }
        assert!(pieces.len() >= 2);
        let copied: Vec<u8> = options(original.options())
            .expect("options were walked")
            .iter()
            .filter(|o| o.copied())
            .flat_map(|o| o.bytes.iter().copied())
            .collect();
        let mut offset = original.fragment_offset();
        let mut payload = Vec::new();
        for (i, bytes) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            assert!(bytes.len() <= mtu, "piece {i} is {} bytes, MTU {mtu}", bytes.len());
            let piece = Ipv4Packet::parse(bytes).expect("every piece is valid IPv4");
            assert_eq!(piece.total_len(), bytes.len());
            assert_eq!(
                (piece.src(), piece.dst(), piece.protocol(), piece.identification()),
                (original.src(), original.dst(), original.protocol(), original.identification())
            );
            assert_eq!(
                (piece.tos(), piece.ttl(), piece.dont_fragment()),
                (original.tos(), original.ttl(), false)
            );
            assert_eq!(piece.fragment_offset(), offset);
            assert_eq!(piece.more_fragments(), !last || original.more_fragments());
            assert!(!piece.payload().is_empty());
            if !last {
                assert_eq!(piece.payload().len() % 8, 0);
            }
            if i == 0 {
                assert_eq!(piece.options(), original.options());
            } else {
                let (head, padding) = piece.options().split_at(copied.len());
                assert_eq!(head, &copied[..]);
                assert!(padding.len() < 4 && padding.iter().all(|&b| b == 0));
            }
            offset += piece.payload().len();
            payload.extend_from_slice(piece.payload());
        }
        assert_eq!(payload, original.payload());

        if original.is_fragment() {
            return;
        }
        // Whole datagram: the reassembler must give it back, whatever the arrival order.
        let mut order: Vec<usize> = (0..pieces.len()).collect();
        let mut state = u64::from(seed);
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let config =
            ReassemblyConfig { max_bytes: MAX_PACKET_LEN, max_fragments: pieces.len(), timeout_ms: 1 };
        let mut reassembler = Reassembler::new(config);
        for (n, &i) in order.iter().enumerate() {
            match reassembler.push(pieces[i], 0) {
                Pushed::Pending if n + 1 < order.len() => {}
                Pushed::Complete(whole) if n + 1 == order.len() => {
                    let mut expected = original.as_bytes().to_vec();
                    expected[6] &= 0x7f; // the fragmenter does not carry the reserved bit
                    expected[10..12].copy_from_slice(&whole[10..12]);
                    assert_eq!(whole, expected);
                    assert_eq!(checksum::checksum(&whole[..original.header_len()], 0), 0);
                }
                other => panic!("piece {n} of {} (#{i}) gave {other:?}", order.len()),
            }
        }
        assert_eq!(reassembler.stats().buffered_bytes, 0);
    }
}

/// Target `reassembly`: a sequence of pushes and expiries with a clock derived from the input.
///
/// Input: `max_bytes / 4` (u16), `max_fragments - 1` (mod 64), timeout (u16 ms), then
/// operations of two bytes (kind, clock step) followed by the kind's own bytes:
/// - kind % 5 == 0, [`Op::Piece`]: a hand-made fragment (id mod 4, offset unit mod 64, length
///   units mod 16, tail, bit 0 of the flags byte: More Fragments, bit 1: a copied option);
/// - 1, raw bytes: a length byte then that many bytes; bit 2 of the kind fixes the checksum;
/// - 2, `expire(now)`;
/// - 3, [`Op::Split`]: one piece of a whole datagram (id mod 4, payload length, MTU, index)
///   cut by `fragment`; bit 2 of the kind adds a copied option.
///
/// - 4, [`Op::Flood`]: `count` (mod 100) small datagrams with fresh identifications, every
///   other one left incomplete (churn for eviction and the expiry queue's compaction).
///
/// At most 600 operations are read, so that one input stays fast to run.
///
/// The clock step: 255 jumps to `u64::MAX`, 254 goes back 20 s, else `now += 16 * step` ms.
///
/// Invariants: no panic; buffered bytes never above `max_bytes`; counters never go down; any
/// `Complete` is valid IPv4 (checksum verified, More Fragments clear, offset 0) and, unless raw
/// fragments were mixed in, carries exactly the generated payload bytes; after
/// `expire(u64::MAX)` the cache is empty.
pub mod reassembly {
    use super::*;
    use morgana_net::fragment::fragment;
    use morgana_net::reassembly::{Pushed, Reassembler, ReassemblyStats};

    /// Router Alert: an option with the copy bit set.
    const ROUTER_ALERT: [u8; 4] = [0x94, 4, 0, 0];

    /// One operation of an input (for the seed generator).
    #[derive(Debug, Clone)]
    pub enum Op {
        /// A hand-made fragment: `len_units * 8` bytes (plus `tail` when final) at `offset_units * 8`.
        Piece {
            /// Clock step.
            step: u8,
            /// Identification (mod 4).
            id: u8,
            /// Offset in 8-byte units (mod 64).
            offset_units: u8,
            /// Length in 8-byte units (mod 16).
            len_units: u8,
            /// Extra bytes of a final fragment (mod 8).
            tail: u8,
            /// More Fragments.
            more: bool,
        },
        /// Raw bytes.
        Raw {
            /// Clock step.
            step: u8,
            /// The packet (at most 255 bytes).
            bytes: Vec<u8>,
            /// Fix the header checksum first.
            fix: bool,
        },
        /// `expire(now)`.
        Expire {
            /// Clock step.
            step: u8,
        },
        /// Piece `index` of datagram `id` (payload `len` bytes) cut at `68 + 8 * mtu_step`.
        Split {
            /// Clock step.
            step: u8,
            /// Identification (mod 4).
            id: u8,
            /// Payload length (mod 12,000, plus 1).
            len: u16,
            /// MTU is `68 + 8 * mtu_step`.
            mtu_step: u8,
            /// Which piece (mod their number).
            index: u8,
        },
        /// `count` datagrams of two 8-byte fragments with new identifications; the second
        /// fragment is sent for every other one only.
        Flood {
            /// Clock step.
            step: u8,
            /// How many datagrams (mod 100).
            count: u8,
        },
    }

    /// Encodes an input for [`check`].
    pub fn encode(max_bytes_quarter: u16, max_fragments: u8, timeout_ms: u16, ops: &[Op]) -> Vec<u8> {
        let mut out = encode_reassembly_config(max_bytes_quarter, max_fragments, timeout_ms);
        for op in ops {
            match op {
                Op::Piece { step, id, offset_units, len_units, tail, more } => {
                    out.extend_from_slice(&[0, *step, *id, *offset_units, *len_units, *tail, u8::from(*more)])
                }
                Op::Raw { step, bytes, fix } => encode_raw(&mut out, *step, bytes, *fix),
                Op::Expire { step } => out.extend_from_slice(&[2, *step]),
                Op::Split { step, id, len, mtu_step, index } => {
                    out.extend_from_slice(&[3, *step, *id]);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&[*mtu_step, *index]);
                }
                Op::Flood { step, count } => out.extend_from_slice(&[4, *step, *count]),
            }
        }
        out
    }

    fn piece(id: u16, offset: usize, len: usize, more: bool, options: &[u8]) -> Vec<u8> {
        let header = Ipv4Header {
            src: SRC,
            dst: DST,
            protocol: 17,
            ttl: 64,
            tos: 0,
            identification: id,
            dont_fragment: false,
            more_fragments: more,
            fragment_offset: offset,
            options,
            payload_len: len,
        };
        let mut out = vec![0; header.header_len() + len];
        let at = header.emit(&mut out).expect("offsets stay below 65,536");
        for (i, b) in out[at..].iter_mut().enumerate() {
            *b = content(id, offset + i);
        }
        out
    }

    /// Runs every check on `data`.
    pub fn check(data: &[u8]) {
        let mut input = Input::new(data);
        let config = reassembly_config(&mut input);
        let mut cache = Reassembler::new(config);
        let mut now: u64 = 0;
        let mut raw_fragments = false;
        // Identifications 0..4 are the hand-made and split datagrams'; floods use the others.
        let mut next_id: u16 = 3;
        let mut previous = cache.stats();
        let mut ops = 0;
        while !input.is_empty() && ops < 600 {
            ops += 1;
            let kind = input.byte();
            now = step_clock(now, input.byte());
            let packet = match kind % 5 {
                0 => {
                    let id = u16::from(input.byte() % 4);
                    // Small offsets and lengths, so that pieces meet, overlap and duplicate often.
                    let offset = usize::from(input.byte() % 64) * 8;
                    let len_units = usize::from(input.byte() % 16);
                    let tail = usize::from(input.byte() % 8);
                    let flags = input.byte();
                    let more = flags & 1 != 0;
                    let len = len_units * 8 + if more { 0 } else { tail };
                    piece(id, offset, len, more, if flags & 2 != 0 { &ROUTER_ALERT } else { &[] })
                }
                1 => {
                    let len = usize::from(input.byte());
                    let mut raw = input.take(len).to_vec();
                    if kind & 4 != 0 {
                        fix_checksum(&mut raw);
                    }
                    if Ipv4Packet::parse(&raw).is_ok_and(|p| p.is_fragment()) {
                        raw_fragments = true;
                    }
                    raw
                }
                2 => {
                    let pending = cache.stats().pending_datagrams;
                    let dropped = cache.expire(now) as u64;
                    let stats = cache.stats();
                    assert_eq!(stats.pending_datagrams + dropped, pending);
                    check_stats(&previous, &stats, &config);
                    previous = stats;
                    continue;
                }
                4 => {
                    for _ in 0..input.byte() % 100 {
                        next_id = next_id.checked_add(1).unwrap_or(4);
                        let pieces = [piece(next_id, 0, 8, true, &[]), piece(next_id, 8, 1, false, &[])];
                        let sent = if next_id.is_multiple_of(2) { &pieces[..] } else { &pieces[..1] };
                        for p in sent {
                            match cache.push(p, now) {
                                Pushed::Complete(whole) => check_complete(&whole, raw_fragments),
                                Pushed::NotFragment => panic!("a fragment taken for a whole packet"),
                                Pushed::Pending | Pushed::Dropped => {}
                            }
                            let stats = cache.stats();
                            check_stats(&previous, &stats, &config);
                            previous = stats;
                        }
                    }
                    continue;
                }
                _ => {
                    let id = u16::from(input.byte() % 4);
                    let len = usize::from(input.u16()) % 12_000 + 1;
                    let mtu = 68 + usize::from(input.byte()) * 8;
                    let index = usize::from(input.byte());
                    let options: &[u8] = if kind & 4 != 0 { &ROUTER_ALERT } else { &[] };
                    let whole = piece(id, 0, len, false, options);
                    let pieces = fragment(&whole, mtu).expect("a generated datagram fragments");
                    pieces[index % pieces.len()].clone()
                }
            };
            let result = cache.push(&packet, now);
            let parsed = Ipv4Packet::parse(&packet);
            match &result {
                Pushed::NotFragment => assert!(parsed.is_ok_and(|p| !p.is_fragment())),
                Pushed::Complete(whole) => {
                    assert!(parsed.is_ok_and(|p| p.is_fragment()));
                    check_complete(whole, raw_fragments);
                }
                Pushed::Pending => assert!(parsed.is_ok_and(|p| p.is_fragment())),
                Pushed::Dropped => {}
            }
            let stats = cache.stats();
            check_stats(&previous, &stats, &config);
            previous = stats;
        }
        cache.expire(u64::MAX);
        let stats = cache.stats();
        assert_eq!((stats.pending_datagrams, stats.buffered_bytes), (0, 0), "expire(MAX) empties the cache");
    }

    fn check_complete(whole: &[u8], raw_fragments: bool) {
        let packet = Ipv4Packet::parse(whole).expect("a reassembled datagram is valid IPv4");
        assert_eq!(packet.total_len(), whole.len());
        assert!(!packet.more_fragments() && packet.fragment_offset() == 0);
        assert!(whole.len() <= MAX_PACKET_LEN);
        if !raw_fragments && packet.src() == SRC && packet.dst() == DST {
            let id = packet.identification();
            for (i, &b) in packet.payload().iter().enumerate() {
                assert_eq!(b, content(id, i), "byte {i} of reassembled datagram {id}");
            }
        }
    }

    fn check_stats(previous: &ReassemblyStats, now: &ReassemblyStats, config: &ReassemblyConfig) {
        assert!(
            now.buffered_bytes <= config.max_bytes as u64,
            "{} buffered, cap {}",
            now.buffered_bytes,
            config.max_bytes
        );
        let counters = |s: &ReassemblyStats| {
            [
                s.fragments,
                s.reassembled,
                s.duplicates,
                s.dropped_overlap,
                s.dropped_timeout,
                s.dropped_memory,
                s.dropped_too_many_fragments,
                s.dropped_too_big,
                s.dropped_bad_length,
                s.dropped_inconsistent,
                s.dropped_malformed,
                s.dropped_discarded,
            ]
        };
        for (before, after) in counters(previous).iter().zip(counters(now)) {
            assert!(after >= *before, "counters never go down");
        }
        if now.pending_datagrams == 0 {
            // Only remembered keys of datagrams dropped for too many fragments (64 bytes each).
            assert_eq!(now.buffered_bytes % 64, 0, "{} buffered with nothing pending", now.buffered_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The checks themselves must hold on ordinary inputs (so a fuzz crash is about the code
    //! under test), and on a few thousand pseudo-random ones.
    use super::*;

    #[test]
    fn seeds_pass() {
        for (target, _name, bytes) in crate::seeds::all() {
            match target {
                "ipv4_parse" => ipv4_parse::check(&bytes),
                "fragment" => fragment::check(&bytes),
                "reassembly" => reassembly::check(&bytes),
                "ipv6_reassembly" => ipv6_reassembly::check(&bytes),
                "tcp" => tcp::check(&bytes),
                "gso" => gso::check(&bytes),
                other => panic!("unknown target {other}"),
            }
        }
    }

    #[test]
    fn pseudo_random_inputs_pass() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..5000 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            match round % 6 {
                0 => ipv4_parse::check(&bytes),
                1 => fragment::check(&bytes),
                2 => reassembly::check(&bytes),
                3 => ipv6_reassembly::check(&bytes),
                4 => gso::check(&bytes),
                _ => tcp::check(&bytes),
            }
        }
    }
}

pub mod gso;
pub mod ipv6_reassembly;
pub mod seeds;
pub mod tcp;
