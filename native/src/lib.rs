//! blockvault-native: the AES-256-XTS hot path of blockvault, as a Node.js addon (napi-rs).
//!
//! This file holds the JavaScript bindings only: argument conversion, validation (by name,
//! with `Status::InvalidArg`), memory handling between JS buffers and the cipher, and the
//! panic guard. The cipher itself is in `xts` (dispatch), `backend` (VAES / AES-NI / portable
//! kernels), `tweak` and `gf128` (IEEE 1619 tweak math), and `block_io` (aliasing-safe I/O).
//!
//! XTS here is IEEE 1619 XTS-AES-256 with dm-crypt `aes-xts-plain64` tweaks as LUKS2 uses
//! them: sector n of size s has tweak n * (s / 512), little-endian, zero-padded to 16 bytes.
#![deny(clippy::all)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod block_io;
pub mod gf128;
mod handle;
pub mod keyed;
pub mod rados;
mod raw_calls;
mod task;
pub mod tweak;
mod validate;
pub mod xts;

#[cfg(test)]
mod tests;

use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

use napi::bindgen_prelude::{
    AsyncTask, BigInt, Buffer, BufferSlice, Either, Env, Error, FromNapiValue, JsValue, Object,
    Result, Status, Unknown, ValueType,
};
use napi_derive::napi;

use crate::backend::{CpuFeatures, Path};
use crate::block_io::BlockIo;
use crate::keyed::{KeyError, SectorKey};
use crate::task::XtsTask;
use crate::tweak::TweakSource;
use crate::validate::{Aliasing, ArgError};
use crate::xts::{Direction, XtsAes256, XtsError};

/// A Buffer (or any Uint8Array), or whatever else the caller passed: `buffer_arg` checks it
/// (like `raw_bytes`: Uint8Array views of an ArrayBuffer only), so a wrong type gets an error
/// that names the argument rather than napi's generic conversion message.
type BufferArg<'a> = Unknown<'a>;
type BigIntArg<'a> = Either<BigInt, Unknown<'a>>;
type NumberArg<'a> = Either<f64, Unknown<'a>>;

// ---------------------------------------------------------------------------------------------
// Exported functions
// ---------------------------------------------------------------------------------------------

/// Encrypts whole sectors (512 or 4096 bytes) starting at `firstSector`; returns a new Buffer.
#[napi(
    ts_args_type = "key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer",
    ts_return_type = "Buffer"
)]
pub fn xts_encrypt_sectors<'env>(
    env: &'env Env,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<Unknown<'env>> {
    guard(|| {
        sectors_to_new(
            env,
            Direction::Encrypt,
            key,
            first_sector,
            sector_size,
            data,
        )
    })
}

/// Decrypts whole sectors (512 or 4096 bytes) starting at `firstSector`; returns a new Buffer.
#[napi(
    ts_args_type = "key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer",
    ts_return_type = "Buffer"
)]
pub fn xts_decrypt_sectors<'env>(
    env: &'env Env,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<Unknown<'env>> {
    guard(|| {
        sectors_to_new(
            env,
            Direction::Decrypt,
            key,
            first_sector,
            sector_size,
            data,
        )
    })
}

/// Encrypts `src` into `dst` (same length; `dst` may be `src` itself for in-place).
#[napi(
    ts_args_type = "key: Buffer, firstSector: bigint, sectorSize: number, src: Buffer, dst: Buffer"
)]
pub fn xts_encrypt_sectors_into(
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    src: BufferArg<'_>,
    dst: BufferArg<'_>,
) -> Result<()> {
    guard(|| sectors_into(Direction::Encrypt, key, first_sector, sector_size, src, dst))
}

/// Decrypts `src` into `dst` (same length; `dst` may be `src` itself for in-place).
#[napi(
    ts_args_type = "key: Buffer, firstSector: bigint, sectorSize: number, src: Buffer, dst: Buffer"
)]
pub fn xts_decrypt_sectors_into(
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    src: BufferArg<'_>,
    dst: BufferArg<'_>,
) -> Result<()> {
    guard(|| sectors_into(Direction::Decrypt, key, first_sector, sector_size, src, dst))
}

/// Like `xtsEncryptSectors`, on the libuv thread pool. Invalid arguments throw synchronously.
#[napi(
    ts_args_type = "key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer",
    ts_return_type = "Promise<Buffer>"
)]
pub fn xts_encrypt_sectors_async(
    env: &Env,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<AsyncTask<XtsTask>> {
    guard(|| {
        sectors_task(
            env,
            Direction::Encrypt,
            key,
            first_sector,
            sector_size,
            data,
        )
    })
}

/// Like `xtsDecryptSectors`, on the libuv thread pool. Invalid arguments throw synchronously.
#[napi(
    ts_args_type = "key: Buffer, firstSector: bigint, sectorSize: number, data: Buffer",
    ts_return_type = "Promise<Buffer>"
)]
pub fn xts_decrypt_sectors_async(
    env: &Env,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<AsyncTask<XtsTask>> {
    guard(|| {
        sectors_task(
            env,
            Direction::Decrypt,
            key,
            first_sector,
            sector_size,
            data,
        )
    })
}

/// IEEE 1619 with an explicit 16-byte tweak per data unit (`tweaks.length == 16 * units`),
/// `dataUnitSize` a multiple of 16 from 16 to 1 MiB. For the standard's test vectors.
#[napi(
    ts_args_type = "key: Buffer, tweaks: Buffer, dataUnitSize: number, data: Buffer",
    ts_return_type = "Buffer"
)]
pub fn xts_encrypt_data_units<'env>(
    env: &'env Env,
    key: BufferArg<'_>,
    tweaks: BufferArg<'_>,
    data_unit_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<Unknown<'env>> {
    guard(|| data_units_to_new(env, Direction::Encrypt, key, tweaks, data_unit_size, data))
}

/// Inverse of `xtsEncryptDataUnits`.
#[napi(
    ts_args_type = "key: Buffer, tweaks: Buffer, dataUnitSize: number, data: Buffer",
    ts_return_type = "Buffer"
)]
pub fn xts_decrypt_data_units<'env>(
    env: &'env Env,
    key: BufferArg<'_>,
    tweaks: BufferArg<'_>,
    data_unit_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<Unknown<'env>> {
    guard(|| data_units_to_new(env, Direction::Decrypt, key, tweaks, data_unit_size, data))
}

// Keyed handles: a data key expanded once (K1 encryption and decryption schedules, K2
// schedule) for the backend this CPU runs, kept for many calls; the free functions above expand
// the key on every call, which costs more than a 4 KiB sector's AES. The handle is an N-API
// external (handle.rs: created, found again and finalized without napi-rs's External) rather
// than a class: a class method call costs about 0.2 µs more, a quarter of a 4 KiB sector's
// decryption. The schedules are zeroized by `xtsKeyWipe` or when the handle is
// garbage-collected (SectorKey's Drop).

/// A keyed handle (see above) for `key` (64 bytes, K1 ‖ K2, the halves different). The bytes are not kept.
#[napi(ts_return_type = "ExternalObject<'XtsKeyState'>")]
pub fn xts_key_new<'env>(env: &'env Env, key: BufferArg<'_>) -> Result<Unknown<'env>> {
    guard(|| {
        let key = buffer_arg("key", key)?;
        let key = SectorKey::new(&key).map_err(|e| match e {
            KeyError::Arg(e) => invalid(e),
            KeyError::Path(message) => path_unavailable(message),
        })?;
        let value = handle::new_external(env.raw(), key)?;
        // SAFETY: `value` was just created in this call's environment.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
    })
}

/// Zeroizes the handle's key schedules now; every later call with it throws. Idempotent.
#[napi(ts_args_type = "key: ExternalObject<'XtsKeyState'>")]
pub fn xts_key_wipe(key: Unknown<'_>) -> Result<()> {
    let raw = key.value();
    guard(|| {
        handle::with_key_mut(raw.env, raw.value, SectorKey::wipe)
            .ok_or_else(|| raw_calls::not_a_handle(&key))
    })
}

/// Whether `xtsKeyWipe` was called on the handle.
#[napi(ts_args_type = "key: ExternalObject<'XtsKeyState'>")]
pub fn xts_key_wiped(key: Unknown<'_>) -> Result<bool> {
    let raw = key.value();
    guard(|| {
        handle::with_key(raw.env, raw.value, SectorKey::is_wiped)
            .ok_or_else(|| raw_calls::not_a_handle(&key))
    })
}

// The per-sector keyed calls `xtsKeyEncryptInto(key, firstSector, sectorSize, src, dst)`,
// `xtsKeyDecryptInto(...)` and `xtsKeyDecryptSectorInPlace(key, sector, data)` are plain N-API
// callbacks in raw_calls.rs (registered here), for the reason given there.
#[napi(module_exports)]
pub fn register_raw_calls(exports: Object<'_>, env: Env) -> Result<()> {
    // SAFETY: module init: `env` and `exports` are the module's environment and exports.
    unsafe { raw_calls::register(env.raw(), exports.raw()) }
}

/// The handle's expanded key, or the error every call on a wiped handle gives.
fn unwiped(key: &SectorKey) -> Result<&XtsAes256> {
    key.cipher().ok_or_else(|| {
        Error::new(
            Status::GenericFailure,
            "blockvault-native: this key handle was wiped; create a new one with xtsKeyNew",
        )
    })
}

/// Runs `direction` over the whole sectors of `src` into `dst` (pointer and length pairs from
/// `raw_bytes`; the same memory for in place, else disjoint) under an expanded key. `src_arg`
/// names `src` in errors.
fn keyed_process(
    cipher: &XtsAes256,
    direction: Direction,
    first_sector: u64,
    sector_size: usize,
    src_arg: &'static str,
    (src_ptr, src_len): (*mut u8, usize),
    (dst_ptr, dst_len): (*mut u8, usize),
) -> Result<()> {
    let tweaks =
        validate::sector_tweaks(first_sector, sector_size, src_arg, src_len).map_err(invalid)?;
    validate::same_length(src_len, dst_len).map_err(invalid)?;
    if src_len == 0 {
        return Ok(());
    }
    let aliasing =
        validate::aliasing(src_ptr as usize, dst_ptr as usize, src_len).map_err(invalid)?;
    let mut io = match aliasing {
        Aliasing::Same => {
            // SAFETY: `raw_bytes` returned the non-null data pointer and byte length of a
            // Buffer/Uint8Array passed to the calling function; that argument keeps it alive
            // until the call returns, and no JS runs (so nothing detaches, resizes or touches it)
            // meanwhile. This is the only reference to those bytes: src is read through it.
            let buf = unsafe { std::slice::from_raw_parts_mut(dst_ptr, dst_len) };
            BlockIo::in_place(buf)
        }
        Aliasing::Disjoint => {
            // SAFETY: as above for both arguments; `validate::aliasing` proved the two
            // ranges share no byte, so the shared `src` slice and the exclusive `dst` slice
            // do not overlap.
            let (src, dst) = unsafe {
                (
                    std::slice::from_raw_parts(src_ptr.cast_const(), src_len),
                    std::slice::from_raw_parts_mut(dst_ptr, dst_len),
                )
            };
            BlockIo::copy(src, dst)
        }
    }
    .map_err(internal)?;
    cipher
        .process(direction, &tweaks, sector_size, &mut io)
        .map_err(internal)
}

/// The data pointer and byte length of a Buffer or Uint8Array argument, read straight from
/// N-API in one call (no reference is created, unlike napi-rs's `Buffer`: that costs more
/// than a 4 KiB sector's AES). The pointer is non-null whenever the length is not zero.
/// Other typed arrays are refused: N-API reports their length in elements, not bytes. So are
/// views of a SharedArrayBuffer: another thread could write the bytes while the cipher reads
/// them, a data race on memory Rust treats as exclusively borrowed.
fn raw_bytes(arg: &'static str, value: &Unknown<'_>) -> Result<(*mut u8, usize)> {
    let raw = value.value();
    let mut kind = -1;
    let mut len = 0usize;
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    let mut buffer: napi::sys::napi_value = std::ptr::null_mut();
    // SAFETY: `raw.env` and `raw.value` are the environment and a live argument of the current
    // call on the JS thread. The out-pointers point to live locals of the right types; the
    // offset output is not wanted (null is allowed). For a value that is not a typed array the
    // call only returns `napi_invalid_arg`.
    let status = unsafe {
        napi::sys::napi_get_typedarray_info(
            raw.env,
            raw.value,
            &mut kind,
            &mut len,
            &mut data,
            &mut buffer,
            std::ptr::null_mut(),
        )
    };
    if status != napi::sys::Status::napi_ok || kind != napi::sys::TypedarrayType::uint8_array {
        return Err(invalid(ArgError::new(
            arg,
            format!("expected a Buffer or Uint8Array, got {}", describe(value)),
        )));
    }
    let mut plain = false;
    // SAFETY: `buffer` is the typed array's backing buffer, just returned for this call's
    // environment; `plain` is a live bool. False for a SharedArrayBuffer.
    let status = unsafe { napi::sys::napi_is_arraybuffer(raw.env, buffer, &mut plain) };
    if status != napi::sys::Status::napi_ok || !plain {
        return Err(invalid(ArgError::new(
            arg,
            "a view of a SharedArrayBuffer is not accepted (another thread could change it during the call); copy it into a Buffer first",
        )));
    }
    if len > 0 && data.is_null() {
        return Err(internal(format!("{arg}: a {len}-byte array without data")));
    }
    Ok((data.cast::<u8>(), len))
}

/// What the CPU offers and which implementation runs.
#[napi(object, js_name = "CpuFeatures")]
pub struct CpuFeatureReport {
    pub aesni: bool,
    pub avx2: bool,
    pub vaes: bool,
    // Spelled out: the default camelCase conversion would turn this into `avx512F`.
    #[napi(js_name = "avx512f")]
    pub avx512f: bool,
    /// The path keys made now on this thread use: "vaes-avx512", "vaes-avx2", "aesni-x8" or
    /// "portable".
    pub path: String,
    /// The fastest path this CPU runs (what `path` is unless a benchmark or test forced one).
    pub best_path: String,
}

/// Throws when `BLOCKVAULT_XTS_PATH` names a path that cannot run here, so that loading the
/// addon reports the reason rather than every later call.
#[napi]
pub fn cpu_features() -> Result<CpuFeatureReport> {
    let cpu = CpuFeatures::get();
    let path = Path::active().map_err(path_unavailable)?;
    Ok(CpuFeatureReport {
        aesni: cpu.aesni,
        avx2: cpu.avx2,
        vaes: cpu.vaes,
        avx512f: cpu.avx512f,
        path: path.name().to_string(),
        best_path: Path::best().name().to_string(),
    })
}

/// One XTS implementation and whether this CPU can run it.
#[napi(object, js_name = "XtsPathInfo")]
pub struct XtsPathInfo {
    /// "vaes-avx512", "vaes-avx2", "aesni-x8" or "portable".
    pub name: String,
    pub supported: bool,
    /// Why this CPU cannot run it (the features it lacks), when it cannot.
    pub reason: Option<String>,
}

/// Every XTS path, fastest first, with whether this CPU can run it.
#[napi]
pub fn xts_paths() -> Vec<XtsPathInfo> {
    Path::ALL
        .into_iter()
        .map(|p| XtsPathInfo {
            name: p.name().to_string(),
            supported: p.is_supported(),
            reason: p.unsupported_reason(),
        })
        .collect()
}

/// For benchmarks and tests only: keys expanded on this thread from now on (per-call keys and
/// new keyed handles; existing handles keep theirs) use the path `name`, or with `null` the
/// default again (`BLOCKVAULT_XTS_PATH`, else the fastest). Throws for an unknown name or a
/// path this CPU cannot run. Returns the previous override (`null` if none), so a caller can
/// restore it.
#[napi(ts_args_type = "name: string | null", ts_return_type = "string | null")]
pub fn xts_use_path(name: Option<String>) -> Result<Option<String>> {
    let path = match name.as_deref() {
        None => None,
        Some(name) => {
            Some(Path::runnable(name).map_err(|message| invalid(ArgError::new("name", message)))?)
        }
    };
    Ok(Path::set_thread_override(path).map(|p| p.name().to_string()))
}

#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

// ---------------------------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------------------------

fn sectors_to_new<'env>(
    env: &'env Env,
    direction: Direction,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<Unknown<'env>> {
    let key = buffer_arg("key", key)?;
    let data = buffer_arg("data", data)?;
    let cipher = cipher_from(&key)?;
    let (tweaks, sector_size) = sector_run(first_sector, sector_size, "data", data.len())?;
    transform_to_new(env, &cipher, direction, &tweaks, sector_size, &data)
}

fn sectors_into(
    direction: Direction,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    src: BufferArg<'_>,
    dst: BufferArg<'_>,
) -> Result<()> {
    let key = buffer_arg("key", key)?;
    let src = buffer_arg("src", src)?;
    let mut dst = buffer_arg("dst", dst)?;
    let cipher = cipher_from(&key)?;
    let (tweaks, sector_size) = sector_run(first_sector, sector_size, "src", src.len())?;
    validate::same_length(src.len(), dst.len()).map_err(invalid)?;
    transform_into(&cipher, direction, &tweaks, sector_size, &src, &mut dst)
}

fn sectors_task(
    env: &Env,
    direction: Direction,
    key: BufferArg<'_>,
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<AsyncTask<XtsTask>> {
    let key = buffer_arg("key", key)?;
    let data = buffer_arg("data", data)?;
    let cipher = cipher_from(&key)?;
    let (tweaks, sector_size) = sector_run(first_sector, sector_size, "data", data.len())?;
    // The one copy the async API needs, since JS may write to `data` while the pool thread
    // works: a new JS Buffer that no JS code can see until the promise resolves with it.
    let owned = BufferSlice::copy_from(env, &*data)?.into_buffer(env)?;
    Ok(AsyncTask::new(XtsTask::new(
        cipher,
        direction,
        tweaks,
        sector_size,
        owned,
    )))
}

fn data_units_to_new<'env>(
    env: &'env Env,
    direction: Direction,
    key: BufferArg<'_>,
    tweaks: BufferArg<'_>,
    data_unit_size: NumberArg<'_>,
    data: BufferArg<'_>,
) -> Result<Unknown<'env>> {
    let key = buffer_arg("key", key)?;
    let tweaks = buffer_arg("tweaks", tweaks)?;
    let data = buffer_arg("data", data)?;
    let cipher = cipher_from(&key)?;
    let unit_bytes =
        validate::data_unit_size(number_arg("dataUnitSize", data_unit_size)?).map_err(invalid)?;
    let tweak_source =
        validate::explicit_tweaks(&tweaks, unit_bytes, data.len()).map_err(invalid)?;
    transform_to_new(env, &cipher, direction, &tweak_source, unit_bytes, &data)
}

/// Validates `firstSector`, `sectorSize` and the data length (argument `data_arg`); returns
/// the plain64 tweaks and the sector size in bytes.
fn sector_run(
    first_sector: BigIntArg<'_>,
    sector_size: NumberArg<'_>,
    data_arg: &'static str,
    data_len: usize,
) -> Result<(TweakSource<'static>, usize)> {
    let first_sector = match first_sector {
        Either::A(big) => validate::first_sector(big.sign_bit, &big.words).map_err(invalid)?,
        Either::B(other) => {
            return Err(invalid(ArgError::new(
                "firstSector",
                format!("expected a bigint, got {}", describe(&other)),
            )))
        }
    };
    let sector_size =
        validate::sector_size(number_arg("sectorSize", sector_size)?).map_err(invalid)?;
    let tweaks =
        validate::sector_tweaks(first_sector, sector_size, data_arg, data_len).map_err(invalid)?;
    Ok((tweaks, sector_size))
}

/// Expands the key; the key bytes are read in place from the caller's Buffer, not copied.
fn cipher_from(key: &Buffer) -> Result<XtsAes256> {
    let key = validate::key(key).map_err(invalid)?;
    XtsAes256::new(key).map_err(|e| match e {
        XtsError::PathUnavailable { message } => path_unavailable(message),
        other => internal(other),
    })
}

/// The error of every call that expands a key while the forced XTS path cannot run.
fn path_unavailable(message: String) -> Error {
    Error::new(
        Status::GenericFailure,
        format!("blockvault-native: {message}"),
    )
}

/// Transforms `input` into a fresh Buffer, written once and never zero-filled first.
///
/// The Buffer is allocated by Node (`napi_create_buffer`), not by Rust: V8 then counts the
/// memory and collects it promptly. (A Rust `Vec` handed over as an external buffer is
/// invisible to the GC's accounting, so large batches piled up and every call got fresh,
/// page-faulting memory: measured at under a tenth of the throughput.)
fn transform_to_new<'env>(
    env: &'env Env,
    cipher: &XtsAes256,
    direction: Direction,
    tweaks: &TweakSource<'_>,
    unit_bytes: usize,
    input: &[u8],
) -> Result<Unknown<'env>> {
    let len = input.len();
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    let mut value: napi::sys::napi_value = std::ptr::null_mut();
    // SAFETY: `env` is the environment of the current call on the JS thread, and both
    // out-pointers point to live locals of the right types.
    let status = unsafe { napi::sys::napi_create_buffer(env.raw(), len, &mut data, &mut value) };
    if status != napi::sys::Status::napi_ok || value.is_null() || (len > 0 && data.is_null()) {
        return Err(Error::new(
            Status::GenericFailure,
            format!("blockvault-native: could not allocate a {len}-byte output Buffer"),
        ));
    }
    if len > 0 {
        // SAFETY: `napi_create_buffer` returned `data`, a writable allocation of `len` bytes
        // owned by the new Buffer `value`, which the current handle scope keeps alive until we
        // return it. No JS code has seen it yet, so nothing else reads or writes it, and it
        // cannot overlap `input`. Node does not initialise it, hence `MaybeUninit`.
        let out = unsafe { std::slice::from_raw_parts_mut(data.cast::<MaybeUninit<u8>>(), len) };
        let mut io = BlockIo::into_uninit(input, out).map_err(internal)?;
        cipher
            .process(direction, tweaks, unit_bytes, &mut io)
            .map_err(internal)?;
    }
    // SAFETY: `value` is a valid napi_value created above in this same `env`.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}

/// Transforms `src` into `dst`, which may be the very same memory (in place).
fn transform_into(
    cipher: &XtsAes256,
    direction: Direction,
    tweaks: &TweakSource<'_>,
    unit_bytes: usize,
    src: &Buffer,
    dst: &mut Buffer,
) -> Result<()> {
    // Compare addresses before taking any `&mut`: when both arguments are the same memory, a
    // `&[u8]` of src and a `&mut [u8]` of dst must never exist at the same time.
    let src_start = src.as_ptr() as usize;
    let dst_start = dst.as_ptr() as usize;
    let mut io = match validate::aliasing(src_start, dst_start, src.len()).map_err(invalid)? {
        // Only dst is borrowed; src's bytes are read through it.
        Aliasing::Same => BlockIo::in_place(dst.as_mut()),
        Aliasing::Disjoint => BlockIo::copy(src.as_ref(), dst.as_mut()),
    }
    .map_err(internal)?;
    cipher
        .process(direction, tweaks, unit_bytes, &mut io)
        .map_err(internal)
}

fn buffer_arg(arg: &'static str, value: BufferArg<'_>) -> Result<Buffer> {
    // The same checks as the keyed calls' arguments (a Uint8Array, no SharedArrayBuffer view).
    raw_bytes(arg, &value)?;
    let raw = value.value();
    // SAFETY: `raw` is a live argument of the current call, checked above to be a Uint8Array
    // over a plain ArrayBuffer, which napi-rs's Buffer conversion accepts.
    unsafe { Buffer::from_napi_value(raw.env, raw.value) }
}

fn number_arg(arg: &'static str, value: NumberArg<'_>) -> Result<f64> {
    match value {
        Either::A(number) => Ok(number),
        Either::B(other) => Err(not_a_number(arg, &other)),
    }
}

/// The error for `arg` when `value` is not a number (the `#[napi]` and the raw calls alike).
fn not_a_number(arg: &'static str, value: &Unknown<'_>) -> Error {
    invalid(ArgError::new(
        arg,
        format!("expected a number, got {}", describe(value)),
    ))
}

fn describe(value: &Unknown<'_>) -> &'static str {
    match value.get_type() {
        Ok(ValueType::Undefined) => "undefined",
        Ok(ValueType::Null) => "null",
        Ok(ValueType::Boolean) => "a boolean",
        Ok(ValueType::Number) => "a number",
        Ok(ValueType::String) => "a string",
        Ok(ValueType::Symbol) => "a symbol",
        Ok(ValueType::Object) => "an object that is not a Buffer or Uint8Array",
        Ok(ValueType::Function) => "a function",
        Ok(ValueType::BigInt) => "a bigint",
        _ => "a value of another type",
    }
}

fn invalid(error: ArgError) -> Error {
    Error::new(Status::InvalidArg, error.to_string())
}

fn internal(error: impl std::fmt::Display) -> Error {
    Error::new(
        Status::GenericFailure,
        format!("blockvault-native: internal error: {error}"),
    )
}

/// Runs `body`, turning a panic into a JS error: unwinding into the N-API caller would abort
/// the process. No output is produced when this happens.
fn guard<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(Error::new(
            Status::GenericFailure,
            "blockvault-native: internal error (a Rust panic was caught; no output was produced)",
        ))
    })
}
