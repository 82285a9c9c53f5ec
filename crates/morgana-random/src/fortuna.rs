//! The Fortuna accumulator (*Cryptography Engineering* §9.5): the pools, the generator, and the
//! rule deciding when the pools reseed the generator.
//!
//! Before each request, if pool 0 holds at least [`FortunaParams::min_pool_size`] bytes and at
//! least [`FortunaParams::reseed_interval_ns`] have passed since the last reseed from the pools
//! (strictly more of both in mirage mode), the reseed counter `r` is incremented and the generator
//! is reseeded with `SHA_d(P_i)` of the pools [`crate::pools::pools_for_reseed`] names. The time
//! of "the last reseed" starts at 0 on the caller's clock, so with a clock counting from process
//! start (MirageOS: from boot) the first pool reseed waits one interval.
//!
//! Requests larger than [`FortunaParams::max_request`] are served in chunks of that size, the
//! generator rekeying after each. An empty request reseeds if due and checks that the generator is
//! seeded, and otherwise does nothing (no rekey).

use crate::error::RngError;
use crate::generator::Generator;
use crate::params::{FortunaParams, Mode};
use crate::pools::Pools;

/// Fortuna: pools plus generator.
#[derive(Debug)]
pub struct Fortuna {
    generator: Generator,
    pools: Pools,
    reseed_count: u64,
    last_reseed_ns: u64,
}

impl Fortuna {
    /// An unseeded Fortuna with empty pools.
    pub fn new(params: FortunaParams) -> Fortuna {
        Fortuna {
            generator: Generator::new(params),
            pools: Pools::new(params),
            reseed_count: 0,
            last_reseed_ns: 0,
        }
    }

    /// An unseeded Fortuna in `mode`.
    pub fn with_mode(mode: Mode) -> Fortuna {
        Fortuna::new(FortunaParams::of(mode))
    }

    /// The parameters in force.
    pub fn params(&self) -> &FortunaParams {
        self.generator.params()
    }

    /// Reseeds the generator directly with `seed`, bypassing the pools (the book's seed file, or
    /// the initial seed gathered from entropy sources). Does not count as a pool reseed.
    pub fn reseed(&mut self, seed: &[u8]) {
        self.generator.reseed(seed);
    }

    /// Adds a random event from `source` to `pool` (see [`Pools::add`] for the rules).
    pub fn add_random_event(&mut self, source: u8, pool: usize, data: &[u8]) -> Result<(), RngError> {
        self.pools.add(source, pool, data)
    }

    /// Fills `out` with random bytes at time `now_ns`, reseeding from the pools first when due.
    /// Fails with [`RngError::Unseeded`] if the generator has never been seeded.
    pub fn random_data(&mut self, out: &mut [u8], now_ns: u64) -> Result<(), RngError> {
        self.reseed_if_due(now_ns);
        if !self.generator.is_seeded() {
            return Err(RngError::Unseeded);
        }
        let chunk = self.params().max_request;
        for part in out.chunks_mut(chunk) {
            self.generator.generate(part)?;
        }
        Ok(())
    }

    /// Reseeds from the pools if pool 0 is large enough and the interval has passed at `now_ns`;
    /// returns whether it did. [`Fortuna::random_data`] calls this first.
    pub fn reseed_if_due(&mut self, now_ns: u64) -> bool {
        let params = *self.params();
        let elapsed = now_ns.saturating_sub(self.last_reseed_ns);
        let due = params.meets(self.pools.size(0), params.min_pool_size as u64)
            && params.meets(elapsed, params.reseed_interval_ns)
            && now_ns >= self.last_reseed_ns;
        if due {
            self.reseed_count += 1;
            self.last_reseed_ns = now_ns;
            let seed = self.pools.drain_for_reseed(self.reseed_count);
            self.generator.reseed(&seed);
        }
        due
    }

    /// Whether the generator has been seeded.
    pub fn is_seeded(&self) -> bool {
        self.generator.is_seeded()
    }

    /// How many times the pools have reseeded the generator (`r`, the reseed counter).
    pub fn reseed_count(&self) -> u64 {
        self.reseed_count
    }

    /// When the pools last reseeded the generator (0 if never).
    pub fn last_reseed_ns(&self) -> u64 {
        self.last_reseed_ns
    }

    /// The size of pool `i` (see [`FortunaParams::pool_size_counts_headers`]).
    pub fn pool_size(&self, i: usize) -> u64 {
        self.pools.size(i)
    }

    /// The generator, for inspection.
    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha_d;
    use crate::pools::{pools_for_reseed, POOLS};

    const MS: u64 = 1_000_000;

    /// A virtual clock: time only moves when the test says so.
    struct Clock(u64);
    impl Clock {
        fn advance_ms(&mut self, ms: u64) -> u64 {
            self.0 += ms * MS;
            self.0
        }
    }

    fn seeded(mode: Mode) -> Fortuna {
        let mut f = Fortuna::with_mode(mode);
        f.reseed(b"initial seed");
        f
    }

    #[test]
    fn unseeded_fortuna_refuses_output_even_for_empty_requests() {
        for mode in [Mode::Book, Mode::Mirage] {
            let mut f = Fortuna::with_mode(mode);
            assert_eq!(f.random_data(&mut [0; 4], 0), Err(RngError::Unseeded));
            assert_eq!(f.random_data(&mut [], 0), Err(RngError::Unseeded));
        }
    }

    #[test]
    fn pools_alone_can_seed_the_generator() {
        let mut f = Fortuna::with_mode(Mode::Book);
        for _ in 0..2 {
            f.add_random_event(0, 0, &[0xab; 30]).unwrap();
        }
        assert_eq!(f.random_data(&mut [0; 4], 50 * MS), Err(RngError::Unseeded));
        assert!(f.random_data(&mut [0; 4], 100 * MS).is_ok());
        assert_eq!(f.reseed_count(), 1);
    }

    #[test]
    fn book_rule_is_64_bytes_and_100_ms_inclusive() {
        let mut f = seeded(Mode::Book);
        let mut clock = Clock(0);
        let mut out = [0u8; 8];
        // Two events of 29 data bytes append 2 × (2 + 29) = 62 bytes to pool 0.
        f.add_random_event(1, 0, &[1; 29]).unwrap();
        f.add_random_event(1, 0, &[1; 29]).unwrap();
        assert_eq!(f.pool_size(0), 64 - 2);
        f.random_data(&mut out, clock.advance_ms(500)).unwrap();
        assert_eq!(f.reseed_count(), 0, "62 bytes is not enough");
        f.add_random_event(1, 0, &[1; 1]).unwrap(); // 65 bytes
        f.random_data(&mut out, clock.0).unwrap();
        assert_eq!(f.reseed_count(), 1);
        assert_eq!(f.pool_size(0), 0);

        // Exactly 64 bytes suffices, but only 100 ms after the last reseed.
        f.add_random_event(1, 0, &[1; 30]).unwrap();
        f.add_random_event(1, 0, &[1; 30]).unwrap();
        assert_eq!(f.pool_size(0), 64);
        f.random_data(&mut out, clock.advance_ms(99)).unwrap();
        assert_eq!(f.reseed_count(), 1, "99 ms is too early");
        assert!(!f.reseed_if_due(clock.0 + MS - 1));
        f.random_data(&mut out, clock.advance_ms(1)).unwrap();
        assert_eq!(f.reseed_count(), 2, "100 ms is enough");
        assert_eq!(f.last_reseed_ns(), 600 * MS);
    }

    #[test]
    fn mirage_rule_is_more_than_64_data_bytes_and_more_than_1_s() {
        let mut f = seeded(Mode::Mirage);
        let mut out = [0u8; 8];
        f.add_random_event(1, 0, &[1; 64]).unwrap();
        assert_eq!(f.pool_size(0), 64);
        f.random_data(&mut out, 5_000 * MS).unwrap();
        assert_eq!(f.reseed_count(), 0, "64 data bytes is not more than 64");
        f.add_random_event(1, 0, &[1]).unwrap();
        f.random_data(&mut out, 1_000 * MS).unwrap();
        assert_eq!(f.reseed_count(), 0, "1 s since the origin is not more than 1 s");
        f.random_data(&mut out, 1_000 * MS + 1).unwrap();
        assert_eq!(f.reseed_count(), 1);
        f.add_random_event(1, 0, &[1; 65]).unwrap();
        f.random_data(&mut out, 2_000 * MS + 1).unwrap();
        assert_eq!(f.reseed_count(), 1);
        f.random_data(&mut out, 2_000 * MS + 2).unwrap();
        assert_eq!(f.reseed_count(), 2);
    }

    #[test]
    fn a_clock_going_backwards_never_reseeds() {
        let mut f = seeded(Mode::Book);
        f.add_random_event(1, 0, &[1; 32]).unwrap();
        f.add_random_event(1, 0, &[1; 32]).unwrap();
        assert!(f.reseed_if_due(10_000 * MS));
        f.add_random_event(1, 0, &[1; 32]).unwrap();
        f.add_random_event(1, 0, &[1; 32]).unwrap();
        assert!(!f.reseed_if_due(5_000 * MS));
    }

    /// Drives 40 reseeds with events in every pool and checks each reseed's key against a model
    /// that picks the pools from the definition (2^i divides r).
    #[test]
    fn reseed_schedule_drives_the_key() {
        for mode in [Mode::Book, Mode::Mirage] {
            let params = FortunaParams::of(mode);
            let mut f = seeded(mode);
            // Per pool: the framed bytes appended since it was last emptied, and the data bytes.
            let mut model: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), 0); POOLS];
            let mut clock = Clock(0);
            let add = |f: &mut Fortuna, model: &mut Vec<(Vec<u8>, u64)>, src: u8, i: usize, data: &[u8]| {
                f.add_random_event(src, i, data).unwrap();
                model[i].0.extend_from_slice(&[src, data.len() as u8]);
                model[i].0.extend_from_slice(data);
                model[i].1 += data.len() as u64;
            };
            for r in 1..=40u64 {
                for i in 0..POOLS {
                    add(&mut f, &mut model, 7, i, &[r as u8, i as u8, 0x5a, 0xa5]);
                }
                // Top up pool 0 past either threshold.
                for _ in 0..3 {
                    add(&mut f, &mut model, 8, 0, &[r as u8; 32]);
                }
                let key_before = *f.generator().key();
                let counter_before = f.generator().counter();
                assert!(f.reseed_if_due(clock.advance_ms(1_001)));
                assert_eq!(f.reseed_count(), r);
                let mut seed = Vec::new();
                for (i, (bytes, data_len)) in model.iter_mut().enumerate() {
                    if r % (1 << i) == 0 {
                        seed.extend_from_slice(sha_d(params.hash_zero_prefix, &[bytes]).as_slice());
                        bytes.clear();
                        *data_len = 0;
                    }
                }
                assert_eq!(seed.len() / 32, pools_for_reseed(r).len());
                let key = sha_d(params.hash_zero_prefix, &[&key_before, &seed]);
                assert_eq!(f.generator().key(), &*key, "{mode:?} reseed {r}");
                assert_eq!(f.generator().counter(), counter_before + 1);
                for (i, (bytes, data_len)) in model.iter().enumerate() {
                    let expect = if params.pool_size_counts_headers { bytes.len() as u64 } else { *data_len };
                    assert_eq!(f.pool_size(i), expect, "{mode:?} reseed {r} pool {i}");
                }
            }
        }
    }

    #[test]
    fn large_requests_are_served_in_rekeyed_chunks() {
        for mode in [Mode::Book, Mode::Mirage] {
            let chunk = FortunaParams::of(mode).max_request;
            let mut whole = seeded(mode);
            let mut pieces = seeded(mode);
            let mut a = vec![0u8; 2 * chunk + 16];
            whole.random_data(&mut a, 0).unwrap();
            let mut b = vec![0u8; 2 * chunk + 16];
            for part in b.chunks_mut(chunk) {
                pieces.generator.generate(part).unwrap();
            }
            assert_eq!(a, b);
            assert_eq!(whole.generator().key(), pieces.generator().key());
            // Three rekeys: the counter moved by the output blocks plus 2 per chunk.
            assert_eq!(whole.generator().counter(), 1 + (a.len() as u128) / 16 + 6);
        }
    }

    #[test]
    fn empty_request_is_a_no_op_once_seeded() {
        let mut f = seeded(Mode::Book);
        let key = *f.generator().key();
        f.random_data(&mut [], 0).unwrap();
        assert_eq!(f.generator().key(), &key);
    }
}
