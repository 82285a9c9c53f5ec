//! Errors of the generator and the accumulator.

use std::fmt;

/// Why a request to the generator or the accumulator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RngError {
    /// Output was requested before the generator was ever seeded (its counter is still 0).
    Unseeded,
    /// A single generator request exceeded [`crate::FortunaParams::max_request`] bytes; the
    /// accumulator splits larger requests, the bare generator refuses them.
    RequestTooLarge,
    /// A random event named a pool outside 0..32.
    BadPool,
    /// A random event's data was empty or longer than 32 bytes (book mode only).
    BadEventLength,
}

impl RngError {
    /// The stable code TypeScript raises for this error.
    pub fn code(self) -> &'static str {
        match self {
            RngError::Unseeded => "ERR_RNG_UNSEEDED",
            RngError::RequestTooLarge => "ERR_RNG_REQUEST_TOO_LARGE",
            RngError::BadPool | RngError::BadEventLength => "ERR_RNG_BAD_EVENT",
        }
    }
}

impl fmt::Display for RngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RngError::Unseeded => "the generator has not been seeded",
            RngError::RequestTooLarge => "request larger than the generator's limit",
            RngError::BadPool => "random event pool must be from 0 to 31",
            RngError::BadEventLength => "random event data must be 1 to 32 bytes",
        };
        f.write_str(text)
    }
}

impl std::error::Error for RngError {}
