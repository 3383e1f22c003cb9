//! XTS-AES-256 on VAES with 256-bit registers (AVX2, no AVX-512): two AES blocks per YMM
//! register, eight registers (16 blocks, 256 bytes) in flight. For CPUs that have VAES but not
//! AVX-512 (AMD Zen 3, Intel Alder Lake and later client cores), where the `vaes-avx512` path
//! cannot run and `aesni-x8` would use half of each AES unit's width.
//!
//! The same construction as `aesni` (see there for the round-key folding and the two
//! alternating tweak buffers), widened: `VAESENC ymm` runs one AES round on two independent
//! 128-bit lanes. Register i of a group holds the tweaks of blocks 2i and 2i + 1; the next
//! group's register i is this one times α^16 per lane, which is a two-byte left shift of each
//! lane (`VPSLLDQ` works per 128-bit lane) with the two bytes shifted out reduced by
//! x^128 + x^7 + x^2 + x + 1 (IEEE 1619 §5.2). Each register is advanced independently, so no
//! chain of doublings sits in front of a group.

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::aesni::{self, XtsKeys, ROUND_KEYS, TWEAK_GROUP};
use super::{CpuFeatures, Direction};
use crate::block_io::{BlockIo, BLOCK_BYTES};
use crate::tweak::TweakSource;

/// Blocks per group: eight YMM registers of two blocks.
const GROUP_BLOCKS: usize = 16;

/// The tweaks of one group, two per register, 32-byte aligned (the kernel reads and writes them
/// with aligned moves).
type GroupTweaks = [__m256i; 8];

/// A cipher that runs on VAES with AVX2. Its existence proves the CPU has VAES, AVX2, AES-NI
/// and SSE4.1: the only constructor checks, which makes calling the kernels sound.
pub struct VaesAvx2Xts {
    keys: Box<XtsKeys>,
}

impl VaesAvx2Xts {
    /// `None` when the CPU lacks any of VAES, AVX2, AES-NI, SSE4.1.
    pub fn new(key: &[u8; 64]) -> Option<Self> {
        if !CpuFeatures::get().vaes_avx2_path() {
            return None;
        }
        // SAFETY: AES-NI was detected on this CPU just above (part of `vaes_avx2_path`).
        let keys = unsafe { XtsKeys::expand(key) };
        Some(Self { keys })
    }

    /// Encrypts or decrypts `tweaks.units()` consecutive data units of `unit_blocks` blocks.
    /// The caller (`xts::XtsAes256::process`) has checked that `io` holds exactly that many.
    pub fn process(
        &self,
        direction: Direction,
        tweaks: &TweakSource<'_>,
        unit_blocks: usize,
        io: &mut BlockIo<'_>,
    ) {
        if !unit_blocks.is_multiple_of(GROUP_BLOCKS) {
            // Data units of a multiple of 16 bytes but not of 256 (only the explicit-tweak
            // API): the AES-NI kernels handle every length.
            return aesni::process_with_keys(&self.keys, direction, tweaks, unit_blocks, io);
        }
        // SAFETY: a `VaesAvx2Xts` is only constructed after detecting VAES, AVX2, AES-NI and
        // SSE4.1, the features this function is compiled for.
        unsafe {
            match direction {
                Direction::Encrypt => xts_units::<false>(&self.keys, tweaks, unit_blocks, io),
                Direction::Decrypt => xts_units::<true>(&self.keys, tweaks, unit_blocks, io),
            }
        }
    }
}

/// The data path for units of a multiple of 16 blocks: one stream of 16-block groups. Three
/// tweak buffers rotate: `cur` (this group), `next` (the next group) and a scratch buffer. Within
/// a unit the kernel writes the next group's tweaks into `next`; before the last group of a unit
/// the next unit's first sixteen tweaks are computed into `next` here instead, and the kernel
/// writes its (unneeded) continuation into the scratch buffer.
#[target_feature(enable = "avx2,vaes,aes,sse4.1")]
fn xts_units<const DECRYPT: bool>(
    keys: &XtsKeys,
    tweaks: &TweakSource<'_>,
    unit_blocks: usize,
    io: &mut BlockIo<'_>,
) {
    let rk = if DECRYPT {
        &keys.data_dec
    } else {
        &keys.data_enc
    };
    let units = tweaks.units();
    let groups_per_unit = unit_blocks / GROUP_BLOCKS;
    let groups = units * groups_per_unit;
    if groups == 0 {
        return;
    }
    // The caller checked `units * unit_blocks == io.blocks()`; checked again here, once.
    let (src, dst) = io.raw_range(0, groups * GROUP_BLOCKS);
    let mut encrypted = [_mm_setzero_si128(); TWEAK_GROUP];
    aesni::encrypt_tweaks(
        &keys.tweak_enc,
        tweaks,
        0,
        units.min(TWEAK_GROUP),
        &mut encrypted,
    );
    let mut buffers: [GroupTweaks; 3] = [[_mm256_setzero_si256(); 8]; 3];
    buffers[0] = first_tweaks(encrypted[0]);
    let mut cur = 0;
    let mut unit = 0;
    let mut group_in_unit = 0;
    for group in 0..groups {
        let next = (cur + 1) % 3;
        let mut write = next;
        group_in_unit += 1;
        if group_in_unit == groups_per_unit {
            group_in_unit = 0;
            unit += 1;
            if unit < units {
                if unit.is_multiple_of(TWEAK_GROUP) {
                    let count = (units - unit).min(TWEAK_GROUP);
                    aesni::encrypt_tweaks(&keys.tweak_enc, tweaks, unit, count, &mut encrypted);
                }
                buffers[next] = first_tweaks(encrypted[unit % TWEAK_GROUP]);
                write = (cur + 2) % 3;
            }
        }
        let offset = group * GROUP_BLOCKS * BLOCK_BYTES;
        let base = buffers.as_mut_ptr();
        // SAFETY: the group's blocks lie below `groups * 16`, the range `raw_range` checked, so
        // both data offsets stay in their regions; `cur` and `write` are different indices
        // below 3, so the two tweak pointers are in bounds and do not overlap; this CPU has
        // VAES and AVX2 (this function is only reachable through `VaesAvx2Xts`).
        unsafe {
            group16::<DECRYPT>(
                rk,
                base.add(cur).cast_const(),
                base.add(write),
                src.add(offset),
                dst.add(offset),
            );
        }
        cur = next;
    }
    // Key-derived tweaks: do not leave them in stack memory.
    encrypted.zeroize();
    for b in buffers.iter_mut() {
        b.zeroize();
    }
}

/// The first sixteen tweaks of a data unit whose encrypted tweak is `t`: register i holds
/// `[T ⊗ α^(2i), T ⊗ α^(2i+1)]`, each derived from the first register in one step.
#[inline]
#[target_feature(enable = "avx2,sse4.1")]
fn first_tweaks(t: __m128i) -> GroupTweaks {
    let base = _mm256_set_m128i(aesni::double(t), t);
    let mut out = [base; 8];
    for (i, reg) in out.iter_mut().enumerate().skip(1) {
        *reg = mul_x_k(base, 2 * i as i32);
    }
    out
}

/// `t ⊗ α^k` on each 128-bit lane, for 1 <= k <= 57 (the method of `aesni::mul_x_xmm`, with the
/// shift count in a register: this runs once per data unit, not per block).
#[inline]
#[target_feature(enable = "avx2")]
fn mul_x_k(t: __m256i, k: i32) -> __m256i {
    let left = _mm_cvtsi32_si128(k);
    let right = _mm_cvtsi32_si128(64 - k);
    // Per 64-bit half: the bits that leave it.
    let carries = _mm256_srl_epi64(t, right);
    // Per lane: [carry of low half, carry of high half] -> [carry of high, of low].
    let swapped = _mm256_shuffle_epi32::<0x4e>(carries);
    // c * 0x87 carry-less = c ⊕ c<<1 ⊕ c<<2 ⊕ c<<7 (the low halves take the reduced carry).
    let reduced = _mm256_xor_si256(
        _mm256_xor_si256(swapped, _mm256_slli_epi64::<1>(swapped)),
        _mm256_xor_si256(
            _mm256_slli_epi64::<2>(swapped),
            _mm256_slli_epi64::<7>(swapped),
        ),
    );
    // Dwords 2, 3, 6, 7 (the high halves) take the plain carry of the low half.
    let fix = _mm256_blend_epi32::<0b1100_1100>(reduced, swapped);
    _mm256_xor_si256(_mm256_sll_epi64(t, left), fix)
}

/// One group: encrypts (or decrypts) the sixteen blocks at `src` into `dst` with the tweaks at
/// `cur`, and writes the next group's tweaks (`cur` times α^16 per lane) to `next`.
///
/// Hand-scheduled like `aesni::group8`: each round is one broadcast round key applied to all
/// eight registers, and one register's tweak update is slotted in after each of the first eight
/// rounds. VEX encoding lets the loads be memory operands at any alignment.
///
/// # Safety
/// The CPU has VAES and AVX2; `src` is readable and `dst` writable for 256 bytes (the same
/// memory or disjoint); `cur` is readable and `next` writable for 256 bytes, 32-byte aligned,
/// and they do not overlap.
#[inline]
#[target_feature(enable = "avx2,vaes,aes")]
unsafe fn group16<const DECRYPT: bool>(
    rk: &[__m128i; ROUND_KEYS],
    cur: *const GroupTweaks,
    next: *mut GroupTweaks,
    src: *const u8,
    dst: *mut u8,
) {
    if DECRYPT {
        // SAFETY: the caller's contract.
        unsafe { group16_asm!("vaesdec", "vaesdeclast", rk, cur, next, src, dst) }
    } else {
        // SAFETY: the caller's contract.
        unsafe { group16_asm!("vaesenc", "vaesenclast", rk, cur, next, src, dst) }
    }
}

/// The body of `group16` for one direction (`$round`/`$last`: `vaesenc`/`vaesenclast` or
/// `vaesdec`/`vaesdeclast`).
macro_rules! group16_asm {
    ($round:literal, $last:literal, $rk:expr, $cur:expr, $next:expr, $src:expr, $dst:expr) => {
        core::arch::asm!(
            // x_i = P_i ⊕ T_i ⊕ round key 0 (two blocks per register), all loads before any store.
            "vbroadcasti128 {k}, xmmword ptr [{rk}]",
            "vpxor ymm0, {k}, ymmword ptr [{cur} + 0]",
            "vpxor ymm0, ymm0, ymmword ptr [{src} + 0]",
            "vpxor ymm1, {k}, ymmword ptr [{cur} + 32]",
            "vpxor ymm1, ymm1, ymmword ptr [{src} + 32]",
            "vpxor ymm2, {k}, ymmword ptr [{cur} + 64]",
            "vpxor ymm2, ymm2, ymmword ptr [{src} + 64]",
            "vpxor ymm3, {k}, ymmword ptr [{cur} + 96]",
            "vpxor ymm3, ymm3, ymmword ptr [{src} + 96]",
            "vpxor ymm4, {k}, ymmword ptr [{cur} + 128]",
            "vpxor ymm4, ymm4, ymmword ptr [{src} + 128]",
            "vpxor ymm5, {k}, ymmword ptr [{cur} + 160]",
            "vpxor ymm5, ymm5, ymmword ptr [{src} + 160]",
            "vpxor ymm6, {k}, ymmword ptr [{cur} + 192]",
            "vpxor ymm6, ymm6, ymmword ptr [{src} + 192]",
            "vpxor ymm7, {k}, ymmword ptr [{cur} + 224]",
            "vpxor ymm7, ymm7, ymmword ptr [{src} + 224]",
            // Round 1; then next register 0: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 16]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 0]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 0], {t}",
            // Round 2; then next register 1: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 32]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 32]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 32], {t}",
            // Round 3; then next register 2: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 48]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 64]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 64], {t}",
            // Round 4; then next register 3: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 64]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 96]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 96], {t}",
            // Round 5; then next register 4: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 80]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 128]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 128], {t}",
            // Round 6; then next register 5: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 96]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 160]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 160], {t}",
            // Round 7; then next register 6: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 112]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 192]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 192], {t}",
            // Round 8; then next register 7: T ⊗ α^16 per lane (a two-byte shift, the two bytes out reduced by 0x87).
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 128]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            "vmovdqa {t}, ymmword ptr [{cur} + 224]",
            "vpsrldq {c}, {t}, 14",
            "vpslldq {t}, {t}, 2",
            "vpxor {t}, {t}, {c}",
            "vpsllq {a}, {c}, 1",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 2",
            "vpxor {t}, {t}, {a}",
            "vpsllq {a}, {c}, 7",
            "vpxor {t}, {t}, {a}",
            "vmovdqa ymmword ptr [{next} + 224], {t}",
            // Round 9.
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 144]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            // Round 10.
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 160]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            // Round 11.
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 176]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            // Round 12.
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 192]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            // Round 13.
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 208]",
            concat!($round, " ymm0, ymm0, {k}"),
            concat!($round, " ymm1, ymm1, {k}"),
            concat!($round, " ymm2, ymm2, {k}"),
            concat!($round, " ymm3, ymm3, {k}"),
            concat!($round, " ymm4, ymm4, {k}"),
            concat!($round, " ymm5, ymm5, {k}"),
            concat!($round, " ymm6, ymm6, {k}"),
            concat!($round, " ymm7, ymm7, {k}"),
            // Last round with T_i folded into its key, then the stores.
            "vbroadcasti128 {k}, xmmword ptr [{rk} + 224]",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 0]",
            concat!($last, " ymm0, ymm0, {t}"),
            "vmovdqu ymmword ptr [{dst} + 0], ymm0",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 32]",
            concat!($last, " ymm1, ymm1, {t}"),
            "vmovdqu ymmword ptr [{dst} + 32], ymm1",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 64]",
            concat!($last, " ymm2, ymm2, {t}"),
            "vmovdqu ymmword ptr [{dst} + 64], ymm2",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 96]",
            concat!($last, " ymm3, ymm3, {t}"),
            "vmovdqu ymmword ptr [{dst} + 96], ymm3",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 128]",
            concat!($last, " ymm4, ymm4, {t}"),
            "vmovdqu ymmword ptr [{dst} + 128], ymm4",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 160]",
            concat!($last, " ymm5, ymm5, {t}"),
            "vmovdqu ymmword ptr [{dst} + 160], ymm5",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 192]",
            concat!($last, " ymm6, ymm6, {t}"),
            "vmovdqu ymmword ptr [{dst} + 192], ymm6",
            "vpxor {t}, {k}, ymmword ptr [{cur} + 224]",
            concat!($last, " ymm7, ymm7, {t}"),
            "vmovdqu ymmword ptr [{dst} + 224], ymm7",
            rk = in(reg) $rk.as_ptr(),
            cur = in(reg) $cur,
            next = in(reg) $next,
            src = in(reg) $src,
            dst = in(reg) $dst,
            k = out(ymm_reg) _,
            t = out(ymm_reg) _,
            c = out(ymm_reg) _,
            a = out(ymm_reg) _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            options(nostack, preserves_flags),
        )
    };
}
use group16_asm;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gf128;

    fn lanes(v: __m256i) -> [u128; 2] {
        let mut out = [0u8; 32];
        // SAFETY: `out` is 32 writable bytes; unaligned store; only called after AVX2
        // detection (the test returns early otherwise).
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
        core::array::from_fn(|i| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&out[16 * i..16 * i + 16]);
            u128::from_le_bytes(b)
        })
    }

    fn from_u128(x: u128) -> __m128i {
        let bytes = x.to_le_bytes();
        // SAFETY: reads the 16 bytes of `bytes`; unaligned load; SSE2 is baseline on x86_64.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    #[test]
    fn first_tweaks_are_consecutive_powers_of_alpha() {
        if !CpuFeatures::get().vaes_avx2_path() {
            println!("vaes-avx2: skipped, this CPU cannot run it");
            return;
        }
        let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for round in 0..100 {
            let t = if round == 0 { u128::MAX } else { x };
            // SAFETY: AVX2 and SSE4.1 were detected above.
            let regs = unsafe { first_tweaks(from_u128(t)) };
            for (i, reg) in regs.iter().enumerate() {
                let expect = [
                    gf128::mul_x_pow(t, 2 * i as u32),
                    gf128::mul_x_pow(t, 2 * i as u32 + 1),
                ];
                assert_eq!(lanes(*reg), expect, "register {i}");
            }
            x = x
                .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                .rotate_left(23);
        }
    }
}
