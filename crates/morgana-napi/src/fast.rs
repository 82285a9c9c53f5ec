//! The per-packet and per-request calls of the TCP engine and of a TAP device as plain Node-API
//! functions.
//!
//! A `#[napi]` class method pays napi-rs's receiver and argument bookkeeping on every call: the
//! class identity check and the registration of each borrowed receiver and class argument in a
//! global, mutex-guarded borrow table, then their release. That is about a microsecond, several
//! times the work of `send`, `recv` or `readable` on a small request, and a keep-alive HTTP
//! request made half a dozen such calls. [`tcp_fast_calls`], [`tap_fast_send`], [`tap_fast_send_parts`],
//! [`reassembly_fast_calls`] and [`ipv6_reassembly_fast_calls`] return the same operations as
//! functions bound to their objects: each reads its arguments with a few Node-API calls and
//! reaches its object through the pointer it was created with.
//!
//! Soundness: each function holds strong references to the JavaScript objects it points into
//! (deleted by the function's finalizer), so they outlive every function that points at them;
//! their heap boxes never move; JavaScript runs on one thread, and none of these functions (nor
//! the methods they call) calls back into JavaScript, so no other reference to those objects is
//! live while one runs. Buffers a call writes to are checked not to overlap.

use crate::ip_output::NativeIpOutput;
use crate::reassembly::{NativeIpv6Reassembler, NativeReassembler};
use crate::tap::TapHandle;
use crate::tcp::{fail, NativeTcpEngine};
use morgana_tcp::EngineError;
use napi::bindgen_prelude::{ClassInstance, Env, JsObjectValue, Object, ToNapiValue};
use napi::sys;
use napi_derive::napi;
use std::ffi::{c_void, CStr};
use std::ptr;

/// What a bound function reaches its objects through, and its hold on them.
struct Bound<T> {
    target: T,
    keep: Vec<sys::napi_ref>,
}

/// A function `name` calling `callback` with `target`, holding `objects` alive.
fn bind<T>(
    env: &Env,
    name: &str,
    callback: sys::napi_callback,
    target: T,
    objects: &[sys::napi_value],
) -> napi::Result<sys::napi_value> {
    let raw_env = env.raw();
    let mut keep = Vec::with_capacity(objects.len());
    for &object in objects {
        let mut reference = ptr::null_mut();
        if unsafe { sys::napi_create_reference(raw_env, object, 1, &mut reference) } != sys::Status::napi_ok {
            for r in keep {
                unsafe { sys::napi_delete_reference(raw_env, r) };
            }
            return Err(napi::Error::from_reason("cannot reference the bound object"));
        }
        keep.push(reference);
    }
    let bound = Box::into_raw(Box::new(Bound { target, keep }));
    let mut function = ptr::null_mut();
    let mut status = unsafe {
        sys::napi_create_function(
            raw_env,
            name.as_ptr().cast(),
            name.len() as isize,
            callback,
            bound.cast(),
            &mut function,
        )
    };
    if status == sys::Status::napi_ok {
        status = unsafe {
            sys::napi_add_finalizer(
                raw_env,
                function,
                bound.cast(),
                Some(release::<T>),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
    }
    if status != sys::Status::napi_ok {
        // Never reachable from JavaScript: freed here.
        unsafe { release::<T>(raw_env, bound.cast(), ptr::null_mut()) };
        return Err(napi::Error::from_reason(format!("cannot create the fast {name} call")));
    }
    Ok(function)
}

/// Finalizer of a bound function: drops its hold on its objects.
unsafe extern "C" fn release<T>(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    let bound = unsafe { Box::from_raw(data.cast::<Bound<T>>()) };
    for reference in &bound.keep {
        unsafe { sys::napi_delete_reference(env, *reference) };
    }
}

/// A function made by [`bind`], handed to JavaScript as it is.
pub struct RawValue(sys::napi_value);

impl ToNapiValue for RawValue {
    unsafe fn to_napi_value(_env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
        Ok(value.0)
    }
}

type TcpTarget = (*mut NativeTcpEngine, *mut NativeIpOutput);

/// The engine's per-request calls bound to `engine` (and `ip`, the stack's IP send path that
/// `turn` writes frames through), without napi-rs's per-call bookkeeping:
/// `send(handle, data)` → bytes taken or a negative error (as `NativeTcpEngine.send`),
/// `recv(handle, out)` → bytes read or a negative error, `readable(handle)` → bytes readable
/// (0 for an unknown handle), `turn(input, meta, count, now, out, outMeta, events, result)` as
/// `NativeTcpEngine.turn` with this `ip`; `feed(input, meta, count, segment, family, src, dst,
/// addresses6, now)`, `drain(out, outMeta, now)` (with this `ip`) and `takeEvents(events)` as the
/// methods of those names (the calls of a turn whose output did not fit, and the large segments
/// read in place, one call each). A wrong argument type, or arrays of one call that overlap (other
/// than two only read), throw a `TypeError`.
#[napi(
    ts_return_type = "{ send(handle: number, data: Uint8Array, length?: number): number; recv(handle: number, out: Uint8Array): number; readable(handle: number): number; turn(input: Uint8Array, meta: Uint32Array, count: number, now: number, out: Uint8Array, outMeta: Uint32Array, events: Uint32Array, result: Float64Array): void; feed(input: Uint8Array, meta: Uint32Array, count: number, segment: Uint8Array, family: number, src: number, dst: number, addresses6: Uint8Array, now: number): void; drain(out: Uint8Array, outMeta: Uint32Array, now: number): number; takeEvents(events: Uint32Array): number; ingest(input: Uint8Array, meta: Uint32Array, count: number, frames: Uint8Array, lengths: Uint32Array, frameCount: number, framing: number, mac: Uint8Array, locals: Uint32Array, locals6: Uint8Array, taken: Uint8Array, counts: Uint32Array, now: number): number }"
)]
pub fn tcp_fast_calls<'env>(
    env: &'env Env,
    mut engine: ClassInstance<'_, NativeTcpEngine>,
    mut ip: ClassInstance<'_, NativeIpOutput>,
) -> napi::Result<Object<'env>> {
    let target: TcpTarget = (&mut *engine, &mut *ip);
    let objects = [engine.value, ip.value];
    let mut calls = Object::new(env)?;
    let functions: [(&str, sys::napi_callback); 8] = [
        ("send", Some(tcp_send)),
        ("recv", Some(tcp_recv)),
        ("readable", Some(tcp_readable)),
        ("turn", Some(tcp_turn)),
        ("feed", Some(tcp_feed)),
        ("drain", Some(tcp_drain)),
        ("takeEvents", Some(tcp_take_events)),
        ("ingest", Some(tcp_ingest)),
    ];
    for (name, callback) in functions {
        calls.set_named_property(name, RawValue(bind(env, name, callback, target, &objects)?))?;
    }
    Ok(calls)
}

/// `TapHandle.send` bound to `handle`, without napi-rs's per-call bookkeeping: `send(length)`
/// has the method's results. A wrong argument type throws a `TypeError`.
#[napi(ts_return_type = "(length: number) => number")]
pub fn tap_fast_send(env: &Env, mut handle: ClassInstance<'_, TapHandle>) -> napi::Result<RawValue> {
    let target: *mut TapHandle = &mut *handle;
    bind(env, "send", Some(tap_send), target, &[handle.value]).map(RawValue)
}

/// The bound target and up to `N` arguments of a call (missing ones are `undefined`).
unsafe fn arguments<T: Copy, const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Option<(T, [sys::napi_value; N])> {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    let mut data = ptr::null_mut();
    if unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data) }
        != sys::Status::napi_ok
        || data.is_null()
        || argc < N
    {
        return None;
    }
    Some((unsafe { (*data.cast::<Bound<T>>()).target }, argv))
}

unsafe fn u32_of(env: sys::napi_env, value: sys::napi_value) -> Option<u32> {
    let mut n = 0u32;
    (unsafe { sys::napi_get_value_uint32(env, value, &mut n) } == sys::Status::napi_ok).then_some(n)
}

unsafe fn f64_of(env: sys::napi_env, value: sys::napi_value) -> Option<f64> {
    let mut n = 0f64;
    (unsafe { sys::napi_get_value_double(env, value, &mut n) } == sys::Status::napi_ok).then_some(n)
}

/// The bytes of a Buffer / Uint8Array argument.
unsafe fn bytes_of<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a mut [u8]> {
    unsafe { typed_of(env, value, sys::TypedarrayType::uint8_array) }
}

/// The elements of a typed array of `kind` whose elements are `T`.
unsafe fn typed_of<'a, T>(
    env: sys::napi_env,
    value: sys::napi_value,
    kind: sys::napi_typedarray_type,
) -> Option<&'a mut [T]> {
    let mut is_typed = false;
    if unsafe { sys::napi_is_typedarray(env, value, &mut is_typed) } != sys::Status::napi_ok || !is_typed {
        return None;
    }
    let mut actual = -1;
    let mut length = 0usize;
    let mut data = ptr::null_mut();
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            value,
            &mut actual,
            &mut length,
            &mut data,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if status != sys::Status::napi_ok || actual != kind {
        return None;
    }
    Some(if length == 0 || data.is_null() {
        &mut []
    } else {
        unsafe { std::slice::from_raw_parts_mut(data.cast::<T>(), length) }
    })
}

unsafe fn int(env: sys::napi_env, value: i32) -> sys::napi_value {
    let mut result = ptr::null_mut();
    unsafe { sys::napi_create_int32(env, value, &mut result) };
    result
}

unsafe fn type_error(env: sys::napi_env, what: &CStr) -> sys::napi_value {
    unsafe { sys::napi_throw_type_error(env, c"ERR_INVALID_ARG_TYPE".as_ptr(), what.as_ptr()) };
    ptr::null_mut()
}

/// `send` and `recv`: `(handle, bytes)` to `op` on the engine, its count or error code back.
unsafe fn tcp_handle_bytes(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    usage: &CStr,
    op: fn(&mut NativeTcpEngine, u32, &mut [u8]) -> Result<usize, EngineError>,
) -> sys::napi_value {
    let call = unsafe { arguments::<TcpTarget, 2>(env, info) };
    let Some(((engine, _), [handle, bytes])) = call else {
        return unsafe { type_error(env, usage) };
    };
    let (Some(handle), Some(bytes)) = (unsafe { u32_of(env, handle) }, unsafe { bytes_of(env, bytes) })
    else {
        return unsafe { type_error(env, usage) };
    };
    // See the module's soundness note.
    let engine = unsafe { &mut *engine };
    unsafe { int(env, op(engine, handle, bytes).map_or_else(fail, |n| n as i32)) }
}

/// `send(handle, data, length?)`: the first `length` bytes of `data` (all of it without), so
/// that a string written into a reused scratch buffer goes in without a view made per write.
unsafe extern "C" fn tcp_send(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    const USAGE: &CStr = c"send(handle: number, data: Uint8Array, length?: number), length at most data's";
    let mut argc = 3;
    let mut argv = [ptr::null_mut(); 3];
    let mut data = ptr::null_mut();
    if unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data) }
        != sys::Status::napi_ok
        || data.is_null()
        || argc < 2
    {
        return unsafe { type_error(env, USAGE) };
    }
    let (engine, _) = unsafe { (*data.cast::<Bound<TcpTarget>>()).target };
    let (Some(handle), Some(mut bytes)) =
        (unsafe { u32_of(env, argv[0]) }, unsafe { bytes_of(env, argv[1]) })
    else {
        return unsafe { type_error(env, USAGE) };
    };
    if argc >= 3 {
        match unsafe { u32_of(env, argv[2]) } {
            Some(length) if length as usize <= bytes.len() => bytes = &mut bytes[..length as usize],
            _ => return unsafe { type_error(env, USAGE) },
        }
    }
    // See the module's soundness note.
    let engine = unsafe { &mut *engine };
    unsafe { int(env, engine.inner.send(handle, bytes).map_or_else(fail, |n| n as i32)) }
}

unsafe extern "C" fn tcp_recv(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe {
        tcp_handle_bytes(env, info, c"recv(handle: number, out: Uint8Array)", |e, h, out| {
            e.inner.recv(h, out)
        })
    }
}

unsafe extern "C" fn tcp_readable(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let call = unsafe { arguments::<TcpTarget, 1>(env, info) };
    let Some(((engine, _), [handle])) = call else {
        return unsafe { type_error(env, c"readable(handle: number)") };
    };
    let Some(handle) = (unsafe { u32_of(env, handle) }) else {
        return unsafe { type_error(env, c"readable(handle: number)") };
    };
    let engine = unsafe { &*engine };
    let n = engine.inner.info(handle).map_or(0, |i| i.readable as u32);
    let mut result = ptr::null_mut();
    unsafe { sys::napi_create_uint32(env, n, &mut result) };
    result
}

const TURN: &CStr = c"turn(input: Uint8Array, meta: Uint32Array, count: number, now: number, out: Uint8Array, outMeta: Uint32Array, events: Uint32Array, result: Float64Array), arrays apart";

unsafe extern "C" fn tcp_turn(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    use sys::TypedarrayType::{float64_array, uint32_array};
    let call = unsafe { arguments::<TcpTarget, 8>(env, info) };
    let Some(((engine, ip), [input, meta, count, now, out, out_meta, events, result])) = call else {
        return unsafe { type_error(env, TURN) };
    };
    let arrays = unsafe {
        (
            bytes_of(env, input),
            typed_of::<u32>(env, meta, uint32_array),
            u32_of(env, count),
            f64_of(env, now),
            bytes_of(env, out),
            typed_of::<u32>(env, out_meta, uint32_array),
            typed_of::<u32>(env, events, uint32_array),
            typed_of::<f64>(env, result, float64_array),
        )
    };
    let (
        Some(input),
        Some(meta),
        Some(count),
        Some(now),
        Some(out),
        Some(out_meta),
        Some(events),
        Some(result),
    ) = arrays
    else {
        return unsafe { type_error(env, TURN) };
    };
    let spans = [span(input), span(meta), span(out), span(out_meta), span(events), span(result)];
    if spans.iter().enumerate().any(|(i, &a)| spans[i + 1..].iter().any(|&b| overlap(a, b))) {
        return unsafe { type_error(env, TURN) };
    }
    let (engine, ip) = unsafe { (&mut *engine, &mut *ip) };
    engine.turn(ip, input, meta, count, now, out, out_meta, events, result);
    ptr::null_mut()
}

const INGEST: &CStr = c"ingest(input: Uint8Array, meta: Uint32Array, count: number, frames: Uint8Array, lengths: Uint32Array, frameCount: number, framing: number, mac: Uint8Array, locals: Uint32Array, locals6: Uint8Array, taken: Uint8Array, counts: Uint32Array, now: number), a 6-byte mac, taken and counts apart from the rest";

/// `ingest`: the input batch so far, then the TCP segments of a device's received batch that
/// need no other layer, straight into the engine (see `NativeTcpEngine::ingest`).
unsafe extern "C" fn tcp_ingest(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    use sys::TypedarrayType::uint32_array;
    let call = unsafe { arguments::<TcpTarget, 13>(env, info) };
    let Some((
        (engine, _),
        [input, meta, count, frames, lengths, frame_count, framing, mac, locals, locals6, taken, counts, now],
    )) = call
    else {
        return unsafe { type_error(env, INGEST) };
    };
    let arguments = unsafe {
        (
            bytes_of(env, input),
            typed_of::<u32>(env, meta, uint32_array),
            u32_of(env, count),
            bytes_of(env, frames),
            typed_of::<u32>(env, lengths, uint32_array),
            u32_of(env, frame_count),
            u32_of(env, framing),
            bytes_of(env, mac),
            typed_of::<u32>(env, locals, uint32_array),
            bytes_of(env, locals6),
            bytes_of(env, taken),
            typed_of::<u32>(env, counts, uint32_array),
            f64_of(env, now),
        )
    };
    let (
        Some(input),
        Some(meta),
        Some(count),
        Some(frames),
        Some(lengths),
        Some(frame_count),
        Some(framing),
        Some(mac),
        Some(locals),
        Some(locals6),
        Some(taken),
        Some(counts),
        Some(now),
    ) = arguments
    else {
        return unsafe { type_error(env, INGEST) };
    };
    let Ok(mac) = <[u8; 6]>::try_from(&mac[..]) else { return unsafe { type_error(env, INGEST) } };
    let read = [span(input), span(meta), span(frames), span(lengths), span(locals), span(locals6)];
    if overlap(span(taken), span(counts))
        || read.iter().any(|&r| overlap(r, span(taken)) || overlap(r, span(counts)))
    {
        return unsafe { type_error(env, INGEST) };
    }
    let filter = morgana_net::steer::SteerFilter { framing: framing as usize, mac, locals, locals6 };
    // See the module's soundness note.
    let engine = unsafe { &mut *engine };
    unsafe {
        uint(
            env,
            engine.ingest(input, meta, count, frames, lengths, frame_count, &filter, taken, counts, now),
        )
    }
}

const FEED: &CStr = c"feed(input: Uint8Array, meta: Uint32Array, count: number, segment: Uint8Array, family: number, src: number, dst: number, addresses6: Uint8Array, now: number), input and meta apart from the rest";

unsafe extern "C" fn tcp_feed(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    use sys::TypedarrayType::uint32_array;
    let call = unsafe { arguments::<TcpTarget, 9>(env, info) };
    let Some(((engine, _), [input, meta, count, segment, family, src, dst, addresses6, now])) = call else {
        return unsafe { type_error(env, FEED) };
    };
    let arguments = unsafe {
        (
            bytes_of(env, input),
            typed_of::<u32>(env, meta, uint32_array),
            u32_of(env, count),
            bytes_of(env, segment),
            u32_of(env, family),
            u32_of(env, src),
            u32_of(env, dst),
            bytes_of(env, addresses6),
            f64_of(env, now),
        )
    };
    let (
        Some(input),
        Some(meta),
        Some(count),
        Some(segment),
        Some(family),
        Some(src),
        Some(dst),
        Some(addresses6),
        Some(now),
    ) = arguments
    else {
        return unsafe { type_error(env, FEED) };
    };
    // `input` and `meta` are borrowed mutably by the method: apart from everything else.
    let (i, m, s, a) = (span(input), span(meta), span(segment), span(addresses6));
    if overlap(i, m) || [s, a].iter().any(|&x| overlap(i, x) || overlap(m, x)) {
        return unsafe { type_error(env, FEED) };
    }
    let engine = unsafe { &mut *engine };
    engine.feed(input, meta, count, segment, family, src, dst, addresses6, now);
    ptr::null_mut()
}

unsafe extern "C" fn tcp_drain(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    const USAGE: &CStr = c"drain(out: Uint8Array, outMeta: Uint32Array, now: number), arrays apart";
    let call = unsafe { arguments::<TcpTarget, 3>(env, info) };
    let Some(((engine, ip), [out, out_meta, now])) = call else { return unsafe { type_error(env, USAGE) } };
    let arguments = unsafe {
        (
            bytes_of(env, out),
            typed_of::<u32>(env, out_meta, sys::TypedarrayType::uint32_array),
            f64_of(env, now),
        )
    };
    let (Some(out), Some(out_meta), Some(now)) = arguments else { return unsafe { type_error(env, USAGE) } };
    if overlap(span(out), span(out_meta)) {
        return unsafe { type_error(env, USAGE) };
    }
    let (engine, ip) = unsafe { (&mut *engine, &mut *ip) };
    unsafe { uint(env, engine.drain(ip, out, out_meta, now)) }
}

unsafe extern "C" fn tcp_take_events(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    const USAGE: &CStr = c"takeEvents(events: Uint32Array)";
    let Some(((engine, _), [events])) = (unsafe { arguments::<TcpTarget, 1>(env, info) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    let Some(events) = (unsafe { typed_of::<u32>(env, events, sys::TypedarrayType::uint32_array) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    let engine = unsafe { &mut *engine };
    unsafe { uint(env, engine.take_events(events)) }
}

/// The address range of a slice, for the overlap check (empty ones overlap nothing).
fn span<T>(s: &[T]) -> (usize, usize) {
    let start = s.as_ptr() as usize;
    (start, start + std::mem::size_of_val(s))
}

unsafe extern "C" fn tap_send(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let call = unsafe { arguments::<*mut TapHandle, 1>(env, info) };
    let Some((handle, [length])) = call else { return unsafe { type_error(env, c"send(length: number)") } };
    let Some(length) = (unsafe { u32_of(env, length) }) else {
        return unsafe { type_error(env, c"send(length: number)") };
    };
    let handle = unsafe { &mut *handle };
    unsafe { int(env, handle.send(length)) }
}

/// `TapHandle.sendParts` bound to `handle`, without napi-rs's per-call bookkeeping (it runs
/// once per frame a stack writes from its own buffer): `sendParts(head, source, at, length,
/// inline)` has the method's results. A wrong argument type throws a `TypeError`.
#[napi(
    ts_return_type = "(head: Uint8Array, source: Uint8Array, at: number, length: number, inline: boolean) => number"
)]
pub fn tap_fast_send_parts(env: &Env, mut handle: ClassInstance<'_, TapHandle>) -> napi::Result<RawValue> {
    let target: *mut TapHandle = &mut *handle;
    bind(env, "sendParts", Some(tap_send_parts), target, &[handle.value]).map(RawValue)
}

unsafe extern "C" fn tap_send_parts(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    const USAGE: &CStr =
        c"sendParts(head: Uint8Array, source: Uint8Array, at: number, length: number, inline: boolean)";
    let call = unsafe { arguments::<*mut TapHandle, 5>(env, info) };
    let Some((handle, [head, source, at, length, inline])) = call else {
        return unsafe { type_error(env, USAGE) };
    };
    let mut inline_flag = false;
    let arguments =
        unsafe { (bytes_of(env, head), bytes_of(env, source), u32_of(env, at), u32_of(env, length)) };
    let (Some(head), Some(source), Some(at), Some(length)) = arguments else {
        return unsafe { type_error(env, USAGE) };
    };
    if unsafe { sys::napi_get_value_bool(env, inline, &mut inline_flag) } != sys::Status::napi_ok {
        return unsafe { type_error(env, USAGE) };
    }
    // See the module's soundness note (both buffers are only read).
    let handle = unsafe { &mut *handle };
    unsafe { int(env, handle.send_parts(head, source, at, length, inline_flag)) }
}

/// `ipv4Validate` as a plain Node-API function (it runs once per received IPv4 packet):
/// `validate(packet, verifyChecksum)` has its results. A wrong argument type throws a
/// `TypeError`.
#[napi(ts_return_type = "(packet: Uint8Array, verifyChecksum: boolean) => number")]
pub fn ipv4_fast_validate(env: &Env) -> napi::Result<RawValue> {
    bind(env, "ipv4Validate", Some(ipv4_validate), (), &[]).map(RawValue)
}

unsafe extern "C" fn ipv4_validate(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    const USAGE: &CStr = c"ipv4Validate(packet: Uint8Array, verifyChecksum: boolean)";
    let Some(((), [packet, verify])) = (unsafe { arguments::<(), 2>(env, info) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    let mut verify_checksum = false;
    let Some(packet) = (unsafe { bytes_of(env, packet) }) else { return unsafe { type_error(env, USAGE) } };
    if unsafe { sys::napi_get_value_bool(env, verify, &mut verify_checksum) } != sys::Status::napi_ok {
        return unsafe { type_error(env, USAGE) };
    }
    unsafe { int(env, crate::ipv4::ipv4_validate(packet, verify_checksum)) }
}

/// A reassembly cache's per-packet calls, for [`reassembly_fast_calls`] and
/// [`ipv6_reassembly_fast_calls`] (the class methods of the same names).
trait FastReassembly: 'static {
    fn push(&mut self, packet: &[u8], now_ms: f64) -> u32;
    fn take(&mut self, out: &mut [u8]) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn push_batch(
        &mut self,
        data: &[u8],
        spans: &mut [u32],
        first: u32,
        end: u32,
        now_ms: f64,
        out: &mut [u8],
        out_at: u32,
        results: &mut [u32],
    ) -> napi::Result<u32>;
}

macro_rules! fast_reassembly {
    ($cache:ty) => {
        impl FastReassembly for $cache {
            fn push(&mut self, packet: &[u8], now_ms: f64) -> u32 {
                <$cache>::push(self, packet, now_ms)
            }
            fn take(&mut self, out: &mut [u8]) -> u32 {
                <$cache>::take(self, out)
            }
            fn push_batch(
                &mut self,
                data: &[u8],
                spans: &mut [u32],
                first: u32,
                end: u32,
                now_ms: f64,
                out: &mut [u8],
                out_at: u32,
                results: &mut [u32],
            ) -> napi::Result<u32> {
                <$cache>::push_batch(self, data, spans, first, end, now_ms, out, out_at, results)
            }
        }
    };
}
fast_reassembly!(NativeReassembler);
fast_reassembly!(NativeIpv6Reassembler);

/// The calls of one cache, bound to it.
fn reassembly_calls<'env, R: FastReassembly>(
    env: &'env Env,
    cache: *mut R,
    object: sys::napi_value,
) -> napi::Result<Object<'env>> {
    let mut calls = Object::new(env)?;
    let functions: [(&str, sys::napi_callback); 3] = [
        ("push", Some(reassembly_push::<R>)),
        ("take", Some(reassembly_take::<R>)),
        ("pushBatch", Some(reassembly_push_batch::<R>)),
    ];
    for (name, callback) in functions {
        calls.set_named_property(name, RawValue(bind(env, name, callback, cache, &[object])?))?;
    }
    Ok(calls)
}

/// `NativeReassembler`'s per-packet calls bound to `cache`, without napi-rs's per-call
/// bookkeeping: `push(packet, nowMs)`, `take(out)` and `pushBatch(data, spans, first, end, nowMs,
/// out, outAt, results)` have the methods' arguments and results. A wrong argument type, or an
/// `out` or `results` that overlaps another array of the call, throws a `TypeError`
/// (`ERR_INVALID_ARG_TYPE`); `pushBatch`'s range errors are those of the method.
#[napi(
    ts_return_type = "{ push(packet: Uint8Array, nowMs: number): number; take(out: Uint8Array): number; pushBatch(data: Uint8Array, spans: Uint32Array, first: number, end: number, nowMs: number, out: Uint8Array, outAt: number, results: Uint32Array): number }"
)]
pub fn reassembly_fast_calls<'env>(
    env: &'env Env,
    mut cache: ClassInstance<'_, NativeReassembler>,
) -> napi::Result<Object<'env>> {
    let target: *mut NativeReassembler = &mut *cache;
    reassembly_calls(env, target, cache.value)
}

/// `NativeIpv6Reassembler`'s per-packet calls bound to `cache`, as [`reassembly_fast_calls`].
#[napi(
    ts_return_type = "{ push(packet: Uint8Array, nowMs: number): number; take(out: Uint8Array): number; pushBatch(data: Uint8Array, spans: Uint32Array, first: number, end: number, nowMs: number, out: Uint8Array, outAt: number, results: Uint32Array): number }"
)]
pub fn ipv6_reassembly_fast_calls<'env>(
    env: &'env Env,
    mut cache: ClassInstance<'_, NativeIpv6Reassembler>,
) -> napi::Result<Object<'env>> {
    let target: *mut NativeIpv6Reassembler = &mut *cache;
    reassembly_calls(env, target, cache.value)
}

unsafe fn uint(env: sys::napi_env, value: u32) -> sys::napi_value {
    let mut result = ptr::null_mut();
    unsafe { sys::napi_create_uint32(env, value, &mut result) };
    result
}

unsafe extern "C" fn reassembly_push<R: FastReassembly>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    const USAGE: &CStr = c"push(packet: Uint8Array, nowMs: number)";
    let Some((cache, [packet, now])) = (unsafe { arguments::<*mut R, 2>(env, info) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    let (Some(packet), Some(now)) = (unsafe { bytes_of(env, packet) }, unsafe { f64_of(env, now) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    // See the module's soundness note.
    let cache = unsafe { &mut *cache };
    unsafe { uint(env, cache.push(packet, now)) }
}

unsafe extern "C" fn reassembly_take<R: FastReassembly>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    const USAGE: &CStr = c"take(out: Uint8Array)";
    let Some((cache, [out])) = (unsafe { arguments::<*mut R, 1>(env, info) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    let Some(out) = (unsafe { bytes_of(env, out) }) else { return unsafe { type_error(env, USAGE) } };
    let cache = unsafe { &mut *cache };
    unsafe { uint(env, cache.take(out)) }
}

unsafe extern "C" fn reassembly_push_batch<R: FastReassembly>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    use sys::TypedarrayType::uint32_array;
    const USAGE: &CStr = c"pushBatch(data: Uint8Array, spans: Uint32Array, first: number, end: number, nowMs: number, out: Uint8Array, outAt: number, results: Uint32Array), out and results apart from the rest";
    let call = unsafe { arguments::<*mut R, 8>(env, info) };
    let Some((cache, [data, spans, first, end, now, out, out_at, results])) = call else {
        return unsafe { type_error(env, USAGE) };
    };
    let arguments = unsafe {
        (
            bytes_of(env, data),
            typed_of::<u32>(env, spans, uint32_array),
            u32_of(env, first),
            u32_of(env, end),
            f64_of(env, now),
            bytes_of(env, out),
            u32_of(env, out_at),
            typed_of::<u32>(env, results, uint32_array),
        )
    };
    let (Some(data), Some(spans), Some(first), Some(end), Some(now), Some(out), Some(out_at), Some(results)) =
        arguments
    else {
        return unsafe { type_error(env, USAGE) };
    };
    // `data` and `spans` are only read (they may share memory); the two written arrays may not
    // overlap anything.
    let (d, s, o, r) = (span(data), span(spans), span(out), span(results));
    if [d, s, r].iter().any(|&x| overlap(o, x)) || [d, s].iter().any(|&x| overlap(r, x)) {
        return unsafe { type_error(env, USAGE) };
    }
    let cache = unsafe { &mut *cache };
    match cache.push_batch(data, spans, first, end, now, out, out_at, results) {
        Ok(next) => unsafe { uint(env, next) },
        Err(error) => {
            let message = std::ffi::CString::new(error.reason.replace('\0', "")).unwrap_or_default();
            unsafe { sys::napi_throw_range_error(env, c"ERR_OUT_OF_RANGE".as_ptr(), message.as_ptr()) };
            ptr::null_mut()
        }
    }
}

/// Whether two address ranges share a byte (empty ones share none).
fn overlap(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// `checksum(data, initial)` and `onesComplementSum(data, initial)` as plain Node-API functions
/// (the napi-rs free functions of those names cost ~80 ns more per call, as much as summing a
/// 1500-byte packet). A wrong argument type throws a `TypeError`.
#[napi(
    ts_return_type = "{ checksum(data: Uint8Array, initial: number): number; onesComplementSum(data: Uint8Array, initial: number): number }"
)]
pub fn checksum_fast_calls(env: &Env) -> napi::Result<Object<'_>> {
    let mut calls = Object::new(env)?;
    let functions: [(&str, sys::napi_callback); 2] =
        [("checksum", Some(checksum_call::<true>)), ("onesComplementSum", Some(checksum_call::<false>))];
    for (name, callback) in functions {
        calls.set_named_property(name, RawValue(bind(env, name, callback, (), &[])?))?;
    }
    Ok(calls)
}

/// `checksum` (`COMPLEMENT`) or `onesComplementSum`; `initial` is taken modulo 2^16.
unsafe extern "C" fn checksum_call<const COMPLEMENT: bool>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    const USAGE: &CStr = c"(data: Uint8Array, initial: number)";
    let Some(((), [data, initial])) = (unsafe { arguments::<(), 2>(env, info) }) else {
        return unsafe { type_error(env, USAGE) };
    };
    let (Some(data), Some(initial)) = (unsafe { bytes_of(env, data) }, unsafe { u32_of(env, initial) })
    else {
        return unsafe { type_error(env, USAGE) };
    };
    let sum = morgana_net::checksum::ones_complement_sum(data, initial as u16);
    unsafe { uint(env, u32::from(if COMPLEMENT { !sum } else { sum })) }
}
