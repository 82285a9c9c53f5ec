//! RACK (RFC 8985) with the tail-loss probe: losses that leave too few segments behind them for
//! three duplicate ACKs are repaired without waiting for the retransmission timeout.

mod common;

use common::link::{pattern, Link};
use morgana_tcp::Config;

const SEG: usize = 1460 - 12; // MSS at MTU 1500 less the timestamp option.

/// Sends `segments` full segments from A to B, losing the first transmission of those in
/// `lost`; returns the link and A's connection counters at the end.
fn run(segments: usize, lost: &[u32]) -> (Link, morgana_tcp::conn::ConnStats) {
    let mut link = Link::new(Config::default(), Config::default(), 10);
    link.from_a.drop_nth = lost.to_vec();
    let data = pattern(segments * SEG, 7);
    let mut last = None;
    let (got, _, _) = link.transfer(&data, &[], |l, h| last = l.a.conn_stats(h).or(last));
    assert!(got == data, "data intact");
    assert_eq!(link.from_a.data_sent as usize, segments, "full-sized segments only");
    (link, last.unwrap())
}

#[test]
fn losing_the_last_segments_of_a_flight_is_repaired_without_a_timeout() {
    // The last three segments of the transfer are lost: nothing follows them to produce
    // duplicate ACKs. The tail-loss probe resends the last one; its SACK shows that the two
    // before it, sent earlier, are lost (RACK), and recovery resends them.
    let (link, a) = run(40, &[37, 38, 39]);
    assert_eq!(a.timeouts, 0, "{a:?}");
    assert_eq!(a.tail_loss_probes, 1, "{a:?}");
    assert_eq!(a.sack_recoveries, 1, "{a:?}");
    assert_eq!(a.retransmits, 3, "the probe and the two holes, nothing more: {a:?}");
    // Repaired in round trips (probe timeout 2·SRTT, then one round trip), not the 200 ms RTO.
    let clean = run(40, &[]).0.now;
    assert!(link.now < clean + 100, "{} ms vs {} ms clean", link.now, clean);
}

#[test]
fn losing_the_first_segment_of_a_small_flight_is_repaired_by_the_reordering_timer() {
    // Three segments, the first lost: two SACKed segments are fewer than DupThresh, and the
    // tail-loss probe would only repeat the last one. RACK marks the first lost once a
    // reordering window has passed after the others' delivery.
    let (link, a) = run(3, &[0]);
    assert_eq!(a.timeouts, 0, "{a:?}");
    assert_eq!(a.retransmits, 1, "{a:?}");
    let clean = run(3, &[]).0.now;
    assert!(link.now < clean + 40, "{} ms vs {} ms clean", link.now, clean);
}
