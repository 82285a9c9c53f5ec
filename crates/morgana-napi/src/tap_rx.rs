//! Receiving from a TAP on the event-loop thread. libuv watches the descriptor (a `uv_poll_t`
//! on Node's own loop); when it is readable, the frames that are ready are read straight into a
//! buffer JavaScript lent once and reuses from batch to batch, and JavaScript is called with
//! their count inside a callback scope (`napi_make_callback`), so its microtasks run after it as
//! after any I/O callback. Per batch that is no thread hop, no allocation and no copy beyond the
//! kernel's own. A reader thread handing batches over through a threadsafe function cost a
//! context switch, a 256 KiB allocation and a copy per wake-up, and left GC to reclaim the
//! batch buffers.
//!
//! Flow control is the event loop's: one drain (at most [`RX_FRAMES`] frames, about
//! [`RX_BATCH_BYTES`]) per readable event, then the loop runs timers, other I/O and the
//! microtasks of what JavaScript did, and comes back while frames are still queued (libuv polls
//! level-triggered). Frames JavaScript cannot take in time wait in the kernel's queue, and the
//! kernel drops beyond it, like a full NIC ring.
//!
//! Ownership of the lent buffer: the bytes belong to JavaScript only during the callback. A
//! listener that keeps frames must say so; the JavaScript side then lends a fresh buffer before
//! the next batch (`TapHandle.rxLend`), leaving the old one to the frames that refer to it.

use morgana_tap::{drain, gro, ReaderStats, READ_WINDOW};
use napi::sys;
use napi::{Error, Result, Status};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr;

/// At most this many frames per batch (the length of the lengths array JavaScript lends).
pub const RX_FRAMES: usize = 64;
/// A batch is closed once it holds at least this many bytes: one coalesced (GRO) TCP frame, or
/// dozens of plain ones. Each batch is one turn of the stack and so one ACK for a super-frame;
/// that ACK, written to the TAP from this thread, runs the kernel sender's ACK processing here,
/// which sends its next data at once. With 256 KiB batches (4 super-frames, one ACK) the kernel
/// sender was left to its own scheduling and, on a loaded machine, the stream receive path went
/// idle waiting for data.
pub const RX_BATCH_BYTES: usize = 64 * 1024;
/// Length of the frame buffer JavaScript lends: a full batch plus room for the longest frame.
pub const RX_BUFFER_LENGTH: usize = RX_BATCH_BYTES + READ_WINDOW;

/// The few libuv functions used, exported by the Node executable (as for any addon using libuv).
mod uv {
    use std::ffi::{c_char, c_int, c_void};

    /// `UV_POLL` in `uv_handle_type`.
    pub const POLL: c_int = 8;
    /// `UV_READABLE` in `uv_poll_event`.
    pub const READABLE: c_int = 1;

    pub type PollCb = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
    pub type CloseCb = unsafe extern "C" fn(handle: *mut c_void);

    extern "C" {
        pub fn uv_handle_size(kind: c_int) -> usize;
        pub fn uv_poll_init(event_loop: *mut napi::sys::uv_loop_s, handle: *mut c_void, fd: c_int) -> c_int;
        pub fn uv_poll_start(handle: *mut c_void, events: c_int, cb: PollCb) -> c_int;
        pub fn uv_poll_stop(handle: *mut c_void) -> c_int;
        pub fn uv_close(handle: *mut c_void, cb: CloseCb);
        pub fn uv_strerror(err: c_int) -> *const c_char;
    }
}

/// A typed array JavaScript lent: a strong reference keeps its memory alive (V8 never moves
/// an array buffer's backing store).
struct Lent<T> {
    reference: sys::napi_ref,
    data: *mut T,
    len: usize,
}

impl<T> Lent<T> {
    const NONE: Lent<T> = Lent { reference: ptr::null_mut(), data: ptr::null_mut(), len: 0 };

    /// Gives the reference back (the memory is JavaScript's again).
    unsafe fn release(&mut self, env: sys::napi_env) {
        // SAFETY: the caller upholds this function's contract (see its docs); every pointer
        // used here is one napi or libuv handed out for this JS thread.
        unsafe {
            if !self.reference.is_null() {
                sys::napi_delete_reference(env, self.reference);
            }
            *self = Lent::NONE;
        }
    }
}

/// The reader's state, owned by the `uv_poll_t` (its `data`) and freed in its close callback,
/// which libuv runs on a later loop iteration than any poll callback: a listener that closes the
/// device from inside the batch callback leaves the state valid until that callback returns.
struct LoopReader {
    env: sys::napi_env,
    /// The `uv_poll_t` (calloc'd; `data`, its first field, points back here).
    handle: *mut c_void,
    fd: RawFd,
    max_frame: usize,
    callback: sys::napi_ref,
    context: sys::napi_async_context,
    frames: Lent<u8>,
    lengths: Lent<u32>,
    polling: bool,
    stopped: bool,
    /// Coalesce each batch's TCP segments before JavaScript sees it ([`gro::coalesce`]).
    coalesce: bool,
    stats: ReaderStats,
    error: Option<String>,
}

/// The running reader, for the [`crate::tap::TapHandle`] that owns it. Used on the JS thread
/// only (the handle is `Send` for the cleanup hook's sake, which also runs there).
pub struct RxReader(*mut LoopReader);

// SAFETY: every use happens on the JS thread that created it (napi calls, finalizers and env
// cleanup hooks all run there); the mutex around it in the handle only satisfies napi-rs.
unsafe impl Send for RxReader {}

fn napi_error(what: &str, status: sys::napi_status) -> Error {
    Error::new(Status::GenericFailure, format!("ERR_TAP_OPEN: {what} failed (napi status {status})"))
}

fn uv_error(what: &str, code: c_int) -> String {
    // SAFETY: uv_strerror returns a static NUL-terminated string for any code.
    let text = unsafe { CStr::from_ptr(uv::uv_strerror(code)) }.to_string_lossy();
    format!("{what}: {text}")
}

impl RxReader {
    /// Watches `fd` (non-blocking, open for as long as the reader runs) on the event loop of
    /// `env`; frames up to `max_frame` bytes go to `callback(count)` once JavaScript has lent the
    /// buffers ([`RxReader::lend`]).
    ///
    /// # Safety
    /// `env` and `callback` (a function) must be live values of the calling JS thread.
    pub unsafe fn start(
        env: sys::napi_env,
        fd: RawFd,
        max_frame: usize,
        callback: sys::napi_value,
    ) -> Result<Self> {
        // SAFETY: the caller upholds this function's contract (see its docs); every pointer
        // used here is one napi or libuv handed out for this JS thread.
        unsafe {
            let mut event_loop = ptr::null_mut();
            let s = sys::napi_get_uv_event_loop(env, &mut event_loop);
            if s != sys::Status::napi_ok {
                return Err(napi_error("napi_get_uv_event_loop", s));
            }
            let handle = libc::calloc(1, uv::uv_handle_size(uv::POLL));
            if handle.is_null() {
                return Err(Error::new(Status::GenericFailure, "ERR_TAP_OPEN: out of memory"));
            }
            let r = uv::uv_poll_init(event_loop, handle, fd);
            if r != 0 {
                libc::free(handle);
                return Err(Error::new(
                    Status::GenericFailure,
                    format!("ERR_TAP_OPEN: {}", uv_error("uv_poll_init", r)),
                ));
            }
            // From here the handle is initialised: it is freed only through uv_close.
            let mut reader = Box::new(LoopReader {
                env,
                handle,
                fd,
                max_frame,
                callback: ptr::null_mut(),
                context: ptr::null_mut(),
                frames: Lent::NONE,
                lengths: Lent::NONE,
                polling: false,
                stopped: false,
                coalesce: false,
                stats: ReaderStats::default(),
                error: None,
            });
            let mut name = ptr::null_mut();
            let label = "MorganaTapRead";
            let mut s = sys::napi_create_reference(env, callback, 1, &mut reader.callback);
            if s == sys::Status::napi_ok {
                s = sys::napi_create_string_utf8(
                    env,
                    label.as_ptr().cast::<c_char>(),
                    label.len() as isize,
                    &mut name,
                );
            }
            if s == sys::Status::napi_ok {
                s = sys::napi_async_init(env, ptr::null_mut(), name, &mut reader.context);
            }
            let this = Box::into_raw(reader);
            *handle.cast::<*mut LoopReader>() = this;
            let reader = RxReader(this);
            if s != sys::Status::napi_ok {
                reader.stop();
                return Err(napi_error("setting up the receive callback", s));
            }
            Ok(reader)
        }
    }

    /// Lends the buffers batches are read into: `frames` (a Uint8Array of at least
    /// [`RX_BUFFER_LENGTH`] bytes) and `lengths` (a Uint32Array of at least [`RX_FRAMES`]),
    /// replacing (and giving back) earlier ones; starts reading on the first call.
    ///
    /// # Safety
    /// `frames` and `lengths` must be live values of the JS thread of `start`.
    pub unsafe fn lend(&self, frames: sys::napi_value, lengths: sys::napi_value) -> Result<()> {
        // SAFETY: the caller upholds this function's contract (see its docs); every pointer
        // used here is one napi or libuv handed out for this JS thread.
        unsafe {
            let r = &mut *self.0;
            if r.stopped {
                return Ok(());
            }
            let frames =
                typed_array::<u8>(r.env, frames, sys::TypedarrayType::uint8_array, RX_BUFFER_LENGTH)?;
            let lengths =
                match typed_array::<u32>(r.env, lengths, sys::TypedarrayType::uint32_array, RX_FRAMES) {
                    Ok(l) => l,
                    Err(e) => {
                        let mut frames = frames;
                        frames.release(r.env);
                        return Err(e);
                    }
                };
            r.frames.release(r.env);
            r.lengths.release(r.env);
            r.frames = frames;
            r.lengths = lengths;
            if !r.polling && r.error.is_none() {
                let rc = uv::uv_poll_start(r.handle, uv::READABLE, on_readable);
                if rc != 0 {
                    return Err(Error::new(Status::GenericFailure, uv_error("uv_poll_start", rc)));
                }
                r.polling = true;
            }
            Ok(())
        }
    }

    /// Turns software receive coalescing on or off (for batches from now on). Lengths of
    /// coalesced frames then carry their segment size (see [`gro`]).
    pub fn set_coalesce(&self, on: bool) {
        // SAFETY: as in `stats`.
        unsafe { (*self.0).coalesce = on }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReaderStats {
        // SAFETY: the state lives until `stop` (which consumes self) and is only touched on this thread.
        unsafe { (*self.0).stats }
    }

    /// The read error that stopped the reader, if any.
    pub fn error(&self) -> Option<String> {
        // SAFETY: as in `stats`.
        unsafe { (*self.0).error.clone() }
    }

    /// Stops watching the descriptor (before it is closed), gives back the callback and the
    /// buffers, and closes the libuv handle, whose close callback frees the state.
    pub fn stop(self) {
        // SAFETY: as in `stats`; after this the state is reachable only through the handle.
        unsafe {
            let r = &mut *self.0;
            if r.polling {
                uv::uv_poll_stop(r.handle);
                r.polling = false;
            }
            r.stopped = true;
            r.frames.release(r.env);
            r.lengths.release(r.env);
            if !r.callback.is_null() {
                sys::napi_delete_reference(r.env, r.callback);
                r.callback = ptr::null_mut();
            }
            if !r.context.is_null() {
                sys::napi_async_destroy(r.env, r.context);
                r.context = ptr::null_mut();
            }
            uv::uv_close(r.handle, on_closed);
        }
    }
}

/// A reference to the typed array `value` of `kind` with at least `min` elements.
unsafe fn typed_array<T>(
    env: sys::napi_env,
    value: sys::napi_value,
    kind: i32,
    min: usize,
) -> Result<Lent<T>> {
    // SAFETY: the caller upholds this function's contract (see its docs); every pointer
    // used here is one napi or libuv handed out for this JS thread.
    unsafe {
        let (mut actual, mut len, mut data) = (-1, 0usize, ptr::null_mut());
        let (mut buffer, mut offset) = (ptr::null_mut(), 0usize);
        let s = sys::napi_get_typedarray_info(
            env,
            value,
            &mut actual,
            &mut len,
            &mut data,
            &mut buffer,
            &mut offset,
        );
        if s != sys::Status::napi_ok || actual != kind || len < min || data.is_null() {
            return Err(Error::new(
                Status::InvalidArg,
                format!("ERR_TAP_RX: expected a typed array (kind {kind}) of at least {min} elements"),
            ));
        }
        let mut reference = ptr::null_mut();
        let s = sys::napi_create_reference(env, value, 1, &mut reference);
        if s != sys::Status::napi_ok {
            return Err(napi_error("napi_create_reference", s));
        }
        Ok(Lent { reference, data: data.cast(), len })
    }
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
    // SAFETY: the caller upholds this function's contract (see its docs); every pointer
    // used here is one napi or libuv handed out for this JS thread.
    unsafe {
        let this = *handle.cast::<*mut LoopReader>();
        if !this.is_null() {
            drop(Box::from_raw(this));
        }
        libc::free(handle);
    }
}

/// The descriptor is readable: one drain, one call into JavaScript.
unsafe extern "C" fn on_readable(handle: *mut c_void, status: c_int, _events: c_int) {
    // SAFETY: the caller upholds this function's contract (see its docs); every pointer
    // used here is one napi or libuv handed out for this JS thread.
    unsafe {
        let this = *handle.cast::<*mut LoopReader>();
        if this.is_null() {
            return;
        }
        // The borrow ends before JavaScript runs: it may lend new buffers or stop the reader.
        let (env, callback, context, count) = {
            let r = &mut *this;
            if r.stopped || r.frames.data.is_null() {
                return;
            }
            if status < 0 {
                r.fail(uv_error("poll", status));
                return;
            }
            let buf = std::slice::from_raw_parts_mut(r.frames.data, r.frames.len);
            let lengths = std::slice::from_raw_parts_mut(r.lengths.data, RX_FRAMES.min(r.lengths.len));
            let (drained, error) =
                drain(BorrowedFd::borrow_raw(r.fd), buf, lengths, r.max_frame, RX_BATCH_BYTES);
            r.stats.oversized += drained.oversized;
            if let Some(e) = error {
                // Deliver what was read, then stop: the interface is gone or broken.
                r.fail(e.to_string());
            }
            if drained.frames == 0 {
                return;
            }
            r.stats.frames += drained.frames as u64;
            r.stats.bytes += drained.bytes as u64;
            r.stats.batches += 1;
            let mut count = drained.frames;
            if r.coalesce && count > 1 {
                let merged = gro::coalesce(buf, lengths, count);
                r.stats.super_frames += merged.super_frames;
                r.stats.coalesced_segments += merged.segments;
                count = merged.frames;
            }
            (r.env, r.callback, r.context, count as u32)
        };
        call(env, callback, context, count);
    }
}

impl LoopReader {
    /// Records a read error and stops reading (the descriptor stays open until close).
    unsafe fn fail(&mut self, error: String) {
        // SAFETY: the caller upholds this function's contract (see its docs); every pointer
        // used here is one napi or libuv handed out for this JS thread.
        unsafe {
            if self.error.is_none() {
                self.error = Some(error);
            }
            if self.polling {
                uv::uv_poll_stop(self.handle);
                self.polling = false;
            }
        }
    }
}

/// `callback(count)` as an I/O callback: in a handle scope and a callback scope, so that
/// process.nextTick callbacks and microtasks run when it returns; an exception it throws goes
/// to `uncaughtException`, as from any I/O callback.
unsafe fn call(env: sys::napi_env, callback: sys::napi_ref, context: sys::napi_async_context, count: u32) {
    // SAFETY: the caller upholds this function's contract (see its docs); every pointer
    // used here is one napi or libuv handed out for this JS thread.
    unsafe {
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return;
        }
        let (mut func, mut recv, mut arg, mut result) =
            (ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        let ready = sys::napi_get_reference_value(env, callback, &mut func) == sys::Status::napi_ok
            && !func.is_null()
            && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
            && sys::napi_create_uint32(env, count, &mut arg) == sys::Status::napi_ok;
        if ready {
            let s = sys::napi_make_callback(env, context, recv, func, 1, &arg, &mut result);
            if s == sys::Status::napi_pending_exception {
                let mut error = ptr::null_mut();
                if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok {
                    sys::napi_fatal_exception(env, error);
                }
            }
        }
        sys::napi_close_handle_scope(env, scope);
    }
}
