//! Morgana's sans-IO TCP engine.
//!
//! One [`Engine`] owns every connection of a stack. Segments and the current time (milliseconds,
//! any monotonic origin) go in; segments to transmit (in one reused buffer, see
//! [`Engine::output`]) and [`Event`]s come out. Nothing here owns sockets, threads or timers:
//! [`Engine::poll`] runs the timers that fell due and [`Engine::next_deadline`] says when to call
//! it next.
//!
//! Modules:
//! - [`wire`]: TCP header and options parse/emit with every length checked, checksums through
//!   `morgana-net`.
//! - [`seq`]: sequence-number arithmetic modulo 2^32.
//! - [`isn`]: RFC 6528 initial sequence numbers (SipHash-2-4 keyed from the random device).
//! - [`rtt`]: the RFC 6298 retransmission timer estimator.
//! - [`buffer`]: the bounded send buffer and the receive buffer with bounded out-of-order
//!   reassembly.
//! - [`conn`]: one connection's RFC 9293 state machine, NewReno (RFC 6582), delayed ACK, Nagle,
//!   persist and keep-alive timers.
//! - [`engine`]: the connection table, listeners with bounded SYN queue and accept backlog,
//!   RST generation for segments that match nothing, output and events.
//!
//! SACK (RFC 2018) is offered and sent on receive (ACKs describe the out-of-order ranges held).
//! As a sender the engine runs NewReno with limited transmit (RFC 3042) and tail-loss probes
//! (RFC 8985 §7), and uses the peer's SACK blocks only to recognise duplicate ACKs and new loss
//! episodes. Not yet implemented (see issue 5): a SACK scoreboard for loss recovery (RFC 6675),
//! PAWS, TIME_WAIT reuse by a new SYN, CUBIC, ICMP-driven soft errors and path-MTU
//! discovery. Connections opened by a SYN cookie run without window scaling and timestamps.
#![deny(missing_docs)]

pub mod buffer;
pub mod conn;
pub mod engine;
pub mod isn;
pub mod rtt;
pub mod seq;
pub mod wire;

pub use engine::{Config, Engine, EngineError, Event, EventKind, Handle, KeepAlive, OutSegment, Stats};
