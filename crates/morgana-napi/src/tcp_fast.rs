//! The TCP engine's per-request calls as plain Node-API functions.
//!
//! A `#[napi]` class method pays napi-rs's receiver and argument bookkeeping on every call: the
//! class identity check and the registration of each borrowed receiver and buffer in a global,
//! mutex-guarded borrow table, then their release. That is most of a microsecond, several
//! times the work of `send`, `recv` or `readable` on a small request, and a keep-alive HTTP
//! request makes several such calls. [`tcp_fast_calls`] returns the same three operations as
//! functions bound to one engine: each reads its arguments with a handful of Node-API calls and
//! reaches the engine through the pointer it was created with.
//!
//! Soundness: each function holds a strong reference to the engine's JavaScript object (deleted
//! by the function's finalizer), so the engine outlives every function that points at it; the
//! engine's heap box never moves; JavaScript runs on one thread, and none of these functions
//! (nor any engine method) calls back into JavaScript, so no other reference to the engine is
//! live while one runs.

use crate::tcp::{fail, NativeTcpEngine};
use napi::bindgen_prelude::{ClassInstance, Env, JsObjectValue, Object, ToNapiValue};
use napi::sys;
use napi_derive::napi;
use std::ffi::c_void;
use std::ptr;

/// What each bound function reaches its engine through.
struct Bound {
    engine: *mut NativeTcpEngine,
    /// Keeps the engine's JavaScript object (and so the engine) alive.
    keep: sys::napi_ref,
}

/// The engine's `send`, `recv` and `readable` as functions bound to `engine`, without
/// napi-rs's per-call bookkeeping: `send(handle, data)` → bytes taken or a negative error (as
/// `NativeTcpEngine.send`), `recv(handle, out)` → bytes read or a negative error,
/// `readable(handle)` → bytes readable (0 for an unknown handle). A wrong argument type throws
/// a `TypeError`.
#[napi(
    ts_return_type = "{ send(handle: number, data: Uint8Array): number; recv(handle: number, out: Uint8Array): number; readable(handle: number): number }"
)]
pub fn tcp_fast_calls(env: Env, mut engine: ClassInstance<'_, NativeTcpEngine>) -> napi::Result<Object<'_>> {
    let raw_env = env.raw();
    let pointer: *mut NativeTcpEngine = &mut *engine;
    let mut object = Object::new(&env)?;
    let calls: [(&str, sys::napi_callback); 3] =
        [("send", Some(send)), ("recv", Some(recv)), ("readable", Some(readable))];
    for (name, callback) in calls {
        let mut keep = ptr::null_mut();
        check(unsafe { sys::napi_create_reference(raw_env, engine.value, 1, &mut keep) })?;
        let bound = Box::into_raw(Box::new(Bound { engine: pointer, keep }));
        let mut function = ptr::null_mut();
        let status = unsafe {
            sys::napi_create_function(
                raw_env,
                name.as_ptr().cast(),
                name.len() as isize,
                callback,
                bound.cast(),
                &mut function,
            )
        };
        let status = if status == sys::Status::napi_ok {
            unsafe {
                sys::napi_add_finalizer(
                    raw_env,
                    function,
                    bound.cast(),
                    Some(release),
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            }
        } else {
            status
        };
        if status != sys::Status::napi_ok {
            // Never reachable from JavaScript: free it here.
            unsafe {
                sys::napi_delete_reference(raw_env, keep);
                drop(Box::from_raw(bound));
            }
            return Err(napi::Error::from_reason(format!("cannot create the fast {name} call")));
        }
        object.set_named_property(name, RawValue(function))?;
    }
    Ok(object)
}

/// A `napi_value` made elsewhere, set as a property as it is.
struct RawValue(sys::napi_value);

impl ToNapiValue for RawValue {
    unsafe fn to_napi_value(_env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
        Ok(value.0)
    }
}

fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::from_reason("Node-API call failed"))
    }
}

/// Finalizer of a bound function: drops its hold on the engine.
unsafe extern "C" fn release(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    let bound = unsafe { Box::from_raw(data.cast::<Bound>()) };
    unsafe { sys::napi_delete_reference(env, bound.keep) };
}

/// The bound engine and up to two arguments of a call.
unsafe fn arguments<'a>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Option<(&'a mut NativeTcpEngine, [sys::napi_value; 2], usize)> {
    let mut argc = 2usize;
    let mut argv = [ptr::null_mut(); 2];
    let mut data = ptr::null_mut();
    if unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data) }
        != sys::Status::napi_ok
        || data.is_null()
    {
        return None;
    }
    // See the module's soundness note.
    let engine = unsafe { &mut *(*data.cast::<Bound>()).engine };
    Some((engine, argv, argc))
}

unsafe fn handle_of(env: sys::napi_env, value: sys::napi_value) -> Option<u32> {
    let mut handle = 0u32;
    (unsafe { sys::napi_get_value_uint32(env, value, &mut handle) } == sys::Status::napi_ok).then_some(handle)
}

/// The bytes of a Buffer / Uint8Array argument.
unsafe fn bytes_of<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a mut [u8]> {
    let mut data = ptr::null_mut();
    let mut length = 0usize;
    if unsafe { sys::napi_get_buffer_info(env, value, &mut data, &mut length) } != sys::Status::napi_ok {
        return None;
    }
    Some(if length == 0 || data.is_null() {
        &mut []
    } else {
        unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), length) }
    })
}

unsafe fn int(env: sys::napi_env, value: i32) -> sys::napi_value {
    let mut result = ptr::null_mut();
    unsafe { sys::napi_create_int32(env, value, &mut result) };
    result
}

unsafe fn type_error(env: sys::napi_env, what: &std::ffi::CStr) -> sys::napi_value {
    unsafe { sys::napi_throw_type_error(env, c"ERR_INVALID_ARG_TYPE".as_ptr(), what.as_ptr()) };
    ptr::null_mut()
}

unsafe extern "C" fn send(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let Some((engine, argv, argc)) = (unsafe { arguments(env, info) }) else { return ptr::null_mut() };
    let (Some(handle), Some(data)) =
        (if argc >= 2 { unsafe { (handle_of(env, argv[0]), bytes_of(env, argv[1])) } } else { (None, None) })
    else {
        return unsafe { type_error(env, c"send(handle: number, data: Uint8Array)") };
    };
    unsafe { int(env, engine.inner.send(handle, data).map_or_else(fail, |n| n as i32)) }
}

unsafe extern "C" fn recv(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let Some((engine, argv, argc)) = (unsafe { arguments(env, info) }) else { return ptr::null_mut() };
    let (Some(handle), Some(out)) =
        (if argc >= 2 { unsafe { (handle_of(env, argv[0]), bytes_of(env, argv[1])) } } else { (None, None) })
    else {
        return unsafe { type_error(env, c"recv(handle: number, out: Uint8Array)") };
    };
    unsafe { int(env, engine.inner.recv(handle, out).map_or_else(fail, |n| n as i32)) }
}

unsafe extern "C" fn readable(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let Some((engine, argv, argc)) = (unsafe { arguments(env, info) }) else { return ptr::null_mut() };
    let Some(handle) = (if argc >= 1 { unsafe { handle_of(env, argv[0]) } } else { None }) else {
        return unsafe { type_error(env, c"readable(handle: number)") };
    };
    let n = engine.inner.info(handle).map_or(0, |i| i.readable as u32);
    let mut result = ptr::null_mut();
    unsafe { sys::napi_create_uint32(env, n, &mut result) };
    result
}
