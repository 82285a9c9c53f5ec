//! Two engines wired together through a simulated link on a virtual clock: loss, duplication,
//! reordering and delay are injected from a seeded generator, so every run is reproducible.

mod common;

use morgana_tcp::conn::State;
use morgana_tcp::engine::ErrorCode;
use morgana_tcp::{Config, Engine, Event, EventKind, Handle, KeepAlive};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

struct Packet {
    at: u64,
    to_b: bool,
    src: IpAddr,
    dst: IpAddr,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct App {
    to_send: Vec<u8>,
    sent: usize,
    shutdown_when_sent: bool,
    shut: bool,
    received: Vec<u8>,
    reading: bool,
    events: Vec<Event>,
    times: Vec<u64>,
    handle: Option<Handle>,
}

impl App {
    fn new() -> Self {
        App { reading: true, ..App::default() }
    }
}

struct Net {
    a: Engine,
    b: Engine,
    /// The engines' addresses (one family).
    addr_a: IpAddr,
    addr_b: IpAddr,
    app_a: App,
    app_b: App,
    now: u64,
    rng: u64,
    loss: f64,
    dup: f64,
    reorder: f64,
    latency: u64,
    link_up: bool,
    drop_pure_acks: bool,
    queue: Vec<Packet>,
    delivered: u64,
    /// Cut super-segments (generic segmentation offload) at their MSS before the link, as a
    /// device without TSO would; otherwise they cross whole (a coalescing receiver).
    cut_super: bool,
    /// Super-segments the engines produced.
    supers: u64,
}

impl Net {
    fn new(cfg: Config) -> Self {
        Self::with_time(cfg, 0)
    }

    /// The same link with IPv6 addresses.
    fn new6(cfg: Config) -> Self {
        Net { addr_a: A6, addr_b: B6, ..Self::with_time(cfg, 0) }
    }

    fn with_time(cfg: Config, now: u64) -> Self {
        Net {
            a: Engine::new(cfg.clone(), [1; 16]),
            b: Engine::new(cfg, [2; 16]),
            addr_a: A,
            addr_b: B,
            app_a: App::new(),
            app_b: App::new(),
            now,
            rng: 0x2545_f491_4f6c_dd1d,
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            latency: 1,
            link_up: true,
            drop_pure_acks: false,
            queue: Vec::new(),
            delivered: 0,
            cut_super: true,
            supers: 0,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn drive_app(engine: &mut Engine, app: &mut App, now: u64) {
        let events: Vec<Event> = engine.take_events().collect();
        for e in &events {
            match e.kind {
                EventKind::Accepted(_) => {
                    engine.accept(e.handle).unwrap();
                    app.handle = Some(e.handle);
                }
                EventKind::Connected => app.handle = Some(e.handle),
                _ => {}
            }
        }
        app.times.extend(events.iter().map(|_| now));
        app.events.extend(events);
        let Some(h) = app.handle else { return };
        if engine.info(h).is_none() {
            return;
        }
        if app.reading {
            let mut buf = [0u8; 8192];
            loop {
                match engine.recv(h, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => app.received.extend_from_slice(&buf[..n]),
                }
            }
        }
        while app.sent < app.to_send.len() {
            match engine.send(h, &app.to_send[app.sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => app.sent += n,
            }
        }
        if app.shutdown_when_sent && !app.shut && app.sent == app.to_send.len() {
            app.shut = true;
            engine.shutdown(h).unwrap();
        }
    }

    fn collect(&mut self, from_a: bool) {
        let engine = if from_a { &mut self.a } else { &mut self.b };
        let mut wire = Vec::new();
        for (src, dst, bytes, gso) in common::drain_gso(engine) {
            if gso == 0 || !self.cut_super {
                self.supers += u64::from(gso > 0);
                wire.push((src, dst, bytes));
                continue;
            }
            self.supers += 1;
            let (s, d) = (octets(src), octets(dst));
            let mut out = vec![0u8; bytes.len() * 2 + 4096];
            let mut lengths = [0u32; 64];
            let n = morgana_net::gso::segment_tcp(&bytes, &s, &d, usize::from(gso), &mut out, &mut lengths)
                .unwrap();
            let mut at = 0;
            for &len in &lengths[..n] {
                wire.push((src, dst, out[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        for (src, dst, bytes) in wire {
            if !self.link_up || self.random() < self.loss {
                continue;
            }
            let header_len = usize::from(bytes[12] >> 4) * 4;
            if self.drop_pure_acks && bytes.len() == header_len && bytes[13] == 0x10 {
                continue;
            }
            let mut delay = self.latency;
            if self.random() < self.reorder {
                delay += 1 + (self.random() * 5.0) as u64;
            }
            if self.random() < self.dup {
                self.queue.push(Packet {
                    at: self.now + delay + 1,
                    to_b: from_a,
                    src,
                    dst,
                    bytes: bytes.clone(),
                });
            }
            self.queue.push(Packet { at: self.now + delay, to_b: from_a, src, dst, bytes });
        }
    }

    /// One step: apps act, engines poll, segments move, time advances to the next thing to do.
    fn step(&mut self) {
        self.a.poll(self.now);
        self.b.poll(self.now);
        Self::drive_app(&mut self.a, &mut self.app_a, self.now);
        Self::drive_app(&mut self.b, &mut self.app_b, self.now);
        self.a.poll(self.now);
        self.b.poll(self.now);
        self.collect(true);
        self.collect(false);
        let now = self.now;
        let (due, rest): (Vec<Packet>, Vec<Packet>) =
            std::mem::take(&mut self.queue).into_iter().partition(|p| p.at <= now);
        self.queue = rest;
        for p in &due {
            self.delivered += 1;
            if p.to_b {
                self.b.on_segment(p.src, p.dst, &p.bytes, now);
            } else {
                self.a.on_segment(p.src, p.dst, &p.bytes, now);
            }
        }
        if due.is_empty() && !self.a.has_pending() && !self.b.has_pending() {
            let next =
                [self.queue.iter().map(|p| p.at).min(), self.a.next_deadline(), self.b.next_deadline()]
                    .into_iter()
                    .flatten()
                    .min();
            match next {
                Some(t) if t > self.now => self.now = t,
                Some(_) => {}
                None => self.now += 1000,
            }
        }
    }

    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Net) -> bool) {
        let end = self.now + limit_ms;
        let mut steps = 0u64;
        while !done(self) {
            assert!(self.now < end, "timed out at {} ms", self.now);
            steps += 1;
            assert!(steps < 50_000_000, "livelock");
            self.step();
        }
    }

    fn connect(&mut self) -> Handle {
        self.b.listen(80, 16).unwrap();
        let h = self.a.connect((self.addr_a, 40_000), (self.addr_b, 80), self.now).unwrap();
        self.run_until(10_000, |n| n.app_a.handle.is_some() && n.app_b.handle.is_some());
        h
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn has(app: &App, kind: EventKind) -> bool {
    app.events.iter().any(|e| e.kind == kind)
}

fn bulk(net: &mut Net, bytes: usize) {
    bulk2(net, bytes, bytes)
}

fn bulk2(net: &mut Net, bytes: usize, back: usize) {
    net.connect();
    net.app_a.to_send = pattern(bytes, 1);
    net.app_b.to_send = pattern(back, 2);
    net.app_a.shutdown_when_sent = true;
    net.app_b.shutdown_when_sent = true;
    net.run_until(3_600_000, |n| {
        n.app_b.received.len() == bytes
            && n.app_a.received.len() == back
            && has(&n.app_a, EventKind::Closed)
            && has(&n.app_b, EventKind::Closed)
    });
    assert!(net.app_b.received == net.app_a.to_send);
    assert!(net.app_a.received == net.app_b.to_send);
    assert!(has(&net.app_a, EventKind::PeerClosed) && has(&net.app_b, EventKind::PeerClosed));
}

#[test]
fn bulk_transfer_clean() {
    let mut net = Net::new(Config::default());
    bulk(&mut net, 4 << 20);
    let s = net.a.stats();
    assert_eq!(s.retransmits, 0);
    assert_eq!(s.bad_checksum, 0);
}

#[test]
fn bulk_transfer_with_loss_reordering_duplication() {
    let mut net = Net::new(Config::default());
    net.loss = 0.02;
    net.dup = 0.01;
    net.reorder = 0.02;
    net.latency = 2;
    bulk(&mut net, 2 << 20);
    assert!(net.a.stats().retransmits > 0);
    // One direction: ACKs are pure, so duplicate ACKs drive fast retransmit.
    let mut net = Net::new(Config::default());
    net.loss = 0.02;
    net.dup = 0.01;
    net.reorder = 0.02;
    net.latency = 2;
    bulk2(&mut net, 4 << 20, 0);
    let s = net.a.stats();
    assert!(s.fast_retransmits > 0, "{s:?}");
}

/// Generic segmentation offload: super-segments cut at the MSS before a lossy, reordering,
/// duplicating link (a device without TSO, or a switch injecting faults per wire segment).
#[test]
fn gso_super_segments_cut_before_a_lossy_link() {
    for v6 in [false, true] {
        let cfg = Config { gso_max: 65_000, ..Config::default() };
        let mut net = if v6 { Net::new6(cfg) } else { Net::new(cfg) };
        net.loss = 0.01;
        net.dup = 0.01;
        net.reorder = 0.01;
        net.latency = 2;
        bulk(&mut net, 4 << 20);
        assert!(net.supers > 0, "no super-segment was produced");
        assert!(net.a.stats().retransmits > 0);
        assert_eq!(net.b.stats().bad_checksum, 0);
    }
}

/// Super-segments delivered whole (a coalescing receiver), on a clean link and on one that
/// loses, duplicates and reorders whole super-segments.
#[test]
fn gso_super_segments_delivered_whole() {
    for loss in [0.0, 0.02] {
        let cfg = Config { gso_max: 65_000, ..Config::default() };
        let mut net = Net::new(cfg);
        net.cut_super = false;
        net.loss = loss;
        net.dup = loss / 2.0;
        net.reorder = loss;
        bulk(&mut net, 4 << 20);
        assert!(net.supers > 0, "no super-segment was produced");
        let s = net.a.stats();
        // Counted per MSS-sized segment: 4 MiB is at least 2,897 segments of 1,448 bytes.
        assert!(s.segments_out >= (4 << 20) / 1448, "{s:?}");
        assert_eq!(s.bad_checksum, 0);
    }
}

#[test]
fn bulk_transfer_heavy_loss_small_buffers() {
    let cfg =
        Config { recv_buffer: 16 * 1024, send_buffer: 16 * 1024, max_out_of_order: 4, ..Config::default() };
    let mut net = Net::new(cfg);
    net.loss = 0.1;
    net.reorder = 0.1;
    net.dup = 0.05;
    bulk(&mut net, 256 * 1024);
}

#[test]
fn without_timestamps_and_window_scaling_peer() {
    let cfg = Config { timestamps: false, recv_buffer: 60_000, ..Config::default() };
    let mut net = Net::new(cfg);
    net.loss = 0.01;
    bulk(&mut net, 1 << 20);
}

#[test]
fn sequence_numbers_wrap() {
    // Choose the start time so that A's ISN lies just below 2^32.
    let key = [1u8; 16];
    let f = morgana_tcp::isn::initial_sequence(&key, (A, 40_000), (B, 80), 0);
    let now = u64::from(0u32.wrapping_sub(100_000).wrapping_sub(f)) / 250;
    let mut net = Net::with_time(Config::default(), now);
    let isn = morgana_tcp::isn::initial_sequence(&key, (A, 40_000), (B, 80), now);
    assert!(isn > u32::MAX - 200_000, "isn {isn:#x}");
    net.loss = 0.01;
    bulk(&mut net, 1 << 20);
}

#[test]
fn closed_port_refuses() {
    let mut net = Net::new(Config::default());
    let h = net.a.connect((A, 40_001), (B, 81), 0).unwrap();
    net.app_a.handle = Some(h);
    net.run_until(5_000, |n| !n.app_a.events.is_empty());
    assert_eq!(net.app_a.events[0].kind, EventKind::Error(ErrorCode::ConnectionRefused));
    assert_eq!(net.b.stats().closed_port, 1);
}

#[test]
fn connect_times_out() {
    let mut net = Net::new(Config { syn_retries: 3, ..Config::default() });
    net.link_up = false;
    let h = net.a.connect((A, 40_001), (B, 80), 0).unwrap();
    net.app_a.handle = Some(h);
    net.run_until(600_000, |n| !n.app_a.events.is_empty());
    assert_eq!(net.app_a.events[0].kind, EventKind::Error(ErrorCode::TimedOut));
    // 1 + 2 + 4 + 8 s of RTO.
    assert_eq!(net.app_a.times[0], 15_000);
}

#[test]
fn half_close_both_directions_and_time_wait() {
    let mut net = Net::new(Config { time_wait_ms: 4_000, ..Config::default() });
    let h = net.connect();
    net.app_a.to_send = b"request".to_vec();
    net.app_a.shutdown_when_sent = true;
    net.run_until(5_000, |n| has(&n.app_b, EventKind::PeerClosed));
    assert_eq!(net.app_b.received, b"request");
    // B can still send after A's FIN.
    net.app_b.to_send = b"response after half-close".to_vec();
    net.run_until(5_000, |n| n.app_a.received.len() == 25);
    assert!(!has(&net.app_a, EventKind::Closed));
    net.app_b.shutdown_when_sent = true;
    net.run_until(5_000, |n| has(&n.app_a, EventKind::Closed) && has(&n.app_b, EventKind::Closed));
    assert_eq!(net.a.info(h).unwrap().state, State::TimeWait);
    assert_eq!(net.a.stats().time_wait, 1);
    let entered = net.app_a.times[net.app_a.events.iter().position(|e| e.kind == EventKind::Closed).unwrap()];
    net.a.poll(entered + 3_999);
    assert_eq!(net.a.info(h).unwrap().state, State::TimeWait);
    net.a.poll(entered + 4_000);
    assert_eq!(net.a.info(h).unwrap().state, State::Closed);
    net.a.release(h);
    assert_eq!(net.a.stats().connections, 0);
}

#[test]
fn zero_window_then_resume() {
    let mut net = Net::new(Config { recv_buffer: 32 * 1024, ..Config::default() });
    net.connect();
    net.app_b.reading = false;
    net.app_a.to_send = pattern(2_000_000, 3);
    let start = net.now;
    net.run_until(120_000, |n| n.now > start + 20_000);
    assert!(net.a.stats().window_probes >= 2, "{:?}", net.a.stats());
    assert!(net.app_a.sent < 2_000_000);
    net.app_b.reading = true;
    net.run_until(120_000, |n| n.app_b.received.len() == 2_000_000);
    assert!(net.app_b.received == net.app_a.to_send);
}

#[test]
fn zero_window_update_lost() {
    // Window updates can be lost; the persist timer must recover.
    let mut net = Net::new(Config { recv_buffer: 16 * 1024, ..Config::default() });
    net.connect();
    net.app_b.reading = false;
    net.app_a.to_send = pattern(100_000, 4);
    let start = net.now;
    net.run_until(60_000, |n| n.now > start + 2_000);
    net.link_up = false;
    net.app_b.reading = true;
    net.step();
    net.step();
    net.link_up = true;
    net.run_until(300_000, |n| n.app_b.received.len() == 100_000);
}

#[test]
fn keepalive_detects_vanished_peer() {
    let mut net = Net::new(Config::default());
    let h = net.connect();
    net.a
        .set_keepalive(h, Some(KeepAlive { idle_ms: 10_000, interval_ms: 1_000, count: 3 }), net.now)
        .unwrap();
    // Probes are answered while the peer is there.
    let start = net.now;
    net.run_until(60_000, |n| n.now >= start + 30_000);
    assert!(net.a.stats().keepalive_probes >= 2);
    assert!(net.app_a.events.iter().all(|e| !matches!(e.kind, EventKind::Error(_))));
    net.link_up = false;
    let gone = net.now;
    net.run_until(60_000, |n| has(&n.app_a, EventKind::Error(ErrorCode::TimedOut)));
    assert!(net.now - gone <= 10_000 + 3_000 + 1_000);
}

#[test]
fn simultaneous_open() {
    let mut net = Net::new(Config::default());
    let ha = net.a.connect((A, 5000), (B, 6000), 0).unwrap();
    let hb = net.b.connect((B, 6000), (A, 5000), 0).unwrap();
    net.run_until(10_000, |n| has(&n.app_a, EventKind::Connected) && has(&n.app_b, EventKind::Connected));
    assert_eq!(net.app_a.handle, Some(ha));
    assert_eq!(net.app_b.handle, Some(hb));
    net.app_a.to_send = b"hello".to_vec();
    net.run_until(5_000, |n| n.app_b.received == b"hello");
}

#[test]
fn blind_reset_gets_challenge_ack() {
    use morgana_tcp::wire::{TcpHeader, RST};
    let mut net = Net::new(Config::default());
    let h = net.connect();
    let info = net.a.info(h).unwrap();
    // An RST with a sequence number that is in the window but not exactly RCV.NXT.
    let forged = TcpHeader {
        src_port: info.remote.1,
        dst_port: info.local.1,
        seq: 12345,
        flags: RST,
        ..TcpHeader::default()
    };
    let mut buf = [0u8; 60];
    let n = forged.emit(&mut buf, &[], B, A).unwrap();
    net.a.on_segment(B, A, &buf[..n], net.now);
    net.a.poll(net.now);
    assert_eq!(net.a.info(h).unwrap().state, State::Established);
    net.app_a.to_send = b"still alive".to_vec();
    net.run_until(5_000, |n| n.app_b.received == b"still alive");
}

#[test]
fn abort_resets_peer() {
    let mut net = Net::new(Config::default());
    let h = net.connect();
    net.a.abort(h).unwrap();
    net.run_until(5_000, |n| has(&n.app_b, EventKind::Error(ErrorCode::ConnectionReset)));
}

#[test]
fn syn_queue_is_bounded() {
    use morgana_tcp::wire::{TcpHeader, SYN};
    let mut b = Engine::new(Config { syn_cookies: false, ..Config::default() }, [3; 16]);
    b.listen(80, 8).unwrap();
    for port in 1000..1100u16 {
        let syn = TcpHeader {
            src_port: port,
            dst_port: 80,
            seq: 1,
            flags: SYN,
            window: 1000,
            ..TcpHeader::default()
        };
        let mut buf = [0u8; 60];
        let n = syn.emit(&mut buf, &[], A, B).unwrap();
        b.on_segment(A, B, &buf[..n], 0);
    }
    b.poll(0);
    let s = b.stats();
    assert_eq!(s.half_open, 8);
    assert_eq!(s.syn_queue_drops, 92);
    // Half-open connections give up after their SYN-ACK retransmissions.
    for t in 1..200 {
        b.poll(t * 1000);
    }
    assert_eq!(b.stats().half_open, 0);
    assert_eq!(b.stats().connections, 0);
}

#[test]
fn many_connections() {
    let mut net = Net::new(Config::default());
    net.b.listen(80, 256).unwrap();
    let mut handles = Vec::new();
    for i in 0..200u16 {
        handles.push(net.a.connect((A, 10_000 + i), (B, 80), 0).unwrap());
    }
    net.run_until(10_000, |n| {
        n.app_a.events.iter().filter(|e| e.kind == EventKind::Connected).count() == 200
    });
    net.run_until(10_000, |n| n.b.stats().passive_opens == 200);
    assert_eq!(net.b.stats().connections, 200);
}

#[test]
fn orphaned_fin_wait_2_times_out() {
    let mut net = Net::new(Config { time_wait_ms: 5_000, ..Config::default() });
    let h = net.connect();
    // A closes its handle; B never closes its side.
    net.app_a.handle = None;
    net.a.close(h).unwrap();
    let start = net.now;
    net.run_until(20_000, |n| n.a.stats().connections == 0);
    assert!((5_000..=7_000).contains(&(net.now - start)), "{}", net.now - start);
    assert!(has(&net.app_b, EventKind::PeerClosed));
}

#[test]
fn idle_connection_footprint() {
    let size = std::mem::size_of::<morgana_tcp::conn::Conn>();
    eprintln!("Conn is {size} bytes");
    assert!(size < 1024);
}

#[test]
fn challenge_acks_are_rate_limited() {
    use morgana_tcp::wire::{TcpHeader, SYN};
    // One per connection per 500 ms (as Linux), and `challenge_ack_limit` per second engine-wide
    // (RFC 5961 §7): with a limit of 1, every other SYN 500 ms apart is challenged.
    let mut net = Net::new(Config { challenge_ack_limit: 1, ..Config::default() });
    let h = net.connect();
    let info = net.a.info(h).unwrap();
    let start = net.now;
    for i in 0..50 {
        let forged = TcpHeader {
            src_port: info.remote.1,
            dst_port: info.local.1,
            seq: i,
            flags: SYN,
            ..TcpHeader::default()
        };
        let mut buf = [0u8; 60];
        let n = forged.emit(&mut buf, &[], B, A).unwrap();
        net.a.on_segment(B, A, &buf[..n], start + u64::from(i) * 500);
        // A burst in between: the per-connection limit answers none of it.
        net.a.on_segment(B, A, &buf[..n], start + u64::from(i) * 500 + 1);
    }
    let s = net.a.stats();
    assert_eq!(s.challenge_acks, 25);
    assert_eq!(s.challenge_acks_suppressed, 75);
    assert_eq!(net.a.conn_stats(h).unwrap().acks_rate_limited, 50);
    assert_eq!(net.a.info(h).unwrap().state, State::Established);
}

#[test]
fn syn_flood_does_not_stop_a_legitimate_client() {
    use morgana_tcp::wire::{TcpHeader, SYN};
    let mut net = Net::new(Config::default());
    net.b.listen(80, 16).unwrap();
    // Thousands of SYNs from spoofed addresses and random ports: nobody will answer them.
    let mut x = 12345u32;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let spoofed = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 | (x & 0xffff)));
        let syn = TcpHeader {
            src_port: (x >> 16) as u16 | 1,
            dst_port: 80,
            seq: x,
            flags: SYN,
            window: 1000,
            ..TcpHeader::default()
        };
        let mut buf = [0u8; 60];
        let n = syn.emit(&mut buf, &[], spoofed, B).unwrap();
        net.b.on_segment(spoofed, B, &buf[..n], 0);
    }
    net.b.poll(0);
    net.b.clear_output();
    let s = net.b.stats();
    assert_eq!(s.half_open, 16);
    assert!(s.syn_cookies_sent > 4900, "{s:?}");
    // The queue is still full, yet a real client gets through (via a cookie) and moves data.
    let h = net.a.connect((A, 40_000), (B, 80), 0).unwrap();
    net.app_a.handle = Some(h);
    net.run_until(10_000, |n| has(&n.app_a, EventKind::Connected) && n.app_b.handle.is_some());
    assert_eq!(net.b.stats().syn_cookies_accepted, 1);
    net.app_a.to_send = pattern(300_000, 9);
    net.app_a.shutdown_when_sent = true;
    net.run_until(60_000, |n| n.app_b.received.len() == 300_000);
    assert!(net.app_b.received == net.app_a.to_send);
}

#[test]
fn forged_cookie_ack_is_reset() {
    use morgana_tcp::wire::{TcpHeader, ACK};
    let mut b = Engine::new(Config::default(), [3; 16]);
    b.listen(80, 8).unwrap();
    let ack = TcpHeader {
        src_port: 999,
        dst_port: 80,
        seq: 5,
        ack: 0xdead_beef,
        flags: ACK,
        window: 100,
        ..TcpHeader::default()
    };
    let mut buf = [0u8; 60];
    let n = ack.emit(&mut buf, &[], A, B).unwrap();
    b.on_segment(A, B, &buf[..n], 0);
    let s = b.stats();
    assert_eq!(s.syn_cookies_invalid, 1);
    assert_eq!(s.resets_sent, 1);
    assert_eq!(s.connections, 0);
}

#[test]
fn icmp_errors() {
    let mut net = Net::new(Config { syn_retries: 2, ..Config::default() });
    net.link_up = false;
    let h = net.a.connect((A, 40_002), (B, 80), 0).unwrap();
    net.app_a.handle = Some(h);
    net.step();
    // A quote with a wrong sequence number is ignored (RFC 5927).
    let mut quoted = [0u8; 8];
    quoted[0..2].copy_from_slice(&40_002u16.to_be_bytes());
    quoted[2..4].copy_from_slice(&80u16.to_be_bytes());
    net.a.on_icmp_error(A, B, &quoted, true, None, 0);
    assert_eq!(net.a.stats().icmp_ignored, 1);
    // Soft error, then the timeout reports EHOSTUNREACH.
    net.run_until(60_000, |n| !n.app_a.events.is_empty() || n.now > 100);
    // The SYN's sequence number: the ISN an identical engine picks.
    let info_seq = morgana_tcp::isn::initial_sequence(&[1; 16], (A, 40_002), (B, 80), 0);
    quoted[4..8].copy_from_slice(&info_seq.to_be_bytes());
    net.a.on_icmp_error(A, B, &quoted, false, None, net.now);
    assert_eq!(net.a.stats().icmp_errors, 1);
    net.run_until(60_000, |n| !n.app_a.events.is_empty());
    assert_eq!(net.app_a.events[0].kind, EventKind::Error(ErrorCode::HostUnreachable));
}

#[test]
fn path_mtu_discovery_shrinks_segments() {
    let mut net = Net::new(Config::default());
    let h = net.connect();
    net.app_a.to_send = pattern(100_000, 5);
    // Pretend a router on the way has MTU 1000: drop big segments and report each one.
    let mut reported = 0;
    let start = net.now;
    while net.app_b.received.len() < 100_000 {
        assert!(net.now < start + 60_000, "stalled");
        net.step();
        let mut big = Vec::new();
        net.queue.retain(|p| {
            if p.to_b && p.bytes.len() > 980 {
                big.push(p.bytes[..8].to_vec());
                false
            } else {
                true
            }
        });
        for quoted in big {
            reported += 1;
            net.a.on_icmp_error(A, B, &quoted, false, Some(1000), net.now);
        }
    }
    assert!(reported > 0);
    assert!(net.app_b.received == net.app_a.to_send);
    assert_eq!(net.a.stats().path_mtu_updates, 1);
    assert!(net.a.info(h).is_some());
}

#[test]
fn both_sides_retransmitting_after_lost_acks_do_not_deadlock() {
    // Each side receives all the other's data but every pure ACK is lost, so both time out and
    // go back to SND.UNA at once. Their ACKs must still be numbered so the peer accepts them.
    let mut net = Net::new(Config::default());
    net.connect();
    net.app_a.to_send = pattern(10_000, 11);
    net.app_b.to_send = pattern(10_000, 12);
    net.drop_pure_acks = true;
    net.run_until(30_000, |n| n.a.stats().timeouts >= 1 && n.b.stats().timeouts >= 1);
    net.drop_pure_acks = false;
    net.run_until(10_000, |n| {
        n.a.info(1).is_some_and(|i| i.writable == Config::default().send_buffer)
            && n.b.stats().connections == 1
            && n.app_a.received.len() == 10_000
            && n.app_b.received.len() == 10_000
    });
    let a = net.a.debug_summary(1).unwrap();
    assert!(a.contains("inrec=false"), "{a}");
}

// ---- IPv6 (issue 10): the same engine, addresses of the other family ----

/// Every segment an engine produced, parsed with its checksum verified over (src, dst).
fn parsed_output(engine: &mut Engine) -> Vec<(IpAddr, IpAddr, morgana_tcp::wire::TcpHeader, usize)> {
    use morgana_tcp::wire::TcpHeader;
    common::drain(engine)
        .into_iter()
        .map(|(src, dst, bytes)| {
            let (h, off) = TcpHeader::parse(&bytes, Some((src, dst))).expect("a valid segment");
            (src, dst, h, bytes.len() - off)
        })
        .collect()
}

#[test]
fn ipv6_bulk_transfer_clean() {
    let mut net = Net::new6(Config::default());
    bulk(&mut net, 4 << 20);
    let (a, b) = (net.a.stats(), net.b.stats());
    assert_eq!(a.retransmits, 0);
    assert_eq!(a.bad_checksum + b.bad_checksum + a.malformed + b.malformed, 0);
    assert!(b.bytes_in >= 4 << 20);
}

#[test]
fn ipv6_bulk_transfer_with_loss_reordering_duplication() {
    let mut net = Net::new6(Config::default());
    net.loss = 0.02;
    net.dup = 0.01;
    net.reorder = 0.02;
    net.latency = 2;
    bulk(&mut net, 2 << 20);
    assert!(net.a.stats().retransmits > 0);
}

#[test]
fn ipv6_segments_carry_the_ipv6_checksum_and_mss() {
    use morgana_tcp::wire::{TcpHeader, SYN};
    let mut a = Engine::new(Config::default(), [1; 16]);
    a.connect((A6, 40_000), (B6, 80), 0).unwrap();
    a.poll(0);
    let out = common::drain(&mut a);
    assert_eq!(out.len(), 1);
    let (src, dst, syn) = &out[0];
    assert_eq!((*src, *dst), (A6, B6));
    let (h, _) = TcpHeader::parse(syn, Some((A6, B6))).unwrap();
    assert!(h.has(SYN));
    // MTU 1500 − 40 (IPv6) − 20 (TCP).
    assert_eq!(h.options.mss, Some(1440));
    // The checksum is over the IPv6 pseudo-header: not the IPv4 one, not another source.
    let mapped = IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1));
    assert!(TcpHeader::parse(syn, Some((mapped, IpAddr::V4(Ipv4Addr::new(0, 0, 0, 2))))).is_err());
    let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1));
    assert!(TcpHeader::parse(syn, Some((other, B6))).is_err());
    // The receiving engine checks it too: a flipped bit is counted and dropped.
    let mut b = Engine::new(Config::default(), [2; 16]);
    b.listen(80, 8).unwrap();
    let mut bad = syn.clone();
    bad[5] ^= 0x40;
    b.on_segment(A6, B6, &bad, 0);
    assert_eq!(b.stats().bad_checksum, 1);
    // And an IPv4 engine address on the same bytes is a checksum failure, not a connection.
    b.on_segment(A, B, syn, 0);
    assert_eq!(b.stats().bad_checksum, 2);
    b.on_segment(A6, B6, syn, 0);
    b.poll(0);
    let replies = parsed_output(&mut b);
    assert_eq!(replies.len(), 1);
    assert_eq!((replies[0].0, replies[0].1), (B6, A6));
    assert_eq!(replies[0].2.options.mss, Some(1440));
}

#[test]
fn ipv6_data_segments_fit_the_ipv6_mtu() {
    let mut net = Net::new6(Config { mtu: 1280, ..Config::default() });
    net.connect();
    net.app_a.to_send = pattern(200_000, 21);
    let mut largest = 0;
    let start = net.now;
    while net.app_b.received.len() < 200_000 {
        assert!(net.now < start + 60_000, "stalled");
        net.step();
        largest = net.queue.iter().filter(|p| p.to_b).map(|p| p.bytes.len()).max().unwrap_or(0).max(largest);
    }
    // 1280 − 40: every segment fits an IPv6 packet of the minimum MTU.
    assert_eq!(largest, 1240);
    assert!(net.app_b.received == net.app_a.to_send);
}

#[test]
fn ipv6_closed_port_is_reset() {
    let mut net = Net::new6(Config::default());
    let h = net.a.connect((A6, 40_001), (B6, 81), 0).unwrap();
    net.app_a.handle = Some(h);
    net.run_until(5_000, |n| !n.app_a.events.is_empty());
    assert_eq!(net.app_a.events[0].kind, EventKind::Error(ErrorCode::ConnectionRefused));
    let s = net.b.stats();
    assert_eq!((s.closed_port, s.resets_sent), (1, 1));
}

#[test]
fn ipv6_rst_from_peer_resets_and_blind_rst_is_challenged() {
    use morgana_tcp::wire::{TcpHeader, RST};
    let mut net = Net::new6(Config::default());
    let h = net.connect();
    let info = net.a.info(h).unwrap();
    assert_eq!(info.local, (A6, 40_000));
    assert_eq!(info.remote, (B6, 80));
    // B's sequence numbers, from a data segment it sends.
    net.app_b.to_send = b"x".to_vec();
    let mut b_seq = None;
    while b_seq.is_none() {
        net.step();
        b_seq = net
            .queue
            .iter()
            .find(|p| !p.to_b && p.bytes.len() > 32)
            .map(|p| morgana_tcp::wire::TcpHeader::parse(&p.bytes, Some((B6, A6))).unwrap().0.seq);
    }
    net.run_until(5_000, |n| n.app_a.received == b"x");
    // In the window, not RCV.NXT: answered with a challenge ACK (RFC 5961 §3.2).
    let seq = b_seq.unwrap().wrapping_add(1000);
    let forged = TcpHeader { src_port: 80, dst_port: 40_000, seq, flags: RST, ..TcpHeader::default() };
    let mut buf = [0u8; 60];
    let n = forged.emit(&mut buf, &[], B6, A6).unwrap();
    net.a.on_segment(B6, A6, &buf[..n], net.now);
    net.a.poll(net.now);
    assert_eq!(net.a.info(h).unwrap().state, State::Established);
    assert_eq!(net.a.stats().challenge_acks, 1);
    // A real abort reaches the peer as RST.
    net.a.abort(h).unwrap();
    net.run_until(5_000, |n| has(&n.app_b, EventKind::Error(ErrorCode::ConnectionReset)));
}

#[test]
fn ipv6_syn_cookies() {
    use morgana_tcp::wire::{TcpHeader, SYN};
    let mut net = Net::new6(Config::default());
    net.b.listen(80, 4).unwrap();
    // Fill the SYN queue from spoofed sources, then a real client gets a cookie.
    for i in 0..64u16 {
        let syn = TcpHeader {
            src_port: 1000 + i,
            dst_port: 80,
            seq: 1,
            flags: SYN,
            window: 1000,
            ..TcpHeader::default()
        };
        let spoofed = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i));
        let mut buf = [0u8; 60];
        let n = syn.emit(&mut buf, &[], spoofed, B6).unwrap();
        net.b.on_segment(spoofed, B6, &buf[..n], 0);
    }
    net.b.poll(0);
    let cookies = parsed_output(&mut net.b);
    assert_eq!(net.b.stats().half_open, 4);
    assert_eq!(net.b.stats().syn_cookies_sent, 60);
    // Cookie SYN-ACKs (sent at once, before the queued connections' SYN-ACKs go out at the
    // poll) advertise the IPv6 MSS.
    assert_eq!(cookies.len(), 64);
    assert!(cookies.iter().all(|(_, _, h, _)| h.options.mss == Some(1440)));
    // A cookie is bound to the full source address: replayed from an address that differs only
    // in its upper 64 bits, the ACK is refused.
    let (_, spoofed_dst, synack, _) = &cookies[0];
    let IpAddr::V6(victim) = *spoofed_dst else { panic!("IPv6 expected") };
    let mut moved = victim.segments();
    moved[1] = 0xdb9;
    let replayed_from = IpAddr::V6(Ipv6Addr::from(moved));
    let ack = TcpHeader {
        src_port: synack.dst_port,
        dst_port: 80,
        seq: 2,
        ack: synack.seq.wrapping_add(1),
        flags: morgana_tcp::wire::ACK,
        window: 1000,
        ..TcpHeader::default()
    };
    let mut buf = [0u8; 60];
    let n = ack.emit(&mut buf, &[], replayed_from, B6).unwrap();
    net.b.on_segment(replayed_from, B6, &buf[..n], 0);
    assert_eq!(net.b.stats().syn_cookies_invalid, 1);
    net.b.clear_output();
    // From the address it was issued to, the same ACK opens the connection.
    let n = ack.emit(&mut buf, &[], *spoofed_dst, B6).unwrap();
    net.b.on_segment(*spoofed_dst, B6, &buf[..n], 0);
    assert_eq!(net.b.stats().syn_cookies_accepted, 1);
    net.b.clear_output();
    net.b.take_events().for_each(drop);
    // A genuine client completes a cookie handshake and moves data.
    let h = net.a.connect((A6, 40_000), (B6, 80), 0).unwrap();
    net.app_a.handle = Some(h);
    net.run_until(10_000, |n| has(&n.app_a, EventKind::Connected) && n.app_b.handle.is_some());
    assert_eq!(net.b.stats().syn_cookies_accepted, 2);
    net.app_a.to_send = pattern(100_000, 13);
    net.run_until(60_000, |n| n.app_b.received.len() == 100_000);
    assert!(net.app_b.received == net.app_a.to_send);
}

#[test]
fn dual_stack_listener_accepts_both_families_at_once() {
    let mut net = Net::new(Config::default());
    net.b.listen(80, 16).unwrap();
    let h4 = net.a.connect((A, 40_000), (B, 80), 0).unwrap();
    let h6 = net.a.connect((A6, 40_000), (B6, 80), 0).unwrap();
    net.run_until(10_000, |n| {
        n.app_b.events.iter().filter(|e| e.kind == EventKind::Accepted(80)).count() == 2
            && n.a.stats().active_opens == 2
    });
    let mut accepted: Vec<_> = net
        .app_b
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Accepted(80))
        .map(|e| (net.b.info(e.handle).unwrap(), e.handle))
        .collect();
    accepted.sort_by_key(|(i, _)| (i.local, i.remote));
    let tuples: Vec<_> = accepted.iter().map(|(i, _)| (i.local, i.remote)).collect();
    assert_eq!(tuples, vec![((B, 80), (A, 40_000)), ((B6, 80), (A6, 40_000))]);
    // Same ports, different families: two connections, each with its own data.
    net.app_b.reading = false;
    net.a.send(h4, b"over IPv4").unwrap();
    net.a.send(h6, b"over IPv6").unwrap();
    net.run_until(5_000, |n| n.b.stats().bytes_in >= 18);
    let mut buf = [0u8; 32];
    let n = net.b.recv(accepted[0].1, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"over IPv4");
    let n = net.b.recv(accepted[1].1, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"over IPv6");
}

#[test]
fn listener_families() {
    use morgana_tcp::engine::EngineError;
    use morgana_tcp::ListenFamily;
    let mut e = Engine::new(Config::default(), [5; 16]);
    // One IPv4 and one IPv6 listener may share a port; a dual-stack one conflicts with both.
    e.listen_family(80, 4, ListenFamily::V4).unwrap();
    e.listen_family(80, 4, ListenFamily::V6).unwrap();
    assert_eq!(e.listen_family(80, 4, ListenFamily::V4), Err(EngineError::AddressInUse));
    assert_eq!(e.listen(80, 4), Err(EngineError::AddressInUse));
    e.unlisten_family(80, ListenFamily::V4);
    assert_eq!(e.listen(80, 4), Err(EngineError::AddressInUse));
    e.listen_family(80, 4, ListenFamily::V4).unwrap();
    e.unlisten(80);
    e.listen(80, 4).unwrap();
    assert_eq!(e.listen_family(80, 4, ListenFamily::V4), Err(EngineError::AddressInUse));
    assert_eq!(e.listen_family(80, 4, ListenFamily::V6), Err(EngineError::AddressInUse));
    // Mixed families make no connection.
    assert_eq!(e.connect((A, 1), (B6, 2), 0), Err(EngineError::InvalidArgument));

    // An IPv6-only listener (Node's ipv6Only) refuses IPv4 with RST and accepts IPv6, and an
    // IPv4-only one the other way round.
    for family in [ListenFamily::V6, ListenFamily::V4] {
        let mut net = Net::new(Config::default());
        net.b.listen_family(80, 16, family).unwrap();
        let h4 = net.a.connect((A, 40_000), (B, 80), 0).unwrap();
        let h6 = net.a.connect((A6, 40_000), (B6, 80), 0).unwrap();
        let (refused, accepted) = if family == ListenFamily::V6 { (h4, h6) } else { (h6, h4) };
        net.run_until(10_000, |n| {
            n.app_a
                .events
                .iter()
                .any(|e| e.handle == refused && e.kind == EventKind::Error(ErrorCode::ConnectionRefused))
                && n.app_a.events.iter().any(|e| e.handle == accepted && e.kind == EventKind::Connected)
        });
        assert_eq!(net.b.stats().closed_port, 1, "{family:?}");
    }
}

#[test]
fn ipv6_icmp_errors_and_packet_too_big() {
    // Destination unreachable (port) while connecting: ECONNREFUSED, matched on full addresses.
    let mut net = Net::new6(Config::default());
    net.link_up = false;
    let h = net.a.connect((A6, 40_002), (B6, 80), 0).unwrap();
    net.app_a.handle = Some(h);
    net.step();
    let isn = morgana_tcp::isn::initial_sequence(&[1; 16], (A6, 40_002), (B6, 80), 0);
    let mut quoted = [0u8; 8];
    quoted[0..2].copy_from_slice(&40_002u16.to_be_bytes());
    quoted[2..4].copy_from_slice(&80u16.to_be_bytes());
    quoted[4..8].copy_from_slice(&isn.to_be_bytes());
    // An error about another destination (or the IPv4 twin of the tuple) is not ours.
    let elsewhere = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2));
    net.a.on_icmp_error(A6, elsewhere, &quoted, true, None, 0);
    net.a.on_icmp_error(A, B, &quoted, true, None, 0);
    assert_eq!(net.a.stats().icmp_ignored, 2);
    net.a.on_icmp_error(A6, B6, &quoted, true, None, 0);
    net.run_until(1_000, |n| !n.app_a.events.is_empty());
    assert_eq!(net.app_a.events[0].kind, EventKind::Error(ErrorCode::ConnectionRefused));

    // Packet Too Big: segments shrink to the reported MTU minus 60, never below 1280's.
    let mut net = Net::new6(Config::default());
    let h = net.connect();
    net.app_a.to_send = pattern(200_000, 7);
    let start = net.now;
    let mut limit = 1400;
    let mut reported = 0;
    while net.app_b.received.len() < 200_000 {
        assert!(net.now < start + 60_000, "stalled");
        net.step();
        let mut big = Vec::new();
        net.queue.retain(|p| {
            if p.to_b && p.bytes.len() + 40 > limit {
                big.push(p.bytes[..8].to_vec());
                false
            } else {
                true
            }
        });
        for quoted in big {
            reported += 1;
            net.a.on_icmp_error(A6, B6, &quoted, false, Some(limit), net.now);
        }
        if net.app_b.received.len() > 50_000 {
            // A PTB below the IPv6 minimum MTU counts as 1280 (RFC 8201 §4).
            limit = 1280;
        }
    }
    assert!(reported > 0);
    assert!(net.app_b.received == net.app_a.to_send);
    assert_eq!(net.a.stats().path_mtu_updates, 2);
    assert!(net.a.info(h).is_some());
    // Lower than 1280: ignored as a shrink below the minimum.
    let quoted = {
        net.app_a.to_send.extend(pattern(10_000, 8));
        net.step();
        net.queue.iter().find(|p| p.to_b && p.bytes.len() > 100).map(|p| p.bytes[..8].to_vec())
    };
    if let Some(q) = quoted {
        net.a.on_icmp_error(A6, B6, &q, false, Some(600), net.now);
        assert_eq!(net.a.stats().path_mtu_updates, 2);
    }
}

/// A client that closes first keeps its addresses in TIME_WAIT; with timestamps, once the clock
/// has moved on, a new connection from the same port takes them over (as Linux's tcp_tw_reuse),
/// with an ISS beyond the old one, and carries data; without timestamps it may not.
#[test]
fn connect_reuses_our_own_time_wait_addresses() {
    for timestamps in [true, false] {
        let mut net = Net::new(Config { time_wait_ms: 60_000, timestamps, ..Config::default() });
        let h = net.connect();
        net.app_a.shutdown_when_sent = true;
        net.app_b.shutdown_when_sent = true;
        net.run_until(5_000, |n| has(&n.app_a, EventKind::Closed) && has(&n.app_b, EventKind::Closed));
        assert_eq!(net.a.info(h).unwrap().state, State::TimeWait);
        let (local, remote) = ((A, 40_000), (B, 80));
        assert!(net.a.in_use(local, remote));
        let entered =
            net.app_a.times[net.app_a.events.iter().position(|e| e.kind == EventKind::Closed).unwrap()];
        assert!(
            net.a.taken_for_connect(local, remote, entered),
            "not in the millisecond it entered TIME_WAIT"
        );
        net.now = net.now.max(entered + 1);
        if !timestamps {
            assert!(net.a.taken_for_connect(local, remote, net.now));
            assert_eq!(net.a.connect(local, remote, net.now), Err(morgana_tcp::EngineError::AddressInUse));
            continue;
        }
        assert!(!net.a.taken_for_connect(local, remote, net.now));
        net.a.release(h);
        net.app_a = App::new();
        net.app_b = App::new();
        let h2 = net.a.connect(local, remote, net.now).expect("the TIME_WAIT addresses are handed on");
        assert_eq!(net.a.stats().time_wait_recycled, 1);
        net.run_until(10_000, |n| n.app_a.handle == Some(h2) && n.app_b.handle.is_some());
        net.app_a.to_send = pattern(100_000, 7);
        net.run_until(10_000, |n| n.app_b.received.len() == 100_000);
        assert_eq!(net.app_b.received, pattern(100_000, 7));
    }
}

#[test]
fn ipv6_many_connections_and_time_wait() {
    let mut net = Net::new6(Config { time_wait_ms: 4_000, ..Config::default() });
    net.b.listen(80, 256).unwrap();
    for i in 0..100u16 {
        net.a.connect((A6, 10_000 + i), (B6, 80), 0).unwrap();
    }
    net.run_until(10_000, |n| n.b.stats().passive_opens == 100);
    assert_eq!(net.b.stats().connections, 100);
    assert!(net.a.in_use((A6, 10_000), (B6, 80)));
    assert!(!net.a.in_use((A, 10_000), (B, 80)));
}
