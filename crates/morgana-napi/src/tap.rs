//! Linux TAP device bindings: open; transmission through the writer thread's ring, whose slab
//! JS fills in place (`txSlab` + `commit`) or copies into (`write`); and reception on the event
//! loop thread into buffers JS lends (`rxLend`, see `tap_rx.rs`), one JS call per batch.

use crate::tap_rx::{RxReader, RX_BUFFER_LENGTH, RX_FRAMES};
use morgana_tap::fdpass::{self, Received};
use morgana_tap::{Refused, Slab, Tap, TapOptions, Writer, WriterConfig, WriterStats, MAX_OFFLOAD_FRAME};
use napi::bindgen_prelude::{BufferSlice, Function, JsValue, Unknown};
use napi::{CleanupEnvHook, Env, Error, Result, Status};
use napi_derive::napi;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

type Running = RxReader;

type Shared = Arc<Mutex<Option<Running>>>;

fn shutdown(shared: &Mutex<Option<Running>>) {
    let running = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(running) = running {
        running.stop();
    }
}

/// `commit` queued the frame, and the ring has no free slot for the next one.
const QUEUED_NO_SLOT: i32 = -1;
const EBADF: i32 = 9;
const EINVAL: i32 = 22;
const ENOBUFS: i32 = 105;

/// A refused frame as a negative errno.
fn refused(e: Refused) -> i32 {
    -match e {
        Refused::Full => ENOBUFS,
        Refused::TooLong => EINVAL,
        Refused::Stopped => EBADF,
    }
}

/// Counters kept on the Rust side of a TAP device.
#[napi(object)]
pub struct TapNativeStats {
    /// Frames handed to JS.
    pub rx_frames: f64,
    /// Bytes of those frames.
    pub rx_bytes: f64,
    /// Batches handed to JS.
    pub rx_batches: f64,
    /// Frames longer than the MTU allows, dropped by the reader.
    pub rx_oversized: f64,
    /// Super-frames made by software receive coalescing (`rxCoalesce`).
    pub rx_super_frames: f64,
    /// Received TCP segments that went into them.
    pub rx_coalesced_segments: f64,
    /// The read error that stopped the reader early, if any.
    pub rx_error: Option<String>,
    /// Frames written to the device (counted as the write starts).
    pub tx_frames: f64,
    /// Bytes of those frames.
    pub tx_bytes: f64,
    /// Of `tx_frames`, those `send` wrote on the JS thread.
    pub tx_inline: f64,
    /// Frames dropped because the transmit ring was full.
    pub tx_queue_full: f64,
    /// Frames the device refused (`write(2)` failed).
    pub tx_errors: f64,
    /// Frames queued and not yet written.
    pub tx_queued: f64,
    /// Times the writer thread found the ring empty and parked.
    pub tx_parks: f64,
    /// Times JS found the ring full and waited for room.
    pub tx_waits: f64,
    /// Of `tx_frames`, those JS wrote from a full ring itself because the writer thread was
    /// not running (starved of CPU) rather than drop the frame.
    pub tx_assisted: f64,
    /// The first write error, if any.
    pub tx_error: Option<String>,
}

/// An open TAP interface with its writer thread and its reader on the event loop.
#[napi]
pub struct TapHandle {
    tap: Option<Tap>,
    /// The producing end of the transmit ring; only the JS thread touches it, so no lock.
    writer: Option<Writer>,
    /// `tx_slab` was called (V8 must not see two external buffers over one memory).
    slab_lent: bool,
    tx_after_close: WriterStats,
    tx_error_after_close: Option<String>,
    running: Shared,
    stats_after_close: Option<morgana_tap::ReaderStats>,
    hook: Option<CleanupEnvHook<Weak<Mutex<Option<Running>>>>>,
}

#[napi]
impl TapHandle {
    /// Opens TAP interface `name` (in network namespace `netns` if given), sets the kernel-side
    /// MTU, and starts the writer thread (a ring of `WriterConfig::for_mtu(mtu)`) and the
    /// reader, which, once buffers are lent (`rxLend`), reads the frames that are ready into
    /// them and calls `onBatch(count)` on the event loop thread.
    /// With `vnetHdr`, asks for a 12-byte `virtio_net_hdr` in front of every frame both ways and
    /// for checksum and TSO offloads (see `vnetHdr` and `offloads` for what the kernel granted);
    /// frames are then up to 12 + 14 + 65,535 bytes and the ring's slots that long.
    /// Throws an error whose message starts with its code (`ERR_TAP_PERMISSION: …`).
    #[napi(factory)]
    pub fn open(
        env: Env,
        name: String,
        netns: Option<String>,
        mtu: u32,
        vnet_hdr: bool,
        on_batch: Function<u32, ()>,
    ) -> Result<TapHandle> {
        let options = TapOptions { name: &name, netns: netns.as_deref(), mtu: Some(mtu), vnet_hdr };
        let tap = Tap::open(&options)
            .map_err(|e| Error::new(Status::GenericFailure, format!("{}: {e}", e.code())))?;
        TapHandle::start(env, tap, mtu, on_batch)
    }

    /// Like `open`, for a TAP descriptor opened elsewhere (received with `tapReceiveFds`): this
    /// handle owns `fd` from then on (also when adopting fails). The MTU is not set on the
    /// kernel side, only used for the rings. A descriptor opened with the `virtio_net_hdr`
    /// (`tapSendFds` with `vnetHdr`) keeps it: see `vnetHdr` and `offloads`.
    #[napi(factory)]
    pub fn adopt(env: Env, fd: i32, mtu: u32, on_batch: Function<u32, ()>) -> Result<TapHandle> {
        let fd = owned_fd(fd)?;
        let tap =
            Tap::adopt(fd).map_err(|e| Error::new(Status::GenericFailure, format!("{}: {e}", e.code())))?;
        TapHandle::start(env, tap, mtu, on_batch)
    }

    fn start(env: Env, tap: Tap, mtu: u32, on_batch: Function<u32, ()>) -> Result<TapHandle> {
        let offload = tap.vnet_hdr();
        let writer = tap
            .spawn_writer(if offload { WriterConfig::for_offload() } else { WriterConfig::for_mtu(mtu) })
            .map_err(|e| Error::new(Status::GenericFailure, format!("ERR_TAP_OPEN: writer thread: {e}")))?;
        let max_frame = if offload { MAX_OFFLOAD_FRAME } else { mtu as usize + 14 };
        // SAFETY: `env` and `on_batch` are this call's live values; the descriptor stays open
        // until `close` (or drop) has stopped the reader.
        let reader = unsafe {
            RxReader::start(env.raw(), tap.as_fd().as_raw_fd(), max_frame, on_batch.value().value)?
        };
        let running: Shared = Arc::new(Mutex::new(Some(reader)));
        // Stop reading before Node tears the environment down (process exit with the device
        // still open), so nothing calls into a dying environment.
        let hook = env.add_env_cleanup_hook(Arc::downgrade(&running), |weak| {
            if let Some(shared) = weak.upgrade() {
                shutdown(&shared);
            }
        })?;
        Ok(TapHandle {
            tap: Some(tap),
            writer: Some(writer),
            slab_lent: false,
            tx_after_close: WriterStats::default(),
            tx_error_after_close: None,
            running,
            stats_after_close: None,
            hook: Some(hook),
        })
    }

    /// The interface name the kernel assigned.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.tap.as_ref().map(|t| t.name().to_owned()).unwrap_or_default()
    }

    /// Whether frames carry a 12-byte `virtio_net_hdr` in front, both ways (asked for with
    /// `vnetHdr` and granted by the kernel); false after close.
    #[napi(getter)]
    pub fn vnet_hdr(&self) -> bool {
        self.tap.as_ref().is_some_and(Tap::vnet_hdr)
    }

    /// The `TUN_F_*` offloads in effect (`TUN_F_CSUM` 1, `TUN_F_TSO4` 2, `TUN_F_TSO6` 4); 0
    /// without the header or after close.
    #[napi(getter)]
    pub fn offloads(&self) -> u32 {
        self.tap.as_ref().map_or(0, Tap::offloads)
    }

    /// The transmit ring's memory as one Buffer (slot `i` at `i * txSlotLength`), for filling
    /// the reserved slot in place; `null` when the runtime cannot wrap external memory (then
    /// use `write`). The memory lives as long as this Buffer or the device, whichever is
    /// longer. Lent once, right after opening: later calls return `null`.
    #[napi]
    pub fn tx_slab<'env>(&mut self, env: &'env Env) -> Result<Option<BufferSlice<'env>>> {
        let Some(writer) = &self.writer else { return Ok(None) };
        if std::mem::replace(&mut self.slab_lent, true) {
            return Ok(None);
        }
        let slab: Slab = writer.slab();
        let (ptr, len) = (slab.as_ptr(), slab.len());
        // SAFETY: `ptr` points at `len` bytes owned by the ring, which `slab` (moved into the
        // finalizer) keeps allocated until V8 collects the Buffer. JS writes into it only the
        // slot `claim`/`commit` reserved; the writer thread reads slots only through raw
        // pointers passed to write(2), so a misbehaving script can garble its own frames but
        // not Rust memory. The slice napi-rs builds over it lives only inside this call, while
        // the ring is empty (it is asked for right after opening) and the thread reads nothing.
        let buffer = unsafe { BufferSlice::from_external(env, ptr, len, slab, |_, slab| drop(slab))? };
        // A runtime without external buffers hands back a copy, which the thread never sees.
        Ok((buffer.as_ptr() == ptr.cast_const()).then_some(buffer))
    }

    /// Bytes per transmit slot (at least `mtu + 14`); 0 after close.
    #[napi(getter)]
    pub fn tx_slot_length(&self) -> u32 {
        self.writer.as_ref().map_or(0, |w| w.slot_len() as u32)
    }

    /// Number of transmit slots; 0 after close.
    #[napi(getter)]
    pub fn tx_slots(&self) -> u32 {
        self.writer.as_ref().map_or(0, |w| w.slots() as u32)
    }

    /// The index of the free slot the next frame goes into, or -1 when the ring is full, or
    /// -9 (EBADF) after close. A full ring whose writer thread is not writing is written out on
    /// this thread (`txAssisted`); otherwise it is waited on for up to 1 ms (less once the
    /// writer has caught up) unless a wait already timed out since the last free slot.
    #[napi]
    pub fn reserve(&mut self) -> i32 {
        let Some(writer) = &mut self.writer else { return -EBADF };
        writer.reserve().map_or(QUEUED_NO_SLOT, |slot| slot as i32)
    }

    /// Like `reserve` (waiting included), for a frame ready to be sent: -1 (ring full) counts
    /// it as dropped (`txQueueFull`).
    #[napi]
    pub fn claim(&mut self) -> i32 {
        let Some(writer) = &mut self.writer else { return -EBADF };
        writer.claim().map_or(QUEUED_NO_SLOT, |slot| slot as i32)
    }

    /// Queues the first `length` bytes of the slot `reserve`, `claim` or the previous `commit`
    /// returned, and wakes the writer. Returns the next free slot (≥ 0), or -1 when the frame
    /// was queued but the ring is now full; below -1 the frame was not queued: -105 (ENOBUFS,
    /// no slot was free; counted), -22 (EINVAL, longer than a slot), -9 (EBADF, closed).
    #[napi]
    pub fn commit(&mut self, length: u32) -> i32 {
        let Some(writer) = &mut self.writer else { return -EBADF };
        match writer.commit(length as usize) {
            Ok(()) => writer.try_reserve().map_or(QUEUED_NO_SLOT, |slot| slot as i32),
            Err(e) => refused(e),
        }
    }

    /// Like `commit`, but when nothing is queued the frame is written at once on this thread
    /// (no wake-up, no thread hop: lower latency and CPU for small exchanges) and its slot
    /// stays free for the next one. Same return values as `commit`.
    #[napi]
    pub fn send(&mut self, length: u32) -> i32 {
        let Some(writer) = &mut self.writer else { return -EBADF };
        match writer.send(length as usize) {
            // Inline or queued alike, the next frame goes into the next free slot.
            Ok(_) => writer.try_reserve().map_or(QUEUED_NO_SLOT, |slot| slot as i32),
            Err(e) => refused(e),
        }
    }

    /// Sends one frame made of `head` followed by `source[at..at+length]` (a header built apart
    /// from a frame this device does not own): with `inline` and nothing queued, written at once
    /// on this thread by one `writev(2)` straight from both buffers, without a copy; otherwise
    /// both are copied into a free slot (waiting or assisting as `claim` does) and queued. Same
    /// return values as `send`; -105 (ENOBUFS) counts the frame as dropped (`txQueueFull`),
    /// -22 (EINVAL) is also a range outside `source`.
    #[napi]
    pub fn send_parts(&mut self, head: &[u8], source: &[u8], at: u32, length: u32, inline: bool) -> i32 {
        let Some(writer) = &mut self.writer else { return -EBADF };
        let Some(body) = source.get(at as usize..at as usize + length as usize) else { return -EINVAL };
        match writer.send_parts(head, body, inline) {
            Ok(_) => writer.try_reserve().map_or(QUEUED_NO_SLOT, |slot| slot as i32),
            Err(e) => refused(e),
        }
    }

    /// Copies `frame[0..length]` into the transmit ring. Returns `length`, or a negative errno:
    /// -105 (ENOBUFS, ring full; counted), -22 (EINVAL, bad length), -9 (EBADF, closed).
    /// Any slot index JS held is stale afterwards: `claim` again.
    #[napi]
    pub fn write(&mut self, frame: &[u8], length: u32) -> i32 {
        let Some(writer) = &mut self.writer else { return -EBADF };
        let Some(bytes) = frame.get(..length as usize) else { return -EINVAL };
        match writer.push(bytes) {
            Ok(()) => length as i32,
            Err(e) => refused(e),
        }
    }

    /// Lends the buffers received frames are read into, back to back, with their lengths:
    /// `frames` of at least `rxBufferLength` bytes, `lengths` of at least `rxBatchFrames`
    /// entries. Batch `onBatch(count)` is in them until the callback returns; a caller that
    /// keeps frames lends new buffers before the next batch. Replaces earlier buffers; reading
    /// starts with the first call. Does nothing after close.
    #[napi(ts_args_type = "frames: Buffer, lengths: Uint32Array")]
    pub fn rx_lend(&self, frames: Unknown<'_>, lengths: Unknown<'_>) -> Result<()> {
        let guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            // SAFETY: both are live values of this call, on the JS thread.
            Some(reader) => unsafe { reader.lend(frames.value().value, lengths.value().value) },
            None => Ok(()),
        }
    }

    /// Turns software receive coalescing of TCP segments on or off (a TAP without the
    /// `virtio_net_hdr`; the kernel coalesces for one with it). While on, a lengths entry of a
    /// coalesced frame holds `length | gsoSize << 17` (`gsoSize`: its first segment's payload).
    #[napi]
    pub fn rx_coalesce(&self, on: bool) {
        let guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reader) = &*guard {
            reader.set_coalesce(on);
        }
    }

    /// Bytes the frame buffer given to `rxLend` must have.
    #[napi(getter)]
    pub fn rx_buffer_length(&self) -> u32 {
        RX_BUFFER_LENGTH as u32
    }

    /// Entries the lengths array given to `rxLend` must have: the most frames in one batch.
    #[napi(getter)]
    pub fn rx_batch_frames(&self) -> u32 {
        RX_FRAMES as u32
    }

    /// Counters of the reader and the writer thread.
    #[napi]
    pub fn stats(&self) -> TapNativeStats {
        let (tx, tx_error) = match &self.writer {
            Some(w) => (w.stats(), w.error()),
            None => (self.tx_after_close, self.tx_error_after_close.clone()),
        };
        let guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let (s, error) = match (&*guard, self.stats_after_close) {
            (Some(r), _) => (r.stats(), r.error()),
            (None, Some(s)) => (s, None),
            (None, None) => (Default::default(), None),
        };
        TapNativeStats {
            rx_frames: s.frames as f64,
            rx_bytes: s.bytes as f64,
            rx_batches: s.batches as f64,
            rx_oversized: s.oversized as f64,
            rx_super_frames: s.super_frames as f64,
            rx_coalesced_segments: s.coalesced_segments as f64,
            rx_error: error,
            tx_frames: tx.frames as f64,
            tx_bytes: tx.bytes as f64,
            tx_queue_full: tx.full as f64,
            tx_errors: tx.errors as f64,
            tx_queued: tx.queued as f64,
            tx_parks: tx.parks as f64,
            tx_inline: tx.inline as f64,
            tx_waits: tx.waits as f64,
            tx_assisted: tx.assisted as f64,
            tx_error,
        }
    }

    /// Flushes the transmit ring and joins the writer (nothing is written afterwards), stops
    /// the reader (releasing the event loop and the lent buffers), and closes the descriptor.
    /// Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) -> Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer.stop();
            self.tx_after_close = writer.stats();
            self.tx_error_after_close = writer.error();
        }
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(running) = running {
            self.stats_after_close = Some(running.stats());
            running.stop();
        }
        self.tap = None;
        if let Some(hook) = self.hook.take() {
            env.remove_env_cleanup_hook(hook)?;
        }
        Ok(())
    }
}

impl Drop for TapHandle {
    /// A handle collected without `close()` still stops its threads and closes its descriptor.
    fn drop(&mut self) {
        // Dropping the writer flushes and joins it.
        self.writer = None;
        shutdown(&self.running);
    }
}

/// Takes ownership of a descriptor number JS handed over.
fn owned_fd(fd: i32) -> Result<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::new(Status::InvalidArg, format!("ERR_TAP_OPEN: {fd} is not an open descriptor")));
    }
    // SAFETY: the caller hands this open descriptor over and uses it no more.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A connected pair of `SOCK_SEQPACKET` UNIX sockets, close-on-exec: `[parent, child]`
/// descriptor numbers, owned by the caller (close them with `fs.closeSync`). Give the child's
/// to a helper through `spawn`'s stdio; receive what it sends with `tapReceiveFds`.
#[napi]
pub fn tap_socket_pair() -> Result<Vec<i32>> {
    let (a, b) = fdpass::socket_pair()
        .map_err(|e| Error::new(Status::GenericFailure, format!("ERR_TAP_PASS: socketpair: {e}")))?;
    Ok(vec![a.into_raw_fd(), b.into_raw_fd()])
}

/// In a helper process inside a network namespace: opens (attaching to) each TAP interface of
/// `names` there and sends their descriptors, with the names as payload, over `socketFd` in
/// one message; closes its own copies afterwards. With `vnetHdr` they are opened with the
/// `virtio_net_hdr` and its offloads (as `TapHandle.open`'s `vnetHdr`), which `adopt` keeps.
#[napi]
pub fn tap_send_fds(socket_fd: i32, names: Vec<String>, vnet_hdr: Option<bool>) -> Result<()> {
    let mut taps = Vec::with_capacity(names.len());
    for name in &names {
        let tap =
            Tap::open(&TapOptions { name, netns: None, mtu: None, vnet_hdr: vnet_hdr.unwrap_or(false) })
                .map_err(|e| Error::new(Status::GenericFailure, format!("{}: {e}", e.code())))?;
        taps.push(tap);
    }
    // SAFETY: the descriptor stays open for this call (the caller owns it).
    let socket = unsafe { BorrowedFd::borrow_raw(socket_fd) };
    let fds: Vec<BorrowedFd<'_>> = taps.iter().map(|t| t.as_fd()).collect();
    fdpass::send_fds(socket, &fds, names.join(" ").as_bytes())
        .map_err(|e| Error::new(Status::GenericFailure, format!("ERR_TAP_PASS: sendmsg: {e}")))
}

/// Receives, without blocking, what `tapSendFds` sent on `socketFd`: the descriptor numbers
/// (now owned by the caller: adopt or close them) in the order of the names, or `null` when
/// nothing has arrived yet. Throws `ERR_TAP_PASS` when the peer closed without sending.
#[napi]
pub fn tap_receive_fds(socket_fd: i32) -> Result<Option<Vec<i32>>> {
    // SAFETY: the descriptor stays open for this call (the caller owns it).
    let socket = unsafe { BorrowedFd::borrow_raw(socket_fd) };
    match fdpass::recv_fds(socket) {
        Ok(Received::Empty) => Ok(None),
        Ok(Received::Closed) => Err(Error::new(
            Status::GenericFailure,
            "ERR_TAP_PASS: the helper closed the socket without sending",
        )),
        Ok(Received::Message(_, fds)) => Ok(Some(fds.into_iter().map(|fd| fd.into_raw_fd()).collect())),
        Err(e) => Err(Error::new(Status::GenericFailure, format!("ERR_TAP_PASS: recvmsg: {e}"))),
    }
}
