//! Node bindings for Morgana's Rust crates, through napi-rs.
//!
//! This crate translates between JavaScript values and the pure crates and holds no protocol
//! logic. Byte arguments are borrowed (`&[u8]`, `&mut [u8]`: no copy, no `napi_ref`), results
//! are written into caller-provided buffers where the caller can size them, and failures are
//! returned as negative numbers that index [`error_codes`], so the TypeScript layer raises its
//! own typed errors without a JS exception crossing the boundary on the hot path.
#![deny(clippy::all)]
// napi-derive registers exports only outside `cfg(test)`, so a test build sees them as unused.
#![cfg_attr(test, allow(dead_code))]

mod checksum;
mod errors;
mod fast;
mod ip_output;
mod ipv4;
mod ipv6;
mod out;
mod random;
mod reassembly;
mod tap;
mod tap_rx;
mod tcp;

pub use errors::error_codes;
