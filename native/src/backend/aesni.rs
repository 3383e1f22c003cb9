//! XTS-AES-256 on AES-NI (XMM registers), eight blocks in flight.
//!
//! Also home of the AES-256 key schedule shared with the VAES backend: the expansion uses
//! `AESKEYGENASSIST`, which is constant-time (no table lookups indexed by key bytes).
//!
//! One `AESENC` has a latency of several cycles but the CPU can start one or two per cycle,
//! so a single block at a time would leave the AES units mostly idle. XTS blocks within a data
//! unit are independent once their tweaks are known, so we run eight blocks through each round
//! together.
//!
//! The main loop (`group8`, for data units of a multiple of eight blocks, i.e. every sector
//! size) is hand-scheduled inline assembly: LLVM's register allocation of the intrinsics
//! version spilled round states inside the round loop. Measured on an AMD EPYC (Zen 4) with
//! `cargo test --release bench_backends -- --ignored`, alternating with `openssl speed -evp
//! aes-256-xts` in the same run: the intrinsics kernel ran at 0.87x (4 KiB) and 1.04x (512 B)
//! of OpenSSL 3.0, this one at 1.17x and 1.45x.
//!
//! Two XTS-specific savings (IEEE 1619 §5.3.2: C = E_K1(P ⊕ T) ⊕ T):
//! - the input tweak XOR and round key 0 are applied together;
//! - the output tweak XOR is folded into the last round key, since
//!   `AESENCLAST(x, k ⊕ T) = AESENCLAST(x, k) ⊕ T` (the last round ends with AddRoundKey).
//!   The same holds for `AESDECLAST` in the Equivalent Inverse Cipher (FIPS-197 §5.3.5).

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::{CpuFeatures, Direction};
use crate::block_io::{BlockIo, BLOCK_BYTES};
use crate::tweak::TweakSource;

/// AES-256 has 14 rounds, so 15 round keys.
pub(crate) const ROUND_KEYS: usize = 15;

/// Round keys of one AES-256 key.
pub(crate) type Schedule = [__m128i; ROUND_KEYS];

/// How many data units' tweaks are encrypted together (one `encrypt8` call).
pub(crate) const TWEAK_GROUP: usize = 8;

/// Expanded round keys of one XTS-AES-256 key (K1 for data, K2 for tweaks, IEEE 1619 §5.1).
///
/// Always lives in a `Box`, filled in place, so moving a cipher around never leaves copies of
/// round keys behind on the stack; zeroized when dropped.
pub(crate) struct XtsKeys {
    /// K1 encryption round keys.
    pub(crate) data_enc: Schedule,
    /// K1 round keys for the Equivalent Inverse Cipher (FIPS-197 §5.3.5): reversed, with
    /// InvMixColumns applied to rounds 1..=13, as `AESDEC` expects.
    pub(crate) data_dec: Schedule,
    /// K2 encryption round keys; the tweak is only ever encrypted, also when decrypting data
    /// (IEEE 1619 §5.4.1).
    pub(crate) tweak_enc: Schedule,
}

impl Drop for XtsKeys {
    fn drop(&mut self) {
        self.data_enc.zeroize();
        self.data_dec.zeroize();
        self.tweak_enc.zeroize();
    }
}

impl XtsKeys {
    /// Expands `key` (K1 ‖ K2) into a new boxed schedule.
    #[target_feature(enable = "aes")]
    pub(crate) fn expand(key: &[u8; 64]) -> Box<XtsKeys> {
        let zero = _mm_setzero_si128();
        let mut keys = Box::new(XtsKeys {
            data_enc: [zero; ROUND_KEYS],
            data_dec: [zero; ROUND_KEYS],
            tweak_enc: [zero; ROUND_KEYS],
        });
        let (k1, k2) = key.split_at(32);
        expand_schedule(k1, &mut keys.data_enc);
        expand_schedule(k2, &mut keys.tweak_enc);
        let XtsKeys {
            data_enc, data_dec, ..
        } = &mut *keys;
        invert_schedule(data_enc, data_dec);
        keys
    }
}

/// A cipher that runs on AES-NI. Its existence proves the CPU has AES-NI and SSE4.1: the only
/// constructor checks, which is what makes calling the `#[target_feature]` kernels sound.
pub struct AesNiXts {
    keys: Box<XtsKeys>,
}

impl AesNiXts {
    /// `None` when the CPU lacks AES-NI or SSE4.1.
    pub fn new(key: &[u8; 64]) -> Option<Self> {
        if !CpuFeatures::get().aesni_path() {
            return None;
        }
        // SAFETY: AES-NI was detected on this CPU just above.
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
        // SAFETY: an `AesNiXts` is only constructed after detecting AES-NI and SSE4.1, the
        // features these functions are compiled for.
        unsafe {
            match direction {
                Direction::Encrypt => xts_units::<false>(&self.keys, tweaks, unit_blocks, io),
                Direction::Decrypt => xts_units::<true>(&self.keys, tweaks, unit_blocks, io),
            }
        }
    }
}

/// The AES-NI data path on keys expanded elsewhere (the VAES-AVX2 backend hands it the data
/// units that are not a multiple of its 16-block groups).
pub(crate) fn process_with_keys(
    keys: &XtsKeys,
    direction: Direction,
    tweaks: &TweakSource<'_>,
    unit_blocks: usize,
    io: &mut BlockIo<'_>,
) {
    if !CpuFeatures::get().aesni_path() {
        // Unreachable (callers exist only on CPUs with AES-NI); refuse rather than fault.
        panic!("the AES-NI kernels were called on a CPU without AES-NI and SSE4.1");
    }
    // SAFETY: AES-NI and SSE4.1 were detected just above.
    unsafe {
        match direction {
            Direction::Encrypt => xts_units::<false>(keys, tweaks, unit_blocks, io),
            Direction::Decrypt => xts_units::<true>(keys, tweaks, unit_blocks, io),
        }
    }
}

/// Blocks in flight in the main loop. `AESENC` has a latency of four cycles and two can start
/// per cycle on current x86 cores (Zen 1 to Zen 4, Intel since Skylake), so eight independent
/// blocks are the fewest that keep both AES units busy; eight states, a round key and the
/// tweak arithmetic fit the sixteen XMM registers.
const LANES: usize = 8;

/// The tweaks of one group of eight blocks, 16-byte aligned (the group kernel reads them as
/// SSE memory operands, which must be aligned).
type GroupTweaks = [__m128i; LANES];

/// The data path. Data units whose length is a multiple of eight blocks (every sector size)
/// run as one stream of eight-block groups through `group8`; anything else takes
/// `xts_units_any`.
///
/// Two tweak buffers alternate: a group is encrypted with `cur` while `group8` writes the next
/// group's eight tweaks into `next`, starting from `s`. Within a data unit `s` is simply where
/// the previous group left it (the tweak after the last one written); before the last group of
/// a unit the caller sets `s` to the next unit's encrypted tweak instead, so the next unit's
/// first tweaks are ready before it starts and no group waits for a chain of doublings.
#[target_feature(enable = "aes,sse4.1")]
fn xts_units<const DECRYPT: bool>(
    keys: &XtsKeys,
    tweaks: &TweakSource<'_>,
    unit_blocks: usize,
    io: &mut BlockIo<'_>,
) {
    if !unit_blocks.is_multiple_of(LANES) {
        return xts_units_any::<DECRYPT>(keys, tweaks, unit_blocks, io);
    }
    let rk = if DECRYPT {
        &keys.data_dec
    } else {
        &keys.data_enc
    };
    let units = tweaks.units();
    let groups_per_unit = unit_blocks / LANES;
    let groups = units * groups_per_unit;
    if groups == 0 {
        return;
    }
    // The caller checked `units * unit_blocks == io.blocks()`; `raw_range` checks the range
    // again, once, so the loop below needs no per-block bounds check.
    let (src, dst) = io.raw_range(0, groups * LANES);
    let mut encrypted = [_mm_setzero_si128(); TWEAK_GROUP];
    encrypt_tweaks(
        &keys.tweak_enc,
        tweaks,
        0,
        units.min(TWEAK_GROUP),
        &mut encrypted,
    );
    let mut buffers: [GroupTweaks; 2] = [[_mm_setzero_si128(); LANES]; 2];
    buffers[0] = first_tweaks(encrypted[0]);
    let mut s = double(buffers[0][LANES - 1]);
    let mut unit = 0;
    let mut group_in_unit = 0;
    for group in 0..groups {
        group_in_unit += 1;
        if group_in_unit == groups_per_unit {
            // The last group of `unit`: the tweaks it writes are the next unit's first eight.
            group_in_unit = 0;
            unit += 1;
            if unit < units {
                if unit.is_multiple_of(TWEAK_GROUP) {
                    let count = (units - unit).min(TWEAK_GROUP);
                    encrypt_tweaks(&keys.tweak_enc, tweaks, unit, count, &mut encrypted);
                }
                s = encrypted[unit % TWEAK_GROUP];
            }
        }
        let (cur, next) = if group % 2 == 0 {
            let [a, b] = &mut buffers;
            (&*a, b)
        } else {
            let [a, b] = &mut buffers;
            (&*b, a)
        };
        let offset = group * LANES * BLOCK_BYTES;
        // SAFETY: the group's blocks `8 * group .. 8 * group + 8` lie below `groups * 8`, the
        // range `raw_range` checked, so both offsets stay inside the two regions; this CPU has
        // AES-NI and SSE4.1 (this function is only reachable through `AesNiXts`).
        unsafe {
            s = group8::<DECRYPT>(rk, cur, next, s, src.add(offset), dst.add(offset));
        }
    }
    // The encrypted tweaks are key-derived; do not leave them in stack memory.
    encrypted.zeroize();
    buffers[0].zeroize();
    buffers[1].zeroize();
    s.zeroize();
}

/// One group: encrypts (or decrypts) the eight blocks at `src` into `dst` with the tweaks
/// `cur` (IEEE 1619 §5.3.2: C = E_K1(P ⊕ T) ⊕ T, the output XOR folded into the last round
/// key), and meanwhile writes `s, s⊗α, ..., s⊗α^7` to `next`, returning `s⊗α^8`.
///
/// Hand-scheduled assembly, in the way OpenSSL's aesni XTS is: each round is one round key
/// applied to all eight blocks (eight independent `AESENC`s, enough to cover its latency on
/// both AES units), the round key is loaded once per round into one register, and one tweak
/// doubling is slotted in after each of the first eight rounds, where it runs on the vector
/// ALUs while the AES units are busy. Left to LLVM, the same code in intrinsics spilled the
/// round states around the round loop and ran about a fifth slower.
///
/// # Safety
/// The CPU has AES-NI and SSE2; `src` is readable and `dst` writable for 128 bytes, either
/// the same memory or disjoint.
#[inline]
#[target_feature(enable = "aes,sse4.1")]
unsafe fn group8<const DECRYPT: bool>(
    rk: &Schedule,
    cur: &GroupTweaks,
    next: &mut GroupTweaks,
    s: __m128i,
    src: *const u8,
    dst: *mut u8,
) -> __m128i {
    if DECRYPT {
        // SAFETY: the caller's contract.
        unsafe { group8_asm!("aesdec", "aesdeclast", rk, cur, next, s, src, dst) }
    } else {
        // SAFETY: the caller's contract.
        unsafe { group8_asm!("aesenc", "aesenclast", rk, cur, next, s, src, dst) }
    }
}

/// The body of `group8` for one direction (`$round`/`$last`: `aesenc`/`aesenclast` or
/// `aesdec`/`aesdeclast`). Reads 15 round keys at `$rk`, eight tweaks at `$cur` and eight
/// blocks at `$src`; writes eight tweaks at `$next` and eight blocks at `$dst`.
macro_rules! group8_asm {
    ($round:literal, $last:literal, $rk:expr, $cur:expr, $next:expr, $s:expr, $src:expr, $dst:expr) => {{
        let mut s: __m128i = $s;
        core::arch::asm!(
            // x_i = P_i ⊕ T_i ⊕ round key 0, all eight loads before any store (in place is safe).
            "movdqa {k}, xmmword ptr [{rk}]",
            "movdqu xmm0, xmmword ptr [{src} + 0]",
            "pxor xmm0, xmmword ptr [{cur} + 0]",
            "pxor xmm0, {k}",
            "movdqu xmm1, xmmword ptr [{src} + 16]",
            "pxor xmm1, xmmword ptr [{cur} + 16]",
            "pxor xmm1, {k}",
            "movdqu xmm2, xmmword ptr [{src} + 32]",
            "pxor xmm2, xmmword ptr [{cur} + 32]",
            "pxor xmm2, {k}",
            "movdqu xmm3, xmmword ptr [{src} + 48]",
            "pxor xmm3, xmmword ptr [{cur} + 48]",
            "pxor xmm3, {k}",
            "movdqu xmm4, xmmword ptr [{src} + 64]",
            "pxor xmm4, xmmword ptr [{cur} + 64]",
            "pxor xmm4, {k}",
            "movdqu xmm5, xmmword ptr [{src} + 80]",
            "pxor xmm5, xmmword ptr [{cur} + 80]",
            "pxor xmm5, {k}",
            "movdqu xmm6, xmmword ptr [{src} + 96]",
            "pxor xmm6, xmmword ptr [{cur} + 96]",
            "pxor xmm6, {k}",
            "movdqu xmm7, xmmword ptr [{src} + 112]",
            "pxor xmm7, xmmword ptr [{cur} + 112]",
            "pxor xmm7, {k}",
            // Round 1; then the next group's tweak 0: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 16]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 0], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 2; then the next group's tweak 1: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 32]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 16], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 3; then the next group's tweak 2: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 48]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 32], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 4; then the next group's tweak 3: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 64]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 48], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 5; then the next group's tweak 4: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 80]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 64], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 6; then the next group's tweak 5: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 96]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 80], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 7; then the next group's tweak 6: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 112]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 96], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 8; then the next group's tweak 7: store s, s ⊗= α (PSHUFD/PSRAD make the carry masks).
            "movdqa {k}, xmmword ptr [{rk} + 128]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            "movdqa xmmword ptr [{next} + 112], {s}",
            "pshufd {tmp}, {s}, 0x13",
            "psrad {tmp}, 31",
            "pand {tmp}, {mask}",
            "paddq {s}, {s}",
            "pxor {s}, {tmp}",
            // Round 9.
            "movdqa {k}, xmmword ptr [{rk} + 144]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            // Round 10.
            "movdqa {k}, xmmword ptr [{rk} + 160]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            // Round 11.
            "movdqa {k}, xmmword ptr [{rk} + 176]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            // Round 12.
            "movdqa {k}, xmmword ptr [{rk} + 192]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            // Round 13.
            "movdqa {k}, xmmword ptr [{rk} + 208]",
            concat!($round, " xmm0, {k}"),
            concat!($round, " xmm1, {k}"),
            concat!($round, " xmm2, {k}"),
            concat!($round, " xmm3, {k}"),
            concat!($round, " xmm4, {k}"),
            concat!($round, " xmm5, {k}"),
            concat!($round, " xmm6, {k}"),
            concat!($round, " xmm7, {k}"),
            // Last round with T_i folded into its key, then the stores.
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 0]",
            concat!($last, " xmm0, {k}"),
            "movdqu xmmword ptr [{dst} + 0], xmm0",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 16]",
            concat!($last, " xmm1, {k}"),
            "movdqu xmmword ptr [{dst} + 16], xmm1",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 32]",
            concat!($last, " xmm2, {k}"),
            "movdqu xmmword ptr [{dst} + 32], xmm2",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 48]",
            concat!($last, " xmm3, {k}"),
            "movdqu xmmword ptr [{dst} + 48], xmm3",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 64]",
            concat!($last, " xmm4, {k}"),
            "movdqu xmmword ptr [{dst} + 64], xmm4",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 80]",
            concat!($last, " xmm5, {k}"),
            "movdqu xmmword ptr [{dst} + 80], xmm5",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 96]",
            concat!($last, " xmm6, {k}"),
            "movdqu xmmword ptr [{dst} + 96], xmm6",
            "movdqa {k}, xmmword ptr [{rk} + 224]",
            "pxor {k}, xmmword ptr [{cur} + 112]",
            concat!($last, " xmm7, {k}"),
            "movdqu xmmword ptr [{dst} + 112], xmm7",
            rk = in(reg) $rk.as_ptr(),
            cur = in(reg) $cur.as_ptr(),
            next = in(reg) $next.as_mut_ptr(),
            src = in(reg) $src,
            dst = in(reg) $dst,
            s = inout(xmm_reg) s,
            mask = in(xmm_reg) _mm_set_epi32(0, 1, 0, 0x87),
            k = out(xmm_reg) _,
            tmp = out(xmm_reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            options(nostack, preserves_flags),
        );
        s
    }};
}
use group8_asm;

/// `[T, T⊗α, ..., T⊗α^7]`: the tweaks of a data unit's first eight blocks.
#[inline]
#[target_feature(enable = "sse4.1")]
fn first_tweaks(t: __m128i) -> [__m128i; LANES] {
    let mut tw = [t; LANES];
    for i in 1..LANES {
        tw[i] = double(tw[i - 1]);
    }
    tw
}

/// `t ⊗ α` (IEEE 1619 §5.2) in five cheap vector operations: each 64-bit half shifted left by
/// one (`PADDQ t, t`), then the two bits that fell out put back: bit 63 as bit 64 (the low bit
/// of the high half), bit 127 reduced as 0x87 into the low byte. `PSHUFD` moves the dword
/// holding bit 127 under the low half and the dword holding bit 63 under the high half, and
/// `PSRAD 31` turns each top bit into an all-ones or all-zeros mask. Branch-free.
#[inline]
#[target_feature(enable = "sse4.1")]
pub(crate) fn double(t: __m128i) -> __m128i {
    let signs = _mm_srai_epi32::<31>(_mm_shuffle_epi32::<0x13>(t));
    let carry = _mm_and_si128(signs, _mm_set_epi32(0, 1, 0, 0x87));
    _mm_xor_si128(_mm_add_epi64(t, t), carry)
}

/// Any data-unit length (a whole number of blocks): groups of eight units get their tweaks
/// encrypted together, then each unit is processed eight blocks at a time with a one-block
/// tail. Only the explicit-tweak API reaches this with units that are not a multiple of
/// 128 bytes.
#[target_feature(enable = "aes,sse4.1")]
fn xts_units_any<const DECRYPT: bool>(
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
    let mut t = [_mm_setzero_si128(); TWEAK_GROUP];
    let mut unit = 0;
    while unit < units {
        let group = (units - unit).min(TWEAK_GROUP);
        encrypt_tweaks(&keys.tweak_enc, tweaks, unit, group, &mut t);
        for (i, ti) in t.iter().take(group).enumerate() {
            xts_unit::<DECRYPT>(rk, *ti, (unit + i) * unit_blocks, unit_blocks, io);
        }
        unit += group;
    }
    // The encrypted tweaks are key-derived; do not leave them in stack memory.
    t.zeroize();
}

/// Loads the tweaks of units `first .. first + count` (count <= 8) into `out` and encrypts
/// them under K2 (IEEE 1619 §5.3.1: T = E_K2(i)), eight AES chains in parallel.
#[inline]
#[target_feature(enable = "aes,sse4.1")]
pub(crate) fn encrypt_tweaks(
    tweak_keys: &Schedule,
    tweaks: &TweakSource<'_>,
    first: usize,
    count: usize,
    out: &mut [__m128i; TWEAK_GROUP],
) {
    for (i, slot) in out.iter_mut().take(count).enumerate() {
        let (lo, hi) = tweaks.words(first + i);
        *slot = _mm_set_epi64x(hi as i64, lo as i64);
    }
    encrypt8(tweak_keys, out);
}

/// AES-256 encryption of eight independent blocks.
#[inline]
#[target_feature(enable = "aes")]
pub(crate) fn encrypt8(rk: &Schedule, blocks: &mut [__m128i; 8]) {
    for b in blocks.iter_mut() {
        *b = _mm_xor_si128(*b, rk[0]);
    }
    for k in &rk[1..ROUND_KEYS - 1] {
        for b in blocks.iter_mut() {
            *b = _mm_aesenc_si128(*b, *k);
        }
    }
    for b in blocks.iter_mut() {
        *b = _mm_aesenclast_si128(*b, rk[ROUND_KEYS - 1]);
    }
}

/// One data unit of `blocks` 16-byte blocks starting at block `first` of `io`, whose
/// encrypted tweak is `t0`.
#[inline]
#[target_feature(enable = "aes,sse4.1")]
fn xts_unit<const DECRYPT: bool>(
    rk: &Schedule,
    t0: __m128i,
    first: usize,
    blocks: usize,
    io: &mut BlockIo<'_>,
) {
    // tw[i] = T ⊗ α^(b + i) for the eight blocks b .. b + 8 in flight.
    let mut tw = [t0; 8];
    for i in 1..8 {
        tw[i] = mul_x1(tw[i - 1]);
    }
    let mut b = 0;
    while b + 8 <= blocks {
        let mut x = [_mm_setzero_si128(); 8];
        for (i, (xi, ti)) in x.iter_mut().zip(&tw).enumerate() {
            *xi = _mm_xor_si128(_mm_xor_si128(io.load1(first + b + i), *ti), rk[0]);
        }
        // With only 16 XMM registers, the eight states, eight tweaks and round keys do not
        // all fit; fully unrolled, LLVM then regroups the rounds two blocks at a time to save
        // registers, which leaves the AES unit waiting on latency. Hiding the round count
        // keeps this a real loop whose body is one round of all eight blocks; the tweaks are
        // spilled once per eight blocks instead.
        for k in core::hint::black_box(&rk[1..ROUND_KEYS - 1]) {
            for xi in x.iter_mut() {
                *xi = round::<DECRYPT>(*xi, *k);
            }
        }
        for (i, (xi, ti)) in x.iter().zip(&tw).enumerate() {
            let last_key = _mm_xor_si128(rk[ROUND_KEYS - 1], *ti);
            io.store1(first + b + i, last_round::<DECRYPT>(*xi, last_key));
        }
        for ti in tw.iter_mut() {
            *ti = mul_x8(*ti);
        }
        b += 8;
    }
    // Fewer than eight blocks left: only data units that are not a multiple of 128 bytes.
    let mut t = tw[0];
    while b < blocks {
        let mut x = _mm_xor_si128(_mm_xor_si128(io.load1(first + b), t), rk[0]);
        for k in &rk[1..ROUND_KEYS - 1] {
            x = round::<DECRYPT>(x, *k);
        }
        let last_key = _mm_xor_si128(rk[ROUND_KEYS - 1], t);
        io.store1(first + b, last_round::<DECRYPT>(x, last_key));
        t = mul_x1(t);
        b += 1;
    }
}

#[inline]
#[target_feature(enable = "aes")]
fn round<const DECRYPT: bool>(x: __m128i, k: __m128i) -> __m128i {
    if DECRYPT {
        _mm_aesdec_si128(x, k)
    } else {
        _mm_aesenc_si128(x, k)
    }
}

#[inline]
#[target_feature(enable = "aes")]
fn last_round<const DECRYPT: bool>(x: __m128i, k: __m128i) -> __m128i {
    if DECRYPT {
        _mm_aesdeclast_si128(x, k)
    } else {
        _mm_aesenclast_si128(x, k)
    }
}

/// `t ⊗ α^K` on one 128-bit lane (IEEE 1619 §5.2 little-endian convention), for K <= 57.
///
/// Per 64-bit half: the K bits shifted out of the low half move into the high half; the K bits
/// shifted out of the high half (a polynomial c of degree < K) are reduced modulo
/// x^128 + x^7 + x^2 + x + 1, i.e. `c * 0x87` carry-less = c ⊕ c<<1 ⊕ c<<2 ⊕ c<<7, XORed into
/// the low half. Branch-free, so timing does not depend on the tweak.
macro_rules! mul_x_xmm {
    ($name:ident, $k:literal) => {
        #[inline]
        #[target_feature(enable = "sse4.1")]
        pub(crate) fn $name(t: __m128i) -> __m128i {
            let carries = _mm_srli_epi64::<{ 64 - $k }>(t);
            // [carry of low half, carry of high half] -> [carry of high, carry of low].
            let swapped = _mm_shuffle_epi32::<0x4e>(carries);
            let reduced = _mm_xor_si128(
                _mm_xor_si128(swapped, _mm_slli_epi64::<1>(swapped)),
                _mm_xor_si128(_mm_slli_epi64::<2>(swapped), _mm_slli_epi64::<7>(swapped)),
            );
            // Low half takes the reduced carry of the high half; high half takes the plain
            // carry of the low half.
            let fix = _mm_blend_epi16::<0xf0>(reduced, swapped);
            _mm_xor_si128(_mm_slli_epi64::<$k>(t), fix)
        }
    };
}

mul_x_xmm!(mul_x1, 1);
mul_x_xmm!(mul_x8, 8);

/// AES-256 key expansion (FIPS-197 §5.2) with `AESKEYGENASSIST`.
#[target_feature(enable = "aes")]
fn expand_schedule(key: &[u8], rk: &mut Schedule) {
    assert_eq!(key.len(), 32, "AES-256 key half must be 32 bytes");
    // SAFETY: `key` is 32 bytes (asserted), so both unaligned 16-byte loads are in bounds.
    let (mut a, mut b) = unsafe {
        (
            _mm_loadu_si128(key.as_ptr().cast()),
            _mm_loadu_si128(key.as_ptr().add(16).cast()),
        )
    };
    rk[0] = a;
    rk[1] = b;
    // Each step derives two round keys; the round constants are 0x01, 0x02, ..., 0x40.
    macro_rules! step {
        ($i:literal, $rcon:literal) => {
            a = next_even(a, _mm_aeskeygenassist_si128::<$rcon>(b));
            rk[$i] = a;
            b = next_odd(b, a);
            rk[$i + 1] = b;
        };
    }
    step!(2, 0x01);
    step!(4, 0x02);
    step!(6, 0x04);
    step!(8, 0x08);
    step!(10, 0x10);
    step!(12, 0x20);
    rk[14] = next_even(a, _mm_aeskeygenassist_si128::<0x40>(b));
}

/// w[i] = w[i-8] ⊕ SubWord(RotWord(w[i-1])) ⊕ Rcon, four words at a time.
#[inline]
#[target_feature(enable = "aes")]
fn next_even(prev: __m128i, assist: __m128i) -> __m128i {
    _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32::<0xff>(assist))
}

/// w[i] = w[i-8] ⊕ SubWord(w[i-1]) (the AES-256 extra step, no rotation or Rcon).
#[inline]
#[target_feature(enable = "aes")]
fn next_odd(prev: __m128i, even: __m128i) -> __m128i {
    let assist = _mm_aeskeygenassist_si128::<0x00>(even);
    _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32::<0xaa>(assist))
}

/// Word j of the result is the XOR of words 0..=j of `v`.
#[inline]
#[target_feature(enable = "sse2")]
fn prefix_xor(v: __m128i) -> __m128i {
    let v = _mm_xor_si128(v, _mm_slli_si128::<4>(v));
    let v = _mm_xor_si128(v, _mm_slli_si128::<4>(v));
    _mm_xor_si128(v, _mm_slli_si128::<4>(v))
}

/// Decryption round keys for `AESDEC` (Equivalent Inverse Cipher, FIPS-197 §5.3.5).
#[target_feature(enable = "aes")]
fn invert_schedule(enc: &Schedule, dec: &mut Schedule) {
    dec[0] = enc[ROUND_KEYS - 1];
    for i in 1..ROUND_KEYS - 1 {
        dec[i] = _mm_aesimc_si128(enc[ROUND_KEYS - 1 - i]);
    }
    dec[ROUND_KEYS - 1] = enc[0];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gf128;

    fn to_u128(v: __m128i) -> u128 {
        let mut out = [0u8; 16];
        // SAFETY: `out` is 16 writable bytes; unaligned store; SSE2 is baseline on x86_64.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
        u128::from_le_bytes(out)
    }

    fn from_u128(x: u128) -> __m128i {
        let bytes = x.to_le_bytes();
        // SAFETY: reads the 16 bytes of `bytes`; unaligned load; SSE2 is baseline on x86_64.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    #[test]
    fn fips197_aes256_known_answer() {
        if !CpuFeatures::get().aesni_path() {
            return;
        }
        // FIPS-197 Appendix C.3: key 00..1f, plaintext 00112233..ff.
        let mut key = [0u8; 64];
        for (i, b) in key.iter_mut().enumerate().take(32) {
            *b = i as u8;
        }
        key[32] = 1; // K2 is unused here but must differ from K1.
                     // SAFETY: AES-NI was detected above.
        let keys = unsafe { XtsKeys::expand(&key) };
        let pt = u128::from_le_bytes(
            *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff",
        );
        let ct = u128::from_le_bytes(
            *b"\x8e\xa2\xb7\xca\x51\x67\x45\xbf\xea\xfc\x49\x90\x4b\x49\x60\x89",
        );
        let mut blocks = [from_u128(pt); 8];
        // SAFETY: AES-NI was detected above.
        unsafe { encrypt8(&keys.data_enc, &mut blocks) };
        assert_eq!(to_u128(blocks[0]), ct);
        // Decrypt with the inverse schedule.
        // SAFETY: AES-NI was detected above.
        let back = unsafe {
            let mut x = _mm_xor_si128(from_u128(ct), keys.data_dec[0]);
            for k in &keys.data_dec[1..ROUND_KEYS - 1] {
                x = _mm_aesdec_si128(x, *k);
            }
            _mm_aesdeclast_si128(x, keys.data_dec[ROUND_KEYS - 1])
        };
        assert_eq!(to_u128(back), pt);
    }

    #[test]
    fn simd_doubling_matches_scalar() {
        if !CpuFeatures::get().aesni_path() {
            return;
        }
        let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for _ in 0..200 {
            // SAFETY: SSE4.1 was detected above.
            let (one, eight) = unsafe { (mul_x1(from_u128(x)), mul_x8(from_u128(x))) };
            assert_eq!(to_u128(one), gf128::mul_x(x));
            // SAFETY: SSE4.1 was detected above.
            let doubled = unsafe { double(from_u128(x)) };
            assert_eq!(to_u128(doubled), gf128::mul_x(x));
            assert_eq!(to_u128(eight), gf128::mul_x_pow(x, 8));
            x = x
                .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                .rotate_left(17);
        }
        for x in [u128::MAX, 1u128 << 127, 1u128 << 63, 0xff << 120, 1] {
            // SAFETY: SSE4.1 was detected above.
            let doubled = unsafe { double(from_u128(x)) };
            assert_eq!(to_u128(doubled), gf128::mul_x(x));
            // SAFETY: SSE4.1 was detected above.
            let eight = unsafe { mul_x8(from_u128(x)) };
            assert_eq!(to_u128(eight), gf128::mul_x_pow(x, 8));
        }
    }
}
