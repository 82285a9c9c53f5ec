//! TCP engine binding: one `NativeTcpEngine` per stack holds every connection of both address
//! families, and one call per event-loop turn does the work: [`NativeTcpEngine::turn`] takes
//! every segment received in the turn (one buffer plus a Uint32Array of where each is), runs
//! them, the due timers and the output of every touched connection, and returns the segments
//! to send, the events and the next deadline in caller-owned arrays. JavaScript touches a
//! connection only to hand it data (`send`) or take data (`recv`). A large received segment (a
//! super-frame or a coalesced one) is read in place by [`NativeTcpEngine::feed`] instead of being
//! copied into the batch: one crossing costs less than copying tens of kilobytes.
//!
//! The binding writes no IP header of its own: a segment whose destination has a fresh
//! neighbour entry in the stack's [`NativeIpOutput`] (installed by the TypeScript IP layer)
//! leaves as a whole Ethernet frame whose headers that send path wrote; any other segment is
//! handed back bare, with its addresses, for the IP layer's general path.
//!
//! One copy per byte on the way out: the engine leaves a data segment's payload in the
//! connection's send buffer (see [`morgana_tcp::types::Output`]), and a whole frame is written
//! by copying it from there straight into `out` behind the headers; its checksum is then
//! summed over those cache-hot bytes, or, for an interface that completes checksums (a switch
//! port or a `virtio_net_hdr` TAP with checksum offload, as its neighbour entry says), only the
//! pseudo-header sum is written and the frame is marked `TCP_OUT_PARTIAL_CHECKSUM`. The copying
//! paths (segments cut here, bare segments for the general path) take the segment whole first.
//!
//! Layouts (all Uint32 words):
//! - input meta, 5 words per segment: `[offset, length, family, src, dst]`; for family 4 the
//!   addresses are numbers, for 6 they are the 32 bytes right before the segment (source then
//!   destination); `family | TCP_IN_CHECKSUM_VERIFIED` when the device vouched for the checksum.
//! - output meta, 3 words per packet: `[length | OUT_FRAME, interface, gso_size | flags]` for a
//!   whole frame (`gso_size` > 0: a TCP super-frame for an interface that takes them, to be cut
//!   at that payload size; super-segments towards any other interface or the general path are
//!   cut here, in Rust; `TCP_OUT_PARTIAL_CHECKSUM` in flags: its TCP checksum is left for the
//!   interface to complete);
//!   `[length, src, dst]` for a bare IPv4 segment; `[length | OUT_IPV6, 0, 0]` for a bare IPv6
//!   segment preceded in `out` by its 32 bytes of addresses (not counted in `length`).
//! - events, 3 words each: `[kind, handle, arg]` (kinds: the `TCP_EVENT_*` constants).
//! - result (Float64Array of 4): `[packets, events, next deadline or -1, more]`, `more` = 1
//!   when output or events are left for `drain` / `take_events`, or connections want another
//!   turn.

use crate::ip_output::NativeIpOutput;
use morgana_net::gso;
use morgana_net::ip_out::{IpOutput, Neighbour};
use morgana_net::steer::{steer_tcp, SteerFilter};
use morgana_tap::gro;
use morgana_tcp::cc::Algorithm;
use morgana_tcp::conn::State;
use morgana_tcp::engine::{ConnInfo, EngineError, SegmentBytes};
use morgana_tcp::types::ErrorCode;
use morgana_tcp::wire::{finish_checksum, pseudo_header_sum};
use morgana_tcp::{Config, Engine, Event, EventKind, KeepAlive, ListenFamily, OutSegment};
use napi_derive::napi;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// napi-derive reads a literal `&mut T` parameter as a class reference; through an alias the
// typed-array conversion applies, borrowing the caller's buffer without a copy.
type BytesMut<'a> = &'a mut [u8];
type U32sMut<'a> = &'a mut [u32];
type F64sMut<'a> = &'a mut [f64];

/// Set in an output length word: a bare IPv6 segment.
#[napi]
pub const TCP_OUT_IPV6: u32 = 0x8000_0000;
/// Set in an output length word: a whole Ethernet frame.
#[napi]
pub const TCP_OUT_FRAME: u32 = 0x4000_0000;
/// Set in an output frame's third word (beside its `gso_size`): the TCP checksum field holds
/// only the pseudo-header sum, for the interface to complete (`NEEDS_CSUM`, at the TCP header
/// with offset 16); sent only to interfaces whose neighbour entry says they take it.
#[napi]
pub const TCP_OUT_PARTIAL_CHECKSUM: u32 = 0x8000_0000;
/// Segments of at most this many bytes (not super-segments) get their whole checksum here even
/// towards an interface that completes checksums.
const PARTIAL_CHECKSUM_MIN: usize = 512;
/// Mask of the length in an output length word.
#[napi]
pub const TCP_OUT_LENGTH: u32 = 0x3fff_ffff;
/// Words per input segment in `turn`'s input meta.
#[napi]
pub const TCP_IN_WORDS: u32 = 5;
/// Set in an input family word: the device vouched for the checksum (not summed again).
#[napi]
pub const TCP_IN_CHECKSUM_VERIFIED: u32 = 0x100;

/// Event kind: an active open completed.
#[napi]
pub const TCP_EVENT_CONNECTED: u32 = EventKind::CONNECTED;
/// Event kind: a passive open completed (arg: the listening port); call `accept`.
#[napi]
pub const TCP_EVENT_ACCEPTED: u32 = EventKind::ACCEPTED;
/// Event kind: data can be read (arg: bytes readable when the turn ended).
#[napi]
pub const TCP_EVENT_READABLE: u32 = EventKind::READABLE;
/// Event kind: the send buffer has room again.
#[napi]
pub const TCP_EVENT_WRITABLE: u32 = EventKind::WRITABLE;
/// Event kind: the peer sent FIN.
#[napi]
pub const TCP_EVENT_PEER_CLOSED: u32 = EventKind::PEER_CLOSED;
/// Event kind: both directions finished.
#[napi]
pub const TCP_EVENT_CLOSED: u32 = EventKind::CLOSED;
/// Event kind: the connection failed (arg: 1 + index in `tcpSocketErrorCodes()`).
#[napi]
pub const TCP_EVENT_ERROR: u32 = EventKind::ERROR;

/// The errno-style codes of connection failures: event arg `n` is entry n − 1.
#[napi]
pub fn tcp_socket_error_codes() -> Vec<String> {
    ErrorCode::ALL.iter().map(|e| e.code().to_owned()).collect()
}

/// A 16-byte address from JavaScript; `None` for any other length.
fn v6(bytes: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 16] = bytes.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

#[inline]
fn v4(address: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(address))
}

/// `listen`'s family argument: 4, 6, or anything else for dual-stack.
fn listen_family(family: Option<u32>) -> ListenFamily {
    match family {
        Some(4) => ListenFamily::V4,
        Some(6) => ListenFamily::V6,
        _ => ListenFamily::Dual,
    }
}

const ERRORS: [EngineError; 6] = [
    EngineError::NotFound,
    EngineError::AddressInUse,
    EngineError::NotConnected,
    EngineError::BrokenPipe,
    EngineError::TooManyConnections,
    EngineError::InvalidArgument,
];

/// `-(index + 1)` into [`tcp_error_codes`].
pub(crate) fn fail(e: EngineError) -> i32 {
    -(ERRORS.iter().position(|x| *x == e).unwrap_or(0) as i32) - 1
}

/// The codes behind the negative results of `NativeTcpEngine` calls: result `-n` is entry n − 1.
#[napi]
pub fn tcp_error_codes() -> Vec<String> {
    ERRORS.iter().map(|e| e.code().to_owned()).collect()
}

/// Engine settings; every field is optional (defaults in parentheses).
#[napi(object)]
#[derive(Default)]
pub struct TcpEngineOptions {
    /// IP MTU (1500).
    pub mtu: Option<u32>,
    /// Send buffer per connection in bytes (512 KiB).
    pub send_buffer: Option<u32>,
    /// Receive buffer per connection in bytes (512 KiB).
    pub recv_buffer: Option<u32>,
    /// Out-of-order ranges (runs of contiguous segments past a hole) held per connection (64).
    pub max_out_of_order: Option<u32>,
    /// Initial RTO (1000 ms).
    pub rto_initial_ms: Option<f64>,
    /// Minimum RTO (200 ms).
    pub rto_min_ms: Option<f64>,
    /// Maximum RTO (60 000 ms).
    pub rto_max_ms: Option<f64>,
    /// TIME_WAIT, 2·MSL (60 000 ms).
    pub time_wait_ms: Option<f64>,
    /// Delayed ACK (40 ms).
    pub delayed_ack_ms: Option<f64>,
    /// SYN retransmissions (6).
    pub syn_retries: Option<u32>,
    /// Data retransmissions (15).
    pub data_retries: Option<u32>,
    /// RFC 7323 timestamps (true).
    pub timestamps: Option<bool>,
    /// Most connections (2^20).
    pub max_connections: Option<u32>,
    /// Challenge ACKs per second, engine-wide (1000).
    pub challenge_ack_limit: Option<u32>,
    /// SYN cookies when a SYN queue is full (true).
    pub syn_cookies: Option<bool>,
    /// Congestion control of new connections: `"cubic"` (default) or `"newreno"`; an unknown
    /// name keeps the default (TypeScript validates first).
    pub congestion_control: Option<String>,
    /// Largest payload of a TCP super-segment (generic segmentation offload; 0, the default:
    /// off).
    pub gso_max: Option<u32>,
}

fn ms(v: Option<f64>, default: u64) -> u64 {
    v.filter(|x| x.is_finite() && *x >= 0.0).map_or(default, |x| x as u64)
}

fn now_ms(now: f64) -> u64 {
    if now > 0.0 {
        now as u64
    } else {
        0
    }
}

/// Facts about one connection. For IPv6 (`family` 6) the addresses are 0: read them with
/// `addresses6`.
#[napi(object)]
pub struct TcpConnInfo {
    /// 4 or 6.
    pub family: u32,
    pub local_address: u32,
    pub local_port: u32,
    pub remote_address: u32,
    pub remote_port: u32,
    pub state: String,
    pub readable: u32,
    pub writable: u32,
}

/// One connection's congestion state and loss-recovery counters (as Linux's `tcp_info`).
#[napi(object)]
pub struct TcpConnStats {
    /// `"cubic"` or `"newreno"`.
    pub congestion_control: String,
    /// Congestion window (bytes).
    pub cwnd: f64,
    /// Slow-start threshold (bytes); absent before the first congestion event.
    pub ssthresh: Option<f64>,
    /// Sender maximum segment size (payload bytes).
    pub mss: u32,
    /// Bytes sent and not yet acknowledged.
    pub bytes_in_flight: f64,
    /// The peer's receive window (bytes).
    pub send_window: f64,
    /// Smoothed round-trip time (ms), once measured.
    pub srtt_ms: Option<f64>,
    /// Retransmission timeout (ms), backoff included.
    pub rto_ms: f64,
    /// In fast recovery.
    pub in_recovery: bool,
    /// Segments sent again.
    pub retransmits: u32,
    /// Fast retransmits (recoveries entered).
    pub fast_retransmits: u32,
    /// Of which SACK-based (RFC 6675).
    pub sack_recoveries: u32,
    /// Retransmission timeouts.
    pub timeouts: u32,
    /// Tail-loss probes.
    pub tail_loss_probes: u32,
    /// Segments dropped by PAWS (RFC 7323).
    pub paws_rejected: u32,
    /// ACKs (to unacceptable segments, challenge ACKs) not sent: one per 500 ms at most.
    pub acks_rate_limited: u32,
    /// RFC 7323 timestamps in use.
    pub timestamps: bool,
    /// SACK in use (RFC 2018).
    pub sack: bool,
    /// The peer's window shift, when window scaling is in use.
    pub snd_wscale: Option<u32>,
    /// Our window shift, when window scaling is in use.
    pub rcv_wscale: Option<u32>,
}

/// Engine counters (numbers, exact below 2^53).
#[napi(object)]
pub struct TcpStats {
    pub segments_in: f64,
    pub segments_out: f64,
    pub bad_checksum: f64,
    pub malformed: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub retransmitted_bytes: f64,
    pub retransmits: f64,
    pub fast_retransmits: f64,
    pub timeouts: f64,
    pub duplicate_acks: f64,
    pub out_of_order: f64,
    pub out_of_order_dropped: f64,
    pub resets_sent: f64,
    pub resets_received: f64,
    pub challenge_acks: f64,
    /// Challenge ACKs not sent because of a rate limit (per connection or engine-wide).
    pub challenge_acks_suppressed: f64,
    /// ACKs sent in reply to unacceptable segments (out of window, PAWS, unsent data).
    pub unacceptable_acks: f64,
    /// ACKs to unacceptable segments not sent: one per 500 ms per connection (no ACK loop).
    pub unacceptable_acks_suppressed: f64,
    pub window_probes: f64,
    /// Tail-loss probes sent (also counted in `retransmits`).
    pub tail_loss_probes: f64,
    /// Segments dropped by PAWS as old duplicates (RFC 7323).
    pub paws_rejected: f64,
    pub keepalive_probes: f64,
    pub keepalive_timeouts: f64,
    pub active_opens: f64,
    pub passive_opens: f64,
    pub syn_queue_drops: f64,
    pub syn_cookies_sent: f64,
    pub syn_cookies_accepted: f64,
    pub syn_cookies_invalid: f64,
    pub backlog_drops: f64,
    pub closed_port: f64,
    pub time_wait_entered: f64,
    /// TIME_WAIT connections reopened by a new SYN (RFC 6191).
    pub time_wait_recycled: f64,
    pub icmp_errors: f64,
    pub icmp_ignored: f64,
    pub path_mtu_updates: f64,
    pub connections: f64,
    pub time_wait: f64,
    pub half_open: f64,
}

/// The TCP engine of one stack.
#[napi]
pub struct NativeTcpEngine {
    pub(crate) inner: Engine,
    events: VecDeque<Event>,
    /// Reused room for cutting super-segments.
    scratch: Vec<u8>,
    /// Reused room for a segment whose deferred payload a copying path needs in one piece.
    whole: Vec<u8>,
}

fn state_name(s: State) -> &'static str {
    match s {
        State::SynSent => "SYN-SENT",
        State::SynReceived => "SYN-RECEIVED",
        State::Established => "ESTABLISHED",
        State::FinWait1 => "FIN-WAIT-1",
        State::FinWait2 => "FIN-WAIT-2",
        State::CloseWait => "CLOSE-WAIT",
        State::Closing => "CLOSING",
        State::LastAck => "LAST-ACK",
        State::TimeWait => "TIME-WAIT",
        State::Closed => "CLOSED",
    }
}

#[napi]
impl NativeTcpEngine {
    /// An engine; `key` (16 bytes from the random device) keys the RFC 6528 ISN hash.
    #[napi(constructor)]
    pub fn new(options: TcpEngineOptions, key: &[u8]) -> Self {
        let d = Config::default();
        let cfg = Config {
            mtu: options.mtu.map_or(d.mtu, |v| v as usize),
            send_buffer: options.send_buffer.map_or(d.send_buffer, |v| (v as usize).max(1)),
            recv_buffer: options.recv_buffer.map_or(d.recv_buffer, |v| (v as usize).max(1)),
            max_out_of_order: options.max_out_of_order.map_or(d.max_out_of_order, |v| v as usize),
            rto_initial_ms: ms(options.rto_initial_ms, d.rto_initial_ms),
            rto_min_ms: ms(options.rto_min_ms, d.rto_min_ms),
            rto_max_ms: ms(options.rto_max_ms, d.rto_max_ms),
            time_wait_ms: ms(options.time_wait_ms, d.time_wait_ms),
            delayed_ack_ms: ms(options.delayed_ack_ms, d.delayed_ack_ms),
            syn_retries: options.syn_retries.unwrap_or(d.syn_retries),
            data_retries: options.data_retries.unwrap_or(d.data_retries),
            initial_window_segments: d.initial_window_segments,
            timestamps: options.timestamps.unwrap_or(d.timestamps),
            max_connections: options.max_connections.map_or(d.max_connections, |v| v as usize),
            challenge_ack_limit: options.challenge_ack_limit.unwrap_or(d.challenge_ack_limit),
            syn_cookies: options.syn_cookies.unwrap_or(d.syn_cookies),
            congestion_control: options
                .congestion_control
                .as_deref()
                .and_then(Algorithm::from_name)
                .unwrap_or(d.congestion_control),
            gso_max: options.gso_max.map_or(d.gso_max, |v| v as usize),
        };
        let mut k = [0u8; 16];
        for (i, b) in key.iter().take(16).enumerate() {
            k[i] = *b;
        }
        NativeTcpEngine {
            inner: Engine::new(cfg, k),
            events: VecDeque::new(),
            scratch: Vec::new(),
            whole: Vec::new(),
        }
    }

    /// Listens on `port` for `family` 4, 6, or (omitted or 0) both; 0 or a negative error.
    #[napi]
    pub fn listen(&mut self, port: u32, backlog: u32, family: Option<u32>) -> i32 {
        match self.inner.listen_family(port as u16, backlog, listen_family(family)) {
            Ok(()) => 0,
            Err(e) => fail(e),
        }
    }

    /// Stops the listener `listen` opened on `port` with `family`.
    #[napi]
    pub fn unlisten(&mut self, port: u32, family: Option<u32>) {
        self.inner.unlisten_family(port as u16, listen_family(family));
    }

    /// Whether the IPv4 4-tuple is taken; with `now`, whether `connect` would find it taken then
    /// (a TIME_WAIT connection of ours that may hand it on does not count).
    #[napi]
    pub fn in_use(
        &self,
        local_ip: u32,
        local_port: u32,
        remote_ip: u32,
        remote_port: u32,
        now: Option<f64>,
    ) -> bool {
        let (local, remote) = ((v4(local_ip), local_port as u16), (v4(remote_ip), remote_port as u16));
        match now {
            Some(now) => self.inner.taken_for_connect(local, remote, now_ms(now)),
            None => self.inner.in_use(local, remote),
        }
    }

    /// As `in_use`, for an IPv6 4-tuple (16-byte addresses).
    #[napi]
    pub fn in_use6(
        &self,
        local_ip: &[u8],
        local_port: u32,
        remote_ip: &[u8],
        remote_port: u32,
        now: Option<f64>,
    ) -> bool {
        let (Some(l), Some(r)) = (v6(local_ip), v6(remote_ip)) else { return false };
        let (local, remote) = ((l, local_port as u16), (r, remote_port as u16));
        match now {
            Some(now) => self.inner.taken_for_connect(local, remote, now_ms(now)),
            None => self.inner.in_use(local, remote),
        }
    }

    /// Opens a connection: its handle (> 0) or a negative error.
    #[napi]
    pub fn connect(
        &mut self,
        local_ip: u32,
        local_port: u32,
        remote_ip: u32,
        remote_port: u32,
        now: f64,
    ) -> i64 {
        let local = (v4(local_ip), local_port as u16);
        match self.inner.connect(local, (v4(remote_ip), remote_port as u16), now_ms(now)) {
            Ok(h) => i64::from(h),
            Err(e) => i64::from(fail(e)),
        }
    }

    /// Opens an IPv6 connection (16-byte addresses): its handle (> 0) or a negative error.
    #[napi]
    pub fn connect6(
        &mut self,
        local_ip: &[u8],
        local_port: u32,
        remote_ip: &[u8],
        remote_port: u32,
        now: f64,
    ) -> i64 {
        let (Some(l), Some(r)) = (v6(local_ip), v6(remote_ip)) else {
            return i64::from(fail(EngineError::InvalidArgument));
        };
        match self.inner.connect((l, local_port as u16), (r, remote_port as u16), now_ms(now)) {
            Ok(h) => i64::from(h),
            Err(e) => i64::from(fail(e)),
        }
    }

    /// One event-loop turn: hands in the `count` segments described by `meta` (see the module
    /// documentation), runs timers and output at `now`, and fills `out`/`out_meta`, `events`
    /// and `result`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn turn(
        &mut self,
        ip: &mut NativeIpOutput,
        #[napi(ts_arg_type = "Uint8Array")] input: BytesMut<'_>,
        #[napi(ts_arg_type = "Uint32Array")] meta: U32sMut<'_>,
        count: u32,
        now: f64,
        #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
        #[napi(ts_arg_type = "Uint32Array")] out_meta: U32sMut<'_>,
        #[napi(ts_arg_type = "Uint32Array")] events: U32sMut<'_>,
        #[napi(ts_arg_type = "Float64Array")] result: F64sMut<'_>,
    ) {
        let now = now_ms(now);
        self.take_input(input, meta, count, now);
        self.inner.poll(now);
        let packets = self.drain_into(&mut ip.inner, out, out_meta, now);
        let n_events = self.take_events(events);
        if result.len() >= 4 {
            result[0] = f64::from(packets);
            result[1] = f64::from(n_events);
            result[2] = self.next_deadline();
            let more = self.inner.output().taken() > 0 || !self.events.is_empty() || self.inner.has_pending();
            result[3] = if more { 1.0 } else { 0.0 };
        }
    }

    /// Hands in the `count` batched segments described by `meta` (as `turn` does), then one more
    /// read in place: `segment`, of `family` 4 (addresses `src`, `dst` as numbers) or 6 (the 32
    /// bytes of `addresses6`, source then destination), `family | TCP_IN_CHECKSUM_VERIFIED` when
    /// the device vouched for its checksum. For large (super- or coalesced) segments, which cost
    /// more to copy into the batch than this crossing. Timers and output wait for the next
    /// `turn`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &mut self,
        #[napi(ts_arg_type = "Uint8Array")] input: BytesMut<'_>,
        #[napi(ts_arg_type = "Uint32Array")] meta: U32sMut<'_>,
        count: u32,
        segment: &[u8],
        family: u32,
        src: u32,
        dst: u32,
        addresses6: &[u8],
        now: f64,
    ) {
        let now = now_ms(now);
        self.take_input(input, meta, count, now);
        let verified = family & TCP_IN_CHECKSUM_VERIFIED != 0;
        if family & 0xff == 6 {
            let (Some(src), Some(dst)) =
                (addresses6.get(..16).and_then(v6), addresses6.get(16..32).and_then(v6))
            else {
                return;
            };
            self.inner.on_segment_verified(src, dst, segment, now, verified);
        } else {
            self.inner.on_segment_verified(v4(src), v4(dst), segment, now, verified);
        }
    }

    /// Continues a `turn` whose output did not fit: fills `out`/`out_meta` again; returns how
    /// many packets (0 when everything went).
    #[napi]
    pub fn drain(
        &mut self,
        ip: &mut NativeIpOutput,
        #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
        #[napi(ts_arg_type = "Uint32Array")] out_meta: U32sMut<'_>,
        now: f64,
    ) -> u32 {
        self.drain_into(&mut ip.inner, out, out_meta, now_ms(now))
    }

    /// Fills `meta` with `[kind, handle, arg]` triples of pending events; returns how many.
    /// A readable event's arg is the bytes readable now.
    #[napi]
    pub fn take_events(&mut self, #[napi(ts_arg_type = "Uint32Array")] meta: U32sMut<'_>) -> u32 {
        self.events.extend(self.inner.take_events());
        let mut n = 0;
        while (n + 1) * 3 <= meta.len() {
            let Some(e) = self.events.pop_front() else { break };
            let (kind, mut arg) = e.kind.number();
            if kind == EventKind::READABLE {
                arg = self.inner.info(e.handle).map_or(0, |i| i.readable as u32);
            }
            meta[n * 3] = kind;
            meta[n * 3 + 1] = e.handle;
            meta[n * 3 + 2] = arg;
            n += 1;
        }
        n as u32
    }

    /// An ICMP error quoting one of our segments (`quoted`: its first bytes). `mtu` > 0 for
    /// fragmentation needed; `hard` for port/protocol unreachable.
    #[napi]
    pub fn on_icmp_error(&mut self, local: u32, remote: u32, quoted: &[u8], hard: bool, mtu: u32, now: f64) {
        let mtu = (mtu > 0).then_some(mtu as usize);
        self.inner.on_icmp_error(v4(local), v4(remote), quoted, hard, mtu, now_ms(now));
    }

    /// An ICMPv6 error quoting one of our segments (16-byte addresses of the quoted packet).
    /// `mtu` > 0 for Packet Too Big; `hard` for port unreachable / administratively prohibited.
    #[napi]
    pub fn on_icmp_error6(
        &mut self,
        local: &[u8],
        remote: &[u8],
        quoted: &[u8],
        hard: bool,
        mtu: u32,
        now: f64,
    ) {
        let (Some(l), Some(r)) = (v6(local), v6(remote)) else { return };
        let mtu = (mtu > 0).then_some(mtu as usize);
        self.inner.on_icmp_error(l, r, quoted, hard, mtu, now_ms(now));
    }

    /// When `turn` must run next (ms), or -1 when no timer is armed.
    #[napi]
    pub fn next_deadline(&self) -> f64 {
        self.inner.next_deadline().map_or(-1.0, |d| d as f64)
    }

    /// Queues data: bytes accepted, or a negative error.
    #[napi]
    pub fn send(&mut self, handle: u32, data: &[u8]) -> i32 {
        match self.inner.send(handle, data) {
            Ok(n) => n as i32,
            Err(e) => fail(e),
        }
    }

    /// Reads into `out`: bytes read, or a negative error.
    #[napi]
    pub fn recv(&mut self, handle: u32, #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>) -> i32 {
        match self.inner.recv(handle, out) {
            Ok(n) => n as i32,
            Err(e) => fail(e),
        }
    }

    /// Bytes readable (0 for an unknown handle).
    #[napi]
    pub fn readable(&self, handle: u32) -> u32 {
        self.inner.info(handle).map_or(0, |i| i.readable as u32)
    }

    /// Takes an accepted connection.
    #[napi]
    pub fn accept(&mut self, handle: u32) -> i32 {
        self.inner.accept(handle).map_or_else(fail, |()| 0)
    }

    /// Half-close.
    #[napi]
    pub fn shutdown(&mut self, handle: u32) -> i32 {
        self.inner.shutdown(handle).map_or_else(fail, |()| 0)
    }

    /// Graceful close of the handle (RST instead when data is unread).
    #[napi]
    pub fn close(&mut self, handle: u32) -> i32 {
        self.inner.close(handle).map_or_else(fail, |()| 0)
    }

    /// RST and forget.
    #[napi]
    pub fn abort(&mut self, handle: u32) -> i32 {
        self.inner.abort(handle).map_or_else(fail, |()| 0)
    }

    /// Releases the handle of a closed or failed connection.
    #[napi]
    pub fn release(&mut self, handle: u32) {
        self.inner.release(handle);
    }

    /// Nagle off (`true`) or on.
    #[napi]
    pub fn set_no_delay(&mut self, handle: u32, no_delay: bool) -> i32 {
        self.inner.set_nodelay(handle, no_delay).map_or_else(fail, |()| 0)
    }

    /// Keep-alive on or off.
    #[napi]
    pub fn set_keep_alive(
        &mut self,
        handle: u32,
        enable: bool,
        idle_ms: f64,
        interval_ms: f64,
        count: u32,
        now: f64,
    ) -> i32 {
        let ka = enable.then(|| KeepAlive {
            idle_ms: ms(Some(idle_ms), 7_200_000),
            interval_ms: ms(Some(interval_ms), 75_000),
            count,
        });
        self.inner.set_keepalive(handle, ka, now_ms(now)).map_or_else(fail, |()| 0)
    }

    /// A one-line dump of a connection's sequence variables and timers (for debugging).
    #[napi]
    pub fn debug_summary(&self, handle: u32) -> Option<String> {
        self.inner.debug_summary(handle)
    }

    /// Writes an IPv6 connection's local then remote address (32 bytes) into `out`; false for
    /// an unknown handle, an IPv4 connection or a short buffer.
    #[napi]
    pub fn addresses6(&self, handle: u32, #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>) -> bool {
        let Some(i) = self.inner.info(handle) else { return false };
        let (IpAddr::V6(l), IpAddr::V6(r)) = (i.local.0, i.remote.0) else { return false };
        if out.len() < 32 {
            return false;
        }
        out[..16].copy_from_slice(&l.octets());
        out[16..32].copy_from_slice(&r.octets());
        true
    }

    /// Facts about a connection.
    #[napi]
    pub fn info(&self, handle: u32) -> Option<TcpConnInfo> {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => a.to_bits(),
            IpAddr::V6(_) => 0,
        };
        self.inner.info(handle).map(|i: ConnInfo| TcpConnInfo {
            family: if i.local.0.is_ipv6() { 6 } else { 4 },
            local_address: bits(i.local.0),
            local_port: u32::from(i.local.1),
            remote_address: bits(i.remote.0),
            remote_port: u32::from(i.remote.1),
            state: state_name(i.state).to_owned(),
            readable: i.readable as u32,
            writable: i.writable as u32,
        })
    }

    /// Sets a connection's congestion control (`"cubic"`, `"newreno"`): 0 or a negative error.
    #[napi]
    pub fn set_congestion_control(&mut self, handle: u32, name: String) -> i32 {
        let Some(algorithm) = Algorithm::from_name(&name) else { return fail(EngineError::InvalidArgument) };
        self.inner.set_congestion_control(handle, algorithm).map_or_else(fail, |()| 0)
    }

    /// A connection's congestion state and loss-recovery counters.
    #[napi]
    pub fn conn_stats(&self, handle: u32) -> Option<TcpConnStats> {
        self.inner.conn_stats(handle).map(|s| TcpConnStats {
            congestion_control: s.algorithm.name().to_owned(),
            cwnd: s.cwnd as f64,
            ssthresh: s.ssthresh.map(|v| v as f64),
            mss: s.smss as u32,
            bytes_in_flight: s.bytes_in_flight as f64,
            send_window: f64::from(s.send_window),
            srtt_ms: s.srtt_ms,
            rto_ms: s.rto_ms as f64,
            in_recovery: s.in_recovery,
            retransmits: s.retransmits,
            fast_retransmits: s.fast_retransmits,
            sack_recoveries: s.sack_recoveries,
            timeouts: s.timeouts,
            tail_loss_probes: s.tail_loss_probes,
            paws_rejected: s.paws_rejected,
            acks_rate_limited: s.acks_rate_limited,
            timestamps: s.timestamps,
            sack: s.sack,
            snd_wscale: s.window_scale.map(|w| u32::from(w.0)),
            rcv_wscale: s.window_scale.map(|w| u32::from(w.1)),
        })
    }

    /// Counters.
    #[napi]
    pub fn stats(&self) -> TcpStats {
        let s = self.inner.stats();
        TcpStats {
            segments_in: s.segments_in as f64,
            segments_out: s.segments_out as f64,
            bad_checksum: s.bad_checksum as f64,
            malformed: s.malformed as f64,
            bytes_in: s.bytes_in as f64,
            bytes_out: s.bytes_out as f64,
            retransmitted_bytes: s.retransmitted_bytes as f64,
            retransmits: s.retransmits as f64,
            fast_retransmits: s.fast_retransmits as f64,
            timeouts: s.timeouts as f64,
            duplicate_acks: s.duplicate_acks as f64,
            out_of_order: s.out_of_order as f64,
            out_of_order_dropped: s.out_of_order_dropped as f64,
            resets_sent: s.resets_sent as f64,
            resets_received: s.resets_received as f64,
            challenge_acks: s.challenge_acks as f64,
            challenge_acks_suppressed: s.challenge_acks_suppressed as f64,
            unacceptable_acks: s.unacceptable_acks as f64,
            unacceptable_acks_suppressed: s.unacceptable_acks_suppressed as f64,
            window_probes: s.window_probes as f64,
            tail_loss_probes: s.tail_loss_probes as f64,
            paws_rejected: s.paws_rejected as f64,
            keepalive_probes: s.keepalive_probes as f64,
            keepalive_timeouts: s.keepalive_timeouts as f64,
            active_opens: s.active_opens as f64,
            passive_opens: s.passive_opens as f64,
            syn_queue_drops: s.syn_queue_drops as f64,
            syn_cookies_sent: s.syn_cookies_sent as f64,
            syn_cookies_accepted: s.syn_cookies_accepted as f64,
            syn_cookies_invalid: s.syn_cookies_invalid as f64,
            backlog_drops: s.backlog_drops as f64,
            closed_port: s.closed_port as f64,
            time_wait_entered: s.time_wait_entered as f64,
            time_wait_recycled: s.time_wait_recycled as f64,
            icmp_errors: s.icmp_errors as f64,
            icmp_ignored: s.icmp_ignored as f64,
            path_mtu_updates: s.path_mtu_updates as f64,
            connections: s.connections as f64,
            time_wait: s.time_wait as f64,
            half_open: s.half_open as f64,
        }
    }
}

impl NativeTcpEngine {
    /// Hands in the `count` batched segments described by `meta` (as `turn` does), then the TCP
    /// segments of a device's received batch that need no other layer ([`steer_tcp`]), read in
    /// place: `frame_count` frames back to back in `frames`, each `lengths[i]` bytes
    /// ([`gro::LENGTH_MASK`]; a segment size above [`gro::GSO_SHIFT`] marks one the device
    /// coalesced itself, its checksums checked). `taken[i]` becomes 1 for each frame taken (a
    /// frame already marked is skipped: the IPv4 and IPv6 layers each make a call), and
    /// `counts` grows by `[taken, with a partial checksum, coalesced]`. Returns how many were
    /// taken. Timers and output wait for the next `turn`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ingest(
        &mut self,
        input: &[u8],
        meta: &[u32],
        count: u32,
        frames: &[u8],
        lengths: &[u32],
        frame_count: u32,
        filter: &SteerFilter<'_>,
        taken: &mut [u8],
        counts: &mut [u32],
        now: f64,
    ) -> u32 {
        let now = now_ms(now);
        self.take_input(input, meta, count, now);
        let (mut n, mut partial, mut coalesced) = (0u32, 0u32, 0u32);
        let mut at = 0usize;
        for (&entry, mark) in lengths.iter().zip(taken.iter_mut()).take(frame_count as usize) {
            let len = (entry & gro::LENGTH_MASK) as usize;
            let Some(raw) = frames.get(at..at + len) else { break };
            at += len;
            if *mark == 1 {
                continue;
            }
            if let Some(s) = steer_tcp(raw, entry >> gro::GSO_SHIFT != 0, filter) {
                self.inner.on_segment_verified(s.src, s.dst, s.segment, now, s.checksum_verified);
                *mark = 1;
                n += 1;
                partial += u32::from(s.partial_checksum);
                coalesced += u32::from(s.coalesced);
            }
        }
        for (slot, value) in counts.iter_mut().zip([n, partial, coalesced]) {
            *slot += value;
        }
        n
    }

    /// Runs the `count` segments of an input batch (see the module documentation).
    fn take_input(&mut self, input: &[u8], meta: &[u32], count: u32, now: u64) {
        let words = TCP_IN_WORDS as usize;
        for i in 0..(count as usize).min(meta.len() / words) {
            let m = &meta[i * words..i * words + words];
            let (offset, len) = (m[0] as usize, m[1] as usize);
            let Some(segment) = input.get(offset..offset + len) else { continue };
            let verified = m[2] & TCP_IN_CHECKSUM_VERIFIED != 0;
            if m[2] & 0xff == 6 {
                let Some(addresses) = offset.checked_sub(32).and_then(|a| input.get(a..offset)) else {
                    continue;
                };
                let (Some(src), Some(dst)) = (v6(&addresses[..16]), v6(&addresses[16..])) else { continue };
                self.inner.on_segment_verified(src, dst, segment, now, verified);
            } else {
                self.inner.on_segment_verified(v4(m[3]), v4(m[4]), segment, now, verified);
            }
        }
    }

    /// Copies produced segments into `out`: as whole frames through `ip` when it holds a fresh
    /// neighbour entry for the destination and the packet fits its MTU (a super-segment whole
    /// when the interface takes super-frames of its size), else bare for the IP layer's general
    /// path; a super-segment that cannot leave whole is cut here. Returns how many packets.
    ///
    /// A whole frame takes its payload straight from the connection's send buffer (one copy,
    /// see [`morgana_tcp::types::Output`]), and its checksum is summed over the bytes just
    /// written, or left partial (`TCP_OUT_PARTIAL_CHECKSUM`) when the interface completes it.
    /// The copying paths (cut, bare, IPv6 bare) first put a deferred segment in one piece.
    fn drain_into(&mut self, ip: &mut IpOutput, out: &mut [u8], meta: &mut [u32], now: u64) -> u32 {
        let mut w = Writer { out, meta, at: 0, n: 0 };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut whole = std::mem::take(&mut self.whole);
        let engine = &self.inner;
        let mut taken = 0;
        for s in engine.output().pending() {
            if !w.has_meta(1) {
                break;
            }
            // A dropped segment (its payload was gone: never while the engine's rules hold).
            let Some(seg) = engine.segment_bytes(s) else {
                taken += 1;
                continue;
            };
            let len = s.len as usize;
            let tcp_header = tcp_header_len(seg.stored);
            let gso = usize::from(s.gso_size);
            let header = IpOutput::header_len(s.dst);
            let ip_len = header - ETHERNET_HEADER + len;
            let pieces = if gso > 0 { gso::segment_count(len - tcp_header, gso) } else { 1 };
            let e = ip.neighbour(s.dst, now);
            let written = match e {
                // Whole: an ordinary segment that fits, or a super-frame the interface takes.
                Some(e) if (gso == 0 && ip_len <= e.mtu) || (gso > 0 && ip_len <= e.tso_max) => {
                    w.frame(ip, &e, s, &seg, pieces)
                }
                _ => {
                    let bytes = if seg.checksummed {
                        seg.stored
                    } else {
                        whole.clear();
                        engine.write_segment(s, &mut whole);
                        &whole[..]
                    };
                    match e {
                        // A super-segment towards an interface that takes only real frames: cut here.
                        Some(e) if gso > 0 && header - ETHERNET_HEADER + tcp_header + gso <= e.mtu => {
                            w.cut_frames(ip, &e, s.src, s.dst, bytes, gso, pieces, &mut scratch)
                        }
                        _ if gso > 0 => w.cut_bare(s.src, s.dst, bytes, gso, pieces, &mut scratch),
                        _ => w.bare(s.src, s.dst, bytes),
                    }
                }
            };
            if let Written::Full = written {
                break;
            }
            taken += 1;
        }
        self.scratch = scratch;
        self.whole = whole;
        self.inner.take_output(taken);
        w.n as u32
    }
}

const ETHERNET_HEADER: usize = morgana_net::ip_out::ETHERNET_HEADER;

fn tcp_header_len(segment: &[u8]) -> usize {
    segment.get(12).map_or(20, |b| usize::from(b >> 4) * 4).min(segment.len())
}

/// What writing one segment into the output did.
enum Written {
    Done,
    /// Out of room: try again at the next `drain`.
    Full,
    /// Dropped (a family mismatch or a segment the cutter refused): never retried.
    Skipped,
}

/// The caller's output buffer and metadata being filled.
struct Writer<'a> {
    out: &'a mut [u8],
    meta: &'a mut [u32],
    at: usize,
    n: usize,
}

impl Writer<'_> {
    fn has_meta(&self, entries: usize) -> bool {
        (self.n + entries) * 3 <= self.meta.len()
    }

    fn record(&mut self, words: [u32; 3], advance: usize) {
        self.meta[self.n * 3..self.n * 3 + 3].copy_from_slice(&words);
        self.n += 1;
        self.at += advance;
    }

    /// One frame (headers from `ip`), possibly a super-frame of `pieces` to be cut at its
    /// `gso_size`: the segment's bytes are copied in once, from where the engine holds them, and
    /// a checksum still to do is summed over them here (cache-hot) or, when the interface takes
    /// partial checksums, left to it with only the pseudo-header sum written.
    fn frame(
        &mut self,
        ip: &mut IpOutput,
        e: &Neighbour,
        s: &OutSegment,
        seg: &SegmentBytes<'_>,
        pieces: usize,
    ) -> Written {
        let (src, dst, len) = (s.src, s.dst, s.len as usize);
        let header = IpOutput::header_len(dst);
        if self.at + header + len > self.out.len() {
            return Written::Full;
        }
        let Some(h) = ip.emit_headers(e, src, dst, 6, len, &mut self.out[self.at..]) else {
            return Written::Skipped;
        };
        ip.skip_identifications(pieces - 1);
        let tcp = self.at + h;
        let mut end = tcp;
        for part in [seg.stored, seg.payload.0, seg.payload.1] {
            self.out[end..end + part.len()].copy_from_slice(part);
            end += part.len();
        }
        let mut word = u32::from(s.gso_size);
        if !seg.checksummed {
            let segment = &mut self.out[tcp..tcp + len];
            // A small frame is summed here all the same: a few cache-hot words cost less than
            // the offload metadata the device would need to complete it.
            if e.partial_checksum && (s.gso_size > 0 || len > PARTIAL_CHECKSUM_MIN) {
                let Some(sum) = pseudo_header_sum(src, dst, len) else { return Written::Skipped };
                segment[16..18].copy_from_slice(&sum.to_be_bytes());
                word |= TCP_OUT_PARTIAL_CHECKSUM;
            } else {
                finish_checksum(segment, src, dst);
            }
        }
        let frame_len = h + len;
        self.record([frame_len as u32 | TCP_OUT_FRAME, e.iface, word], frame_len);
        Written::Done
    }

    /// A super-segment cut into `pieces` real frames.
    #[allow(clippy::too_many_arguments)]
    fn cut_frames(
        &mut self,
        ip: &mut IpOutput,
        e: &Neighbour,
        src: IpAddr,
        dst: IpAddr,
        bytes: &[u8],
        gso: usize,
        pieces: usize,
        scratch: &mut Vec<u8>,
    ) -> Written {
        let header = IpOutput::header_len(dst);
        let head = header + tcp_header_len(bytes);
        if pieces > MAX_PIECES
            || !self.has_meta(pieces)
            || self.at + head * pieces + bytes.len() > self.out.len()
        {
            return if pieces > MAX_PIECES { Written::Skipped } else { Written::Full };
        }
        scratch.clear();
        scratch.resize(header + bytes.len(), 0);
        let Some(h) = ip.emit_headers(e, src, dst, 6, bytes.len(), scratch) else { return Written::Skipped };
        ip.skip_identifications(pieces - 1);
        scratch[h..].copy_from_slice(bytes);
        let mut lengths = [0u32; MAX_PIECES];
        let Ok(n) = gso::segment_frame(scratch, gso, &mut self.out[self.at..], &mut lengths[..pieces]) else {
            return Written::Skipped;
        };
        for &len in &lengths[..n] {
            self.record([len | TCP_OUT_FRAME, e.iface, 0], len as usize);
        }
        Written::Done
    }

    /// A super-segment cut into `pieces` bare segments for the IP layer's general path.
    fn cut_bare(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        bytes: &[u8],
        gso: usize,
        pieces: usize,
        scratch: &mut Vec<u8>,
    ) -> Written {
        let head = tcp_header_len(bytes) + if dst.is_ipv6() { 32 } else { 0 };
        if pieces > MAX_PIECES
            || !self.has_meta(pieces)
            || self.at + head * pieces + bytes.len() > self.out.len()
        {
            return if pieces > MAX_PIECES { Written::Skipped } else { Written::Full };
        }
        let (s, d) = (octets(src), octets(dst));
        scratch.clear();
        scratch.resize(bytes.len() + tcp_header_len(bytes) * pieces, 0);
        let mut lengths = [0u32; MAX_PIECES];
        let Ok(n) = gso::segment_tcp(bytes, &s, &d, gso, scratch, &mut lengths[..pieces]) else {
            return Written::Skipped;
        };
        let mut from = 0;
        for &len in &lengths[..n] {
            let len = len as usize;
            self.bare(src, dst, &scratch[from..from + len]);
            from += len;
        }
        Written::Done
    }

    /// One bare segment: IPv4 with its addresses in the metadata, IPv6 after its addresses.
    fn bare(&mut self, src: IpAddr, dst: IpAddr, bytes: &[u8]) -> Written {
        let len = bytes.len();
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                if self.at + len > self.out.len() {
                    return Written::Full;
                }
                self.out[self.at..self.at + len].copy_from_slice(bytes);
                self.record([len as u32, src.to_bits(), dst.to_bits()], len);
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                if self.at + 32 + len > self.out.len() {
                    return Written::Full;
                }
                let at = self.at;
                self.out[at..at + 16].copy_from_slice(&src.octets());
                self.out[at + 16..at + 32].copy_from_slice(&dst.octets());
                self.out[at + 32..at + 32 + len].copy_from_slice(bytes);
                self.record([len as u32 | TCP_OUT_IPV6, 0, 0], 32 + len);
            }
            // The engine never pairs two families; skip rather than emit garbage.
            _ => return Written::Skipped,
        }
        Written::Done
    }
}

/// Most pieces of one super-segment (64 KiB at the smallest MSS, 536 bytes, is 123).
const MAX_PIECES: usize = 128;

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Cuts an Ethernet frame carrying a TCP super-segment (IPv4 or IPv6) into real frames of at
/// most `gso_size` TCP payload bytes, back to back in `out` with their lengths in `lengths`,
/// every checksum computed (a partial one completed): for devices, links and captures that take
/// only real frames. Returns how many, -1 for a frame that is not Ethernet + IP + TCP or a bad
/// size, -2 when `out` or `lengths` is too small.
#[napi]
pub fn gso_segment_frame(
    frame: &[u8],
    gso_size: u32,
    #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
    #[napi(ts_arg_type = "Uint32Array")] lengths: U32sMut<'_>,
) -> i32 {
    match gso::segment_frame(frame, gso_size as usize, out, lengths) {
        Ok(n) => n as i32,
        Err(gso::GsoError::BufferTooSmall) => -2,
        Err(_) => -1,
    }
}

/// Completes the checksum of a frame sent with `NEEDS_CSUM` in place (from `csum_start` to the
/// end, stored at `csum_start + csum_offset`); false when the offsets fall outside the frame.
#[napi]
pub fn gso_complete_checksum(
    #[napi(ts_arg_type = "Uint8Array")] frame: BytesMut<'_>,
    csum_start: u32,
    csum_offset: u32,
) -> bool {
    gso::complete_checksum(frame, csum_start as usize, csum_offset as usize).is_ok()
}
