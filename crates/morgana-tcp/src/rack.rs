//! RACK loss detection (RFC 8985 §6): time-ordered instead of counting duplicate ACKs. Every
//! segment in flight remembers when it was (last) sent; once the peer delivers (cumulatively
//! ACKs or SACKs) a segment, every segment sent more than a reordering window before it, and
//! not delivered yet, is lost — at once, or when a timer says so (RACK's reordering timer).
//! This repairs what DupThresh cannot: losses at the tail of a flight, where fewer than three
//! segments follow the hole (the tail-loss probe's SACK is enough), and a small flight whose
//! first segment is lost.
//!
//! It runs only with SACK (RFC 8985 §3: RACK needs it). The connection ([`crate::conn`]) reads
//! the result as a sequence number, [`Rack::lost_edge`]: the unSACKed bytes of original
//! transmissions below it are lost, which feeds RFC 6675's IsLost, pipe and NextSeg there.
//! Retransmissions update the send times (a retransmission sent later counts as newer), and
//! the delivery of a retransmission only counts when its round trip is plausible (§6.2 step 2).
//! Not implemented: D-SACK-driven adaptation of the reordering window (the window grows to
//! SRTT / 4 once reordering was seen instead).
//!
//! Memory: one 16-byte record per segment in flight, at most [`MAX_RECORDS`] (beyond, new data
//! joins the last record, which only makes detection later, never wrong); the storage shrinks
//! when the flight drains.

use crate::seq;
use std::collections::VecDeque;

/// Most send records per connection.
pub const MAX_RECORDS: usize = 2048;

/// One transmitted segment (its start is the previous record's end, or [`Rack`]'s start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// Sequence number after its last byte (FIN included).
    end: u32,
    /// When it was last sent (ms).
    sent: u64,
    /// Sent more than once.
    retransmitted: bool,
    /// Fully covered by a SACK block.
    sacked: bool,
}

/// The RACK state of one connection.
#[derive(Debug, Clone, Default)]
pub struct Rack {
    records: VecDeque<Record>,
    /// Sequence number where the first record starts (SND.UNA once anything was sent).
    start: u32,
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent segment delivered so far.
    latest: Option<(u64, u32)>,
    /// RACK.rtt: the round trip of that segment (ms).
    rtt: u64,
    /// RACK.min_RTT (ms).
    min_rtt: Option<u64>,
    /// RACK.fack: the highest sequence number delivered.
    fack: u32,
    /// A segment was delivered below `fack` without being retransmitted: the path reorders.
    reordering_seen: bool,
    /// Original transmissions below this are lost (when above `start`).
    lost_edge: u32,
    /// The reordering timer (§6.3), when armed.
    timer: Option<u64>,
}

impl Rack {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn top(&self) -> u32 {
        self.records.back().map_or(self.start, |r| r.end)
    }

    /// The index of the record holding sequence number `s`, if any.
    fn find(&self, s: u32) -> usize {
        self.records.partition_point(|r| seq::le(r.end, s))
    }

    /// The start of record `i`.
    fn start_of(&self, i: usize) -> u32 {
        if i == 0 {
            self.start
        } else {
            self.records[i - 1].end
        }
    }

    /// Splits the record holding `at` so that a record ends there (no-op on a boundary).
    fn split(&mut self, at: u32) {
        let i = self.find(at);
        if i < self.records.len() && self.start_of(i) != at && self.records.len() < MAX_RECORDS {
            let mut head = self.records[i];
            head.end = at;
            self.records.insert(i, head);
        }
    }

    /// `[s, e)` went out at `now`: new data past the last record, or a retransmission.
    pub fn on_send(&mut self, s: u32, e: u32, now: u64) {
        if self.records.is_empty() {
            self.start = s;
            if self.latest.is_none() {
                // First data: the sequence markers start here (they stay within 2^31 of it).
                self.lost_edge = s;
                self.fack = s;
            }
        }
        let top = self.top();
        if seq::lt(s, top) {
            // A retransmission: mark the records it covers (split to its edges).
            let end = if seq::lt(e, top) { e } else { top };
            self.split(s);
            self.split(end);
            let mut i = self.find(s);
            while i < self.records.len() && seq::le(self.records[i].end, end) {
                let r = &mut self.records[i];
                r.sent = now;
                r.retransmitted = true;
                i += 1;
            }
        }
        if seq::gt(e, top) {
            let record = Record { end: e, sent: now, retransmitted: false, sacked: false };
            let full = self.records.len() >= MAX_RECORDS;
            match self.records.back_mut() {
                Some(last) if full => *last = record,
                _ => self.records.push_back(record),
            }
        }
    }

    /// RFC 8985 §6.2 steps 1–3 for a segment delivered at `now`.
    fn delivered(&mut self, r: Record, now: u64) {
        let rtt = now.saturating_sub(r.sent);
        // A retransmission acknowledged faster than any round trip: the ACK is for the original.
        if r.retransmitted && self.min_rtt.is_some_and(|m| rtt < m) {
            return;
        }
        if !r.retransmitted {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            if seq::lt(r.end, self.fack) {
                self.reordering_seen = true;
            }
        }
        if seq::gt(r.end, self.fack) {
            self.fack = r.end;
        }
        let newer = match self.latest {
            None => true,
            Some((t, end)) => r.sent > t || (r.sent == t && seq::gt(r.end, end)),
        };
        if newer {
            self.latest = Some((r.sent, r.end));
            self.rtt = rtt;
        }
    }

    /// The cumulative ACK moved to `una`.
    pub fn on_ack(&mut self, una: u32, now: u64) {
        while let Some(&r) = self.records.front() {
            if seq::gt(r.end, una) {
                break;
            }
            self.records.pop_front();
            if !r.sacked {
                self.delivered(r, now);
            }
        }
        if seq::gt(una, self.start) {
            self.start = una;
        }
        // Keep the markers at or above SND.UNA, so sequence comparisons never wrap.
        if seq::lt(self.lost_edge, self.start) {
            self.lost_edge = self.start;
        }
        if seq::lt(self.fack, self.start) {
            self.fack = self.start;
        }
        if self.records.is_empty() && self.records.capacity() > 64 {
            self.records = VecDeque::new();
        }
    }

    /// The peer SACKed `[l, r)` (clipped to the flight by the caller).
    pub fn on_sack(&mut self, l: u32, r: u32, now: u64) {
        let mut i = self.find(l);
        while i < self.records.len() {
            let rec = self.records[i];
            if seq::gt(rec.end, r) {
                break;
            }
            if !rec.sacked && seq::ge(self.start_of(i), l) {
                self.records[i].sacked = true;
                self.delivered(rec, now);
            }
            i += 1;
        }
    }

    /// RFC 8985 §6.2 step 5: marks what is lost by now, with reordering window `reo_wnd` (ms),
    /// and arms the timer for the first segment that will be. Returns whether the lost edge
    /// moved.
    pub fn detect(&mut self, now: u64, reo_wnd: u64) -> bool {
        self.timer = None;
        let Some((latest, latest_end)) = self.latest else { return false };
        let before = self.lost_edge;
        let mut at = self.start;
        for r in &self.records {
            let start = at;
            at = r.end;
            if r.sacked || r.retransmitted || seq::lt(start, self.lost_edge) {
                // Retransmissions: the connection watches them itself (conn::rxt_mark).
                continue;
            }
            // Original transmissions are in send order: the first one sent after the latest
            // delivered segment ends the scan.
            if r.sent > latest || (r.sent == latest && seq::ge(r.end, latest_end)) {
                break;
            }
            let deadline = r.sent + self.rtt + reo_wnd;
            if now >= deadline {
                self.lost_edge = r.end;
            } else {
                self.timer = Some(deadline);
                break;
            }
        }
        self.lost_edge != before && seq::gt(self.lost_edge, self.start)
    }

    /// The reordering window (RFC 8985 §6.2 step 4, without D-SACK adaptation): none while in
    /// recovery on a path never seen reordering, else a quarter of the minimum RTT (at least the
    /// 1 ms clock tick), at most SRTT.
    pub fn reo_wnd(&self, in_recovery: bool, srtt: Option<f64>) -> u64 {
        if !self.reordering_seen && in_recovery {
            return 0;
        }
        let quarter = self.min_rtt.map_or(1, |m| m.div_ceil(4).max(1));
        let srtt = srtt.map_or(quarter, |s| s.ceil() as u64);
        quarter.min(srtt.max(1))
    }

    /// Original transmissions below this sequence number, not SACKed, are lost.
    pub fn lost_edge(&self) -> u32 {
        if seq::gt(self.lost_edge, self.start) {
            self.lost_edge
        } else {
            self.start
        }
    }

    /// When the reordering timer fires, if armed.
    pub fn deadline(&self) -> Option<u64> {
        self.timer
    }

    /// A retransmission timeout: SACK information is gone (RFC 2018 §8), the connection sends
    /// everything again, and nothing is marked lost any more.
    pub fn on_rto(&mut self) {
        for r in &mut self.records {
            r.sacked = false;
        }
        self.lost_edge = self.start;
        self.timer = None;
    }

    /// Records held (for tests and bounds).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the path was seen reordering.
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u32 = 1000;

    /// Ten segments of 100 bytes sent at `t0 + i` (one per ms).
    fn flight(t0: u64) -> Rack {
        let mut r = Rack::new();
        for i in 0..10 {
            r.on_send(S + i * 100, S + (i + 1) * 100, t0 + u64::from(i));
        }
        r
    }

    #[test]
    fn a_sack_for_a_later_segment_marks_earlier_ones_lost_after_the_window() {
        let mut r = flight(0);
        // Segments 0–4 acknowledged at 20 ms; segment 9 (sent at 9 ms) SACKed at 29 ms.
        r.on_ack(S + 500, 20);
        r.on_sack(S + 900, S + 1000, 29);
        assert_eq!(r.len(), 5);
        // reo_wnd 2: segments 5–6 (sent ≤ 6 ms < 9 − 2) are lost; 7 at 7 + 20 + 2 = 29 too; 8
        // is sent 1 ms before 9, so it waits for its deadline 8 + 20 + 2 = 30.
        assert!(r.detect(29, 2));
        assert_eq!(r.lost_edge(), S + 800);
        assert_eq!(r.deadline(), Some(30));
        assert!(r.detect(30, 2));
        assert_eq!(r.lost_edge(), S + 900);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn retransmissions_are_newer_and_implausibly_fast_acks_do_not_count() {
        let mut r = flight(0);
        r.on_ack(S + 100, 20); // min_rtt 20
                               // Segment 9 retransmitted at 40 (a tail-loss probe), SACKed at 45: 5 ms is faster than
                               // any round trip, so it is the original's ACK: it proves nothing about 40.
        r.on_send(S + 900, S + 1000, 40);
        r.on_sack(S + 900, S + 1000, 45);
        assert!(!r.detect(45, 5));
        let mut r = flight(0);
        r.on_ack(S + 100, 20);
        r.on_send(S + 900, S + 1000, 40);
        r.on_sack(S + 900, S + 1000, 60);
        // Plausible: everything sent before 40 − 5 and not delivered is lost, i.e. 1–8.
        assert!(r.detect(60, 5));
        assert_eq!(r.lost_edge(), S + 900);
    }

    #[test]
    fn retransmissions_split_records_and_reordering_is_noticed() {
        let mut r = flight(0);
        r.on_send(S + 150, S + 250, 30);
        assert_eq!(r.len(), 12, "records split at 150 and 250");
        r.on_sack(S + 300, S + 400, 25);
        assert!(!r.reordering_seen());
        // Segment 0 arrives after 3 was SACKed, never retransmitted: reordering.
        r.on_ack(S + 100, 26);
        assert!(r.reordering_seen());
        assert_eq!(r.reo_wnd(true, Some(40.0)), 6, "min RTT 22 / 4, rounded up");
        assert_eq!(r.reo_wnd(true, Some(3.0)), 3, "at most SRTT");
        r.on_rto();
        assert_eq!(r.lost_edge(), S + 100);
    }

    #[test]
    fn records_are_bounded() {
        let mut r = Rack::new();
        for i in 0..(MAX_RECORDS as u32 + 100) {
            r.on_send(i, i + 1, u64::from(i));
        }
        assert_eq!(r.len(), MAX_RECORDS);
        assert_eq!(r.top(), MAX_RECORDS as u32 + 100);
        r.on_ack(MAX_RECORDS as u32 + 100, 10_000);
        assert!(r.is_empty());
    }
}
