//! The transmit ring: a bounded single-producer, single-consumer queue of frames kept in one
//! slab of fixed-size slots allocated up front, so queueing a frame allocates nothing.
//!
//! Slot `seq % slots` holds frame number `seq`. Two monotonically increasing counters say who
//! may touch which slot: `head` (frames published, advanced only by the [`Producer`]) and
//! `tail` (frames consumed, advanced only by the [`Consumer`]). Slots `tail..head` belong to the
//! consumer; the others, in particular the slot at `head` while `head - tail < slots`, belong to
//! the producer. Publishing stores the frame's length and then `head` with `Release`; the
//! consumer loads `head` with `Acquire` before it reads a slot, and stores `tail` with `Release`
//! once it no longer reads it, which the producer loads with `Acquire` before it reuses the
//! slot. Each side caches the other's counter and reloads it only when the cached value says
//! "empty" or "full", so a frame costs each side one contended cache line at most.
//!
//! The slab's address can be lent to foreign code (JavaScript fills the slot at `head` in
//! place): the consumer therefore never forms a Rust reference to slot bytes; it hands a raw
//! pointer to `write(2)`.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Slots start on cache-line boundaries and their length is a multiple of this.
pub(crate) const SLOT_ALIGN: usize = 64;

/// Keeps the producer's and the consumer's counters on separate cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// The memory and counters shared by the two ends.
pub(crate) struct Ring {
    mem: NonNull<u8>,
    layout: Layout,
    slot_len: usize,
    slots: usize,
    /// Length of the frame in each slot, valid for published slots.
    lens: Box<[AtomicU32]>,
    /// Frames published.
    head: Padded<AtomicU64>,
    /// Frames consumed.
    tail: Padded<AtomicU64>,
}

// SAFETY: `Ring` owns its allocation (freed once, in `Drop`). Slot bytes are accessed under the
// head/tail protocol described in the module docs: the unique `Producer` writes only the slot at
// `head` while it is free, the unique `Consumer` reads only slots in `tail..head`, and the
// Release/Acquire pairs on `head` and `tail` order those accesses. Everything else is atomic.
unsafe impl Send for Ring {}
// SAFETY: see `Send`; shared access goes through atomics or the slot protocol.
unsafe impl Sync for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `mem` was allocated in `Ring::new` with exactly `layout` and is freed only here.
        unsafe { alloc::dealloc(self.mem.as_ptr(), self.layout) };
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("slot_len", &self.slot_len).field("slots", &self.slots).finish()
    }
}

impl Ring {
    /// `slots` slots of `slot_len` bytes (rounded up to [`SLOT_ALIGN`]), zero-filled.
    fn new(slot_len: usize, slots: usize) -> Ring {
        let slot_len = slot_len.max(1).next_multiple_of(SLOT_ALIGN);
        let slots = slots.max(1);
        let size = slot_len.checked_mul(slots).expect("transmit ring size overflows");
        let layout = Layout::from_size_align(size, SLOT_ALIGN).expect("transmit ring layout");
        // SAFETY: `layout` has a non-zero size (both factors are at least 1 and 64).
        let mem = unsafe { alloc::alloc_zeroed(layout) };
        let Some(mem) = NonNull::new(mem) else { alloc::handle_alloc_error(layout) };
        Ring {
            mem,
            layout,
            slot_len,
            slots,
            lens: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
        }
    }

    /// Bytes per slot: the longest frame the ring takes.
    pub(crate) fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Number of slots: the most frames queued at once.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// The start of the slab (`slots * slot_len` bytes; slot `i` at `i * slot_len`).
    pub(crate) fn base(&self) -> *mut u8 {
        self.mem.as_ptr()
    }

    /// Size of the slab in bytes.
    pub(crate) fn size(&self) -> usize {
        self.layout.size()
    }

    /// The slot index of frame number `seq`.
    fn index(&self, seq: u64) -> usize {
        (seq % self.slots as u64) as usize
    }

    fn slot_ptr(&self, seq: u64) -> *mut u8 {
        // SAFETY: `index < slots`, so the offset stays inside the allocation of
        // `slots * slot_len` bytes.
        unsafe { self.mem.as_ptr().add(self.index(seq) * self.slot_len) }
    }

    /// Frames published and not yet consumed (a snapshot; exact when both ends are idle).
    pub(crate) fn queued(&self) -> u64 {
        let tail = self.tail.0.load(Ordering::Acquire);
        self.head.0.load(Ordering::Acquire).saturating_sub(tail)
    }
}

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot holds a frame not yet written.
    Full,
    /// The frame is longer than a slot.
    TooLong,
    /// The writer was stopped (the device is closing or closed).
    Stopped,
}

/// The producing end: reserves the slot at `head`, fills it, publishes it.
#[derive(Debug)]
pub(crate) struct Producer {
    ring: Arc<Ring>,
    head: u64,
    /// `tail` as last loaded; the real one is never smaller.
    tail_seen: u64,
}

/// The consuming end: reads published slots in order and releases them.
#[derive(Debug)]
pub(crate) struct Consumer {
    ring: Arc<Ring>,
    tail: u64,
    /// `head` as last loaded; the real one is never smaller.
    head_seen: u64,
}

/// A ring of `slots` slots of at least `slot_len` bytes, and its two ends.
pub(crate) fn ring(slot_len: usize, slots: usize) -> (Producer, Consumer) {
    let ring = Arc::new(Ring::new(slot_len, slots));
    (Producer { ring: ring.clone(), head: 0, tail_seen: 0 }, Consumer { ring, tail: 0, head_seen: 0 })
}

impl Producer {
    /// The shared ring (for its geometry and slab address).
    pub(crate) fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The index of the free slot at `head`, or `None` when every slot is queued.
    pub(crate) fn reserve(&mut self) -> Option<usize> {
        let slots = self.ring.slots as u64;
        if self.head - self.tail_seen >= slots {
            self.tail_seen = self.ring.tail.0.load(Ordering::Acquire);
            if self.head - self.tail_seen >= slots {
                return None;
            }
        }
        Some(self.ring.index(self.head))
    }

    /// The bytes of the free slot at `head`, to fill before [`Producer::commit`].
    pub(crate) fn slot_mut(&mut self) -> Option<&mut [u8]> {
        self.reserve()?;
        let ptr = self.ring.slot_ptr(self.head);
        // SAFETY: the slot at `head` is free (checked by `reserve`): the consumer reads only
        // slots below `head` and will not read this one until `commit` publishes it, which needs
        // `&mut self` and so ends this borrow first. It is `slot_len` bytes inside the slab.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr, self.ring.slot_len) })
    }

    /// Publishes the first `len` bytes of the slot at `head` as the next frame.
    pub(crate) fn commit(&mut self, len: usize) -> Result<(), Refused> {
        if len > self.ring.slot_len {
            return Err(Refused::TooLong);
        }
        self.reserve().ok_or(Refused::Full)?;
        self.ring.lens[self.ring.index(self.head)].store(len as u32, Ordering::Relaxed);
        self.head += 1;
        self.ring.head.0.store(self.head, Ordering::Release);
        Ok(())
    }

    /// Copies `frame` into the slot at `head` and publishes it.
    pub(crate) fn push(&mut self, frame: &[u8]) -> Result<(), Refused> {
        if frame.len() > self.ring.slot_len {
            return Err(Refused::TooLong);
        }
        let slot = self.slot_mut().ok_or(Refused::Full)?;
        slot[..frame.len()].copy_from_slice(frame);
        self.commit(frame.len())
    }

    /// Whether every published frame has been consumed (loads `tail`).
    pub(crate) fn is_drained(&mut self) -> bool {
        if self.tail_seen != self.head {
            self.tail_seen = self.ring.tail.0.load(Ordering::Acquire);
        }
        self.tail_seen == self.head
    }

    /// The start of the slot at `head` (free when [`Producer::reserve`] says so).
    pub(crate) fn head_ptr(&self) -> *const u8 {
        self.ring.slot_ptr(self.head).cast_const()
    }

    /// Frames published so far.
    #[cfg(test)]
    pub(crate) fn published(&self) -> u64 {
        self.head
    }
}

impl Consumer {
    /// The oldest published frame not yet released: its address and length. The bytes stay
    /// put until [`Consumer::release`]. A raw pointer, not a slice: the slab may be lent to
    /// foreign code, which Rust references must not alias.
    pub(crate) fn peek(&mut self) -> Option<(*const u8, usize)> {
        if self.tail == self.head_seen {
            self.head_seen = self.ring.head.0.load(Ordering::Acquire);
            if self.tail == self.head_seen {
                return None;
            }
        }
        let len = self.ring.lens[self.ring.index(self.tail)].load(Ordering::Relaxed) as usize;
        Some((self.ring.slot_ptr(self.tail).cast_const(), len))
    }

    /// Gives the oldest frame's slot back to the producer.
    pub(crate) fn release(&mut self) {
        debug_assert!(self.tail < self.head_seen, "release without a peeked frame");
        if self.tail < self.head_seen {
            self.tail += 1;
            self.ring.tail.0.store(self.tail, Ordering::Release);
        }
    }

    /// Frames released so far.
    #[cfg(test)]
    pub(crate) fn consumed(&self) -> u64 {
        self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the oldest frame, released.
    fn pop(c: &mut Consumer) -> Option<Vec<u8>> {
        let (ptr, len) = c.peek()?;
        // SAFETY: the frame is published and not released: the producer does not touch it.
        let frame = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        c.release();
        Some(frame)
    }

    #[test]
    fn geometry_is_aligned() {
        let (p, _c) = ring(1514, 8);
        assert_eq!(p.ring().slot_len(), 1536);
        assert_eq!(p.ring().slots(), 8);
        assert_eq!(p.ring().size(), 8 * 1536);
        assert_eq!(p.ring().base() as usize % SLOT_ALIGN, 0);
    }

    #[test]
    fn frames_come_out_in_order_across_many_wraparounds() {
        let (mut p, mut c) = ring(100, 4);
        let mut next_out = 0u32;
        for i in 0..1000u32 {
            let frame: Vec<u8> =
                i.to_be_bytes().iter().copied().cycle().take(4 + (i as usize % 90)).collect();
            p.push(&frame).unwrap();
            // Drain in varying strides so head and tail wrap at different points.
            if i % 3 == 2 {
                while let Some(f) = pop(&mut c) {
                    assert_eq!(&f[..4], &next_out.to_be_bytes());
                    assert_eq!(f.len(), 4 + (next_out as usize % 90));
                    next_out += 1;
                }
            }
        }
        while let Some(f) = pop(&mut c) {
            assert_eq!(&f[..4], &next_out.to_be_bytes());
            next_out += 1;
        }
        assert_eq!(next_out, 1000);
        assert_eq!(c.consumed(), 1000);
        assert_eq!(p.ring().queued(), 0);
    }

    #[test]
    fn a_full_ring_refuses_until_a_slot_is_released() {
        let (mut p, mut c) = ring(64, 4);
        for i in 0..4u8 {
            assert_eq!(p.reserve(), Some(i as usize));
            p.push(&[i; 10]).unwrap();
        }
        assert_eq!(p.reserve(), None);
        assert!(p.slot_mut().is_none());
        assert_eq!(p.push(&[9; 10]), Err(Refused::Full));
        assert_eq!(p.commit(10), Err(Refused::Full));
        assert_eq!(p.ring().queued(), 4);
        assert_eq!(pop(&mut c).unwrap(), vec![0; 10]);
        // The freed slot is slot 0 again: the ring wrapped.
        assert_eq!(p.reserve(), Some(0));
        p.push(&[4; 12]).unwrap();
        let rest: Vec<Vec<u8>> = std::iter::from_fn(|| pop(&mut c)).collect();
        assert_eq!(rest, vec![vec![1; 10], vec![2; 10], vec![3; 10], vec![4; 12]]);
        assert_eq!(p.published(), 5);
    }

    #[test]
    fn frames_longer_than_a_slot_are_refused() {
        let (mut p, mut c) = ring(64, 2);
        assert_eq!(p.push(&[0; 65]), Err(Refused::TooLong));
        assert_eq!(p.commit(65), Err(Refused::TooLong));
        p.push(&[1; 64]).unwrap();
        assert_eq!(pop(&mut c).unwrap().len(), 64);
        assert!(pop(&mut c).is_none());
    }

    #[test]
    fn in_place_fill_and_commit() {
        let (mut p, mut c) = ring(64, 2);
        let slot = p.slot_mut().unwrap();
        assert_eq!(slot.len(), 64);
        slot[..3].copy_from_slice(b"abc");
        p.commit(3).unwrap();
        assert_eq!(pop(&mut c).unwrap(), b"abc");
    }

    #[test]
    fn two_threads_keep_order_and_content() {
        const N: u32 = 100_000;
        let (mut p, mut c) = ring(64, 16);
        let consumer = std::thread::spawn(move || {
            let mut expect = 0u32;
            while expect < N {
                match pop(&mut c) {
                    Some(f) => {
                        assert_eq!(f.len(), 8 + (expect % 50) as usize);
                        assert_eq!(&f[..4], &expect.to_le_bytes());
                        assert!(f[4..].iter().all(|&b| b == expect as u8));
                        expect += 1;
                    }
                    // Yield, not spin: the two threads may share one core.
                    None => std::thread::yield_now(),
                }
            }
        });
        let mut i = 0u32;
        while i < N {
            let Some(slot) = p.slot_mut() else {
                std::thread::yield_now();
                continue;
            };
            let len = 8 + (i % 50) as usize;
            slot[..4].copy_from_slice(&i.to_le_bytes());
            slot[4..len].fill(i as u8);
            p.commit(len).unwrap();
            i += 1;
        }
        consumer.join().unwrap();
    }
}
