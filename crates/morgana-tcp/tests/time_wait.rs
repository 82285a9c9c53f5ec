//! TIME_WAIT reuse (RFC 6191, as Linux decides it): a new SYN for a connection waiting in
//! TIME_WAIT opens a new incarnation when its sequence number is above the old RCV.NXT or its
//! timestamp is newer than the old TS.Recent, unless PAWS says it is old; the new ISS starts
//! beyond the old sequence space.

mod common;

use common::link::{A, B};
use morgana_tcp::wire::{TcpHeader, TcpOptions, ACK, FIN, SYN};
use morgana_tcp::{Config, Engine, EventKind, Handle};

struct Pair {
    a: Engine,
    b: Engine,
    now: u64,
    /// Every segment B sent.
    from_b: Vec<TcpHeader>,
}

impl Pair {
    fn new(cfg_a: Config) -> Self {
        let mut b = Engine::new(Config::default(), [2; 16]);
        b.listen(80, 8).unwrap();
        Pair { a: Engine::new(cfg_a, [1; 16]), b, now: 0, from_b: Vec::new() }
    }

    /// Exchanges segments (no delay) until both engines are quiet.
    fn shuttle(&mut self) {
        let from_b = &mut self.from_b;
        common::shuttle(&mut self.a, &mut self.b, self.now, |h| from_b.push(h));
    }

    /// Opens A:40000 → B:80 and moves `data`; returns both handles.
    fn open(&mut self, data: &[u8]) -> (Handle, Handle) {
        let ha = self.a.connect((A, 40_000), (B, 80), self.now).unwrap();
        self.shuttle();
        let hb =
            self.b.take_events().find(|e| matches!(e.kind, EventKind::Accepted(_))).expect("accepted").handle;
        self.b.accept(hb).unwrap();
        self.a.take_events().for_each(drop);
        self.a.send(ha, data).unwrap();
        self.shuttle();
        let mut buf = [0u8; 100];
        let n = self.b.recv(hb, &mut buf).unwrap();
        assert_eq!(&buf[..n], data);
        (ha, hb)
    }

    /// B closes first (so B waits in TIME_WAIT), then A. Returns B's old SND.MAX.
    fn close_from_b(&mut self, ha: Handle, hb: Handle) -> u32 {
        self.close_from_b_keeping(ha, hb, false)
    }

    /// As `close_from_b`; with `keep`, B's application half-closes and keeps its handle.
    fn close_from_b_keeping(&mut self, ha: Handle, hb: Handle, keep: bool) -> u32 {
        if keep {
            self.b.shutdown(hb).unwrap();
        } else {
            self.b.close(hb).unwrap();
        }
        self.shuttle();
        self.a.close(ha).unwrap();
        self.shuttle();
        assert_eq!(self.b.stats().time_wait, 1);
        assert_eq!(self.a.stats().connections, 0, "A's side is gone: its port is free again");
        let fin = self.from_b.iter().rev().find(|h| h.has(FIN)).unwrap();
        fin.seq.wrapping_add(1)
    }

    fn syn_from_a(&mut self, seq: u32, timestamps: Option<(u32, u32)>) {
        let options = TcpOptions { mss: Some(1460), timestamps, ..TcpOptions::default() };
        common::inject(&mut self.b, &common::syn(40_000, seq, options), &[], A, B, self.now);
    }
}

#[test]
fn a_new_syn_with_a_newer_timestamp_reopens_a_time_wait_connection() {
    let mut p = Pair::new(Config::default());
    let (ha, hb) = p.open(b"first");
    let old_snd_max = p.close_from_b(ha, hb);
    p.now += 1_000;
    // The same 4-tuple again, 1 s later, well within the 60 s TIME_WAIT.
    let syn_acks_before = p.from_b.iter().filter(|h| h.has(SYN)).count();
    p.open(b"second");
    let s = p.b.stats();
    assert_eq!((s.time_wait_recycled, s.time_wait, s.passive_opens), (1, 0, 2));
    // The new ISS lies beyond everything the old incarnation sent (as Linux: + 2^16 + 1).
    let syn_ack = p.from_b.iter().filter(|h| h.has(SYN)).nth(syn_acks_before).unwrap();
    assert_eq!(syn_ack.seq, old_snd_max.wrapping_add(65_537));
    // The old connection, which the application had closed, is gone.
    assert!(p.b.info(hb).is_none());
}

#[test]
fn without_timestamps_the_sequence_number_decides() {
    let mut p = Pair::new(Config { timestamps: false, ..Config::default() });
    let (ha, hb) = p.open(b"first");
    p.close_from_b(ha, hb);
    assert!(!p.b.conn_stats(hb).unwrap().timestamps);
    // A replay of the old SYN (sequence number below the old RCV.NXT) is no new incarnation: it
    // gets an ACK (RFC 5961 §4) and TIME_WAIT stays.
    let old_syn_seq = p.from_b.first().unwrap().ack.wrapping_sub(1);
    p.now += 1_000;
    p.syn_from_a(old_syn_seq, None);
    let answer: Vec<_> = common::drain(&mut p.b);
    assert_eq!(answer.len(), 1);
    let (h, _) = TcpHeader::parse(&answer[0].2, Some((B, A))).unwrap();
    assert_eq!(h.flags, ACK, "an ACK, not a SYN-ACK");
    assert_eq!((p.b.stats().time_wait, p.b.stats().time_wait_recycled), (1, 0));
    // A's real reconnect: its RFC 6528 ISN has moved on by 250 per ms, above the old RCV.NXT.
    p.open(b"second");
    assert_eq!((p.b.stats().time_wait, p.b.stats().time_wait_recycled), (0, 1));
}

#[test]
fn paws_keeps_time_wait_against_an_old_timestamp_even_with_a_higher_sequence_number() {
    let mut p = Pair::new(Config::default());
    let (ha, hb) = p.open(b"first");
    p.close_from_b(ha, hb);
    // A's last TSval as B saw it: the TSecr of B's last segment.
    let ts_recent = p.from_b.last().unwrap().options.timestamps.unwrap().1;
    let rcv_nxt = p.from_b.last().unwrap().ack;
    p.now += 1_000;
    p.syn_from_a(rcv_nxt.wrapping_add(1_000_000), Some((ts_recent.wrapping_sub(10), 0)));
    assert_eq!((p.b.stats().time_wait, p.b.stats().time_wait_recycled), (1, 0));
    // Same sequence number, a newer timestamp: accepted.
    p.b.clear_output();
    p.syn_from_a(rcv_nxt.wrapping_add(1_000_000), Some((ts_recent.wrapping_add(10), 0)));
    assert_eq!((p.b.stats().time_wait, p.b.stats().time_wait_recycled), (0, 1));
    let out = common::drain(&mut p.b);
    let (syn_ack, _) = TcpHeader::parse(&out[0].2, Some((B, A))).unwrap();
    assert_eq!(syn_ack.flags, SYN | ACK);
    // Equal timestamps but a higher sequence number would pass too (Linux's rule); a SYN that
    // is neither newer nor higher does not (checked above with the replayed SYN).
}

#[test]
fn without_a_listener_time_wait_is_kept() {
    let mut p = Pair::new(Config::default());
    let (ha, hb) = p.open(b"first");
    p.close_from_b(ha, hb);
    p.b.unlisten(80);
    p.now += 1_000;
    let rcv_nxt = p.from_b.last().unwrap().ack;
    p.syn_from_a(rcv_nxt.wrapping_add(1_000_000), None);
    assert_eq!((p.b.stats().time_wait, p.b.stats().time_wait_recycled), (1, 0));
}

#[test]
fn an_application_still_holding_the_old_handle_sees_it_closed() {
    let mut p = Pair::new(Config::default());
    let (ha, hb) = p.open(b"first");
    p.close_from_b_keeping(ha, hb, true);
    p.b.take_events().for_each(drop);
    p.now += 1_000;
    let (_, hb2) = p.open(b"second");
    assert_ne!(hb, hb2);
    assert_eq!(p.b.stats().time_wait_recycled, 1);
    assert_eq!(p.b.info(hb).map(|i| i.state), Some(morgana_tcp::conn::State::Closed));
    p.b.release(hb);
    assert!(p.b.info(hb).is_none());
}
