//! The per-sector keyed calls (`xtsKeyEncryptInto`, `xtsKeyDecryptInto`,
//! `xtsKeyDecryptSectorInPlace`) as plain N-API callbacks, registered on the exports by hand.
//!
//! Why not `#[napi]`: napi-rs 3 wraps every function that takes arguments in a borrow-tracking
//! scope (heap allocations and thread-local bookkeeping on each call), needed only for
//! arguments borrowed across async work. These calls borrow nothing beyond their own return,
//! run on one 4 KiB sector at a time, and spend most of their fixed cost there (handle.rs has
//! the measurement). Argument checks, error messages and the panic guard are the same as for
//! the `#[napi]` functions in lib.rs, through the same helpers.

use std::ffi::{c_void, CStr};
use std::ptr;

use napi::bindgen_prelude::{Error, Result, Unknown, ValueType};
use napi::{sys, JsError};

use crate::handle;
use crate::validate::{self, ArgError};
use crate::xts::Direction;
use crate::{guard, invalid, keyed_process, raw_bytes, unwiped};

/// Defines `name` on `exports` for each hot call.
///
/// # Safety
/// `env` and `exports` are the module's environment and exports object, during its init.
pub unsafe fn register(env: sys::napi_env, exports: sys::napi_value) -> Result<()> {
    let calls: [(&CStr, sys::napi_callback); 3] = [
        (c"xtsKeyEncryptInto", Some(encrypt_into)),
        (c"xtsKeyDecryptInto", Some(decrypt_into)),
        (c"xtsKeyDecryptSectorInPlace", Some(decrypt_sector_in_place)),
    ];
    for (name, callback) in calls {
        let mut function = ptr::null_mut();
        // SAFETY: `env` is live (caller); `name` is a NUL-terminated string that N-API copies
        // (NAPI_AUTO_LENGTH: -1); `callback` has N-API's callback signature.
        let status = unsafe {
            sys::napi_create_function(
                env,
                name.as_ptr(),
                -1,
                callback,
                ptr::null_mut(),
                &mut function,
            )
        };
        check(status, name)?;
        // SAFETY: `exports` is the live exports object (caller), `function` was just created in
        // this environment, and `name` is NUL-terminated.
        let status = unsafe { sys::napi_set_named_property(env, exports, name.as_ptr(), function) };
        check(status, name)?;
    }
    Ok(())
}

fn check(status: sys::napi_status, name: &CStr) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::from_reason(format!(
            "blockvault-native: could not export {} (N-API status {status})",
            name.to_string_lossy()
        )))
    }
}

/// `xtsKeyEncryptInto(key, firstSector, sectorSize, src, dst)`: src into dst (same length;
/// dst may be src itself, for in place). `firstSector` is a non-negative safe integer.
unsafe extern "C" fn encrypt_into(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: N-API calls this with the live environment and callback info of the call.
    unsafe { sectors_into(env, info, Direction::Encrypt) }
}

/// `xtsKeyDecryptInto(key, firstSector, sectorSize, src, dst)`: as `xtsKeyEncryptInto`.
unsafe extern "C" fn decrypt_into(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: as in `encrypt_into`.
    unsafe { sectors_into(env, info, Direction::Decrypt) }
}

/// `xtsKeyDecryptSectorInPlace(key, sector, data)`: one sector decrypted in place; its size is
/// `data.length` (512 or 4096). The hot call of a random read: three arguments, not five.
unsafe extern "C" fn decrypt_sector_in_place(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: N-API calls this with the live environment and callback info of the call.
    let [key, sector, data] = unsafe { args::<3>(env, info) };
    let outcome = guard(|| {
        let sector = number(env, sector, "sector")?;
        // SAFETY: `env` and `data` are this call's; nothing runs JS until `raw_bytes`'s
        // pointer is last used inside `keyed_process`.
        let (ptr, len) = raw_bytes("data", &unsafe { Unknown::from_raw_unchecked(env, data) })?;
        // The cipher runs no JS: `raw_bytes`'s pointers stay valid until it returns.
        keyed(env, key, |cipher| {
            let sector = validate::first_sector_number(sector).map_err(|mut e| {
                e.arg = "sector";
                invalid(e)
            })?;
            let sector_size = validate::sector_size(len as f64).map_err(|_| {
                invalid(ArgError::new(
                    "data",
                    format!("expected one sector of 512 or 4096 bytes, got {len} bytes"),
                ))
            })?;
            // The same memory twice: keyed_process decrypts it in place.
            keyed_process(
                cipher,
                Direction::Decrypt,
                sector,
                sector_size,
                "data",
                (ptr, len),
                (ptr, len),
            )
        })
    });
    // SAFETY: `env` is this call's.
    unsafe { finish(env, outcome) }
}

/// # Safety
/// `env` and `info` are the live environment and callback info of the current call.
unsafe fn sectors_into(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    direction: Direction,
) -> sys::napi_value {
    // SAFETY: the caller's contract.
    let [key, first_sector, sector_size, src, dst] = unsafe { args::<5>(env, info) };
    let outcome = guard(|| {
        let first_sector = number(env, first_sector, "firstSector")?;
        let sector_size = number(env, sector_size, "sectorSize")?;
        // SAFETY: `env` and the values are this call's arguments.
        let src = raw_bytes("src", &unsafe { Unknown::from_raw_unchecked(env, src) })?;
        // SAFETY: as above.
        let dst = raw_bytes("dst", &unsafe { Unknown::from_raw_unchecked(env, dst) })?;
        // The cipher runs no JS: `raw_bytes`'s pointers stay valid until it returns.
        keyed(env, key, |cipher| {
            let first_sector = validate::first_sector_number(first_sector).map_err(invalid)?;
            let sector_size = validate::sector_size(sector_size).map_err(invalid)?;
            keyed_process(
                cipher,
                direction,
                first_sector,
                sector_size,
                "src",
                src,
                dst,
            )
        })
    });
    // SAFETY: `env` is this call's.
    unsafe { finish(env, outcome) }
}

/// The first `N` arguments; missing ones are `undefined` (N-API fills them in).
///
/// # Safety
/// `env` and `info` are the live environment and callback info of the current call.
unsafe fn args<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> [sys::napi_value; N] {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    // SAFETY: the caller's contract; `argv` has room for `argc` values, and `this` and the
    // data pointer are not wanted (null is allowed). With a valid `info` the call cannot fail.
    unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut::<*mut c_void>(),
        )
    };
    argv
}

/// The handle's unwiped key, given to `body`.
fn keyed<R>(
    env: sys::napi_env,
    key: sys::napi_value,
    body: impl FnOnce(&crate::xts::XtsAes256) -> Result<R>,
) -> Result<R> {
    handle::with_key(env, key, |key| body(unwiped(key)?)).unwrap_or_else(|| {
        // SAFETY: `key` is one of this call's arguments.
        Err(not_a_handle(&unsafe {
            Unknown::from_raw_unchecked(env, key)
        }))
    })
}

/// The error for a `key` argument that is not a live key handle of this thread.
pub fn not_a_handle(value: &Unknown<'_>) -> Error {
    let got = match value.get_type() {
        Ok(ValueType::Object) => "an object",
        // Another addon's, or (impossible from JS) a dead or other thread's handle.
        Ok(ValueType::External) => "an external value that is not a live key handle",
        _ => crate::describe(value),
    };
    invalid(ArgError::new(
        "key",
        format!("expected a key handle from xtsKeyNew, got {got}"),
    ))
}

fn number(env: sys::napi_env, value: sys::napi_value, arg: &'static str) -> Result<f64> {
    let mut number = 0f64;
    // SAFETY: `env` and `value` are the current call's; for a value that is not a number N-API
    // only returns `napi_number_expected`.
    let status = unsafe { sys::napi_get_value_double(env, value, &mut number) };
    if status == sys::Status::napi_ok {
        return Ok(number);
    }
    // SAFETY: as above.
    Err(crate::not_a_number(arg, &unsafe {
        Unknown::from_raw_unchecked(env, value)
    }))
}

/// `undefined` on success; on failure throws the error as `#[napi]` functions do.
///
/// # Safety
/// `env` is the live environment of the current call.
unsafe fn finish(env: sys::napi_env, outcome: Result<()>) -> sys::napi_value {
    if let Err(error) = outcome {
        // SAFETY: the caller's contract; no exception is pending (every N-API call above only
        // returned statuses).
        unsafe { JsError::from(error).throw_into(env) };
    }
    // A null result is `undefined` to N-API.
    ptr::null_mut()
}
