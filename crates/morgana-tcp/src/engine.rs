//! The engine: every connection of a stack, the listeners, and the segments and events they
//! produce. See the crate documentation for the call protocol.

use crate::conn::{window_shift, Conn, Ctx, State};
use crate::isn::{initial_sequence, siphash24, tuple_bytes, TUPLE_BYTES_MAX};
use crate::syncookie::{decode_tsecr, encode_tsval, CookieOptions};
pub use crate::types::{
    Config, EngineError, ErrorCode, Event, EventKind, Handle, KeepAlive, ListenFamily, OutSegment, Output,
    PayloadRef, Stats,
};

/// A produced segment's bytes as [`Engine::segment_bytes`] finds them: the bytes stored in the
/// output, then the payload still in the send buffer (empty when the segment is stored whole).
#[derive(Debug, Clone, Copy)]
pub struct SegmentBytes<'a> {
    /// The stored bytes: the header, or the whole segment.
    pub stored: &'a [u8],
    /// The deferred payload, as up to two slices.
    pub payload: (&'a [u8], &'a [u8]),
    /// Whether the checksum field is final; otherwise it is zero and the checksum is to be
    /// computed over the whole segment (or left to a device that takes partial checksums).
    pub checksummed: bool,
}
use crate::wire::{finish_checksum, ip_tcp_overhead, TcpHeader, TcpOptions, ACK, FIN, RST, SYN};
use std::collections::HashMap;
use std::net::IpAddr;

/// MSS values a SYN cookie can encode (3 bits).
const COOKIE_MSS: [usize; 8] = [536, 1220, 1360, 1440, 1460, 4312, 8960, 65_495];
/// The SYN cookie counter ticks every 64 s.
const COOKIE_PERIOD_MS: u64 = 64_000;

#[derive(Debug)]
struct Listener {
    backlog: u32,
    half_open: u32,
    unaccepted: u32,
    /// Stored under the IPv6 key and accepting IPv4 too.
    dual: bool,
}

/// Listeners by (port, is IPv6). A dual-stack listener lives under the IPv6 key with `dual`
/// set, so one port has either one dual-stack listener or up to one per family (as on Linux).
type Listeners = HashMap<(u16, bool), Listener>;

/// The listener a connection of family `v6` to `port` belongs to.
fn find_listener(listeners: &mut Listeners, port: u16, v6: bool) -> Option<&mut Listener> {
    if !v6 && listeners.contains_key(&(port, false)) {
        return listeners.get_mut(&(port, false));
    }
    listeners.get_mut(&(port, true)).filter(|l| v6 || l.dual)
}

/// The connection table, one map per family so that IPv4 keys stay 12 bytes.
#[derive(Debug, Default)]
struct Tuples {
    v4: HashMap<(u32, u16, u32, u16), Handle>,
    v6: HashMap<(u128, u16, u128, u16), Handle>,
}

enum TupleKey {
    V4((u32, u16, u32, u16)),
    V6((u128, u16, u128, u16)),
}

impl TupleKey {
    /// The key of (local, remote); `None` when the families differ.
    #[inline]
    fn of(local: (IpAddr, u16), remote: (IpAddr, u16)) -> Option<TupleKey> {
        match (local.0, remote.0) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                Some(TupleKey::V4((l.to_bits(), local.1, r.to_bits(), remote.1)))
            }
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                Some(TupleKey::V6((l.to_bits(), local.1, r.to_bits(), remote.1)))
            }
            _ => None,
        }
    }
}

impl Tuples {
    #[inline]
    fn get(&self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> Option<Handle> {
        match TupleKey::of(local, remote)? {
            TupleKey::V4(k) => self.v4.get(&k).copied(),
            TupleKey::V6(k) => self.v6.get(&k).copied(),
        }
    }

    fn insert(&mut self, local: (IpAddr, u16), remote: (IpAddr, u16), h: Handle) {
        match TupleKey::of(local, remote) {
            Some(TupleKey::V4(k)) => {
                self.v4.insert(k, h);
            }
            Some(TupleKey::V6(k)) => {
                self.v6.insert(k, h);
            }
            None => {}
        }
    }

    fn remove(&mut self, local: (IpAddr, u16), remote: (IpAddr, u16)) {
        match TupleKey::of(local, remote) {
            Some(TupleKey::V4(k)) => {
                self.v4.remove(&k);
            }
            Some(TupleKey::V6(k)) => {
                self.v6.remove(&k);
            }
            None => {}
        }
    }
}

/// Public facts about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port (same family as `local`).
    pub remote: (IpAddr, u16),
    /// Current state.
    pub state: State,
    /// Bytes readable.
    pub readable: usize,
    /// Room in the send buffer.
    pub writable: usize,
}

/// The TCP engine of one stack.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    key: [u8; 16],
    conns: HashMap<Handle, Conn>,
    tuples: Tuples,
    listeners: Listeners,
    next_handle: Handle,
    out: Output,
    events: Vec<Event>,
    stats: Stats,
    dirty: Vec<Handle>,
    next_deadline: Option<u64>,
    /// The latest time seen (for calls that take none).
    now: u64,
    challenges: (u64, u32),
}

impl Engine {
    /// An engine; `key` comes from the random device and keys the RFC 6528 ISN hash.
    pub fn new(cfg: Config, key: [u8; 16]) -> Self {
        Engine {
            cfg,
            key,
            conns: HashMap::new(),
            tuples: Tuples::default(),
            listeners: HashMap::new(),
            next_handle: 1,
            out: Output::default(),
            events: Vec::new(),
            stats: Stats::default(),
            dirty: Vec::new(),
            next_deadline: None,
            now: 0,
            challenges: (0, 0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Listens on `port` (every local address of both families: dual-stack) with a SYN queue
    /// and accept backlog of `backlog`.
    pub fn listen(&mut self, port: u16, backlog: u32) -> Result<(), EngineError> {
        self.listen_family(port, backlog, ListenFamily::Dual)
    }

    /// Listens on `port` for connections of `family` only, or of both. A port holds one
    /// dual-stack listener, or one IPv4 and one IPv6 listener.
    pub fn listen_family(
        &mut self,
        port: u16,
        backlog: u32,
        family: ListenFamily,
    ) -> Result<(), EngineError> {
        self.settle_output();
        if port == 0 || backlog == 0 {
            return Err(EngineError::InvalidArgument);
        }
        let v4_taken = self.listeners.contains_key(&(port, false))
            || self.listeners.get(&(port, true)).is_some_and(|l| l.dual);
        let v6_taken = self.listeners.contains_key(&(port, true));
        let taken = match family {
            ListenFamily::V4 => v4_taken,
            ListenFamily::V6 => v6_taken,
            ListenFamily::Dual => v4_taken || v6_taken,
        };
        if taken {
            return Err(EngineError::AddressInUse);
        }
        let dual = family == ListenFamily::Dual;
        let key = (port, family != ListenFamily::V4);
        self.listeners.insert(key, Listener { backlog, half_open: 0, unaccepted: 0, dual });
        Ok(())
    }

    /// Stops listening on `port`, every family (established connections are unaffected).
    pub fn unlisten(&mut self, port: u16) {
        self.settle_output();
        self.listeners.remove(&(port, false));
        self.listeners.remove(&(port, true));
    }

    /// Stops the listener [`Engine::listen_family`] opened on `port` with `family`.
    pub fn unlisten_family(&mut self, port: u16, family: ListenFamily) {
        self.settle_output();
        match family {
            ListenFamily::V4 => self.listeners.remove(&(port, false)),
            ListenFamily::V6 | ListenFamily::Dual => self.listeners.remove(&(port, true)),
        };
    }

    /// Whether a connection uses this 4-tuple.
    pub fn in_use(&self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> bool {
        self.tuples.get(local, remote).is_some()
    }

    /// Whether [`Engine::connect`] from `local` to `remote` would fail for the addresses at
    /// `now`: they are held by a connection, other than one in TIME_WAIT that may hand them on
    /// ([`Conn::time_wait_reusable`]). An ephemeral port picker asks this, not
    /// [`Engine::in_use`]: a client that opens and closes connections to one server faster than
    /// its ephemeral ports leave TIME_WAIT (16,384 ports in 60 s: 273 a second) would otherwise
    /// run out of them.
    pub fn taken_for_connect(&self, local: (IpAddr, u16), remote: (IpAddr, u16), now: u64) -> bool {
        self.tuples.get(local, remote).is_some_and(|h| {
            !self.conns.get(&h).is_some_and(|c| c.time_wait_reusable(now, self.cfg.time_wait_ms))
        })
    }

    /// Opens a connection; the SYN goes out at the next [`Engine::poll`]. Both addresses must
    /// be of one family.
    pub fn connect(
        &mut self,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        now: u64,
    ) -> Result<Handle, EngineError> {
        self.settle_output();
        if local.1 == 0 || remote.1 == 0 || local.0.is_ipv4() != remote.0.is_ipv4() {
            return Err(EngineError::InvalidArgument);
        }
        if self.taken_for_connect(local, remote, now) {
            return Err(EngineError::AddressInUse);
        }
        // A TIME_WAIT connection of ours on these addresses hands them on (counted as recycled).
        let mut successor_iss = None;
        if let Some(old) = self.tuples.get(local, remote) {
            successor_iss = self.conns.get_mut(&old).map(Conn::hand_over);
            self.stats.time_wait_recycled += 1;
            self.reap(old);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(EngineError::TooManyConnections);
        }
        let iss = successor_iss.unwrap_or_else(|| initial_sequence(&self.key, local, remote, now));
        let h = self.alloc_handle();
        let mut conn = Conn::new(h, local, remote, iss, None, &self.cfg);
        conn.set_timestamp_offset(self.ts_offset(local.0, remote.0));
        self.conns.insert(h, conn);
        self.tuples.insert(local, remote, h);
        self.mark(h);
        Ok(h)
    }

    fn alloc_handle(&mut self) -> Handle {
        loop {
            let h = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1).max(1);
            if !self.conns.contains_key(&h) {
                return h;
            }
        }
    }

    fn mark(&mut self, h: Handle) {
        self.dirty.push(h);
    }

    /// Hands one received segment in (`src`, `dst`: the addresses of its IPv4 or IPv6 packet;
    /// the checksum is verified over that family's pseudo-header).
    pub fn on_segment(&mut self, src: IpAddr, dst: IpAddr, segment: &[u8], now: u64) {
        self.on_segment_verified(src, dst, segment, now, false);
    }

    /// As [`Engine::on_segment`]; `checksum_verified` when the device vouches for the checksum
    /// (virtio's `DATA_VALID`, or `NEEDS_CSUM` from a local sender), so it is not summed again.
    pub fn on_segment_verified(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        segment: &[u8],
        now: u64,
        checksum_verified: bool,
    ) {
        self.settle_output();
        self.now = self.now.max(now);
        if src.is_ipv4() != dst.is_ipv4() {
            self.stats.malformed += 1;
            return;
        }
        let addresses = (!checksum_verified).then_some((src, dst));
        let (h, offset) = match TcpHeader::parse(segment, addresses) {
            Ok(parsed) => parsed,
            Err(crate::wire::WireError::BadChecksum) => {
                self.stats.bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.stats.segments_in += 1;
        let payload = &segment[offset..];
        let local = (dst, h.dst_port);
        let remote = (src, h.src_port);
        // A SYN for a connection in TIME_WAIT may open a new one in its place (RFC 6191).
        let reuse_iss =
            self.tuples.get(local, remote).and_then(|handle| self.recycle_time_wait(handle, &h, now));
        if let Some(handle) = self.tuples.get(local, remote) {
            let Engine { cfg, out, events, stats, conns, challenges, .. } = self;
            let Some(conn) = conns.get_mut(&handle) else { return };
            let was_half_open = conn.state == State::SynReceived && conn.listener.is_some() && !conn.owned;
            let mut ctx = Ctx { now, cfg, out, events, stats, challenges, defer_payloads: false };
            conn.on_segment(&mut ctx, &h, payload);
            if was_half_open && conn.state != State::SynReceived {
                if let Some(l) = find_listener(&mut self.listeners, h.dst_port, dst.is_ipv6()) {
                    l.half_open = l.half_open.saturating_sub(1);
                    if conn.owned {
                        l.unaccepted += 1;
                    }
                }
            }
            self.mark(handle);
            return;
        }
        if h.has(RST) {
            return;
        }
        if h.has(SYN) && !h.has(ACK) {
            if let Some(l) = find_listener(&mut self.listeners, h.dst_port, dst.is_ipv6()) {
                if l.unaccepted >= l.backlog {
                    self.stats.backlog_drops += 1;
                    return;
                }
                if l.half_open >= l.backlog {
                    if self.cfg.syn_cookies {
                        self.send_cookie(src, dst, &h, now);
                    } else {
                        self.stats.syn_queue_drops += 1;
                    }
                    return;
                }
                if self.conns.len() >= self.cfg.max_connections {
                    self.stats.syn_queue_drops += 1;
                    return;
                }
                l.half_open += 1;
                let iss = reuse_iss.unwrap_or_else(|| initial_sequence(&self.key, local, remote, now));
                let handle = self.alloc_handle();
                let mut conn = Conn::new(handle, local, remote, iss, Some(h.dst_port), &self.cfg);
                conn.set_timestamp_offset(self.ts_offset(local.0, remote.0));
                conn.accept_syn(&h, &self.cfg, now);
                self.conns.insert(handle, conn);
                self.tuples.insert(local, remote, handle);
                self.mark(handle);
                return;
            }
            self.stats.closed_port += 1;
        } else if h.has(ACK)
            && !h.has(SYN)
            && self.cfg.syn_cookies
            && find_listener(&mut self.listeners, h.dst_port, dst.is_ipv6()).is_some()
            && self.accept_cookie(src, dst, &h, payload, now)
        {
            return;
        }
        self.reset_for(src, dst, &h, payload.len());
    }

    /// The SYN cookie for a 4-tuple (RFC 4987 §3.6): 5 bits of a 64-second counter, 3 bits of
    /// MSS index, 24 bits of SipHash over the tuple (full addresses of either family), the
    /// counter and the MSS index.
    fn cookie(&self, local: (IpAddr, u16), remote: (IpAddr, u16), period: u32, mss_index: u32) -> u32 {
        let mut data = [0u8; TUPLE_BYTES_MAX];
        let n = tuple_bytes(local, remote, &mut data);
        data[n..n + 4].copy_from_slice(&period.to_be_bytes());
        data[n + 4] = mss_index as u8;
        // A key distinct from the ISN key: the ISN key with its bits flipped.
        let key = self.key.map(|b| !b);
        let mac = siphash24(&key, &data[..n + 5]) as u32 & 0x00ff_ffff;
        ((period & 0x1f) << 27) | ((mss_index & 7) << 24) | mac
    }

    /// The timestamp clock offset of connections between two addresses: secret and random-looking
    /// (RFC 7323 §5.4, the uptime stays hidden), but one per address pair as Linux does, so that
    /// successive connections to a peer stamp increasing TSvals (RFC 6191 TIME_WAIT reuse, the
    /// peer's PAWS) and a SYN cookie's SYN-ACK stamps with its future connection's clock.
    fn ts_offset(&self, local: IpAddr, remote: IpAddr) -> u32 {
        let mut data = [0u8; TUPLE_BYTES_MAX];
        let n = tuple_bytes((local, 0), (remote, 0), &mut data);
        let key = self.key.map(|b| b.rotate_left(3) ^ 0x5c);
        siphash24(&key, &data[..n]) as u32
    }

    /// Closes the TIME_WAIT connection `handle` when SYN `h` may open a new incarnation on a
    /// listening port (RFC 6191); returns the ISS for it.
    fn recycle_time_wait(&mut self, handle: Handle, h: &TcpHeader, now: u64) -> Option<u32> {
        let v6 = self.conns.get(&handle)?.local.0.is_ipv6();
        find_listener(&mut self.listeners, h.dst_port, v6)?;
        let iss = self.conns.get_mut(&handle)?.time_wait_successor(h, now)?;
        self.stats.time_wait_recycled += 1;
        self.reap(handle);
        Some(iss)
    }

    fn send_cookie(&mut self, src: IpAddr, dst: IpAddr, h: &TcpHeader, now: u64) {
        let peer_mss = usize::from(h.options.mss.unwrap_or(536));
        let mss_index = COOKIE_MSS.iter().rposition(|&m| m <= peer_mss).unwrap_or(0);
        let period = (now / COOKIE_PERIOD_MS) as u32;
        let iss = self.cookie((dst, h.dst_port), (src, h.src_port), period, mss_index as u32);
        // Window scale and SACK-permitted ride in the TSval when the peer uses timestamps
        // (crate::syncookie); without timestamps the connection goes without all three.
        let timestamps = match h.options.timestamps {
            Some((val, _)) if self.cfg.timestamps => {
                let options = CookieOptions {
                    window_scale: h.options.window_scale,
                    sack_permitted: h.options.sack_permitted,
                };
                let clock = (now as u32).wrapping_add(self.ts_offset(dst, src));
                Some((encode_tsval(clock, options), val))
            }
            _ => None,
        };
        let with_options = timestamps.is_some();
        let header = TcpHeader {
            src_port: h.dst_port,
            dst_port: h.src_port,
            seq: iss,
            ack: h.seq.wrapping_add(1),
            flags: SYN | ACK,
            window: self.cfg.recv_buffer.min(65_535) as u16,
            urgent: 0,
            options: TcpOptions {
                mss: Some(self.cfg.mtu.saturating_sub(ip_tcp_overhead(dst)).clamp(64, 65_535) as u16),
                window_scale: (with_options && h.options.window_scale.is_some())
                    .then(|| window_shift(self.cfg.recv_buffer)),
                sack_permitted: with_options && h.options.sack_permitted,
                timestamps,
                ..TcpOptions::default()
            },
        };
        self.out.push(dst, src, &header, (&[], &[]));
        self.stats.segments_out += 1;
        self.stats.syn_cookies_sent += 1;
    }

    /// Completes a passive open from the ACK of a cookie SYN-ACK; false when it is not one.
    fn accept_cookie(&mut self, src: IpAddr, dst: IpAddr, h: &TcpHeader, payload: &[u8], now: u64) -> bool {
        let cookie = h.ack.wrapping_sub(1);
        let period = cookie >> 27;
        let mss_index = (cookie >> 24) & 7;
        let current = (now / COOKIE_PERIOD_MS) as u32;
        // Valid for the current and the previous period (64 to 128 s).
        let age = current.wrapping_sub(period) & 0x1f;
        let local = (dst, h.dst_port);
        let remote = (src, h.src_port);
        if age > 1 || self.cookie(local, remote, current.wrapping_sub(age), mss_index) != cookie {
            self.stats.syn_cookies_invalid += 1;
            return false;
        }
        // The options our SYN-ACK's TSval carried, echoed in TSecr (0: the SYN-ACK had no
        // timestamps to echo, so neither does the connection).
        let options = match h.options.timestamps {
            Some((_, ecr)) if self.cfg.timestamps && ecr != 0 => match decode_tsecr(ecr) {
                Some(o) => Some(o),
                None => {
                    self.stats.syn_cookies_invalid += 1;
                    return false;
                }
            },
            _ => None,
        };
        let Some(l) = find_listener(&mut self.listeners, h.dst_port, dst.is_ipv6()) else { return false };
        if l.unaccepted >= l.backlog || self.conns.len() >= self.cfg.max_connections {
            self.stats.backlog_drops += 1;
            return true;
        }
        l.unaccepted += 1;
        self.stats.syn_cookies_accepted += 1;
        let handle = self.alloc_handle();
        let mut conn = Conn::new(handle, local, remote, cookie, Some(h.dst_port), &self.cfg);
        conn.set_timestamp_offset(self.ts_offset(local.0, remote.0));
        conn.accept_cookie(h, COOKIE_MSS[mss_index as usize], options, &self.cfg, now);
        self.stats.passive_opens += 1;
        self.events.push(Event { handle, kind: EventKind::Accepted(h.dst_port) });
        let Engine { cfg, out, events, stats, challenges, .. } = self;
        let mut ctx = Ctx { now, cfg, out, events, stats, challenges, defer_payloads: false };
        conn.on_segment(&mut ctx, h, payload);
        self.conns.insert(handle, conn);
        self.tuples.insert(local, remote, handle);
        self.mark(handle);
        true
    }

    /// RST for a segment that matches no connection (RFC 9293 §3.10.7.1).
    fn reset_for(&mut self, src: IpAddr, dst: IpAddr, h: &TcpHeader, payload_len: usize) {
        let (seq, ack, flags) = if h.has(ACK) {
            (h.ack, 0, RST)
        } else {
            let len = payload_len as u32 + u32::from(h.has(SYN)) + u32::from(h.has(FIN));
            (0, h.seq.wrapping_add(len), RST | ACK)
        };
        let header = TcpHeader {
            src_port: h.dst_port,
            dst_port: h.src_port,
            seq,
            ack,
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
        };
        self.out.push(dst, src, &header, (&[], &[]));
        self.stats.segments_out += 1;
        self.stats.resets_sent += 1;
    }

    /// Runs due timers and sends what every touched connection may send. Call after handing
    /// segments in, after API calls, and at [`Engine::next_deadline`].
    pub fn poll(&mut self, now: u64) {
        self.settle_output();
        self.now = self.now.max(now);
        let Engine { cfg, out, events, stats, conns, dirty, challenges, .. } = self;
        if self.next_deadline.is_some_and(|d| d <= now) {
            let mut next: Option<u64> = None;
            for (h, conn) in conns.iter_mut() {
                if conn.deadline().is_some_and(|d| d <= now) {
                    let mut ctx = Ctx { now, cfg, out, events, stats, challenges, defer_payloads: true };
                    conn.on_timer(&mut ctx);
                    dirty.push(*h);
                }
                if let Some(d) = conn.deadline() {
                    next = Some(next.map_or(d, |n: u64| n.min(d)));
                }
            }
            self.next_deadline = next;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &h in &dirty {
            let Engine { cfg, out, events, stats, conns, challenges, .. } = self;
            let Some(conn) = conns.get_mut(&h) else { continue };
            let mut ctx = Ctx { now, cfg, out, events, stats, challenges, defer_payloads: true };
            conn.output(&mut ctx);
            if let Some(d) = conn.deadline() {
                self.next_deadline = Some(self.next_deadline.map_or(d, |n| n.min(d)));
            }
            self.reap(h);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Unlinks a closed connection's 4-tuple, and drops it when nobody holds its handle.
    fn reap(&mut self, h: Handle) {
        let Some(conn) = self.conns.get(&h) else { return };
        if conn.state != State::Closed {
            return;
        }
        if self.tuples.get(conn.local, conn.remote) == Some(h) {
            self.tuples.remove(conn.local, conn.remote);
            if let Some(port) = conn.listener {
                if let Some(l) = find_listener(&mut self.listeners, port, conn.local.0.is_ipv6()) {
                    if !conn.owned {
                        l.half_open = l.half_open.saturating_sub(1);
                    }
                }
            }
        }
        if !conn.owned || conn.detached {
            // Nothing may refer to its send buffer once it is gone.
            self.settle_output();
            self.conns.remove(&h);
        }
    }

    /// An ICMP or ICMPv6 error quoting a segment we sent from `local` to `remote`: `quoted` is
    /// the start of that TCP header (at least 8 bytes). `hard` for port and protocol unreachable
    /// (ECONNREFUSED while connecting), `mtu` for fragmentation needed / Packet Too Big.
    pub fn on_icmp_error(
        &mut self,
        local: IpAddr,
        remote: IpAddr,
        quoted: &[u8],
        hard: bool,
        mtu: Option<usize>,
        now: u64,
    ) {
        self.settle_output();
        if quoted.len() < 8 {
            self.stats.icmp_ignored += 1;
            return;
        }
        let local_port = u16::from_be_bytes([quoted[0], quoted[1]]);
        let remote_port = u16::from_be_bytes([quoted[2], quoted[3]]);
        let seq_no = u32::from_be_bytes([quoted[4], quoted[5], quoted[6], quoted[7]]);
        let Some(handle) = self.tuples.get((local, local_port), (remote, remote_port)) else {
            self.stats.icmp_ignored += 1;
            return;
        };
        let Engine { cfg, out, events, stats, conns, challenges, .. } = self;
        let Some(conn) = conns.get_mut(&handle) else { return };
        let mut ctx = Ctx { now, cfg, out, events, stats, challenges, defer_payloads: false };
        if conn.on_icmp(&mut ctx, hard, mtu, seq_no) {
            self.stats.icmp_errors += 1;
            self.mark(handle);
        } else {
            self.stats.icmp_ignored += 1;
        }
    }

    /// When [`Engine::poll`] must run next (a lower bound), if any timer is armed.
    pub fn next_deadline(&self) -> Option<u64> {
        self.next_deadline
    }

    /// Whether calls since the last poll left work for [`Engine::poll`].
    pub fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The segments produced so far (until [`Engine::clear_output`] or [`Engine::take_output`]
    /// took them). A segment's bytes may be partly deferred ([`OutSegment::payload`]): read them
    /// with [`Engine::segment_bytes`] or [`Engine::write_segment`].
    pub fn output(&self) -> &Output {
        &self.out
    }

    /// Forgets the produced segments.
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Marks the next `n` segments of [`Output::pending`] taken (transmitted or dropped); once
    /// all are, the output is cleared.
    pub fn take_output(&mut self, n: usize) {
        self.out.take(n);
    }

    /// The bytes of produced segment `seg`: its stored header (and payload, when not deferred)
    /// and its deferred payload read in the send buffer. `None` for a dropped segment.
    pub fn segment_bytes<'a>(&'a self, seg: &OutSegment) -> Option<SegmentBytes<'a>> {
        if seg.len == 0 {
            return None;
        }
        let stored = self.out.stored(seg);
        let Some(r) = seg.payload else {
            return Some(SegmentBytes { stored, payload: (&[], &[]), checksummed: true });
        };
        let conn = self.conns.get(&r.handle)?;
        let payload = conn.sent_bytes(r.position, r.len as usize)?;
        Some(SegmentBytes { stored, payload, checksummed: false })
    }

    /// Appends produced segment `seg` to `out`, whole and with its checksum; false (nothing
    /// appended) for a dropped segment.
    pub fn write_segment(&self, seg: &OutSegment, out: &mut Vec<u8>) -> bool {
        let Some(b) = self.segment_bytes(seg) else { return false };
        let at = out.len();
        out.extend_from_slice(b.stored);
        out.extend_from_slice(b.payload.0);
        out.extend_from_slice(b.payload.1);
        if !b.checksummed {
            finish_checksum(&mut out[at..], seg.src, seg.dst);
        }
        true
    }

    /// Materialises every deferred payload not yet taken (see [`Output`]): called before
    /// anything that may release send-buffer bytes or drop a connection.
    fn settle_output(&mut self) {
        if !self.out.has_deferred() {
            return;
        }
        let Engine { out, conns, .. } = self;
        for i in out.segments.len() - out.pending().len()..out.segments.len() {
            let Some(r) = out.segments[i].payload else { continue };
            let payload = conns.get(&r.handle).and_then(|c| c.sent_bytes(r.position, r.len as usize));
            debug_assert!(payload.is_some(), "deferred payload of connection {} is gone", r.handle);
            out.materialise(i, payload);
        }
    }

    /// Takes the events produced so far.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// The application took an accepted connection (frees its accept-backlog slot).
    pub fn accept(&mut self, h: Handle) -> Result<(), EngineError> {
        self.settle_output();
        let conn = self.conns.get(&h).ok_or(EngineError::NotFound)?;
        let v6 = conn.local.0.is_ipv6();
        if let Some(l) = conn.listener.and_then(|p| find_listener(&mut self.listeners, p, v6)) {
            l.unaccepted = l.unaccepted.saturating_sub(1);
        }
        Ok(())
    }

    fn conn_mut(&mut self, h: Handle) -> Result<&mut Conn, EngineError> {
        self.conns.get_mut(&h).ok_or(EngineError::NotFound)
    }

    /// Queues data; returns how much fitted the send buffer (a [`EventKind::Writable`] event
    /// follows when room frees up after a short write).
    pub fn send(&mut self, h: Handle, data: &[u8]) -> Result<usize, EngineError> {
        self.settle_output();
        let conn = self.conn_mut(h)?;
        if !conn.can_send() {
            return Err(match conn.state {
                State::SynSent | State::SynReceived => EngineError::NotConnected,
                State::Closed => EngineError::NotConnected,
                _ => EngineError::BrokenPipe,
            });
        }
        let n = conn.send(data);
        if n > 0 {
            self.mark(h);
        }
        Ok(n)
    }

    /// Reads buffered data into `out`; returns how much (0 with nothing to read).
    pub fn recv(&mut self, h: Handle, out: &mut [u8]) -> Result<usize, EngineError> {
        self.settle_output();
        let conn = self.conn_mut(h)?;
        let n = conn.recv(out);
        self.mark(h);
        Ok(n)
    }

    /// Half-close: FIN after the buffered data.
    pub fn shutdown(&mut self, h: Handle) -> Result<(), EngineError> {
        self.settle_output();
        self.conn_mut(h)?.shutdown();
        self.mark(h);
        Ok(())
    }

    /// Graceful close of the handle: FIN after buffered data; the engine finishes the close on
    /// its own and the handle becomes invalid. With unread data it aborts instead (RST).
    pub fn close(&mut self, h: Handle) -> Result<(), EngineError> {
        self.settle_output();
        let now = self.now;
        let Engine { conns, cfg, .. } = self;
        let conn = conns.get_mut(&h).ok_or(EngineError::NotFound)?;
        if conn.readable() > 0 {
            return self.abort(h);
        }
        conn.shutdown();
        conn.detached = true;
        conn.orphan_timeout(now, cfg);
        self.mark(h);
        Ok(())
    }

    /// Sends RST and forgets the connection.
    pub fn abort(&mut self, h: Handle) -> Result<(), EngineError> {
        self.settle_output();
        let Engine { cfg, out, events, stats, conns, challenges, .. } = self;
        let conn = conns.get_mut(&h).ok_or(EngineError::NotFound)?;
        let mut ctx = Ctx { now: self.now, cfg, out, events, stats, challenges, defer_payloads: false };
        conn.abort(&mut ctx);
        conn.detached = true;
        self.reap(h);
        Ok(())
    }

    /// Drops the handle of a connection that already closed or failed.
    pub fn release(&mut self, h: Handle) {
        self.settle_output();
        if let Some(conn) = self.conns.get_mut(&h) {
            conn.detached = true;
            if conn.state == State::Closed {
                self.reap(h);
            }
        }
    }

    /// Nagle off (`true`) or on.
    pub fn set_nodelay(&mut self, h: Handle, nodelay: bool) -> Result<(), EngineError> {
        self.settle_output();
        self.conn_mut(h)?.set_nodelay(nodelay);
        self.mark(h);
        Ok(())
    }

    /// Keep-alive on (`Some`) or off.
    pub fn set_keepalive(
        &mut self,
        h: Handle,
        keepalive: Option<KeepAlive>,
        now: u64,
    ) -> Result<(), EngineError> {
        self.settle_output();
        self.conn_mut(h)?.set_keepalive(keepalive, now);
        self.mark(h);
        Ok(())
    }

    /// Facts about a connection.
    pub fn info(&self, h: Handle) -> Option<ConnInfo> {
        self.conns.get(&h).map(|c| ConnInfo {
            local: c.local,
            remote: c.remote,
            state: c.state,
            readable: c.readable(),
            writable: if c.can_send() { c.writable() } else { 0 },
        })
    }

    /// A connection's congestion state and loss-recovery counters.
    pub fn conn_stats(&self, h: Handle) -> Option<crate::conn::ConnStats> {
        self.conns.get(&h).map(Conn::stats)
    }

    /// Changes a connection's congestion control algorithm (cwnd and ssthresh carry over).
    pub fn set_congestion_control(
        &mut self,
        h: Handle,
        algorithm: crate::cc::Algorithm,
    ) -> Result<(), EngineError> {
        self.settle_output();
        self.conn_mut(h)?.set_congestion_control(algorithm);
        Ok(())
    }

    /// Ranges held on a connection's SACK scoreboard (RFC 6675), at most
    /// [`crate::conn::MAX_SCOREBOARD`].
    pub fn scoreboard_len(&self, h: Handle) -> Option<usize> {
        self.conns.get(&h).map(Conn::scoreboard_len)
    }

    /// A one-line dump of a connection's sequence variables and timers (for debugging).
    pub fn debug_summary(&self, h: Handle) -> Option<String> {
        self.conns.get(&h).map(Conn::summary)
    }

    /// Counters, with the current occupancy.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.connections = self.conns.len() as u64;
        s.time_wait = self.conns.values().filter(|c| c.state == State::TimeWait).count() as u64;
        s.half_open = self.listeners.values().map(|l| u64::from(l.half_open)).sum();
        s
    }
}

impl Engine {
    /// Checks the engine's invariants (for fuzzing and tests): every connection's
    /// ([`Conn::check_invariants`]), the connection table within `max_connections` and agreeing
    /// with the 4-tuple index, each listener's SYN queue within its backlog. Returns the first
    /// violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.conns.len() > self.cfg.max_connections {
            return Err(format!("{} connections, limit {}", self.conns.len(), self.cfg.max_connections));
        }
        for (h, conn) in &self.conns {
            conn.check_invariants().map_err(|e| format!("connection {h}: {e}"))?;
            if conn.state != State::Closed && self.tuples.get(conn.local, conn.remote) != Some(*h) {
                return Err(format!("connection {h} is not indexed by its 4-tuple"));
            }
        }
        if self.tuples.v4.len() + self.tuples.v6.len() > self.conns.len() {
            return Err("the 4-tuple index holds connections that are gone".into());
        }
        for (&(port, _), l) in &self.listeners {
            if l.half_open > l.backlog {
                return Err(format!("port {port}: {} half-open, backlog {}", l.half_open, l.backlog));
            }
        }
        Ok(())
    }
}
