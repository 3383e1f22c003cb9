//! XTS-AES-256 on VAES + AVX-512F: four AES blocks per ZMM register, eight registers
//! (32 blocks, 512 bytes) in flight.
//!
//! Same construction as the AES-NI backend (see `aesni.rs` for the round-key folding), widened:
//! `VAESENC zmm` runs one AES round on four independent 128-bit lanes. The tweaks of the 32
//! blocks in flight are kept in eight ZMM registers, lane j of register i holding T ⊗ α^(4i+j);
//! advancing to the next 32 blocks multiplies every lane by α^32 (independent per register, so
//! no serial chain of doublings). The 512-byte sector is exactly one iteration.

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::aesni::{self, XtsKeys, ROUND_KEYS, TWEAK_GROUP};
use super::{CpuFeatures, Direction};
use crate::block_io::BlockIo;
use crate::tweak::TweakSource;

/// Round keys broadcast to all four lanes.
type WideSchedule = [__m512i; ROUND_KEYS];

/// A cipher that runs on VAES. Its existence proves the CPU has AVX-512F, VAES, AES-NI and
/// SSE4.1: the only constructor checks, which makes calling the kernels sound.
pub struct VaesXts {
    keys: Box<XtsKeys>,
}

impl VaesXts {
    /// `None` when the CPU lacks any of AVX-512F, VAES, AES-NI, SSE4.1.
    pub fn new(key: &[u8; 64]) -> Option<Self> {
        if !CpuFeatures::get().vaes_path() {
            return None;
        }
        // SAFETY: AES-NI was detected on this CPU just above (part of `vaes_path`).
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
        // SAFETY: a `VaesXts` is only constructed after detecting AVX-512F, VAES, AES-NI and
        // SSE4.1, the features these functions are compiled for.
        unsafe {
            match direction {
                Direction::Encrypt => xts_units::<false>(&self.keys, tweaks, unit_blocks, io),
                Direction::Decrypt => xts_units::<true>(&self.keys, tweaks, unit_blocks, io),
            }
        }
    }
}

#[target_feature(enable = "avx512f,vaes,aes,sse4.1")]
fn xts_units<const DECRYPT: bool>(
    keys: &XtsKeys,
    tweaks: &TweakSource<'_>,
    unit_blocks: usize,
    io: &mut BlockIo<'_>,
) {
    let schedule = if DECRYPT {
        &keys.data_dec
    } else {
        &keys.data_enc
    };
    // Broadcast once per call, not per unit: with 512-byte sectors, reloading 15 keys per
    // unit would cost a noticeable share of the 120 AES rounds a unit takes.
    let mut rk: WideSchedule = [_mm512_setzero_si512(); ROUND_KEYS];
    for (wide, k) in rk.iter_mut().zip(schedule) {
        *wide = _mm512_broadcast_i32x4(*k);
    }
    let units = tweaks.units();
    let mut t = [_mm_setzero_si128(); TWEAK_GROUP];
    let mut unit = 0;
    while unit < units {
        let group = (units - unit).min(TWEAK_GROUP);
        aesni::encrypt_tweaks(&keys.tweak_enc, tweaks, unit, group, &mut t);
        for (i, ti) in t.iter().take(group).enumerate() {
            xts_unit::<DECRYPT>(&rk, *ti, (unit + i) * unit_blocks, unit_blocks, io);
        }
        unit += group;
    }
    // Key material and key-derived tweaks: do not leave them in stack memory.
    t.zeroize();
    rk.zeroize();
}

/// One data unit of `blocks` 16-byte blocks starting at block `first` of `io`, whose
/// encrypted tweak is `t0`.
#[inline]
#[target_feature(enable = "avx512f,vaes,aes,sse4.1")]
fn xts_unit<const DECRYPT: bool>(
    rk: &WideSchedule,
    t0: __m128i,
    first: usize,
    blocks: usize,
    io: &mut BlockIo<'_>,
) {
    // Lane j of register i gets T ⊗ α^(4i + j). Every register is derived from `lanes` in one
    // step rather than by a chain of doublings, so with 512-byte sectors (one iteration per
    // unit) the next unit's tweak setup does not sit on a long dependency chain.
    let lanes = mul_x_lanes(_mm512_broadcast_i32x4(t0));
    let mut tw = [
        lanes,
        mul_x4(lanes),
        mul_x8(lanes),
        mul_x12(lanes),
        mul_x16(lanes),
        mul_x20(lanes),
        mul_x24(lanes),
        mul_x28(lanes),
    ];
    let mut b = 0;
    while b + 32 <= blocks {
        let mut x = [_mm512_setzero_si512(); 8];
        for (i, (xi, ti)) in x.iter_mut().zip(&tw).enumerate() {
            // P ⊕ T ⊕ round key 0 in one three-way XOR.
            *xi = _mm512_ternarylogic_epi64::<0x96>(io.load4(first + b + 4 * i), *ti, rk[0]);
        }
        for k in &rk[1..ROUND_KEYS - 1] {
            for xi in x.iter_mut() {
                *xi = round::<DECRYPT>(*xi, *k);
            }
        }
        for (i, (xi, ti)) in x.iter().zip(&tw).enumerate() {
            let last_key = _mm512_xor_si512(rk[ROUND_KEYS - 1], *ti);
            io.store4(first + b + 4 * i, last_round::<DECRYPT>(*xi, last_key));
        }
        b += 32;
        if b < blocks {
            for ti in tw.iter_mut() {
                *ti = mul_x32(*ti);
            }
        }
    }
    // Fewer than 32 blocks left: only data units that are not a multiple of 512 bytes (the
    // low-level API). Register i still holds the tweaks of blocks b + 4i .. b + 4i + 4.
    let mut i = 0;
    while b < blocks {
        let count = (blocks - b).min(4);
        let mut x =
            _mm512_ternarylogic_epi64::<0x96>(io.load_partial4(first + b, count), tw[i], rk[0]);
        for k in &rk[1..ROUND_KEYS - 1] {
            x = round::<DECRYPT>(x, *k);
        }
        let last_key = _mm512_xor_si512(rk[ROUND_KEYS - 1], tw[i]);
        io.store_partial4(first + b, count, last_round::<DECRYPT>(x, last_key));
        b += count;
        i += 1;
    }
}

#[inline]
#[target_feature(enable = "avx512f,vaes")]
fn round<const DECRYPT: bool>(x: __m512i, k: __m512i) -> __m512i {
    if DECRYPT {
        _mm512_aesdec_epi128(x, k)
    } else {
        _mm512_aesenc_epi128(x, k)
    }
}

#[inline]
#[target_feature(enable = "avx512f,vaes")]
fn last_round<const DECRYPT: bool>(x: __m512i, k: __m512i) -> __m512i {
    if DECRYPT {
        _mm512_aesdeclast_epi128(x, k)
    } else {
        _mm512_aesenclast_epi128(x, k)
    }
}

/// `t ⊗ α^K` on each of the four 128-bit lanes, for K <= 57; same method as
/// `aesni::mul_x_xmm` (IEEE 1619 §5.2 little-endian convention, reduction by 0x87).
macro_rules! mul_x_zmm {
    ($name:ident, $k:literal) => {
        #[inline]
        #[target_feature(enable = "avx512f")]
        fn $name(t: __m512i) -> __m512i {
            let carries = _mm512_srli_epi64::<{ 64 - $k }>(t);
            _mm512_xor_si512(_mm512_slli_epi64::<$k>(t), carry_fix(carries))
        }
    };
}

/// What the bits shifted out of each 64-bit half contribute after the shift: the low half's
/// carries move into the high half as they are, the high half's wrap into the low half reduced
/// by the XTS polynomial (carry-less times 0x87). `carries` holds, per qword, the bits that
/// left it.
#[inline]
#[target_feature(enable = "avx512f")]
fn carry_fix(carries: __m512i) -> __m512i {
    // Per lane: [carry of low half, carry of high half] -> [carry of high, of low].
    let swapped = _mm512_shuffle_epi32::<0x4e>(carries);
    // c * 0x87 carry-less = c ⊕ c<<1 ⊕ c<<2 ⊕ c<<7.
    let reduced = _mm512_xor_si512(
        _mm512_ternarylogic_epi64::<0x96>(
            swapped,
            _mm512_slli_epi64::<1>(swapped),
            _mm512_slli_epi64::<2>(swapped),
        ),
        _mm512_slli_epi64::<7>(swapped),
    );
    // Even qwords (low halves) take the reduced carry, odd ones the plain carry.
    _mm512_mask_blend_epi64(0xaa, reduced, swapped)
}

mul_x_zmm!(mul_x4, 4);
mul_x_zmm!(mul_x8, 8);
mul_x_zmm!(mul_x12, 12);
mul_x_zmm!(mul_x16, 16);
mul_x_zmm!(mul_x20, 20);
mul_x_zmm!(mul_x24, 24);
mul_x_zmm!(mul_x28, 28);
mul_x_zmm!(mul_x32, 32);

/// Lane j (0..4) of `t` times α^j: the same method with a per-lane shift count. A shift by 64
/// (lane 0's carry) yields zero with the variable-shift instructions, as needed.
#[inline]
#[target_feature(enable = "avx512f")]
fn mul_x_lanes(t: __m512i) -> __m512i {
    let left = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
    let right = _mm512_set_epi64(61, 61, 62, 62, 63, 63, 64, 64);
    let carries = _mm512_srlv_epi64(t, right);
    _mm512_xor_si512(_mm512_sllv_epi64(t, left), carry_fix(carries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gf128;

    fn lanes(v: __m512i) -> [u128; 4] {
        let mut out = [0u8; 64];
        // SAFETY: `out` is 64 writable bytes; unaligned store; only called after AVX-512F
        // detection (the tests return early otherwise).
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
        core::array::from_fn(|i| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&out[16 * i..16 * i + 16]);
            u128::from_le_bytes(b)
        })
    }

    #[test]
    fn wide_doubling_matches_scalar() {
        if !CpuFeatures::get().vaes_path() {
            return;
        }
        let mut seed: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for round in 0..100 {
            let mut x = [0u128; 4];
            for (j, xj) in x.iter_mut().enumerate() {
                seed = seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                    .rotate_left(29);
                *xj = if round == 0 { u128::MAX >> j } else { seed };
            }
            let mut bytes = [0u8; 64];
            for j in 0..4 {
                bytes[16 * j..16 * j + 16].copy_from_slice(&x[j].to_le_bytes());
            }
            // SAFETY: AVX-512F was detected above; the load reads the 64 bytes of `bytes`.
            let (four, thirty_two) = unsafe {
                let v = _mm512_loadu_si512(bytes.as_ptr().cast());
                (mul_x4(v), mul_x32(v))
            };
            // SAFETY: AVX-512F was detected above; the load reads the 64 bytes of `bytes`.
            let (lanes0, twenty_eight) = unsafe {
                let v = _mm512_loadu_si512(bytes.as_ptr().cast());
                (mul_x_lanes(v), mul_x28(v))
            };
            let expect_lanes: [u128; 4] =
                core::array::from_fn(|j| gf128::mul_x_pow(x[j], j as u32));
            assert_eq!(lanes(lanes0), expect_lanes);
            assert_eq!(lanes(twenty_eight), x.map(|v| gf128::mul_x_pow(v, 28)));
            let expect4 = x.map(|v| gf128::mul_x_pow(v, 4));
            let expect32 = x.map(|v| gf128::mul_x_pow(v, 32));
            assert_eq!(lanes(four), expect4);
            assert_eq!(lanes(thirty_two), expect32);
        }
    }
}
