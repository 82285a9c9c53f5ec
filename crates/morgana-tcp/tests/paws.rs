//! PAWS (RFC 7323 §5): segments whose timestamp is older than TS.Recent are old duplicates,
//! dropped and answered with an ACK, whatever their sequence number says; TS.Recent goes stale
//! after 24 days idle; RSTs and recent reordered duplicate ACKs are exempt; the ACKs answering
//! rejected pure ACKs are rate-limited.

mod common;

use morgana_tcp::engine::ErrorCode;
use morgana_tcp::wire::{TcpHeader, ACK, PSH, RST};
use morgana_tcp::{Config, Engine, EventKind, Handle, IpAddr};
use std::net::Ipv4Addr;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const DAY_MS: u64 = 24 * 3600 * 1000;

struct Pair {
    a: Engine,
    b: Engine,
    ha: Handle,
    hb: Handle,
    now: u64,
    /// The last segment B sent to A (header only).
    last_b: Option<TcpHeader>,
}

impl Pair {
    fn new() -> Self {
        let mut a = Engine::new(Config::default(), [1; 16]);
        let mut b = Engine::new(Config::default(), [2; 16]);
        a.listen(80, 8).unwrap();
        let hb = b.connect((B, 50_000), (A, 80), 0).unwrap();
        let mut p = Pair { a, b, ha: 0, hb, now: 0, last_b: None };
        p.shuttle();
        p.ha = p.a.take_events().find(|e| matches!(e.kind, EventKind::Accepted(_))).unwrap().handle;
        p.a.accept(p.ha).unwrap();
        p.b.take_events().for_each(drop);
        p
    }

    /// Moves segments both ways until both engines are quiet.
    fn shuttle(&mut self) {
        let last_b = &mut self.last_b;
        common::shuttle(&mut self.a, &mut self.b, self.now, |h| *last_b = Some(h));
    }

    /// B sends `data` the normal way at the current time; A's delayed ACK follows 50 ms later.
    fn b_sends(&mut self, data: &[u8]) {
        self.b.send(self.hb, data).unwrap();
        self.shuttle();
        let last = self.last_b.unwrap();
        self.now += 50;
        self.shuttle();
        assert_eq!(self.last_b, Some(last), "B's last segment is its data");
    }

    fn a_reads(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        let n = self.a.recv(self.ha, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    /// A segment from B next in sequence (as B's last one, past its data), with TSval `tsval`.
    fn forged(&self, flags: u8, tsval: u32, payload_after: u32) -> TcpHeader {
        let mut h = self.last_b.unwrap();
        h.seq = h.seq.wrapping_add(payload_after);
        h.flags = flags;
        h.options.sack_count = 0;
        let ecr = h.options.timestamps.unwrap().1;
        h.options.timestamps = Some((tsval, ecr));
        h
    }

    /// Hands a forged segment to A; returns what A sent in answer.
    fn inject(&mut self, h: &TcpHeader, payload: &[u8]) -> Vec<TcpHeader> {
        common::inject(&mut self.a, h, payload, B, A, self.now);
        common::drain(&mut self.a)
            .into_iter()
            .map(|(src, dst, bytes)| TcpHeader::parse(&bytes, Some((src, dst))).unwrap().0)
            .collect()
    }

    fn tsval(&self) -> u32 {
        self.last_b.unwrap().options.timestamps.unwrap().0
    }
}

#[test]
fn an_old_timestamp_is_rejected_and_acknowledged_whatever_its_sequence_number() {
    let mut p = Pair::new();
    p.b_sends(b"hello");
    assert_eq!(p.a_reads(), b"hello");
    let old = p.tsval();
    p.now += 1_000;
    p.b_sends(b"world");
    assert_eq!(p.a_reads(), b"world");
    let recent = p.tsval();
    assert_eq!(recent.wrapping_sub(old), 1_050, "B's timestamp clock ticks in ms");
    let rcv_nxt = p.last_b.unwrap().seq.wrapping_add(5);
    // The next sequence number, in the window, but stamped before "world": an old duplicate.
    let replay = p.forged(ACK | PSH, old, 5);
    let answer = p.inject(&replay, b"stale");
    assert_eq!(p.a_reads(), b"", "the data is dropped");
    assert_eq!(answer.len(), 1, "one ACK in reply (R1)");
    assert!(answer[0].has(ACK) && answer[0].ack == rcv_nxt, "{answer:?} {rcv_nxt}");
    assert_eq!(p.a.stats().paws_rejected, 1);
    assert_eq!(p.a.conn_stats(p.ha).unwrap().paws_rejected, 1);
    // The same segment stamped TS.Recent is accepted.
    let fresh = p.forged(ACK | PSH, recent, 5);
    p.inject(&fresh, b"fresh");
    assert_eq!(p.a_reads(), b"fresh");
    assert_eq!(p.a.stats().paws_rejected, 1);
}

#[test]
fn after_24_days_idle_ts_recent_is_invalid() {
    let mut p = Pair::new();
    p.b_sends(b"hello");
    p.a_reads();
    // A peer whose timestamp clock wrapped or restarted: its TSval is now far below TS.Recent.
    let wrapped = p.tsval().wrapping_sub(0x4000_0000);
    p.now += 23 * DAY_MS;
    p.inject(&p.forged(ACK | PSH, wrapped, 5), b"early");
    assert_eq!(p.a_reads(), b"", "23 days: still rejected");
    assert_eq!(p.a.stats().paws_rejected, 1);
    p.now += 2 * DAY_MS;
    p.inject(&p.forged(ACK | PSH, wrapped, 5), b"later");
    assert_eq!(p.a_reads(), b"later", "25 days: TS.Recent is stale, the segment is accepted");
    // And TS.Recent follows the peer's new clock.
    p.inject(&p.forged(ACK | PSH, wrapped.wrapping_add(1), 10), b"again");
    assert_eq!(p.a_reads(), b"again");
    assert_eq!(p.a.stats().paws_rejected, 1);
}

#[test]
fn rejected_pure_acks_are_answered_at_most_every_500_ms() {
    let mut p = Pair::new();
    p.b_sends(b"hello");
    p.a_reads();
    p.now += 10_000;
    p.b_sends(b"world");
    p.a_reads();
    let old = p.tsval().wrapping_sub(10_000);
    let ack = p.forged(ACK, old, 5);
    let answers: usize = (0..3).map(|_| p.inject(&ack, &[]).len()).sum();
    assert_eq!(answers, 1, "one ACK for three rejected pure ACKs");
    assert_eq!(p.a.stats().paws_rejected, 3);
    p.now += 500;
    assert_eq!(p.inject(&ack, &[]).len(), 1, "the next one 500 ms later");
    // Data segments are always answered (no ACK loop risk: data does not answer ACKs).
    let data = p.forged(ACK | PSH, old, 5);
    assert_eq!(p.inject(&data, b"x").len(), 1);
    assert_eq!(p.inject(&data, b"x").len(), 1);
    assert_eq!(p.a.stats().paws_rejected, 6);
}

#[test]
fn a_recent_reordered_duplicate_ack_and_a_reset_pass() {
    let mut p = Pair::new();
    p.b_sends(b"hello");
    p.a_reads();
    p.now += 50;
    p.b_sends(b"world");
    p.a_reads();
    // A duplicate ACK stamped a little before TS.Recent (reordered on the way): not rejected.
    let dup = p.forged(ACK, p.tsval() - 20, 5);
    assert!(p.inject(&dup, &[]).is_empty());
    assert_eq!(p.a.stats().paws_rejected, 0);
    // A RST with an old timestamp still resets (RFC 7323 §5.2: RSTs are exempt).
    let rst = p.forged(RST | ACK, p.tsval().wrapping_sub(100_000), 5);
    p.inject(&rst, &[]);
    assert_eq!(p.a.stats().paws_rejected, 0);
    let events: Vec<_> = p.a.take_events().map(|e| e.kind).collect();
    assert!(events.contains(&EventKind::Error(ErrorCode::ConnectionReset)), "{events:?}");
}
