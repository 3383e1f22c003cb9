//! Keyed handles as N-API externals: the `SectorKey`s live in a thread-local map, and the
//! external value that `xtsKeyNew` returns carries only the key's id.
//!
//! Why not napi-rs's `External<T>`: reading one back locks a process-wide mutex around a
//! SipHash map of every external napi-rs made, and every `#[napi]` function with arguments
//! opens a borrow-tracking scope (heap allocations, thread-local bookkeeping). Together about
//! 100 ns per call, measured with perf: a fifth of decrypting one 4 KiB sector, which is the
//! whole point of a keyed handle.
//!
//! Why an id and a map rather than a pointer to the key:
//!  - nothing is dereferenced: a key is reached only through the map, so a foreign external
//!    (another addon's), a finalized handle or a handle from another thread can at worst name no
//!    key; it can never reach freed or foreign memory;
//!  - ids are never reused, unlike addresses: a handle whose key was finalized (an environment's
//!    teardown finalizes even reachable values, and embedders such as Electron run several
//!    environments on one thread) names no key rather than a newer key at the same address;
//!  - a re-entrant borrow (none exists today: the calls run no JS) would be a RefCell error
//!    caught by the panic guard, not two `&mut` to one key.
//!
//! Thread-local is exact: a JS value belongs to one isolate, whose JS runs on one thread (the
//! main thread or one worker), an external cannot be posted to another worker (structured
//! clone refuses it), and its finalizer runs on that same thread. Keys still in the map when
//! the thread ends are dropped (zeroized) with it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use napi::bindgen_prelude::{Error, Result, Status};
use napi::sys;

use crate::keyed::SectorKey;

thread_local! {
    /// The live keys of this thread's handles, by id. A handful per open volume (one per
    /// loaded data-key generation): a lookup is a few comparisons in one B-tree node.
    static LIVE: RefCell<BTreeMap<usize, SectorKey>> = const { RefCell::new(BTreeMap::new()) };
    /// The next id: odd, so never equal to an aligned pointer another addon's external carries.
    static NEXT_ID: Cell<usize> = const { Cell::new(1) };
}

/// Moves `key` into this thread's map and returns a new external value naming it. The
/// external's finalizer (garbage collection, or the environment's teardown) drops the key,
/// which zeroizes the schedules.
pub fn new_external(env: sys::napi_env, key: SectorKey) -> Result<sys::napi_value> {
    let id = NEXT_ID.with(|next| {
        let id = next.get();
        // 2^63 handles per thread before wrapping: never, in practice.
        next.set(id.wrapping_add(2));
        id
    });
    let mut value = ptr::null_mut();
    // SAFETY: `env` is the environment of the current call, on its own thread. The data
    // pointer is the id, never dereferenced (by N-API or here); `finalize` takes no hint.
    let status = unsafe {
        sys::napi_create_external(
            env,
            id as *mut c_void,
            Some(finalize),
            ptr::null_mut(),
            &mut value,
        )
    };
    if status != sys::Status::napi_ok {
        // `key` is dropped (zeroized) on return: it never entered the map.
        return Err(Error::new(
            Status::GenericFailure,
            "blockvault-native: could not create the key handle",
        ));
    }
    LIVE.with(|live| live.borrow_mut().insert(id, key));
    Ok(value)
}

/// Runs `body` with the key that `value` names, or returns `None` when `value` names no live
/// key of this thread (another kind of value, another addon's external, a finalized handle).
///
/// `body` gets a shared borrow of the map: calling a function of this module from inside it
/// would panic (a RefCell borrow error), which the callers' panic guards turn into an error.
pub fn with_key<R>(
    env: sys::napi_env,
    value: sys::napi_value,
    body: impl FnOnce(&SectorKey) -> R,
) -> Option<R> {
    let id = id_of(env, value)?;
    LIVE.with(|live| live.borrow().get(&id).map(body))
}

/// As `with_key`, with exclusive access (to wipe the key).
pub fn with_key_mut<R>(
    env: sys::napi_env,
    value: sys::napi_value,
    body: impl FnOnce(&mut SectorKey) -> R,
) -> Option<R> {
    let id = id_of(env, value)?;
    LIVE.with(|live| live.borrow_mut().get_mut(&id).map(body))
}

/// The id an external carries, or `None` for any other value.
fn id_of(env: sys::napi_env, value: sys::napi_value) -> Option<usize> {
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `env` and `value` come from the current call (every caller passes an argument of
    // it); for a value that is not an external N-API only returns an error status. The pointer
    // is read as a number, never dereferenced.
    let status = unsafe { sys::napi_get_value_external(env, value, &mut data) };
    (status == sys::Status::napi_ok).then_some(data as usize)
}

/// The external's finalizer: removes the key from the map, which drops and zeroizes it.
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // Nothing may unwind into N-API. During the thread's exit the map may already be gone
    // (its keys were dropped with it): then there is nothing left to remove.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let removed = LIVE.try_with(|live| live.borrow_mut().remove(&(data as usize)));
        drop(removed);
    }));
}
