//! The options a SYN cookie connection keeps. The cookie itself (the ISN, see
//! [`crate::engine`]) holds a 24-bit MAC, a 5-bit counter and a 3-bit MSS index, and has no room
//! for more; when the peer's SYN carried timestamps, the low 6 bits of our SYN-ACK's TSval carry
//! its window scale and SACK-permitted instead (as Linux does): the peer echoes that TSval in
//! the TSecr of its ACK, and the connection is rebuilt from it.
//!
//! Layout of those 6 bits: bits 0–3 the peer's window shift (0–14, 15 = it sent none), bit 4
//! SACK-permitted, bit 5 zero. The TSval is our timestamp clock with its low bits replaced, moved
//! back by 64 when that would put it ahead of the clock, so the TSvals that follow never go
//! backwards (the peer's PAWS would drop them). The bits are not authenticated (the MAC is
//! fixed before the ACK comes back), which only lets a peer that completes a handshake choose
//! options it could have put in its SYN anyway; encodings we never produce are rejected.

/// Bits of the TSval used.
const MASK: u32 = 0x3f;
/// Window-shift field value for "no window scaling".
const WSCALE_NONE: u32 = 0xf;
/// SACK-permitted bit.
const SACK: u32 = 0x10;
/// Must be zero.
const RESERVED: u32 = 0x20;

/// The peer's SYN options a cookie connection restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CookieOptions {
    /// The peer's window shift (≤ 14), if it offered window scaling.
    pub window_scale: Option<u8>,
    /// The peer sent SACK-permitted.
    pub sack_permitted: bool,
}

/// The SYN-ACK TSval carrying `options`, for our timestamp clock reading `clock`: never ahead
/// of it.
pub fn encode_tsval(clock: u32, options: CookieOptions) -> u32 {
    let scale = options.window_scale.map_or(WSCALE_NONE, |s| u32::from(s.min(14)));
    let bits = scale | if options.sack_permitted { SACK } else { 0 };
    let ts = (clock & !MASK) | bits;
    if crate::seq::gt(ts, clock) {
        ts.wrapping_sub(MASK + 1)
    } else {
        ts
    }
}

/// The options in the TSecr of the peer's ACK; `None` for an encoding we never produce.
pub fn decode_tsecr(tsecr: u32) -> Option<CookieOptions> {
    let bits = tsecr & MASK;
    if bits & RESERVED != 0 {
        return None;
    }
    let scale = bits & 0xf;
    let window_scale = match scale {
        WSCALE_NONE => None,
        0..=14 => Some(scale as u8),
        _ => return None,
    };
    Some(CookieOptions { window_scale, sack_permitted: bits & SACK != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_runs_ahead_of_the_clock() {
        for clock in [0u32, 5, 63, 64, 1_000_000, u32::MAX, 0x8000_0010] {
            for window_scale in [None, Some(0), Some(7), Some(14)] {
                for sack_permitted in [false, true] {
                    let o = CookieOptions { window_scale, sack_permitted };
                    let ts = encode_tsval(clock, o);
                    assert_eq!(decode_tsecr(ts), Some(o));
                    assert!(crate::seq::le(ts, clock) && clock.wrapping_sub(ts) < 64, "{clock} {ts}");
                }
            }
        }
        // A shift above 14 is clamped, as RFC 7323 §2.3 says.
        let o = CookieOptions { window_scale: Some(20), sack_permitted: false };
        assert_eq!(decode_tsecr(encode_tsval(100, o)).unwrap().window_scale, Some(14));
    }

    #[test]
    fn rejects_what_it_never_encodes() {
        assert_eq!(decode_tsecr(0x20 | 3), None, "reserved bit");
        assert_eq!(
            decode_tsecr(0x10 | 0xf),
            Some(CookieOptions { window_scale: None, sack_permitted: true })
        );
    }
}
