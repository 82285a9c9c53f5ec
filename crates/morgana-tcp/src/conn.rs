//! One connection's state machine (RFC 9293 §3.10) with RFC 5961 checks, RFC 6298 retransmission,
//! PAWS (RFC 7323 §5), SACK-based loss recovery (RFC 6675) with RACK loss detection (RFC 8985)
//! or NewReno recovery (RFC 6582), pluggable congestion control ([`crate::cc`]), delayed ACKs
//! (RFC 1122 §4.2.3.2), Nagle, the persist timer and keep-alive. The [`crate::Engine`]
//! owns connections and routes segments to them.

use crate::buffer::{RecvBuffer, SendBuffer};
use crate::cc::{AckSample, Algorithm, CongestionControl, Controller};
use crate::rack::Rack;
use crate::rtt::RttEstimator;
use crate::sack::Scoreboard;
use crate::seq;
use crate::syncookie::CookieOptions;
use crate::types::{Config, ErrorCode, Event, EventKind, Handle, KeepAlive, Output, PayloadRef, Stats};
use crate::wire::{TcpHeader, TcpOptions, ACK, FIN, MAX_SACK_BLOCKS, PSH, RST, SYN};
use std::net::IpAddr;

/// RFC 9293 connection states (LISTEN lives in the engine's listener table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received and SYN-ACK sent.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We sent FIN; the peer has not acknowledged it.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer sent FIN; we may still send.
    CloseWait,
    /// Both sent FIN at once; waiting for the ACK of ours.
    Closing,
    /// We sent FIN after the peer's; waiting for its ACK.
    LastAck,
    /// Both directions closed; waiting 2·MSL.
    TimeWait,
    /// Gone (reset, timed out, or finished).
    Closed,
}

impl State {
    /// Whether the handshake completed (RFC 9293 "synchronized states").
    pub fn synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }
}

/// RFC 7323 §5.5: TS.Recent of a connection idle this long (24 days, ms) is invalid — the
/// peer's timestamp clock may have wrapped since — and PAWS skips the check.
pub const PAWS_IDLE_MS: u64 = 24 * 24 * 3600 * 1000;

/// Least time (ms) between two ACKs one connection sends in reply to unacceptable segments
/// without data (out of window, PAWS-rejected, acknowledging unsent or too old data) or as
/// RFC 5961 challenge ACKs: Linux's `tcp_invalid_ratelimit`. Two ends that each find the other's
/// ACKs unacceptable (one lost its connection and a spoofed SYN gave it a new one with the same
/// 4-tuple, or they disagree on timestamps) would otherwise ACK each other for ever.
pub const OOW_ACK_INTERVAL_MS: u64 = 500;

/// Smallest tail-loss probe timeout (ms).
const TLP_MIN_MS: u64 = 10;

/// Most SACKed ranges the sender's scoreboard keeps (see [`crate::sack`]).
pub use crate::sack::MAX_SCOREBOARD;

/// RFC 6675 DupThresh.
const DUP_THRESH: usize = 3;

/// Shared context of one engine call.
pub struct Ctx<'a> {
    /// Current time (ms).
    pub now: u64,
    /// Engine configuration.
    pub cfg: &'a Config,
    /// Where segments go.
    pub out: &'a mut Output,
    /// Where events go.
    pub events: &'a mut Vec<Event>,
    /// Counters.
    pub stats: &'a mut Stats,
    /// Challenge ACKs sent in the current one-second window: (window start, count).
    pub challenges: &'a mut (u64, u32),
    /// Leave data segments' payloads in the send buffer ([`Output::push_deferred`]): only where
    /// nothing releases send-buffer bytes before the engine's next call (its `poll`).
    pub defer_payloads: bool,
}

impl Ctx<'_> {
    /// Whether one more challenge ACK fits the engine-wide budget (RFC 5961 §7).
    fn challenge_allowed(&mut self) -> bool {
        if self.now >= self.challenges.0 + 1000 {
            *self.challenges = (self.now, 0);
        }
        if self.challenges.1 >= self.cfg.challenge_ack_limit {
            self.stats.challenge_acks_suppressed += 1;
            return false;
        }
        self.challenges.1 += 1;
        self.stats.challenge_acks += 1;
        true
    }
}

/// The window shift we announce for a receive buffer of `capacity` bytes (RFC 7323 §2.2): the
/// smallest that lets the 16-bit field cover it.
pub fn window_shift(capacity: usize) -> u8 {
    let mut shift = 0u8;
    while (capacity >> shift) > 65_535 && shift < 14 {
        shift += 1;
    }
    shift
}

/// One TCP connection.
#[derive(Debug)]
pub struct Conn {
    /// The engine's handle of this connection.
    pub handle: Handle,
    /// Current state.
    pub state: State,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port (same family as `local`).
    pub remote: (IpAddr, u16),
    /// The listening port of a passive open.
    pub listener: Option<u16>,
    /// The application holds the handle (connect, or the accepted event was delivered).
    pub owned: bool,
    /// The application closed its handle; the connection finishes on its own.
    pub detached: bool,
    /// Why it failed, once it did.
    pub error: Option<ErrorCode>,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_max: u32,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    snd_shift: u8,
    rcv_shift: u8,
    irs: u32,
    rcv_nxt: u32,
    /// Payload bytes per full segment.
    smss: usize,
    mtu_mss: usize,
    ts_enabled: bool,
    ts_recent: u32,
    /// When TS.Recent was last set (ms): after [`PAWS_IDLE_MS`] it is no longer valid.
    ts_recent_at: u64,
    /// When the last rate-limited ACK (unacceptable segment, challenge) went out (ms).
    oow_ack_at: Option<u64>,
    ts_offset: u32,
    sndbuf: SendBuffer,
    rcvbuf: RecvBuffer,
    fin_queued: bool,
    /// Sequence number of our FIN once it was first sent.
    fin_seq_no: Option<u32>,
    wscale_ok: bool,
    /// The peer sent SACK-permitted: our ACKs carry SACK blocks (RFC 2018) for out-of-order data.
    sack_ok: bool,
    fin_in: Option<u32>,
    peer_fin: bool,
    rtt: RttEstimator,
    rtt_probe: Option<(u32, u64)>,
    rto_at: Option<u64>,
    retries: u32,
    /// Congestion control: cwnd and ssthresh live here (see [`crate::cc`]).
    cc: Controller,
    /// RACK loss detection (RFC 8985), with SACK only.
    rack: Rack,
    dupacks: u32,
    recover: u32,
    /// Highest right edge of a SACK block the peer sent (sequence space).
    sack_high: u32,
    /// `rto_at` is a tail-loss probe timeout (RFC 8985 §7), not the RTO.
    tlp_armed: bool,
    /// A probe went out and no ACK advanced SND.UNA since.
    tlp_sent: bool,
    in_recovery: bool,
    /// The current recovery is SACK-based (RFC 6675) rather than NewReno.
    sack_recovery: bool,
    /// SACK scoreboard: SACKed ranges above SND.UNA ([`crate::sack`]).
    sacked: Scoreboard,
    /// RFC 6675 HighRxt: the highest sequence number retransmitted in this recovery.
    high_rxt: u32,
    /// RFC 6675 RescueRxt, once the rescue retransmission of this recovery went out.
    rescue_rxt: Option<u32>,
    /// SND.MAX when the hole at SND.UNA was (at the latest) retransmitted: SACKs for data sent
    /// after that, while the hole stays, mean the retransmission was lost.
    rxt_mark: Option<u32>,
    /// The retransmission of the hole at SND.UNA was found lost: resend it.
    rxt_lost: bool,
    /// SND.UNA when a recovery probe timer was last armed (one per SND.UNA, so a dead peer still
    /// meets the RTO).
    rxt_probe_una: Option<u32>,
    ack_now: bool,
    delack_at: Option<u64>,
    unacked_segments: u32,
    persist_at: Option<u64>,
    persist_backoff: u32,
    keepalive: Option<KeepAlive>,
    keepalive_at: Option<u64>,
    keepalive_probes: u32,
    time_wait_at: Option<u64>,
    nodelay: bool,
    want_writable: bool,
    readable_signalled: bool,
    /// Set when `Closed` or `Error` was reported for this connection.
    pub close_reported: bool,
    syn_ack_needed: bool,
    soft_error: Option<ErrorCode>,
    counters: Counters,
}

/// Per-connection event counters (u32: a connection that wraps them has other problems).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    retransmits: u32,
    fast_retransmits: u32,
    sack_recoveries: u32,
    timeouts: u32,
    tail_loss_probes: u32,
    paws_rejected: u32,
    acks_rate_limited: u32,
}

/// A snapshot of one connection's congestion state and loss-recovery counters (as Linux's
/// `tcp_info`), from [`crate::Engine::conn_stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnStats {
    /// The congestion control algorithm.
    pub algorithm: Algorithm,
    /// Congestion window (bytes).
    pub cwnd: usize,
    /// Slow-start threshold (bytes); `None` before the first congestion event.
    pub ssthresh: Option<usize>,
    /// Sender maximum segment size (payload bytes).
    pub smss: usize,
    /// Bytes sent and not yet acknowledged.
    pub bytes_in_flight: usize,
    /// The peer's receive window (bytes, scaled).
    pub send_window: u32,
    /// Smoothed round-trip time (ms), once measured.
    pub srtt_ms: Option<f64>,
    /// Current retransmission timeout (ms), backoff included.
    pub rto_ms: u64,
    /// In fast recovery (SACK-based or NewReno).
    pub in_recovery: bool,
    /// Segments sent again, by any mechanism.
    pub retransmits: u32,
    /// Fast retransmits (recoveries entered).
    pub fast_retransmits: u32,
    /// Of which SACK-based (RFC 6675).
    pub sack_recoveries: u32,
    /// Retransmission timeouts.
    pub timeouts: u32,
    /// Tail-loss probes.
    pub tail_loss_probes: u32,
    /// Segments dropped by PAWS (RFC 7323 §5).
    pub paws_rejected: u32,
    /// ACKs not sent, in reply to unacceptable segments or as challenge ACKs, because of the
    /// per-connection limit ([`OOW_ACK_INTERVAL_MS`]).
    pub acks_rate_limited: u32,
    /// RFC 7323 timestamps are on.
    pub timestamps: bool,
    /// The peer accepts SACK (RFC 2018): our ACKs carry blocks and its SACKs drive recovery.
    pub sack: bool,
    /// Window scaling (RFC 7323 §2): (the peer's shift, ours), when both sides offered it.
    pub window_scale: Option<(u8, u8)>,
}

impl Conn {
    /// A connection in SYN-SENT (active open) or, with `listener`, one about to answer a SYN.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        handle: Handle,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        iss: u32,
        listener: Option<u16>,
        cfg: &Config,
    ) -> Self {
        let rcv_cap = cfg.recv_buffer;
        let rcv_shift = window_shift(rcv_cap);
        let mtu_mss = cfg.mtu.saturating_sub(crate::wire::ip_tcp_overhead(local.0)).max(64);
        Conn {
            handle,
            state: if listener.is_some() { State::SynReceived } else { State::SynSent },
            local,
            remote,
            listener,
            owned: listener.is_none(),
            detached: false,
            error: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            snd_shift: 0,
            rcv_shift,
            irs: 0,
            rcv_nxt: 0,
            smss: 536,
            mtu_mss,
            ts_enabled: false,
            ts_recent: 0,
            ts_recent_at: 0,
            oow_ack_at: None,
            ts_offset: iss.rotate_left(13),
            sndbuf: SendBuffer::new(cfg.send_buffer),
            rcvbuf: RecvBuffer::new(rcv_cap, cfg.max_out_of_order),
            fin_queued: false,
            fin_seq_no: None,
            wscale_ok: false,
            sack_ok: false,
            fin_in: None,
            peer_fin: false,
            rtt: RttEstimator::new(cfg.rto_initial_ms, cfg.rto_min_ms, cfg.rto_max_ms),
            rtt_probe: None,
            rto_at: None,
            retries: 0,
            cc: Controller::new(cfg.congestion_control),
            rack: Rack::new(),
            dupacks: 0,
            recover: iss,
            sack_high: iss,
            tlp_armed: false,
            tlp_sent: false,
            in_recovery: false,
            sack_recovery: false,
            sacked: Scoreboard::new(),
            high_rxt: iss,
            rescue_rxt: None,
            rxt_mark: None,
            rxt_lost: false,
            rxt_probe_una: None,
            ack_now: false,
            delack_at: None,
            unacked_segments: 0,
            persist_at: None,
            persist_backoff: 0,
            keepalive: None,
            keepalive_at: None,
            keepalive_probes: 0,
            time_wait_at: None,
            nodelay: false,
            want_writable: false,
            readable_signalled: false,
            close_reported: false,
            syn_ack_needed: false,
            soft_error: None,
            counters: Counters::default(),
        }
    }

    /// Takes the options of the peer's SYN (either open).
    fn take_syn(&mut self, h: &TcpHeader, cfg: &Config, now: u64) {
        self.irs = h.seq;
        self.rcv_nxt = h.seq.wrapping_add(1);
        match h.options.window_scale {
            Some(s) => {
                self.snd_shift = s.min(14);
                self.wscale_ok = true;
            }
            None => {
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        self.ts_enabled = cfg.timestamps && h.options.timestamps.is_some();
        self.sack_ok = h.options.sack_permitted;
        if let Some((val, _)) = h.options.timestamps {
            self.ts_recent = val;
            self.ts_recent_at = now;
        }
        let peer_mss = usize::from(h.options.mss.unwrap_or(536)).max(64);
        self.smss = peer_mss.min(self.mtu_mss) - if self.ts_enabled { 12 } else { 0 };
        self.cc.init(self.smss, (cfg.initial_window_segments * self.smss).max(2 * self.smss));
        self.snd_wnd = u32::from(h.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
    }

    /// A passive open: the SYN that created this connection.
    pub fn accept_syn(&mut self, h: &TcpHeader, cfg: &Config, now: u64) {
        self.take_syn(h, cfg, now);
        self.syn_ack_needed = true;
    }

    /// A passive open completed by a valid SYN cookie (RFC 4987 §3.6): `h` is the peer's ACK,
    /// `mss` the one the cookie encoded, `options` the window scale and SACK-permitted the
    /// SYN-ACK's TSval carried ([`crate::syncookie`]) when the ACK echoes one — and then
    /// timestamps are on too. Without them the connection runs with none of the three.
    pub fn accept_cookie(
        &mut self,
        h: &TcpHeader,
        mss: usize,
        options: Option<CookieOptions>,
        cfg: &Config,
        now: u64,
    ) {
        self.irs = h.seq.wrapping_sub(1);
        self.rcv_nxt = h.seq;
        self.snd_una = h.ack;
        self.snd_nxt = h.ack;
        self.snd_max = h.ack;
        self.recover = h.ack;
        self.sack_high = h.ack;
        self.high_rxt = h.ack;
        let o = options.unwrap_or_default();
        match o.window_scale {
            Some(s) => {
                self.snd_shift = s.min(14);
                self.wscale_ok = true;
            }
            None => {
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        self.sack_ok = o.sack_permitted;
        self.ts_enabled = false;
        if let (Some(_), Some((val, _))) = (options, h.options.timestamps) {
            self.ts_enabled = cfg.timestamps;
            self.ts_recent = val;
            self.ts_recent_at = now;
        }
        self.smss = mss.min(self.mtu_mss) - if self.ts_enabled { 12 } else { 0 };
        self.cc.init(self.smss, (cfg.initial_window_segments * self.smss).max(2 * self.smss));
        self.snd_wnd = u32::from(h.window) << self.snd_shift;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
        self.state = State::Established;
        self.owned = true;
    }

    /// An ICMP error about a segment we sent with sequence number `seq` (RFC 5927 §4.1: it
    /// must lie in [SND.UNA, SND.MAX) to count). `mtu` is set for "fragmentation needed".
    /// Returns whether it was accepted.
    pub fn on_icmp(&mut self, ctx: &mut Ctx, hard: bool, mtu: Option<usize>, seq_no: u32) -> bool {
        if !(seq::le(self.snd_una, seq_no) && seq::lt(seq_no, self.snd_max)) {
            return false;
        }
        if let Some(mtu) = mtu {
            // Path-MTU discovery (RFC 1191): shrink the segments and resend what was lost.
            // Never below the family's minimum MTU (576 for IPv4, 1280 for IPv6: RFC 8201 §4).
            let mss = mtu
                .saturating_sub(crate::wire::ip_tcp_overhead(self.local.0))
                .max(crate::wire::min_mss(self.local.0));
            if mss < self.mtu_mss {
                self.mtu_mss = mss;
                let options = if self.ts_enabled { 12 } else { 0 };
                self.smss = self.smss.min(mss - options);
                self.cc.set_mss(self.smss);
                self.snd_nxt = self.snd_una;
                ctx.stats.path_mtu_updates += 1;
            }
            return true;
        }
        if hard && self.state == State::SynSent {
            self.fail(ctx, ErrorCode::ConnectionRefused);
        } else {
            // A soft error (RFC 1122 §4.2.3.9): reported if the connection later times out.
            self.soft_error = Some(ErrorCode::HostUnreachable);
        }
        true
    }

    /// The sequence-space variables and timers, for debugging.
    pub fn summary(&self) -> String {
        format!(
            "{:?} una={} nxt={} max={} wnd={} cwnd={} ssth={} rec={} inrec={} dup={} rcv_nxt={} rcvwnd={} ooo={} sndbuf={} fin_q={} fin_seq={:?} fin_in={:?} peer_fin={} rto_at={:?} persist_at={:?} retries={} rto={}",
            self.state,
            self.snd_una.wrapping_sub(self.iss),
            self.snd_nxt.wrapping_sub(self.iss),
            self.snd_max.wrapping_sub(self.iss),
            self.snd_wnd,
            self.cc.cwnd(),
            self.cc.ssthresh(),
            self.recover.wrapping_sub(self.iss),
            self.in_recovery,
            self.dupacks,
            self.rcv_nxt.wrapping_sub(self.irs),
            self.rcvbuf.window(),
            self.rcvbuf.out_of_order_blocks().map(|(l, r)| (l.wrapping_sub(self.irs), r.wrapping_sub(self.irs))).collect::<Vec<_>>().len(),
            self.sndbuf.len(),
            self.fin_queued,
            self.fin_seq_no.map(|f| f.wrapping_sub(self.iss)),
            self.fin_in.map(|f| f.wrapping_sub(self.irs)),
            self.peer_fin,
            self.rto_at,
            self.persist_at,
            self.retries,
            self.rtt.rto(),
        )
    }

    /// Congestion state and loss-recovery counters.
    pub fn stats(&self) -> ConnStats {
        let ssthresh = self.cc.ssthresh();
        ConnStats {
            algorithm: self.cc.algorithm(),
            cwnd: self.cc.cwnd(),
            ssthresh: (ssthresh < usize::MAX / 2).then_some(ssthresh),
            smss: self.smss,
            bytes_in_flight: seq::diff(self.snd_max, self.snd_una) as usize,
            send_window: self.snd_wnd,
            srtt_ms: self.rtt.srtt(),
            rto_ms: self.rtt.rto(),
            in_recovery: self.in_recovery,
            retransmits: self.counters.retransmits,
            fast_retransmits: self.counters.fast_retransmits,
            sack_recoveries: self.counters.sack_recoveries,
            timeouts: self.counters.timeouts,
            tail_loss_probes: self.counters.tail_loss_probes,
            paws_rejected: self.counters.paws_rejected,
            acks_rate_limited: self.counters.acks_rate_limited,
            timestamps: self.ts_enabled,
            sack: self.sack_ok,
            window_scale: self.wscale_ok.then_some((self.snd_shift, self.rcv_shift)),
        }
    }

    /// Sets the offset of this connection's timestamp clock (before its first segment). The
    /// engine uses one per address pair, as Linux does: then a new incarnation's TSvals follow
    /// the old one's, which RFC 6191's TIME_WAIT reuse and the peer's PAWS rely on.
    pub fn set_timestamp_offset(&mut self, offset: u32) {
        self.ts_offset = offset;
    }

    /// Whether SYN `h` may open a new incarnation of this connection waiting in TIME_WAIT
    /// (RFC 6191, RFC 9293 §3.10.7.4, as Linux decides it): not if PAWS rejects it, yes if its
    /// sequence number is above the old RCV.NXT or its timestamp newer than TS.Recent. When it
    /// may, this connection closes and the ISS for the new one comes back: beyond anything
    /// the old one sent, so the peer cannot take new data for old.
    pub fn time_wait_successor(&mut self, h: &TcpHeader, now: u64) -> Option<u32> {
        if self.state != State::TimeWait || !h.has(SYN) || h.has(ACK) || h.has(RST) {
            return None;
        }
        let ts = match h.options.timestamps {
            Some((val, _)) if self.ts_enabled && now < self.ts_recent_at + PAWS_IDLE_MS => Some(val),
            _ => None,
        };
        if ts.is_some_and(|val| seq::lt(val, self.ts_recent)) {
            return None;
        }
        if !(seq::gt(h.seq, self.rcv_nxt) || ts.is_some_and(|val| seq::gt(val, self.ts_recent))) {
            return None;
        }
        Some(self.hand_over())
    }

    /// Whether this connection, in TIME_WAIT after our active close, may give its addresses to
    /// a new outgoing connection (as Linux's `tcp_tw_reuse` decides for its own side, RFC 6191's
    /// conditions): with timestamps on, and once the millisecond clock has moved past the last
    /// segment it sent or took (TIME_WAIT is re-armed by each), the new connection's timestamps,
    /// from the same clock and offset, are newer than anything of the old one, so PAWS at either
    /// end rejects the old incarnation's duplicates; its ISS comes from [`Conn::hand_over`].
    pub fn time_wait_reusable(&self, now: u64, time_wait_ms: u64) -> bool {
        self.state == State::TimeWait
            && self.ts_enabled
            && self.time_wait_at.is_some_and(|at| now > at.saturating_sub(time_wait_ms))
    }

    /// Closes this TIME_WAIT connection for a new incarnation and returns that one's ISS:
    /// beyond anything the old one sent, so the peer cannot take new data for old.
    pub fn hand_over(&mut self) -> u32 {
        self.close_now();
        self.snd_max.wrapping_add(65_535 + 2)
    }

    /// Changes the congestion control algorithm, keeping cwnd and ssthresh.
    pub fn set_congestion_control(&mut self, algorithm: Algorithm) {
        self.cc.switch(algorithm);
    }

    /// The earliest timer of this connection.
    pub fn deadline(&self) -> Option<u64> {
        [
            self.rto_at,
            self.persist_at,
            self.keepalive_at,
            self.delack_at,
            self.time_wait_at,
            self.rack.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Bytes the application can read.
    pub fn readable(&self) -> usize {
        self.rcvbuf.readable()
    }

    /// Room in the send buffer.
    pub fn writable(&self) -> usize {
        self.sndbuf.free()
    }

    /// Whether the peer's FIN arrived.
    pub fn peer_closed(&self) -> bool {
        self.peer_fin
    }

    /// Whether the application may still send.
    pub fn can_send(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait) && !self.fin_queued
    }

    /// Appends application data; returns how much fitted.
    pub fn send(&mut self, data: &[u8]) -> usize {
        let n = self.sndbuf.push(data);
        if n < data.len() {
            self.want_writable = true;
        }
        n
    }

    /// Copies readable data out; opens the window again when it grew enough.
    pub fn recv(&mut self, out: &mut [u8]) -> usize {
        let before = self.rcvbuf.window();
        let n = self.rcvbuf.read(out);
        self.readable_signalled = false;
        if n > 0 && self.state.synchronized() {
            let after = self.rcvbuf.window();
            // Receiver SWS avoidance (RFC 1122 §4.2.3.3): announce once the window grew by a
            // full segment or half the buffer, and always when it was (nearly) closed.
            let threshold = self.smss.min(self.rcvbuf.capacity() / 2);
            if before < threshold
                || after - before >= threshold.max(1) * 2
                || (before < after && before <= self.smss)
            {
                self.ack_now = true;
            }
        }
        n
    }

    /// Half-close: FIN after the buffered data.
    pub fn shutdown(&mut self) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            State::SynReceived => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::SynSent => self.state = State::Closed,
            _ => {}
        }
    }

    /// Sets Nagle off (`true`) or on.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// Configures keep-alive; `None` turns it off.
    pub fn set_keepalive(&mut self, keepalive: Option<KeepAlive>, now: u64) {
        self.keepalive = keepalive;
        self.keepalive_probes = 0;
        self.keepalive_at = keepalive.map(|k| now + k.idle_ms);
    }

    /// The `len` send-buffer bytes from stream position `position` on, while still held (the
    /// payload of a deferred segment, [`PayloadRef`]).
    pub fn sent_bytes(&self, position: u64, len: usize) -> Option<(&[u8], &[u8])> {
        self.sndbuf.slices_at(position, len)
    }

    /// Sends a RST and closes (abort).
    pub fn abort(&mut self, ctx: &mut Ctx) {
        if (self.state.synchronized() || self.state == State::SynReceived) && self.state != State::TimeWait {
            self.emit(ctx, RST | ACK, self.snd_max, 0, 0);
            ctx.stats.resets_sent += 1;
        }
        self.close_now();
    }

    fn close_now(&mut self) {
        self.state = State::Closed;
        self.rack = Rack::new();
        self.rto_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.delack_at = None;
        self.time_wait_at = None;
    }

    fn fail(&mut self, ctx: &mut Ctx, code: ErrorCode) {
        self.close_now();
        self.error = Some(code);
        if self.owned && !self.detached && !self.close_reported {
            self.close_reported = true;
            ctx.events.push(Event { handle: self.handle, kind: EventKind::Error(code) });
        }
    }

    fn finished(&mut self, ctx: &mut Ctx) {
        if self.owned && !self.detached && !self.close_reported {
            self.close_reported = true;
            ctx.events.push(Event { handle: self.handle, kind: EventKind::Closed });
        }
    }

    /// The sequence number of a segment without data (pure ACK): SND.MAX, not SND.NXT. After a
    /// timeout SND.NXT goes back to SND.UNA to resend, while the peer may already hold everything
    /// up to SND.MAX; an ACK numbered below its RCV.NXT would be dropped as old (and its
    /// acknowledgment ignored), and two peers retransmitting at once would deadlock.
    fn ack_seq(&self) -> u32 {
        self.snd_max
    }

    fn fin_sent(&self) -> bool {
        self.fin_seq_no.is_some_and(|f| seq::gt(self.snd_nxt, f))
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq_no.is_some_and(|f| seq::gt(self.snd_una, f))
    }

    fn advertised_window(&self) -> u16 {
        let wnd = self.rcvbuf.window() >> self.rcv_shift;
        wnd.min(65_535) as u16
    }

    fn tsval(&self, now: u64) -> u32 {
        (now as u32).wrapping_add(self.ts_offset)
    }

    /// Writes one segment to the output. `data_len` bytes are copied from the send buffer at
    /// `data_offset` after SND.UNA.
    fn emit(&mut self, ctx: &mut Ctx, flags: u8, seq_no: u32, data_offset: usize, data_len: usize) {
        let mut options = TcpOptions::default();
        if flags & SYN != 0 {
            options.mss = Some(self.mtu_mss.min(65_535) as u16);
            if self.state == State::SynSent {
                options.window_scale = Some(self.rcv_shift);
                options.sack_permitted = true;
                if ctx.cfg.timestamps {
                    options.timestamps = Some((self.tsval(ctx.now), 0));
                }
            } else {
                if self.wscale_ok {
                    options.window_scale = Some(self.rcv_shift);
                }
                options.sack_permitted = self.sack_ok;
                if self.ts_enabled {
                    options.timestamps = Some((self.tsval(ctx.now), self.ts_recent));
                }
            }
        } else if self.ts_enabled && flags & RST == 0 {
            options.timestamps = Some((self.tsval(ctx.now), self.ts_recent));
        }
        // SACK blocks on pure ACKs only: a full data segment has no room for them.
        if self.sack_ok && flags & (SYN | RST) == 0 && flags & ACK != 0 && data_len == 0 {
            let room = if options.timestamps.is_some() { 3 } else { MAX_SACK_BLOCKS };
            options.sack_count = self.rcvbuf.sack_blocks(&mut options.sack[..room]) as u8;
        }
        let window =
            if flags & SYN != 0 { self.rcvbuf.window().min(65_535) as u16 } else { self.advertised_window() };
        let header = TcpHeader {
            src_port: self.local.1,
            dst_port: self.remote.1,
            seq: seq_no,
            ack: if flags & ACK != 0 { self.rcv_nxt } else { 0 },
            flags,
            window: if flags & RST != 0 { 0 } else { window },
            urgent: 0,
            options,
        };
        // A super-segment (generic segmentation offload) is cut at the MSS downstream; every
        // count and record here stays per MSS-sized segment.
        let gso = data_len > self.smss;
        let gso_size = if gso { self.smss.min(usize::from(u16::MAX)) as u16 } else { 0 };
        if ctx.defer_payloads && data_len > 0 {
            let payload = PayloadRef {
                handle: self.handle,
                position: self.sndbuf.position(data_offset),
                len: data_len as u32,
            };
            ctx.out.push_deferred(self.local.0, self.remote.0, &header, payload, gso_size);
        } else {
            ctx.out.push_gso(
                self.local.0,
                self.remote.0,
                &header,
                self.sndbuf.slices(data_offset, data_len),
                gso_size,
            );
        }
        let pieces = if gso { data_len.div_ceil(self.smss) } else { 1 };
        ctx.stats.segments_out += pieces as u64;
        if self.sack_ok && flags & (SYN | RST) == 0 && (data_len > 0 || flags & FIN != 0) {
            let mut s = seq_no;
            for i in 0..pieces {
                let piece = if gso { (data_len - i * self.smss).min(self.smss) } else { data_len };
                let last = i + 1 == pieces;
                let end = s.wrapping_add((piece + usize::from(last && flags & FIN != 0)) as u32);
                self.rack.on_send(s, end, ctx.now);
                s = end;
            }
        }
        if flags & ACK != 0 {
            self.ack_now = false;
            self.delack_at = None;
            self.unacked_segments = 0;
        }
    }

    fn arm_rto(&mut self, now: u64) {
        if self.rto_at.is_none() {
            let rto = self.rtt.rto();
            self.tlp_armed = false;
            self.rto_at = Some(now + rto);
            // Tail-loss probe (RFC 8985 §7): when a flight of data goes unacknowledged for two
            // round trips, resend its last segment once instead of waiting for the RTO. A lost
            // tail segment or a lost last ACK then costs 2·SRTT, not the 200 ms minimum RTO.
            let flight = seq::diff(self.snd_max, self.snd_una) as usize;
            if let Some(srtt) = self.rtt.srtt() {
                let pto = ((2.0 * srtt).ceil() as u64).max(TLP_MIN_MS);
                if self.state.synchronized()
                    && !self.in_recovery
                    && !self.tlp_sent
                    && self.retries == 0
                    && flight > self.smss
                    && flight <= self.sndbuf.len()
                    && pto < rto
                {
                    self.rto_at = Some(now + pto);
                    self.tlp_armed = true;
                }
            }
        }
    }

    /// In SACK recovery, when SND.UNA does not move for 2·SRTT + [`TLP_MIN_MS`], the
    /// retransmission of its hole (or the ACK for it) is presumed lost and the hole is sent again
    /// (RFC 8985's time-based detection, simplified). Once per SND.UNA, so the RTO still follows
    /// when nothing comes back.
    fn arm_recovery_probe(&mut self, now: u64) {
        if !self.sack_recovery || self.rxt_probe_una == Some(self.snd_una) {
            return;
        }
        if let Some(srtt) = self.rtt.srtt() {
            let pto = (2.0 * srtt).ceil() as u64 + TLP_MIN_MS;
            if pto < self.rtt.rto() {
                self.rto_at = Some(now + pto);
                self.tlp_armed = true;
                self.rxt_probe_una = Some(self.snd_una);
            }
        }
    }

    /// Whether PAWS rejects a segment carrying TSval `val` (RFC 7323 §5.3 R1).
    fn paws_rejects(&self, h: &TcpHeader, val: u32, no_payload: bool, now: u64) -> bool {
        if !seq::lt(val, self.ts_recent) || now >= self.ts_recent_at + PAWS_IDLE_MS {
            return false;
        }
        // A reordered duplicate ACK is no threat (it moves nothing) and may carry SACK news:
        // let it through when it is recent, as Linux's `tcp_disordered_ack` does.
        let duplicate_ack = no_payload
            && !h.has(SYN)
            && !h.has(FIN)
            && h.has(ACK)
            && h.seq == self.rcv_nxt
            && h.ack == self.snd_una
            && u32::from(h.window) << self.snd_shift == self.snd_wnd;
        !(duplicate_ack && u64::from(self.ts_recent.wrapping_sub(val)) <= self.rtt.rto())
    }

    /// Sends the tail-loss probe: the last segment of the flight again.
    fn send_probe(&mut self, ctx: &mut Ctx) {
        let flight = seq::diff(self.snd_max, self.snd_una) as usize;
        if flight == 0 || flight > self.sndbuf.len() {
            return;
        }
        let len = flight.min(self.smss);
        ctx.stats.tail_loss_probes += 1;
        self.counters.tail_loss_probes += 1;
        self.count_retransmit(ctx);
        self.rtt_probe = None;
        let s = self.snd_max.wrapping_sub(len as u32);
        self.emit(ctx, ACK | PSH, s, flight - len, len);
    }

    /// Handles one segment addressed to this connection: SYN-SENT has its own rules
    /// (`Conn::on_segment_syn_sent`); every other state runs the RFC 9293 §3.10.7.4 steps,
    /// each in its own function.
    pub fn on_segment(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload: &[u8]) {
        match self.state {
            State::SynSent => self.on_segment_syn_sent(ctx, h),
            State::Closed => {}
            _ => self.on_segment_open(ctx, h, payload),
        }
    }

    /// A segment in SYN-RECEIVED or a synchronized state.
    fn on_segment_open(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload: &[u8]) {
        // A retransmitted SYN in SYN-RECEIVED: answer it again.
        if self.state == State::SynReceived && h.has(SYN) && !h.has(ACK) && !h.has(RST) && h.seq == self.irs {
            self.syn_ack_needed = true;
            return;
        }
        if !self.screen(ctx, h, payload) {
            return;
        }
        // 1. Sequence number check.
        if !self.acceptable(ctx, h, payload) {
            return;
        }
        // 2. RST.
        if h.has(RST) {
            self.on_reset(ctx, h);
            return;
        }
        // 4. SYN in a synchronized state (already answered by `screen`) or in SYN-RECEIVED.
        if h.has(SYN) {
            self.challenge_ack(ctx);
            return;
        }
        // 5. ACK.
        if !self.on_ack(ctx, h, payload) {
            return;
        }
        self.update_ts_recent(ctx.now, h);
        // 7. Text, then 8. FIN.
        let (seq_no, data_len, fin) = match self.on_text(ctx, h, payload) {
            Some(t) => t,
            None => return,
        };
        self.on_fin(ctx, h, seq_no, data_len, fin);
    }

    /// Keep-alive reset, RFC 5961 §4.2 challenge for a SYN and PAWS: false when the segment
    /// goes no further.
    fn screen(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload: &[u8]) -> bool {
        let now = ctx.now;
        if let Some(k) = self.keepalive {
            self.keepalive_probes = 0;
            self.keepalive_at = Some(now + k.idle_ms);
        }

        // RFC 5961 §4.2: a SYN in a synchronized state gets a challenge ACK whatever its
        // sequence number (the engine already let a SYN that may reopen a connection in
        // TIME_WAIT through, see `time_wait_successor`).
        if h.has(SYN) && !h.has(RST) && self.state.synchronized() {
            self.challenge_ack(ctx);
            return false;
        }

        // RFC 7323 §5.3 R1, PAWS: a segment whose TSval is older than TS.Recent is an old
        // duplicate (its sequence number may have wrapped into the window): ACK and drop it. A
        // RST is exempt (RFC 7323 §5.2 recommends RSTs without timestamps; RFC 5961 guards it).
        if self.ts_enabled && !h.has(RST) {
            if let Some((val, _)) = h.options.timestamps {
                if self.paws_rejects(h, val, payload.is_empty(), now) {
                    ctx.stats.paws_rejected += 1;
                    self.counters.paws_rejected += 1;
                    self.unacceptable_ack(ctx, h, payload.len());
                    return false;
                }
            }
        }

        true
    }

    /// Step 1, the sequence number check (RFC 9293 §3.10.7.4): false, with an ACK queued when
    /// due, for a segment outside the receive window.
    fn acceptable(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload: &[u8]) -> bool {
        let now = ctx.now;
        let seg_len = payload.len() + usize::from(h.has(SYN)) + usize::from(h.has(FIN));
        let wnd = self.rcvbuf.window() as u32;
        let in_window = |s: u32| seq::le(self.rcv_nxt, s) && seq::lt(s, self.rcv_nxt.wrapping_add(wnd));
        let acceptable = if seg_len == 0 {
            if wnd == 0 {
                h.seq == self.rcv_nxt
            } else {
                in_window(h.seq)
            }
        } else if wnd == 0 {
            // RFC 9293: with a zero window still process ACKs and RSTs; the data is trimmed away.
            h.seq == self.rcv_nxt
        } else {
            in_window(h.seq) || in_window(h.seq.wrapping_add(seg_len as u32 - 1))
        };
        if !acceptable {
            if !h.has(RST) {
                self.unacceptable_ack(ctx, h, payload.len());
                if self.state == State::TimeWait && h.has(FIN) {
                    self.time_wait_at = Some(now + ctx.cfg.time_wait_ms);
                }
            }
            return false;
        }
        true
    }

    /// Step 2, a RST inside the window (RFC 5961 §3: only an exact match resets; the rest gets a
    /// challenge ACK), by state.
    fn on_reset(&mut self, ctx: &mut Ctx, h: &TcpHeader) {
        ctx.stats.resets_received += 1;
        if h.seq == self.rcv_nxt {
            match self.state {
                State::SynReceived if self.listener.is_some() && !self.owned => self.close_now(),
                State::SynReceived => self.fail(ctx, ErrorCode::ConnectionRefused),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.fail(ctx, ErrorCode::ConnectionReset)
                }
                _ => {
                    self.close_now();
                    self.finished(ctx);
                }
            }
        } else {
            self.challenge_ack(ctx);
        }
    }

    /// Step 5, the ACK: completes SYN-RECEIVED, processes the acknowledgment and the window,
    /// and moves the closing states on once our FIN is acknowledged. False when the segment
    /// goes no further.
    fn on_ack(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload: &[u8]) -> bool {
        let now = ctx.now;
        if !h.has(ACK) {
            return false;
        }
        if self.state == State::SynReceived {
            if seq::gt(h.ack, self.snd_una) && seq::le(h.ack, self.snd_max) {
                self.state = State::Established;
                self.snd_wnd = u32::from(h.window) << self.snd_shift;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = h.seq;
                self.snd_wl2 = h.ack;
                if self.listener.is_some() && !self.owned {
                    ctx.stats.passive_opens += 1;
                    ctx.events.push(Event { handle: self.handle, kind: EventKind::Accepted(self.local.1) });
                    self.owned = true;
                } else {
                    ctx.stats.active_opens += 1;
                    ctx.events.push(Event { handle: self.handle, kind: EventKind::Connected });
                }
                if self.fin_queued {
                    self.state = State::FinWait1;
                }
            } else {
                // RFC 9293: an unacceptable ACK in SYN-RECEIVED gets a reset.
                self.emit_reset_for(ctx, h);
                return false;
            }
        }
        if seq::gt(h.ack, self.snd_max) {
            // RFC 9293: it acknowledges something not yet sent: ACK (rate-limited) and drop.
            self.unacceptable_ack(ctx, h, payload.len());
            return false;
        }
        if seq::lt(h.ack, self.snd_una.wrapping_sub(self.max_snd_wnd.max(1))) {
            // RFC 5961 §5.2: too old to be a real ACK.
            self.challenge_ack(ctx);
            return false;
        }
        self.process_ack(ctx, h, payload.is_empty());

        match self.state {
            State::FinWait1 if self.fin_acked() => {
                self.state = State::FinWait2;
                self.orphan_timeout(now, ctx.cfg);
            }
            State::Closing if self.fin_acked() => {
                self.enter_time_wait(ctx);
                return false;
            }
            State::LastAck if self.fin_acked() => {
                self.close_now();
                self.finished(ctx);
                return false;
            }
            _ => {}
        }

        true
    }

    /// RFC 7323 §4.3: remember the timestamp to echo (any, once TS.Recent went stale).
    fn update_ts_recent(&mut self, now: u64, h: &TcpHeader) {
        if let Some((val, _)) = h.options.timestamps {
            if self.ts_enabled
                && seq::le(h.seq, self.rcv_nxt)
                && (seq::ge(val, self.ts_recent) || now >= self.ts_recent_at + PAWS_IDLE_MS)
            {
                self.ts_recent = val;
                self.ts_recent_at = now;
            }
        }
    }

    /// Step 7, the segment text: trimmed to the window, queued in order or out of order, ACKed
    /// at once or delayed. Returns where the accepted text starts, its length and whether the
    /// FIN survived trimming; `None` when the connection was reset meanwhile.
    fn on_text(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload: &[u8]) -> Option<(u32, usize, bool)> {
        let now = ctx.now;
        let wnd = self.rcvbuf.window() as u32;
        let mut fin = h.has(FIN);
        let mut seq_no = h.seq;
        let mut data = payload;
        if seq::lt(seq_no, self.rcv_nxt) {
            let skip = seq::diff(self.rcv_nxt, seq_no) as usize;
            if skip > data.len() {
                data = &[];
                fin = false;
            } else {
                data = &data[skip..];
            }
            seq_no = self.rcv_nxt;
        }
        let right = self.rcv_nxt.wrapping_add(wnd);
        if seq::gt(seq_no.wrapping_add(data.len() as u32), right) {
            let keep = seq::diff(right, seq_no) as usize;
            data = &data[..keep.min(data.len())];
            fin = false;
        }
        if !data.is_empty() {
            match self.state {
                State::Established | State::FinWait1 | State::FinWait2 => {
                    if self.detached {
                        // Data for an application that closed: reset (RFC 9293 §3.10.7.4 note, as Linux).
                        self.abort(ctx);
                        return None;
                    }
                    ctx.stats.bytes_in += data.len() as u64;
                    if seq_no == self.rcv_nxt {
                        let advanced = self.rcvbuf.insert(seq_no, data, self.rcv_nxt);
                        self.rcv_nxt = self.rcv_nxt.wrapping_add(advanced as u32);
                        if advanced > 0 && !self.readable_signalled {
                            self.readable_signalled = true;
                            ctx.events.push(Event { handle: self.handle, kind: EventKind::Readable });
                        }
                        if advanced < data.len() || self.rcvbuf.has_out_of_order() {
                            // Filling a gap: acknowledge at once (RFC 5681 §4.2).
                            let s = self.ack_seq();
                            self.emit(ctx, ACK, s, 0, 0);
                        } else {
                            // A coalesced segment counts as the full-size segments it holds.
                            self.unacked_segments += data.len().div_ceil(self.mtu_mss.max(1)).max(1) as u32;
                            if self.unacked_segments >= 2 {
                                self.ack_now = true;
                            } else if self.delack_at.is_none() {
                                self.delack_at = Some(now + ctx.cfg.delayed_ack_ms);
                            }
                        }
                    } else {
                        let dropped = self.rcvbuf.ooo_dropped;
                        self.rcvbuf.insert(seq_no, data, self.rcv_nxt);
                        ctx.stats.out_of_order_dropped += self.rcvbuf.ooo_dropped - dropped;
                        ctx.stats.out_of_order += 1;
                        // One duplicate ACK per out-of-order segment, not one per batch: the
                        // sender counts them for fast retransmit.
                        let s = self.ack_seq();
                        self.emit(ctx, ACK, s, 0, 0);
                    }
                }
                _ => {}
            }
        } else if wnd == 0 && !payload.is_empty() {
            self.ack_now = true;
        }

        Some((seq_no, data.len(), fin))
    }

    /// Step 8, the FIN (possibly ahead of missing data: remembered until RCV.NXT reaches it).
    fn on_fin(&mut self, ctx: &mut Ctx, h: &TcpHeader, seq_no: u32, data_len: usize, fin: bool) {
        let now = ctx.now;
        if fin {
            self.fin_in = Some(seq_no.wrapping_add(data_len as u32));
        }
        if let Some(f) = self.fin_in {
            if f == self.rcv_nxt && !self.peer_fin {
                self.peer_fin = true;
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                self.ack_now = true;
                if self.owned && !self.detached {
                    ctx.events.push(Event { handle: self.handle, kind: EventKind::PeerClosed });
                }
                match self.state {
                    State::SynReceived | State::Established => self.state = State::CloseWait,
                    State::FinWait1 => {
                        if self.fin_acked() {
                            self.enter_time_wait(ctx);
                        } else {
                            self.state = State::Closing;
                        }
                    }
                    State::FinWait2 => self.enter_time_wait(ctx),
                    _ => {}
                }
            } else if self.state == State::TimeWait && h.has(FIN) {
                self.time_wait_at = Some(now + ctx.cfg.time_wait_ms);
                self.ack_now = true;
            }
        }
    }

    /// A connection the application closed must not wait in FIN-WAIT-2 for ever (as Linux's
    /// `tcp_fin_timeout`): it gets the TIME_WAIT duration, then goes.
    pub fn orphan_timeout(&mut self, now: u64, cfg: &Config) {
        if self.detached && self.state == State::FinWait2 && self.time_wait_at.is_none() {
            self.time_wait_at = Some(now + cfg.time_wait_ms);
        }
    }

    /// A challenge ACK (RFC 5961 §§3–5): at most one per [`OOW_ACK_INTERVAL_MS`] per
    /// connection, then within the engine-wide budget (§7), as Linux's `tcp_send_challenge_ack`.
    fn challenge_ack(&mut self, ctx: &mut Ctx) {
        if !self.oow_ack_allowed(ctx.now) {
            ctx.stats.challenge_acks_suppressed += 1;
            self.counters.acks_rate_limited += 1;
            return;
        }
        if ctx.challenge_allowed() {
            self.ack_now = true;
        }
    }

    /// The ACK answering an unacceptable segment (RFC 9293 §3.10.7.4). Without data it is
    /// rate-limited per connection (as Linux's `tcp_oow_rate_limited`); a segment with data or a
    /// FIN is always answered: its sender needs the ACK (a retransmission whose ACK was lost, a
    /// window probe), and data does not answer ACKs, so it cannot feed a loop.
    fn unacceptable_ack(&mut self, ctx: &mut Ctx, h: &TcpHeader, payload_len: usize) {
        let data = (payload_len > 0 || h.has(FIN)) && !h.has(SYN);
        if !data && !self.oow_ack_allowed(ctx.now) {
            ctx.stats.unacceptable_acks_suppressed += 1;
            self.counters.acks_rate_limited += 1;
            return;
        }
        ctx.stats.unacceptable_acks += 1;
        self.ack_now = true;
    }

    /// Whether the per-connection limit lets one more rate-limited ACK out now (and takes it).
    fn oow_ack_allowed(&mut self, now: u64) -> bool {
        if self.oow_ack_at.is_some_and(|t| now < t + OOW_ACK_INTERVAL_MS) {
            return false;
        }
        self.oow_ack_at = Some(now);
        true
    }

    fn enter_time_wait(&mut self, ctx: &mut Ctx) {
        self.state = State::TimeWait;
        self.rto_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.time_wait_at = Some(ctx.now + ctx.cfg.time_wait_ms);
        ctx.stats.time_wait_entered += 1;
        self.finished(ctx);
    }

    fn emit_reset_for(&mut self, ctx: &mut Ctx, h: &TcpHeader) {
        let header = TcpHeader {
            src_port: self.local.1,
            dst_port: self.remote.1,
            seq: h.ack,
            ack: 0,
            flags: RST,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
        };
        ctx.out.push(self.local.0, self.remote.0, &header, (&[], &[]));
        ctx.stats.segments_out += 1;
        ctx.stats.resets_sent += 1;
    }

    fn on_segment_syn_sent(&mut self, ctx: &mut Ctx, h: &TcpHeader) {
        if h.has(ACK) && (seq::le(h.ack, self.iss) || seq::gt(h.ack, self.snd_max)) {
            if !h.has(RST) {
                self.emit_reset_for(ctx, h);
            }
            return;
        }
        if h.has(RST) {
            if h.has(ACK) {
                ctx.stats.resets_received += 1;
                self.fail(ctx, ErrorCode::ConnectionRefused);
            }
            return;
        }
        if !h.has(SYN) {
            return;
        }
        self.take_syn(h, ctx.cfg, ctx.now);
        if h.has(ACK) {
            self.snd_una = h.ack;
            self.rtt_probe.take().into_iter().for_each(|(_, t)| {
                if self.retries == 0 {
                    self.rtt.sample(ctx.now - t);
                }
            });
            self.rto_at = None;
            self.retries = 0;
            self.rtt.reset_backoff();
            self.state = State::Established;
            self.ack_now = true;
            ctx.stats.active_opens += 1;
            ctx.events.push(Event { handle: self.handle, kind: EventKind::Connected });
            if self.fin_queued {
                self.state = State::FinWait1;
            }
        } else {
            // Simultaneous open (RFC 9293 §3.5 figure 7): answer with SYN-ACK.
            self.state = State::SynReceived;
            self.syn_ack_needed = true;
        }
    }

    fn process_ack(&mut self, ctx: &mut Ctx, h: &TcpHeader, no_payload: bool) {
        let now = ctx.now;
        let prior_una = self.snd_una;
        let shift = self.snd_shift;
        let new_wnd = u32::from(h.window) << shift;
        let window_changed = new_wnd != self.snd_wnd;
        // An ACK whose SACK blocks report data beyond any reported before is a duplicate ACK
        // even when the window moved (RFC 6675 §2): Linux grows its window while it holds
        // out-of-order data, and strict RFC 5681 counting then misses fast retransmit.
        let mut sack_news = false;
        if self.sack_ok {
            let blocks = &h.options.sack[..usize::from(h.options.sack_count).min(MAX_SACK_BLOCKS)];
            for &(left, right) in blocks {
                // Blocks at or below SND.UNA are D-SACKs (RFC 2883): old news.
                let valid =
                    seq::gt(right, left) && seq::gt(right, self.snd_una) && seq::le(right, self.snd_max);
                if valid && seq::gt(right, self.sack_high) {
                    self.sack_high = right;
                    sack_news = true;
                }
                if valid {
                    let left = if seq::lt(left, self.snd_una) { self.snd_una } else { left };
                    self.scoreboard_insert(left, right);
                    self.rack.on_sack(left, right, now);
                }
            }
        }
        if self.sack_ok {
            // RACK (RFC 8985 §6.2): what this ACK delivered, then what that makes lost.
            if seq::gt(h.ack, self.snd_una) {
                self.rack.on_ack(h.ack, now);
            }
            let reo_wnd = self.rack.reo_wnd(self.in_recovery, self.rtt.srtt());
            self.rack.detect(now, reo_wnd);
        }
        if seq::gt(h.ack, self.snd_una) {
            let acked = seq::diff(h.ack, self.snd_una) as usize;
            let flight_before = seq::diff(self.snd_max, self.snd_una) as usize;
            // RTT sample: timestamps when on, else one timed segment (Karn: never a retransmission).
            if self.ts_enabled {
                if let Some((_, ecr)) = h.options.timestamps {
                    let rtt = self.tsval(now).wrapping_sub(ecr);
                    if ecr != 0 && rtt < 60_000 {
                        self.rtt.sample(u64::from(rtt));
                    }
                }
            } else if let Some((s, t)) = self.rtt_probe {
                if seq::ge(h.ack, s) {
                    self.rtt.sample(now.saturating_sub(t));
                    self.rtt_probe = None;
                }
            }
            self.rtt.reset_backoff();
            self.retries = 0;
            let data_acked = acked.min(self.sndbuf.len());
            self.sndbuf.release(data_acked);
            self.snd_una = h.ack;
            if seq::lt(self.snd_nxt, self.snd_una) {
                self.snd_nxt = self.snd_una;
            }
            self.scoreboard_prune();
            if self.in_recovery {
                if seq::ge(h.ack, self.recover) {
                    // Full acknowledgment (RFC 6582 §3.2 step 3, RFC 6675 §5 step C).
                    let flight = seq::diff(self.snd_max, self.snd_una) as usize;
                    self.cc.set_cwnd(self.cc.ssthresh().min(flight.max(self.smss) + self.smss));
                    self.in_recovery = false;
                    self.sack_recovery = false;
                    self.rxt_mark = None;
                    self.rxt_lost = false;
                    self.dupacks = 0;
                } else if self.sack_recovery {
                    // Partial acknowledgment under RFC 6675: `output` repairs the next holes as
                    // pipe allows. The new hole at SND.UNA, if already retransmitted, is watched
                    // for a lost retransmission from now on (a late, never spurious, mark).
                    if seq::lt(self.high_rxt, self.snd_una) {
                        self.high_rxt = self.snd_una;
                    }
                    self.rxt_lost = false;
                    self.rxt_mark =
                        if seq::gt(self.high_rxt, self.snd_una) { Some(self.snd_max) } else { None };
                    self.rto_at = Some(now + self.rtt.rto());
                    self.tlp_armed = false;
                    self.arm_recovery_probe(now);
                } else {
                    // Partial acknowledgment: retransmit the next hole, deflate.
                    self.retransmit_first(ctx);
                    self.cc.set_cwnd(self.cc.cwnd().saturating_sub(acked).max(self.smss) + self.smss);
                    self.rto_at = Some(now + self.rtt.rto());
                }
            } else {
                self.dupacks = 0;
                let srtt_ms = self.rtt.srtt();
                self.cc.on_ack(&AckSample { now, acked, flight: flight_before, srtt_ms });
            }
            self.tlp_sent = false;
            if self.snd_una == self.snd_max {
                self.rto_at = None;
                self.tlp_armed = false;
            } else if !self.in_recovery {
                self.rto_at = None;
                self.arm_rto(now);
            }
            if self.want_writable && self.sndbuf.free() > 0 && self.can_send() {
                self.want_writable = false;
                ctx.events.push(Event { handle: self.handle, kind: EventKind::Writable });
            }
        } else if h.ack == self.snd_una
            && no_payload
            && !h.has(FIN)
            && (!window_changed || sack_news)
            && self.snd_una != self.snd_max
        {
            ctx.stats.duplicate_acks += 1;
            self.dupacks += 1;
            // RFC 6582 §3.2 step 2 refuses a new recovery until the ACK covers `recover`; SACK
            // blocks beyond `recover` prove the hole is a new loss, not an old duplicate.
            let new_episode =
                seq::gt(h.ack, self.recover) || (self.sack_ok && seq::gt(self.sack_high, self.recover));
            // RFC 6675 §5: three duplicate ACKs, or SACKs that already make SND.UNA lost.
            let sack_lost = self.sack_ok && seq::gt(self.lost_edge(), self.snd_una);
            if (self.dupacks == 3 || sack_lost) && !self.in_recovery && new_episode {
                self.enter_recovery(ctx);
            } else if self.dupacks > 3 && self.in_recovery && !self.sack_recovery {
                self.cc.set_cwnd(self.cc.cwnd() + self.smss);
            }
        }
        // RACK found a loss on an ACK that was no duplicate (it moved SND.UNA or the window).
        self.rack_recovery(ctx);
        // A lost retransmission (the idea of RFC 8985's time-ordered detection, by sequence):
        // data first sent after the hole at SND.UNA was resent is SACKed while the hole stays.
        // Reordering can make this spurious; it costs one segment per round trip at most.
        if self.sack_recovery && !self.rxt_lost {
            if let Some(mark) = self.rxt_mark {
                if self.sacked_above(mark) > 0 {
                    self.rxt_lost = true;
                    self.rxt_mark = None;
                }
            }
        }
        // Window update (RFC 9293 §3.10.7.4 with Linux's `tcp_may_update_window`): from a segment
        // newer than the last one that updated it, or from any ACK that advances SND.UNA (it
        // cannot be an old one). SND.WL1 never runs ahead of RCV.NXT: a segment beyond it (a
        // spoofed in-window pure ACK with window 0 once pinned the window, issue 20) must not
        // make every later update from the peer look old.
        if seq::gt(h.ack, prior_una)
            || seq::lt(self.snd_wl1, h.seq)
            || (self.snd_wl1 == h.seq && seq::le(self.snd_wl2, h.ack))
        {
            self.snd_wnd = new_wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(new_wnd);
            self.snd_wl1 = if seq::gt(h.seq, self.rcv_nxt) { self.rcv_nxt } else { h.seq };
            self.snd_wl2 = h.ack;
        }
        if self.snd_wnd > 0 {
            self.persist_at = None;
            self.persist_backoff = 0;
        }
    }

    /// Fast retransmit (RFC 5681 §3.2, RFC 6582 §3.2, RFC 6675 §5 step 4): a congestion event,
    /// then SACK-based recovery when the scoreboard holds anything, else NewReno's.
    fn enter_recovery(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        let flight = seq::diff(self.snd_max, self.snd_una) as usize;
        self.cc.on_congestion(now, flight);
        self.recover = self.snd_max;
        self.in_recovery = true;
        self.tlp_armed = false;
        ctx.stats.fast_retransmits += 1;
        self.counters.fast_retransmits += 1;
        if self.sack_ok && !self.sacked.is_empty() {
            // RFC 6675 §5 steps 4.1–4.3: no window inflation; pipe governs.
            self.sack_recovery = true;
            self.counters.sack_recoveries += 1;
            self.rescue_rxt = None;
            self.rxt_lost = false;
            // After a timeout's go-back, what lies below SND.NXT was resent already.
            self.high_rxt = if self.snd_nxt == self.snd_max { self.snd_una } else { self.snd_nxt };
            self.snd_nxt = self.snd_max;
            let una = self.snd_una;
            let end = self.next_hole(una, self.snd_max).map_or(self.snd_max, |h| h.1);
            let n = self.retransmit_range(ctx, una, end);
            if seq::lt(self.high_rxt, una.wrapping_add(n)) {
                self.high_rxt = una.wrapping_add(n);
            }
            self.rxt_mark = Some(self.snd_max);
        } else {
            self.sack_recovery = false;
            self.retransmit_first(ctx);
            self.cc.set_cwnd(self.cc.ssthresh() + 3 * self.smss);
        }
        self.rto_at = Some(now + self.rtt.rto());
        self.arm_recovery_probe(now);
    }

    /// Starts SACK recovery when RACK marked data lost outside recovery (RFC 8985 §6.2: loss
    /// detection runs on every ACK and on its timer, not only on duplicate ACKs).
    fn rack_recovery(&mut self, ctx: &mut Ctx) {
        if !self.sack_ok || self.in_recovery || self.sacked.is_empty() || !self.state.synchronized() {
            return;
        }
        let new_episode = seq::gt(self.snd_una, self.recover) || seq::gt(self.sack_high, self.recover);
        if new_episode && seq::gt(self.rack.lost_edge(), self.snd_una) {
            self.enter_recovery(ctx);
        }
    }

    /// Adds the SACKed range `[left, right)` to the scoreboard.
    fn scoreboard_insert(&mut self, left: u32, right: u32) {
        self.sacked.insert(left, right);
    }

    /// Forgets what SND.UNA covers.
    fn scoreboard_prune(&mut self) {
        self.sacked.prune(self.snd_una);
    }

    /// Number of ranges on the SACK scoreboard.
    pub fn scoreboard_len(&self) -> usize {
        self.sacked.len()
    }

    /// SACKed bytes below `point`.
    fn sacked_below(&self, point: u32) -> usize {
        self.sacked.sacked_below(point)
    }

    /// SACKed bytes above `point`.
    fn sacked_above(&self, point: u32) -> usize {
        self.sacked.sacked_above(point, self.snd_una)
    }

    /// RFC 6675 IsLost as one edge: every unSACKed byte below it has more than
    /// (DupThresh − 1)·SMSS SACKed bytes, or DupThresh SACKed ranges, above it, or RACK found it
    /// lost by time. SND.UNA when nothing is lost.
    fn lost_edge(&self) -> u32 {
        // RACK's time-based verdict (RFC 8985) first; DupThresh may reach further.
        let rack = self.rack.lost_edge();
        let edge = if self.sack_ok && seq::gt(rack, self.snd_una) && seq::le(rack, self.snd_max) {
            rack
        } else {
            self.snd_una
        };
        self.sacked.lost_edge(edge, DUP_THRESH, self.smss)
    }

    /// RFC 6675 pipe: bytes believed in the network.
    fn pipe(&self) -> usize {
        let flight = seq::diff(self.snd_max, self.snd_una) as usize;
        let sacked = self.sacked_below(self.snd_max);
        let edge = self.lost_edge();
        let lost = seq::diff(edge, self.snd_una) as usize - self.sacked_below(edge);
        let retransmitted = if seq::gt(self.high_rxt, self.snd_una) {
            seq::diff(self.high_rxt, self.snd_una) as usize - self.sacked_below(self.high_rxt)
        } else {
            0
        };
        (flight - sacked).saturating_sub(lost) + retransmitted
    }

    /// The first unSACKed range starting at or after `from` and below `limit`.
    fn next_hole(&self, from: u32, limit: u32) -> Option<(u32, u32)> {
        self.sacked.next_hole(from, limit, self.snd_una)
    }

    /// Resends up to one segment of `[s, e)` (with our FIN when it falls inside); returns the
    /// sequence space it covered.
    fn retransmit_range(&mut self, ctx: &mut Ctx, s: u32, e: u32) -> u32 {
        let data_end = self.snd_una.wrapping_add(self.sndbuf.len() as u32);
        let offset = seq::diff(s, self.snd_una) as usize;
        let want = (seq::diff(e, s) as usize).min(self.smss);
        let data_len = if seq::lt(s, data_end) { want.min(seq::diff(data_end, s) as usize) } else { 0 };
        let fin = self.fin_sent()
            && s.wrapping_add(data_len as u32) == data_end
            && seq::gt(e, data_end)
            && data_len < self.smss;
        if data_len == 0 && !fin {
            return 0;
        }
        self.count_retransmit(ctx);
        ctx.stats.retransmitted_bytes += data_len as u64;
        self.rtt_probe = None;
        let flags = ACK | if fin { FIN } else { 0 } | if data_len > 0 { PSH } else { 0 };
        self.emit(ctx, flags, s, offset, data_len);
        (data_len + usize::from(fin)) as u32
    }

    /// RFC 6675 §5 step (C): while cwnd − pipe allows a segment, retransmit lost holes in
    /// order (NextSeg rule 1), leave room for new data (rule 2), then holes below SACKed data
    /// (rule 3) and one rescue retransmission of the tail (rule 4). Returns pipe, for the new
    /// data `output` sends next.
    fn sack_retransmit(&mut self, ctx: &mut Ctx) -> usize {
        let mut pipe = self.pipe();
        if self.rxt_lost {
            // The retransmission of the hole at SND.UNA was lost: once more, window or not.
            self.rxt_lost = false;
            let una = self.snd_una;
            if let Some((s, e)) = self.next_hole(una, self.snd_max) {
                if s == una {
                    pipe += self.retransmit_range(ctx, s, e) as usize;
                    self.rxt_mark = Some(self.snd_max);
                }
            }
        }
        let edge = self.lost_edge();
        let top = self.sacked.last().map_or(self.snd_una, |r| r.1);
        // Bounded: every pass sends a segment or stops.
        while self.cc.cwnd() >= pipe + self.smss {
            let from = if seq::gt(self.high_rxt, self.snd_una) { self.high_rxt } else { self.snd_una };
            if let Some((s, e)) = self.next_hole(from, edge) {
                let n = self.retransmit_range(ctx, s, e);
                if n == 0 {
                    break;
                }
                if s == self.snd_una {
                    self.rxt_mark = Some(self.snd_max);
                }
                self.high_rxt = s.wrapping_add(n);
                pipe += n as usize;
                continue;
            }
            let in_flight = seq::diff(self.snd_nxt, self.snd_una) as usize;
            let unsent = self.sndbuf.len().saturating_sub(in_flight);
            if unsent > 0 && self.snd_wnd as usize >= in_flight + unsent.min(self.smss) {
                break;
            }
            if let Some((s, e)) = self.next_hole(from, top) {
                let n = self.retransmit_range(ctx, s, e);
                if n == 0 {
                    break;
                }
                self.high_rxt = s.wrapping_add(n);
                pipe += n as usize;
                continue;
            }
            if self.rescue_rxt.is_none() && unsent == 0 {
                // The highest unSACKed data: below the top range when it reaches SND.MAX.
                let (hole_lo, end) = match self.sacked.last() {
                    Some((l, r)) if r == self.snd_max => {
                        let lo = self.sacked.ranges().iter().rev().nth(1).map_or(self.snd_una, |p| p.1);
                        (lo, l)
                    }
                    Some((_, r)) => (r, self.snd_max),
                    None => (self.snd_una, self.snd_max),
                };
                // Rule 4 wants data above HighRxt: what was just retransmitted is no rescue.
                let hole_lo = if seq::gt(self.high_rxt, hole_lo) { self.high_rxt } else { hole_lo };
                let span = if seq::gt(end, hole_lo) {
                    (seq::diff(end, hole_lo) as usize).min(self.smss) as u32
                } else {
                    0
                };
                self.rescue_rxt = Some(self.recover);
                if span > 0 {
                    let s = end.wrapping_sub(span);
                    pipe += self.retransmit_range(ctx, s, end) as usize;
                }
            }
            break;
        }
        pipe
    }

    /// Resends the first unacknowledged segment (fast retransmit, partial ACK).
    fn retransmit_first(&mut self, ctx: &mut Ctx) {
        let len = self.sndbuf.len().min(self.smss);
        let fin = len == self.sndbuf.len() && self.fin_seq_no.is_some();
        if len == 0 && !fin {
            return;
        }
        self.count_retransmit(ctx);
        self.rtt_probe = None;
        let flags = ACK | if fin { FIN } else { 0 } | if len > 0 { PSH } else { 0 };
        let s = self.snd_una;
        self.emit(ctx, flags, s, 0, len);
    }

    /// Runs the timers that fell due.
    pub fn on_timer(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        if self.time_wait_at.is_some_and(|t| t <= now) {
            self.close_now();
            return;
        }
        if self.rack.deadline().is_some_and(|t| t <= now) {
            // RACK's reordering timer: segments that waited a reordering window are lost.
            let reo_wnd = self.rack.reo_wnd(self.in_recovery, self.rtt.srtt());
            self.rack.detect(now, reo_wnd);
            self.rack_recovery(ctx);
        }
        if self.rto_at.is_some_and(|t| t <= now) && self.tlp_armed && self.sack_recovery {
            // Recovery probe: `output` resends the hole at SND.UNA; the RTO is next.
            self.tlp_armed = false;
            self.rxt_lost = true;
            self.rto_at = Some(now + self.rtt.rto());
        } else if self.rto_at.is_some_and(|t| t <= now) && self.tlp_armed && !self.in_recovery {
            self.tlp_armed = false;
            self.tlp_sent = true;
            self.send_probe(ctx);
            let rto = self.rtt.rto();
            self.rto_at = Some(now + rto);
        } else if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            self.tlp_armed = false;
            self.on_rto(ctx);
            if self.state == State::Closed {
                return;
            }
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            // Zero-window probe: an old sequence number forces an ACK with the current window.
            self.persist_at = None;
            ctx.stats.window_probes += 1;
            let s = self.snd_una.wrapping_sub(1);
            self.emit(ctx, ACK, s, 0, 0);
            self.persist_backoff = (self.persist_backoff + 1).min(10);
            let delay = (self.rtt.rto() << self.persist_backoff).min(ctx.cfg.rto_max_ms);
            self.persist_at = Some(now + delay);
        }
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if let (Some(t), Some(k)) = (self.keepalive_at, self.keepalive) {
            if t <= now {
                if !matches!(self.state, State::Established | State::CloseWait | State::FinWait2)
                    || self.snd_una != self.snd_max
                {
                    self.keepalive_at = Some(now + k.idle_ms);
                } else if self.keepalive_probes >= k.count {
                    ctx.stats.keepalive_timeouts += 1;
                    self.abort_silently_with(ctx, ErrorCode::TimedOut);
                } else {
                    self.keepalive_probes += 1;
                    ctx.stats.keepalive_probes += 1;
                    let s = self.snd_max.wrapping_sub(1);
                    self.emit(ctx, ACK, s, 0, 0);
                    self.keepalive_at = Some(now + k.interval_ms);
                }
            }
        }
    }

    fn count_retransmit(&mut self, ctx: &mut Ctx) {
        ctx.stats.retransmits += 1;
        self.counters.retransmits += 1;
    }

    fn abort_silently_with(&mut self, ctx: &mut Ctx, code: ErrorCode) {
        // The peer is presumed gone; a RST still tells it if it only lost state.
        self.emit(ctx, RST | ACK, self.snd_max, 0, 0);
        ctx.stats.resets_sent += 1;
        self.fail(ctx, code);
    }

    fn on_rto(&mut self, ctx: &mut Ctx) {
        self.retries += 1;
        ctx.stats.timeouts += 1;
        self.counters.timeouts += 1;
        let handshake = matches!(self.state, State::SynSent | State::SynReceived);
        let limit = if handshake { ctx.cfg.syn_retries } else { ctx.cfg.data_retries };
        if self.retries > limit {
            if self.state == State::SynReceived && !self.owned {
                self.close_now();
            } else {
                self.fail(ctx, self.soft_error.unwrap_or(ErrorCode::TimedOut));
            }
            return;
        }
        self.rtt.back_off();
        self.rtt_probe = None;
        if handshake {
            self.snd_nxt = self.iss;
            self.syn_ack_needed = self.state == State::SynReceived;
        } else {
            let flight = seq::diff(self.snd_max, self.snd_una) as usize;
            // ssthresh falls once per episode: not again on a backed-off expiry, nor when a
            // recovery already lowered it.
            let reduce = self.retries == 1 && !self.in_recovery;
            self.cc.on_rto(ctx.now, flight, reduce);
            self.in_recovery = false;
            self.sack_recovery = false;
            self.rxt_mark = None;
            self.rxt_lost = false;
            // RFC 2018 §8: after a timeout, SACK information is not trusted.
            self.sacked.clear();
            self.rack.on_rto();
            self.dupacks = 0;
            self.recover = self.snd_max;
            self.snd_nxt = self.snd_una;
            self.count_retransmit(ctx);
        }
        self.rto_at = Some(ctx.now + self.rtt.rto());
    }

    /// Sends what the state, windows and timers allow.
    pub fn output(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        match self.state {
            State::Closed => return,
            State::SynSent => {
                if self.snd_nxt == self.iss {
                    if self.retries == 0 {
                        self.rtt_probe = Some((self.iss.wrapping_add(1), now));
                    }
                    self.emit(ctx, SYN, self.iss, 0, 0);
                    self.snd_nxt = self.iss.wrapping_add(1);
                    self.snd_max = self.snd_nxt;
                    self.arm_rto(now);
                }
                return;
            }
            State::SynReceived => {
                if self.syn_ack_needed {
                    self.syn_ack_needed = false;
                    self.emit(ctx, SYN | ACK, self.iss, 0, 0);
                    self.snd_nxt = self.iss.wrapping_add(1);
                    self.snd_max = self.snd_nxt;
                    self.arm_rto(now);
                } else if self.ack_now {
                    // Simultaneous open: the peer's SYN-ACK is answered with an ACK.
                    let s = self.ack_seq();
                    self.emit(ctx, ACK, s, 0, 0);
                }
                return;
            }
            State::TimeWait => {
                if self.ack_now {
                    let s = self.ack_seq();
                    self.emit(ctx, ACK, s, 0, 0);
                }
                return;
            }
            _ => {}
        }
        let mut sack_pipe =
            if self.in_recovery && self.sack_recovery { Some(self.sack_retransmit(ctx)) } else { None };
        loop {
            let in_flight = seq::diff(self.snd_nxt, self.snd_una) as usize;
            let offset = in_flight.min(self.sndbuf.len());
            let unsent = self.sndbuf.len() - offset;
            // Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one new
            // segment out beyond cwnd, so a small window still produces the third.
            let limited = if self.in_recovery { 0 } else { self.dupacks.min(2) as usize * self.smss };
            let usable = match sack_pipe {
                // RFC 6675: new data as cwnd − pipe allows, within the peer's window.
                Some(pipe) => {
                    (self.snd_wnd as usize).saturating_sub(in_flight).min(self.cc.cwnd().saturating_sub(pipe))
                }
                None => (self.snd_wnd as usize).min(self.cc.cwnd() + limited).saturating_sub(in_flight),
            };
            // New data outside recovery may leave as one super-segment of whole MSS-sized
            // pieces ([`Config::gso_max`]); retransmissions and the short tail go one by one.
            let new_data = !seq::lt(self.snd_nxt, self.snd_max);
            let gso_max = ctx.cfg.gso_max.min(crate::types::MAX_GSO_PAYLOAD);
            let cap = if gso_max >= 2 * self.smss && new_data && !self.in_recovery && sack_pipe.is_none() {
                gso_max - gso_max % self.smss
            } else {
                self.smss
            };
            let mut len = unsent.min(usable).min(cap);
            if len > self.smss {
                len -= len % self.smss;
            }
            let fin_now = self.fin_queued && !self.fin_sent() && len == unsent && len <= self.smss;
            if len == 0 && !fin_now {
                if unsent > 0
                    && self.snd_wnd == 0
                    && self.snd_una == self.snd_max
                    && self.persist_at.is_none()
                {
                    self.persist_at = Some(now + self.rtt.rto());
                }
                break;
            }
            if !fin_now && len < self.smss && in_flight > 0 {
                // Nagle (RFC 896) and sender SWS avoidance: hold a small segment while data is
                // in flight, unless the application turned Nagle off and this is all there is.
                if !self.nodelay || len < unsent {
                    break;
                }
            }
            let mut flags = ACK;
            if len > 0 && len == unsent {
                flags |= PSH;
            }
            if fin_now {
                flags |= FIN;
            }
            let s = self.snd_nxt;
            let retransmission = seq::lt(s, self.snd_max);
            if retransmission {
                ctx.stats.retransmitted_bytes += len as u64;
            } else {
                ctx.stats.bytes_out += len as u64;
            }
            self.emit(ctx, flags, s, offset, len);
            if fin_now && self.fin_seq_no.is_none() {
                self.fin_seq_no = Some(s.wrapping_add(len as u32));
            }
            self.snd_nxt = self.snd_nxt.wrapping_add((len + usize::from(fin_now)) as u32);
            if let Some(pipe) = sack_pipe.as_mut() {
                *pipe += len + usize::from(fin_now);
            }
            if seq::gt(self.snd_nxt, self.snd_max) {
                if self.rtt_probe.is_none() && !retransmission && !self.ts_enabled {
                    self.rtt_probe = Some((self.snd_nxt, now));
                }
                self.snd_max = self.snd_nxt;
            }
            self.arm_rto(now);
            if fin_now {
                break;
            }
        }
        if self.ack_now {
            let s = self.ack_seq();
            self.emit(ctx, ACK, s, 0, 0);
        }
    }
}

impl Conn {
    /// Checks the invariants the state machine keeps (for fuzzing and tests): the send sequence
    /// numbers are ordered (SND.UNA ≤ SND.NXT ≤ SND.MAX), what is in flight is in the send
    /// buffer (plus SYN and FIN), the buffers and the SACK scoreboard stay within their bounds.
    /// Returns the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{what}: {}", self.summary()));
        if self.state == State::Closed {
            return Ok(());
        }
        if !seq::le(self.snd_una, self.snd_nxt) || !seq::le(self.snd_nxt, self.snd_max) {
            return fail("SND.UNA <= SND.NXT <= SND.MAX broken");
        }
        let flight = seq::diff(self.snd_max, self.snd_una) as usize;
        if flight > self.sndbuf.len() + 2 {
            return fail("more in flight than the send buffer holds");
        }
        if self.sndbuf.len() > self.sndbuf.capacity() {
            return fail("send buffer over its capacity");
        }
        if self.rcvbuf.readable() + self.rcvbuf.out_of_order_bytes() > self.rcvbuf.capacity()
            || self.rcvbuf.out_of_order_blocks().count() > self.rcvbuf.max_out_of_order()
        {
            return fail("receive buffer over its bounds");
        }
        if self.sacked.len() > MAX_SCOREBOARD {
            return fail("SACK scoreboard over its bound");
        }
        let mut at = self.snd_una;
        for &(l, r) in self.sacked.ranges() {
            if !seq::le(at, l) || !seq::lt(l, r) || !seq::le(r, self.snd_max) {
                return fail("SACK scoreboard not sorted, disjoint, inside SND.UNA..SND.MAX");
            }
            at = r;
        }
        if self.state.synchronized() && self.cc.cwnd() == 0 {
            return fail("zero congestion window");
        }
        Ok(())
    }
}
