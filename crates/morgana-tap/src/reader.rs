//! The reader thread: one `poll(2)` wake-up, one batch, one delivery.
//!
//! Flow control: at most [`ReaderConfig::max_in_flight`] batches are out with the consumer at a
//! time. Each [`Batch`] carries a ticket that returns its slot when the batch is dropped (the
//! consumer is done with it, or it was refused). While every slot is taken, the thread keeps
//! filling the pending batch up to its caps and then stops reading, so further frames wait in
//! the kernel's queue (and the kernel drops beyond it, like a full NIC ring) instead of piling up
//! in memory or costing a crossing each.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Room for one read: the largest frame a TAP can hand out (64 KiB MTU plus headers).
pub const READ_WINDOW: usize = 65_536 + 64;

/// Caps for one batch and for the batches out with the consumer.
#[derive(Clone, Copy, Debug)]
pub struct ReaderConfig {
    /// Frames longer than this (Ethernet header included) are dropped and counted.
    pub max_frame: usize,
    /// At most this many frames per batch.
    pub max_batch_frames: usize,
    /// A batch is closed once it holds at least this many bytes.
    pub max_batch_bytes: usize,
    /// Batches delivered but not yet dropped by the consumer, at most.
    pub max_in_flight: usize,
}

impl Default for ReaderConfig {
    /// 1514-byte frames, 64 frames or 256 KiB per batch, 4 batches in flight.
    fn default() -> Self {
        ReaderConfig { max_frame: 1514, max_batch_frames: 64, max_batch_bytes: 256 * 1024, max_in_flight: 4 }
    }
}

/// Frames read in one wake-up: `data` holds them back to back, `lengths[i]` is the length of
/// frame `i`. Dropping the batch (after moving `data` and `lengths` out, or not) gives its
/// in-flight slot back to the reader.
#[derive(Debug)]
pub struct Batch {
    /// The frames, back to back, exactly as long as the sum of `lengths`.
    pub data: Vec<u8>,
    /// Length of each frame.
    pub lengths: Vec<u32>,
    _ticket: Ticket,
}

/// What the delivery callback did with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Taken (queued for the consumer).
    Delivered,
    /// Refused (consumer queue full or gone); its frames count as dropped.
    Dropped,
}

/// Counters of a reader, readable while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Frames handed over in delivered batches.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Frames in refused batches.
    pub dropped: u64,
    /// Frames longer than `max_frame`.
    pub oversized: u64,
    /// Times the reader stopped reading because every in-flight slot was taken.
    pub stalls: u64,
    /// Super-frames made by software receive coalescing ([`crate::gro`]).
    pub super_frames: u64,
    /// Received TCP segments that went into those super-frames.
    pub coalesced_segments: u64,
}

/// State shared by the reader thread, its [`Reader`] and the tickets of its batches.
struct Shared {
    /// Wakes the thread: stop requests and returned slots.
    wake: OwnedFd,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    /// The thread waits for a slot; the next returned ticket must wake it.
    waiting: AtomicBool,
    frames: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    dropped: AtomicU64,
    oversized: AtomicU64,
    stalls: AtomicU64,
}

/// One in-flight slot, returned on drop.
struct Ticket(Arc<Shared>);

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.swap(false, Ordering::SeqCst) {
            let _ = sys::eventfd_signal(self.0.wake.as_fd());
        }
    }
}

/// A running reader thread. [`Reader::stop`] (or dropping it) wakes the thread through its
/// eventfd and joins it; the delivery callback is dropped on that thread before `stop` returns.
pub struct Reader {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("running", &self.thread.is_some()).finish()
    }
}

impl Reader {
    pub(crate) fn spawn<F>(fd: Arc<OwnedFd>, config: ReaderConfig, mut deliver: F) -> io::Result<Reader>
    where
        F: FnMut(Batch) -> Delivery + Send + 'static,
    {
        let shared = Arc::new(Shared {
            wake: sys::eventfd()?,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
        });
        let error = Arc::new(Mutex::new(None));
        let thread = {
            let (shared, error) = (shared.clone(), error.clone());
            std::thread::Builder::new().name("morgana-tap".into()).spawn(move || {
                if let Err(e) = run(&fd, &shared, config, &mut deliver) {
                    *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            })?
        };
        Ok(Reader { shared, thread: Some(thread), error })
    }

    /// Counters so far.
    pub fn stats(&self) -> ReaderStats {
        let c = &self.shared;
        ReaderStats {
            frames: c.frames.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            oversized: c.oversized.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            ..ReaderStats::default()
        }
    }

    /// The read error that ended the thread early (e.g. the interface was deleted), if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|e| e.to_string())
    }

    /// Stops the thread and waits for it; idempotent.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.stopping.store(true, Ordering::SeqCst);
            // An eventfd write only fails when the counter would overflow, which cannot happen
            // with a handful of signals between resets.
            let _ = sys::eventfd_signal(self.shared.wake.as_fd());
            let _ = thread.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<F>(fd: &OwnedFd, shared: &Arc<Shared>, config: ReaderConfig, deliver: &mut F) -> io::Result<()>
where
    F: FnMut(Batch) -> Delivery,
{
    let max_frames = config.max_batch_frames.max(1);
    let max_in_flight = config.max_in_flight.max(1);
    let mut scratch = vec![0u8; config.max_batch_bytes + READ_WINDOW];
    let mut lengths: Vec<u32> = Vec::with_capacity(max_frames);
    let mut used = 0;
    let mut failure = None;
    loop {
        if !lengths.is_empty() {
            if shared.in_flight.load(Ordering::SeqCst) < max_in_flight {
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
                let count = lengths.len() as u64;
                let batch = Batch {
                    data: scratch[..used].to_vec(),
                    lengths: lengths.clone(),
                    _ticket: Ticket(shared.clone()),
                };
                match deliver(batch) {
                    Delivery::Delivered => {
                        shared.frames.fetch_add(count, Ordering::Relaxed);
                        shared.bytes.fetch_add(used as u64, Ordering::Relaxed);
                        shared.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Delivery::Dropped => {
                        shared.dropped.fetch_add(count, Ordering::Relaxed);
                    }
                }
                used = 0;
                lengths.clear();
            } else {
                // Ask the next returned ticket for a wake-up, then look again so a slot freed
                // in between is not missed.
                shared.waiting.store(true, Ordering::SeqCst);
                if shared.in_flight.load(Ordering::SeqCst) < max_in_flight {
                    shared.waiting.store(false, Ordering::SeqCst);
                    continue;
                }
            }
        }
        if let Some(e) = failure.take() {
            return Err(e);
        }
        let room = lengths.len() < max_frames && used < config.max_batch_bytes;
        if !room {
            shared.stalls.fetch_add(1, Ordering::Relaxed);
        }
        let (tap_events, wake_events) = match sys::poll2(room.then(|| fd.as_fd()), shared.wake.as_fd()) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if wake_events != 0 {
            sys::eventfd_drain(shared.wake.as_fd());
            if shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        if !room || tap_events == 0 {
            continue;
        }
        // Continue the pending batch: its frames so far stay where they are.
        let count = lengths.len();
        lengths.resize(max_frames, 0);
        let (drained, error) = drain(
            fd.as_fd(),
            &mut scratch[used..],
            &mut lengths[count..],
            config.max_frame,
            config.max_batch_bytes - used,
        );
        lengths.truncate(count + drained.frames);
        used += drained.bytes;
        shared.oversized.fetch_add(drained.oversized, Ordering::Relaxed);
        // Deliver what was read, then report the error.
        failure = error;
        if failure.is_some() && lengths.is_empty() {
            return Err(failure.take().unwrap_or_else(|| io::Error::other("read failed")));
        }
    }
}

/// What one [`drain`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Frames stored, back to back from the start of the buffer, their lengths in `lengths`.
    pub frames: usize,
    /// Bytes of those frames.
    pub bytes: usize,
    /// Frames longer than `max_frame`, read and thrown away.
    pub oversized: u64,
}

/// Reads the frames that are ready on the non-blocking descriptor `fd` into `buf`, back to
/// back, and their lengths into `lengths`, until the descriptor has none left, `lengths` is
/// full, `max_bytes` are stored, or `buf` has less than [`READ_WINDOW`] bytes of room (a read
/// needs room for the longest frame a TAP hands out). Frames longer than `max_frame` are read,
/// dropped and counted. A read error other than `EAGAIN`/`EINTR` ends the drain and comes back
/// next to what was read before it. Allocates nothing: the caller's buffers are reused.
pub fn drain(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    lengths: &mut [u32],
    max_frame: usize,
    max_bytes: usize,
) -> (Drained, Option<io::Error>) {
    let mut out = Drained::default();
    while out.frames < lengths.len() && out.bytes < max_bytes && buf.len() - out.bytes >= READ_WINDOW {
        match sys::read(fd, &mut buf[out.bytes..out.bytes + READ_WINDOW]) {
            Ok(0) => break,
            Ok(n) if n > max_frame => out.oversized += 1,
            Ok(n) => {
                lengths[out.frames] = n as u32;
                out.frames += 1;
                out.bytes += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::mpsc;

    /// A datagram socket pair behaves like a TAP descriptor: one read per frame, boundaries kept.
    fn socket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: socketpair just created both descriptors; each is owned once.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn batches_frames_and_drops_oversized_ones() {
        let (ours, theirs) = socket_pair();
        // Queue everything before the reader starts, so the first wake-up sees all of it.
        for i in 0..100u32 {
            let frame = vec![i as u8; 60 + i as usize];
            sys::write(theirs.as_fd(), &frame).unwrap();
        }
        sys::write(theirs.as_fd(), &[0u8; 2000]).unwrap();
        let (tx, rx) = mpsc::channel();
        let config = ReaderConfig::default();
        let mut reader = Reader::spawn(Arc::new(ours), config, move |b| {
            tx.send(b).unwrap();
            Delivery::Delivered
        })
        .unwrap();
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        assert_eq!(first.lengths.len(), 64, "one batch per wake-up, capped at 64 frames");
        assert_eq!(second.lengths.len(), 36);
        let all: Vec<u32> = first.lengths.iter().chain(&second.lengths).copied().collect();
        assert_eq!(all, (0..100).map(|i| 60 + i).collect::<Vec<u32>>());
        assert_eq!(first.data.len() as u32, first.lengths.iter().sum::<u32>());
        assert!(first.data[..60].iter().all(|&b| b == 0));
        assert!(first.data[60..121].iter().all(|&b| b == 1));
        // The oversized frame follows in its own wake-up; wait until the reader has seen it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while reader.stats().oversized == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        reader.stop();
        let stats = reader.stats();
        assert_eq!((stats.frames, stats.batches, stats.oversized, stats.dropped), (100, 2, 1, 0));
        drop((first, second));
        assert!(reader.error().is_none());
        drop(theirs);
    }

    #[test]
    fn refused_batches_are_counted_and_stop_joins() {
        let (ours, theirs) = socket_pair();
        for _ in 0..10 {
            sys::write(theirs.as_fd(), &[7u8; 100]).unwrap();
        }
        let mut reader =
            Reader::spawn(Arc::new(ours), ReaderConfig::default(), |_| Delivery::Dropped).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while reader.stats().dropped < 10 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        reader.stop();
        reader.stop();
        assert_eq!(reader.stats().dropped, 10);
        assert_eq!(reader.stats().frames, 0);
    }

    #[test]
    fn a_slow_consumer_gets_fuller_batches_not_more_of_them() {
        let (ours, theirs) = socket_pair();
        let (tx, rx) = mpsc::channel();
        let config = ReaderConfig { max_in_flight: 1, ..ReaderConfig::default() };
        let mut reader = Reader::spawn(Arc::new(ours), config, move |b| {
            tx.send(b).unwrap();
            Delivery::Delivered
        })
        .unwrap();
        sys::write(theirs.as_fd(), &[1u8; 80]).unwrap();
        // The consumer holds the first batch: its one slot is taken.
        let first = rx.recv().unwrap();
        assert_eq!(first.lengths, [80]);
        for _ in 0..150 {
            sys::write(theirs.as_fd(), &[2u8; 70]).unwrap();
        }
        // The reader fills one batch to its 64-frame cap, then stops reading and waits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while reader.stats().stalls == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(reader.stats().stalls >= 1);
        assert!(rx.try_recv().is_err(), "nothing more is delivered while the slot is taken");
        drop(first);
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 150 {
            let batch = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
            sizes.push(batch.lengths.len());
        }
        assert_eq!(sizes[0], 64, "the batch filled while waiting comes first: {sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 150);
        reader.stop();
        assert_eq!(reader.stats().dropped, 0);
        assert_eq!(reader.stats().frames, 151);
    }

    #[test]
    fn drain_reads_what_is_ready_into_the_callers_buffers() {
        let (ours, theirs) = socket_pair();
        for i in 0..5u8 {
            sys::write(theirs.as_fd(), &vec![i; 100 + i as usize]).unwrap();
        }
        sys::write(theirs.as_fd(), &[9u8; 3000]).unwrap();
        sys::write(theirs.as_fd(), &[7u8; 60]).unwrap();
        let mut buf = vec![0u8; 2 * READ_WINDOW];
        let mut lengths = [0u32; 3];
        // The lengths array caps the drain: three frames, the rest stays queued.
        let (d, e) = drain(ours.as_fd(), &mut buf, &mut lengths, 2000, usize::MAX);
        assert!(e.is_none());
        assert_eq!((d.frames, d.bytes, d.oversized), (3, 303, 0));
        assert_eq!(lengths, [100, 101, 102]);
        assert!(buf[..100].iter().all(|&b| b == 0) && buf[201..303].iter().all(|&b| b == 2));
        // Then the rest, into the same memory: the 3000-byte frame is over max_frame.
        let (d, e) = drain(ours.as_fd(), &mut buf, &mut lengths, 2000, usize::MAX);
        assert!(e.is_none());
        assert_eq!((d.frames, d.oversized), (3, 1));
        assert_eq!(lengths, [103, 104, 60]);
        assert!(buf[207..267].iter().all(|&b| b == 7));
        // Nothing ready: nothing read, no error.
        let (d, e) = drain(ours.as_fd(), &mut buf, &mut lengths, 2000, usize::MAX);
        assert!(e.is_none() && d == Drained::default());
        // Less room than the longest frame: no read at all.
        sys::write(theirs.as_fd(), &[1u8; 80]).unwrap();
        let (d, _) = drain(ours.as_fd(), &mut buf[..READ_WINDOW - 1], &mut lengths, 2000, usize::MAX);
        assert_eq!(d.frames, 0);
        // A byte cap closes the batch once reached.
        sys::write(theirs.as_fd(), &[2u8; 80]).unwrap();
        let (d, _) = drain(ours.as_fd(), &mut buf, &mut lengths, 2000, 50);
        assert_eq!((d.frames, d.bytes), (1, 80));
        let (d, _) = drain(ours.as_fd(), &mut buf, &mut lengths, 2000, 50);
        assert_eq!((d.frames, d.bytes), (1, 80));
    }
}
