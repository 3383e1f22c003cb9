//! librados (Ceph's C client library), loaded at run time with `libloading`.
//!
//! The addon must build, and load, on a machine without Ceph: `npm install` builds it everywhere
//! and the cipher must keep working. So nothing here links against librados; the few functions
//! the RADOS store calls are declared below from Ceph 16.2's `rados/librados.h` (their C ABI has
//! been stable since librados 2) and looked up in `librados.so.2` the first time a RADOS client
//! is made. `BLOCKVAULT_LIBRADOS` names another file (tests use it to check the missing-library
//! error). The library stays loaded for the life of the process: librados starts threads that
//! must never find their code unmapped.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::OnceLock;

use libloading::Library;

/// `rados_t`, `rados_ioctx_t`, `rados_completion_t`, `rados_write_op_t`: opaque pointers.
pub type Cluster = *mut c_void;
pub type IoCtx = *mut c_void;
pub type Completion = *mut c_void;
pub type WriteOp = *mut c_void;
/// `rados_list_ctx_t`: an object listing in progress.
pub type ListCtx = *mut c_void;
/// `rados_callback_t`.
pub type Callback = unsafe extern "C" fn(Completion, *mut c_void);

/// `LIBRADOS_CREATE_EXCLUSIVE` for `rados_write_op_create`.
pub const CREATE_EXCLUSIVE: c_int = 1;
/// librados reports a `cmpext` mismatch at byte `n` as `-MAX_ERRNO - n` (librados.h, cmpext).
pub const MAX_ERRNO: i32 = 4095;

pub const DEFAULT_LIBRARY: &str = "librados.so.2";

macro_rules! librados_api {
    ($($field:ident = $symbol:literal : fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The librados functions blockvault calls, resolved once.
        pub struct Api {
            /// Where it was loaded from, and its version (`rados_version`), for messages.
            pub path: String,
            pub version: (i32, i32, i32),
            $(pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            _library: Library,
        }

        impl Api {
            fn load(path: &str) -> Result<Self, String> {
                // SAFETY: loading librados runs its static initializers, which only set up
                // Ceph's own globals. Each symbol is then read with the exact signature that
                // Ceph 16.2's librados.h declares for it (the librados 2 C ABI), so calling
                // through the pointer is calling the C function as declared. The pointers stay
                // valid because the Library is stored next to them and never unloaded.
                unsafe {
                    let library = Library::new(path).map_err(|e| format!("cannot load {path}: {e}"))?;
                    $(
                        let $field = *library
                            .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(concat!($symbol, "\0").as_bytes())
                            .map_err(|e| format!("{path} lacks {}: {e}", $symbol))?;
                    )*
                    let mut version = (0, 0, 0);
                    let rados_version = *library
                        .get::<unsafe extern "C" fn(*mut c_int, *mut c_int, *mut c_int)>(b"rados_version\0")
                        .map_err(|e| format!("{path} lacks rados_version: {e}"))?;
                    rados_version(&mut version.0, &mut version.1, &mut version.2);
                    Ok(Self { path: path.to_owned(), version, $($field,)* _library: library })
                }
            }
        }
    };
}

librados_api! {
    create2 = "rados_create2": fn(*mut Cluster, *const c_char, *const c_char, u64) -> c_int;
    conf_read_file = "rados_conf_read_file": fn(Cluster, *const c_char) -> c_int;
    conf_set = "rados_conf_set": fn(Cluster, *const c_char, *const c_char) -> c_int;
    connect = "rados_connect": fn(Cluster) -> c_int;
    shutdown = "rados_shutdown": fn(Cluster);
    ioctx_create = "rados_ioctx_create": fn(Cluster, *const c_char, *mut IoCtx) -> c_int;
    ioctx_destroy = "rados_ioctx_destroy": fn(IoCtx);
    aio_create_completion2 = "rados_aio_create_completion2": fn(*mut c_void, Option<Callback>, *mut Completion) -> c_int;
    aio_get_return_value = "rados_aio_get_return_value": fn(Completion) -> c_int;
    aio_release = "rados_aio_release": fn(Completion);
    aio_flush = "rados_aio_flush": fn(IoCtx) -> c_int;
    aio_write_full = "rados_aio_write_full": fn(IoCtx, *const c_char, Completion, *const c_char, usize) -> c_int;
    aio_read = "rados_aio_read": fn(IoCtx, *const c_char, Completion, *mut c_char, usize, u64) -> c_int;
    aio_remove = "rados_aio_remove": fn(IoCtx, *const c_char, Completion) -> c_int;
    aio_stat = "rados_aio_stat": fn(IoCtx, *const c_char, Completion, *mut u64, *mut libc_time_t) -> c_int;
    create_write_op = "rados_create_write_op": fn() -> WriteOp;
    release_write_op = "rados_release_write_op": fn(WriteOp);
    write_op_cmpext = "rados_write_op_cmpext": fn(WriteOp, *const c_char, usize, u64, *mut c_int);
    write_op_assert_exists = "rados_write_op_assert_exists": fn(WriteOp);
    write_op_create = "rados_write_op_create": fn(WriteOp, c_int, *const c_char);
    write_op_write_full = "rados_write_op_write_full": fn(WriteOp, *const c_char, usize);
    aio_write_op_operate = "rados_aio_write_op_operate": fn(WriteOp, IoCtx, Completion, *const c_char, *mut libc_time_t, c_int) -> c_int;
    nobjects_list_open = "rados_nobjects_list_open": fn(IoCtx, *mut ListCtx) -> c_int;
    nobjects_list_next = "rados_nobjects_list_next": fn(ListCtx, *mut *const c_char, *mut *const c_char, *mut *const c_char) -> c_int;
    nobjects_list_close = "rados_nobjects_list_close": fn(ListCtx);
}

/// `time_t` on the 64-bit Linux targets the addon is built for.
#[allow(non_camel_case_types)]
pub type libc_time_t = i64;

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// librados, loaded on first use; the error says which file failed and why.
pub fn api() -> Result<&'static Api, &'static str> {
    API.get_or_init(|| {
        let path = std::env::var("BLOCKVAULT_LIBRADOS")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_LIBRARY.to_owned());
        Api::load(&path)
    })
    .as_ref()
    .map_err(String::as_str)
}

/// A C string for librados; an interior NUL is refused (names come from JS strings).
pub fn c_string(what: &str, value: &str) -> Result<CString, String> {
    CString::new(value).map_err(|_| format!("{what} must not contain a NUL character"))
}
