//! Types shared by the engine and its connections: configuration, events and errors, the
//! output buffer and the counters. They live apart from [`crate::engine`] and [`crate::conn`] so
//! that `conn` depends on them and not on the engine that owns it (no module cycle).

use crate::wire::{finish_checksum, TcpHeader};
use std::net::IpAddr;

/// A connection handle (never reused within an engine's first 2^32 connections).
pub type Handle = u32;

/// Engine-wide settings. Times are in milliseconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// IP MTU of the stack's interface; the advertised MSS is MTU − 40 over IPv4, MTU − 60 over
    /// IPv6.
    pub mtu: usize,
    /// Send buffer per connection (bytes).
    pub send_buffer: usize,
    /// Receive buffer (and so the largest window) per connection (bytes).
    pub recv_buffer: usize,
    /// Most out-of-order ranges (runs of contiguous segments past a hole) held per connection;
    /// their bytes are bounded by the receive window.
    pub max_out_of_order: usize,
    /// Initial RTO (RFC 6298: 1 s).
    pub rto_initial_ms: u64,
    /// Smallest RTO (issue 5: 200 ms).
    pub rto_min_ms: u64,
    /// Largest RTO.
    pub rto_max_ms: u64,
    /// TIME_WAIT duration, 2·MSL.
    pub time_wait_ms: u64,
    /// Delayed-ACK timeout (RFC 1122: at most 500 ms).
    pub delayed_ack_ms: u64,
    /// SYN (or SYN-ACK) retransmissions before ETIMEDOUT.
    pub syn_retries: u32,
    /// Data retransmissions before ETIMEDOUT.
    pub data_retries: u32,
    /// Initial congestion window in segments (RFC 6928: 10).
    pub initial_window_segments: usize,
    /// Offer and use RFC 7323 timestamps.
    pub timestamps: bool,
    /// Upper bound on connections of all states.
    pub max_connections: usize,
    /// Challenge ACKs per second, engine-wide (RFC 5961 §7).
    pub challenge_ack_limit: u32,
    /// Answer SYNs with SYN cookies when a listener's SYN queue is full (RFC 4987).
    pub syn_cookies: bool,
    /// Largest TCP payload of one super-segment (generic segmentation offload; 0: off, the
    /// default). With it, runs of new full-size segments leave as one super-segment of up to
    /// this many bytes, cut at the MSS by the device, the binding or the switch; congestion
    /// control, SACK, RACK and timestamps still count MSS-sized segments. At most
    /// [`MAX_GSO_PAYLOAD`].
    pub gso_max: usize,
    /// Congestion control of new connections (CUBIC; see [`crate::cc::Algorithm`]), changeable
    /// per connection with [`crate::Engine::set_congestion_control`].
    pub congestion_control: crate::cc::Algorithm,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mtu: 1500,
            send_buffer: 512 * 1024,
            recv_buffer: 512 * 1024,
            max_out_of_order: 64,
            rto_initial_ms: 1000,
            rto_min_ms: 200,
            rto_max_ms: 60_000,
            time_wait_ms: 60_000,
            delayed_ack_ms: 40,
            syn_retries: 6,
            data_retries: 15,
            initial_window_segments: 10,
            timestamps: true,
            max_connections: 1 << 20,
            challenge_ack_limit: 1000,
            syn_cookies: true,
            congestion_control: crate::cc::Algorithm::Cubic,
            gso_max: 0,
        }
    }
}

/// The largest super-segment payload: an IPv6 packet's 65,535-byte payload less a TCP header
/// with options.
pub const MAX_GSO_PAYLOAD: usize = 65_535 - 60;

/// Keep-alive settings of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle time before the first probe.
    pub idle_ms: u64,
    /// Time between unanswered probes.
    pub interval_ms: u64,
    /// Unanswered probes before the connection fails with ETIMEDOUT.
    pub count: u32,
}

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RST in answer to our SYN.
    ConnectionRefused,
    /// RST on an established connection.
    ConnectionReset,
    /// Retransmissions or keep-alive probes went unanswered.
    TimedOut,
    /// Timed out after ICMP reported the destination unreachable.
    HostUnreachable,
}

impl ErrorCode {
    /// The errno-style code Node uses (`ECONNREFUSED`, `ECONNRESET`, `ETIMEDOUT`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::ConnectionRefused => "ECONNREFUSED",
            ErrorCode::ConnectionReset => "ECONNRESET",
            ErrorCode::TimedOut => "ETIMEDOUT",
            ErrorCode::HostUnreachable => "EHOSTUNREACH",
        }
    }

    /// Every code, in the order of their numbers (1, 2, …).
    pub const ALL: [ErrorCode; 4] = [
        ErrorCode::ConnectionRefused,
        ErrorCode::ConnectionReset,
        ErrorCode::TimedOut,
        ErrorCode::HostUnreachable,
    ];

    /// A small number for the bindings: 1 + the index in [`ErrorCode::ALL`].
    pub fn number(self) -> u32 {
        match self {
            ErrorCode::ConnectionRefused => 1,
            ErrorCode::ConnectionReset => 2,
            ErrorCode::TimedOut => 3,
            ErrorCode::HostUnreachable => 4,
        }
    }
}

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An active open completed.
    Connected,
    /// A passive open completed on the listening port; call [`crate::Engine::accept`].
    Accepted(u16),
    /// Data can be read (reported once until [`crate::Engine::recv`] is called).
    Readable,
    /// The send buffer has room again after a short [`crate::Engine::send`].
    Writable,
    /// The peer sent FIN: no data beyond what is buffered.
    PeerClosed,
    /// Both directions finished; the handle stays readable until released.
    Closed,
    /// The connection failed and is gone.
    Error(ErrorCode),
}

impl EventKind {
    /// [`EventKind::Connected`]'s number in the bindings.
    pub const CONNECTED: u32 = 1;
    /// [`EventKind::Accepted`]'s number (its argument: the listening port).
    pub const ACCEPTED: u32 = 2;
    /// [`EventKind::Readable`]'s number.
    pub const READABLE: u32 = 3;
    /// [`EventKind::Writable`]'s number.
    pub const WRITABLE: u32 = 4;
    /// [`EventKind::PeerClosed`]'s number.
    pub const PEER_CLOSED: u32 = 5;
    /// [`EventKind::Closed`]'s number.
    pub const CLOSED: u32 = 6;
    /// [`EventKind::Error`]'s number (its argument: [`ErrorCode::number`]).
    pub const ERROR: u32 = 7;

    /// The kind's number and its argument, for the bindings.
    pub fn number(self) -> (u32, u32) {
        match self {
            EventKind::Connected => (Self::CONNECTED, 0),
            EventKind::Accepted(port) => (Self::ACCEPTED, u32::from(port)),
            EventKind::Readable => (Self::READABLE, 0),
            EventKind::Writable => (Self::WRITABLE, 0),
            EventKind::PeerClosed => (Self::PEER_CLOSED, 0),
            EventKind::Closed => (Self::CLOSED, 0),
            EventKind::Error(code) => (Self::ERROR, code.number()),
        }
    }
}

/// An event with its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The connection.
    pub handle: Handle,
    /// What happened.
    pub kind: EventKind,
}

/// A segment's payload left in its connection's send buffer: `len` bytes from stream position
/// `position` (bytes the application queued before them, see
/// [`crate::buffer::SendBuffer::position`]). A name for bytes, not a pointer: it is resolved
/// through the connection table, and only while the engine guarantees the bytes are still held
/// (see [`Output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadRef {
    /// The connection whose send buffer holds the bytes.
    pub handle: Handle,
    /// Stream position of the first byte.
    pub position: u64,
    /// Bytes.
    pub len: u32,
}

/// One segment in [`crate::Engine::output`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutSegment {
    /// Source address (IPv4 or IPv6; the checksum covers its family's pseudo-header).
    pub src: IpAddr,
    /// Destination address, of the same family.
    pub dst: IpAddr,
    /// Segment length in bytes (header and payload); 0 for a segment dropped because its
    /// payload could not be found (never, while the engine's invariants hold).
    pub len: u32,
    /// For a super-segment (more than one MSS of payload, [`Config::gso_max`]): the payload
    /// size its pieces must be cut at; 0 for an ordinary segment.
    pub gso_size: u16,
    /// Where the segment's stored bytes start in [`Output::bytes`].
    pub at: usize,
    /// `None`: [`Output::bytes`] holds the whole segment, checksum included. `Some`: it holds
    /// only the header (`len - payload.len` bytes, checksum field zero), and the payload is
    /// still in the connection's send buffer ([`crate::Engine::segment_bytes`] reads it there).
    pub payload: Option<PayloadRef>,
}

impl OutSegment {
    /// Bytes of the segment held in [`Output::bytes`].
    pub fn stored_len(&self) -> usize {
        self.len as usize - self.payload.map_or(0, |p| p.len as usize)
    }
}

/// Segments to transmit, back to back in one reused buffer.
///
/// A data segment produced by [`crate::Engine::poll`] is stored as its header plus a
/// [`PayloadRef`] to the bytes in the connection's send buffer (a *deferred* payload), so that
/// whoever transmits it copies the payload once, straight into its own buffer, and may leave the
/// checksum to a device that completes it. Such a reference is only valid while the bytes stay
/// where it says; the engine keeps that true with one rule: every engine call that may change a
/// connection (input, timers, send, recv, close, abort, release, options) first *materialises*
/// every deferred payload not yet taken — copies it behind a copy of its header at the end of
/// [`Output::bytes`] and completes the checksum — and a connection is never dropped with
/// deferred output pending. Within `poll` nothing releases send-buffer bytes (only ACKs in
/// input do). Segments produced outside `poll` (replies to input, RST, retransmissions on
/// duplicate ACKs) are stored whole at once. (A stream position also survives the release of
/// bytes in front of it; the rule is for the release of the referenced bytes themselves, as
/// when the ACK for a retransmission still waiting arrives, and for dropped connections.)
#[derive(Debug, Default)]
pub struct Output {
    /// The segments' stored bytes (see [`OutSegment::at`]).
    pub bytes: Vec<u8>,
    /// Where each segment goes and how long it is.
    pub segments: Vec<OutSegment>,
    /// Segments already taken by the transmitter ([`crate::Engine::take_output`]).
    taken: usize,
    /// Segments from `taken` on whose payload is deferred.
    deferred: usize,
}

impl Output {
    /// Appends a segment: header, then the payload given as (up to) two slices, then the
    /// checksum. Nothing is zero-filled first: the bytes are appended once.
    pub fn push(&mut self, src: IpAddr, dst: IpAddr, header: &TcpHeader, payload: (&[u8], &[u8])) {
        self.push_gso(src, dst, header, payload, 0);
    }

    /// As [`Output::push`], for a super-segment to be cut at `gso_size` payload bytes (0: an
    /// ordinary segment). Its checksum covers the whole super-segment.
    pub fn push_gso(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        header: &TcpHeader,
        payload: (&[u8], &[u8]),
        gso_size: u16,
    ) {
        let mut hdr = [0u8; 60];
        let Ok(hlen) = header.emit_header(&mut hdr) else { return };
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&hdr[..hlen]);
        self.bytes.extend_from_slice(payload.0);
        self.bytes.extend_from_slice(payload.1);
        let seg = &mut self.bytes[at..];
        finish_checksum(seg, src, dst);
        let len = seg.len() as u32;
        self.segments.push(OutSegment { src, dst, len, gso_size, at, payload: None });
    }

    /// Appends a segment whose payload stays in the send buffer: only the header is stored,
    /// its checksum field zero.
    pub fn push_deferred(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        header: &TcpHeader,
        payload: PayloadRef,
        gso_size: u16,
    ) {
        let mut hdr = [0u8; 60];
        let Ok(hlen) = header.emit_header(&mut hdr) else { return };
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&hdr[..hlen]);
        self.bytes[at + 16] = 0;
        self.bytes[at + 17] = 0;
        let len = (hlen + payload.len as usize) as u32;
        self.segments.push(OutSegment { src, dst, len, gso_size, at, payload: Some(payload) });
        self.deferred += 1;
    }

    /// Segments not yet taken by the transmitter.
    pub fn pending(&self) -> &[OutSegment] {
        &self.segments[self.taken..]
    }

    /// Segments taken so far (0 once all were: the output is then cleared).
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// Whether any segment not yet taken has a deferred payload.
    pub fn has_deferred(&self) -> bool {
        self.deferred > 0
    }

    /// The bytes of `seg` held here: the whole segment, or only its header when its payload is
    /// deferred.
    pub fn stored(&self, seg: &OutSegment) -> &[u8] {
        &self.bytes[seg.at..seg.at + seg.stored_len()]
    }

    /// Makes pending segment `i` whole with `payload` (its deferred bytes): a copy of its header
    /// and the payload go to the end of [`Output::bytes`], with the checksum; `None` (the
    /// bytes are gone) drops the segment instead (`len` 0).
    pub(crate) fn materialise(&mut self, i: usize, payload: Option<(&[u8], &[u8])>) {
        let seg = self.segments[i];
        if seg.payload.is_none() || i < self.taken {
            return;
        }
        self.deferred -= 1;
        let Some(payload) = payload else {
            self.segments[i] = OutSegment { len: 0, payload: None, ..seg };
            return;
        };
        let at = self.bytes.len();
        self.bytes.extend_from_within(seg.at..seg.at + seg.stored_len());
        self.bytes.extend_from_slice(payload.0);
        self.bytes.extend_from_slice(payload.1);
        finish_checksum(&mut self.bytes[at..], seg.src, seg.dst);
        self.segments[i] = OutSegment { at, payload: None, ..seg };
    }

    /// Marks the next `n` pending segments taken; forgets everything once all are.
    pub(crate) fn take(&mut self, n: usize) {
        let end = (self.taken + n).min(self.segments.len());
        for s in &self.segments[self.taken..end] {
            if s.payload.is_some() {
                self.deferred -= 1;
            }
        }
        self.taken = end;
        if self.taken == self.segments.len() {
            self.clear();
        }
    }

    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.segments.clear();
        self.taken = 0;
        self.deferred = 0;
    }
}

/// Engine counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments received (well-formed).
    pub segments_in: u64,
    /// Segments sent.
    pub segments_out: u64,
    /// Segments dropped for a bad checksum.
    pub bad_checksum: u64,
    /// Segments dropped as malformed.
    pub malformed: u64,
    /// Payload bytes received (before reassembly, duplicates included).
    pub bytes_in: u64,
    /// New payload bytes sent.
    pub bytes_out: u64,
    /// Payload bytes sent again.
    pub retransmitted_bytes: u64,
    /// Retransmission events (RTO, fast retransmit, partial ACK).
    pub retransmits: u64,
    /// Fast retransmits (third duplicate ACK).
    pub fast_retransmits: u64,
    /// RTO expiries.
    pub timeouts: u64,
    /// Duplicate ACKs received.
    pub duplicate_acks: u64,
    /// Out-of-order segments received.
    pub out_of_order: u64,
    /// Out-of-order segments dropped because the per-connection list was full.
    pub out_of_order_dropped: u64,
    /// RSTs sent.
    pub resets_sent: u64,
    /// RSTs received.
    pub resets_received: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// Challenge ACKs not sent because of a rate limit (per connection, or engine-wide).
    pub challenge_acks_suppressed: u64,
    /// ACKs sent in reply to unacceptable segments (out of window, PAWS-rejected, acknowledging
    /// unsent data).
    pub unacceptable_acks: u64,
    /// ACKs not sent in reply to unacceptable segments without data because the connection
    /// answered one less than [`crate::conn::OOW_ACK_INTERVAL_MS`] before (no ACK loop).
    pub unacceptable_acks_suppressed: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
    /// Tail-loss probes sent (RFC 8985 §7; also counted in `retransmits`).
    pub tail_loss_probes: u64,
    /// Segments dropped by PAWS as old duplicates (RFC 7323 §5.3).
    pub paws_rejected: u64,
    /// Keep-alive probes sent.
    pub keepalive_probes: u64,
    /// Connections failed by keep-alive.
    pub keepalive_timeouts: u64,
    /// Active opens that completed.
    pub active_opens: u64,
    /// Passive opens that completed.
    pub passive_opens: u64,
    /// SYNs dropped because the listener's SYN queue was full and SYN cookies are off.
    pub syn_queue_drops: u64,
    /// SYN-ACKs with a SYN cookie sent (SYN queue full).
    pub syn_cookies_sent: u64,
    /// Connections opened by a valid SYN cookie.
    pub syn_cookies_accepted: u64,
    /// ACKs to a listening port that carried no valid cookie (answered with RST).
    pub syn_cookies_invalid: u64,
    /// SYNs dropped because the accept backlog was full.
    pub backlog_drops: u64,
    /// SYNs to ports nobody listens on (answered with RST).
    pub closed_port: u64,
    /// Connections that entered TIME_WAIT.
    pub time_wait_entered: u64,
    /// TIME_WAIT connections closed early for a new incarnation: a SYN from the peer (RFC 6191)
    /// or our own connect from the same addresses ([`crate::conn::Conn::time_wait_reusable`]).
    pub time_wait_recycled: u64,
    /// ICMP errors accepted for a connection.
    pub icmp_errors: u64,
    /// ICMP errors ignored (no connection, or sequence number out of range: RFC 5927).
    pub icmp_ignored: u64,
    /// Segment sizes lowered by ICMP "fragmentation needed" (path-MTU discovery).
    pub path_mtu_updates: u64,
    /// Connections now in the table.
    pub connections: u64,
    /// Of which in TIME_WAIT.
    pub time_wait: u64,
    /// Of which half-open (SYN-RECEIVED, passive).
    pub half_open: u64,
}

/// Errors of the engine's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    /// No connection with that handle.
    NotFound,
    /// The 4-tuple (or listening port) is in use.
    AddressInUse,
    /// Not connected (yet, or any more).
    NotConnected,
    /// Sending after shutdown.
    BrokenPipe,
    /// Too many connections.
    TooManyConnections,
    /// A bad argument (port 0, backlog 0).
    InvalidArgument,
}

impl EngineError {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            EngineError::NotFound => "ERR_TCP_NO_SUCH_CONNECTION",
            EngineError::AddressInUse => "EADDRINUSE",
            EngineError::NotConnected => "ENOTCONN",
            EngineError::BrokenPipe => "EPIPE",
            EngineError::TooManyConnections => "ERR_TCP_TOO_MANY_CONNECTIONS",
            EngineError::InvalidArgument => "ERR_INVALID_ARG_VALUE",
        }
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineError::NotFound => "no such TCP connection",
            EngineError::AddressInUse => "address already in use",
            EngineError::NotConnected => "socket is not connected",
            EngineError::BrokenPipe => "write after end",
            EngineError::TooManyConnections => "too many TCP connections",
            EngineError::InvalidArgument => "invalid argument",
        })
    }
}

impl std::error::Error for EngineError {}

/// The address families a listener accepts connections on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenFamily {
    /// IPv4 only.
    V4,
    /// IPv6 only (Node's `ipv6Only`, Linux's `IPV6_V6ONLY`).
    V6,
    /// Both (a dual-stack listener; [`crate::Engine::listen`]'s default).
    Dual,
}
