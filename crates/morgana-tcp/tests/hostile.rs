//! Hostile peers (issue 20): a spoofed SYN that starts an ACK storm between two engines, a
//! spoofed in-window ACK that pins the send window.

mod common;

use common::{drain, inject};
use morgana_tcp::engine::ErrorCode;
use morgana_tcp::wire::{TcpHeader, ACK, RST, SYN};
use morgana_tcp::{Config, Engine, EventKind, Handle, IpAddr};
use std::net::{Ipv4Addr, Ipv6Addr};

const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

/// A listens on port 80, B connected to it from port 50 000.
struct Pair {
    a: Engine,
    b: Engine,
    addr_a: IpAddr,
    addr_b: IpAddr,
    ha: Handle,
    hb: Handle,
    now: u64,
    /// The last segment B sent to A and its payload length.
    last_b: Option<(TcpHeader, usize)>,
}

impl Pair {
    fn new(addr_a: IpAddr, addr_b: IpAddr) -> Self {
        let mut a = Engine::new(Config::default(), [1; 16]);
        let mut b = Engine::new(Config::default(), [2; 16]);
        a.listen(80, 8).unwrap();
        let hb = b.connect((addr_b, 50_000), (addr_a, 80), 0).unwrap();
        let mut p = Pair { a, b, addr_a, addr_b, ha: 0, hb, now: 0, last_b: None };
        p.exchange(50);
        p.ha = p.a.take_events().find(|e| matches!(e.kind, EventKind::Accepted(_))).unwrap().handle;
        p.a.accept(p.ha).unwrap();
        p.b.take_events().for_each(drop);
        p
    }

    /// Moves segments both ways for up to `rounds` exchanges at the current time; returns how
    /// many segments moved.
    fn exchange(&mut self, rounds: usize) -> usize {
        let mut moved = 0;
        for _ in 0..rounds {
            self.a.poll(self.now);
            self.b.poll(self.now);
            let from_a = drain(&mut self.a);
            let from_b = drain(&mut self.b);
            self.a.check_invariants().unwrap();
            self.b.check_invariants().unwrap();
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            moved += from_a.len() + from_b.len();
            for (src, dst, bytes) in from_a {
                self.b.on_segment(src, dst, &bytes, self.now);
            }
            for (src, dst, bytes) in from_b {
                let (h, offset) = TcpHeader::parse(&bytes, Some((src, dst))).unwrap();
                self.last_b = Some((h, bytes.len() - offset));
                self.a.on_segment(src, dst, &bytes, self.now);
            }
        }
        moved
    }

    /// B's SND.NXT as seen on the wire.
    fn b_snd_nxt(&self) -> u32 {
        let (h, len) = self.last_b.unwrap();
        h.seq.wrapping_add(len as u32)
    }

    /// A segment from B's address and port to A's port 80.
    fn forged(&self, flags: u8, seq: u32, ack: u32, window: u16) -> TcpHeader {
        TcpHeader { src_port: 50_000, dst_port: 80, seq, ack, flags, window, ..TcpHeader::default() }
    }

    fn inject_a(&mut self, h: &TcpHeader, payload: &[u8]) {
        inject(&mut self.a, h, payload, self.addr_b, self.addr_a, self.now);
    }

    /// Runs both engines for `ms` milliseconds in 1 ms steps; returns the segments exchanged.
    fn run(&mut self, ms: u64) -> usize {
        let mut moved = 0;
        for _ in 0..ms {
            self.now += 1;
            moved += self.exchange(20);
        }
        moved
    }
}

/// The storm of issue 20: A lost the connection (a RST at B's SND.NXT), then a spoofed SYN with
/// B's 4-tuple and a sequence number past B's SND.NXT makes A answer SYN-ACK; B challenges it,
/// A finds B's ACK out of its new window and ACKs, B finds that one out of its window and ACKs…
fn storm(addr_a: IpAddr, addr_b: IpAddr) {
    let mut p = Pair::new(addr_a, addr_b);
    p.b.send(p.hb, b"hello").unwrap();
    p.exchange(50);
    p.now += 100;
    p.exchange(50);
    let snd_nxt = p.b_snd_nxt();
    p.inject_a(&p.forged(RST, snd_nxt, 0, 0), &[]);
    let events: Vec<_> = p.a.take_events().map(|e| e.kind).collect();
    assert!(events.contains(&EventKind::Error(ErrorCode::ConnectionReset)), "{events:?}");
    drain(&mut p.a);
    p.inject_a(&p.forged(SYN, snd_nxt.wrapping_add(1000), 0, 65_535), &[]);
    let moved = p.run(5_000);
    let (a, b) = (p.a.stats(), p.b.stats());
    // A's SYN-ACK and its retransmissions (1, 2 s), B's challenge ACKs to them, and the
    // rate-limited ACKs each side sends in reply to the other's unacceptable ACKs (one per
    // 500 ms per connection): a few dozen, where the unlimited engines exchanged one per round.
    assert!(moved < 60, "{moved} segments in 5 s: an ACK storm ({a:?} {b:?})");
    assert!(a.unacceptable_acks_suppressed + b.unacceptable_acks_suppressed > 0, "{a:?} {b:?}");
    assert!(a.unacceptable_acks > 0 && b.challenge_acks > 0, "{a:?} {b:?}");

    // Legitimate traffic is unaffected: a new connection between the same hosts carries data.
    let hb2 = p.b.connect((addr_b, 50_001), (addr_a, 80), p.now).unwrap();
    p.run(10);
    let ha2 = p.a.take_events().find(|e| matches!(e.kind, EventKind::Accepted(_))).unwrap().handle;
    p.a.accept(ha2).unwrap();
    p.b.send(hb2, &[7u8; 10_000]).unwrap();
    p.run(100);
    let mut buf = [0u8; 20_000];
    assert_eq!(p.a.recv(ha2, &mut buf).unwrap(), 10_000);
}

#[test]
fn a_spoofed_syn_does_not_start_an_ack_storm_ipv4() {
    storm(A4, B4);
}

#[test]
fn a_spoofed_syn_does_not_start_an_ack_storm_ipv6() {
    storm(A6, B6);
}

#[test]
fn challenge_acks_are_rate_limited_per_connection_too() {
    let mut p = Pair::new(A4, B4);
    let (h, _) = p.last_b.unwrap();
    // In-window SYNs: each wants a challenge ACK (RFC 5961 §4), one per 500 ms goes out.
    let mut answers = 0;
    for i in 0..10 {
        p.inject_a(&p.forged(SYN, h.seq.wrapping_add(100 + i), 0, 65_535), &[]);
        answers += drain(&mut p.a).len();
    }
    assert_eq!(answers, 1);
    let s = p.a.stats();
    assert_eq!((s.challenge_acks, s.challenge_acks_suppressed), (1, 9));
    assert_eq!(p.a.conn_stats(p.ha).unwrap().acks_rate_limited, 9);
    p.now += 500;
    p.inject_a(&p.forged(SYN, h.seq.wrapping_add(7), 0, 65_535), &[]);
    assert_eq!(drain(&mut p.a).len(), 1, "the next one 500 ms later");
}

#[test]
fn out_of_window_data_is_always_acknowledged() {
    let mut p = Pair::new(A4, B4);
    let (h, _) = p.last_b.unwrap();
    // Old data (a retransmission whose ACK was lost) gets its duplicate ACK every time: the
    // sender needs it, and data does not answer ACKs, so it cannot loop.
    for _ in 0..3 {
        p.inject_a(&p.forged(ACK, h.seq.wrapping_sub(10), h.ack, 65_535), b"0123456789");
        assert_eq!(drain(&mut p.a).len(), 1);
    }
    // Pure ACKs below the window: one answer.
    let mut answers = 0;
    for _ in 0..3 {
        p.inject_a(&p.forged(ACK, h.seq.wrapping_sub(10), h.ack, 65_535), &[]);
        answers += drain(&mut p.a).len();
    }
    assert_eq!(answers, 1);
    assert_eq!(p.a.stats().unacceptable_acks_suppressed, 2);
}

/// Issue 20 item 4: a spoofed pure ACK from A with a sequence number in B's receive window but
/// ahead of RCV.NXT, an acceptable ACK value and window 0. RFC 9293's SND.WL1 rule then refused
/// every later window update from the real A (their sequence numbers are below the forged one),
/// so B never sent again. Window updates are now taken as Linux takes them (an ACK that advances
/// SND.UNA, or SEG.SEQ/SND.WL1 ordering) and SND.WL1 never runs ahead of RCV.NXT.
#[test]
fn a_spoofed_in_window_ack_does_not_pin_the_send_window() {
    for (addr_a, addr_b) in [(A4, B4), (A6, B6)] {
        let mut p = Pair::new(addr_a, addr_b);
        // B is idle: its last segment (the handshake's ACK) carries its RCV.NXT and SND.UNA.
        let (b_seg, _) = p.last_b.unwrap();
        let forged = TcpHeader {
            src_port: 80,
            dst_port: 50_000,
            seq: b_seg.ack.wrapping_add(1000),
            ack: b_seg.seq,
            flags: ACK,
            window: 0,
            ..TcpHeader::default()
        };
        inject(&mut p.b, &forged, &[], addr_a, addr_b, p.now);
        assert_eq!(p.b.conn_stats(p.hb).unwrap().send_window, 0, "the forged ACK was taken");
        let data: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let mut sent = 0;
        let mut got = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 65_536];
        for _ in 0..10_000 {
            if sent < data.len() {
                sent += p.b.send(p.hb, &data[sent..]).unwrap();
            }
            p.now += 1;
            p.exchange(200);
            loop {
                let n = p.a.recv(p.ha, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() == data.len() {
                break;
            }
        }
        assert_eq!(got.len(), data.len(), "1 MiB in 10 s (virtual)");
        assert!(got == data);
    }
}

/// RFC 9293's protection stays: an old segment (partly a duplicate, so acceptable) that
/// advances nothing does not update the window.
#[test]
fn an_old_segment_does_not_update_the_window() {
    let mut p = Pair::new(A4, B4);
    p.b.send(p.hb, b"ping").unwrap();
    p.exchange(50);
    p.now += 100; // A's delayed ACK
    p.exchange(50);
    let window = p.b.conn_stats(p.hb).unwrap().send_window;
    assert!(window > 0);
    let (b_seg, _) = p.last_b.unwrap();
    let old = TcpHeader {
        src_port: 80,
        dst_port: 50_000,
        seq: b_seg.ack.wrapping_sub(50),
        ack: b_seg.seq.wrapping_add(4),
        flags: ACK,
        window: 0,
        ..TcpHeader::default()
    };
    inject(&mut p.b, &old, &[1; 100], p.addr_a, p.addr_b, p.now);
    assert_eq!(p.b.conn_stats(p.hb).unwrap().send_window, window);
}
