//! The async variants: an AsyncTask whose `compute()` runs on the libuv thread pool.
//!
//! JavaScript may keep using (and writing to) its Buffer while the pool thread works, so the
//! task never reads the caller's memory off-thread: the bytes are copied once on the JS thread
//! into a new JS Buffer that only the task references, transformed in place there, and that
//! Buffer is what the promise resolves with (no second copy). No JS code can reach the new
//! Buffer before `resolve`, so the pool thread has it to itself. The expanded key travels
//! inside the task and is zeroized when the task is dropped; the data is zeroized if the task
//! fails.

use std::panic::{catch_unwind, AssertUnwindSafe};

use napi::bindgen_prelude::{Buffer, Env, Error, Result, Status, Task};
use zeroize::Zeroize;

use crate::block_io::BlockIo;
use crate::tweak::TweakSource;
use crate::xts::{Direction, XtsAes256};

/// One batch of sectors to encrypt or decrypt off the JS thread.
pub struct XtsTask {
    cipher: XtsAes256,
    direction: Direction,
    tweaks: TweakSource<'static>,
    unit_bytes: usize,
    /// The task's own copy of the input (a JS Buffer referenced only from here); taken by
    /// `resolve`.
    data: Option<Buffer>,
}

impl XtsTask {
    /// `data` is a fresh Buffer holding the task's own copy of the input, referenced by
    /// nothing else; `tweaks` and `unit_bytes` were validated against its length.
    pub fn new(
        cipher: XtsAes256,
        direction: Direction,
        tweaks: TweakSource<'static>,
        unit_bytes: usize,
        data: Buffer,
    ) -> Self {
        Self {
            cipher,
            direction,
            tweaks,
            unit_bytes,
            data: Some(data),
        }
    }
}

impl Task for XtsTask {
    type Output = ();
    type JsValue = Buffer;

    fn compute(&mut self) -> Result<Self::Output> {
        let Self {
            cipher,
            direction,
            tweaks,
            unit_bytes,
            data,
        } = self;
        let Some(buffer) = data.as_mut() else {
            return Err(Error::new(
                Status::GenericFailure,
                "blockvault-native: internal error: the task ran twice",
            ));
        };
        // A panic must not unwind into libuv; catch it and reject the promise instead.
        let outcome = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<(), String> {
            let mut io = BlockIo::in_place(buffer.as_mut()).map_err(|e| e.to_string())?;
            cipher
                .process(*direction, tweaks, *unit_bytes, &mut io)
                .map_err(|e| e.to_string())
        }));
        let message = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(message)) => format!("blockvault-native: internal error: {message}"),
            Err(_) => "blockvault-native: internal error (a Rust panic was caught; no output \
                       was produced)"
                .to_string(),
        };
        // Half-transformed data is of no use to anyone; do not leave plaintext behind.
        buffer.as_mut().zeroize();
        Err(Error::new(Status::GenericFailure, message))
    }

    fn resolve(&mut self, _env: Env, _output: Self::Output) -> Result<Self::JsValue> {
        self.data.take().ok_or_else(|| {
            Error::new(
                Status::GenericFailure,
                "blockvault-native: internal error: the task resolved twice",
            )
        })
    }
}
