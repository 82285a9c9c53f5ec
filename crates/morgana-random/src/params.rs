//! The two flavours of Fortuna, as data.
//!
//! | | [`Mode::Book`] | [`Mode::Mirage`] |
//! |---|---|---|
//! | hash | SHA_d-256(m) = SHA-256(SHA-256(0^512 ‖ m)) | SHA-256(SHA-256(m)) |
//! | counter block | 128-bit little-endian | 128-bit big-endian |
//! | request limit / chunk | 2^20 bytes | 64 KiB |
//! | pool 0 size | bytes appended (2 header bytes + data) ≥ 64 | data bytes > 64 |
//! | reseed interval | ≥ 100 ms | > 1 s |
//! | event data length | 1..=32 bytes, checked | any (length byte taken mod 256) |
//!
//! Everything else (AES-256, rekeying with two blocks after every request, 32 pools, pool `i`
//! used at reseed `r` when `2^i` divides `r`) is shared code.

/// Which Fortuna to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Ferguson, Schneier and Kohno, *Cryptography Engineering* ch. 9 (the default).
    Book,
    /// Output-compatible with mirage-crypto-rng's `Fortuna` module.
    Mirage,
}

/// Every difference between the two modes; the code is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FortunaParams {
    /// Which mode these parameters describe.
    pub mode: Mode,
    /// SHA_d prefixes the message with one zero block (64 bytes) before the inner hash.
    pub hash_zero_prefix: bool,
    /// The counter is laid out big-endian in the AES input block (little-endian otherwise).
    pub counter_big_endian: bool,
    /// The largest single generator request in bytes; the accumulator serves larger requests in
    /// chunks of this size, rekeying between chunks.
    pub max_request: usize,
    /// Pool 0 must hold this many bytes before a reseed from the pools.
    pub min_pool_size: usize,
    /// Pool sizes count the two header bytes (source, length) of each event, not only its data.
    pub pool_size_counts_headers: bool,
    /// Nanoseconds that must pass after the last pool reseed before the next one.
    pub reseed_interval_ns: u64,
    /// Both thresholds (pool size and interval) must be exceeded (`>`) rather than reached (`≥`).
    pub strict_thresholds: bool,
    /// Event data must be 1 to 32 bytes long.
    pub check_event_length: bool,
}

impl FortunaParams {
    /// *Cryptography Engineering* ch. 9.
    pub const BOOK: FortunaParams = FortunaParams {
        mode: Mode::Book,
        hash_zero_prefix: true,
        counter_big_endian: false,
        max_request: 1 << 20,
        min_pool_size: 64,
        pool_size_counts_headers: true,
        reseed_interval_ns: 100_000_000,
        strict_thresholds: false,
        check_event_length: true,
    };

    /// mirage-crypto-rng's `Fortuna` (`rng/fortuna.ml`).
    pub const MIRAGE: FortunaParams = FortunaParams {
        mode: Mode::Mirage,
        hash_zero_prefix: false,
        counter_big_endian: true,
        max_request: 0x10000,
        min_pool_size: 64,
        pool_size_counts_headers: false,
        reseed_interval_ns: 1_000_000_000,
        strict_thresholds: true,
        check_event_length: false,
    };

    /// The parameters of `mode`.
    pub const fn of(mode: Mode) -> FortunaParams {
        match mode {
            Mode::Book => FortunaParams::BOOK,
            Mode::Mirage => FortunaParams::MIRAGE,
        }
    }

    /// Whether `value` meets `threshold` under these parameters (`>` or `≥`).
    pub(crate) fn meets(&self, value: u64, threshold: u64) -> bool {
        if self.strict_thresholds {
            value > threshold
        } else {
            value >= threshold
        }
    }
}

impl From<Mode> for FortunaParams {
    fn from(mode: Mode) -> Self {
        FortunaParams::of(mode)
    }
}
