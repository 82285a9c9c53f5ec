//! The IPv6 reassembly cache (RFC 8200 §4.5), on the same bounded core as the IPv4 one.
//!
//! Fragments are keyed by (source, destination, identification). The limits and their defaults
//! are those of [`ReassemblyConfig`] (256 KiB, 128 fragments per datagram, 10 s from the first
//! fragment), with one difference in accounting: the stored unfragmentable part of a datagram
//! (up to about 1 KiB of extension headers) is charged against `max_bytes` along with the
//! fragment data.
//!
//! Rules, each with its counter in [`Ipv6ReassemblyStats`]:
//! - An atomic fragment (offset 0, M clear, RFC 6946) is handed back at once
//!   ([`Ipv6Outcome::Atomic`]) and never touches the cache, even if fragments with the same
//!   identification are pending.
//! - Overlapping fragments drop the whole datagram, and the datagram is remembered until its
//!   timeout so that its later fragments are dropped too instead of starting it again
//!   (RFC 5722). A remembered datagram is charged 64 bytes against `max_bytes` and is evicted
//!   like any other. Exact duplicates are ignored (RFC 8200 allows it).
//! - A fragment with M set whose data is not a multiple of 8 bytes is dropped, with an ICMPv6
//!   Parameter Problem code 0 pointing at the Payload Length field (byte 4).
//! - A fragment that would make the reassembled payload longer than 65,535 bytes is dropped,
//!   with a Parameter Problem code 0 pointing at its Fragment Offset field.
//! - An offset-0 fragment that does not hold the whole header chain through the upper-layer
//!   header is dropped, with a Parameter Problem code 3, pointer 0 (RFC 7112).
//! - A datagram that times out after its offset-0 fragment arrived yields a Time Exceeded code 1
//!   quoting that fragment.
//!
//! The ICMPv6 errors are queued as [`Icmpv6Report`]s for the IPv6 layer to send, at most
//! `max_reports` of them (default [`DEFAULT_MAX_REPORTS`]), each quoting at most
//! [`MAX_QUOTE`] bytes of the offending packet, as much as an ICMPv6 error can carry in the
//! minimum MTU. Reports are not queued for packets sent to a multicast address or from a
//! multicast or unspecified one (RFC 4443 §2.4 (e), (f)).
//!
//! The reassembled packet is the offset-0 fragment's unfragmentable part (fixed header and the
//! extension headers before the Fragment header) followed by the fragment data, with the
//! Fragment header removed, the Next Header field that named it set to the Fragment header's
//! Next Header, and the Payload Length recomputed.

use super::cache::{Cache, DropReason, Family, Inserted, Piece};
use super::{ReassemblyConfig, ReassemblyStats};
use crate::fragment::ipv6::header_chain_len;
use crate::wire::ipv6::{next_header, Ipv6Packet, FRAGMENT_HEADER_LEN, HEADER_LEN, MAX_PAYLOAD_LEN, MIN_MTU};
use std::collections::VecDeque;

/// The most bytes of an offending packet a report quotes: what fits an ICMPv6 error (8 bytes of
/// ICMPv6 header after the 40-byte IPv6 header) in the minimum MTU of 1280 bytes.
pub const MAX_QUOTE: usize = MIN_MTU - HEADER_LEN - 8;
/// Reports queued by default before further ones are dropped.
pub const DEFAULT_MAX_REPORTS: usize = 16;
/// ICMPv6 type Time Exceeded (RFC 4443 §3.3).
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// ICMPv6 type Parameter Problem (RFC 4443 §3.4).
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;

/// An ICMPv6 error the IPv6 layer should send to the source of [`packet`](Self::packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Report {
    /// [`ICMPV6_PARAMETER_PROBLEM`] or [`ICMPV6_TIME_EXCEEDED`].
    pub icmp_type: u8,
    /// Parameter Problem: 0 (erroneous header field) or 3 (incomplete header chain in the first
    /// fragment); Time Exceeded: 1 (fragment reassembly time exceeded).
    pub code: u8,
    /// Parameter Problem's pointer: the offset of the field at fault in `packet`. 0 for Time
    /// Exceeded.
    pub pointer: u32,
    /// The start (at most [`MAX_QUOTE`] bytes) of the offending fragment, or for Time Exceeded
    /// of the offset-0 fragment.
    pub packet: Vec<u8>,
}

/// Counters of an [`Ipv6Reassembler`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ipv6ReassemblyStats {
    /// The counters shared with IPv4, with these meanings here: `dropped_bad_length` counts
    /// fragments with M set whose data is empty or not a multiple of 8 bytes; `dropped_too_big`
    /// fragments (or datagrams) past 65,535 bytes of payload; `dropped_malformed` packets that
    /// are not valid IPv6 or whose extension headers are malformed; `buffered_bytes` includes
    /// stored headers and remembered discarded datagrams.
    pub common: ReassemblyStats,
    /// Atomic fragments handed back without reassembly.
    pub atomic: u64,
    /// Fragments dropped because their datagram had been discarded for an overlap or for too
    /// many fragments (the same count as `common.dropped_discarded`).
    pub dropped_discarded: u64,
    /// Offset-0 fragments dropped for not holding the whole header chain (RFC 7112).
    pub dropped_incomplete_chain: u64,
    /// ICMPv6 error reports queued.
    pub reports: u64,
    /// ICMPv6 error reports dropped because the queue was full.
    pub dropped_reports: u64,
}

/// What [`Ipv6Reassembler::push`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Ipv6Pushed {
    /// Not a fragment: the caller uses the packet as it is.
    NotFragment,
    /// An atomic fragment: the caller uses the packet as it is (the Fragment header is skipped
    /// by [`Ipv6Packet::extensions`]).
    Atomic,
    /// The fragment completed its packet: the whole reassembled packet.
    Complete(Vec<u8>),
    /// Held until more fragments arrive (or ignored as a duplicate).
    Pending,
    /// Dropped (and counted).
    Dropped,
    /// Dropped (and counted), and a Parameter Problem with this code and pointer is due (it is
    /// queued as a report unless the addresses forbid it or the queue is full).
    ParameterProblem {
        /// ICMPv6 code.
        code: u8,
        /// Offset of the field at fault.
        pointer: u32,
    },
}

/// As [`Ipv6Pushed`], for [`Ipv6Reassembler::push_ready`]: a completed packet is held for
/// [`Ipv6Reassembler::take_ready`] and only its length is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Outcome {
    /// Not a fragment.
    NotFragment,
    /// An atomic fragment.
    Atomic,
    /// Completed and held; the value is the reassembled packet's length.
    Ready(usize),
    /// Held until more fragments arrive (or ignored as a duplicate).
    Pending,
    /// Dropped (and counted).
    Dropped,
    /// Dropped with a Parameter Problem due; see [`Ipv6Pushed::ParameterProblem`].
    ParameterProblem {
        /// ICMPv6 code.
        code: u8,
        /// Offset of the field at fault.
        pointer: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: [u8; 16],
    dst: [u8; 16],
    identification: u32,
}

/// The stored header is the offset-0 fragment's unfragmentable part and its Fragment header;
/// the latter is stripped from the reassembled packet. The size bound is on the payload.
const IPV6: Family = Family {
    max_total: HEADER_LEN + MAX_PAYLOAD_LEN,
    strip: FRAGMENT_HEADER_LEN,
    charge_header: true,
    discard_after_overlap: true,
};

/// The bounded IPv6 reassembly cache. See the module documentation.
#[derive(Debug)]
pub struct Ipv6Reassembler {
    core: Cache<DatagramKey>,
    reports: VecDeque<Icmpv6Report>,
    max_reports: usize,
    atomic: u64,
    dropped_incomplete_chain: u64,
    queued_reports: u64,
    dropped_reports: u64,
}

impl Default for Ipv6Reassembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

/// Whether an ICMPv6 error about a packet with this fixed header may be sent (RFC 4443 §2.4).
fn may_report(header: &[u8]) -> bool {
    let (src, dst) = (&header[8..24], &header[24..40]);
    dst[0] != 0xff && src[0] != 0xff && src.iter().any(|&b| b != 0)
}

/// The offset of the Next Header field naming the header at `end` in an unfragmentable part
/// already validated by the extension walk.
fn next_header_pointer(header: &[u8], end: usize) -> usize {
    let (mut pointer, mut at) = (6, HEADER_LEN);
    while at < end {
        let len = match header[pointer] {
            next_header::FRAGMENT => FRAGMENT_HEADER_LEN,
            _ => header.get(at + 1).map_or(end, |&units| (usize::from(units) + 1) * 8),
        };
        pointer = at;
        at += len;
    }
    pointer
}

impl Ipv6Reassembler {
    /// An empty cache with the given limits and a report queue of [`DEFAULT_MAX_REPORTS`].
    pub fn new(config: ReassemblyConfig) -> Self {
        Self::with_max_reports(config, DEFAULT_MAX_REPORTS)
    }

    /// An empty cache with the given limits, queueing at most `max_reports` ICMPv6 reports.
    pub fn with_max_reports(config: ReassemblyConfig, max_reports: usize) -> Self {
        Ipv6Reassembler {
            core: Cache::new(config, IPV6),
            reports: VecDeque::new(),
            max_reports,
            atomic: 0,
            dropped_incomplete_chain: 0,
            queued_reports: 0,
            dropped_reports: 0,
        }
    }

    /// The limits this cache was created with.
    pub fn config(&self) -> ReassemblyConfig {
        self.core.config()
    }

    /// Counters and current occupancy.
    pub fn stats(&self) -> Ipv6ReassemblyStats {
        Ipv6ReassemblyStats {
            common: self.core.stats(),
            atomic: self.atomic,
            dropped_discarded: self.core.stats.dropped_discarded,
            dropped_incomplete_chain: self.dropped_incomplete_chain,
            reports: self.queued_reports,
            dropped_reports: self.dropped_reports,
        }
    }

    /// Reports queued and not yet taken.
    pub fn pending_reports(&self) -> usize {
        self.reports.len()
    }

    /// Takes the oldest queued ICMPv6 report.
    pub fn take_report(&mut self) -> Option<Icmpv6Report> {
        self.reports.pop_front()
    }

    /// Drops every incomplete datagram whose first fragment arrived `timeout_ms` or more before
    /// `now_ms`, queueing a Time Exceeded report for each whose offset-0 fragment had arrived.
    /// Returns how many were dropped.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let Ipv6Reassembler { core, reports, max_reports, queued_reports, dropped_reports, .. } = self;
        core.expire(now_ms, |header, first| {
            if !may_report(header) {
                return;
            }
            if reports.len() >= *max_reports {
                *dropped_reports += 1;
                return;
            }
            let mut packet = Vec::with_capacity((header.len() + first.len()).min(MAX_QUOTE));
            packet.extend_from_slice(&header[..header.len().min(MAX_QUOTE)]);
            packet.extend_from_slice(&first[..first.len().min(MAX_QUOTE - packet.len())]);
            reports.push_back(Icmpv6Report { icmp_type: ICMPV6_TIME_EXCEEDED, code: 1, pointer: 0, packet });
            *queued_reports += 1;
        })
    }

    /// Takes one IPv6 packet at time `now_ms`.
    pub fn push(&mut self, packet: &[u8], now_ms: u64) -> Ipv6Pushed {
        match self.push_ready(packet, now_ms) {
            Ipv6Outcome::NotFragment => Ipv6Pushed::NotFragment,
            Ipv6Outcome::Atomic => Ipv6Pushed::Atomic,
            Ipv6Outcome::Pending => Ipv6Pushed::Pending,
            Ipv6Outcome::Dropped => Ipv6Pushed::Dropped,
            Ipv6Outcome::ParameterProblem { code, pointer } => Ipv6Pushed::ParameterProblem { code, pointer },
            Ipv6Outcome::Ready(len) => {
                let mut whole = vec![0; len];
                self.take_ready(&mut whole);
                Ipv6Pushed::Complete(whole)
            }
        }
    }

    /// As [`push`](Self::push), but a completed packet is held until
    /// [`take_ready`](Self::take_ready) writes it into the caller's buffer (at most 65,575
    /// bytes, not counted in `max_bytes`, discarded by the next push if not taken).
    pub fn push_ready(&mut self, packet: &[u8], now_ms: u64) -> Ipv6Outcome {
        self.core.discard_untaken();
        self.expire(now_ms);
        let Ok(p) = Ipv6Packet::parse(packet) else {
            self.core.stats.dropped_malformed += 1;
            return Ipv6Outcome::Dropped;
        };
        let Ok(ext) = p.extensions() else {
            self.core.stats.dropped_malformed += 1;
            return Ipv6Outcome::Dropped;
        };
        let Some(fragment) = ext.fragment else {
            return Ipv6Outcome::NotFragment;
        };
        if fragment.is_atomic() {
            self.atomic += 1;
            return Ipv6Outcome::Atomic;
        }
        let bytes = p.as_bytes();
        let data_at = ext.payload_offset;
        let fragment_at = data_at - FRAGMENT_HEADER_LEN;
        let data = &bytes[data_at..];
        let last = !fragment.more_fragments;
        if !last && !data.len().is_multiple_of(8) {
            self.core.stats.dropped_bad_length += 1;
            return self.parameter_problem(bytes, 0, 4);
        }
        if !last && data.is_empty() {
            self.core.stats.dropped_bad_length += 1;
            return Ipv6Outcome::Dropped;
        }
        let offset_field = (fragment_at + 2) as u32;
        if fragment_at - HEADER_LEN + fragment.offset + data.len() > MAX_PAYLOAD_LEN {
            self.core.stats.dropped_too_big += 1;
            return self.parameter_problem(bytes, 0, offset_field);
        }
        if fragment.offset == 0 && header_chain_len(fragment.next_header, data).is_none() {
            self.dropped_incomplete_chain += 1;
            return self.parameter_problem(bytes, 3, 0);
        }
        let key = DatagramKey { src: p.src(), dst: p.dst(), identification: fragment.identification };
        let piece = Piece {
            header: &bytes[..data_at],
            floor: fragment_at,
            offset: fragment.offset,
            payload: data,
            last,
        };
        match self.core.insert(key, now_ms, piece) {
            Inserted::Pending => Ipv6Outcome::Pending,
            Inserted::Ready(len) => Ipv6Outcome::Ready(len),
            Inserted::Dropped(DropReason::TooBig) => self.parameter_problem(bytes, 0, offset_field),
            Inserted::Dropped(_) => Ipv6Outcome::Dropped,
            Inserted::Discarded => Ipv6Outcome::Dropped,
        }
    }

    /// Writes the packet completed by the last [`push_ready`](Self::push_ready) into the start
    /// of `out` and returns its length (see the module documentation for its form). `None` when
    /// none is held or `out` is too short (it then stays held).
    pub fn take_ready(&mut self, out: &mut [u8]) -> Option<usize> {
        let header = self.core.ready_header()?;
        let unfragmentable = header.len() - FRAGMENT_HEADER_LEN;
        let pointer = next_header_pointer(header, unfragmentable);
        let upper = header[unfragmentable];
        let total = self.core.take_ready(out)?;
        out[pointer] = upper;
        out[4..6].copy_from_slice(&((total - HEADER_LEN) as u16).to_be_bytes());
        Some(total)
    }

    /// Queues a Parameter Problem about `packet` (if allowed and there is room) and returns the
    /// outcome reporting it.
    fn parameter_problem(&mut self, packet: &[u8], code: u8, pointer: u32) -> Ipv6Outcome {
        if may_report(packet) {
            if self.reports.len() >= self.max_reports {
                self.dropped_reports += 1;
            } else {
                self.reports.push_back(Icmpv6Report {
                    icmp_type: ICMPV6_PARAMETER_PROBLEM,
                    code,
                    pointer,
                    packet: packet[..packet.len().min(MAX_QUOTE)].to_vec(),
                });
                self.queued_reports += 1;
            }
        }
        Ipv6Outcome::ParameterProblem { code, pointer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::ipv6::fragment;
    use crate::fragment::ipv6::tests::{options, packet, DST, SRC};
    use crate::wire::ipv6::FragmentHeader;
    use proptest::prelude::*;

    /// A fragment made by hand: `unfragmentable` extension headers (kind, bytes), a fragment
    /// header for `upper` at `offset`, then `data`.
    fn piece_with(
        headers: &[(u8, Vec<u8>)],
        upper: u8,
        id: u32,
        offset: usize,
        data: &[u8],
        more: bool,
    ) -> Vec<u8> {
        let mut out = packet(headers, next_header::FRAGMENT, 0, 0);
        let mut frag = [0; 8];
        FragmentHeader { next_header: upper, offset, more_fragments: more, identification: id }
            .emit(&mut frag)
            .unwrap();
        out.extend_from_slice(&frag);
        out.extend_from_slice(data);
        let len = (out.len() - HEADER_LEN) as u16;
        out[4..6].copy_from_slice(&len.to_be_bytes());
        out
    }

    fn piece(id: u32, offset: usize, data: &[u8], more: bool) -> Vec<u8> {
        piece_with(&[], next_header::NO_NEXT_HEADER, id, offset, data, more)
    }

    fn big() -> Ipv6Reassembler {
        Ipv6Reassembler::new(ReassemblyConfig { max_fragments: 300, ..Default::default() })
    }

    fn reassemble(r: &mut Ipv6Reassembler, pieces: &[Vec<u8>]) -> Option<Vec<u8>> {
        let mut done = None;
        for p in pieces {
            if let Ipv6Pushed::Complete(whole) = r.push(p, 0) {
                done = Some(whole);
            }
        }
        done
    }

    #[test]
    fn reassembles_with_extension_headers() {
        let headers = [
            (next_header::HOP_BY_HOP, options(1)),
            (next_header::ROUTING, options(2)),
            (next_header::DESTINATION_OPTIONS, options(1)),
        ];
        let original = packet(&headers, next_header::UDP, 5000, 7);
        let pieces = fragment(&original, 1280, 0x0102_0304).unwrap();
        assert_eq!(pieces.len(), 5);
        for reversed in [false, true] {
            let mut r = Ipv6Reassembler::default();
            let mut pieces = pieces.clone();
            if reversed {
                pieces.reverse();
            }
            let (last, rest) = pieces.split_last().unwrap();
            for p in rest {
                assert_eq!(r.push(p, 0), Ipv6Pushed::Pending);
            }
            assert_eq!(r.push(last, 0), Ipv6Pushed::Complete(original.clone()));
            let s = r.stats();
            assert_eq!(
                (s.common.reassembled, s.common.buffered_bytes, s.common.pending_datagrams),
                (1, 0, 0)
            );
        }
    }

    #[test]
    fn reassembled_packet_is_rebuilt_from_the_first_fragment() {
        // The offset-0 fragment's unfragmentable part (hop limit 9, a destination options
        // header) wins; the fragment header's Next Header (UDP) goes into that header.
        let dest = [(next_header::DESTINATION_OPTIONS, options(1))];
        let mut first = piece_with(&dest, next_header::UDP, 5, 0, &[1; 16], true);
        first[7] = 9;
        let second = piece_with(&[], next_header::TCP, 5, 16, &[2; 3], false);
        let mut r = Ipv6Reassembler::default();
        assert_eq!(r.push(&second, 0), Ipv6Pushed::Pending);
        let Ipv6Pushed::Complete(whole) = r.push(&first, 0) else { panic!("not complete") };
        assert_eq!(whole.len(), 40 + 8 + 19);
        assert_eq!(u16::from_be_bytes([whole[4], whole[5]]), 27);
        assert_eq!((whole[6], whole[7], whole[40]), (next_header::DESTINATION_OPTIONS, 9, next_header::UDP));
        let p = Ipv6Packet::parse(&whole).unwrap();
        let ext = p.extensions().unwrap();
        assert_eq!((ext.next_header, ext.payload_offset, ext.fragment), (next_header::UDP, 48, None));
        assert_eq!(&whole[48..64], &[1; 16]);
        assert_eq!(&whole[64..], &[2; 3]);
    }

    #[test]
    fn atomic_fragments_bypass_the_cache() {
        let mut r = Ipv6Reassembler::default();
        // A pending fragment with the same identification is not disturbed (RFC 6946 §4).
        assert_eq!(r.push(&piece(9, 8, &[1; 8], true), 0), Ipv6Pushed::Pending);
        let atomic = piece_with(&[], next_header::UDP, 9, 0, &[0; 12], false);
        assert_eq!(r.push(&atomic, 0), Ipv6Pushed::Atomic);
        assert_eq!(r.push(&packet(&[], next_header::UDP, 12, 0), 0), Ipv6Pushed::NotFragment);
        let s = r.stats();
        assert_eq!((s.atomic, s.common.fragments, s.common.pending_datagrams), (1, 1, 1));
        assert_eq!(r.push(&piece(9, 0, &[1; 8], true), 0), Ipv6Pushed::Pending);
        assert!(matches!(r.push(&piece(9, 16, &[1; 1], false), 0), Ipv6Pushed::Complete(_)));
    }

    #[test]
    fn overlap_discards_the_datagram_and_its_later_fragments() {
        let mut r = Ipv6Reassembler::new(ReassemblyConfig { timeout_ms: 1000, ..Default::default() });
        assert_eq!(r.push(&piece(1, 0, &[1; 16], true), 0), Ipv6Pushed::Pending);
        assert_eq!(r.push(&piece(1, 8, &[1; 16], true), 0), Ipv6Pushed::Dropped);
        assert_eq!(r.stats().common.dropped_overlap, 1);
        assert_eq!(r.stats().common.pending_datagrams, 0);
        assert_eq!(r.stats().common.buffered_bytes, 64, "the discarded datagram is remembered");
        // Later fragments, even ones that would complete a fresh datagram, are dropped.
        assert_eq!(r.push(&piece(1, 0, &[1; 16], true), 100), Ipv6Pushed::Dropped);
        assert_eq!(r.push(&piece(1, 16, &[1; 4], false), 200), Ipv6Pushed::Dropped);
        assert_eq!(r.stats().dropped_discarded, 2);
        // Until the timeout, which forgets it silently (no Time Exceeded, no timeout counted).
        assert_eq!(r.expire(1000), 0);
        assert_eq!((r.stats().common.dropped_timeout, r.pending_reports()), (0, 0));
        assert_eq!(r.stats().common.buffered_bytes, 0);
        assert_eq!(r.push(&piece(1, 0, &[1; 16], true), 1001), Ipv6Pushed::Pending);
        assert!(matches!(r.push(&piece(1, 16, &[1; 4], false), 1001), Ipv6Pushed::Complete(_)));
        // An exact duplicate is not an overlap.
        r.push(&piece(2, 0, &[3; 8], true), 1002);
        assert_eq!(r.push(&piece(2, 0, &[3; 8], true), 1002), Ipv6Pushed::Pending);
        assert_eq!(r.stats().common.duplicates, 1);
    }

    #[test]
    fn unaligned_fragment_is_a_parameter_problem_at_the_payload_length() {
        let mut r = Ipv6Reassembler::default();
        let bad = piece(3, 0, &[1; 12], true);
        assert_eq!(r.push(&bad, 0), Ipv6Pushed::ParameterProblem { code: 0, pointer: 4 });
        assert_eq!(r.stats().common.dropped_bad_length, 1);
        let report = r.take_report().unwrap();
        assert_eq!(report, Icmpv6Report { icmp_type: 4, code: 0, pointer: 4, packet: bad });
        // The final fragment may have any length; an empty non-final one is just dropped.
        assert_eq!(r.push(&piece(3, 8, &[1; 3], false), 0), Ipv6Pushed::Pending);
        assert_eq!(r.push(&piece(4, 8, &[], true), 0), Ipv6Pushed::Dropped);
        assert_eq!(r.stats().common.dropped_bad_length, 2);
        assert_eq!(r.pending_reports(), 0);
    }

    #[test]
    fn oversized_reassembly_is_a_parameter_problem_at_the_fragment_offset() {
        let mut r = Ipv6Reassembler::default();
        // 65,528 + 8 = 65,536 bytes of payload with no extension headers: one too many.
        let bad = piece(5, 65_528, &[1; 8], false);
        assert_eq!(r.push(&bad, 0), Ipv6Pushed::ParameterProblem { code: 0, pointer: 42 });
        assert_eq!(r.stats().common.dropped_too_big, 1);
        let report = r.take_report().unwrap();
        assert_eq!((report.icmp_type, report.code, report.pointer), (4, 0, 42));
        assert_eq!(&report.packet[40..42], &[next_header::NO_NEXT_HEADER, 0], "pointer is the offset field");
        // With a destination options header before the fragment header, 65,520 + 8 is too many.
        let dest = [(next_header::DESTINATION_OPTIONS, options(1))];
        let bad = piece_with(&dest, 59, 6, 65_520, &[1; 8], false);
        assert_eq!(r.push(&bad, 0), Ipv6Pushed::ParameterProblem { code: 0, pointer: 50 });
        // 65,527 fits exactly.
        let fits = piece(7, 65_520, &[1; 7], false);
        assert_eq!(r.push(&fits, 0), Ipv6Pushed::Pending);
        // A first fragment whose unfragmentable part pushes a pending datagram over the limit.
        let dest2 = [(next_header::DESTINATION_OPTIONS, options(2))];
        let first = piece_with(&dest2, 59, 7, 0, &[1; 8], true);
        assert_eq!(r.push(&first, 0), Ipv6Pushed::ParameterProblem { code: 0, pointer: 58 });
        assert_eq!(r.stats().common.dropped_too_big, 3);
    }

    #[test]
    fn first_fragment_without_the_whole_chain_is_a_parameter_problem_code_3() {
        let mut r = Ipv6Reassembler::default();
        // TCP needs 20 bytes of header in the first fragment; 16 are there.
        let short = piece_with(&[], next_header::TCP, 8, 0, &[0; 16], true);
        assert_eq!(r.push(&short, 0), Ipv6Pushed::ParameterProblem { code: 3, pointer: 0 });
        // A destination options header (in the fragmentable part) running past the fragment.
        let mut data = options(3);
        data[0] = next_header::UDP;
        let short = piece_with(&[], next_header::DESTINATION_OPTIONS, 9, 0, &data[..16], true);
        assert_eq!(r.push(&short, 0), Ipv6Pushed::ParameterProblem { code: 3, pointer: 0 });
        assert_eq!(r.stats().dropped_incomplete_chain, 2);
        assert_eq!(r.take_report().map(|x| (x.icmp_type, x.code, x.pointer)), Some((4, 3, 0)));
        // Later fragments carry no chain and are not judged.
        assert_eq!(r.push(&piece_with(&[], next_header::TCP, 8, 16, &[0; 8], true), 0), Ipv6Pushed::Pending);
        let whole = piece_with(&[], next_header::TCP, 10, 0, &[0; 24], true);
        assert_eq!(r.push(&whole, 0), Ipv6Pushed::Pending);
    }

    #[test]
    fn timeout_after_the_first_fragment_reports_time_exceeded() {
        let mut r = Ipv6Reassembler::default();
        let first = piece(11, 0, &[5; 16], true);
        r.push(&first, 0);
        r.push(&piece(12, 8, &[5; 8], true), 0); // no first fragment: no report
        r.push(&piece(11, 24, &[5; 8], true), 9_000);
        assert_eq!(r.expire(9_999), 0);
        assert_eq!(r.expire(10_000), 2);
        assert_eq!(r.stats().common.dropped_timeout, 2);
        let report = r.take_report().unwrap();
        assert_eq!(report, Icmpv6Report { icmp_type: 3, code: 1, pointer: 0, packet: first });
        assert_eq!(r.take_report(), None);
        // The report quote is bounded.
        let long = piece_with(&[], next_header::UDP, 13, 0, &[6; 1400], true);
        r.push(&long, 20_000);
        r.expire(30_000);
        let report = r.take_report().unwrap();
        assert_eq!(report.packet.len(), MAX_QUOTE);
        assert_eq!(&report.packet[..], &long[..MAX_QUOTE]);
    }

    #[test]
    fn no_reports_about_multicast_and_the_queue_is_bounded() {
        let mut r = Ipv6Reassembler::with_max_reports(ReassemblyConfig::default(), 2);
        let mut to_group = piece(1, 0, &[1; 12], true);
        to_group[24] = 0xff;
        assert_eq!(r.push(&to_group, 0), Ipv6Pushed::ParameterProblem { code: 0, pointer: 4 });
        let mut from_nobody = piece(1, 0, &[1; 12], true);
        from_nobody[8..24].fill(0);
        r.push(&from_nobody, 0);
        assert_eq!(r.pending_reports(), 0);
        for id in 0..3 {
            r.push(&piece(id, 0, &[1; 12], true), 0);
        }
        let s = r.stats();
        assert_eq!((r.pending_reports(), s.reports, s.dropped_reports), (2, 2, 1));
    }

    #[test]
    fn malformed_packets_are_counted() {
        let mut r = Ipv6Reassembler::default();
        assert_eq!(r.push(&[0x60, 0, 0], 0), Ipv6Pushed::Dropped);
        let mut bad = piece(1, 0, &[1; 8], true);
        bad[40] = next_header::ROUTING; // the fixed header names a fragment header; lie about it
        bad[6] = next_header::DESTINATION_OPTIONS;
        bad[41] = 200;
        assert_eq!(r.push(&bad, 0), Ipv6Pushed::Dropped);
        assert_eq!(r.stats().common.dropped_malformed, 2);
    }

    #[test]
    fn header_bytes_count_against_the_memory_cap() {
        // Each first fragment holds 40 + 1016 + 8 header bytes and 8 data bytes.
        let dest = [(next_header::DESTINATION_OPTIONS, options(127))];
        let mut r = Ipv6Reassembler::new(ReassemblyConfig { max_bytes: 4096, ..Default::default() });
        for id in 0..10 {
            assert_eq!(r.push(&piece_with(&dest, 59, id, 0, &[1; 8], true), 0), Ipv6Pushed::Pending);
            assert!(r.stats().common.buffered_bytes <= 4096);
        }
        assert_eq!(r.stats().common.pending_datagrams, 3);
        assert_eq!(r.stats().common.dropped_memory, 7);
    }

    /// Fisher-Yates with a tiny LCG so the order is a function of `seed`.
    fn shuffle<T>(items: &mut [T], seed: u64) {
        let mut state = seed;
        for i in (1..items.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            items.swap(i, (state >> 33) as usize % (i + 1));
        }
    }

    proptest! {
        #[test]
        fn any_order_reassembles(len in 1usize..30_000, mtu in 56usize..3000, dest in 0usize..3, seed: u64, dups in 0usize..4) {
            let headers: Vec<_> = (0..dest.min(1)).map(|_| (next_header::DESTINATION_OPTIONS, options(dest))).collect();
            let original = packet(&headers, next_header::UDP, len, 9);
            let Ok(mut pieces) = fragment(&original, mtu, seed as u32) else { return Ok(()) };
            prop_assume!(pieces.len() > 1 && pieces.len() <= 300);
            for i in 0..dups {
                let again = pieces[(seed as usize + i) % pieces.len()].clone();
                pieces.push(again);
            }
            shuffle(&mut pieces, seed);
            let mut r = big();
            let mut completed = Vec::new();
            for p in &pieces {
                if let Ipv6Pushed::Complete(whole) = r.push(p, 0) {
                    completed.push(whole);
                }
            }
            prop_assert!(!completed.is_empty());
            for whole in completed {
                prop_assert_eq!(&whole, &original);
            }
        }

        #[test]
        fn any_overlap_drops(a_off in 8usize..64, a_len in 1usize..8, b_len in 1usize..8, shift in 0usize..14, b_first: bool) {
            let shift = shift % (a_len + b_len - 1);
            let b_off = a_off + a_len - 1 - shift;
            let (a_off, a_len, b_off, b_len) = (a_off * 8, a_len * 8, b_off * 8, b_len * 8);
            let a = piece(3, a_off, &vec![0xaa; a_len], true);
            let b = piece(3, b_off, &vec![0xbb; b_len], true);
            let mut r = big();
            let (one, two) = if b_first { (&b, &a) } else { (&a, &b) };
            prop_assert_eq!(r.push(one, 0), Ipv6Pushed::Pending);
            prop_assert_eq!(r.push(two, 0), Ipv6Pushed::Dropped);
            prop_assert_eq!(r.stats().common.dropped_overlap, 1);
            prop_assert_eq!(r.stats().common.pending_datagrams, 0);
            prop_assert_eq!(r.push(one, 0), Ipv6Pushed::Dropped);
            prop_assert_eq!(r.stats().dropped_discarded, 1);
        }

        #[test]
        fn overlap_anywhere_in_a_real_datagram_drops_it(len in 2000usize..8000, seed: u64, at in 0usize..100, cut in 1usize..64) {
            let original = packet(&[], next_header::UDP, len, 1);
            let pieces = fragment(&original, 1280, 77).unwrap();
            // An extra fragment overlapping the data of one of them.
            let victim = at % pieces.len();
            let (p, f, data_at) = {
                let p = Ipv6Packet::parse(&pieces[victim]).unwrap();
                let ext = p.extensions().unwrap();
                (p.as_bytes().to_vec(), ext.fragment.unwrap(), ext.payload_offset)
            };
            let data_len = p.len() - data_at;
            let start = (cut * 8) % data_len.max(8) / 8 * 8;
            let end = (start + 16).min(data_len);
            let data: Vec<u8> = p[data_at + start..data_at + end].iter().map(|b| !b).collect();
            let more = f.more_fragments || end < data_len;
            let data = if more { data[..data.len() / 8 * 8].to_vec() } else { data };
            prop_assume!(!data.is_empty());
            // Shuffled, with the last to arrive not the victim, and the extra one anywhere before
            // that last one: whichever of the victim and the extra comes second finds the other
            // there, and the datagram cannot complete before (the extra fills no gap of its own).
            let mut order: Vec<usize> = (0..pieces.len()).collect();
            shuffle(&mut order, seed);
            if order.last() == Some(&victim) {
                let last = order.len() - 1;
                order.swap(0, last);
            }
            let mut pieces: Vec<Vec<u8>> = order.iter().map(|&i| pieces[i].clone()).collect();
            let extra = piece_with(&[], next_header::UDP, 77, f.offset + start, &data, more);
            pieces.insert(at % pieces.len(), extra);
            let mut r = big();
            prop_assert_eq!(reassemble(&mut r, &pieces), None);
            prop_assert_eq!(r.stats().common.dropped_overlap, 1);
        }

        #[test]
        fn flood_never_exceeds_the_cap(ops in proptest::collection::vec((any::<u8>(), 0usize..64, 1usize..200, any::<bool>(), 0u64..500, 0usize..4), 1..1500)) {
            let mut r = Ipv6Reassembler::new(ReassemblyConfig { max_bytes: 4096, max_fragments: 16, timeout_ms: 1000 });
            let mut now = 0;
            for (id, off, len, more, dt, dest) in ops {
                now += dt;
                let len = if more { (len / 8 + 1) * 8 } else { len };
                let headers: Vec<_> = (0..dest.min(1)).map(|_| (next_header::DESTINATION_OPTIONS, options(dest * 20))).collect();
                r.push(&piece_with(&headers, 59, u32::from(id % 64), off * 8, &vec![id; len], more), now);
                prop_assert!(r.stats().common.buffered_bytes <= 4096);
                prop_assert!(r.pending_reports() <= DEFAULT_MAX_REPORTS);
            }
        }

        #[test]
        fn atomic_fragments_pass_through(data in proptest::collection::vec(any::<u8>(), 0..300), id: u32) {
            let mut r = Ipv6Reassembler::default();
            let atomic = piece_with(&[], next_header::UDP, id, 0, &data, false);
            prop_assert_eq!(r.push(&atomic, 0), Ipv6Pushed::Atomic);
            prop_assert_eq!(r.stats().common.buffered_bytes, 0);
            prop_assert_eq!(r.stats().common.fragments, 0);
        }

        #[test]
        fn round_trip_at_random_mtus(len in 0usize..65_000, mtu in 1280usize..9000, id: u32, upper in prop_oneof![Just(6u8), Just(17u8), Just(58u8)]) {
            let original = packet(&[(next_header::ROUTING, options(1))], upper, len.max(20), 3);
            let pieces = fragment(&original, mtu, id).unwrap();
            let mut r = big();
            if pieces.len() == 1 {
                prop_assert_eq!(r.push(&pieces[0], 0), Ipv6Pushed::NotFragment);
            } else {
                prop_assert_eq!(reassemble(&mut r, &pieces), Some(original));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), fix: bool) {
            let mut bytes = bytes;
            if fix && bytes.len() >= 48 {
                bytes[0] = 0x60;
                bytes[6] = next_header::FRAGMENT;
                let len = (bytes.len() - 40) as u16;
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let mut r = Ipv6Reassembler::default();
            let _ = r.push(&bytes, 0);
            r.expire(1_000_000);
        }
    }

    #[test]
    fn addresses_are_part_of_the_key() {
        let mut r = Ipv6Reassembler::default();
        r.push(&piece(1, 0, &[1; 8], true), 0);
        let mut other = piece(1, 8, &[1; 8], false);
        other[39] ^= 1; // another destination
        assert_eq!(r.push(&other, 0), Ipv6Pushed::Pending);
        assert_eq!(r.stats().common.pending_datagrams, 2);
        assert_eq!((SRC[0], DST[0]), (0x20, 0x20));
    }
}
