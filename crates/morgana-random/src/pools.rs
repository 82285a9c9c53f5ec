//! The 32 entropy pools (*Cryptography Engineering* §9.5).
//!
//! A random event from source `s` (a byte) with data `e` is appended to one pool as
//! `s ‖ len(e) ‖ e`; each pool is kept as a running SHA_d hash, so only its digest and its size
//! are stored. Reseed number `r` (counting from 1) draws on pool `i` exactly when `2^i` divides
//! `r`, so pool 0 is used every time, pool 1 every second time, pool 31 every 2^31-th time, and
//! an attacker who can predict some sources must wait exponentially longer for the pools that
//! collected enough unpredictable events. The pools used are emptied.

use crate::error::RngError;
use crate::hash::ShaD;
use crate::params::FortunaParams;
use zeroize::Zeroizing;

/// Number of pools.
pub const POOLS: usize = 32;
/// Longest event data the book allows.
pub const MAX_EVENT_LEN: usize = 32;

/// The pools drawn on by reseed number `reseed` (1-based): `0..=k` with `k` the number of
/// trailing zero bits of `reseed`, at most 31. Returns an empty range for 0.
pub fn pools_for_reseed(reseed: u64) -> std::ops::Range<usize> {
    if reseed == 0 {
        return 0..0;
    }
    0..(reseed.trailing_zeros() as usize + 1).min(POOLS)
}

/// The pools, with their sizes in the unit [`FortunaParams::pool_size_counts_headers`] chooses.
#[derive(Clone)]
pub struct Pools {
    params: FortunaParams,
    hashes: [ShaD; POOLS],
    sizes: [u64; POOLS],
}

impl Pools {
    /// 32 empty pools.
    pub fn new(params: FortunaParams) -> Pools {
        Pools {
            params,
            hashes: core::array::from_fn(|_| ShaD::new(params.hash_zero_prefix)),
            sizes: [0; POOLS],
        }
    }

    /// Appends an event. The pool must be below 32; in book mode the data must be 1 to 32
    /// bytes, in mirage mode any length goes and the length byte is the length modulo 256.
    pub fn add(&mut self, source: u8, pool: usize, data: &[u8]) -> Result<(), RngError> {
        if pool >= POOLS {
            return Err(RngError::BadPool);
        }
        if self.params.check_event_length && !(1..=MAX_EVENT_LEN).contains(&data.len()) {
            return Err(RngError::BadEventLength);
        }
        let hash = &mut self.hashes[pool];
        hash.update(&[source, data.len() as u8]);
        hash.update(data);
        let header = if self.params.pool_size_counts_headers { 2 } else { 0 };
        self.sizes[pool] = self.sizes[pool].saturating_add(header + data.len() as u64);
        Ok(())
    }

    /// The size of pool `i` (0 for an out-of-range index).
    pub fn size(&self, i: usize) -> u64 {
        self.sizes.get(i).copied().unwrap_or(0)
    }

    /// The reseed material for reseed number `reseed`: `SHA_d(P_0) ‖ SHA_d(P_1) ‖ …` over the
    /// pools [`pools_for_reseed`] names, which are emptied.
    pub fn drain_for_reseed(&mut self, reseed: u64) -> Zeroizing<Vec<u8>> {
        let used = pools_for_reseed(reseed);
        let mut seed = Zeroizing::new(Vec::with_capacity(used.len() * 32));
        for i in used {
            seed.extend_from_slice(self.hashes[i].finalize_reset().as_slice());
            self.sizes[i] = 0;
        }
        seed
    }
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools").field("sizes", &self.sizes).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha_d;

    #[test]
    fn schedule_uses_pool_i_when_two_to_the_i_divides_r() {
        assert_eq!(pools_for_reseed(0), 0..0);
        assert_eq!(pools_for_reseed(1), 0..1);
        assert_eq!(pools_for_reseed(2), 0..2);
        assert_eq!(pools_for_reseed(3), 0..1);
        assert_eq!(pools_for_reseed(4), 0..3);
        assert_eq!(pools_for_reseed(12), 0..3);
        assert_eq!(pools_for_reseed(1 << 31), 0..32);
        assert_eq!(pools_for_reseed(1 << 40), 0..32);
        // Brute force against the definition.
        for r in 1..5000u64 {
            let expect: Vec<usize> = (0..POOLS).filter(|&i| r % (1u64 << i) == 0).collect();
            assert_eq!(pools_for_reseed(r).collect::<Vec<_>>(), expect, "r = {r}");
        }
    }

    #[test]
    fn event_validation_by_mode() {
        let mut book = Pools::new(FortunaParams::BOOK);
        assert_eq!(book.add(0, 32, b"x"), Err(RngError::BadPool));
        assert_eq!(book.add(0, 0, b""), Err(RngError::BadEventLength));
        assert_eq!(book.add(0, 0, &[1; 33]), Err(RngError::BadEventLength));
        assert!(book.add(255, 31, &[1; 32]).is_ok());
        assert!(book.add(0, 0, &[1; 1]).is_ok());
        let mut mirage = Pools::new(FortunaParams::MIRAGE);
        assert_eq!(mirage.add(0, 32, b"x"), Err(RngError::BadPool));
        assert!(mirage.add(0, 0, b"").is_ok());
        assert!(mirage.add(0, 0, &[1; 300]).is_ok());
    }

    #[test]
    fn sizes_count_headers_only_in_book_mode() {
        let mut book = Pools::new(FortunaParams::BOOK);
        let mut mirage = Pools::new(FortunaParams::MIRAGE);
        for p in [&mut book, &mut mirage] {
            p.add(1, 0, &[7; 10]).unwrap();
            p.add(2, 0, &[7; 5]).unwrap();
        }
        assert_eq!(book.size(0), 19);
        assert_eq!(mirage.size(0), 15);
        assert_eq!(book.size(1), 0);
    }

    #[test]
    fn drain_hashes_the_framed_events_and_empties_used_pools() {
        for params in [FortunaParams::BOOK, FortunaParams::MIRAGE] {
            let mut pools = Pools::new(params);
            pools.add(9, 0, b"zero").unwrap();
            pools.add(9, 1, b"one").unwrap();
            pools.add(9, 2, b"two").unwrap();
            // Reseed 2 uses pools 0 and 1, not 2.
            let seed = pools.drain_for_reseed(2);
            let p0 = sha_d(params.hash_zero_prefix, &[&[9, 4], b"zero"]);
            let p1 = sha_d(params.hash_zero_prefix, &[&[9, 3], b"one"]);
            assert_eq!(&seed[..], [p0.as_slice(), p1.as_slice()].concat());
            assert_eq!((pools.size(0), pools.size(1)), (0, 0));
            assert!(pools.size(2) > 0);
            // Emptied pools hash as empty.
            let seed = pools.drain_for_reseed(1);
            assert_eq!(&seed[..], sha_d(params.hash_zero_prefix, &[]).as_slice());
        }
    }

    #[test]
    fn mirage_length_byte_wraps() {
        let mut pools = Pools::new(FortunaParams::MIRAGE);
        pools.add(3, 0, &[5; 260]).unwrap();
        let seed = pools.drain_for_reseed(1);
        assert_eq!(&seed[..], sha_d(false, &[&[3, 4], &[5; 260]]).as_slice());
    }
}
