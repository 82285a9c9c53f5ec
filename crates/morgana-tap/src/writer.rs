//! The writer thread: frames queued by the caller in a bounded ring, written to the descriptor
//! one `write(2)` each by a dedicated thread.
//!
//! Why: a TAP `write(2)` runs the kernel's whole receive path for the frame (`netif_receive_skb`,
//! the kernel's TCP, the ACK it sends back) before it returns. Done on the caller's thread (the
//! JS event loop) that is most of the cost of sending; done here it runs on another core while
//! the caller assembles the next frame.
//!
//! The caller (one producer, e.g. the JS thread) either fills the free slot at the ring's head
//! in place ([`Writer::slot_mut`], or through the [`Slab`] address for foreign code) and
//! publishes it with [`Writer::commit`] / [`Writer::send`], or copies a frame in with
//! [`Writer::push`].
//!
//! - **Waking.** Publishing unparks the thread: one atomic swap while it is busy, a futex wake
//!   only when it is parked. Before parking, the thread polls the empty ring for
//!   [`WriterConfig::spin`] to catch the rest of a burst.
//! - **Latency.** A thread hop costs a wake-up and a context switch (~3 µs of CPU per frame
//!   measured on a 64-in-flight UDP echo, 20 % of its rate), which small exchanges (a request's
//!   response, an ACK) pay for nothing. [`Writer::send`] therefore writes the frame on the
//!   caller's thread when nothing is queued; the caller bounds how many frames may go that way
//!   (the JS device: the first 32 of each event-loop turn), so a burst's kernel work still moves
//!   to the thread and the time the caller spends in the kernel per turn stays bounded.
//! - **A starved thread.** On a busy machine the thread may wait for a core for milliseconds
//!   while the caller keeps producing (a TCP sender answering the ACKs of frames already
//!   written). A caller that finds the ring full while the thread is not in the middle of a
//!   write therefore writes the queued frames itself, oldest first ([`WriterConfig::assist`],
//!   counted in [`WriterStats::assisted`]): the frames go out late rather than being dropped,
//!   which would cost a TCP sender a retransmission timeout and its congestion window. The
//!   consumer's end is behind a lock that the thread holds only while it writes one frame, so
//!   frames still leave in order.
//! - **A full ring.** A caller with a frame in hand that cannot assist (the thread is writing)
//!   waits up to [`WriterConfig::max_wait`] for the thread to free slots (it sleeps until a sixteenth of the ring is free, like a NIC
//!   driver waking its queue at a threshold): while the thread is running this paces the caller
//!   to the kernel, as a blocking `write(2)` did, instead of dropping. If no slot frees in time
//!   (the thread is starved of CPU), the frame is dropped and counted ([`WriterStats::full`]),
//!   as a NIC drops on a full transmit queue, and further frames are dropped without waiting
//!   until a slot is free again, so the caller is never held up for long.
//! - **Close.** [`Writer::stop`] (or dropping the writer) flushes: frames already queued are
//!   written (the last segments of a closing stack reach the kernel as they did with
//!   synchronous writes; at most one ring's worth of non-blocking writes), then the thread is
//!   joined. Nothing is written after `stop` returns, and later frames are refused with
//!   [`Refused::Stopped`].

use crate::ring::{self, Consumer, Producer, Refused, Ring};
use crate::sys;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Size and timing of the transmit ring.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// The longest frame (Ethernet header included); slots are this long, rounded up to 64.
    pub max_frame: usize,
    /// Number of slots: the most frames queued and not yet written.
    pub slots: usize,
    /// How long the thread polls an empty ring before it parks. A short spin catches the next
    /// frame of a burst without a futex wake on each side; zero parks at once.
    pub spin: Duration,
    /// How long a caller with a frame waits for a slot when the ring is full before the frame
    /// is dropped; zero drops at once.
    pub max_wait: Duration,
    /// Whether a caller that finds the ring full writes the queued frames itself when the
    /// thread is not writing one (see the module docs). Needs a descriptor whose writes do
    /// not block (a TAP opened `O_NONBLOCK`): the caller must never sleep in `write(2)`.
    pub assist: bool,
}

/// How often a producer waiting for room looks whether it can assist the thread.
const ASSIST_POLL: Duration = Duration::from_micros(200);

/// Frames queued at most, whatever the MTU (the kernel's default `txqueuelen` is 1000).
pub const MAX_TX_SLOTS: usize = 1024;
/// Frames queued at least, even at the largest MTU.
pub const MIN_TX_SLOTS: usize = 64;
/// Bytes of slab the slot count aims at below [`MAX_TX_SLOTS`] (jumbo MTUs).
pub const TX_RING_BYTES: usize = 4 << 20;

impl WriterConfig {
    /// The ring for an interface of IP MTU `mtu`: `mtu + 14`-byte slots, as many as fit in
    /// [`TX_RING_BYTES`] but between [`MIN_TX_SLOTS`] and [`MAX_TX_SLOTS`] (MTU 1500: 1024
    /// slots, 1.5 MiB; MTU 9000: 464; MTU 65,521: 64, 4 MiB); a 20 µs spin; a 1 ms wait.
    pub fn for_mtu(mtu: u32) -> WriterConfig {
        let max_frame = mtu as usize + 14;
        let slot = max_frame.next_multiple_of(ring::SLOT_ALIGN);
        WriterConfig {
            max_frame,
            slots: (TX_RING_BYTES / slot).clamp(MIN_TX_SLOTS, MAX_TX_SLOTS),
            spin: Duration::from_micros(20),
            max_wait: Duration::from_millis(1),
            assist: true,
        }
    }
}

impl WriterConfig {
    /// The ring for a descriptor with a `virtio_net_hdr` and TSO ([`crate::Tap::vnet_hdr`]):
    /// slots for the header plus a 64 KiB super-frame (Ethernet header and a 65,535-byte IP
    /// packet), as many as fit in [`OFFLOAD_RING_BYTES`] (256); otherwise as [`Self::for_mtu`].
    pub fn for_offload() -> WriterConfig {
        let max_frame = MAX_OFFLOAD_FRAME;
        let slot = max_frame.next_multiple_of(ring::SLOT_ALIGN);
        WriterConfig {
            max_frame,
            slots: (OFFLOAD_RING_BYTES / slot).clamp(MIN_TX_SLOTS, MAX_TX_SLOTS),
            ..Self::for_mtu(1500)
        }
    }
}

/// The longest frame written or read with the header: header, Ethernet header, 65,535-byte IP packet.
pub const MAX_OFFLOAD_FRAME: usize = crate::VNET_HDR_LEN + 14 + 65_535;
/// Bytes of slab of a ring of 64 KiB slots (16 MiB, 256 super-frames).
pub const OFFLOAD_RING_BYTES: usize = 16 << 20;

/// Counters of a writer. Every frame offered is, once the ring is empty, in exactly one of
/// `frames`, `full` or `errors` (or was refused as [`Refused::TooLong`], which is the caller's
/// to count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Frames written to the descriptor. A frame counts from the moment its `write(2)` starts
    /// (so a receiver never sees a frame before it is counted) and moves to `errors` if the
    /// write fails.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Of `frames`, those [`Writer::send`] wrote on the caller's thread.
    pub inline: u64,
    /// Frames dropped because every slot was taken.
    pub full: u64,
    /// Frames the descriptor refused (`write(2)` failed, e.g. EAGAIN or the interface is gone).
    pub errors: u64,
    /// Frames queued and not yet written (a snapshot).
    pub queued: u64,
    /// Times the thread found the ring empty and parked.
    pub parks: u64,
    /// Times a caller found the ring full and waited for a slot.
    pub waits: u64,
    /// Of `frames`, those a caller that found the ring full wrote from the ring itself
    /// ([`WriterConfig::assist`]: the thread was starved of CPU).
    pub assisted: u64,
}

/// State shared by the writer thread and its [`Writer`].
struct Shared {
    /// The ring's consuming end: the thread holds the lock while it writes one frame; a
    /// producer facing a full ring takes it (never waiting for it) to write frames itself.
    consumer: Mutex<Consumer>,
    stopping: AtomicBool,
    /// The producer sleeps on `room` until enough slots are free.
    producer_waiting: AtomicBool,
    room_lock: Mutex<()>,
    room: Condvar,
    frames: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    parks: AtomicU64,
    /// The first write error.
    error: Mutex<Option<io::Error>>,
    /// Tests: the thread takes no frame while set, as a thread that gets no CPU.
    #[cfg(test)]
    starved: AtomicBool,
}

impl Shared {
    fn new(consumer: Consumer) -> Shared {
        Shared {
            consumer: Mutex::new(consumer),
            stopping: AtomicBool::new(false),
            producer_waiting: AtomicBool::new(false),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            parks: AtomicU64::new(0),
            error: Mutex::new(None),
            #[cfg(test)]
            starved: AtomicBool::new(false),
        }
    }

    /// Writes the oldest queued frame, if any, and frees its slot; with `consumer` locked.
    fn write_oldest(&self, fd: &OwnedFd, consumer: &mut Consumer) -> bool {
        let Some((ptr, len)) = consumer.peek() else { return false };
        self.write(fd, ptr, len);
        consumer.release();
        true
    }

    /// Writes one frame to `fd` and counts it (before the write: see [`WriterStats::frames`]).
    fn write(&self, fd: &OwnedFd, ptr: *const u8, len: usize) {
        // SAFETY: the callers pass `len` readable bytes of a slot nobody writes during the
        // call (a published slot the producer does not reuse before it is released, or the
        // producer's own free slot).
        self.write_with(len, || unsafe { sys::write_raw(fd.as_fd(), ptr, len) });
    }

    /// Writes one frame made of `head` and `body` to `fd` (one `writev(2)`) and counts it.
    fn write_parts(&self, fd: &OwnedFd, head: &[u8], body: &[u8]) {
        self.write_with(head.len() + body.len(), || sys::writev2(fd.as_fd(), head, body));
    }

    /// Counts a frame of `len` bytes and writes it with `write`, retried on EINTR.
    fn write_with(&self, len: usize, mut write: impl FnMut() -> io::Result<usize>) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let result = loop {
            match write() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        if let Err(e) = result {
            self.frames.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(len as u64, Ordering::Relaxed);
            self.errors.fetch_add(1, Ordering::Relaxed);
            let mut first = self.error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(e);
            }
        }
    }
}

/// The transmit ring's memory, alive as long as any handle to it (it may outlive the
/// [`Writer`]): lets foreign code, such as a JavaScript `Buffer` over the slab, fill slots in
/// place without a copy.
///
/// Slot `i` starts at `as_ptr() + i * slot_len()`. Writing through the pointer is sound only
/// for the slot index returned by [`Writer::reserve`] / [`Writer::claim`] (or the previous
/// commit), from the producer's thread, until the next [`Writer::commit`], [`Writer::send`] or
/// [`Writer::push`]. A caller that breaks this rule can corrupt the frames it sends but not
/// Rust's memory: slots are read only through raw pointers handed to `write(2)`.
#[derive(Clone)]
pub struct Slab {
    ring: Arc<Ring>,
}

impl std::fmt::Debug for Slab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slab").field("len", &self.len()).field("slot_len", &self.slot_len()).finish()
    }
}

impl Slab {
    /// Start of the slab, aligned to 64 bytes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ring.base()
    }

    /// Size in bytes (`slots * slot_len`).
    pub fn len(&self) -> usize {
        self.ring.size()
    }

    /// Always false: a slab has at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes per slot.
    pub fn slot_len(&self) -> usize {
        self.ring.slot_len()
    }
}

/// How [`Writer::send`] sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Written on the caller's thread (nothing was queued).
    Inline,
    /// Queued for the thread.
    Queued,
}

/// The producing end of a TAP transmit ring and its thread. Not `Clone`: one producer.
pub struct Writer {
    producer: Producer,
    /// For inline writes; released by `stop`.
    fd: Option<Arc<OwnedFd>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    max_wait: Duration,
    assist: bool,
    /// Frames written from the ring by the producer.
    assisted: u64,
    /// A wait for a slot timed out and no slot has been free since: drop without waiting.
    congested: bool,
    /// Frames dropped on a full ring (only the producer counts them).
    full: u64,
    /// Frames written inline.
    inline: u64,
    /// Times the producer waited for a slot.
    waits: u64,
    /// Counters frozen when the thread was joined.
    stopped: Option<WriterStats>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("running", &self.thread.is_some())
            .field("ring", self.producer.ring())
            .finish()
    }
}

impl Writer {
    pub(crate) fn spawn(fd: Arc<OwnedFd>, config: WriterConfig) -> io::Result<Writer> {
        Writer::spawn_with(fd, config, Shared::new)
    }

    /// Tests: a writer whose thread starts starved (takes no frame until `shared.starved` is
    /// cleared).
    #[cfg(test)]
    fn spawn_starved(fd: Arc<OwnedFd>, config: WriterConfig) -> io::Result<Writer> {
        Writer::spawn_with(fd, config, |consumer| {
            let shared = Shared::new(consumer);
            shared.starved.store(true, Ordering::SeqCst);
            shared
        })
    }

    fn spawn_with(
        fd: Arc<OwnedFd>,
        config: WriterConfig,
        shared: impl FnOnce(Consumer) -> Shared,
    ) -> io::Result<Writer> {
        let (producer, consumer) = ring::ring(config.max_frame, config.slots);
        let ring = producer.ring().clone();
        let shared = Arc::new(shared(consumer));
        let thread = {
            let (shared, fd) = (shared.clone(), fd.clone());
            let spin = config.spin;
            std::thread::Builder::new()
                .name("morgana-tap-tx".into())
                .spawn(move || run(&fd, &ring, &shared, spin))?
        };
        Ok(Writer {
            producer,
            fd: Some(fd),
            shared,
            thread: Some(thread),
            max_wait: config.max_wait,
            assist: config.assist,
            assisted: 0,
            congested: false,
            full: 0,
            inline: 0,
            waits: 0,
            stopped: None,
        })
    }

    /// Bytes per slot: the longest frame the ring takes (at least the configured `max_frame`).
    pub fn slot_len(&self) -> usize {
        self.producer.ring().slot_len()
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.producer.ring().slots()
    }

    /// The ring's memory, for filling slots in place from foreign code.
    pub fn slab(&self) -> Slab {
        Slab { ring: self.producer.ring().clone() }
    }

    /// The index of the free slot the next frame goes into; `None` when the ring is full or
    /// the writer stopped. Never waits and counts nothing.
    pub fn try_reserve(&mut self) -> Option<usize> {
        self.thread.as_ref()?;
        let slot = self.producer.reserve();
        if slot.is_some() {
            self.congested = false;
        }
        slot
    }

    /// Like [`Writer::try_reserve`], for a caller about to produce a frame: a full ring is
    /// waited on (the module docs' rules). Counts nothing.
    pub fn reserve(&mut self) -> Option<usize> {
        if let Some(slot) = self.try_reserve() {
            return Some(slot);
        }
        self.thread.as_ref()?;
        if self.assist_thread() {
            if let Some(slot) = self.try_reserve() {
                return Some(slot);
            }
        }
        if self.congested || self.max_wait.is_zero() {
            return None;
        }
        self.waits += 1;
        let slot = self.wait_for_room();
        self.congested = slot.is_none();
        slot
    }

    /// Like [`Writer::reserve`], for a caller with a frame in hand: when no slot frees up,
    /// the frame counts as dropped ([`WriterStats::full`]).
    pub fn claim(&mut self) -> Option<usize> {
        self.thread.as_ref()?;
        let slot = self.reserve();
        if slot.is_none() {
            self.full += 1;
        }
        slot
    }

    /// The free slot's bytes (waiting as [`Writer::reserve`] does), to fill in place before
    /// [`Writer::commit`]; `None` when the ring is full or the writer stopped.
    pub fn slot_mut(&mut self) -> Option<&mut [u8]> {
        self.reserve()?;
        self.producer.slot_mut()
    }

    /// Queues the first `len` bytes of the free slot as the next frame and wakes the thread.
    /// [`Refused::Full`] (no slot was reserved) counts the frame as dropped.
    pub fn commit(&mut self, len: usize) -> Result<(), Refused> {
        if self.thread.is_none() {
            return Err(Refused::Stopped);
        }
        let result = self.producer.commit(len);
        self.queued(result)
    }

    /// Sends the first `len` bytes of the free slot: written at once on this thread when
    /// nothing is queued (no wake-up, no thread hop; the slot stays free for the next frame),
    /// otherwise queued as by [`Writer::commit`].
    pub fn send(&mut self, len: usize) -> Result<Sent, Refused> {
        if self.thread.is_none() {
            return Err(Refused::Stopped);
        }
        if len > self.slot_len() {
            return Err(Refused::TooLong);
        }
        if let Some(fd) = &self.fd {
            if self.producer.is_drained() {
                // Nothing is queued, so the thread is not writing (it releases a slot only
                // after its write returns) and the order holds.
                self.shared.write(fd, self.producer.head_ptr(), len);
                self.inline += 1;
                return Ok(Sent::Inline);
            }
        }
        self.commit(len).map(|()| Sent::Queued)
    }

    /// Sends a frame made of `head` followed by `body`, both in the caller's memory (a header
    /// built apart from a frame it does not own): with `inline` and nothing queued, written at
    /// once on this thread by one `writev(2)`, without a copy; otherwise copied into a free
    /// slot (waiting, assisting or dropping as [`Writer::claim`] does) and queued.
    pub fn send_parts(&mut self, head: &[u8], body: &[u8], inline: bool) -> Result<Sent, Refused> {
        if self.thread.is_none() {
            return Err(Refused::Stopped);
        }
        let len = head.len() + body.len();
        if len > self.slot_len() {
            return Err(Refused::TooLong);
        }
        if let Some(fd) = self.fd.as_ref().filter(|_| inline) {
            if self.producer.is_drained() {
                // Nothing is queued: the thread is not writing, and the order holds.
                self.shared.write_parts(fd, head, body);
                self.inline += 1;
                return Ok(Sent::Inline);
            }
        }
        if self.claim().is_none() {
            return Err(Refused::Full);
        }
        let slot = self.producer.slot_mut().ok_or(Refused::Full)?;
        slot[..head.len()].copy_from_slice(head);
        slot[head.len()..len].copy_from_slice(body);
        let result = self.producer.commit(len);
        self.queued(result).map(|()| Sent::Queued)
    }

    /// Copies `frame` into a free slot (waiting as [`Writer::reserve`] does) and queues it
    /// ([`Writer::commit`]'s rules).
    pub fn push(&mut self, frame: &[u8]) -> Result<(), Refused> {
        if self.thread.is_none() {
            return Err(Refused::Stopped);
        }
        if frame.len() > self.slot_len() {
            return Err(Refused::TooLong);
        }
        if self.reserve().is_none() {
            self.full += 1;
            return Err(Refused::Full);
        }
        let result = self.producer.push(frame);
        self.queued(result)
    }

    /// After a commit: wakes the thread for a queued frame, counts a frame refused as full.
    fn queued(&mut self, result: Result<(), Refused>) -> Result<(), Refused> {
        match result {
            // One atomic swap while the thread is busy; a futex wake only if it is parked.
            Ok(()) => {
                if let Some(thread) = &self.thread {
                    thread.thread().unpark();
                }
            }
            Err(Refused::Full) => self.full += 1,
            Err(_) => {}
        }
        result
    }

    /// With [`WriterConfig::assist`]: writes every queued frame on this thread when the
    /// writer thread is not writing one (its lock is free: it waits for a core, or is between
    /// frames). Returns whether any frame was written. Never waits for the lock.
    fn assist_thread(&mut self) -> bool {
        let Some(fd) = self.fd.as_ref().filter(|_| self.assist) else { return false };
        let mut consumer = match self.shared.consumer.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let mut written = 0;
        while self.shared.write_oldest(fd, &mut consumer) {
            written += 1;
        }
        self.assisted += written;
        written > 0
    }

    /// Sleeps until the thread has freed a sixteenth of the ring or `max_wait` has passed
    /// (assisting the thread whenever it stops writing); returns the free slot, if any.
    fn wait_for_room(&mut self) -> Option<usize> {
        let deadline = Instant::now() + self.max_wait;
        let shared = self.shared.clone();
        let mut guard = shared.room_lock.lock().unwrap_or_else(|p| p.into_inner());
        shared.producer_waiting.store(true, Ordering::SeqCst);
        let slot = loop {
            // Pairs with the thread's fence between releasing a slot and reading the flag:
            // either it sees the flag, or this load sees the slot.
            fence(Ordering::SeqCst);
            if let Some(slot) = self.producer.reserve() {
                break Some(slot);
            }
            if self.assist_thread() {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            // Woken when the thread frees room; with assist, also looks again shortly in case
            // the thread lost its core right after a write, with the lock still held.
            let nap = if self.assist { (deadline - now).min(ASSIST_POLL) } else { deadline - now };
            guard = shared.room.wait_timeout(guard, nap).unwrap_or_else(|p| p.into_inner()).0;
        };
        shared.producer_waiting.store(false, Ordering::Relaxed);
        drop(guard);
        slot
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        if let Some(stats) = self.stopped {
            return stats;
        }
        let s = &self.shared;
        WriterStats {
            frames: s.frames.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            inline: self.inline,
            full: self.full,
            errors: s.errors.load(Ordering::Relaxed),
            queued: self.producer.ring().queued(),
            parks: s.parks.load(Ordering::Relaxed),
            waits: self.waits,
            assisted: self.assisted,
        }
    }

    /// The first write error, if any (writing goes on: later frames may succeed).
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|e| e.to_string())
    }

    /// Writes what is queued, stops the thread and waits for it, and lets go of the
    /// descriptor; idempotent. Afterwards nothing more is written and frames are refused.
    pub fn stop(&mut self) {
        self.fd = None;
        if let Some(thread) = self.thread.take() {
            // Release: the thread, seeing `stopping`, also sees every frame published before.
            self.shared.stopping.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
            let mut stats = self.stats();
            stats.queued = 0;
            self.stopped = Some(stats);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(fd: &OwnedFd, ring: &Ring, shared: &Shared, spin: Duration) {
    let slots = ring.slots() as u64;
    // A waiting producer is woken once this many slots are free (or the ring is empty).
    let wake_at = (slots / 16).max(1);
    loop {
        #[cfg(test)]
        while shared.starved.load(Ordering::SeqCst) && !shared.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_micros(100));
        }
        // The lock only while one frame is written: a producer may assist between frames.
        let wrote = shared.write_oldest(fd, &mut shared.consumer.lock().unwrap_or_else(|p| p.into_inner()));
        if wrote {
            // Pairs with the producer's fence in `wait_for_room`.
            fence(Ordering::SeqCst);
            if shared.producer_waiting.load(Ordering::Relaxed) && slots - ring.queued() >= wake_at {
                let _guard = shared.room_lock.lock().unwrap_or_else(|p| p.into_inner());
                shared.room.notify_one();
            }
            continue;
        }
        if shared.stopping.load(Ordering::Acquire) {
            // Every frame was published before `stopping`: an empty ring now stays empty.
            if ring.queued() == 0 {
                return;
            }
            continue;
        }
        if !spin.is_zero() {
            let start = Instant::now();
            while ring.queued() == 0 && start.elapsed() < spin && !shared.stopping.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            if ring.queued() > 0 {
                continue;
            }
        }
        shared.parks.fetch_add(1, Ordering::Relaxed);
        // A commit between the last look and here left the park token set: park returns at
        // once.
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::atomic::AtomicBool;

    fn socket_pair(nonblocking: bool) -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        let flags = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | flags,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: socketpair just created both descriptors; each is owned once.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn set_nonblocking(fd: &OwnedFd, on: bool) {
        // SAFETY: plain fcntl calls on a live descriptor.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
            assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags), 0);
        }
    }

    /// Reads every frame from a non-blocking descriptor until end-of-file, or until `done` is
    /// set and it is empty.
    fn collector(fd: OwnedFd, done: Arc<AtomicBool>) -> JoinHandle<Vec<Vec<u8>>> {
        std::thread::spawn(move || {
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 70_000];
            loop {
                let finished = done.load(Ordering::SeqCst);
                match sys::read(fd.as_fd(), &mut buf) {
                    // End of file: the writer thread closed our peer's last reference.
                    Ok(0) => return frames,
                    Ok(n) => frames.push(buf[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if finished {
                            return frames;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => panic!("read: {e}"),
                }
            }
        })
    }

    fn frame(i: u32, len: usize) -> Vec<u8> {
        let mut f = vec![i as u8; len];
        f[..4].copy_from_slice(&i.to_be_bytes());
        f
    }

    fn config(max_frame: usize, slots: usize) -> WriterConfig {
        // No waiting by default, so full rings are deterministic.
        WriterConfig {
            max_frame,
            slots,
            spin: Duration::from_micros(20),
            max_wait: Duration::ZERO,
            assist: false,
        }
    }

    #[test]
    fn ring_geometry_follows_the_mtu() {
        let c = WriterConfig::for_mtu(1500);
        assert_eq!((c.max_frame, c.slots), (1514, 1024));
        assert_eq!(WriterConfig::for_mtu(9000).slots, 464);
        assert_eq!(WriterConfig::for_mtu(65_521).slots, MIN_TX_SLOTS);
        assert_eq!(WriterConfig::for_mtu(68).slots, MAX_TX_SLOTS);
    }

    #[test]
    fn frames_arrive_in_order_and_are_counted() {
        // Our end blocks when the peer's buffer is full, so a slow collector loses nothing.
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&theirs, true);
        let done = Arc::new(AtomicBool::new(false));
        let collected = collector(theirs, done.clone());
        // 8 slots, 5,000 frames: the ring wraps hundreds of times. A generous wait for room
        // paces the producer to the thread.
        let paced = WriterConfig { max_wait: Duration::from_secs(10), ..config(200, 8) };
        let mut writer = Writer::spawn(Arc::new(ours), paced).unwrap();
        let mut sent = Vec::new();
        let mut bytes = 0;
        let mut refused = 0;
        for i in 0..5000u32 {
            let f = frame(i, 20 + (i as usize * 7) % 180);
            loop {
                match writer.push(&f) {
                    Ok(()) => break,
                    Err(Refused::Full) => {
                        refused += 1;
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            bytes += f.len() as u64;
            sent.push(f);
        }
        writer.stop();
        done.store(true, Ordering::SeqCst);
        let got = collected.join().unwrap();
        assert!(got == sent, "frames arrive intact and in order");
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.bytes, stats.errors, stats.queued), (5000, bytes, 0, 0));
        // The producer waited for room instead of dropping.
        assert_eq!((stats.full, refused), (0, 0));
        assert!(stats.waits > 0, "a producer this fast fills 8 slots");
        assert!(writer.error().is_none());
    }

    #[test]
    fn in_place_fill_through_the_slab() {
        let (ours, theirs) = socket_pair(true);
        let mut writer = Writer::spawn(Arc::new(ours), config(100, 4)).unwrap();
        let slab = writer.slab();
        assert_eq!((slab.slot_len(), slab.len()), (128, 512));
        for i in 0..10u8 {
            // Wait for the thread to free a slot.
            let slot = loop {
                match writer.reserve() {
                    Some(s) => break s,
                    None => std::thread::yield_now(),
                }
            };
            // SAFETY: `slot` was just reserved and is filled before the commit, on this thread.
            unsafe { std::ptr::write_bytes(slab.as_ptr().add(slot * slab.slot_len()), i, 50) };
            writer.commit(50).unwrap();
        }
        writer.stop();
        let mut buf = [0u8; 200];
        for i in 0..10u8 {
            let n = sys::read(theirs.as_fd(), &mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 50][..]);
        }
        assert_eq!(writer.stats().frames, 10);
        // The slab outlives the writer.
        drop(writer);
        // SAFETY: the slab keeps the memory alive; nothing else touches it now.
        unsafe { *slab.as_ptr() = 1 };
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_close_flushes() {
        // A blocking descriptor whose peer's buffer is already full: the thread's first write
        // blocks, so the ring fills up deterministically.
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&ours, true);
        let mut junk = 0;
        while sys::write(ours.as_fd(), &[0xee; 1000]).is_ok() {
            junk += 1;
        }
        set_nonblocking(&ours, false);
        let mut writer = Writer::spawn(Arc::new(ours), config(100, 4)).unwrap();
        let mut accepted = Vec::new();
        for i in 0..10u32 {
            match writer.push(&frame(i, 64)) {
                Ok(()) => accepted.push(i),
                Err(e) => assert_eq!(e, Refused::Full),
            }
        }
        assert_eq!(accepted, [0, 1, 2, 3], "4 slots, the first stays taken while its write blocks");
        assert_eq!(writer.claim(), None);
        assert_eq!(writer.commit(64), Err(Refused::Full));
        let stats = writer.stats();
        assert_eq!((stats.full, stats.queued), (8, 4));

        // Close while full: stop flushes, so it waits for the peer to make room.
        let stopper = std::thread::spawn(move || {
            writer.stop();
            writer
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!stopper.is_finished(), "stop waits for the queued frames");
        set_nonblocking(&theirs, true);
        let mut buf = [0u8; 2000];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < junk + 4 && Instant::now() < deadline {
            match sys::read(theirs.as_fd(), &mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut writer = stopper.join().unwrap();
        let ours: Vec<Vec<u8>> = got[junk..].to_vec();
        assert_eq!(ours, (0..4).map(|i| frame(i, 64)).collect::<Vec<_>>());
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.full, stats.errors, stats.queued), (4, 8, 0, 0));
        // Nothing is written after stop, and nothing more is accepted.
        assert_eq!(writer.push(&frame(99, 64)), Err(Refused::Stopped));
        assert_eq!(writer.commit(10), Err(Refused::Stopped));
        assert_eq!((writer.reserve(), writer.claim()), (None, None));
        assert!(writer.slot_mut().is_none());
        std::thread::sleep(Duration::from_millis(20));
        // The thread held the last reference to our end, so the peer now sees end-of-file.
        assert_eq!(sys::read(theirs.as_fd(), &mut buf).unwrap(), 0, "no frame after stop");
        assert_eq!(writer.stats(), stats, "counters are frozen");
    }

    #[test]
    fn refused_writes_are_counted_as_errors() {
        let (ours, theirs) = socket_pair(true);
        drop(theirs); // EPIPE from now on (SIGPIPE is ignored in Rust programs)
        let mut writer = Writer::spawn(Arc::new(ours), config(100, 8)).unwrap();
        for i in 0..5 {
            writer.push(&frame(i, 60)).unwrap();
        }
        writer.stop();
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.bytes, stats.errors), (0, 0, 5));
        assert!(writer.error().unwrap().contains("pipe"), "{:?}", writer.error());
    }

    #[test]
    fn a_burst_into_a_small_ring_is_counted_exactly() {
        // Our end blocks when the peer's buffer is full, so a slow collector loses nothing.
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&theirs, true);
        let done = Arc::new(AtomicBool::new(false));
        let collected = collector(theirs, done.clone());
        let mut writer = Writer::spawn(Arc::new(ours), config(100, 16)).unwrap();
        let mut accepted = Vec::new();
        for i in 0..20_000u32 {
            if writer.push(&frame(i, 60)).is_ok() {
                accepted.push(frame(i, 60));
            }
        }
        writer.stop();
        done.store(true, Ordering::SeqCst);
        let got = collected.join().unwrap();
        let stats = writer.stats();
        assert_eq!(stats.frames + stats.full + stats.errors, 20_000);
        assert_eq!(stats.errors, 0);
        assert_eq!(stats.frames as usize, accepted.len());
        assert!(got == accepted, "exactly the accepted frames arrive, in order");
    }

    #[test]
    fn frames_longer_than_a_slot_are_refused_and_not_counted() {
        let (ours, _theirs) = socket_pair(true);
        let mut writer = Writer::spawn(Arc::new(ours), config(100, 4)).unwrap();
        assert_eq!(writer.slot_len(), 128);
        assert_eq!(writer.push(&[0; 129]), Err(Refused::TooLong));
        assert_eq!(writer.commit(129), Err(Refused::TooLong));
        writer.stop();
        assert_eq!(writer.stats(), WriterStats { parks: writer.stats().parks, ..WriterStats::default() });
    }

    #[test]
    fn an_idle_writer_parks_and_wakes_for_the_next_frame() {
        let (ours, theirs) = socket_pair(true);
        let mut writer =
            Writer::spawn(Arc::new(ours), WriterConfig { spin: Duration::ZERO, ..config(100, 4) }).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while writer.stats().parks == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(writer.stats().parks >= 1);
        writer.push(b"wake up").unwrap();
        let mut buf = [0u8; 100];
        let n = loop {
            match sys::read(theirs.as_fd(), &mut buf) {
                Ok(n) => break n,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("the parked thread was not woken: {e}"),
            }
        };
        assert_eq!(&buf[..n], b"wake up");
    }

    /// A blocking descriptor whose peer's buffer is full: the thread's first write blocks
    /// until `theirs` is read.
    fn stuck_pair() -> (OwnedFd, OwnedFd, usize) {
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&ours, true);
        let mut junk = 0;
        while sys::write(ours.as_fd(), &[0xee; 1000]).is_ok() {
            junk += 1;
        }
        set_nonblocking(&ours, false);
        set_nonblocking(&theirs, true);
        (ours, theirs, junk)
    }

    /// Reads, on a thread of its own (for at most 10 s), the `junk` frames [`stuck_pair`] left
    /// and then `count` more from `theirs`; the thread returns those `count`.
    fn read_after_junk(theirs: OwnedFd, junk: usize, count: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 2000];
            let mut frames = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while frames.len() < junk + count && Instant::now() < deadline {
                match sys::read(theirs.as_fd(), &mut buf) {
                    Ok(n) => frames.push(buf[..n].to_vec()),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            frames.split_off(junk.min(frames.len()))
        })
    }

    #[test]
    fn a_full_ring_is_waited_on_then_dropped_without_waiting_until_room_returns() {
        let (ours, theirs, junk) = stuck_pair();
        let wait = Duration::from_millis(100);
        let mut writer =
            Writer::spawn(Arc::new(ours), WriterConfig { max_wait: wait, ..config(100, 4) }).unwrap();
        for i in 0..4 {
            writer.push(&frame(i, 64)).unwrap();
        }
        let started = Instant::now();
        assert_eq!(writer.push(&frame(4, 64)), Err(Refused::Full));
        assert!(started.elapsed() >= wait, "waited for room first");
        // Congested: the next frames are dropped at once.
        let started = Instant::now();
        assert_eq!(writer.push(&frame(5, 64)), Err(Refused::Full));
        assert_eq!(writer.claim(), None);
        assert!(started.elapsed() < wait, "no second wait while nothing freed up");
        let stats = writer.stats();
        assert_eq!((stats.full, stats.waits, stats.queued), (3, 1, 4));

        // The peer reads: the thread frees slots, and a waiting producer gets one.
        let mut got = 0;
        let reader = read_after_junk(theirs, junk, 5);
        // Still congested until a slot is free: wait for the thread to catch up, then send.
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.stats().queued > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.push(&frame(6, 64)).unwrap();
        writer.stop();
        let frames = reader.join().unwrap();
        got += frames.len();
        assert_eq!(frames, [frame(0, 64), frame(1, 64), frame(2, 64), frame(3, 64), frame(6, 64)]);
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.full, stats.errors), (got as u64, 3, 0));
    }

    #[test]
    fn a_starved_thread_is_assisted_in_order_and_nothing_is_dropped() {
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&theirs, true);
        let done = Arc::new(AtomicBool::new(false));
        let collected = collector(theirs, done.clone());
        // No waiting at all: without assisting, the fifth frame would be dropped.
        let mut writer =
            Writer::spawn_starved(Arc::new(ours), WriterConfig { assist: true, ..config(100, 4) }).unwrap();
        let sent: Vec<Vec<u8>> = (0..20).map(|i| frame(i, 30 + i as usize)).collect();
        for f in &sent {
            assert_eq!(writer.push(f), Ok(()));
        }
        // Each full ring was written by the producer: frames 0..16; 16..20 are still queued.
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.assisted, stats.full, stats.queued), (16, 16, 0, 4));
        writer.shared.starved.store(false, Ordering::SeqCst);
        writer.stop();
        done.store(true, Ordering::SeqCst);
        assert!(collected.join().unwrap() == sent, "every frame arrives once, in order");
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.assisted, stats.full, stats.errors), (20, 16, 0, 0));
    }

    #[test]
    fn a_producer_never_assists_while_the_thread_is_writing() {
        let (ours, theirs, junk) = stuck_pair();
        let mut writer =
            Writer::spawn(Arc::new(ours), WriterConfig { assist: true, ..config(100, 4) }).unwrap();
        writer.push(&frame(0, 64)).unwrap();
        // Counted as its write starts: from then on the thread is blocked in write(2).
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.stats().frames == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 1..4 {
            writer.push(&frame(i, 64)).unwrap();
        }
        // Writing frame 4 now would overtake frame 0: dropped instead.
        assert_eq!(writer.push(&frame(4, 64)), Err(Refused::Full));
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.assisted, stats.full, stats.queued), (1, 0, 1, 4));
        let reader = read_after_junk(theirs, junk, 4);
        writer.stop();
        assert_eq!(reader.join().unwrap(), (0..4).map(|i| frame(i, 64)).collect::<Vec<_>>());
    }

    #[test]
    fn send_parts_writes_one_frame_inline_or_queues_a_copy_in_order() {
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&theirs, true);
        let config =
            WriterConfig { spin: Duration::ZERO, max_wait: Duration::from_secs(10), ..config(100, 8) };
        let mut writer = Writer::spawn(Arc::new(ours), config).unwrap();
        // Nothing queued: one writev on this thread, one frame on the wire.
        assert_eq!(writer.send_parts(b"head:", b"body", true), Ok(Sent::Inline));
        let mut buf = [0u8; 200];
        let n = sys::read(theirs.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"head:body");
        assert_eq!(writer.send_parts(&[0; 60], &[0; 69], true), Err(Refused::TooLong));
        writer.stop();
        assert_eq!(writer.stats().inline, 1);
        assert_eq!(writer.send_parts(b"a", b"b", true), Err(Refused::Stopped));

        // Not inline while a frame is queued: copied into a slot and written by the thread,
        // behind it. The peer reads nothing until the end, so "queued" stays in the thread's
        // hands (blocked in write(2)) for certain; with a peer that reads, the thread may have
        // written it before the next call, which would then rightly go inline.
        let (ours, theirs, junk) = stuck_pair();
        let mut writer = Writer::spawn(Arc::new(ours), config).unwrap();
        writer.push(b"queued").unwrap();
        assert_eq!(writer.send_parts(b"h2:", b"second", true), Ok(Sent::Queued));
        assert_eq!(writer.send_parts(b"h3:", b"third", false), Ok(Sent::Queued));
        let reader = read_after_junk(theirs, junk, 3);
        writer.stop();
        assert_eq!(reader.join().unwrap(), [b"queued".to_vec(), b"h2:second".to_vec(), b"h3:third".to_vec()]);
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.inline, stats.bytes), (3, 0, 6 + 9 + 8));
    }

    #[test]
    fn a_waiting_producer_is_woken_when_the_thread_frees_room() {
        let (ours, theirs, junk) = stuck_pair();
        let mut writer = Writer::spawn(
            Arc::new(ours),
            WriterConfig { max_wait: Duration::from_secs(30), ..config(100, 16) },
        )
        .unwrap();
        for i in 0..16 {
            writer.push(&frame(i, 64)).unwrap();
        }
        // Unblock the thread a little later; the producer sleeps until then, not for 30 s.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 2000];
            let mut n = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while n < junk + 17 && Instant::now() < deadline {
                match sys::read(theirs.as_fd(), &mut buf) {
                    Ok(_) => n += 1,
                    Err(_) => std::thread::sleep(Duration::from_micros(100)),
                }
            }
            n - junk
        });
        let started = Instant::now();
        writer.push(&frame(16, 64)).unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(40) && waited < Duration::from_secs(10), "{waited:?}");
        writer.stop();
        assert_eq!(reader.join().unwrap(), 17);
        let stats = writer.stats();
        assert_eq!((stats.frames, stats.full, stats.waits), (17, 0, 1));
    }

    #[test]
    fn send_writes_inline_when_nothing_is_queued_and_never_overtakes() {
        // Our end blocks when the peer's buffer is full, so a slow collector loses nothing.
        let (ours, theirs) = socket_pair(false);
        set_nonblocking(&theirs, true);
        let config =
            WriterConfig { spin: Duration::ZERO, max_wait: Duration::from_secs(10), ..config(100, 8) };
        let mut writer = Writer::spawn(Arc::new(ours), config).unwrap();
        // Nothing queued: written on this thread, counted before send returns.
        writer.slot_mut().unwrap()[..5].copy_from_slice(b"first");
        assert_eq!(writer.send(5), Ok(Sent::Inline));
        assert_eq!((writer.stats().frames, writer.stats().inline), (1, 1));
        let mut buf = [0u8; 200];
        let n = sys::read(theirs.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"first");
        assert_eq!(writer.send(129), Err(Refused::TooLong));

        // Mixed: whatever goes inline never overtakes a queued frame.
        let done = Arc::new(AtomicBool::new(false));
        let collected = collector(theirs, done.clone());
        let mut sent = Vec::new();
        let mut queued = 0;
        for i in 0..3000u32 {
            let f = frame(i, 20 + (i as usize % 80));
            writer.slot_mut().unwrap()[..f.len()].copy_from_slice(&f);
            if i % 7 < 3 {
                if writer.send(f.len()).unwrap() == Sent::Queued {
                    queued += 1;
                }
            } else {
                writer.commit(f.len()).unwrap();
            }
            sent.push(f);
            if i % 100 == 0 {
                // Let the thread drain and park now and then, so both paths are taken.
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        writer.stop();
        done.store(true, Ordering::SeqCst);
        let got = collected.join().unwrap();
        assert!(got == sent, "in order across inline and queued frames");
        let stats = writer.stats();
        assert_eq!(stats.frames, 3001);
        assert!(stats.inline > 1, "some sends went inline: {stats:?}");
        let sends = (0..3000).filter(|i| i % 7 < 3).count() as u64;
        assert_eq!(stats.inline - 1 + queued, sends, "each send went one way or the other");
    }

    #[test]
    fn send_queues_behind_a_frame_being_written() {
        let (ours, theirs, junk) = stuck_pair();
        let mut writer = Writer::spawn(Arc::new(ours), config(100, 8)).unwrap();
        writer.push(b"queued first").unwrap();
        // The thread is blocked writing that frame: the next one must wait its turn.
        writer.slot_mut().unwrap()[..6].copy_from_slice(b"second");
        assert_eq!(writer.send(6), Ok(Sent::Queued));
        let reader = read_after_junk(theirs, junk, 2);
        writer.stop();
        assert_eq!(reader.join().unwrap(), [b"queued first".to_vec(), b"second".to_vec()]);
        assert_eq!((writer.stats().frames, writer.stats().inline), (2, 0));
    }
}
