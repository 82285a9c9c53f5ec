//! Helpers shared by the integration tests.

pub mod link;

use morgana_tcp::wire::{TcpHeader, TcpOptions, SYN};
use morgana_tcp::{Engine, IpAddr};

/// Takes every segment the engine produced as `(src, dst, bytes)` and clears its output.
pub fn drain(engine: &mut Engine) -> Vec<(IpAddr, IpAddr, Vec<u8>)> {
    drain_gso(engine).into_iter().map(|(src, dst, bytes, _)| (src, dst, bytes)).collect()
}

/// As [`drain`], with each segment's `gso_size` (0 for an ordinary segment).
pub fn drain_gso(engine: &mut Engine) -> Vec<(IpAddr, IpAddr, Vec<u8>, u16)> {
    let out = engine.output();
    let mut packets = Vec::with_capacity(out.segments.len());
    for s in out.pending() {
        let mut bytes = Vec::with_capacity(s.len as usize);
        if engine.write_segment(s, &mut bytes) {
            packets.push((s.src, s.dst, bytes, s.gso_size));
        }
    }
    engine.clear_output();
    packets
}

/// Moves segments between `a` and `b` at `now`, without delay, until both engines are quiet;
/// `seen_from_b` is shown every segment B sends. Panics if they are still talking after 50
/// exchanges.
#[allow(dead_code)]
pub fn shuttle(a: &mut Engine, b: &mut Engine, now: u64, mut seen_from_b: impl FnMut(TcpHeader)) {
    for _ in 0..50 {
        a.poll(now);
        b.poll(now);
        let from_a = drain(a);
        let from_b = drain(b);
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for (src, dst, bytes) in from_a {
            b.on_segment(src, dst, &bytes, now);
        }
        for (src, dst, bytes) in from_b {
            seen_from_b(TcpHeader::parse(&bytes, Some((src, dst))).unwrap().0);
            a.on_segment(src, dst, &bytes, now);
        }
    }
    panic!("no quiet");
}

/// A SYN from `src_port` to port 80 with sequence number `seq`, a 65,535-byte window and `options`.
#[allow(dead_code)]
pub fn syn(src_port: u16, seq: u32, options: TcpOptions) -> TcpHeader {
    TcpHeader { src_port, dst_port: 80, seq, flags: SYN, window: 65_535, options, ..TcpHeader::default() }
}

/// Emits `header` with `payload` from `src` to `dst` and hands it to `engine` at `now`, which
/// then polls (so its answer is in its output).
#[allow(dead_code)]
pub fn inject(engine: &mut Engine, header: &TcpHeader, payload: &[u8], src: IpAddr, dst: IpAddr, now: u64) {
    let mut buf = [0u8; 2048];
    let n = header.emit(&mut buf, payload, src, dst).unwrap();
    engine.on_segment(src, dst, &buf[..n], now);
    engine.poll(now);
}
