//! Fortuna and entropy-source bindings. The TypeScript `Fortuna` class wraps `NativeFortuna`;
//! time arrives as milliseconds on the caller's monotonic clock and is handed to the sans-IO
//! accumulator in nanoseconds.

use crate::errors::failure;
use morgana_random::entropy::{self, Feeder};
use morgana_random::{Fortuna, Mode};
use napi_derive::napi;

// napi-derive reads a literal `&mut T` parameter as a class reference; through an alias the
// typed-array conversion applies, borrowing the caller's buffer without a copy.
type BytesMut<'a> = &'a mut [u8];

/// Milliseconds (any finite number; negative and NaN count as 0) to whole nanoseconds.
fn to_ns(now_ms: f64) -> u64 {
    if now_ms > 0.0 {
        // `as` saturates at u64::MAX for huge values.
        (now_ms * 1e6).round() as u64
    } else {
        0
    }
}

/// A Fortuna generator with its pools and its periodic-feeding state.
#[napi]
pub struct NativeFortuna {
    inner: Fortuna,
    feeder: Option<Feeder>,
}

#[napi]
impl NativeFortuna {
    /// An unseeded Fortuna: book mode, or mirage-crypto-rng's parameters when `mirage` is set.
    #[napi(constructor)]
    pub fn new(mirage: bool) -> Self {
        let mode = if mirage { Mode::Mirage } else { Mode::Book };
        NativeFortuna { inner: Fortuna::with_mode(mode), feeder: None }
    }

    /// Reseeds the generator directly with `seed` (not through the pools).
    #[napi]
    pub fn reseed(&mut self, seed: &[u8]) {
        self.inner.reseed(seed);
    }

    /// Adds a random event; 0, or a negative error (`ERR_RNG_BAD_EVENT`). `source` must fit a
    /// byte (checked by the caller; higher bits are dropped).
    #[napi]
    pub fn add_random_event(&mut self, source: u32, pool: u32, data: &[u8]) -> i32 {
        match self.inner.add_random_event(source as u8, pool as usize, data) {
            Ok(()) => 0,
            Err(e) => failure(e.code()),
        }
    }

    /// Fills `out` with random bytes at `now_ms`, reseeding from the pools first when due; 0, or
    /// a negative error (`ERR_RNG_UNSEEDED`).
    #[napi]
    pub fn fill(&mut self, #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>, now_ms: f64) -> i32 {
        match self.inner.random_data(out, to_ns(now_ms)) {
            Ok(()) => 0,
            Err(e) => failure(e.code()),
        }
    }

    /// Seeds from getrandom, RDSEED/RDRAND and cycle-counter jitter in one direct reseed. Returns
    /// the seed's length in bytes, or a negative error (`ERR_RNG_NO_ENTROPY`).
    #[napi]
    pub fn seed_from_entropy(&mut self) -> i32 {
        match entropy::initial_seed() {
            Ok((seed, _report)) => {
                self.inner.reseed(&seed);
                seed.len() as i32
            }
            Err(_) => failure("ERR_RNG_NO_ENTROPY"),
        }
    }

    /// One periodic-feeding round (a CPU RNG sample per pool and a cycle-counter reading to the
    /// next pool); returns the number of events added.
    #[napi]
    pub fn feed_entropy(&mut self) -> u32 {
        let report = self.feeder.get_or_insert_with(Feeder::new).feed(&mut self.inner);
        report.cpu_events + report.jitter_events
    }

    /// Whether the generator has been seeded.
    #[napi(getter)]
    pub fn seeded(&self) -> bool {
        self.inner.is_seeded()
    }

    /// How many times the pools have reseeded the generator.
    #[napi(getter)]
    pub fn reseed_count(&self) -> f64 {
        self.inner.reseed_count() as f64
    }

    /// The size of pool `index` in the mode's unit (bytes appended, or data bytes in mirage mode).
    #[napi]
    pub fn pool_size(&self, index: u32) -> f64 {
        self.inner.pool_size(index as usize) as f64
    }
}

/// What the machine's entropy sources can do, and the CPU RNG counters.
#[napi(object)]
pub struct EntropyStatus {
    /// getrandom(2) produced bytes.
    pub os: bool,
    /// RDRAND is present and passed its self-test.
    pub rdrand: bool,
    /// RDSEED is present and passed its self-test.
    pub rdseed: bool,
    /// What the cycle counter reads: `rdtsc`, `cntvct_el0` or `monotonic-clock`.
    pub cycle_counter: String,
    /// RDRAND samples requested so far in this process.
    pub rdrand_calls: f64,
    /// RDRAND samples that failed after their retries.
    pub rdrand_failures: f64,
    /// RDSEED samples requested so far in this process.
    pub rdseed_calls: f64,
    /// RDSEED samples that failed after their retries.
    pub rdseed_failures: f64,
}

/// Probes the entropy sources.
#[napi]
pub fn entropy_status() -> EntropyStatus {
    let a = entropy::availability();
    let s = entropy::cpu_rng_stats();
    EntropyStatus {
        os: a.os,
        rdrand: a.cpu.rdrand,
        rdseed: a.cpu.rdseed,
        cycle_counter: a.cycle_counter.to_owned(),
        rdrand_calls: s.rdrand_calls as f64,
        rdrand_failures: s.rdrand_failures as f64,
        rdseed_calls: s.rdseed_calls as f64,
        rdseed_failures: s.rdseed_failures as f64,
    }
}
