//! Morgana's Linux TAP I/O.
//!
//! - [`Tap::open`] opens `/dev/net/tun` as a TAP interface (`IFF_TAP | IFF_NO_PI`, non-blocking),
//!   optionally inside a named network namespace: the open runs on a short-lived thread that
//!   first joins the namespace with `setns(2)`, which affects only that thread. The interface is
//!   created in the namespace and the descriptor keeps working from any thread afterwards.
//! - [`Tap::write`] writes one frame straight to the descriptor.
//! - [`Tap::spawn_reader`] starts a [`Reader`]: a dedicated thread that sleeps in `poll(2)` on
//!   the TAP descriptor and a stop `eventfd`, drains every frame that is ready (up to a batch cap)
//!   into one buffer plus a lengths array, and hands the [`Batch`] to a callback: one call per
//!   wake-up, never one per frame.
//!
//! This crate knows nothing about JavaScript; `morgana-napi` wraps it.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod error;
mod reader;
mod sys;
mod tap;

pub use error::{TapError, TapErrorKind};
pub use reader::{Batch, Delivery, Reader, ReaderConfig, ReaderStats};
pub use tap::{Tap, TapOptions};
