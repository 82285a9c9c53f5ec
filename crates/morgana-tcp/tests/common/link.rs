//! Two engines joined by a simulated link on a virtual clock: fixed one-way delay, seeded random
//! loss and reordering, and scripted loss of chosen data segments (by their order of first
//! transmission, so the retransmission gets through).
#![allow(dead_code)]

use super::drain;
use morgana_tcp::cc::Algorithm;
use morgana_tcp::wire::TcpHeader;
use morgana_tcp::{Config, Engine, EventKind, Handle, IpAddr};
use std::net::Ipv4Addr;

/// A's address.
pub const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
/// B's address.
pub const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// A segment on the wire: arrival time, towards B, source, destination, bytes.
pub type Packet = (u64, bool, IpAddr, IpAddr, Vec<u8>);

/// What one direction sent, for scripted loss and for the tests' own checks.
#[derive(Default)]
pub struct Direction {
    /// Data segments sent for the first time, counted from 0.
    pub data_sent: u32,
    /// Those to lose (first transmission only).
    pub drop_nth: Vec<u32>,
    /// Those to lose on every transmission until this time (ms): a burst that also eats the
    /// retransmissions.
    pub drop_all_until: Option<(Vec<u32>, u64)>,
    /// End of the highest data sent.
    sent_end: Option<u32>,
    /// First-transmission order of each data segment, by sequence number.
    order: Vec<(u32, u32)>,
    /// Every segment sent, parsed: (time, header, payload length).
    pub log: Vec<(u64, TcpHeader, usize)>,
}

/// The link.
pub struct Link {
    /// The client (connects).
    pub a: Engine,
    /// The server (listens on port 80).
    pub b: Engine,
    /// Virtual time (ms).
    pub now: u64,
    /// One-way delay (ms).
    pub latency: u64,
    /// Random loss probability per segment.
    pub loss: f64,
    /// Probability that a segment is delayed by 1–4 ms more.
    pub reorder: f64,
    rng: u64,
    /// A → B and B → A.
    pub from_a: Direction,
    /// B → A.
    pub from_b: Direction,
    /// Hand every segment due at one instant in, then poll once (as the TypeScript glue does per
    /// delivery turn), instead of polling after each.
    pub batched: bool,
    /// The congestion control of A's connection, set right after connect.
    pub algorithm_a: Option<Algorithm>,
    /// The listener's backlog.
    pub backlog: u32,
    /// Segments in flight.
    pub queue: Vec<Packet>,
    /// B's accepted connection.
    pub hb: Option<Handle>,
}

impl Link {
    /// Two engines `latency` ms apart.
    pub fn new(cfg_a: Config, cfg_b: Config, latency: u64) -> Self {
        Link {
            a: Engine::new(cfg_a, [1; 16]),
            b: Engine::new(cfg_b, [2; 16]),
            now: 0,
            latency,
            loss: 0.0,
            reorder: 0.0,
            rng: 0x9e37_79b9_7f4a_7c15,
            from_a: Direction::default(),
            from_b: Direction::default(),
            batched: false,
            algorithm_a: None,
            backlog: 16,
            queue: Vec::new(),
            hb: None,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn collect(&mut self, from_a: bool) {
        let engine = if from_a { &mut self.a } else { &mut self.b };
        for (src, dst, bytes) in drain(engine) {
            let (h, header_len) = TcpHeader::parse(&bytes, Some((src, dst))).unwrap();
            let len = bytes.len() - header_len;
            let now = self.now;
            let dir = if from_a { &mut self.from_a } else { &mut self.from_b };
            dir.log.push((now, h, len));
            if len > 0 {
                let fresh = dir.sent_end.is_none_or(|e| (h.seq.wrapping_sub(e) as i32) >= 0);
                let nth = if fresh {
                    dir.sent_end = Some(h.seq.wrapping_add(len as u32));
                    dir.order.push((h.seq, dir.data_sent));
                    dir.data_sent += 1;
                    Some(dir.data_sent - 1)
                } else {
                    dir.order.iter().rev().find(|o| o.0 == h.seq).map(|o| o.1)
                };
                if fresh && nth.is_some_and(|n| dir.drop_nth.contains(&n)) {
                    continue;
                }
                if let Some((list, until)) = &dir.drop_all_until {
                    if now < *until && nth.is_some_and(|n| list.contains(&n)) {
                        continue;
                    }
                }
            }
            if self.random() < self.loss {
                continue;
            }
            let mut at = self.now + self.latency;
            if self.random() < self.reorder {
                at += 1 + (self.random() * 4.0) as u64;
            }
            self.queue.push((at, from_a, src, dst, bytes));
        }
    }

    /// Polls both engines and puts what they sent on the wire.
    pub fn poll(&mut self) {
        self.a.poll(self.now);
        self.b.poll(self.now);
        self.collect(true);
        self.collect(false);
    }

    /// Connects A to B's port 80 and moves `up` from A to B and `down` from B to A; `observe`
    /// sees the link and A's connection after every step. Returns what B and A received.
    pub fn transfer(
        &mut self,
        up: &[u8],
        down: &[u8],
        mut observe: impl FnMut(&Link, Handle),
    ) -> (Vec<u8>, Vec<u8>, Handle) {
        // A test may have opened (and filled) the listener already.
        let _ = self.b.listen(80, self.backlog);
        let ha = self.a.connect((A, 40_000), (B, 80), self.now).unwrap();
        if let Some(algorithm) = self.algorithm_a {
            self.a.set_congestion_control(ha, algorithm).unwrap();
        }
        let (mut sent_up, mut sent_down) = (0, 0);
        let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
        let mut steps = 0u64;
        while got_up.len() < up.len() || got_down.len() < down.len() {
            steps += 1;
            assert!(steps < 5_000_000 && self.now < 600_000, "stalled at {} ms", self.now);
            for e in self.b.take_events().collect::<Vec<_>>() {
                if let EventKind::Accepted(_) = e.kind {
                    self.b.accept(e.handle).unwrap();
                    self.hb = Some(e.handle);
                }
            }
            self.a.take_events().for_each(drop);
            let mut buf = vec![0u8; 65_536];
            while sent_up < up.len() {
                match self.a.send(ha, &up[sent_up..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sent_up += n,
                }
            }
            while let Ok(n @ 1..) = self.a.recv(ha, &mut buf) {
                got_down.extend_from_slice(&buf[..n]);
            }
            if let Some(hb) = self.hb {
                while sent_down < down.len() {
                    match self.b.send(hb, &down[sent_down..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sent_down += n,
                    }
                }
                while let Ok(n @ 1..) = self.b.recv(hb, &mut buf) {
                    got_up.extend_from_slice(&buf[..n]);
                }
            }
            self.poll();
            observe(self, ha);
            let now = self.now;
            let (due, rest): (Vec<Packet>, Vec<Packet>) =
                std::mem::take(&mut self.queue).into_iter().partition(|p| p.0 <= now);
            self.queue = rest;
            for (_, to_b, src, dst, bytes) in &due {
                if *to_b {
                    self.b.on_segment(*src, *dst, bytes, now);
                } else {
                    self.a.on_segment(*src, *dst, bytes, now);
                }
                if !self.batched {
                    self.poll();
                    observe(self, ha);
                }
            }
            if due.is_empty() && !self.a.has_pending() && !self.b.has_pending() {
                let next =
                    [self.queue.iter().map(|p| p.0).min(), self.a.next_deadline(), self.b.next_deadline()]
                        .into_iter()
                        .flatten()
                        .min();
                self.now = match next {
                    Some(t) if t > self.now => t,
                    _ => self.now + 1,
                };
            }
        }
        (got_up, got_down, ha)
    }
}

/// A reproducible byte pattern.
pub fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 509 + seed) as u8).collect()
}
