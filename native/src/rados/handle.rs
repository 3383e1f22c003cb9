//! Owned librados handles: a connected cluster (`rados_t`) and a pool's I/O context
//! (`rados_ioctx_t`), each released exactly once when its last owner drops it.
//!
//! Ownership is by `Arc`: a pool holds its cluster, and every operation in flight holds its pool,
//! so neither `rados_ioctx_destroy` nor `rados_shutdown` can run while librados may still call
//! back into an operation of theirs. librados documents both handles as safe to use from
//! several threads at once (blockvault never changes an ioctx's snapshot context or namespace,
//! the per-ioctx state that is not).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::ffi::{Api, Cluster, IoCtx};

pub struct ClusterHandle {
    pub api: &'static Api,
    pub raw: Cluster,
}

// SAFETY: a rados_t may be used from any thread (librados is thread-safe at this level); the
// handle is only released in Drop, once, when no owner is left.
unsafe impl Send for ClusterHandle {}
// SAFETY: as above, concurrent calls on one rados_t are supported by librados.
unsafe impl Sync for ClusterHandle {}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful rados_create2 and is released only here; no pool
        // or operation can still use it, since each of them holds an Arc to this handle.
        unsafe { (self.api.shutdown)(self.raw) };
    }
}

pub struct PoolHandle {
    pub cluster: Arc<ClusterHandle>,
    pub raw: IoCtx,
    /// Operations submitted and not yet completed (bounded by the pool's `opsInFlightMax`).
    pub in_flight: AtomicUsize,
}

// SAFETY: a rados_ioctx_t may be shared between threads for I/O (see the module comment); it is
// released only in Drop, after every operation that used it completed (they hold an Arc).
unsafe impl Send for PoolHandle {}
// SAFETY: as above.
unsafe impl Sync for PoolHandle {}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        let api = self.cluster.api;
        // SAFETY: `raw` came from a successful rados_ioctx_create on `cluster`, which is still
        // alive (this struct holds it); nothing else refers to the ioctx any more, and the
        // flush only waits for librados' own bookkeeping of operations that already completed.
        unsafe {
            (api.aio_flush)(self.raw);
            (api.ioctx_destroy)(self.raw);
        }
    }
}
