//! Wire formats: parse and emit over byte slices, every length checked. No state lives here.

pub mod ipv4;
pub mod ipv6;
