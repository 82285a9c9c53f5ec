//! Entropy sources, the initial seed and the periodic feeder.
//!
//! This is the one module that touches the machine: getrandom(2) (through the `getrandom`
//! crate), the x86-64 RDSEED/RDRAND instructions and the CPU cycle counter. The generator and
//! the accumulator never call it; the binding does, once to seed and then on a timer.
//!
//! - [`os_entropy`]: the operating system's CSPRNG.
//! - [`rdseed`] / [`rdrand`]: the CPU's random number instructions, when [`cpu_rng`] detects
//!   them (cpuid says so *and* a self-test draws a value that is not all ones: some AMD parts
//!   return `u64::MAX` with the success flag set). Each call retries (RDRAND 10 times, RDSEED 100
//!   times with a pause), and all-ones results count as failures.
//! - [`cycle_counter`]: RDTSC on x86-64, CNTVCT_EL0 on AArch64, a monotonic clock elsewhere;
//!   [`whirlwind`] turns it into jitter samples (timing of data-dependent busy loops, after the
//!   Whirlwind RNG as mirage-crypto uses it).
//! - [`initial_seed`]: one seed from all of them, framed as `(source, length, data)` records.
//! - [`Feeder`]: what the periodic task adds to the pools: one CPU RNG sample per pool and a
//!   cycle-counter reading to the next pool, each source spreading its events round-robin.

use crate::error::RngError;
use crate::fortuna::Fortuna;
use crate::pools::POOLS;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// Source id of operating-system entropy (getrandom).
pub const SOURCE_OS: u8 = 0;
/// Source id of RDSEED samples.
pub const SOURCE_RDSEED: u8 = 1;
/// Source id of RDRAND samples.
pub const SOURCE_RDRAND: u8 = 2;
/// Source id of cycle-counter jitter.
pub const SOURCE_JITTER: u8 = 3;

/// Bytes of operating-system entropy in the initial seed.
pub const OS_SEED_BYTES: usize = 64;
/// Cycle-counter samples in one [`whirlwind`] run (2 bytes each).
pub const WHIRLWIND_SAMPLES: usize = 100;
/// RDRAND draws in the initial seed when RDSEED is unusable: enough to force the on-chip DRBG
/// through reseeds, as Intel advises and mirage-crypto does.
const RDRAND_BOOTSTRAP_DRAWS: usize = 512;
/// RDSEED draws in the initial seed.
const RDSEED_BOOTSTRAP_DRAWS: usize = 4;

/// Which CPU random instructions are usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuRng {
    /// RDRAND is present and passed its self-test.
    pub rdrand: bool,
    /// RDSEED is present and passed its self-test.
    pub rdseed: bool,
}

/// What the entropy sources of this machine can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// getrandom(2) (or the platform's equivalent) produced bytes.
    pub os: bool,
    /// The CPU random instructions.
    pub cpu: CpuRng,
    /// What [`cycle_counter`] reads: `"rdtsc"`, `"cntvct_el0"` or `"monotonic-clock"`.
    pub cycle_counter: &'static str,
}

/// Calls and failures of the CPU random instructions since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuRngStats {
    /// RDRAND samples requested.
    pub rdrand_calls: u64,
    /// RDRAND samples that failed after all retries (or were all ones).
    pub rdrand_failures: u64,
    /// RDSEED samples requested.
    pub rdseed_calls: u64,
    /// RDSEED samples that failed after all retries (or were all ones).
    pub rdseed_failures: u64,
}

static RDRAND_CALLS: AtomicU64 = AtomicU64::new(0);
static RDRAND_FAILURES: AtomicU64 = AtomicU64::new(0);
static RDSEED_CALLS: AtomicU64 = AtomicU64::new(0);
static RDSEED_FAILURES: AtomicU64 = AtomicU64::new(0);

/// The counters of [`rdrand`] and [`rdseed`].
pub fn cpu_rng_stats() -> CpuRngStats {
    CpuRngStats {
        rdrand_calls: RDRAND_CALLS.load(Ordering::Relaxed),
        rdrand_failures: RDRAND_FAILURES.load(Ordering::Relaxed),
        rdseed_calls: RDSEED_CALLS.load(Ordering::Relaxed),
        rdseed_failures: RDSEED_FAILURES.load(Ordering::Relaxed),
    }
}

/// Fills `out` from the operating system (getrandom(2) on Linux).
pub fn os_entropy(out: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The instructions, each behind a runtime feature check done by the caller.
    use core::arch::x86_64::{_mm_pause, _rdrand64_step, _rdseed64_step, _rdtsc};

    /// One RDRAND attempt. Caller: RDRAND is supported.
    #[target_feature(enable = "rdrand")]
    pub unsafe fn rdrand_once() -> Option<u64> {
        let mut value = 0u64;
        // SAFETY: the caller checked cpuid for RDRAND.
        // (The intrinsic is safe inside a `target_feature` function on newer compilers.)
        #[allow(unused_unsafe)]
        let ok = unsafe { _rdrand64_step(&mut value) };
        (ok == 1).then_some(value)
    }

    /// One RDSEED attempt. Caller: RDSEED is supported.
    #[target_feature(enable = "rdseed")]
    pub unsafe fn rdseed_once() -> Option<u64> {
        let mut value = 0u64;
        // SAFETY: the caller checked cpuid for RDSEED.
        // (The intrinsic is safe inside a `target_feature` function on newer compilers.)
        #[allow(unused_unsafe)]
        let ok = unsafe { _rdseed64_step(&mut value) };
        (ok == 1).then_some(value)
    }

    /// Spin-wait hint between RDSEED retries.
    pub fn pause() {
        _mm_pause();
    }

    /// The time-stamp counter (present on every x86-64 CPU).
    pub fn rdtsc() -> u64 {
        // SAFETY: RDTSC is part of the x86-64 baseline and has no memory effects.
        #[allow(unused_unsafe)]
        unsafe {
            _rdtsc()
        }
    }

    /// cpuid says RDRAND.
    pub fn has_rdrand() -> bool {
        std::arch::is_x86_feature_detected!("rdrand")
    }

    /// cpuid says RDSEED.
    pub fn has_rdseed() -> bool {
        std::arch::is_x86_feature_detected!("rdseed")
    }
}

const RDRAND_RETRIES: usize = 10;
const RDSEED_RETRIES: usize = 100;

/// A usable draw: success flag set and not all ones.
fn draw(retries: usize, mut once: impl FnMut() -> Option<u64>, pause: bool) -> Option<u64> {
    for attempt in 0..retries {
        match once() {
            Some(v) if v != u64::MAX => return Some(v),
            _ => {
                #[cfg(target_arch = "x86_64")]
                if pause && attempt + 1 < retries {
                    x86::pause();
                }
                let _ = (pause, attempt);
            }
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
fn raw_rdrand() -> Option<u64> {
    // SAFETY: only called after `x86::has_rdrand()`.
    draw(RDRAND_RETRIES, || unsafe { x86::rdrand_once() }, false)
}

#[cfg(target_arch = "x86_64")]
fn raw_rdseed() -> Option<u64> {
    // SAFETY: only called after `x86::has_rdseed()`.
    draw(RDSEED_RETRIES, || unsafe { x86::rdseed_once() }, true)
}

/// Detects the CPU random instructions once per process: cpuid must list them and a self-test
/// draw must succeed with a value other than all ones.
pub fn cpu_rng() -> CpuRng {
    static DETECTED: OnceLock<CpuRng> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            CpuRng {
                rdrand: x86::has_rdrand() && raw_rdrand().is_some(),
                rdseed: x86::has_rdseed() && raw_rdseed().is_some(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuRng { rdrand: false, rdseed: false }
        }
    })
}

/// One 64-bit RDRAND sample, or `None` when RDRAND is unusable or failed 10 times in a row.
pub fn rdrand() -> Option<u64> {
    if !cpu_rng().rdrand {
        return None;
    }
    RDRAND_CALLS.fetch_add(1, Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    let value = raw_rdrand();
    #[cfg(not(target_arch = "x86_64"))]
    let value = None;
    if value.is_none() {
        RDRAND_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
    value
}

/// One 64-bit RDSEED sample, or `None` when RDSEED is unusable or failed 100 times in a row
/// (it runs dry under load).
pub fn rdseed() -> Option<u64> {
    if !cpu_rng().rdseed {
        return None;
    }
    RDSEED_CALLS.fetch_add(1, Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    let value = raw_rdseed();
    #[cfg(not(target_arch = "x86_64"))]
    let value = None;
    if value.is_none() {
        RDSEED_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
    value
}

/// The CPU cycle counter (see [`Availability::cycle_counter`]); its low bits differ between
/// calls.
pub fn cycle_counter() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        x86::rdtsc()
    }
    #[cfg(target_arch = "aarch64")]
    {
        let value: u64;
        // SAFETY: CNTVCT_EL0 is readable from user space on Linux and macOS; ISB orders the read.
        unsafe {
            core::arch::asm!("isb", "mrs {v}, cntvct_el0", v = out(reg) value, options(nomem, nostack))
        };
        value
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
        EPOCH.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

/// What [`cycle_counter`] reads on this target.
pub const fn cycle_counter_kind() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "rdtsc"
    } else if cfg!(target_arch = "aarch64") {
        "cntvct_el0"
    } else {
        "monotonic-clock"
    }
}

/// Appends [`WHIRLWIND_SAMPLES`] jitter samples (the low 16 bits of the cycle counter,
/// little-endian) to `out`. Between two readings the code runs a busy loop whose length and
/// arithmetic depend on the previous reading, so cache, pipeline and frequency effects spread
/// the next reading.
pub fn whirlwind(out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    for i in 0..WHIRLWIND_SAMPLES as u64 {
        let t = cycle_counter();
        out.extend_from_slice(&(t as u16).to_le_bytes());
        for j in 1..=(t % 1024) {
            acc = std::hint::black_box((t / j).wrapping_sub(acc.wrapping_mul(i)).wrapping_add(1));
        }
    }
    std::hint::black_box(acc);
}

/// Probes every source once (getrandom for 16 bytes; the CPU instructions are detected once per
/// process).
pub fn availability() -> Availability {
    let mut probe = Zeroizing::new([0u8; 16]);
    Availability {
        os: os_entropy(probe.as_mut()).is_ok(),
        cpu: cpu_rng(),
        cycle_counter: cycle_counter_kind(),
    }
}

/// What went into an [`initial_seed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedReport {
    /// Bytes of operating-system entropy.
    pub os_bytes: usize,
    /// Bytes of RDSEED output.
    pub rdseed_bytes: usize,
    /// Bytes of RDRAND output.
    pub rdrand_bytes: usize,
    /// Bytes of cycle-counter jitter.
    pub jitter_bytes: usize,
}

/// Initial seeding failed: neither the operating system nor the CPU produced any entropy, and
/// jitter alone is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoStrongEntropy;

impl std::fmt::Display for NoStrongEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no strong entropy source: getrandom failed and the CPU has no usable RDSEED/RDRAND")
    }
}

impl std::error::Error for NoStrongEntropy {}

fn record(seed: &mut Vec<u8>, source: u8, data: &[u8]) {
    debug_assert!(data.len() <= 255);
    seed.push(source);
    seed.push(data.len() as u8);
    seed.extend_from_slice(data);
}

/// Gathers an initial seed: [`OS_SEED_BYTES`] from getrandom, 32 bytes of RDSEED (or 512 RDRAND
/// samples when RDSEED is missing or dry), and [`whirlwind`] jitter, as `(source, length, data)`
/// records for one direct [`Fortuna::reseed`]. Fails rather than seed from jitter alone.
pub fn initial_seed() -> Result<(Zeroizing<Vec<u8>>, SeedReport), NoStrongEntropy> {
    let mut seed = Zeroizing::new(Vec::with_capacity(1024));
    let mut report = SeedReport::default();

    let mut os = Zeroizing::new([0u8; OS_SEED_BYTES]);
    if os_entropy(os.as_mut()).is_ok() {
        record(&mut seed, SOURCE_OS, os.as_ref());
        report.os_bytes = OS_SEED_BYTES;
    }

    let mut cpu = Zeroizing::new(Vec::with_capacity(32));
    for _ in 0..RDSEED_BOOTSTRAP_DRAWS {
        if let Some(v) = rdseed() {
            cpu.extend_from_slice(&v.to_le_bytes());
        }
    }
    if !cpu.is_empty() {
        record(&mut seed, SOURCE_RDSEED, &cpu);
        report.rdseed_bytes = cpu.len();
    } else {
        for _ in 0..RDRAND_BOOTSTRAP_DRAWS {
            if let Some(v) = rdrand() {
                record(&mut seed, SOURCE_RDRAND, &v.to_le_bytes());
                report.rdrand_bytes += 8;
            }
        }
    }

    if report.os_bytes == 0 && report.rdseed_bytes == 0 && report.rdrand_bytes == 0 {
        return Err(NoStrongEntropy);
    }

    let mut jitter = Zeroizing::new(Vec::with_capacity(2 * WHIRLWIND_SAMPLES));
    whirlwind(&mut jitter);
    record(&mut seed, SOURCE_JITTER, &jitter);
    report.jitter_bytes = jitter.len();
    Ok((seed, report))
}

/// One source's events, spread round-robin over the pools starting at pool 0 (the book leaves
/// the choice of pool to the source).
#[derive(Debug, Clone)]
pub struct Accumulator {
    source: u8,
    next_pool: usize,
}

impl Accumulator {
    /// An accumulator for `source`, starting at pool 0.
    pub fn new(source: u8) -> Accumulator {
        Accumulator { source, next_pool: 0 }
    }

    /// The pool the next event goes to.
    pub fn next_pool(&self) -> usize {
        self.next_pool
    }

    /// Adds `data` to the next pool.
    pub fn add(&mut self, fortuna: &mut Fortuna, data: &[u8]) -> Result<(), RngError> {
        fortuna.add_random_event(self.source, self.next_pool, data)?;
        self.next_pool = (self.next_pool + 1) % POOLS;
        Ok(())
    }
}

/// What a periodic feeding round added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedReport {
    /// CPU RNG samples added (8 bytes each).
    pub cpu_events: u32,
    /// Cycle-counter readings added (4 bytes each).
    pub jitter_events: u32,
}

/// The periodic entropy task's state: one round-robin [`Accumulator`] per source.
#[derive(Debug, Clone)]
pub struct Feeder {
    cpu: Accumulator,
    jitter: Accumulator,
}

impl Default for Feeder {
    fn default() -> Self {
        Feeder::new()
    }
}

impl Feeder {
    /// A feeder whose sources start at pool 0.
    pub fn new() -> Feeder {
        let cpu_source = if cpu_rng().rdrand { SOURCE_RDRAND } else { SOURCE_RDSEED };
        Feeder { cpu: Accumulator::new(cpu_source), jitter: Accumulator::new(SOURCE_JITTER) }
    }

    /// One round: a CPU RNG sample for each of the 32 pools (RDRAND, else RDSEED; failed draws
    /// are skipped, so a pool may miss a round), then the low 32 bits of the cycle counter to the
    /// next pool in the jitter source's rotation.
    pub fn feed(&mut self, fortuna: &mut Fortuna) -> FeedReport {
        let mut report = FeedReport::default();
        let rng = cpu_rng();
        if rng.rdrand || rng.rdseed {
            for _ in 0..POOLS {
                let sample = if rng.rdrand { rdrand() } else { rdseed() };
                match sample {
                    Some(v) => {
                        // 8 bytes is a valid event in both modes.
                        if self.cpu.add(fortuna, &v.to_le_bytes()).is_ok() {
                            report.cpu_events += 1;
                        }
                    }
                    None => self.cpu.next_pool = (self.cpu.next_pool + 1) % POOLS,
                }
            }
        }
        if self.jitter.add(fortuna, &(cycle_counter() as u32).to_le_bytes()).is_ok() {
            report.jitter_events += 1;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Mode;

    #[test]
    fn availability_matches_cpuid() {
        let a = availability();
        assert!(a.os, "getrandom works on every supported OS");
        #[cfg(target_arch = "x86_64")]
        {
            // A usable instruction must at least be listed by cpuid.
            if a.cpu.rdrand {
                assert!(std::arch::is_x86_feature_detected!("rdrand"));
            }
            if a.cpu.rdseed {
                assert!(std::arch::is_x86_feature_detected!("rdseed"));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(a.cpu, CpuRng { rdrand: false, rdseed: false });
    }

    #[test]
    fn cpu_samples_are_counted_and_never_all_ones() {
        let before = cpu_rng_stats();
        let samples: Vec<u64> = (0..64).filter_map(|_| rdrand()).collect();
        if cpu_rng().rdrand {
            assert!(!samples.is_empty());
            assert!(samples.iter().all(|&v| v != u64::MAX));
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), samples.len(), "64 RDRAND samples should all differ");
            assert!(cpu_rng_stats().rdrand_calls >= before.rdrand_calls + 64);
        } else {
            assert!(samples.is_empty());
        }
    }

    #[test]
    fn draw_retries_and_rejects_all_ones() {
        // A source that fails twice, then returns all ones, then a value.
        let script = [None, None, Some(u64::MAX), Some(42)];
        let mut i = 0;
        let got = draw(
            10,
            || {
                i += 1;
                script[i - 1]
            },
            false,
        );
        assert_eq!(got, Some(42));
        assert_eq!(i, 4);
        // All ones every time: no value after the retries run out.
        let mut calls = 0;
        assert_eq!(
            draw(
                10,
                || {
                    calls += 1;
                    Some(u64::MAX)
                },
                true
            ),
            None
        );
        assert_eq!(calls, 10);
    }

    #[test]
    fn cycle_counter_moves_and_whirlwind_varies() {
        let a = cycle_counter();
        let b = cycle_counter();
        assert_ne!(a, b);
        let mut w = Vec::new();
        whirlwind(&mut w);
        assert_eq!(w.len(), 2 * WHIRLWIND_SAMPLES);
        let distinct: std::collections::HashSet<&[u8]> = w.chunks(2).collect();
        assert!(distinct.len() > WHIRLWIND_SAMPLES / 2, "jitter samples should mostly differ");
    }

    #[test]
    fn initial_seed_is_framed_and_fresh() {
        let (seed, report) = initial_seed().unwrap();
        assert_eq!(report.os_bytes, OS_SEED_BYTES);
        assert_eq!(report.jitter_bytes, 2 * WHIRLWIND_SAMPLES);
        // Walk the records.
        let mut at = 0;
        let mut total = SeedReport::default();
        while at < seed.len() {
            let (source, len) = (seed[at], seed[at + 1] as usize);
            match source {
                SOURCE_OS => total.os_bytes += len,
                SOURCE_RDSEED => total.rdseed_bytes += len,
                SOURCE_RDRAND => total.rdrand_bytes += len,
                SOURCE_JITTER => total.jitter_bytes += len,
                other => panic!("unknown source {other}"),
            }
            at += 2 + len;
        }
        assert_eq!(at, seed.len());
        assert_eq!(total, report);
        if cpu_rng().rdseed || cpu_rng().rdrand {
            assert!(report.rdseed_bytes + report.rdrand_bytes > 0);
        }
        let (again, _) = initial_seed().unwrap();
        assert_ne!(&seed[2..2 + OS_SEED_BYTES], &again[2..2 + OS_SEED_BYTES]);
    }

    #[test]
    fn feeder_spreads_events_round_robin() {
        for mode in [Mode::Book, Mode::Mirage] {
            let mut f = Fortuna::with_mode(mode);
            let mut feeder = Feeder::new();
            let report = feeder.feed(&mut f);
            assert_eq!(report.jitter_events, 1);
            let header = if f.params().pool_size_counts_headers { 2 } else { 0 };
            let cpu = cpu_rng().rdrand || cpu_rng().rdseed;
            if cpu {
                assert!(report.cpu_events > 0);
            } else {
                assert_eq!(report.cpu_events, 0);
            }
            // Jitter went to pool 0 first, then pool 1 on the next round.
            assert!(f.pool_size(0) >= 4 + header);
            let pool1_before = f.pool_size(1);
            feeder.feed(&mut f);
            assert!(f.pool_size(1) >= pool1_before + 4 + header);
            assert_eq!(feeder.jitter.next_pool(), 2);
        }
    }

    #[test]
    fn accumulator_wraps_after_pool_31() {
        let mut f = Fortuna::with_mode(Mode::Book);
        let mut acc = Accumulator::new(9);
        for _ in 0..33 {
            acc.add(&mut f, &[1]).unwrap();
        }
        assert_eq!(f.pool_size(0), 6, "events 0 and 32");
        assert_eq!(f.pool_size(1), 3);
        assert_eq!(f.pool_size(31), 3);
        assert_eq!(acc.next_pool(), 1);
        // A rejected event does not advance the rotation.
        assert!(acc.add(&mut f, &[]).is_err());
        assert_eq!(acc.next_pool(), 1);
    }
}
