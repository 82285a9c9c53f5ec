//! Morgana's random number generator: Fortuna, and the entropy that seeds and feeds it.
//!
//! - [`params`]: the two flavours of Fortuna, [`Mode::Book`] (Ferguson, Schneier and Kohno,
//!   *Cryptography Engineering*, ch. 9) and [`Mode::Mirage`] (mirage-crypto-rng's Fortuna), as one
//!   small parameter struct, [`FortunaParams`].
//! - [`hash`]: SHA_d-256, with or without the 64 zero bytes prefix.
//! - [`generator`]: the generator: AES-256 over a 128-bit counter, rekeyed after every request.
//! - [`pools`]: the 32 entropy pools and the reseed schedule.
//! - [`fortuna`]: the accumulator, which ties pools and generator together and decides when to
//!   reseed.
//! - [`entropy`]: entropy sources (getrandom(2), RDSEED/RDRAND, cycle-counter jitter), the
//!   initial seed and the periodic feeder.
//!
//! Everything but [`entropy`] is sans-IO: the current time is an argument (nanoseconds on any
//! monotonic clock), so the reseed schedule is tested with a virtual clock. Keys are wiped when a
//! generator is rekeyed or dropped.
#![deny(missing_docs)]

pub mod entropy;
pub mod error;
pub mod fortuna;
pub mod generator;
pub mod hash;
pub mod params;
pub mod pools;

pub use error::RngError;
pub use fortuna::Fortuna;
pub use generator::Generator;
pub use params::{FortunaParams, Mode};
