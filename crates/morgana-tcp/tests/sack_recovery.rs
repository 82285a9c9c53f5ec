//! SACK-based loss recovery (RFC 6675) between two engines on a virtual clock, with scripted
//! loss: several segments of one window are lost, and so is the retransmission of one of them.
//! Before the scoreboard, NewReno repaired one hole per round trip and a lost retransmission
//! cost the 200 ms minimum RTO.

mod common;

use morgana_tcp::wire::{TcpHeader, SYN};
use morgana_tcp::{Config, Engine, EventKind, Handle};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const LATENCY: u64 = 10;

struct Link {
    a: Engine,
    b: Engine,
    now: u64,
    queue: Vec<(u64, bool, IpAddr, IpAddr, Vec<u8>)>,
    /// A's first data sequence number, once its SYN went out.
    first: Option<u32>,
    /// Transmissions of each data segment from A, by offset from `first`.
    sends: HashMap<u32, u32>,
}

impl Link {
    fn collect(&mut self, from_a: bool, drop: &dyn Fn(u32, u32) -> bool) {
        let engine = if from_a { &mut self.a } else { &mut self.b };
        for (src, dst, bytes) in common::drain(engine) {
            if from_a {
                let (h, len) = TcpHeader::parse(&bytes, Some((src, dst))).unwrap();
                if h.has(SYN) {
                    self.first = Some(h.seq.wrapping_add(1));
                } else if bytes.len() > len {
                    let off = h.seq.wrapping_sub(self.first.unwrap());
                    let n = self.sends.entry(off).or_insert(0);
                    *n += 1;
                    if drop(off, *n) {
                        continue;
                    }
                }
            }
            self.queue.push((self.now + LATENCY, from_a, src, dst, bytes));
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Runs one transfer of `bytes` from A to B; `drop(offset, nth transmission)` scripts the loss.
fn transfer(bytes: usize, drop: &dyn Fn(u32, u32) -> bool) -> (Link, Vec<u8>, Handle) {
    let mut link = Link {
        a: Engine::new(Config::default(), [1; 16]),
        b: Engine::new(Config::default(), [2; 16]),
        now: 0,
        queue: Vec::new(),
        first: None,
        sends: HashMap::new(),
    };
    link.b.listen(80, 16).unwrap();
    let ha = link.a.connect((A, 40_000), (B, 80), 0).unwrap();
    let data = pattern(bytes);
    let mut sent = 0;
    let mut received = Vec::new();
    let mut hb = None;
    let mut steps = 0;
    while received.len() < bytes {
        steps += 1;
        assert!(steps < 1_000_000 && link.now < 60_000, "stalled at {} ms", link.now);
        link.a.poll(link.now);
        link.b.poll(link.now);
        for e in link.b.take_events().collect::<Vec<_>>() {
            if let EventKind::Accepted(_) = e.kind {
                link.b.accept(e.handle).unwrap();
                hb = Some(e.handle);
            }
        }
        link.a.take_events().for_each(|_| ());
        while sent < bytes {
            match link.a.send(ha, &data[sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        if let Some(h) = hb {
            let mut buf = [0u8; 65_536];
            while let Ok(n @ 1..) = link.b.recv(h, &mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
        }
        link.a.poll(link.now);
        link.b.poll(link.now);
        link.collect(true, drop);
        link.collect(false, &|_, _| false);
        let now = link.now;
        let (due, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut link.queue).into_iter().partition(|p| p.0 <= now);
        link.queue = rest;
        // One segment at a time, each answered before the next: a paced link.
        for (_, to_b, src, dst, bytes) in &due {
            if *to_b {
                link.b.on_segment(*src, *dst, bytes, now);
            } else {
                link.a.on_segment(*src, *dst, bytes, now);
            }
            link.a.poll(now);
            link.b.poll(now);
            link.collect(true, drop);
            link.collect(false, &|_, _| false);
        }
        if due.is_empty() && !link.a.has_pending() && !link.b.has_pending() {
            let next = [link.queue.iter().map(|p| p.0).min(), link.a.next_deadline(), link.b.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            link.now = match next {
                Some(t) if t > link.now => t,
                _ => link.now + 1,
            };
        }
    }
    (link, data, ha)
}

#[test]
fn several_losses_in_one_window_and_a_lost_retransmission_recover_without_a_timeout() {
    // Clean run first: its duration is the yardstick.
    let (clean, data, _) = transfer(1_000_000, &|_, _| false);
    let clean_ms = clean.now;
    assert_eq!(clean.a.stats().retransmits, 0);
    let seg = 1460 - 12; // MSS at MTU 1500 less the timestamp option.
    let lost = [300u32, 303, 307, 312, 318];
    let twice = 307u32;
    let script = move |off: u32, nth: u32| {
        let i = off / seg;
        off.is_multiple_of(seg) && ((lost.contains(&i) && nth == 1) || (i == twice && nth == 2))
    };
    let (link, got, _) = transfer(1_000_000, &script);
    assert!(got == data, "the data arrives intact");
    let s = link.a.stats();
    assert_eq!(s.timeouts, 0, "no RTO: {s:?}");
    assert!(s.fast_retransmits >= 1);
    assert_eq!(link.sends[&(twice * seg)], 3, "the lost retransmission was sent again");
    for i in lost {
        assert!(link.sends[&(i * seg)] >= 2, "segment {i} retransmitted");
    }
    // Retransmissions are targeted: no go-back-N flood.
    assert!(s.retransmits <= 8, "{} retransmissions", s.retransmits);
    // Recovery costs round trips, not the 200 ms minimum RTO.
    assert!(link.now < clean_ms + 150, "lossy {} ms vs clean {} ms", link.now, clean_ms);
}

/// The retransmission of the last hole is lost and no new data follows it: nothing sent after
/// it can be SACKed, so the recovery probe (2·SRTT + 10 ms without progress) resends it instead
/// of the 200 ms RTO.
#[test]
fn a_lost_retransmission_at_the_tail_is_resent_by_the_recovery_probe() {
    let seg = 1460 - 12;
    let segments = 120u32;
    let script = move |off: u32, nth: u32| {
        let i = off / seg;
        off.is_multiple_of(seg) && ((i == 110 && nth <= 2) || (i == 113 && nth == 1))
    };
    let (link, got, _) = transfer(segments as usize * seg as usize, &script);
    assert!(got == pattern(segments as usize * seg as usize));
    let s = link.a.stats();
    assert_eq!(s.timeouts, 0, "no RTO: {s:?}");
    assert_eq!(link.sends[&(110 * seg)], 3);
    assert_eq!(link.sends[&(113 * seg)], 2);
}
