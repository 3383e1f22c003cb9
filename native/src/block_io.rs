//! A bounds-checked view of the source and destination bytes of one cipher call.
//!
//! The in-place API (`xtsEncryptSectorsInto` with `dst === src`) means the bytes we read and
//! the bytes we write may be the same memory. Holding a `&[u8]` and a `&mut [u8]` to the same
//! memory at once is undefined behaviour in Rust, so the kernels never see slices: they see a
//! `BlockIo`, which keeps one read pointer and one write pointer that are either identical
//! (in place, both derived from the same `&mut [u8]`) or point into two disjoint borrows.
//! Every access goes through a method that checks the 16-byte block index against the length,
//! so the `unsafe` pointer accesses below are sound whatever the kernel's index arithmetic does.
//!
//! Every kernel reads a block before it writes the same block, and never reads a block again
//! after writing it, which is what makes the in-place case produce the same bytes as the
//! out-of-place one.

use core::marker::PhantomData;
use core::mem::MaybeUninit;

/// AES block size in bytes.
pub const BLOCK_BYTES: usize = 16;

/// Why a `BlockIo` could not be built. The public API validates lengths before it gets here,
/// so these are internal invariant failures, reported rather than panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockIoError {
    /// Source and destination lengths differ.
    LengthMismatch { src: usize, dst: usize },
    /// The length is not a whole number of 16-byte AES blocks.
    NotBlockAligned { len: usize },
}

impl core::fmt::Display for BlockIoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::LengthMismatch { src, dst } => {
                write!(f, "source is {src} bytes but destination is {dst} bytes")
            }
            Self::NotBlockAligned { len } => {
                write!(f, "{len} bytes is not a whole number of 16-byte blocks")
            }
        }
    }
}

/// Source and destination of a cipher call, as 16-byte blocks.
///
/// Invariants (established by the constructors, relied on by every accessor):
/// - `src` is valid for reads of `blocks * 16` bytes and `dst` for writes of as many, for `'a`;
/// - either `src == dst` (in place; both come from one `&mut [u8]`) or the two ranges do not
///   overlap (they come from a `&[u8]` and a `&mut` borrow, which Rust guarantees disjoint);
/// - nothing else reads or writes `dst` while the `BlockIo` lives (it holds the `&mut` borrow).
pub struct BlockIo<'a> {
    src: *const u8,
    dst: *mut u8,
    blocks: usize,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> BlockIo<'a> {
    /// Encrypt or decrypt `buf` in place.
    pub fn in_place(buf: &'a mut [u8]) -> Result<Self, BlockIoError> {
        let blocks = whole_blocks(buf.len())?;
        let dst = buf.as_mut_ptr();
        Ok(Self {
            // Both pointers derive from the one `&mut` borrow, so writing through `dst` after
            // reading through `src` is an access through the same provenance.
            src: dst.cast_const(),
            dst,
            blocks,
            _borrow: PhantomData,
        })
    }

    /// Read from `src`, write to `dst` (disjoint by construction: one is borrowed mutably).
    pub fn copy(src: &'a [u8], dst: &'a mut [u8]) -> Result<Self, BlockIoError> {
        Self::disjoint(src, dst.as_mut_ptr(), dst.len())
    }

    /// Read from `src`, write into not-yet-initialised memory (a fresh output buffer), so the
    /// output never has to be zero-filled first. The kernels write every block exactly once,
    /// so after a successful call all of `dst` is initialised.
    pub fn into_uninit(
        src: &'a [u8],
        dst: &'a mut [MaybeUninit<u8>],
    ) -> Result<Self, BlockIoError> {
        Self::disjoint(src, dst.as_mut_ptr().cast::<u8>(), dst.len())
    }

    /// `copy` and `into_uninit`: `dst` points at `dst_len` bytes the caller borrows mutably for
    /// 'a, so they are disjoint from `src`.
    fn disjoint(src: &'a [u8], dst: *mut u8, dst_len: usize) -> Result<Self, BlockIoError> {
        if src.len() != dst_len {
            return Err(BlockIoError::LengthMismatch {
                src: src.len(),
                dst: dst_len,
            });
        }
        Ok(Self {
            src: src.as_ptr(),
            dst,
            blocks: whole_blocks(src.len())?,
            _borrow: PhantomData,
        })
    }

    /// Number of 16-byte blocks.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.blocks * BLOCK_BYTES
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Panics unless blocks `index .. index + count` are in range. The kernels' loops keep
    /// every index in range, so this never fires; it is what makes the pointer accesses sound
    /// regardless, and a panic is caught at the FFI boundary.
    #[inline(always)]
    fn check(&self, index: usize, count: usize) {
        assert!(
            index < self.blocks && count <= self.blocks - index,
            "block index out of range"
        );
    }

    /// Read block `index` as bytes.
    #[inline(always)]
    pub fn read_block(&self, index: usize) -> [u8; BLOCK_BYTES] {
        self.check(index, 1);
        // SAFETY: `check` proved block `index` lies inside the `blocks * 16` bytes that `src`
        // is valid to read (struct invariant); `read_unaligned` has no alignment requirement.
        unsafe {
            self.src
                .add(index * BLOCK_BYTES)
                .cast::<[u8; BLOCK_BYTES]>()
                .read_unaligned()
        }
    }

    /// Write block `index`.
    #[inline(always)]
    pub fn write_block(&mut self, index: usize, block: [u8; BLOCK_BYTES]) {
        self.check(index, 1);
        // SAFETY: `check` proved block `index` lies inside the `blocks * 16` bytes that `dst`
        // is valid to write; we hold the exclusive borrow, and `src` aliases `dst` only as a
        // raw pointer of the same provenance (no live reference is invalidated).
        unsafe {
            self.dst
                .add(index * BLOCK_BYTES)
                .cast::<[u8; BLOCK_BYTES]>()
                .write_unaligned(block)
        }
    }

    /// Raw source and destination pointers to blocks `index .. index + count`, checked once
    /// for the whole range, so a kernel's inner loop needs no per-block check. Both pointers
    /// are valid for `count * 16` bytes (reads through the first, writes through the second)
    /// while `self` stays mutably borrowed; in place they are equal, so a kernel must read a
    /// block before it writes it and never read it again afterwards (see the module comment).
    #[inline(always)]
    pub(crate) fn raw_range(&mut self, index: usize, count: usize) -> (*const u8, *mut u8) {
        self.check(index, count);
        // SAFETY: `check` proved `index < blocks`, so the offset stays inside the `blocks * 16`
        // bytes both pointers are valid for (struct invariant).
        unsafe {
            (
                self.src.add(index * BLOCK_BYTES),
                self.dst.add(index * BLOCK_BYTES),
            )
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BlockIo, BLOCK_BYTES};
    use core::arch::x86_64::*;

    impl BlockIo<'_> {
        /// Load block `index` into an SSE register (SSE2 is baseline on x86_64).
        #[inline(always)]
        pub(crate) fn load1(&self, index: usize) -> __m128i {
            self.check(index, 1);
            // SAFETY: block `index` is in range (checked) of the readable `src` region;
            // `_mm_loadu_si128` accepts any alignment, and SSE2 is part of the x86_64 baseline.
            unsafe { _mm_loadu_si128(self.src.add(index * BLOCK_BYTES).cast()) }
        }

        /// Store block `index` from an SSE register.
        #[inline(always)]
        pub(crate) fn store1(&mut self, index: usize, value: __m128i) {
            self.check(index, 1);
            // SAFETY: block `index` is in range (checked) of the writable `dst` region, which
            // we borrow exclusively; unaligned store; SSE2 is baseline on x86_64.
            unsafe { _mm_storeu_si128(self.dst.add(index * BLOCK_BYTES).cast(), value) }
        }

        /// Load blocks `index .. index + 4` into one ZMM register.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(crate) fn load4(&self, index: usize) -> __m512i {
            self.check(index, 4);
            // SAFETY: the four blocks are in range (checked) of `src`; unaligned load; the
            // caller has AVX-512F (this fn is only callable from code compiled with it).
            unsafe { _mm512_loadu_si512(self.src.add(index * BLOCK_BYTES).cast()) }
        }

        /// Store blocks `index .. index + 4` from one ZMM register.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(crate) fn store4(&mut self, index: usize, value: __m512i) {
            self.check(index, 4);
            // SAFETY: the four blocks are in range (checked) of the exclusively borrowed
            // `dst`; unaligned store; AVX-512F is enabled for this function.
            unsafe { _mm512_storeu_si512(self.dst.add(index * BLOCK_BYTES).cast(), value) }
        }

        /// Load `count` (1..=4) blocks starting at `index` into the low lanes of a ZMM
        /// register; the other lanes are zero. Memory past `count` blocks is not touched
        /// (masked-off lanes do not fault and are not read).
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(crate) fn load_partial4(&self, index: usize, count: usize) -> __m512i {
            debug_assert!((1..=4).contains(&count));
            self.check(index, count);
            // SAFETY: only the first `count` blocks (2 * count qwords) are enabled in the mask
            // and they are in range (checked); masked-off elements are never accessed.
            unsafe {
                _mm512_maskz_loadu_epi64(lane_mask(count), self.src.add(index * BLOCK_BYTES).cast())
            }
        }

        /// Store the low `count` (1..=4) block lanes of `value` at `index`; nothing else is
        /// written.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(crate) fn store_partial4(&mut self, index: usize, count: usize, value: __m512i) {
            debug_assert!((1..=4).contains(&count));
            self.check(index, count);
            // SAFETY: only the first `count` blocks are enabled in the mask and they are in
            // range (checked) of the exclusively borrowed `dst`; masked-off bytes are untouched.
            unsafe {
                _mm512_mask_storeu_epi64(
                    self.dst.add(index * BLOCK_BYTES).cast(),
                    lane_mask(count),
                    value,
                )
            }
        }
    }

    /// Qword mask selecting the low `count` 128-bit lanes (two qwords per lane).
    #[inline(always)]
    fn lane_mask(count: usize) -> __mmask8 {
        ((1u16 << (2 * count.min(4))) - 1) as __mmask8
    }
}

fn whole_blocks(len: usize) -> Result<usize, BlockIoError> {
    if len.is_multiple_of(BLOCK_BYTES) {
        Ok(len / BLOCK_BYTES)
    } else {
        Err(BlockIoError::NotBlockAligned { len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_mismatched_and_unaligned_lengths() {
        let src = [0u8; 32];
        let mut dst = [0u8; 48];
        assert_eq!(
            BlockIo::copy(&src, &mut dst).err(),
            Some(BlockIoError::LengthMismatch { src: 32, dst: 48 })
        );
        let mut odd = [0u8; 17];
        assert_eq!(
            BlockIo::in_place(&mut odd).err(),
            Some(BlockIoError::NotBlockAligned { len: 17 })
        );
    }

    #[test]
    fn in_place_reads_then_writes_same_memory() {
        let mut buf: Vec<u8> = (0..64).collect();
        let mut io = BlockIo::in_place(&mut buf).unwrap();
        for i in 0..io.blocks() {
            let mut b = io.read_block(i);
            b.iter_mut().for_each(|x| *x ^= 0xff);
            io.write_block(i, b);
        }
        assert_eq!(buf, (0..64).map(|x: u8| x ^ 0xff).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "block index out of range")]
    fn out_of_range_access_panics_instead_of_reading_past_the_end() {
        let src = [0u8; 32];
        let mut dst = [0u8; 32];
        let io = BlockIo::copy(&src, &mut dst).unwrap();
        let _ = io.read_block(2);
    }
}
