//! Initial sequence numbers per RFC 6528: `ISN = M + F(localip, localport, remoteip, remoteport,
//! secretkey)`, where M is a timer ticking every 4 µs and F is SipHash-2-4 keyed with 128 bits
//! from the random device given to the engine. F covers the full addresses of either family
//! (4 or 16 bytes each).

use std::net::IpAddr;

/// SipHash-2-4 of `data` under `key` (Aumasson & Bernstein reference algorithm).
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes(key[0..8].try_into().unwrap_or([0; 8]));
    let k1 = u64::from_le_bytes(key[8..16].try_into().unwrap_or([0; 8]));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let chunks = data.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Longest [`tuple_bytes`] output: two IPv6 addresses and two ports, plus room for a caller's
/// suffix (the SYN cookie's counter and MSS index).
pub const TUPLE_BYTES_MAX: usize = 48;

/// Writes local address, local port, remote address, remote port (network order, 12 bytes for
/// IPv4, 36 for IPv6) into `out`; returns the length.
pub fn tuple_bytes(local: (IpAddr, u16), remote: (IpAddr, u16), out: &mut [u8; TUPLE_BYTES_MAX]) -> usize {
    let mut at = 0;
    for (addr, port) in [local, remote] {
        match addr {
            IpAddr::V4(a) => {
                out[at..at + 4].copy_from_slice(&a.octets());
                at += 4;
            }
            IpAddr::V6(a) => {
                out[at..at + 16].copy_from_slice(&a.octets());
                at += 16;
            }
        }
        out[at..at + 2].copy_from_slice(&port.to_be_bytes());
        at += 2;
    }
    at
}

/// The RFC 6528 ISN for a 4-tuple at `now_ms`.
pub fn initial_sequence(key: &[u8; 16], local: (IpAddr, u16), remote: (IpAddr, u16), now_ms: u64) -> u32 {
    let mut data = [0u8; TUPLE_BYTES_MAX];
    let n = tuple_bytes(local, remote, &mut data);
    let f = siphash24(key, &data[..n]) as u32;
    // M: a 4 µs tick, i.e. 250 per millisecond.
    f.wrapping_add((now_ms.wrapping_mul(250)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vector() {
        // Test vector from the SipHash paper (appendix A): key 00..0f, message 00..0e.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..15u8).collect();
        assert_eq!(siphash24(&key, &msg), 0xa129_ca61_49be_45e5);
    }

    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn v6(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }

    #[test]
    fn isn_depends_on_tuple_and_time() {
        let key = [7u8; 16];
        let a = initial_sequence(&key, (v4(1), 2), (v4(3), 4), 0);
        let b = initial_sequence(&key, (v4(1), 2), (v4(3), 5), 0);
        assert_ne!(a, b);
        assert_eq!(initial_sequence(&key, (v4(1), 2), (v4(3), 4), 4), a.wrapping_add(1000));
    }

    #[test]
    fn ipv6_isn_covers_all_sixteen_bytes() {
        let key = [7u8; 16];
        let base = initial_sequence(&key, (v6(1), 2), (v6(3), 4), 0);
        // Addresses that differ only in their top bytes (which a 32-bit view would drop).
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1));
        assert_ne!(initial_sequence(&key, (other, 2), (v6(3), 4), 0), base);
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0x8000, 0, 0, 3));
        assert_ne!(initial_sequence(&key, (v6(1), 2), (other, 4), 0), base);
        assert_eq!(initial_sequence(&key, (v6(1), 2), (v6(3), 4), 8), base.wrapping_add(2000));
        let mut buf = [0u8; TUPLE_BYTES_MAX];
        assert_eq!(tuple_bytes((v6(1), 2), (v6(3), 4), &mut buf), 36);
        assert_eq!(tuple_bytes((v4(1), 2), (v4(3), 4), &mut buf), 12);
    }
}
