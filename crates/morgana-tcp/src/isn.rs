//! Initial sequence numbers per RFC 6528: `ISN = M + F(localip, localport, remoteip, remoteport,
//! secretkey)`, where M is a timer ticking every 4 µs and F is SipHash-2-4 keyed with 128 bits
//! from the random device given to the engine.

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

/// The RFC 6528 ISN for a 4-tuple at `now_ms`.
pub fn initial_sequence(key: &[u8; 16], local: (u32, u16), remote: (u32, u16), now_ms: u64) -> u32 {
    let mut data = [0u8; 12];
    data[0..4].copy_from_slice(&local.0.to_be_bytes());
    data[4..6].copy_from_slice(&local.1.to_be_bytes());
    data[6..10].copy_from_slice(&remote.0.to_be_bytes());
    data[10..12].copy_from_slice(&remote.1.to_be_bytes());
    let f = siphash24(key, &data) as u32;
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

    #[test]
    fn isn_depends_on_tuple_and_time() {
        let key = [7u8; 16];
        let a = initial_sequence(&key, (1, 2), (3, 4), 0);
        let b = initial_sequence(&key, (1, 2), (3, 5), 0);
        assert_ne!(a, b);
        assert_eq!(initial_sequence(&key, (1, 2), (3, 4), 4), a.wrapping_add(1000));
    }
}
