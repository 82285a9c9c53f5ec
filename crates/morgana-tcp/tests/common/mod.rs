//! Helpers shared by the integration tests.

pub mod link;

use morgana_tcp::{Engine, IpAddr};

/// Takes every segment the engine produced as `(src, dst, bytes)` and clears its output.
pub fn drain(engine: &mut Engine) -> Vec<(IpAddr, IpAddr, Vec<u8>)> {
    let out = engine.output();
    let mut at = 0;
    let mut packets = Vec::with_capacity(out.segments.len());
    for s in &out.segments {
        packets.push((s.src, s.dst, out.bytes[at..at + s.len as usize].to_vec()));
        at += s.len as usize;
    }
    engine.clear_output();
    packets
}
