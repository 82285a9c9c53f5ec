//! Deferred payloads ([`morgana_tcp::PayloadRef`]): a data segment `poll` produces keeps its
//! payload in the send buffer until the transmitter copies it, and every call that may change a
//! connection first copies the payloads still pending into the output. These tests check that
//! a segment read late is the segment that was produced, whatever happened in between.

mod common;

use common::drain;
use morgana_tcp::wire::TcpHeader;
use morgana_tcp::{Config, Engine, EventKind, Handle, OutSegment};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

/// Bytes that differ at every position (a shifted buffer would show).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Moves everything between the engines until both are quiet.
fn settle(a: &mut Engine, b: &mut Engine, now: u64) {
    common::shuttle(a, b, now, |_| {});
}

/// An established connection from `a` (client) to `b` (server, port 80): (client, server) handles.
fn connect(a: &mut Engine, b: &mut Engine, (src, dst): (IpAddr, IpAddr)) -> (Handle, Handle) {
    b.listen(80, 16).unwrap();
    let ha = a.connect((src, 40_000), (dst, 80), 0).unwrap();
    settle(a, b, 0);
    let accepted = b.take_events().find_map(|e| matches!(e.kind, EventKind::Accepted(_)).then_some(e.handle));
    let hb = accepted.expect("accepted");
    b.accept(hb).unwrap();
    a.take_events().for_each(drop);
    (ha, hb)
}

fn engines(gso_max: usize) -> (Engine, Engine) {
    let cfg = Config { gso_max, ..Config::default() };
    (Engine::new(cfg.clone(), [1; 16]), Engine::new(cfg, [2; 16]))
}

/// The pending output as whole segments (what a transmitter would send), without taking it.
fn peek(engine: &Engine) -> Vec<(OutSegment, Vec<u8>)> {
    engine
        .output()
        .pending()
        .iter()
        .filter_map(|s| {
            let mut bytes = Vec::new();
            engine.write_segment(s, &mut bytes).then_some((*s, bytes))
        })
        .collect()
}

/// Data segments are deferred after `poll`, and byte-identical (checksum included) when read
/// late, after a call that materialised them into the output.
#[test]
fn a_segment_materialised_late_is_the_segment_produced() {
    for (family, gso_max) in [((A, B), 0), ((A, B), 65_000), ((A6, B6), 0), ((A6, B6), 65_000)] {
        let (mut a, mut b) = engines(gso_max);
        let (ha, _) = connect(&mut a, &mut b, family);
        let data = pattern(40_000, 7);
        assert_eq!(a.send(ha, &data).unwrap(), data.len());
        a.poll(1);
        let deferred = a.output().pending().iter().filter(|s| s.payload.is_some()).count();
        assert!(deferred > 0, "poll stores data segments' payloads by reference");
        let early = peek(&a);
        for (s, bytes) in &early {
            TcpHeader::parse(bytes, Some((s.src, s.dst))).expect("a valid checksum");
        }
        // Any call that may change the connection materialises the pending payloads first.
        a.send(ha, &pattern(1000, 9)).unwrap();
        assert!(a.output().pending().iter().all(|s| s.payload.is_none()));
        let late = peek(&a);
        assert_eq!(early.len(), late.len());
        for ((_, e), (_, l)) in early.iter().zip(&late) {
            assert_eq!(e, l);
        }
    }
}

/// An ACK arrives after `poll` produced segments and before they were transmitted: it releases
/// send-buffer bytes in front of the deferred payloads (which moves every byte behind them). The
/// segments still carry the bytes they were produced with, and the peer receives the stream
/// intact.
#[test]
fn an_ack_between_output_and_transmission_changes_no_byte() {
    for family in [(A, B), (A6, B6)] {
        let (mut a, mut b) = engines(65_000);
        let (ha, hb) = connect(&mut a, &mut b, family);
        let first = pattern(4_000, 1);
        let second = pattern(8_000, 2);
        a.send(ha, &first).unwrap();
        a.poll(1);
        // B gets the first flight and acknowledges it; A has not seen that ACK yet (both fit
        // the initial window, so the second is sent without waiting for it).
        for (src, dst, bytes) in drain(&mut a) {
            b.on_segment(src, dst, &bytes, 2);
        }
        b.poll(2);
        let acks = drain(&mut b);
        assert!(!acks.is_empty());
        // A produces more data, deferred, then the ACK comes in before it is transmitted.
        a.send(ha, &second).unwrap();
        a.poll(3);
        assert!(a.output().pending().iter().any(|s| s.payload.is_some()));
        let before = peek(&a);
        let in_flight = a.conn_stats(ha).unwrap().bytes_in_flight;
        for (src, dst, bytes) in &acks {
            a.on_segment(*src, *dst, bytes, 4);
        }
        let released = in_flight - a.conn_stats(ha).unwrap().bytes_in_flight;
        assert!(released > 0, "the ACK released bytes in front of the deferred payloads");
        let after = peek(&a);
        assert!(after.len() >= before.len());
        for ((_, x), (_, y)) in before.iter().zip(&after) {
            assert_eq!(x, y, "the ACK changed a segment produced before it");
        }
        // The rest of the transfer, and the stream arrives intact.
        settle(&mut a, &mut b, 5);
        let mut got = vec![0u8; 20_000];
        let n = b.recv(hb, &mut got).unwrap();
        let mut want = first.clone();
        want.extend_from_slice(&second);
        assert_eq!(&got[..n], &want[..]);
    }
}

/// The ACK that arrives before the transmission covers the waiting segment's own bytes: a
/// retransmission (timer) of data the peer already has. The ACK releases those bytes from the
/// send buffer, so the segment must have been copied into the output first: it still goes out
/// whole and unchanged (the peer takes it as a duplicate).
#[test]
fn an_ack_releasing_a_waiting_retransmission_changes_no_byte() {
    for family in [(A, B), (A6, B6)] {
        let (mut a, mut b) = engines(0);
        let (ha, _) = connect(&mut a, &mut b, family);
        a.send(ha, &pattern(4_000, 5)).unwrap();
        a.poll(1);
        for (src, dst, bytes) in drain(&mut a) {
            b.on_segment(src, dst, &bytes, 2);
        }
        b.poll(2);
        let mut acks = drain(&mut b);
        b.poll(1_000); // the delayed ACK for the rest
        acks.extend(drain(&mut b));
        // No ACK reached A: its timer resends, the payload left in the send buffer.
        a.poll(3_000);
        assert!(a.output().pending().iter().any(|s| s.payload.is_some()), "a deferred retransmission");
        let before = peek(&a);
        for (src, dst, bytes) in &acks {
            a.on_segment(*src, *dst, bytes, 3_001);
        }
        assert_eq!(a.conn_stats(ha).unwrap().bytes_in_flight, 0, "everything acknowledged and released");
        let after = peek(&a);
        assert!(after.len() >= before.len(), "no segment was lost");
        for ((_, x), (_, y)) in before.iter().zip(&after) {
            assert_eq!(x, y, "the ACK changed a segment waiting for transmission");
        }
    }
}

/// A connection aborted while its data segments wait untransmitted: they were copied into the
/// output first (no reference to the dropped connection remains), and the RST follows them.
#[test]
fn a_connection_aborted_with_output_pending() {
    let (mut a, mut b) = engines(65_000);
    let (ha, _) = connect(&mut a, &mut b, (A, B));
    a.send(ha, &pattern(30_000, 3)).unwrap();
    a.poll(1);
    let before = peek(&a);
    assert!(!before.is_empty());
    a.abort(ha).unwrap();
    a.release(ha);
    assert!(a.info(ha).is_none(), "the connection is gone");
    let after = peek(&a);
    assert_eq!(after.len(), before.len() + 1, "the data segments, then the RST");
    for ((_, x), (_, y)) in before.iter().zip(&after) {
        assert_eq!(x, y);
    }
    let (s, rst) = after.last().unwrap();
    let (h, _) = TcpHeader::parse(rst, Some((s.src, s.dst))).unwrap();
    assert_ne!(h.flags & morgana_tcp::wire::RST, 0);
}

/// Segments already taken by the transmitter are not materialised again, and taking the last
/// one clears the output.
#[test]
fn taken_segments_are_left_alone() {
    let (mut a, mut b) = engines(0);
    let (ha, _) = connect(&mut a, &mut b, (A, B));
    a.send(ha, &pattern(20_000, 4)).unwrap();
    a.poll(1);
    let n = a.output().pending().len();
    assert!(n >= 3);
    let stored = a.output().bytes.len();
    a.take_output(2);
    assert_eq!(a.output().pending().len(), n - 2);
    a.recv(ha, &mut [0u8; 16]).unwrap();
    let materialised: usize = a.output().pending().iter().map(|s| s.len as usize).sum();
    assert_eq!(a.output().bytes.len(), stored + materialised, "only the pending segments were copied");
    a.take_output(n - 2);
    assert!(a.output().segments.is_empty() && a.output().bytes.is_empty());
}
