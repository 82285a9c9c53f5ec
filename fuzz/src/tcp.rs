//! Target `tcp`: two TCP engines (A listening on port 80, B its client) joined by a lossy link
//! the input controls, plus forged segments to either side, application calls and clock steps.
//!
//! Input: a setup byte (bit 0 IPv6, bits 1–2 scenario: 0 A only listens, 1 B's SYN is on the
//! link (connecting), 2–3 the handshake is done (established); bit 3 timestamps, bit 4 SYN
//! cookies, bit 5 a 4 KiB instead of 16 KiB receive buffer), the backlog (1 + byte mod 8), then
//! operations of one kind byte (mod 8) and the kind's own bytes:
//! - 0 / 1, [`Forged`]: a segment to A from B's address (or another host's) / to B from A's,
//!   its sequence and acknowledgment numbers relative to the last segment the impersonated side
//!   sent, or absolute; any flags, window, options (MSS, window scale, SACK-permitted,
//!   timestamps, SACK blocks) and up to 1 KiB of payload;
//! - 2, a clock step (byte: ≤ 250 → 4 ms each; 251 → 1 s, 252 → 10 s, 253 → 60 s, 254–255 → 0);
//! - 3, the link: one byte per segment at its head (up to `n` mod 16 of them): deliver, drop,
//!   deliver twice, or move to the back (reordering);
//! - 4 / 5, the application of B / A writes `byte * 64` bytes on its first connection;
//! - 6, an application call: shutdown, close or abort on A's or B's first connection, Nagle
//!   off, or a new connection from B;
//! - 7, raw bytes (length byte, then them) handed to A as a segment from B, its checksum fixed
//!   when bit 7 of the length is set.
//!
//! At most 400 operations are read. After each, both engines poll, their output goes on the
//! link (what is addressed to neither engine is dropped), both applications read everything and
//! accept what they are offered.
//!
//! Invariants, after every operation: no panic; [`Engine::check_invariants`] (SND.UNA ≤ SND.NXT
//! ≤ SND.MAX, in-flight data inside the send buffer, buffers, out-of-order ranges and SACK
//! scoreboard within their bounds, connection table and SYN queues within their limits); one
//! segment in produces at most [`MAX_OUT_PER_IN`] segments out; polling again at the same time
//! leaves no timer due (poll terminates, no busy loop). Then a quiet minute with a lossless link
//! and no more input: in its last 30 s the two engines exchange at most [`MAX_QUIET_SEGMENTS`]
//! segments (timers back off to `rto_max_ms` = 2 s and give up after 4 retries; an ACK storm
//! moves thousands), in no second of it more than [`MAX_QUIET_RATE`], and the invariants still
//! hold.

use crate::Input;
use morgana_tcp::wire::{TcpHeader, TcpOptions, ACK, MAX_SACK_BLOCKS, SYN};
use morgana_tcp::{Config, Engine, EventKind, Handle, IpAddr};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most segments one received segment (or one application call, or one timer run) may produce:
/// a full send buffer in the smallest segments an MSS option can force, and a few more.
pub const MAX_OUT_PER_IN: usize = 16 * 1024 / 64 + 16;
/// Most segments in the last 30 s of the quiet minute.
pub const MAX_QUIET_SEGMENTS: usize = 200;
/// Most segments in any one second of the quiet minute: what is left of two full send buffers
/// in the smallest segments, with their ACKs, fits; an ACK storm (one segment per round, eight
/// rounds per millisecond here) does not.
pub const MAX_QUIET_RATE: usize = 3_000;
const PORT_A: u16 = 80;
const PORT_B: u16 = 40_000;
const MAX_OPS: usize = 400;
/// Segments the link holds at most (older ones are lost).
const LINK_LIMIT: usize = 4096;

fn config(timestamps: bool, syn_cookies: bool, small: bool) -> Config {
    Config {
        send_buffer: 16 * 1024,
        recv_buffer: if small { 4 * 1024 } else { 16 * 1024 },
        max_out_of_order: 8,
        rto_initial_ms: 200,
        rto_max_ms: 2_000,
        time_wait_ms: 2_000,
        syn_retries: 3,
        data_retries: 4,
        timestamps,
        max_connections: 32,
        syn_cookies,
        ..Config::default()
    }
}

/// One side: its engine, address and the connections its application holds.
struct Side {
    engine: Engine,
    addr: IpAddr,
    handles: Vec<Handle>,
    /// The last segment this side sent (forged segments impersonate it).
    last: Option<TcpHeader>,
}

impl Side {
    fn first(&self) -> Option<Handle> {
        self.handles.first().copied()
    }
}

struct World {
    a: Side,
    b: Side,
    other: IpAddr,
    now: u64,
    /// Segments on the link: (to A, bytes).
    link: VecDeque<(bool, Vec<u8>)>,
    scratch: Vec<u8>,
}

/// A forged segment's fields, decoded from the input.
struct Forged {
    header: TcpHeader,
    payload_len: usize,
    from_other_host: bool,
}

impl Forged {
    fn read(input: &mut Input, last: Option<TcpHeader>, to_a: bool) -> Forged {
        let mode = input.byte();
        let last = last.unwrap_or_default();
        let seq_delta = input.u32();
        let ack_delta = input.u32();
        // Relative numbers by default (small signed deltas reach the window's edges), absolute
        // ones when asked.
        let rel = |base: u32, delta: u32, absolute: bool| {
            if absolute {
                delta
            } else {
                base.wrapping_add((delta as i32 >> 12) as u32)
            }
        };
        let seq = rel(last.seq, seq_delta, mode & 1 != 0);
        let ack = rel(last.ack, ack_delta, mode & 2 != 0);
        let flags = input.byte();
        let window = input.u16();
        let which = input.byte();
        let mut options = TcpOptions::default();
        if which & 1 != 0 {
            options.mss = Some(input.u16());
        }
        if which & 2 != 0 {
            options.window_scale = Some(input.byte() % 16);
        }
        options.sack_permitted = which & 4 != 0;
        if which & 8 != 0 {
            let (val, ecr) = last.options.timestamps.unwrap_or((0, 0));
            let dv = input.u16() as i16 as i32 as u32;
            options.timestamps = Some((val.wrapping_add(dv), ecr));
        }
        if which & 0x30 != 0 {
            let n = usize::from((which >> 4) & 3).min(MAX_SACK_BLOCKS);
            for block in options.sack.iter_mut().take(n) {
                let left = last.ack.wrapping_add(u32::from(input.u16()));
                *block = (left, left.wrapping_add(u32::from(input.u16()) % 4096));
            }
            options.sack_count = n as u8;
            options.timestamps = None; // room in the header
        }
        let (src_port, dst_port) = if to_a {
            (
                if mode & 4 != 0 { input.u16() } else { PORT_B },
                if mode & 8 != 0 { input.u16() } else { PORT_A },
            )
        } else {
            (if mode & 8 != 0 { input.u16() } else { PORT_A }, PORT_B)
        };
        let payload_len = usize::from(input.byte()) * 4;
        Forged {
            header: TcpHeader { src_port, dst_port, seq, ack, flags, window, urgent: 0, options },
            payload_len,
            from_other_host: mode & 16 != 0,
        }
    }
}

impl World {
    fn new(setup: u8, backlog: u32) -> World {
        let v6 = setup & 1 != 0;
        let (addr_a, addr_b, other) = if v6 {
            let a = |n| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n));
            (a(1), a(2), a(3))
        } else {
            let a = |n| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
            (a(1), a(2), a(3))
        };
        let cfg = config(setup & 8 != 0, setup & 16 != 0, setup & 32 != 0);
        let mut a = Engine::new(cfg.clone(), [1; 16]);
        a.listen(PORT_A, backlog).expect("listen");
        let b = Engine::new(cfg, [2; 16]);
        let mut world = World {
            a: Side { engine: a, addr: addr_a, handles: Vec::new(), last: None },
            b: Side { engine: b, addr: addr_b, handles: Vec::new(), last: None },
            other,
            now: 1_000,
            link: VecDeque::new(),
            scratch: vec![0; 64 * 1024],
        };
        let scenario = (setup >> 1) & 3;
        if scenario >= 1 {
            let h = world.b.engine.connect((addr_b, PORT_B), (addr_a, PORT_A), world.now).expect("connect");
            world.b.handles.push(h);
            world.settle();
        }
        if scenario >= 2 {
            for _ in 0..4 {
                world.deliver_all();
            }
        }
        world
    }

    /// Polls both engines, runs the applications, puts the engines' output on the link, and
    /// checks. The applications act (read, accept, abort, release) while the output is still
    /// pending, as JavaScript may between a turn and its drain: the data segments' payloads are
    /// then still in the send buffers (deferred), and the engine must copy them into the output
    /// before any of those calls changes a connection, so the segments keep their bytes.
    fn settle(&mut self) -> usize {
        let mut produced = 0;
        let mut before: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        for (i, from) in [&mut self.a, &mut self.b].into_iter().enumerate() {
            from.engine.poll(self.now);
            // Polling again at the same time finds nothing due: poll terminates.
            if let Some(d) = from.engine.next_deadline() {
                if d <= self.now {
                    from.engine.poll(self.now);
                    let again = from.engine.next_deadline();
                    assert!(again.is_none_or(|d| d > self.now), "a timer stays due after poll");
                }
            }
            before[i] = pending_segments(&from.engine);
        }
        self.applications();
        for (i, to_a) in [(0, false), (1, true)] {
            let (from, to_addr) = if to_a { (&mut self.b, self.a.addr) } else { (&mut self.a, self.b.addr) };
            let out = from.engine.output();
            let now = pending_segments(&from.engine);
            assert!(now.len() >= before[i].len(), "produced segments went missing");
            assert!(now[..before[i].len()] == before[i][..], "a segment changed between poll and drain");
            for (s, bytes) in out.pending().iter().zip(now) {
                if let Ok((h, _)) = TcpHeader::parse(&bytes, Some((s.src, s.dst))) {
                    from.last = Some(h);
                }
                if s.dst == to_addr {
                    if self.link.len() >= LINK_LIMIT {
                        self.link.pop_front();
                    }
                    self.link.push_back((to_a, bytes));
                }
            }
            produced += out.segments.len();
            from.engine.clear_output();
        }
        assert!(produced <= 2 * MAX_OUT_PER_IN, "{produced} segments out for one step");
        for side in [&self.a, &self.b] {
            if let Err(e) = side.engine.check_invariants() {
                panic!("invariant broken: {e}");
            }
        }
        produced
    }

    /// Both applications accept what they are offered, read everything, and forget what failed.
    fn applications(&mut self) {
        for side in [&mut self.a, &mut self.b] {
            let events: Vec<_> = side.engine.take_events().collect();
            for e in events {
                match e.kind {
                    EventKind::Accepted(_) => {
                        if side.engine.accept(e.handle).is_ok() && side.handles.len() < 8 {
                            side.handles.push(e.handle);
                        } else {
                            let _ = side.engine.abort(e.handle);
                        }
                    }
                    EventKind::Error(_) | EventKind::Closed => {
                        side.handles.retain(|&h| h != e.handle);
                        side.engine.release(e.handle);
                    }
                    _ => {}
                }
            }
            for &h in &side.handles {
                while side.engine.recv(h, &mut self.scratch).is_ok_and(|n| n > 0) {}
            }
        }
    }

    /// Hands one segment to its engine; checks what it produced.
    fn hand(&mut self, to_a: bool, bytes: &[u8]) {
        let (side, src) = if to_a { (&mut self.a, self.b.addr) } else { (&mut self.b, self.a.addr) };
        side.engine.on_segment(src, side.addr, bytes, self.now);
        let produced = self.settle();
        assert!(produced <= MAX_OUT_PER_IN + 4, "{produced} segments in reply to one");
    }

    fn deliver_all(&mut self) -> usize {
        let mut moved = 0;
        for _ in 0..8 {
            let batch: Vec<_> = self.link.drain(..).collect();
            if batch.is_empty() {
                break;
            }
            moved += batch.len();
            for (to_a, bytes) in batch {
                self.hand(to_a, &bytes);
            }
        }
        moved
    }

    fn forge(&mut self, input: &mut Input, to_a: bool) {
        let impersonated = if to_a { self.b.last } else { self.a.last };
        let f = Forged::read(input, impersonated, to_a);
        let (src, dst) = if to_a { (self.b.addr, self.a.addr) } else { (self.a.addr, self.b.addr) };
        let src = if f.from_other_host { self.other } else { src };
        let payload: Vec<u8> = (0..f.payload_len).map(|i| i as u8).collect();
        let mut buf = vec![0u8; 60 + payload.len()];
        let Ok(n) = f.header.emit(&mut buf, &payload, src, dst) else { return };
        let side = if to_a { &mut self.a } else { &mut self.b };
        side.engine.on_segment(src, dst, &buf[..n], self.now);
        let produced = self.settle();
        assert!(produced <= MAX_OUT_PER_IN + 4, "{produced} segments in reply to one forged");
    }

    fn link_op(&mut self, input: &mut Input) {
        let n = usize::from(input.byte() % 16);
        for _ in 0..n {
            let Some((to_a, bytes)) = self.link.pop_front() else { break };
            match input.byte() % 4 {
                0 => self.hand(to_a, &bytes),
                1 => {}
                2 => {
                    self.hand(to_a, &bytes);
                    self.hand(to_a, &bytes);
                }
                _ => self.link.push_back((to_a, bytes)),
            }
        }
    }

    fn app_call(&mut self, input: &mut Input) {
        let op = input.byte();
        let side = if op & 1 != 0 { &mut self.a } else { &mut self.b };
        let Some(h) = side.first() else {
            if op % 8 == 7 && self.b.handles.len() < 8 {
                let port = PORT_B.wrapping_add(1 + self.b.handles.len() as u16);
                if let Ok(h) = self.b.engine.connect((self.b.addr, port), (self.a.addr, PORT_A), self.now) {
                    self.b.handles.push(h);
                }
            }
            return;
        };
        match (op >> 1) % 4 {
            0 => {
                let _ = side.engine.shutdown(h);
            }
            1 => {
                let _ = side.engine.close(h);
                side.handles.retain(|&x| x != h);
            }
            2 => {
                let _ = side.engine.abort(h);
                side.handles.retain(|&x| x != h);
            }
            _ => {
                let _ = side.engine.set_nodelay(h, true);
            }
        }
        self.settle();
    }

    fn write(&mut self, to_b: bool, len: usize) {
        let side = if to_b { &mut self.b } else { &mut self.a };
        if let Some(h) = side.first() {
            let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let _ = side.engine.send(h, &data);
        }
        self.settle();
    }

    fn raw(&mut self, input: &mut Input) {
        let len = input.byte();
        let mut bytes = input.take(usize::from(len & 0x7f)).to_vec();
        if len & 0x80 != 0 && bytes.len() >= 18 {
            bytes[16..18].fill(0);
            let (src, dst) = (self.b.addr, self.a.addr);
            morgana_tcp::wire::finish_checksum(&mut bytes, src, dst);
        }
        self.hand(true, &bytes);
    }

    /// A minute without input on a lossless link: returns the most segments exchanged in one
    /// second of it, and those of its last 30 s (it stops early once a bound is exceeded). The
    /// clock jumps to the next timer while the link is empty, and moves 1 ms at a time while it
    /// is not.
    fn quiet_minute(&mut self) -> (usize, usize) {
        let start = self.now;
        let end = start + 60_000;
        let (mut late, mut second, mut this_second, mut busiest) = (0, 0, 0, 0);
        while self.now < end && late <= MAX_QUIET_SEGMENTS && busiest <= MAX_QUIET_RATE {
            let mut moved = self.deliver_all();
            let next = if self.link.is_empty() {
                let deadlines = [self.a.engine.next_deadline(), self.b.engine.next_deadline()];
                match deadlines.into_iter().flatten().min() {
                    Some(d) => d.max(self.now + 1),
                    None => end,
                }
            } else {
                self.now + 1
            };
            self.now = next.min(end);
            moved += self.settle();
            if (self.now - start) / 1000 != second {
                second = (self.now - start) / 1000;
                this_second = 0;
            }
            this_second += moved;
            busiest = busiest.max(this_second);
            if self.now >= start + 30_000 {
                late += moved;
            }
        }
        (busiest, late)
    }
}

/// The engine's pending output, each segment whole (its deferred payload read in place).
fn pending_segments(engine: &Engine) -> Vec<Vec<u8>> {
    engine
        .output()
        .pending()
        .iter()
        .filter_map(|s| {
            let mut bytes = Vec::with_capacity(s.len as usize);
            engine.write_segment(s, &mut bytes).then_some(bytes)
        })
        .collect()
}

/// Runs every check on `data`.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let backlog = 1 + u32::from(input.byte() % 8);
    let mut world = World::new(setup, backlog);
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.byte() % 8 {
            0 => world.forge(&mut input, true),
            1 => world.forge(&mut input, false),
            2 => {
                world.now += match input.byte() {
                    s @ 0..=250 => u64::from(s) * 4,
                    251 => 1_000,
                    252 => 10_000,
                    253 => 60_000,
                    _ => 0,
                };
                world.settle();
            }
            3 => world.link_op(&mut input),
            4 => {
                let len = usize::from(input.byte()) * 64;
                world.write(true, len);
            }
            5 => {
                let len = usize::from(input.byte()) * 64;
                world.write(false, len);
            }
            6 => world.app_call(&mut input),
            _ => world.raw(&mut input),
        }
    }
    let (busiest, late) = world.quiet_minute();
    assert!(busiest <= MAX_QUIET_RATE, "{busiest} segments in one second of a quiet minute: a storm");
    assert!(late <= MAX_QUIET_SEGMENTS, "{late} segments in the last 30 s of a quiet minute: a storm");
}

/// Encodes the setup bytes of an input (for the seed generator): IPv6, scenario (0 listening,
/// 1 connecting, 2 established), timestamps, SYN cookies, and the backlog.
pub fn encode_setup(v6: bool, scenario: u8, timestamps: bool, syn_cookies: bool, backlog: u8) -> Vec<u8> {
    let setup = u8::from(v6) | (scenario & 3) << 1 | u8::from(timestamps) << 3 | u8::from(syn_cookies) << 4;
    vec![setup, backlog.saturating_sub(1)]
}

/// Encodes a forged segment operation towards A (`to_a`) or B: absolute `seq` and `ack` when
/// given, else relative to the impersonated side's last segment; `flags`, `window`, and
/// `payload_len` (rounded down to a multiple of 4).
pub fn encode_forged(
    out: &mut Vec<u8>,
    to_a: bool,
    seq: Option<u32>,
    ack: Option<u32>,
    flags: u8,
    window: u16,
    payload_len: usize,
) {
    out.push(if to_a { 0 } else { 1 });
    out.push(u8::from(seq.is_some()) | u8::from(ack.is_some()) << 1);
    out.extend_from_slice(&seq.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&ack.unwrap_or(0).to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&window.to_be_bytes());
    out.push(0); // no options
    out.push((payload_len / 4).min(255) as u8);
}

/// Encodes a forged segment with a sequence number `seq_delta` past the impersonated side's
/// last one (relative deltas are `delta >> 12` of the encoded u32).
pub fn encode_forged_relative(out: &mut Vec<u8>, to_a: bool, seq_delta: i32, flags: u8, window: u16) {
    out.push(if to_a { 0 } else { 1 });
    out.push(0);
    out.extend_from_slice(&((seq_delta << 12) as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&window.to_be_bytes());
    out.push(0);
    out.push(0);
}

/// The flags a seed uses.
pub use morgana_tcp::wire::{FIN as FIN_FLAG, RST as RST_FLAG};
/// SYN and ACK for seeds.
pub const SYN_FLAG: u8 = SYN;
/// ACK for seeds.
pub const ACK_FLAG: u8 = ACK;
