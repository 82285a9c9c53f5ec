//! Congestion control between two engines on a virtual clock: slow start doubles the window
//! every round trip, also with the stretch ACKs a batched receive path produces; the first
//! loss lowers ssthresh by each algorithm's rule; and NewReno and CUBIC both deliver data
//! intact through random loss and reordering.

mod common;

use common::link::{pattern, Link};
use morgana_tcp::cc::Algorithm;
use morgana_tcp::conn::ConnStats;
use morgana_tcp::Config;

fn big_buffers(algorithm: Algorithm) -> Config {
    Config { send_buffer: 8 << 20, recv_buffer: 8 << 20, congestion_control: algorithm, ..Config::default() }
}

/// cwnd (in segments) at the end of each round trip of slow start, until it passes `limit`.
fn slow_start_rounds(algorithm: Algorithm, batched: bool, limit: usize) -> Vec<f64> {
    let latency = 25;
    let mut link = Link::new(big_buffers(algorithm), big_buffers(algorithm), latency);
    link.batched = batched;
    let mut samples: Vec<(u64, ConnStats)> = Vec::new();
    let data = pattern(6 << 20, 0);
    let (got, _, _) = link.transfer(&data, &[], |l, h| {
        if let Some(s) = l.a.conn_stats(h) {
            if samples.last().is_none_or(|p| p.1.cwnd != s.cwnd) {
                samples.push((l.now, s));
            }
        }
    });
    assert!(got == data);
    let s = link.a.stats();
    assert_eq!((s.retransmits, s.timeouts), (0, 0), "a clean link");
    // The handshake ends at 2·latency; data rounds end every 2·latency after. The window at the
    // end of a round is the last sample before the next round's first ACK arrives.
    let smss = samples.last().unwrap().1.smss as f64;
    let rtt = 2 * latency;
    let mut rounds = Vec::new();
    for k in 1.. {
        let end = 2 * latency + k * rtt;
        let Some(w) = samples.iter().take_while(|p| p.0 < end).last() else { continue };
        let w = w.1.cwnd as f64 / smss;
        rounds.push(w);
        if w > limit as f64 || samples.last().is_some_and(|p| p.0 <= end) {
            break;
        }
    }
    rounds
}

/// Before byte counting, slow start grew cwnd by one SMSS per ACK (RFC 5681's cap): 1.5× per
/// round trip when every other segment is acknowledged, and one segment per round trip with
/// one stretch ACK per flight.
#[test]
fn slow_start_doubles_the_window_every_round_trip() {
    for algorithm in [Algorithm::NewReno, Algorithm::Cubic] {
        for batched in [false, true] {
            let rounds = slow_start_rounds(algorithm, batched, 300);
            eprintln!("{algorithm:?} batched={batched}: cwnd per round trip {rounds:?}");
            assert_eq!(rounds[0], 10.0, "{algorithm:?} batched={batched}: initial window {rounds:?}");
            assert!(rounds.len() >= 5, "{rounds:?}");
            for pair in rounds.windows(2).take(5) {
                assert!(
                    pair[1] >= 1.9 * pair[0],
                    "{algorithm:?} batched={batched}: cwnd per round trip {rounds:?}"
                );
            }
        }
    }
}

/// Loses one segment once slow start has grown the window; returns A's connection just
/// before and just after the fast retransmit.
fn first_loss(algorithm: Algorithm) -> (ConnStats, ConnStats) {
    let mut link = Link::new(big_buffers(algorithm), big_buffers(algorithm), 10);
    link.from_a.drop_nth = vec![150];
    let mut before: Option<ConnStats> = None;
    let mut at_loss: Option<(ConnStats, ConnStats)> = None;
    let data = pattern(2 << 20, 1);
    let (got, _, _) = link.transfer(&data, &[], |l, h| {
        let Some(s) = l.a.conn_stats(h) else { return };
        if at_loss.is_none() && s.fast_retransmits == 1 {
            at_loss = Some((before.unwrap(), s));
        }
        before = Some(s);
    });
    assert!(got == data);
    assert_eq!(link.a.stats().timeouts, 0);
    at_loss.expect("a fast retransmit")
}

#[test]
fn the_first_loss_lowers_ssthresh_by_the_algorithms_rule() {
    let (before, after) = first_loss(Algorithm::NewReno);
    assert_eq!(after.algorithm, Algorithm::NewReno);
    // RFC 5681 (4): max(FlightSize / 2, 2·SMSS).
    assert_eq!(after.ssthresh, Some(before.bytes_in_flight / 2));
    assert!(after.sack_recoveries == 1 && after.in_recovery);
    let (before, after) = first_loss(Algorithm::Cubic);
    assert_eq!(after.algorithm, Algorithm::Cubic);
    // RFC 9438 §4.6: cwnd · β_cubic, β = 0.7.
    assert_eq!(after.ssthresh, Some(before.cwnd * 7 / 10));
    assert_eq!(after.cwnd, before.cwnd * 7 / 10, "SACK recovery starts at ssthresh");
}

#[test]
fn both_algorithms_deliver_intact_through_loss_and_reordering() {
    assert_eq!(Config::default().congestion_control, Algorithm::Cubic, "CUBIC is the default");
    for algorithm in [Algorithm::NewReno, Algorithm::Cubic] {
        for batched in [false, true] {
            // The engines' default is CUBIC; A's connection picks its own.
            let mut link = Link::new(Config::default(), Config::default(), 5);
            link.batched = batched;
            link.loss = 0.01;
            link.reorder = 0.02;
            link.algorithm_a = Some(algorithm);
            let data = pattern(4 << 20, 2);
            let mut last = None;
            let (got, _, ha) = link.transfer(&data, &[], |l, h| last = l.a.conn_stats(h).or(last));
            assert!(got == data, "{algorithm:?} batched={batched}: data intact");
            let conn = last.unwrap();
            assert_eq!(conn.algorithm, algorithm);
            assert!(conn.fast_retransmits > 0 && conn.retransmits >= conn.fast_retransmits, "{conn:?}");
            let engine = link.a.stats();
            assert_eq!(u64::from(conn.retransmits), engine.retransmits, "one connection: same count");
            assert_eq!(link.a.conn_stats(ha).unwrap().algorithm, algorithm);
        }
    }
}
