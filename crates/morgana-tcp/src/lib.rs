//! Morgana's sans-IO TCP engine.
//!
//! One [`Engine`] owns every connection of a stack. Segments and the current time (milliseconds,
//! any monotonic origin) go in; segments to transmit (in one reused buffer, see
//! [`Engine::output`]) and [`Event`]s come out. Nothing here owns sockets, threads or timers:
//! [`Engine::poll`] runs the timers that fell due and [`Engine::next_deadline`] says when to call
//! it next.
//!
//! Output without a copy: a data segment `poll` produces keeps its payload in the connection's
//! send buffer (only its header is stored, with a [`types::PayloadRef`]); the transmitter reads
//! it with [`Engine::segment_bytes`] and copies it once, into its own frame, then says what it
//! took with [`Engine::take_output`]. Every call that may change a connection first copies such
//! payloads into the output (see [`types::Output`]), so a reference never outlives its bytes.
//!
//! Modules:
//! - [`wire`]: TCP header and options parse/emit with every length checked, checksums through
//!   `morgana-net`.
//! - [`seq`]: sequence-number arithmetic modulo 2^32.
//! - [`isn`]: RFC 6528 initial sequence numbers (SipHash-2-4 keyed from the random device).
//! - [`rtt`]: the RFC 6298 retransmission timer estimator.
//! - [`cc`]: congestion control behind the [`cc::CongestionControl`] trait: CUBIC (RFC 9438,
//!   the default) and NewReno (RFC 5681/6582), chosen per engine ([`Config`]) or per connection
//!   ([`Engine::set_congestion_control`]); slow start and avoidance count bytes.
//! - [`sack`]: the sender's SACK scoreboard (RFC 6675 §3) and its queries.
//! - [`rack`]: RACK time-based loss detection (RFC 8985) for SACK connections.
//! - [`syncookie`]: the window scale and SACK-permitted a SYN cookie carries in its TSval.
//! - [`buffer`]: the bounded send buffer and the receive buffer with bounded out-of-order
//!   reassembly.
//! - [`conn`]: one connection's RFC 9293 state machine, SACK-based loss recovery (RFC 6675) with
//!   NewReno (RFC 6582) when the peer has no SACK, delayed ACK, Nagle, persist and keep-alive
//!   timers.
//! - [`types`]: what the engine and its connections share (configuration, events, errors,
//!   output, counters), so that [`conn`] does not depend on [`engine`].
//! - [`engine`]: the connection table, listeners with bounded SYN queue and accept backlog,
//!   RST generation for segments that match nothing, output and events.
//!
//! Addresses are [`std::net::IpAddr`]: one engine carries IPv4 and IPv6 connections. Checksums
//! cover the family's pseudo-header, the MSS is the MTU minus 40 (IPv4) or 60 (IPv6), ISNs and
//! SYN cookies hash the full addresses, and the connection table keeps one map per family so an
//! IPv4 lookup hashes 12 bytes as before. Listeners are dual-stack unless opened for one family
//! ([`ListenFamily`]).
//!
//! SACK (RFC 2018) is offered and sent on receive (ACKs describe the out-of-order ranges held).
//! As a sender the engine keeps a scoreboard of the ranges the peer SACKed (merged, clipped to
//! SND.UNA..SND.MAX, at most [`conn::MAX_SCOREBOARD`] ranges; blocks outside the window are
//! ignored and nothing survives a timeout) and recovers per RFC 6675: recovery starts on three
//! duplicate ACKs or as soon as IsLost(SND.UNA) holds, cwnd = ssthresh = FlightSize/2 without
//! inflation, and while cwnd − pipe allows a segment it retransmits the lost holes in order
//! (NextSeg rule 1), sends new data (rule 2), holes below SACKed data (rule 3) and one rescue
//! retransmission of the tail (rule 4). A lost retransmission of the hole at SND.UNA is detected
//! when data sent after it is SACKed (a sequence-ordered form of RFC 8985's idea), or when
//! SND.UNA does not move for 2·SRTT + 10 ms (a recovery probe, once per SND.UNA), and resent
//! without waiting for the RTO; a lost retransmission of a later hole is watched from the moment
//! it reaches SND.UNA. Without SACK the sender runs NewReno. Limited transmit (RFC 3042) and
//! tail-loss probes (RFC 8985 §7) apply to both. With SACK, RACK (RFC 8985 §6) also marks
//! segments lost by time — those sent a reordering window before a segment the peer delivered —
//! on every ACK and on its reordering timer, so losses at the tail of a flight (the probe's
//! SACK reveals them) and the first segment of a small flight are repaired without the RTO; a
//! flight whose tail and probe are both lost still waits for it, as RFC 8985 intends.
//!
//! PAWS (RFC 7323 §5) drops segments stamped older than TS.Recent (valid for 24 days of
//! idleness) and ACKs them, rate-limited for pure ACKs. A SYN for a connection in TIME_WAIT
//! opens a new incarnation when its sequence number or timestamp shows it is new (RFC 6191).
//! Connections opened by a SYN cookie keep window scaling, SACK and timestamps when the peer
//! sent timestamps ([`syncookie`]). Per-connection congestion state and counters:
//! [`Engine::conn_stats`].
#![deny(missing_docs)]

pub mod buffer;
pub mod cc;
pub mod conn;
pub mod engine;
pub mod isn;
pub mod rack;
pub mod rtt;
pub mod sack;
pub mod seq;
pub mod syncookie;
pub mod types;
pub mod wire;

pub use engine::{
    Config, Engine, EngineError, Event, EventKind, Handle, KeepAlive, ListenFamily, OutSegment, PayloadRef,
    SegmentBytes, Stats,
};
pub use std::net::IpAddr;
