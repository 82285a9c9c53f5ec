//! Reassembly cache bindings (IPv4 and IPv6).

use crate::errors::failure;
use morgana_net::reassembly::ipv6::{Ipv6Outcome, Ipv6Reassembler, MAX_QUOTE};
use morgana_net::reassembly::{Outcome, Reassembler, ReassemblyConfig};
use napi_derive::napi;

// napi-derive reads a literal `&mut T` parameter as a class reference; through an alias the
// typed-array conversion applies, borrowing the caller's bytes without a copy.
type BytesMut<'a> = &'a mut [u8];
type U32sMut<'a> = &'a mut [u32];

/// What `push` returns when it has no datagram to hand back: not a fragment (the caller uses
/// its packet as it is). Values from 20 up are the length of a completed datagram.
const NOT_FRAGMENT: u32 = 0;
/// Held, waiting for more fragments (or an ignored duplicate).
const PENDING: u32 = 1;
/// Dropped; the stats say why.
const DROPPED: u32 = 2;
/// `push_batch`: dropped as not valid IPv4; the result's second entry is the error's index in
/// the error table (the negation of the failure `ipv4_validate` returns, minus one).
const MALFORMED: u32 = 3;

/// `push_batch`: the datagram a packet completed did not fit in `out`; it is held for `take`.
const NOT_WRITTEN: u32 = u32::MAX;
/// `push_batch` places completed datagrams in `out` at multiples of this.
const OUT_ALIGN: usize = 8;

/// What `NativeIpv6Reassembler.push` returns for an atomic fragment (used as it is).
const ATOMIC: u32 = 3;
/// Dropped, with an ICMPv6 Parameter Problem due (queued as a report unless not allowed).
const PARAMETER_PROBLEM: u32 = 4;

/// A time from JS (ms, a double) as the cache's clock reads it; negative is 0.
fn millis(ms: f64) -> u64 {
    ms.max(0.0) as u64
}

fn config(max_bytes: u32, max_fragments: u32, timeout_ms: f64) -> ReassemblyConfig {
    ReassemblyConfig {
        max_bytes: max_bytes as usize,
        max_fragments: max_fragments as usize,
        timeout_ms: millis(timeout_ms),
    }
}

/// What one packet of a batch came to: a completed packet of this length (held for `take`), or
/// a status and the value that goes with it.
enum Step {
    Ready(usize),
    Status(u32, u32),
}

/// A cache whose completed packet a batch writes out.
trait TakeReady {
    fn take_ready(&mut self, out: &mut [u8]) -> Option<usize>;
}

impl TakeReady for Reassembler {
    fn take_ready(&mut self, out: &mut [u8]) -> Option<usize> {
        Reassembler::take_ready(self, out)
    }
}

impl TakeReady for Ipv6Reassembler {
    fn take_ready(&mut self, out: &mut [u8]) -> Option<usize> {
        Ipv6Reassembler::take_ready(self, out)
    }
}

/// The arguments of a `push_batch` call (the same for IPv4 and IPv6).
struct Batch<'a> {
    data: &'a [u8],
    spans: &'a [u32],
    first: u32,
    end: u32,
    out: &'a mut [u8],
    out_at: u32,
    results: &'a mut [u32],
}

impl Batch<'_> {
    /// Checks every span, then pushes the packets one by one with `push`, writing completed
    /// packets into `out` (see `NativeReassembler::push_batch`).
    fn run<C: TakeReady>(
        self,
        cache: &mut C,
        mut push: impl FnMut(&mut C, &[u8]) -> Step,
    ) -> napi::Result<u32> {
        let Batch { data, spans, first, end, out, out_at, results } = self;
        let (first, end) = (first as usize, end as usize);
        if first > end || spans.len() < 2 * end || results.len() < 2 * end {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                format!("packets {first}..{end} need {} span and result entries", 2 * end),
            ));
        }
        for i in first..end {
            let (at, len) = (spans[2 * i] as usize, spans[2 * i + 1] as usize);
            if at.checked_add(len).is_none_or(|stop| stop > data.len()) {
                return Err(napi::Error::new(
                    napi::Status::InvalidArg,
                    format!("packet {i} ({len} bytes at {at}) lies outside the {}-byte data", data.len()),
                ));
            }
        }
        let mut cursor = (out_at as usize).next_multiple_of(OUT_ALIGN);
        for i in first..end {
            let at = spans[2 * i] as usize;
            let packet = &data[at..at + spans[2 * i + 1] as usize];
            let (status, value) = match push(cache, packet) {
                Step::Ready(len) => match out.get_mut(cursor..).and_then(|room| cache.take_ready(room)) {
                    Some(written) => {
                        let place = cursor;
                        cursor = (cursor + written).next_multiple_of(OUT_ALIGN);
                        (len as u32, place as u32)
                    }
                    None => {
                        results[2 * i] = len as u32;
                        results[2 * i + 1] = NOT_WRITTEN;
                        return Ok(i as u32 + 1);
                    }
                },
                Step::Status(status, value) => (status, value),
            };
            results[2 * i] = status;
            results[2 * i + 1] = value;
        }
        Ok(end as u32)
    }
}

/// Counters of a reassembly cache (numbers, exact below 2^53).
#[napi(object)]
pub struct ReassemblyStats {
    pub fragments: f64,
    pub reassembled: f64,
    pub duplicates: f64,
    pub dropped_overlap: f64,
    pub dropped_timeout: f64,
    pub dropped_memory: f64,
    pub dropped_too_many_fragments: f64,
    pub dropped_too_big: f64,
    pub dropped_bad_length: f64,
    pub dropped_inconsistent: f64,
    pub dropped_malformed: f64,
    /// Fragments of a datagram already dropped (too many fragments), until its timeout.
    pub dropped_discarded: f64,
    pub buffered_bytes: f64,
    pub pending_datagrams: f64,
}

/// The bounded IPv4 reassembly cache.
#[napi]
pub struct NativeReassembler {
    inner: Reassembler,
}

#[napi]
impl NativeReassembler {
    /// A cache with the given limits.
    #[napi(constructor)]
    pub fn new(max_bytes: u32, max_fragments: u32, timeout_ms: f64) -> Self {
        NativeReassembler { inner: Reassembler::new(config(max_bytes, max_fragments, timeout_ms)) }
    }

    /// Takes a packet at `now_ms`: 0 (not a fragment), 1 (held), 2 (dropped), or the length
    /// (at least 20) of the datagram it completed, which `take` then writes into a buffer of
    /// the caller's. (A Buffer created here would cost more than one allocated in JS, and its
    /// memory would be freed only once napi finalizers run from the event loop.)
    #[napi]
    pub fn push(&mut self, packet: &[u8], now_ms: f64) -> u32 {
        match self.inner.push_ready(packet, millis(now_ms)) {
            Outcome::Ready(len) => len as u32,
            Outcome::NotFragment => NOT_FRAGMENT,
            Outcome::Pending => PENDING,
            Outcome::Dropped | Outcome::Malformed(_) => DROPPED,
        }
    }

    /// Writes the datagram completed by the last `push` into `out`; returns its length, or 0 when
    /// none is held or `out` is too short.
    #[napi]
    pub fn take(&mut self, #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>) -> u32 {
        self.inner.take_ready(out).map_or(0, |len| len as u32)
    }

    /// `push` for many packets in one call: packet `i` is `data[spans[2i] .. spans[2i] +
    /// spans[2i+1]]`, for `i` from `first` to `end - 1`. For each, `results[2i]` gets what `push`
    /// returns, except that a packet that is not valid IPv4 gets 3 with its error's index in the
    /// error table at `results[2i+1]`; a completed datagram (from 20 up) is written into `out` at
    /// `results[2i+1]` (from `out_at` on, at multiples of 8). When one does not fit, `results[2i+1]`
    /// is `0xffffffff`, the datagram is held for `take`, and the call stops there: it returns the
    /// index after the last packet it took (`end` when it took them all). Throws, before taking
    /// any packet, when a span lies outside `data` or the arrays are too short.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn push_batch(
        &mut self,
        data: &[u8],
        #[napi(ts_arg_type = "Uint32Array")] spans: U32sMut<'_>,
        first: u32,
        end: u32,
        now_ms: f64,
        #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
        out_at: u32,
        #[napi(ts_arg_type = "Uint32Array")] results: U32sMut<'_>,
    ) -> napi::Result<u32> {
        let now = millis(now_ms);
        let batch = Batch { data, spans, first, end, out, out_at, results };
        batch.run(&mut self.inner, |inner, packet| match inner.push_ready(packet, now) {
            Outcome::Ready(len) => Step::Ready(len),
            Outcome::NotFragment => Step::Status(NOT_FRAGMENT, 0),
            Outcome::Pending => Step::Status(PENDING, 0),
            Outcome::Dropped => Step::Status(DROPPED, 0),
            Outcome::Malformed(error) => Step::Status(MALFORMED, (-failure(error.code()) - 1) as u32),
        })
    }

    /// Drops datagrams past their timeout; returns how many.
    #[napi]
    pub fn expire(&mut self, now_ms: f64) -> u32 {
        self.inner.expire(millis(now_ms)) as u32
    }

    /// Counters and occupancy.
    #[napi]
    pub fn stats(&self) -> ReassemblyStats {
        let s = self.inner.stats();
        ReassemblyStats {
            fragments: s.fragments as f64,
            reassembled: s.reassembled as f64,
            duplicates: s.duplicates as f64,
            dropped_overlap: s.dropped_overlap as f64,
            dropped_timeout: s.dropped_timeout as f64,
            dropped_memory: s.dropped_memory as f64,
            dropped_too_many_fragments: s.dropped_too_many_fragments as f64,
            dropped_too_big: s.dropped_too_big as f64,
            dropped_bad_length: s.dropped_bad_length as f64,
            dropped_inconsistent: s.dropped_inconsistent as f64,
            dropped_malformed: s.dropped_malformed as f64,
            dropped_discarded: s.dropped_discarded as f64,
            buffered_bytes: s.buffered_bytes as f64,
            pending_datagrams: s.pending_datagrams as f64,
        }
    }
}

/// Counters of an IPv6 reassembly cache: those of IPv4 plus the IPv6 rules' own.
#[napi(object)]
pub struct Ipv6ReassemblyStats {
    pub fragments: f64,
    pub reassembled: f64,
    pub duplicates: f64,
    pub dropped_overlap: f64,
    pub dropped_timeout: f64,
    pub dropped_memory: f64,
    pub dropped_too_many_fragments: f64,
    pub dropped_too_big: f64,
    pub dropped_bad_length: f64,
    pub dropped_inconsistent: f64,
    pub dropped_malformed: f64,
    pub buffered_bytes: f64,
    pub pending_datagrams: f64,
    pub atomic: f64,
    pub dropped_discarded: f64,
    pub dropped_incomplete_chain: f64,
    pub reports: f64,
    pub dropped_reports: f64,
}

/// Longest packet quote of an ICMPv6 report (`take_report`'s `out` must hold it).
#[napi]
pub const IPV6_REPORT_MAX_QUOTE: u32 = MAX_QUOTE as u32;

/// The bounded IPv6 reassembly cache with its queue of ICMPv6 error reports.
#[napi]
pub struct NativeIpv6Reassembler {
    inner: Ipv6Reassembler,
}

#[napi]
impl NativeIpv6Reassembler {
    /// A cache with the given limits, queueing at most `max_reports` reports.
    #[napi(constructor)]
    pub fn new(max_bytes: u32, max_fragments: u32, timeout_ms: f64, max_reports: u32) -> Self {
        let config = config(max_bytes, max_fragments, timeout_ms);
        NativeIpv6Reassembler { inner: Ipv6Reassembler::with_max_reports(config, max_reports as usize) }
    }

    /// Takes a packet at `now_ms`: 0 (not a fragment), 1 (held), 2 (dropped), 3 (atomic
    /// fragment), 4 (dropped, Parameter Problem due), or the length (at least 40) of the packet
    /// it completed, which `take` then writes into a buffer of the caller's.
    #[napi]
    pub fn push(&mut self, packet: &[u8], now_ms: f64) -> u32 {
        match self.inner.push_ready(packet, millis(now_ms)) {
            Ipv6Outcome::Ready(len) => len as u32,
            Ipv6Outcome::NotFragment => NOT_FRAGMENT,
            Ipv6Outcome::Pending => PENDING,
            Ipv6Outcome::Dropped => DROPPED,
            Ipv6Outcome::Atomic => ATOMIC,
            Ipv6Outcome::ParameterProblem { .. } => PARAMETER_PROBLEM,
        }
    }

    /// Writes the packet completed by the last `push` into `out`; returns its length, or 0 when
    /// none is held or `out` is too short.
    #[napi]
    pub fn take(&mut self, #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>) -> u32 {
        self.inner.take_ready(out).map_or(0, |len| len as u32)
    }

    /// `push` for many packets in one call, with the arguments and results of
    /// `NativeReassembler.pushBatch`; the statuses are those of `push` (completed packets from 40
    /// up, written into `out`). Reports queue as with `push`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn push_batch(
        &mut self,
        data: &[u8],
        #[napi(ts_arg_type = "Uint32Array")] spans: U32sMut<'_>,
        first: u32,
        end: u32,
        now_ms: f64,
        #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
        out_at: u32,
        #[napi(ts_arg_type = "Uint32Array")] results: U32sMut<'_>,
    ) -> napi::Result<u32> {
        let now = millis(now_ms);
        let batch = Batch { data, spans, first, end, out, out_at, results };
        batch.run(&mut self.inner, |inner, packet| match inner.push_ready(packet, now) {
            Ipv6Outcome::Ready(len) => Step::Ready(len),
            Ipv6Outcome::NotFragment => Step::Status(NOT_FRAGMENT, 0),
            Ipv6Outcome::Pending => Step::Status(PENDING, 0),
            Ipv6Outcome::Dropped => Step::Status(DROPPED, 0),
            Ipv6Outcome::Atomic => Step::Status(ATOMIC, 0),
            Ipv6Outcome::ParameterProblem { .. } => Step::Status(PARAMETER_PROBLEM, 0),
        })
    }

    /// Drops datagrams past their timeout (queueing Time Exceeded reports); returns how many.
    #[napi]
    pub fn expire(&mut self, now_ms: f64) -> u32 {
        self.inner.expire(millis(now_ms)) as u32
    }

    /// Reports queued.
    #[napi]
    pub fn pending_reports(&self) -> u32 {
        self.inner.pending_reports() as u32
    }

    /// Takes the oldest report: writes `[type, code, pointer]` into `info` and the quoted packet
    /// into `out` (which must hold `IPV6_REPORT_MAX_QUOTE` bytes), and returns the quote's length;
    /// -1 when no report is queued (or the arrays are too short; the report is then kept).
    #[napi]
    pub fn take_report(
        &mut self,
        #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
        #[napi(ts_arg_type = "Uint32Array")] info: U32sMut<'_>,
    ) -> i32 {
        if out.len() < MAX_QUOTE || info.len() < 3 {
            return -1;
        }
        let Some(report) = self.inner.take_report() else { return -1 };
        info[0] = u32::from(report.icmp_type);
        info[1] = u32::from(report.code);
        info[2] = report.pointer;
        out[..report.packet.len()].copy_from_slice(&report.packet);
        report.packet.len() as i32
    }

    /// Counters and occupancy.
    #[napi]
    pub fn stats(&self) -> Ipv6ReassemblyStats {
        let all = self.inner.stats();
        let s = all.common;
        Ipv6ReassemblyStats {
            fragments: s.fragments as f64,
            reassembled: s.reassembled as f64,
            duplicates: s.duplicates as f64,
            dropped_overlap: s.dropped_overlap as f64,
            dropped_timeout: s.dropped_timeout as f64,
            dropped_memory: s.dropped_memory as f64,
            dropped_too_many_fragments: s.dropped_too_many_fragments as f64,
            dropped_too_big: s.dropped_too_big as f64,
            dropped_bad_length: s.dropped_bad_length as f64,
            dropped_inconsistent: s.dropped_inconsistent as f64,
            dropped_malformed: s.dropped_malformed as f64,
            buffered_bytes: s.buffered_bytes as f64,
            pending_datagrams: s.pending_datagrams as f64,
            atomic: all.atomic as f64,
            dropped_discarded: all.dropped_discarded as f64,
            dropped_incomplete_chain: all.dropped_incomplete_chain as f64,
            reports: all.reports as f64,
            dropped_reports: all.dropped_reports as f64,
        }
    }
}
