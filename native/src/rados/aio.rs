//! One librados asynchronous operation, from submission on the JS thread to its promise.
//!
//! librados runs the operation on its own threads and calls `on_complete` from its finisher
//! thread once the OSDs acknowledged it (for a write: once every replica in the acting set has
//! it). The callback only reads the return value and hands the operation to the JS thread
//! through a napi deferred (a threadsafe function), where the reply is built and the operation,
//! with its completion, write op and buffers, is dropped. No libuv thread waits on the network.
//!
//! Every buffer librados reads or writes during the operation is owned by the boxed `InFlight`,
//! whose address is the completion's callback argument, so it outlives the operation whatever
//! the caller does with its own Buffer meanwhile.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, SendError, Sender};
use std::sync::{Arc, OnceLock};

use napi::bindgen_prelude::{Buffer, Env, Object, Result};
use napi::JsDeferred;

use super::ffi::{self, Api, Completion, IoCtx, WriteOp};
use super::handle::PoolHandle;
use super::RadosReply;

type Resolver = Box<dyn FnOnce(Env) -> Result<RadosReply> + Send>;

/// What an operation needs kept alive until it completes, and what it produces.
pub enum Op {
    WriteFull {
        data: Vec<u8>,
    },
    Read {
        offset: u64,
        buf: Vec<u8>,
    },
    Remove,
    Stat {
        size: u64,
        mtime: ffi::libc_time_t,
    },
    /// One atomic write op: with `expected`, `assert_exists` and `cmpext` of the bytes at its
    /// offset; with `None`, an exclusive create; then `write_full` of `data`.
    CompareAndWriteFull {
        expected: Option<(u64, Vec<u8>)>,
        data: Vec<u8>,
        write_op: WriteOp,
        prval: c_int,
    },
}

struct InFlight {
    /// Always Some until Drop, which hands it on (see `release_pool`).
    pool: Option<Arc<PoolHandle>>,
    completion: Completion,
    op: Op,
    deferred: Option<JsDeferred<RadosReply, Resolver>>,
}

// SAFETY: the raw pointers are a completion and a write op that belong to this operation alone;
// librados allows releasing them from any thread, and the operation moves between threads only
// by handing over ownership (submission -> librados callback -> JS thread), never shared.
unsafe impl Send for InFlight {}

thread_local! {
    /// Set while a librados completion callback runs on this (librados') thread.
    static IN_LIBRADOS_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Drops an operation's hold on its pool. Normally that happens on the JS thread, when the reply
/// is built. But when the JS environment is gone (a worker thread terminated, the process
/// exiting), the deferred drops the reply closure, and with it the operation, right inside the
/// completion callback on librados' finisher thread; if that was the last hold on the pool and
/// the cluster, `rados_shutdown` would join the finisher from itself, and librados aborts the
/// process ("Resource deadlock avoided", reproduced by terminating a worker with writes in
/// flight to stopped OSDs). So inside a callback the hold goes to a releaser thread; should
/// that thread be impossible, the handle is leaked, which is safe, unlike releasing it here.
fn release_pool(pool: Arc<PoolHandle>) {
    if !IN_LIBRADOS_CALLBACK.with(Cell::get) {
        drop(pool);
        return;
    }
    match releaser() {
        Some(sender) => {
            if let Err(SendError(pool)) = sender.send(pool) {
                std::mem::forget(pool);
            }
        }
        None => std::mem::forget(pool),
    }
}

/// The releaser thread (started the first time it is needed), which drops what it is sent.
fn releaser() -> Option<&'static Sender<Arc<PoolHandle>>> {
    static RELEASER: OnceLock<Option<Sender<Arc<PoolHandle>>>> = OnceLock::new();
    RELEASER
        .get_or_init(|| {
            let (sender, receiver) = channel::<Arc<PoolHandle>>();
            std::thread::Builder::new()
                .name("bv-rados-release".to_owned())
                .spawn(move || receiver.into_iter().for_each(drop))
                .ok()
                .map(|_| sender)
        })
        .as_ref()
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let api = pool.cluster.api;
        if !self.completion.is_null() {
            // SAFETY: the completion was created for this operation and is released once, here,
            // after librados called back (or never got the operation). When the JS environment
            // is gone this runs inside the callback itself, which librados allows: it holds its
            // own reference to the completion until the callback returned.
            unsafe { (api.aio_release)(self.completion) };
        }
        if let Op::CompareAndWriteFull { write_op, .. } = self.op {
            if !write_op.is_null() {
                // SAFETY: created by rados_create_write_op for this operation; the operation
                // completed (or was never submitted), so librados no longer uses it.
                unsafe { (api.release_write_op)(write_op) };
            }
        }
        release_pool(pool);
    }
}

impl InFlight {
    fn pool(&self) -> &PoolHandle {
        self.pool
            .as_deref()
            .expect("an operation holds its pool until it drops")
    }

    fn reply(mut self, rc: i32) -> RadosReply {
        let mut reply = RadosReply {
            rc,
            data: None,
            size: None,
            mtime_ms: None,
            mismatch_offset: None,
        };
        match &mut self.op {
            Op::Read { buf, .. } if rc >= 0 => {
                let mut bytes = std::mem::take(buf);
                bytes.truncate(rc as usize);
                reply.data = Some(Buffer::from(bytes));
            }
            Op::Stat { size, mtime } if rc >= 0 => {
                reply.size = Some(*size as f64);
                reply.mtime_ms = Some(*mtime as f64 * 1000.0);
            }
            Op::CompareAndWriteFull { .. } if rc <= -ffi::MAX_ERRNO => {
                reply.mismatch_offset = Some(f64::from(-rc - ffi::MAX_ERRNO));
            }
            _ => {}
        }
        reply
    }

    fn settle(mut self: Box<Self>, rc: i32) {
        self.pool().in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(deferred) = self.deferred.take() {
            deferred.resolve(Box::new(move |_env| Ok(self.reply(rc))));
        }
    }
}

/// librados' completion callback (finisher thread).
unsafe extern "C" fn on_complete(completion: Completion, arg: *mut c_void) {
    // SAFETY: `arg` is the pointer `submit` made with Box::into_raw for this completion, and
    // librados calls back exactly once per submitted operation, so this reclaims the only owner.
    let op = unsafe { Box::from_raw(arg.cast::<InFlight>()) };
    // SAFETY: the completion is live: it is released only when `op` drops, which is later.
    let rc = unsafe { (op.pool().cluster.api.aio_get_return_value)(completion) };
    // Whatever of the operation is dropped during `settle` is dropped on this librados thread
    // (only when the JS environment is gone); release_pool then keeps rados_shutdown off it.
    IN_LIBRADOS_CALLBACK.with(|flag| flag.set(true));
    op.settle(rc);
    IN_LIBRADOS_CALLBACK.with(|flag| flag.set(false));
}

/// Submits `op` on `pool` (at most `ops_in_flight_max` at once; beyond that the promise resolves
/// with -EBUSY without touching the cluster) and returns its promise.
pub fn submit<'env>(
    env: &'env Env,
    pool: Arc<PoolHandle>,
    ops_in_flight_max: usize,
    oid: CString,
    op: Op,
) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred::<RadosReply, Resolver>()?;
    if pool.in_flight.fetch_add(1, Ordering::AcqRel) >= ops_in_flight_max {
        pool.in_flight.fetch_sub(1, Ordering::AcqRel);
        deferred.resolve(Box::new(|_env| Ok(RadosReply::status(-libc_errno::EBUSY))));
        return Ok(promise);
    }
    let api = pool.cluster.api;
    let ioctx = pool.raw;
    let raw = Box::into_raw(Box::new(InFlight {
        pool: Some(pool),
        completion: ptr::null_mut(),
        op,
        deferred: Some(deferred),
    }));
    // SAFETY: `raw` is a live InFlight that only this function knows of until librados accepts
    // the operation. Once it did, the callback owns it and may run (and free it) on librados'
    // finisher thread before `start` returns, so neither `start` nor this function touches it
    // after the submitting call: `start`'s last access to it is computing that call's arguments.
    let rc = unsafe { start(api, ioctx, raw, &oid) };
    if rc < 0 {
        // SAFETY: librados refused the operation (or it was never submitted), so it will not
        // call back; this reclaims the only owner.
        let op = unsafe { Box::from_raw(raw) };
        op.settle(rc);
    }
    Ok(promise)
}

/// Creates the completion and submits the operation; returns librados' result. A negative
/// result means librados did not take the operation and will not call back (the C API checks
/// its arguments before it queues anything), so the caller still owns `raw`.
///
/// # Safety
/// `raw` must point to a live InFlight that nothing else accesses until librados has it.
unsafe fn start(api: &Api, ioctx: IoCtx, raw: *mut InFlight, oid: &CString) -> c_int {
    // SAFETY: guaranteed by the caller; the fields are only written before submission.
    let op = unsafe { &mut *raw };
    // SAFETY: rados_aio_create_completion2 only stores the argument and callback.
    let rc =
        unsafe { (api.aio_create_completion2)(raw.cast(), Some(on_complete), &mut op.completion) };
    if rc < 0 {
        op.completion = ptr::null_mut();
        return rc;
    }
    let completion = op.completion;
    let oid = oid.as_ptr();
    // SAFETY: in every arm, `ioctx` is alive (the InFlight holds its pool), `oid` is a NUL-
    // terminated string librados copies at submission, and every buffer and out-pointer passed
    // (data, read buffer, stat's size and mtime, cmpext's prval) lives in the boxed InFlight, at
    // an address that does not move, until the callback ran, so librados may read or fill it
    // until then. The write op is built completely before it is submitted, and is released only
    // when the InFlight drops, after completion. Nothing reads the InFlight after the
    // submitting call (the last expression of each arm).
    unsafe {
        match &mut op.op {
            Op::WriteFull { data } => {
                (api.aio_write_full)(ioctx, oid, completion, data.as_ptr().cast(), data.len())
            }
            Op::Read { offset, buf } => (api.aio_read)(
                ioctx,
                oid,
                completion,
                buf.as_mut_ptr().cast(),
                buf.len(),
                *offset,
            ),
            Op::Remove => (api.aio_remove)(ioctx, oid, completion),
            Op::Stat { size, mtime } => (api.aio_stat)(ioctx, oid, completion, size, mtime),
            Op::CompareAndWriteFull {
                expected,
                data,
                write_op,
                prval,
            } => {
                *write_op = (api.create_write_op)();
                if write_op.is_null() {
                    return -libc_errno::ENOMEM;
                }
                match expected {
                    Some((offset, bytes)) => {
                        // cmpext alone compares bytes past the object's end, and a missing
                        // object, as zeros: without the assertion a missing object would match
                        // an all-zero `expected`, and would otherwise look like a mismatch at
                        // byte 0 (-MAX_ERRNO). assert_exists makes it -ENOENT.
                        (api.write_op_assert_exists)(*write_op);
                        (api.write_op_cmpext)(
                            *write_op,
                            bytes.as_ptr().cast(),
                            bytes.len(),
                            *offset,
                            prval,
                        )
                    }
                    None => (api.write_op_create)(*write_op, ffi::CREATE_EXCLUSIVE, ptr::null()),
                }
                (api.write_op_write_full)(*write_op, data.as_ptr().cast(), data.len());
                (api.aio_write_op_operate)(*write_op, ioctx, completion, oid, ptr::null_mut(), 0)
            }
        }
    }
}

/// The errno values this module produces itself (Linux numbering, as librados returns them).
pub mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const E2BIG: i32 = 7;
    pub const ENOMEM: i32 = 12;
    pub const EBUSY: i32 = 16;
    pub const ENOTCONN: i32 = 107;
}
