//! Keyed handles as N-API externals: a `SectorKey` in a Box, owned by the JS external value
//! that `xtsKeyNew` returns, found again from that value on every keyed call.
//!
//! Why not napi-rs's `External<T>`: reading one back locks a process-wide mutex around a
//! SipHash map of every external napi-rs made, and every `#[napi]` function with arguments
//! opens a borrow-tracking scope (heap allocations, thread-local bookkeeping). Together about
//! 100 ns per call, measured with perf: a fifth of decrypting one 4 KiB sector, which is the
//! whole point of a keyed handle. This module keeps the same safety property (a pointer is
//! dereferenced only if this thread created it and it is still alive) with a thread-local set.
//!
//! Thread-local is exact, not an approximation: a JS value belongs to one isolate, whose JS
//! runs on one thread (the main thread or one worker), and an external cannot be posted to
//! another worker (structured clone refuses it). Its finalizer runs on that same thread.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use napi::bindgen_prelude::{Error, Result, Status};
use napi::sys;

use crate::keyed::SectorKey;

thread_local! {
    /// Addresses of the live `SectorKey`s whose externals this thread's environment holds. A
    /// handful per open volume (one per loaded data-key generation), so a B-tree set: a lookup
    /// is a few comparisons in one node.
    static LIVE: RefCell<BTreeSet<usize>> = const { RefCell::new(BTreeSet::new()) };
}

/// Moves `key` into a new external value. Its finalizer (garbage collection, or the
/// environment's teardown) drops the key, which zeroizes the schedules.
pub fn new_external(env: sys::napi_env, key: SectorKey) -> Result<sys::napi_value> {
    let payload = Box::into_raw(Box::new(key));
    let mut value = ptr::null_mut();
    // SAFETY: `env` is the environment of the current call, on its own thread. `payload` is a
    // live, uniquely owned allocation; on success the external owns it and `finalize` frees it
    // exactly once, on failure it is freed below and never registered.
    let status = unsafe {
        sys::napi_create_external(
            env,
            payload.cast(),
            Some(finalize),
            ptr::null_mut(),
            &mut value,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the external was not created, so `payload` is still ours alone.
        drop(unsafe { Box::from_raw(payload) });
        return Err(Error::new(
            Status::GenericFailure,
            "blockvault-native: could not create the key handle",
        ));
    }
    LIVE.with(|live| live.borrow_mut().insert(payload as usize));
    Ok(value)
}

/// Runs `body` with the key behind `value`, if `value` is a live handle made on this thread.
/// `None`: it is not one (another kind of value, or another addon's external).
///
/// # Safety
/// `env` and `value` are the environment and an argument of the current call, on this
/// environment's thread, and `body` does not call into JS.
pub unsafe fn with_key<R>(
    env: sys::napi_env,
    value: sys::napi_value,
    body: impl FnOnce(&mut SectorKey) -> R,
) -> Option<R> {
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: the caller passes a live `env` and `value`; for a value that is not an external
    // N-API only returns an error status and leaves `data` null.
    let status = unsafe { sys::napi_get_value_external(env, value, &mut data) };
    if status != sys::Status::napi_ok || data.is_null() {
        return None;
    }
    let address = data as usize;
    if !LIVE.with(|live| live.borrow().contains(&address)) {
        return None;
    }
    // SAFETY: the address is in LIVE, so `new_external` on this thread boxed a `SectorKey`
    // there and `finalize` has not freed it (it unregisters first, and it cannot run during
    // this call: the external is an argument, hence reachable). The reference lives only for
    // `body`, which cannot re-enter JS, so no other call can make a second reference to the
    // same key meanwhile: this `&mut` is the only reference.
    let key = unsafe { &mut *data.cast::<SectorKey>() };
    Some(body(key))
}

/// The external's finalizer: unregisters the key, then drops it (zeroizing its schedules).
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // Nothing may unwind into N-API; a panic here would only come from the registry.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // During the thread's exit the registry may already be gone: then nothing is looked up
        // any more either.
        let _ = LIVE.try_with(|live| live.borrow_mut().remove(&(data as usize)));
    }));
    // SAFETY: `data` is the payload `new_external` boxed and handed to exactly this external,
    // whose finalizer runs once; no call holds a reference to it (the value is unreachable).
    drop(unsafe { Box::from_raw(data.cast::<SectorKey>()) });
}
