//! The family-independent core of the reassembly caches: datagrams keyed by a family's key,
//! non-overlapping fragments sorted by offset, least-recently-used eviction within a byte budget,
//! an expiry queue, and a pool of spare fragment buffers. The IPv4 and IPv6 reassemblers parse
//! their packets, decide what a fragment's header is, and call [`Cache::insert`]; they write the
//! completed packet's header fields themselves after [`Cache::take_ready`].

use super::{ReassemblyConfig, ReassemblyStats};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// At most this many spare fragment buffers are kept, each of at most [`SPARE_CAPACITY`] bytes
/// (so the pool holds at most 128 KiB).
pub(crate) const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 2048;

/// What a discarded datagram (dropped for overlapping fragments, or for too many) is charged
/// against `max_bytes` while it is remembered (so that remembering is bounded too).
pub(crate) const DISCARDED_COST: usize = 64;

/// How a family uses the cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    /// The largest reassembled packet (header included).
    pub max_total: usize,
    /// Bytes at the end of the stored header that are not part of the reassembled packet (the
    /// IPv6 fragment header).
    pub strip: usize,
    /// Whether the stored header is charged against `max_bytes` (IPv6 headers can be 1 KiB).
    pub charge_header: bool,
    /// Whether a datagram dropped for an overlap is remembered until its timeout, so that its
    /// later fragments are dropped too (RFC 5722) instead of starting it again.
    pub discard_after_overlap: bool,
}

#[derive(Debug)]
pub(crate) struct Fragment {
    pub offset: usize,
    pub data: Vec<u8>,
}

impl Fragment {
    fn end(&self) -> usize {
        self.offset + self.data.len()
    }
}

#[derive(Debug)]
pub(crate) struct Datagram<K> {
    key: K,
    /// Distinguishes this datagram from earlier ones in the same slot (for the expiry queue).
    serial: u64,
    /// Everything before the payload in the offset-0 fragment, empty until it arrives.
    pub header: Vec<u8>,
    /// Non-overlapping, sorted by offset.
    pub fragments: Vec<Fragment>,
    /// Payload length, known once the final fragment (More Fragments clear) arrived.
    end: Option<usize>,
    /// Payload bytes held.
    bytes: usize,
    /// Bytes charged against `max_bytes`: the payload, the header if the family charges it, or
    /// [`DISCARDED_COST`] once discarded.
    charged: usize,
    /// Dropped (an overlap, too many fragments) and remembered only to drop its later fragments.
    discarded: bool,
    /// Neighbours in the recency list: `newer` towards the head, `older` towards the tail.
    newer: Option<usize>,
    older: Option<usize>,
}

/// Why a datagram is being dropped; selects the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    Overlap,
    Timeout,
    Memory,
    TooManyFragments,
    TooBig,
    Inconsistent,
}

/// A fragment as [`Cache::insert`] takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece<'a> {
    /// Everything before the payload in this fragment (stored if `offset` is 0).
    pub header: &'a [u8],
    /// The header length (after the family's `strip`) the size bound assumes while the
    /// datagram's offset-0 fragment has not arrived.
    pub floor: usize,
    /// Offset of the payload in the datagram.
    pub offset: usize,
    pub payload: &'a [u8],
    /// More Fragments is clear.
    pub last: bool,
}

/// What [`Cache::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Held, or an exact duplicate ignored.
    Pending,
    /// The datagram is complete and held as ready; the value is its reassembled length.
    Ready(usize),
    /// The datagram was dropped (and counted) for this reason.
    Dropped(DropReason),
    /// The datagram had already been discarded (an overlap, too many fragments); the fragment
    /// is dropped (and counted by the caller).
    Discarded,
}

/// The bounded cache. See the `reassembly` module documentation for its limits.
#[derive(Debug)]
pub(crate) struct Cache<K> {
    config: ReassemblyConfig,
    family: Family,
    pub stats: ReassemblyStats,
    index: HashMap<K, usize>,
    slots: Vec<Option<Datagram<K>>>,
    free_slots: Vec<usize>,
    /// Most and least recently used datagrams.
    newest: Option<usize>,
    oldest: Option<usize>,
    /// (deadline, slot, serial) in order of creation; stale entries are skipped.
    pub(crate) deadlines: VecDeque<(u64, usize, u64)>,
    next_serial: u64,
    /// Bytes charged now.
    buffered: usize,
    /// Datagrams remembered as discarded now.
    discarded: usize,
    /// The datagram completed by the last insert, until [`Cache::take_ready`] takes it.
    ready: Option<Datagram<K>>,
    /// Fragment buffers of finished datagrams, reused to spare an allocation per fragment.
    pub(crate) spare: Vec<Vec<u8>>,
    /// The slot of the last datagram a fragment went to: a datagram's fragments mostly arrive
    /// back to back, and comparing keys is cheaper than hashing one. Checked against the slot's
    /// key before use, so it is never wrong, only sometimes useless.
    last_slot: usize,
}

impl<K: Copy + Eq + Hash> Cache<K> {
    pub fn new(config: ReassemblyConfig, family: Family) -> Self {
        Cache {
            config,
            family,
            stats: ReassemblyStats::default(),
            index: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            newest: None,
            oldest: None,
            deadlines: VecDeque::new(),
            next_serial: 0,
            buffered: 0,
            discarded: 0,
            ready: None,
            spare: Vec::new(),
            last_slot: 0,
        }
    }

    pub fn config(&self) -> ReassemblyConfig {
        self.config
    }

    /// Counters, with the current occupancy filled in.
    pub fn stats(&self) -> ReassemblyStats {
        ReassemblyStats {
            buffered_bytes: self.buffered as u64,
            pending_datagrams: (self.index.len() - self.discarded) as u64,
            ..self.stats
        }
    }

    /// Drops every datagram whose first fragment arrived `timeout_ms` or more before `now_ms`.
    /// `on_timeout` sees each incomplete datagram whose offset-0 fragment had arrived: its
    /// stored header and the offset-0 payload. Returns how many incomplete datagrams were
    /// dropped (discarded ones are forgotten silently).
    pub fn expire(&mut self, now_ms: u64, mut on_timeout: impl FnMut(&[u8], &[u8])) -> usize {
        let mut dropped = 0;
        while let Some(&(deadline, slot, serial)) = self.deadlines.front() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop_front();
            let Some(datagram) = self.slots[slot].as_ref().filter(|d| d.serial == serial) else {
                continue;
            };
            if datagram.discarded {
                self.forget(slot);
                continue;
            }
            if !datagram.header.is_empty() {
                let first = datagram.fragments.first().filter(|f| f.offset == 0);
                on_timeout(&datagram.header, first.map_or(&[][..], |f| &f.data));
            }
            self.drop_datagram(slot, DropReason::Timeout);
            dropped += 1;
        }
        dropped
    }

    /// Discards a completed datagram that was not taken (called before each new packet).
    pub fn discard_untaken(&mut self) {
        if let Some(untaken) = self.ready.take() {
            self.recycle(untaken.fragments);
        }
    }

    /// Adds `piece` to the datagram `key` (created if new, at `now_ms`).
    pub fn insert(&mut self, key: K, now_ms: u64, piece: Piece<'_>) -> Inserted {
        let last = self.last_slot;
        let slot = if self.slots.get(last).and_then(Option::as_ref).is_some_and(|d| d.key == key) {
            last
        } else {
            match self.index.get(&key) {
                Some(&slot) => slot,
                None => self.create(key, now_ms),
            }
        };
        self.last_slot = slot;
        self.touch(slot);
        if self.slots[slot].as_ref().is_some_and(|d| d.discarded) {
            self.stats.dropped_discarded += 1;
            return Inserted::Discarded;
        }
        match self.add(slot, piece) {
            Err(reason) => {
                self.drop_datagram(slot, reason);
                Inserted::Dropped(reason)
            }
            Ok(false) => Inserted::Pending,
            Ok(true) => self.complete(slot),
        }
    }

    /// The header of the held completed datagram.
    pub fn ready_header(&self) -> Option<&[u8]> {
        self.ready.as_ref().map(|d| &d.header[..])
    }

    /// Writes the completed datagram into the start of `out`: its header without the family's
    /// `strip` bytes, then the payload. `None` when none is held or `out` is too short (it then
    /// stays held). The family fixes the header fields afterwards.
    pub fn take_ready(&mut self, out: &mut [u8]) -> Option<usize> {
        let datagram = self.ready.as_ref()?;
        let header_len = datagram.header.len() - self.family.strip;
        let total = header_len + datagram.bytes;
        let out = out.get_mut(..total)?;
        let datagram = self.ready.take()?;
        out[..header_len].copy_from_slice(&datagram.header[..header_len]);
        for fragment in &datagram.fragments {
            let at = header_len + fragment.offset;
            out[at..at + fragment.data.len()].copy_from_slice(&fragment.data);
        }
        self.recycle(datagram.fragments);
        Some(total)
    }

    /// Keeps some of a finished datagram's fragment buffers for reuse.
    fn recycle(&mut self, fragments: Vec<Fragment>) {
        for fragment in fragments {
            if self.spare.len() >= SPARE_BUFFERS {
                break;
            }
            if fragment.data.capacity() <= SPARE_CAPACITY {
                self.spare.push(fragment.data);
            }
        }
    }

    /// Adds a fragment to the datagram in `slot`. `Ok(true)` when it was new, `Ok(false)` for
    /// an exact duplicate, `Err` when the datagram must be dropped.
    fn add(&mut self, slot: usize, piece: Piece<'_>) -> Result<bool, DropReason> {
        let Piece { header, floor, offset, payload, last } = piece;
        let end = offset + payload.len();
        let max_fragments = self.config.max_fragments;
        let family = self.family;
        let datagram = self.slots[slot].as_mut().expect("slot in index is occupied");

        // Where the fragment goes, and whether it collides with its neighbours.
        let at = datagram.fragments.partition_point(|f| f.offset < offset);
        if let Some(same) = datagram.fragments.get(at).filter(|f| f.offset == offset) {
            if same.data == payload && (!last || datagram.end == Some(end)) {
                self.stats.duplicates += 1;
                return Ok(false);
            }
        }
        let overlaps_before = at > 0 && datagram.fragments[at - 1].end() > offset;
        let overlaps_after = datagram.fragments.get(at).is_some_and(|f| f.offset < end)
            || (payload.is_empty() && datagram.fragments.get(at).is_some_and(|f| f.offset == offset));
        if overlaps_before || overlaps_after {
            return Err(DropReason::Overlap);
        }

        let header_len = if offset == 0 {
            header.len() - family.strip
        } else {
            datagram.header.len().saturating_sub(family.strip).max(floor)
        };
        // The furthest byte held so far counts too: a first fragment with a longer header can
        // push a datagram whose later fragments fit past the limit.
        let furthest = datagram.fragments.last().map_or(end, |f| f.end().max(end));
        if header_len + furthest > family.max_total {
            return Err(DropReason::TooBig);
        }
        if last {
            let beyond = datagram.fragments.last().is_some_and(|f| f.end() > end);
            if datagram.end.is_some_and(|e| e != end) || beyond {
                return Err(DropReason::Inconsistent);
            }
        } else if datagram.end.is_some_and(|e| end > e) {
            return Err(DropReason::Inconsistent);
        }
        if datagram.fragments.len() >= max_fragments {
            return Err(DropReason::TooManyFragments);
        }
        let charge = payload.len() + if offset == 0 && family.charge_header { header.len() } else { 0 };
        if !self.make_room(slot, charge) {
            return Err(DropReason::Memory);
        }

        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(payload);
        let datagram = self.slots[slot].as_mut().expect("slot in index is occupied");
        if last {
            datagram.end = Some(end);
        }
        if offset == 0 {
            datagram.header.clear();
            datagram.header.extend_from_slice(header);
        }
        datagram.fragments.insert(at, Fragment { offset, data });
        datagram.bytes += payload.len();
        datagram.charged += charge;
        self.buffered += charge;
        self.stats.fragments += 1;
        Ok(true)
    }

    /// Evicts least recently used datagrams other than `slot` until `extra` more bytes fit.
    /// False when even that is not enough.
    fn make_room(&mut self, slot: usize, extra: usize) -> bool {
        while self.buffered + extra > self.config.max_bytes {
            match self.oldest {
                Some(victim) if victim != slot => self.evict(victim),
                _ => break,
            }
            // The datagram being filled is the newest, so it is reached only when it is alone.
        }
        self.buffered + extra <= self.config.max_bytes
    }

    /// Drops `slot` for memory: a discarded datagram is forgotten, a live one counted.
    fn evict(&mut self, slot: usize) {
        if self.slots[slot].as_ref().is_some_and(|d| d.discarded) {
            self.forget(slot);
        } else {
            self.drop_datagram(slot, DropReason::Memory);
        }
    }

    /// If `slot` is complete, moves it out of the cache into `ready`.
    fn complete(&mut self, slot: usize) -> Inserted {
        let Some(datagram) = self.slots[slot].as_ref() else { return Inserted::Pending };
        let Some(end) = datagram.end else { return Inserted::Pending };
        if datagram.header.is_empty() || datagram.bytes != end {
            return Inserted::Pending;
        }
        // Non-overlapping fragments inside [0, end) whose lengths add up to `end` cover it.
        let header_len = datagram.header.len() - self.family.strip;
        if header_len + end > self.family.max_total {
            self.drop_datagram(slot, DropReason::TooBig);
            return Inserted::Dropped(DropReason::TooBig);
        }
        let datagram = self.remove(slot);
        self.ready = Some(datagram);
        self.stats.reassembled += 1;
        Inserted::Ready(header_len + end)
    }

    fn create(&mut self, key: K, now_ms: u64) -> usize {
        let serial = self.next_serial;
        self.next_serial += 1;
        let datagram = Datagram {
            key,
            serial,
            header: Vec::new(),
            fragments: Vec::new(),
            end: None,
            bytes: 0,
            charged: 0,
            discarded: false,
            newer: None,
            older: None,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(datagram);
                slot
            }
            None => {
                self.slots.push(Some(datagram));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, slot);
        self.link_newest(slot);
        // Completed, evicted and dropped datagrams leave their entry behind until its deadline,
        // which under a steady clock (or a flood) would let the queue grow without bound: drop
        // the stale entries once they outnumber the live ones (amortised O(1) per datagram).
        if self.deadlines.len() >= 2 * self.index.len() + 64 {
            let slots = &self.slots;
            self.deadlines
                .retain(|&(_, slot, serial)| slots[slot].as_ref().is_some_and(|d| d.serial == serial));
        }
        self.deadlines.push_back((now_ms.saturating_add(self.config.timeout_ms), slot, serial));
        slot
    }

    fn drop_datagram(&mut self, slot: usize, reason: DropReason) {
        let counter = match reason {
            DropReason::Overlap => &mut self.stats.dropped_overlap,
            DropReason::Timeout => &mut self.stats.dropped_timeout,
            DropReason::Memory => &mut self.stats.dropped_memory,
            DropReason::TooManyFragments => &mut self.stats.dropped_too_many_fragments,
            DropReason::TooBig => &mut self.stats.dropped_too_big,
            DropReason::Inconsistent => &mut self.stats.dropped_inconsistent,
        };
        *counter += 1;
        // Later fragments of a datagram dropped for too many fragments (or, for IPv6, an
        // overlap) must not start it again: it could only be dropped again, after holding
        // memory until its timeout. Its key is remembered until then instead.
        let remember = reason == DropReason::TooManyFragments
            || (reason == DropReason::Overlap && self.family.discard_after_overlap);
        if remember {
            self.mark_discarded(slot);
            return;
        }
        let datagram = self.remove(slot);
        self.recycle(datagram.fragments);
    }

    /// Frees a datagram's fragments but keeps its key until its deadline, charged
    /// [`DISCARDED_COST`] bytes, so that its later fragments are recognised and dropped.
    fn mark_discarded(&mut self, slot: usize) {
        let datagram = self.slots[slot].as_mut().expect("discarding an occupied slot");
        let fragments = std::mem::take(&mut datagram.fragments);
        datagram.header = Vec::new();
        datagram.end = None;
        datagram.bytes = 0;
        self.buffered = self.buffered - datagram.charged + DISCARDED_COST;
        datagram.charged = DISCARDED_COST;
        datagram.discarded = true;
        self.discarded += 1;
        self.recycle(fragments);
        // The remembered key may cost more than the fragments freed: evict older datagrams,
        // and as a last resort forget this one, to stay within the budget.
        while self.buffered > self.config.max_bytes {
            match self.oldest {
                Some(victim) => self.evict(victim),
                None => break,
            }
        }
    }

    /// Removes a discarded datagram without counting anything.
    fn forget(&mut self, slot: usize) {
        self.remove(slot);
    }

    fn remove(&mut self, slot: usize) -> Datagram<K> {
        self.unlink(slot);
        let datagram = self.slots[slot].take().expect("removing an occupied slot");
        self.index.remove(&datagram.key);
        self.free_slots.push(slot);
        self.buffered -= datagram.charged;
        if datagram.discarded {
            self.discarded -= 1;
        }
        datagram
    }

    fn node(&mut self, slot: usize) -> &mut Datagram<K> {
        self.slots[slot].as_mut().expect("linked slot is occupied")
    }

    fn link_newest(&mut self, slot: usize) {
        let previous_newest = self.newest;
        {
            let node = self.node(slot);
            node.newer = None;
            node.older = previous_newest;
        }
        match previous_newest {
            Some(old) => self.node(old).newer = Some(slot),
            None => self.oldest = Some(slot),
        }
        self.newest = Some(slot);
    }

    fn unlink(&mut self, slot: usize) {
        let (newer, older) = {
            let node = self.node(slot);
            (node.newer.take(), node.older.take())
        };
        match newer {
            Some(n) => self.node(n).older = older,
            None => self.newest = older,
        }
        match older {
            Some(o) => self.node(o).newer = newer,
            None => self.oldest = newer,
        }
    }

    /// Marks `slot` as the most recently used datagram.
    fn touch(&mut self, slot: usize) {
        if self.newest != Some(slot) {
            self.unlink(slot);
            self.link_newest(slot);
        }
    }
}
