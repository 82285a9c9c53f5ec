//! Linux TAP device bindings: open, write, and the reader thread's batches delivered to a JS
//! callback through one bounded threadsafe function call per wake-up.

use morgana_tap::{Batch, Delivery, Reader, ReaderConfig, Tap, TapOptions};
use napi::bindgen_prelude::{Buffer, FnArgs, Function, Uint32Array};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{CleanupEnvHook, Env, Error, Result, Status};
use napi_derive::napi;
use std::sync::{Arc, Mutex, Weak};

/// Batches handed to the JS thread and not yet taken up, at most. Beyond that the reader keeps
/// filling its pending batch and then leaves frames in the kernel's queue.
const IN_FLIGHT_BATCHES: usize = 4;
/// Hard bound of the threadsafe function's queue (the in-flight limit keeps it from filling);
/// a batch refused by a full queue is dropped and counted.
const QUEUED_BATCHES: usize = 16;

/// Called as `onBatch(frames, lengths)`: two arguments, not one array.
type BatchArgs = FnArgs<(Buffer, Uint32Array)>;
type BatchTsfn = ThreadsafeFunction<Batch, (), BatchArgs, Status, false, false, QUEUED_BATCHES>;

/// The reader thread and the threadsafe function it calls, torn down together.
struct Running {
    reader: Reader,
    tsfn: Arc<BatchTsfn>,
}

impl Running {
    fn shutdown(mut self) {
        // Joining the thread drops its clone of the threadsafe function, so ours is the last.
        self.reader.stop();
        if let Ok(tsfn) = Arc::try_unwrap(self.tsfn) {
            // Abort rather than release: batches still queued are discarded and the event loop
            // is let go at once.
            #[allow(deprecated)]
            let _ = tsfn.abort();
        }
    }
}

type Shared = Arc<Mutex<Option<Running>>>;

fn shutdown(shared: &Mutex<Option<Running>>) {
    let running = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(running) = running {
        running.shutdown();
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
    /// Frames dropped because the JS queue was full.
    pub rx_queue_dropped: f64,
    /// Frames longer than the MTU allows, dropped by the reader.
    pub rx_oversized: f64,
    /// Times the reader paused reading because JS had not caught up.
    pub rx_stalls: f64,
    /// The read error that stopped the reader early, if any.
    pub rx_error: Option<String>,
}

/// An open TAP interface with its reader thread.
#[napi]
pub struct TapHandle {
    tap: Option<Tap>,
    running: Shared,
    stats_after_close: Option<morgana_tap::ReaderStats>,
    hook: Option<CleanupEnvHook<Weak<Mutex<Option<Running>>>>>,
}

#[napi]
impl TapHandle {
    /// Opens TAP interface `name` (in network namespace `netns` if given), sets the kernel-side
    /// MTU, and starts the reader, which calls `onBatch(frames, lengths)` once per wake-up.
    /// Throws an error whose message starts with its code (`ERR_TAP_PERMISSION: …`).
    #[napi(factory)]
    pub fn open(
        env: Env,
        name: String,
        netns: Option<String>,
        mtu: u32,
        on_batch: Function<FnArgs<(Buffer, Uint32Array)>, ()>,
    ) -> Result<TapHandle> {
        let options = TapOptions { name: &name, netns: netns.as_deref(), mtu: Some(mtu) };
        let tap = Tap::open(&options)
            .map_err(|e| Error::new(Status::GenericFailure, format!("{}: {e}", e.code())))?;
        let tsfn: Arc<BatchTsfn> = Arc::new(
            on_batch
                .build_threadsafe_function::<Batch>()
                .callee_handled::<false>()
                .max_queue_size::<QUEUED_BATCHES>()
                .build_callback(|ctx| {
                    let batch = ctx.value;
                    // The rest of `batch` (its in-flight ticket) is dropped here, on the JS thread.
                    Ok(FnArgs::from((Buffer::from(batch.data), Uint32Array::new(batch.lengths))))
                })?,
        );
        let config = ReaderConfig {
            max_frame: mtu as usize + 14,
            max_batch_frames: 64,
            max_batch_bytes: 256 * 1024,
            max_in_flight: IN_FLIGHT_BATCHES,
        };
        let caller = tsfn.clone();
        let reader = tap
            .spawn_reader(config, move |batch| {
                match caller.call(batch, ThreadsafeFunctionCallMode::NonBlocking) {
                    Status::Ok => Delivery::Delivered,
                    _ => Delivery::Dropped,
                }
            })
            .map_err(|e| Error::new(Status::GenericFailure, format!("ERR_TAP_OPEN: reader thread: {e}")))?;
        let running: Shared = Arc::new(Mutex::new(Some(Running { reader, tsfn })));
        // Stop the thread before Node tears the environment down (process exit with the device
        // still open), so it never calls into a dying environment.
        let hook = env.add_env_cleanup_hook(Arc::downgrade(&running), |weak| {
            if let Some(shared) = weak.upgrade() {
                shutdown(&shared);
            }
        })?;
        Ok(TapHandle { tap: Some(tap), running, stats_after_close: None, hook: Some(hook) })
    }

    /// The interface name the kernel assigned.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.tap.as_ref().map(|t| t.name().to_owned()).unwrap_or_default()
    }

    /// Writes `frame[0..length]`. Returns `length`, or a negative errno (`-11`, EAGAIN, when the
    /// device queue is full; `-9`, EBADF, after close).
    #[napi]
    pub fn write(&self, frame: &[u8], length: u32) -> i32 {
        let Some(tap) = &self.tap else { return -9 }; // EBADF
        let Some(bytes) = frame.get(..length as usize) else { return -22 }; // EINVAL
        match tap.write(bytes) {
            Ok(n) => n as i32,
            Err(e) => -e.raw_os_error().unwrap_or(5),
        }
    }

    /// Counters of the reader thread.
    #[napi]
    pub fn stats(&self) -> TapNativeStats {
        let guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let (s, error) = match (&*guard, self.stats_after_close) {
            (Some(r), _) => (r.reader.stats(), r.reader.error()),
            (None, Some(s)) => (s, None),
            (None, None) => (Default::default(), None),
        };
        TapNativeStats {
            rx_frames: s.frames as f64,
            rx_bytes: s.bytes as f64,
            rx_batches: s.batches as f64,
            rx_queue_dropped: s.dropped as f64,
            rx_oversized: s.oversized as f64,
            rx_stalls: s.stalls as f64,
            rx_error: error,
        }
    }

    /// Stops and joins the reader, releases the threadsafe function (and with it the event
    /// loop), and closes the descriptor. Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) -> Result<()> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(running) = running {
            self.stats_after_close = Some(running.reader.stats());
            running.shutdown();
        }
        self.tap = None;
        if let Some(hook) = self.hook.take() {
            env.remove_env_cleanup_hook(hook)?;
        }
        Ok(())
    }
}

impl Drop for TapHandle {
    /// A handle collected without `close()` still stops its thread and closes its descriptor.
    fn drop(&mut self) {
        shutdown(&self.running);
    }
}
