//! The IPv4 reassembly cache (RFC 791 §3.2, RFC 815), bounded as in MirageOS 3.5.
//!
//! Datagrams being reassembled are keyed by (source, destination, protocol, identification).
//! The cache is sans-IO: every call takes the current time in milliseconds, so tests drive it
//! with a virtual clock.
//!
//! Limits, all in [`ReassemblyConfig`]:
//! - `max_bytes` (default 256 KiB): fragment payload held across all datagrams. When a new
//!   fragment would exceed it, the least recently used *other* datagrams are evicted; if that
//!   is not enough the datagram the fragment belongs to is dropped.
//! - `max_fragments` (default [`DEFAULT_MAX_FRAGMENTS`], 128) fragments per datagram; one more
//!   drops the datagram, and its key is remembered until its timeout (charged 64 bytes against
//!   `max_bytes`) so that its later fragments are dropped rather than starting it again. 128
//!   admits the largest datagram (65,535 bytes) at any MTU from 576 up, even with 40 bytes of IP
//!   options (576 − 60 leaves 512 payload bytes per fragment: 128 fragments), as Linux accepts
//!   any datagram up to 64 KiB; a 64 KiB datagram at MTU 1500 is 45 fragments. (MirageOS 3.5
//!   and earlier Morgana allowed 16, which drops UDP datagrams past 23,680 bytes at MTU 1500.)
//!   The limit bounds the work per fragment (a sorted insert among at most 128), not memory:
//!   `max_bytes` does that.
//! - `timeout_ms` (default 10 s) after the *first* fragment of a datagram arrived, an incomplete
//!   datagram is dropped, whether or not more of its fragments arrive ([`Reassembler::expire`]
//!   runs at the start of every [`Reassembler::push`], and can be called from a timer).
//!
//! Bookkeeping per datagram is a small fixed overhead (about 150 bytes plus 32 per fragment,
//! and at most two 24-byte entries of the expiry queue, plus 64 in all) on top of the payload
//! bytes counted against `max_bytes`. Since non-final fragments carry at least 8 bytes, the
//! number of fragments and of datagrams held is at most `max_bytes / 8` (plus one final fragment
//! per datagram), whatever `max_fragments` is: with the default 256 KiB the worst case, a flood
//! of datagrams of one 8-byte fragment each, holds 32,768 of them in about 10 MiB of bookkeeping,
//! while full-size fragments cost little beyond their payload (256 KiB holds four 64 KiB
//! datagrams). Outside `max_bytes`: one completed datagram waiting for
//! [`Reassembler::take_ready`], and up to 64 spare fragment buffers of at most 2 KiB each,
//! reused so that a fragment costs no allocation.
//!
//! Defences: any overlap between two fragments drops the whole datagram (as RFC 5722 requires
//! for IPv6, against overlap attacks); an exact duplicate (same offset, same bytes) is ignored;
//! a non-final fragment whose payload is not a multiple of 8 bytes is dropped; conflicting
//! final fragments, data past the final fragment and datagrams over 65,535 bytes are dropped.
//! Every drop has its counter in [`ReassemblyStats`].
//!
//! The cache itself (fragment lists, LRU, expiry queue, memory accounting) is family
//! independent and shared with the IPv6 reassembler in [`ipv6`]; this module holds the IPv4
//! key, header checks and header rewriting.

use crate::checksum;
use crate::wire::ipv4::{Ipv4Error, Ipv4Packet, MAX_PACKET_LEN, MIN_HEADER_LEN};
use cache::{Cache, Family, Inserted, Piece};

mod cache;
pub mod ipv6;

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Fragment payload bytes held across all datagrams.
    pub max_bytes: usize,
    /// Fragments held per datagram (default [`DEFAULT_MAX_FRAGMENTS`]: 65,535-byte datagrams at
    /// any MTU from 576 up). A datagram with more is dropped, and its later fragments too until
    /// its timeout.
    pub max_fragments: usize,
    /// Milliseconds after its first fragment that an incomplete datagram is dropped.
    pub timeout_ms: u64,
}

/// The default [`ReassemblyConfig::max_bytes`]: 256 KiB of fragment payload (as MirageOS 3.5).
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;
/// The default [`ReassemblyConfig::max_fragments`]: enough for a 65,535-byte datagram at MTU 576
/// with the longest IPv4 header (512 payload bytes per fragment), or an IPv6 packet of 65,535
/// bytes of payload at its minimum MTU of 1280 (54 fragments).
pub const DEFAULT_MAX_FRAGMENTS: usize = 128;
/// The default [`ReassemblyConfig::timeout_ms`]: 10 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Counters of a [`Reassembler`]. `dropped_*` count datagrams (or single fragments where
/// noted); `buffered_bytes` and `pending_datagrams` are the current occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Fragments accepted into the cache.
    pub fragments: u64,
    /// Datagrams completed and returned.
    pub reassembled: u64,
    /// Exact duplicate fragments ignored.
    pub duplicates: u64,
    /// Datagrams dropped because two fragments overlapped.
    pub dropped_overlap: u64,
    /// Incomplete datagrams dropped at their timeout.
    pub dropped_timeout: u64,
    /// Datagrams evicted (least recently used first) to stay within `max_bytes`.
    pub dropped_memory: u64,
    /// Datagrams dropped for having more than `max_fragments` fragments.
    pub dropped_too_many_fragments: u64,
    /// Datagrams dropped because they would exceed 65,535 bytes.
    pub dropped_too_big: u64,
    /// Single fragments dropped: non-final with a payload not a multiple of 8 bytes, or empty.
    pub dropped_bad_length: u64,
    /// Datagrams dropped for conflicting final fragments or data past the final fragment.
    pub dropped_inconsistent: u64,
    /// Packets dropped because they were not valid IPv4.
    pub dropped_malformed: u64,
    /// Fragments dropped because their datagram had already been dropped (too many fragments;
    /// for IPv6 also an overlap) and is remembered until its timeout.
    pub dropped_discarded: u64,
    /// Fragment payload bytes held now.
    pub buffered_bytes: u64,
    /// Datagrams being reassembled now.
    pub pending_datagrams: u64,
}

/// What [`Reassembler::push`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The packet is not a fragment; the caller uses it as it is.
    NotFragment,
    /// The fragment completed its datagram: the whole packet, header from the first fragment,
    /// More Fragments clear, offset 0, total length and checksum recomputed.
    Complete(Vec<u8>),
    /// Held until more fragments arrive (or ignored as a duplicate).
    Pending,
    /// The fragment, and possibly its datagram, was dropped; the reason is counted in the stats.
    Dropped,
}

/// What [`Reassembler::push_ready`] did with a packet: as [`Pushed`], except that a completed
/// datagram is not copied out but held until [`Reassembler::take_ready`] writes it into the
/// caller's buffer (so a binding can hand out a buffer it allocated itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The packet is not a fragment; the caller uses it as it is.
    NotFragment,
    /// The fragment completed its datagram, which is held; the value is its total length.
    Ready(usize),
    /// Held until more fragments arrive (or ignored as a duplicate).
    Pending,
    /// The fragment, and possibly its datagram, was dropped; the reason is counted in the stats.
    Dropped,
    /// The packet is not valid IPv4 (counted in `dropped_malformed`) for this reason.
    Malformed(Ipv4Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    identification: u16,
}

const IPV4: Family =
    Family { max_total: MAX_PACKET_LEN, strip: 0, charge_header: false, discard_after_overlap: false };

/// The bounded reassembly cache. See the module documentation for its limits and defences.
#[derive(Debug)]
pub struct Reassembler {
    core: Cache<DatagramKey>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

impl Reassembler {
    /// An empty cache with the given limits.
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler { core: Cache::new(config, IPV4) }
    }

    /// The limits this cache was created with.
    pub fn config(&self) -> ReassemblyConfig {
        self.core.config()
    }

    /// Counters and current occupancy.
    pub fn stats(&self) -> ReassemblyStats {
        self.core.stats()
    }

    /// Drops every incomplete datagram whose first fragment arrived `timeout_ms` or more before
    /// `now_ms`. Returns how many were dropped.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        self.core.expire(now_ms, |_, _| {})
    }

    /// Takes one IPv4 packet (checksum verified here) at time `now_ms`.
    pub fn push(&mut self, packet: &[u8], now_ms: u64) -> Pushed {
        match self.push_ready(packet, now_ms) {
            Outcome::NotFragment => Pushed::NotFragment,
            Outcome::Pending => Pushed::Pending,
            Outcome::Dropped | Outcome::Malformed(_) => Pushed::Dropped,
            Outcome::Ready(len) => {
                let mut whole = vec![0; len];
                self.take_ready(&mut whole);
                Pushed::Complete(whole)
            }
        }
    }

    /// As [`push`](Self::push), but a datagram that completes is held rather than copied into a
    /// new `Vec`: [`take_ready`](Self::take_ready) writes it into a buffer of the caller's. The
    /// held datagram (at most 65,535 bytes, not counted in `max_bytes`) is discarded by the next
    /// push if it was not taken.
    pub fn push_ready(&mut self, packet: &[u8], now_ms: u64) -> Outcome {
        self.core.discard_untaken();
        self.expire(now_ms);
        let packet = match Ipv4Packet::parse(packet) {
            Ok(p) => p,
            Err(error) => {
                self.core.stats.dropped_malformed += 1;
                return Outcome::Malformed(error);
            }
        };
        if !packet.is_fragment() {
            return Outcome::NotFragment;
        }
        let offset = packet.fragment_offset();
        let payload = packet.payload();
        let last = !packet.more_fragments();
        if !last && (payload.is_empty() || !payload.len().is_multiple_of(8)) {
            self.core.stats.dropped_bad_length += 1;
            return Outcome::Dropped;
        }
        let key = DatagramKey {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            identification: packet.identification(),
        };
        let piece = Piece { header: packet.header(), floor: MIN_HEADER_LEN, offset, payload, last };
        match self.core.insert(key, now_ms, piece) {
            Inserted::Pending => Outcome::Pending,
            Inserted::Ready(len) => Outcome::Ready(len),
            Inserted::Dropped(_) | Inserted::Discarded => Outcome::Dropped,
        }
    }

    /// Writes the datagram completed by the last [`push_ready`](Self::push_ready) into the start
    /// of `out` and returns its length: the header from the offset-0 fragment with More
    /// Fragments and the offset cleared, total length and checksum recomputed, then the payload.
    /// `None` when no datagram is held or `out` is too short (it then stays held).
    pub fn take_ready(&mut self, out: &mut [u8]) -> Option<usize> {
        let header_len = self.core.ready_header()?.len();
        let total = self.core.take_ready(out)?;
        let out = &mut out[..total];
        out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        // Keep Don't Fragment and the reserved bit; clear More Fragments and the offset.
        out[6] &= 0xc0;
        out[7] = 0;
        out[10..12].fill(0);
        let sum = checksum::checksum(&out[..header_len], 0);
        out[10..12].copy_from_slice(&sum.to_be_bytes());
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::fragment;
    use crate::wire::ipv4::{protocol, Ipv4Header};
    use proptest::prelude::*;

    fn datagram(id: u16, payload_len: usize, options: &[u8]) -> Vec<u8> {
        let header = Ipv4Header {
            src: [10, 1, 0, 1],
            dst: [10, 1, 0, 2],
            protocol: protocol::UDP,
            ttl: 64,
            tos: 0,
            identification: id,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            options,
            payload_len,
        };
        let mut out = vec![0; header.header_len() + payload_len];
        let at = header.emit(&mut out).unwrap();
        for (i, b) in out[at..].iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ id as u8;
        }
        out
    }

    /// A fragment made by hand: payload `data` at `offset`, with or without More Fragments.
    fn piece(id: u16, offset: usize, data: &[u8], more: bool) -> Vec<u8> {
        let header = Ipv4Header {
            src: [10, 1, 0, 1],
            dst: [10, 1, 0, 2],
            protocol: protocol::UDP,
            ttl: 64,
            tos: 0,
            identification: id,
            dont_fragment: false,
            more_fragments: more,
            fragment_offset: offset,
            options: &[],
            payload_len: data.len(),
        };
        let mut out = vec![0; 20 + data.len()];
        header.emit(&mut out).unwrap();
        out[20..].copy_from_slice(data);
        out
    }

    fn big() -> Reassembler {
        Reassembler::new(ReassemblyConfig { max_fragments: 64, ..Default::default() })
    }

    #[test]
    fn in_order_and_reversed() {
        let original = datagram(1, 8000, &[0x94, 4, 0, 0]);
        let pieces = fragment(&original, 1500).unwrap();
        for order in [false, true] {
            let mut r = big();
            let mut iter: Vec<_> = pieces.iter().collect();
            if order {
                iter.reverse();
            }
            let (last, rest) = iter.split_last().unwrap();
            for p in rest {
                assert_eq!(r.push(p, 0), Pushed::Pending);
            }
            assert_eq!(r.push(last, 0), Pushed::Complete(original.clone()));
            assert_eq!(r.stats().buffered_bytes, 0);
            assert_eq!(r.stats().pending_datagrams, 0);
        }
    }

    #[test]
    fn not_a_fragment_and_malformed() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(&datagram(1, 10, &[]), 0), Pushed::NotFragment);
        assert_eq!(r.push(&[0x45, 0, 0], 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_malformed, 1);
    }

    #[test]
    fn exact_duplicates_are_ignored() {
        let mut r = Reassembler::default();
        let a = piece(5, 0, &[1; 16], true);
        let b = piece(5, 16, &[2; 5], false);
        assert_eq!(r.push(&a, 0), Pushed::Pending);
        assert_eq!(r.push(&a, 0), Pushed::Pending);
        assert_eq!(r.stats().duplicates, 1);
        assert!(matches!(r.push(&b, 0), Pushed::Complete(_)));
    }

    #[test]
    fn overlap_drops_the_datagram() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(&piece(5, 0, &[1; 16], true), 0), Pushed::Pending);
        assert_eq!(r.push(&piece(5, 8, &[1; 16], true), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_overlap, 1);
        assert_eq!(r.stats().pending_datagrams, 0);
        // Same offset, different bytes: also an overlap, not a duplicate.
        r.push(&piece(6, 0, &[1; 16], true), 0);
        assert_eq!(r.push(&piece(6, 0, &[9; 16], true), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_overlap, 2);
    }

    #[test]
    fn bad_lengths_and_inconsistent_finals() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(&piece(7, 0, &[1; 12], true), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_bad_length, 1);
        r.push(&piece(8, 16, &[1; 8], false), 0);
        assert_eq!(r.push(&piece(8, 32, &[1; 8], false), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_inconsistent, 1);
        r.push(&piece(9, 16, &[1; 8], false), 0);
        assert_eq!(r.push(&piece(9, 24, &[1; 8], true), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_inconsistent, 2);
        r.push(&piece(10, 32, &[1; 8], true), 0);
        assert_eq!(r.push(&piece(10, 8, &[1; 8], false), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_inconsistent, 3);
    }

    #[test]
    fn oversized_datagram() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(&piece(11, 65_512, &[1; 8], false), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_too_big, 1);
    }

    /// A cache that admits 16 fragments per datagram (the limit's tests use small numbers).
    fn sixteen() -> Reassembler {
        Reassembler::new(ReassemblyConfig { max_fragments: 16, ..Default::default() })
    }

    #[test]
    fn default_admits_a_64_kib_datagram_at_mtu_576_with_options() {
        // 40 bytes of options copied into every fragment (Router Alert has the copy flag) leave
        // 516 bytes per fragment at MTU 576, 512 of them usable: 128 fragments.
        let options = [0x94, 4, 0, 0].repeat(10);
        let original = datagram(31, 65_535 - 60, &options);
        let pieces = fragment(&original, 576).unwrap();
        assert_eq!(pieces.len(), 128);
        let mut r = Reassembler::default();
        let mut completed = None;
        for p in pieces.iter().rev() {
            if let Pushed::Complete(whole) = r.push(p, 0) {
                completed = Some(whole);
            }
        }
        assert_eq!(completed, Some(original));
        assert_eq!(r.stats().dropped_too_many_fragments, 0);
    }

    #[test]
    fn too_many_fragments() {
        let mut r = sixteen();
        for i in 0..16 {
            assert_eq!(r.push(&piece(12, i * 8, &[1; 8], true), 0), Pushed::Pending);
        }
        assert_eq!(r.push(&piece(12, 16 * 8, &[1; 8], false), 0), Pushed::Dropped);
        assert_eq!(r.stats().dropped_too_many_fragments, 1);
    }

    #[test]
    fn late_fragments_of_a_datagram_with_too_many_do_not_reopen_it() {
        let mut r = sixteen();
        for i in 0..16 {
            r.push(&piece(12, i * 8, &[1; 8], true), 0);
        }
        assert_eq!(r.push(&piece(12, 16 * 8, &[1; 8], true), 1), Pushed::Dropped);
        // The rest of the datagram (say 30 more fragments) is dropped on arrival, holding
        // nothing but the remembered key.
        for i in 17..47 {
            assert_eq!(r.push(&piece(12, i * 8, &[1; 8], i < 46), 2), Pushed::Dropped);
        }
        let s = r.stats();
        assert_eq!(s.dropped_too_many_fragments, 1, "dropped once, not again and again");
        assert_eq!(s.dropped_discarded, 30);
        assert_eq!((s.fragments, s.pending_datagrams), (16, 0));
        assert!(s.buffered_bytes <= 64, "{}", s.buffered_bytes);
        // Other datagrams are unaffected.
        r.push(&piece(40, 0, &[1; 8], true), 3);
        assert!(matches!(r.push(&piece(40, 8, &[2; 8], false), 3), Pushed::Complete(_)));
        // After the timeout the key is forgotten: the identification may be reused.
        r.expire(10_000);
        assert_eq!(r.stats().dropped_timeout, 0, "a remembered key is no datagram timing out");
        assert_eq!(r.push(&piece(12, 0, &[1; 8], true), 10_001), Pushed::Pending);
        assert!(matches!(r.push(&piece(12, 8, &[1; 8], false), 10_001), Pushed::Complete(_)));
    }

    #[test]
    fn timeout_counts_from_the_first_fragment() {
        let mut r = Reassembler::default();
        r.push(&piece(13, 0, &[1; 8], true), 0);
        r.push(&piece(13, 8, &[1; 8], true), 9_000);
        assert_eq!(r.expire(9_999), 0);
        assert_eq!(r.expire(10_000), 1);
        assert_eq!(r.stats().dropped_timeout, 1);
        // The last fragment now starts a new datagram instead of completing the old one.
        assert_eq!(r.push(&piece(13, 16, &[1; 8], false), 10_001), Pushed::Pending);
    }

    #[test]
    fn lru_eviction_under_memory_pressure() {
        let mut r = Reassembler::new(ReassemblyConfig { max_bytes: 64, ..Default::default() });
        r.push(&piece(1, 0, &[1; 32], true), 0);
        r.push(&piece(2, 0, &[1; 32], true), 1);
        r.push(&piece(1, 32, &[1; 8], true), 2); // 1 is now more recent than 2: evicts 2
        assert_eq!(r.stats().dropped_memory, 1);
        assert!(matches!(r.push(&piece(1, 40, &[1; 8], false), 3), Pushed::Complete(_)));
        // A fragment that cannot fit even alone drops its datagram.
        assert_eq!(r.push(&piece(3, 0, &[1; 72], true), 4), Pushed::Dropped);
        assert_eq!(r.stats().dropped_memory, 2);
    }

    #[test]
    fn ready_datagram_is_written_into_the_callers_buffer() {
        let original = datagram(21, 3000, &[0x94, 4, 0, 0]);
        let pieces = fragment(&original, 1000).unwrap();
        let mut r = big();
        let (last, rest) = pieces.split_last().unwrap();
        for p in rest {
            assert_eq!(r.push_ready(p, 0), Outcome::Pending);
        }
        assert_eq!(r.push_ready(last, 0), Outcome::Ready(original.len()));
        assert_eq!(r.stats().buffered_bytes, 0);
        let mut short = vec![0; original.len() - 1];
        assert_eq!(r.take_ready(&mut short), None, "too short: nothing written, still held");
        let mut out = vec![0xee; original.len() + 5];
        assert_eq!(r.take_ready(&mut out), Some(original.len()));
        assert_eq!(&out[..original.len()], &original[..]);
        assert_eq!(&out[original.len()..], &[0xee; 5]);
        assert_eq!(r.take_ready(&mut out), None, "taken once");

        // An untaken datagram is discarded by the next push; fragment buffers are reused and
        // reused buffers carry no stale bytes.
        for p in &pieces {
            r.push_ready(p, 0);
        }
        assert_eq!(r.push(&datagram(22, 10, &[]), 0), Pushed::NotFragment);
        assert_eq!(r.take_ready(&mut out), None);
        let other = datagram(23, 2000, &[]);
        let mut completed = None;
        for p in fragment(&other, 600).unwrap().iter().rev() {
            if let Pushed::Complete(whole) = r.push(p, 0) {
                completed = Some(whole);
            }
        }
        assert_eq!(completed, Some(other));
        assert!(!r.core.spare.is_empty() && r.core.spare.len() <= cache::SPARE_BUFFERS);
    }

    #[test]
    fn expiry_queue_stays_proportional_to_pending_datagrams() {
        // Regression: every datagram used to leave an entry in the expiry queue until its
        // deadline, so with a clock that does not move (or under a flood within one timeout)
        // the queue grew by one entry per datagram, past every configured limit.
        let mut r = Reassembler::default();
        for id in 0..20_000u32 {
            let id = id as u16;
            r.push(&piece(id, 0, &[1; 8], true), 0);
            assert!(matches!(r.push(&piece(id, 8, &[2; 3], false), 0), Pushed::Complete(_)));
            // Every other datagram is left incomplete, then evicted by later ones.
            r.push(&piece(id.wrapping_add(30_000), 0, &[3; 64], true), 0);
        }
        let live = r.stats().pending_datagrams as usize;
        assert!(
            r.core.deadlines.len() <= 2 * live + 64,
            "{} queued for {live} datagrams",
            r.core.deadlines.len()
        );
        // Expiry still finds every live datagram.
        assert_eq!(r.expire(10_000), live);
        assert_eq!(r.stats().buffered_bytes, 0);
    }

    proptest! {
        /// A datagram with more fragments than the limit, in any order with duplicates, is
        /// dropped once; everything after that is dropped on arrival until its timeout.
        #[test]
        fn too_many_fragments_drop_once(extra in 1usize..40, seed: u64) {
            let n = 16 + extra;
            let original = datagram(77, n * 8, &[]);
            let mut pieces = fragment(&original, 28).unwrap();
            prop_assert_eq!(pieces.len(), n);
            let mut state = seed;
            for i in (1..pieces.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                pieces.swap(i, (state >> 33) as usize % (i + 1));
            }
            pieces.push(pieces[0].clone());
            let mut r = sixteen();
            for p in &pieces {
                prop_assert!(!matches!(r.push(p, 0), Pushed::Complete(_)));
            }
            let s = r.stats();
            prop_assert_eq!(s.dropped_too_many_fragments, 1);
            prop_assert_eq!(s.fragments, 16);
            prop_assert_eq!(s.dropped_discarded as usize, pieces.len() - 17);
            prop_assert_eq!(s.pending_datagrams, 0);
        }

        #[test]
        fn any_order_reassembles(len in 1usize..20_000, mtu in 68usize..3000, seed: u64, dups in 0usize..4) {
            let original = datagram(99, len, &[]);
            let mut pieces = fragment(&original, mtu).unwrap();
            prop_assume!(pieces.len() > 1 && pieces.len() <= 300);
            for i in 0..dups {
                let again = pieces[(seed as usize + i) % pieces.len()].clone();
                pieces.push(again);
            }
            // Fisher-Yates with a tiny LCG so the order is a function of `seed`.
            let mut state = seed;
            for i in (1..pieces.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                pieces.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut r = Reassembler::new(ReassemblyConfig { max_fragments: 300, ..Default::default() });
            let mut completed = Vec::new();
            for p in &pieces {
                if let Pushed::Complete(whole) = r.push(p, 0) {
                    completed.push(whole);
                }
            }
            // Duplicates that arrive after completion may start (and finish) the datagram again.
            prop_assert!(!completed.is_empty());
            for whole in completed {
                prop_assert_eq!(&whole, &original);
            }
        }

        #[test]
        fn overlapping_sets_are_dropped(a_off in 8usize..64, a_len in 1usize..8, b_len in 1usize..8, shift in 0usize..14) {
            // b starts anywhere from "its last unit overlaps a's first" to "its first unit
            // overlaps a's last", in 8-byte units.
            let shift = shift % (a_len + b_len - 1);
            let b_off = a_off + a_len - 1 - shift;
            let (a_off, a_len, b_off, b_len) = (a_off * 8, a_len * 8, b_off * 8, b_len * 8);
            prop_assert!(a_off < b_off + b_len && b_off < a_off + a_len);
            let mut r = Reassembler::new(ReassemblyConfig { max_fragments: 64, ..Default::default() });
            r.push(&piece(3, a_off, &vec![0xaa; a_len], true), 0);
            let second = r.push(&piece(3, b_off, &vec![0xbb; b_len], true), 0);
            prop_assert_eq!(second, Pushed::Dropped);
            prop_assert_eq!(r.stats().dropped_overlap, 1);
            prop_assert_eq!(r.stats().pending_datagrams, 0);
        }

        #[test]
        fn flood_never_exceeds_the_cap(ops in proptest::collection::vec((any::<u16>(), 0usize..64, 1usize..200, any::<bool>(), 0u64..500), 1..2000)) {
            let mut r = Reassembler::new(ReassemblyConfig { max_bytes: 4096, max_fragments: 16, timeout_ms: 1000 });
            let mut now = 0;
            for (id, off, len, more, dt) in ops {
                now += dt;
                let len = if more { (len / 8 + 1) * 8 } else { len };
                r.push(&piece(id % 64, off * 8, &vec![id as u8; len], more), now);
                let stats = r.stats();
                prop_assert!(stats.buffered_bytes <= 4096);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = Reassembler::default();
            let _ = r.push(&bytes, 0);
        }
    }
}
