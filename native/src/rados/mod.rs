//! The RADOS client binding: `RadosClient` (a connection to a Ceph cluster) and `RadosPool` (an
//! I/O context on one pool) as napi classes, for the RADOS sector store (src/store/rados).
//!
//! Connecting and opening a pool block in librados, so they run as AsyncTasks on the libuv
//! pool (bounded by the mon op and mount timeouts set at connect). Object I/O uses librados'
//! own asynchronous operations (`aio`), which never block a thread of Node's; each pool bounds
//! its operations in flight. Results are librados' own: an operation resolves with
//! `{ rc, ... }` where a negative `rc` is `-errno`, and the TypeScript side maps errnos to
//! typed errors. Only misuse of the binding itself (a closed handle, bad arguments, librados
//! missing) throws.

mod aio;
mod ffi;
mod handle;

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{AsyncTask, Buffer, Env, Error, Object, Result, Status, Task};
use napi_derive::napi;

use self::aio::{libc_errno, Op};
use self::ffi::c_string;
use self::handle::{ClusterHandle, PoolHandle};

/// What every operation resolves with. `rc` is librados' return value: `>= 0` success (for a
/// read, the bytes read), `< 0` a negated errno.
#[napi(object)]
pub struct RadosReply {
    pub rc: i32,
    /// `read`: the bytes read (at most the length asked for).
    pub data: Option<Buffer>,
    /// `stat`: the object's size in bytes and modification time (ms since the epoch, whole s).
    pub size: Option<f64>,
    pub mtime_ms: Option<f64>,
    /// `compareAndWriteFull`: the index in `expected` of the first byte that differed.
    pub mismatch_offset: Option<f64>,
}

impl RadosReply {
    fn status(rc: i32) -> Self {
        Self {
            rc,
            data: None,
            size: None,
            mtime_ms: None,
            mismatch_offset: None,
        }
    }
}

#[napi(object)]
pub struct RadosLibraryStatus {
    pub available: bool,
    /// The file loaded (or tried), and `major.minor.extra` of librados when it loaded.
    pub path: String,
    pub version: Option<String>,
    pub error: Option<String>,
}

/// Whether librados could be loaded (it is loaded by this call if it was not yet).
#[napi]
pub fn rados_library_status() -> RadosLibraryStatus {
    match ffi::api() {
        Ok(api) => RadosLibraryStatus {
            available: true,
            path: api.path.clone(),
            version: Some(format!(
                "{}.{}.{}",
                api.version.0, api.version.1, api.version.2
            )),
            error: None,
        },
        Err(message) => RadosLibraryStatus {
            available: false,
            path: std::env::var("BLOCKVAULT_LIBRADOS")
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| ffi::DEFAULT_LIBRARY.to_owned()),
            version: None,
            error: Some(message.to_owned()),
        },
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Status::InvalidArg, message.into())
}

#[napi(object)]
pub struct RadosConnectOptions {
    /// A ceph.conf to read; without it nothing is read from disk.
    pub conf_path: Option<String>,
    /// `mon_host`, e.g. `v2:127.0.0.1:3300` (overrides the conf file's).
    pub mon_host: Option<String>,
    /// The full entity name, `client.<id>`.
    pub client_name: String,
    /// Bounds connecting (`client_mount_timeout`) and every monitor and OSD operation
    /// (`rados_mon_op_timeout`, `rados_osd_op_timeout`); whole seconds, at least 1.
    pub timeout_ms: u32,
    /// More librados options (`rados_conf_set`), e.g. `keyring`.
    pub config: Option<HashMap<String, String>>,
}

#[napi(object)]
pub struct RadosConnectReply {
    pub rc: i32,
    /// The librados call that failed (`rados_connect`, `rados_conf_read_file`, ...), if one did;
    /// for `rados_conf_set`, followed by the option's name.
    pub step: Option<String>,
}

enum ClientState {
    Idle,
    Connecting,
    Connected(Arc<ClusterHandle>),
    Closed,
}

/// A connection to one Ceph cluster.
#[napi]
pub struct RadosClient {
    state: Arc<Mutex<ClientState>>,
}

#[napi]
impl RadosClient {
    /// Throws if librados cannot be loaded (check `radosLibraryStatus()` first).
    #[napi(constructor)]
    pub fn new() -> Result<Self> {
        ffi::api().map_err(|e| Error::new(Status::GenericFailure, format!("librados: {e}")))?;
        Ok(Self {
            state: Arc::new(Mutex::new(ClientState::Idle)),
        })
    }

    /// Connects once; resolves `{ rc, step }` (rc 0 on success).
    #[napi(ts_return_type = "Promise<RadosConnectReply>")]
    pub fn connect(&self, options: RadosConnectOptions) -> Result<AsyncTask<ConnectTask>> {
        let mut settings: Vec<(CString, CString)> = Vec::new();
        let mut set = |key: &str, value: &str| -> Result<()> {
            settings.push((
                c_string("a config option", key).map_err(invalid)?,
                c_string("a config value", value).map_err(invalid)?,
            ));
            Ok(())
        };
        let timeout_s = options.timeout_ms.div_ceil(1000).max(1).to_string();
        if let Some(host) = &options.mon_host {
            set("mon_host", host)?;
        }
        for (key, value) in options.config.iter().flatten() {
            set(key, value)?;
        }
        for key in [
            "client_mount_timeout",
            "rados_mon_op_timeout",
            "rados_osd_op_timeout",
        ] {
            set(key, &timeout_s)?;
        }
        // Objecter's own throttle (objecter_inflight_ops, 1024, and objecter_inflight_op_bytes,
        // 100 MiB) blocks the submitting thread, here Node's, until earlier operations complete:
        // with the OSDs down, one more 1 MiB write froze the event loop for the whole op timeout
        // (measured 2.8 s of 3 s). 0 turns it off; each RadosPool bounds its operations in flight
        // instead (and the TypeScript side their bytes), refusing rather than blocking. Set last,
        // so a conf file or `config` cannot turn it back on.
        set("objecter_inflight_ops", "0")?;
        set("objecter_inflight_op_bytes", "0")?;
        let conf_path = match &options.conf_path {
            Some(path) => Some(c_string("confPath", path).map_err(invalid)?),
            None => None,
        };
        let client_name = c_string("clientName", &options.client_name).map_err(invalid)?;
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match *state {
                ClientState::Idle => *state = ClientState::Connecting,
                _ => return Err(invalid("a RadosClient connects once; make a new one")),
            }
        }
        Ok(AsyncTask::new(ConnectTask {
            state: Arc::clone(&self.state),
            conf_path,
            client_name,
            settings,
            reply: None,
        }))
    }

    #[napi(getter)]
    pub fn connected(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            ClientState::Connected(_)
        )
    }

    /// Drops this client's hold on the cluster connection; librados shuts it down (off the JS
    /// thread) once the pools opened on it are closed too. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<ReleaseTask> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = match std::mem::replace(&mut *state, ClientState::Closed) {
            ClientState::Connected(cluster) => Some(Release::Cluster(cluster)),
            _ => None,
        };
        AsyncTask::new(ReleaseTask { held })
    }
}

pub struct ConnectTask {
    state: Arc<Mutex<ClientState>>,
    conf_path: Option<CString>,
    client_name: CString,
    settings: Vec<(CString, CString)>,
    reply: Option<RadosConnectReply>,
}

impl ConnectTask {
    fn run(
        &self,
        api: &'static ffi::Api,
    ) -> std::result::Result<Arc<ClusterHandle>, (i32, String)> {
        let mut raw: ffi::Cluster = ptr::null_mut();
        // SAFETY: rados_create2 writes a new handle into `raw`; both names are NUL-terminated.
        let rc = unsafe { (api.create2)(&mut raw, c"ceph".as_ptr(), self.client_name.as_ptr(), 0) };
        if rc < 0 {
            return Err((rc, "rados_create2".to_owned()));
        }
        // From here on the handle is owned: dropping it (on any failure) calls rados_shutdown.
        let cluster = Arc::new(ClusterHandle { api, raw });
        if let Some(path) = &self.conf_path {
            // SAFETY: a live, not yet connected handle and a NUL-terminated path.
            let rc = unsafe { (api.conf_read_file)(raw, path.as_ptr()) };
            if rc < 0 {
                return Err((rc, "rados_conf_read_file".to_owned()));
            }
        }
        for (key, value) in &self.settings {
            // SAFETY: a live, not yet connected handle and NUL-terminated strings.
            let rc = unsafe { (api.conf_set)(raw, key.as_ptr(), value.as_ptr()) };
            if rc < 0 {
                return Err((rc, format!("rados_conf_set {}", key.to_string_lossy())));
            }
        }
        // SAFETY: a configured handle; rados_connect blocks at most client_mount_timeout.
        let rc = unsafe { (api.connect)(raw) };
        if rc < 0 {
            return Err((rc, "rados_connect".to_owned()));
        }
        Ok(cluster)
    }
}

impl Task for ConnectTask {
    type Output = ();
    type JsValue = RadosConnectReply;

    fn compute(&mut self) -> Result<()> {
        let api = ffi::api().map_err(|e| Error::new(Status::GenericFailure, e.to_owned()))?;
        let outcome = self.run(api);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.reply = Some(match outcome {
            Ok(cluster) => {
                // A close() that came in while connecting leaves the state Closed: the fresh
                // connection is dropped (shut down) right here, off the JS thread.
                if matches!(*state, ClientState::Connecting) {
                    *state = ClientState::Connected(cluster);
                    RadosConnectReply { rc: 0, step: None }
                } else {
                    RadosConnectReply {
                        rc: -libc_errno::ENOTCONN,
                        step: Some("closed while connecting".to_owned()),
                    }
                }
            }
            Err((rc, step)) => {
                if matches!(*state, ClientState::Connecting) {
                    *state = ClientState::Closed;
                }
                RadosConnectReply {
                    rc,
                    step: Some(step),
                }
            }
        });
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> Result<RadosConnectReply> {
        self.reply
            .take()
            .ok_or_else(|| Error::new(Status::GenericFailure, "connect: no reply"))
    }
}

enum Release {
    Cluster(#[allow(dead_code)] Arc<ClusterHandle>),
    Pool(#[allow(dead_code)] Arc<PoolHandle>),
}

/// Drops a handle on the libuv pool: rados_aio_flush, rados_ioctx_destroy and rados_shutdown
/// may block.
pub struct ReleaseTask {
    held: Option<Release>,
}

impl Task for ReleaseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<()> {
        drop(self.held.take());
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> Result<()> {
        Ok(())
    }
}

enum PoolState {
    Idle(Option<Arc<ClusterHandle>>),
    Opening,
    Open(Arc<PoolHandle>),
    Closed,
}

/// Object I/O on one pool of a connected client.
#[napi]
pub struct RadosPool {
    name: CString,
    ops_in_flight_max: usize,
    state: Arc<Mutex<PoolState>>,
}

/// The most a pool may have in flight. librados' own cap (`objecter_inflight_ops`) is turned
/// off at connect because it blocks the submitting thread (Node's) instead of refusing; this one
/// refuses (-EBUSY), so the caller queues, with its own bound.
const OPS_IN_FLIGHT_LIMIT: u32 = 512;
/// Reads and writes are one object (a cluster and its header). 64 MiB stays below the OSD's
/// limits (osd_max_write_size 90 MiB, osd_max_object_size 128 MiB), which would refuse a bigger
/// write only after it crossed the network.
const OBJECT_BYTES_MAX: usize = 64 << 20;

fn check_data(what: &str, data: &Buffer) -> Result<()> {
    if data.len() > OBJECT_BYTES_MAX {
        return Err(invalid(format!(
            "{what} is {} bytes; at most {OBJECT_BYTES_MAX}",
            data.len()
        )));
    }
    Ok(())
}

#[napi]
impl RadosPool {
    /// `opsInFlightMax`: 1 to 512.
    #[napi(constructor)]
    pub fn new(client: &RadosClient, name: String, ops_in_flight_max: u32) -> Result<Self> {
        if name.is_empty() {
            return Err(invalid("pool name must not be empty"));
        }
        if !(1..=OPS_IN_FLIGHT_LIMIT).contains(&ops_in_flight_max) {
            return Err(invalid(format!(
                "opsInFlightMax must be 1 to {OPS_IN_FLIGHT_LIMIT}"
            )));
        }
        let cluster = match &*client.state.lock().unwrap_or_else(|e| e.into_inner()) {
            ClientState::Connected(cluster) => Some(Arc::clone(cluster)),
            _ => None,
        };
        Ok(Self {
            name: c_string("pool name", &name).map_err(invalid)?,
            ops_in_flight_max: ops_in_flight_max as usize,
            state: Arc::new(Mutex::new(PoolState::Idle(cluster))),
        })
    }

    /// Resolves with librados' rc: 0, or -ENOENT when the pool does not exist, -ENOTCONN when
    /// the client was not connected.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn open(&self) -> Result<AsyncTask<OpenTask>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let cluster = match std::mem::replace(&mut *state, PoolState::Opening) {
            PoolState::Idle(cluster) => cluster,
            other => {
                *state = other;
                return Err(invalid("a RadosPool opens once; make a new one"));
            }
        };
        Ok(AsyncTask::new(OpenTask {
            state: Arc::clone(&self.state),
            cluster,
            name: self.name.clone(),
            rc: 0,
        }))
    }

    fn pool(&self) -> Option<Arc<PoolHandle>> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            PoolState::Open(pool) => Some(Arc::clone(pool)),
            _ => None,
        }
    }

    fn submit<'env>(&self, env: &'env Env, oid: String, op: Op) -> Result<Object<'env>> {
        if oid.is_empty() {
            return Err(invalid("object name must not be empty"));
        }
        let oid = c_string("object name", &oid).map_err(invalid)?;
        match self.pool() {
            Some(pool) => aio::submit(env, pool, self.ops_in_flight_max, oid, op),
            None => {
                let (deferred, promise) = env.create_deferred::<RadosReply, _>()?;
                deferred.resolve(|_env| Ok(RadosReply::status(-libc_errno::ENOTCONN)));
                Ok(promise)
            }
        }
    }

    /// Replaces the whole object with `data` (creating it).
    #[napi(ts_return_type = "Promise<RadosReply>")]
    pub fn write_full<'env>(
        &self,
        env: &'env Env,
        oid: String,
        data: Buffer,
    ) -> Result<Object<'env>> {
        check_data("data", &data)?;
        self.submit(
            env,
            oid,
            Op::WriteFull {
                data: data.to_vec(),
            },
        )
    }

    /// Reads up to `length` bytes (1 to 64 MiB) at `offset`; `data` may be shorter at the end of
    /// the object.
    #[napi(ts_return_type = "Promise<RadosReply>")]
    pub fn read<'env>(
        &self,
        env: &'env Env,
        oid: String,
        offset: i64,
        length: u32,
    ) -> Result<Object<'env>> {
        if !(0..=(1 << 53)).contains(&offset) {
            return Err(invalid("offset must be an integer from 0 to 2^53"));
        }
        // Length 0 means "to the end of the object" to the OSD, which librados then copies into
        // the caller's zero-length buffer: a read of 0 bytes of a 100 kB object segfaulted.
        if length == 0 || length as usize > OBJECT_BYTES_MAX {
            return Err(invalid(format!(
                "length must be 1 to {OBJECT_BYTES_MAX} (0 would read the whole object into nothing)"
            )));
        }
        self.submit(
            env,
            oid,
            Op::Read {
                offset: offset as u64,
                buf: vec![0; length as usize],
            },
        )
    }

    #[napi(ts_return_type = "Promise<RadosReply>")]
    pub fn remove<'env>(&self, env: &'env Env, oid: String) -> Result<Object<'env>> {
        self.submit(env, oid, Op::Remove)
    }

    #[napi(ts_return_type = "Promise<RadosReply>")]
    pub fn stat<'env>(&self, env: &'env Env, oid: String) -> Result<Object<'env>> {
        self.submit(env, oid, Op::Stat { size: 0, mtime: 0 })
    }

    /// One atomic write op: if the object exists (`assert_exists`) and its bytes at `offset`
    /// equal `expected` (`cmpext`), replace it with `data` (`write_full`). A missing object
    /// resolves with -ENOENT; a mismatch with rc `-4095 - i` and `mismatchOffset` `i`, the index
    /// in `expected` of the first byte that differs. Bytes past the object's end compare as zeros
    /// (Ceph's cmpext), so a shorter object matches when the rest of `expected` is zeros.
    #[napi(ts_return_type = "Promise<RadosReply>")]
    pub fn compare_and_write_full<'env>(
        &self,
        env: &'env Env,
        oid: String,
        offset: i64,
        expected: Buffer,
        data: Buffer,
    ) -> Result<Object<'env>> {
        if !(0..=(1 << 53)).contains(&offset) {
            return Err(invalid("offset must be an integer from 0 to 2^53"));
        }
        check_data("data", &data)?;
        check_data("expected", &expected)?;
        if expected.is_empty() {
            return Err(invalid(
                "expected must not be empty (createExclusive is 'does not exist')",
            ));
        }
        self.submit(
            env,
            oid,
            Op::CompareAndWriteFull {
                expected: Some((offset as u64, expected.to_vec())),
                data: data.to_vec(),
                write_op: ptr::null_mut(),
                prval: 0,
            },
        )
    }

    /// One atomic write op: create the object with `data` if it does not exist (exclusive
    /// create and `write_full`); an existing object resolves with -EEXIST and is left as it was.
    #[napi(ts_return_type = "Promise<RadosReply>")]
    pub fn create_exclusive<'env>(
        &self,
        env: &'env Env,
        oid: String,
        data: Buffer,
    ) -> Result<Object<'env>> {
        check_data("data", &data)?;
        self.submit(
            env,
            oid,
            Op::CompareAndWriteFull {
                expected: None,
                data: data.to_vec(),
                write_op: ptr::null_mut(),
                prval: 0,
            },
        )
    }

    /// The names in the pool's default namespace that start with `prefix`, listed on a libuv
    /// thread (listing blocks; each step is bounded by rados_osd_op_timeout). At most `limit`
    /// (1 to 2^24): with more, rc is -E2BIG and no names are returned.
    #[napi(ts_return_type = "Promise<RadosListReply>")]
    pub fn list_objects(&self, prefix: String, limit: u32) -> Result<AsyncTask<ListTask>> {
        if !(1..=LIST_NAMES_LIMIT).contains(&limit) {
            return Err(invalid(format!("limit must be 1 to {LIST_NAMES_LIMIT}")));
        }
        Ok(AsyncTask::new(ListTask {
            pool: self.pool(),
            prefix,
            limit: limit as usize,
            rc: 0,
            names: Vec::new(),
        }))
    }

    /// Operations submitted and not yet completed.
    #[napi(getter)]
    pub fn ops_in_flight(&self) -> u32 {
        self.pool().map_or(0, |p| {
            p.in_flight.load(std::sync::atomic::Ordering::Acquire) as u32
        })
    }

    /// New operations resolve with -ENOTCONN from now on; the ioctx is destroyed once those in
    /// flight completed. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<ReleaseTask> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = match std::mem::replace(&mut *state, PoolState::Closed) {
            PoolState::Open(pool) => Some(Release::Pool(pool)),
            PoolState::Idle(Some(cluster)) => Some(Release::Cluster(cluster)),
            _ => None,
        };
        AsyncTask::new(ReleaseTask { held })
    }
}

/// The most names one listing returns (memory stays bounded: 2^24 names of ~60 bytes, ~1 GiB).
const LIST_NAMES_LIMIT: u32 = 1 << 24;

#[napi(object)]
pub struct RadosListReply {
    pub rc: i32,
    pub names: Vec<String>,
}

pub struct ListTask {
    pool: Option<Arc<PoolHandle>>,
    prefix: String,
    limit: usize,
    rc: i32,
    names: Vec<String>,
}

/// Closes a listing when dropped, whichever way the listing ends.
struct ListGuard<'a> {
    pool: &'a PoolHandle,
    ctx: ffi::ListCtx,
}

impl Drop for ListGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from a successful rados_nobjects_list_open on this pool's ioctx,
        // which `pool` keeps alive; it is closed exactly once, here.
        unsafe { (self.pool.cluster.api.nobjects_list_close)(self.ctx) };
    }
}

impl Task for ListTask {
    type Output = ();
    type JsValue = RadosListReply;

    fn compute(&mut self) -> Result<()> {
        let Some(pool) = self.pool.take() else {
            self.rc = -libc_errno::ENOTCONN;
            return Ok(());
        };
        let api = pool.cluster.api;
        let mut ctx: ffi::ListCtx = ptr::null_mut();
        // SAFETY: an open ioctx (held by `pool`, alive for this whole call) and a place for the
        // new list context, which librados fills in on success.
        let rc = unsafe { (api.nobjects_list_open)(pool.raw, &mut ctx) };
        if rc < 0 {
            self.rc = rc;
            return Ok(());
        }
        let guard = ListGuard { pool: &pool, ctx };
        loop {
            let mut entry: *const c_char = ptr::null();
            // SAFETY: a live list context (closed only by `guard`); librados sets `entry` to a
            // NUL-terminated name it owns until the next call on this context; key and namespace
            // are not asked for (null out-pointers are allowed by librados.h).
            let rc = unsafe {
                (api.nobjects_list_next)(guard.ctx, &mut entry, ptr::null_mut(), ptr::null_mut())
            };
            if rc == -libc_errno::ENOENT {
                break;
            }
            if rc < 0 {
                self.rc = rc;
                self.names.clear();
                return Ok(());
            }
            if entry.is_null() {
                continue;
            }
            // SAFETY: `entry` is the NUL-terminated name librados just returned, valid until the
            // next rados_nobjects_list_next; it is copied out here, before that call.
            let name = unsafe { std::ffi::CStr::from_ptr(entry) }.to_bytes();
            if !name.starts_with(self.prefix.as_bytes()) {
                continue;
            }
            if self.names.len() == self.limit {
                self.rc = -libc_errno::E2BIG;
                self.names.clear();
                return Ok(());
            }
            self.names.push(String::from_utf8_lossy(name).into_owned());
        }
        drop(guard);
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> Result<RadosListReply> {
        Ok(RadosListReply {
            rc: self.rc,
            names: std::mem::take(&mut self.names),
        })
    }
}

pub struct OpenTask {
    state: Arc<Mutex<PoolState>>,
    cluster: Option<Arc<ClusterHandle>>,
    name: CString,
    rc: i32,
}

impl Task for OpenTask {
    type Output = ();
    type JsValue = i32;

    fn compute(&mut self) -> Result<()> {
        let Some(cluster) = self.cluster.take() else {
            self.rc = -libc_errno::ENOTCONN;
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = PoolState::Closed;
            return Ok(());
        };
        let mut raw: ffi::IoCtx = ptr::null_mut();
        // SAFETY: a connected cluster handle (held by `cluster`) and a NUL-terminated name;
        // rados_ioctx_create writes a new ioctx into `raw` on success.
        self.rc = unsafe {
            (cluster.api.ioctx_create)(cluster.raw, self.name.as_ptr() as *const c_char, &mut raw)
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.rc < 0 {
            *state = PoolState::Closed;
            return Ok(());
        }
        let pool = Arc::new(PoolHandle {
            cluster,
            raw,
            in_flight: AtomicUsize::new(0),
        });
        if matches!(*state, PoolState::Opening) {
            *state = PoolState::Open(pool);
        } else {
            // Closed while opening: release it here, off the JS thread.
            drop(state);
            drop(pool);
            self.rc = -libc_errno::ENOTCONN;
        }
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> Result<i32> {
        Ok(self.rc)
    }
}
