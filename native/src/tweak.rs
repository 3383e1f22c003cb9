//! Where each data unit's tweak comes from (IEEE 1619 §5.1: the "data unit sequence number").
//!
//! Two sources:
//! - `Plain64`: dm-crypt's `aes-xts-plain64`, as LUKS2 uses it. The tweak of a sector is the
//!   64-bit little-endian number of the sector's first 512-byte unit, zero-padded to 16 bytes.
//!   With 4096-byte sectors, sector n has tweak 8n, so consecutive sectors step by
//!   `sector_size / 512`.
//! - `Explicit`: the caller passes 16 raw tweak bytes per data unit (what the standard's test
//!   vectors are written in).

/// Tweak plaintext (before encryption under K2) for each data unit of a call.
#[derive(Debug, Clone, Copy)]
pub enum TweakSource<'a> {
    /// Unit `i` has tweak `first + i * step` (little-endian u64, upper 8 bytes zero).
    /// The constructor guarantees the last unit's tweak does not overflow.
    Plain64 { first: u64, step: u64, units: usize },
    /// Unit `i` has the 16 bytes at `tweaks[16 * i ..]`.
    Explicit { tweaks: &'a [u8] },
}

impl<'a> TweakSource<'a> {
    /// `units` consecutive plain64 tweaks starting at `first`, each `step` apart; `None` if the
    /// last one does not fit in 64 bits (it would wrap and silently reuse tweaks).
    pub fn plain64(first: u64, step: u64, units: usize) -> Option<Self> {
        if units > 0 {
            let last_offset = step.checked_mul(u64::try_from(units - 1).ok()?)?;
            first.checked_add(last_offset)?;
        }
        Some(Self::Plain64 { first, step, units })
    }

    /// Explicit tweaks; `None` unless `tweaks` is a whole number of 16-byte blocks.
    pub fn explicit(tweaks: &'a [u8]) -> Option<Self> {
        tweaks
            .len()
            .is_multiple_of(16)
            .then_some(Self::Explicit { tweaks })
    }

    /// Number of data units this source covers.
    pub fn units(&self) -> usize {
        match self {
            Self::Plain64 { units, .. } => *units,
            Self::Explicit { tweaks } => tweaks.len() / 16,
        }
    }

    /// Tweak of unit `index` as (low 64 bits, high 64 bits) of the little-endian 128-bit value.
    /// `index` must be below `units()`.
    #[inline(always)]
    pub fn words(&self, index: usize) -> (u64, u64) {
        match self {
            // Cannot overflow: `plain64` checked the last unit, and index < units.
            Self::Plain64 { first, step, .. } => {
                (first.wrapping_add(step.wrapping_mul(index as u64)), 0)
            }
            Self::Explicit { tweaks } => {
                let block = &tweaks[16 * index..16 * index + 16];
                let mut lo = [0u8; 8];
                let mut hi = [0u8; 8];
                lo.copy_from_slice(&block[..8]);
                hi.copy_from_slice(&block[8..]);
                (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
            }
        }
    }

    /// Tweak of unit `index` as 16 bytes.
    #[inline(always)]
    pub fn block(&self, index: usize) -> [u8; 16] {
        let (lo, hi) = self.words(index);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&lo.to_le_bytes());
        out[8..].copy_from_slice(&hi.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain64_steps_by_sector_size_over_512() {
        let t = TweakSource::plain64(8 * 5, 8, 3).unwrap();
        assert_eq!(t.units(), 3);
        assert_eq!(t.words(0), (40, 0));
        assert_eq!(t.words(2), (56, 0));
        let mut expected = [0u8; 16];
        expected[0] = 56;
        assert_eq!(t.block(2), expected);
    }

    #[test]
    fn plain64_rejects_a_last_tweak_past_u64_max() {
        assert!(TweakSource::plain64(u64::MAX, 1, 1).is_some());
        assert!(TweakSource::plain64(u64::MAX, 1, 2).is_none());
        assert!(TweakSource::plain64(u64::MAX - 7, 8, 1).is_some());
        assert!(TweakSource::plain64(u64::MAX - 7, 8, 2).is_none());
        assert!(TweakSource::plain64(u64::MAX, 8, 0).is_some());
    }

    #[test]
    fn explicit_reads_sixteen_bytes_per_unit() {
        let bytes: Vec<u8> = (0..32).collect();
        let t = TweakSource::explicit(&bytes).unwrap();
        assert_eq!(t.units(), 2);
        assert_eq!(t.block(1).to_vec(), (16..32).collect::<Vec<u8>>());
        assert!(TweakSource::explicit(&bytes[..20]).is_none());
    }
}
