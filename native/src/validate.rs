//! Argument checks for the JavaScript API, done once at the boundary. Every error names the
//! argument (as JavaScript spells it) and says what was expected and what was given, so a
//! caller can fix the call without reading this code.

use crate::tweak::TweakSource;
use crate::xts::{key_halves_differ, KEY_BYTES, MAX_DATA_UNIT_BYTES};

/// Sector sizes the sector API accepts (DESIGN.md: 512 or 4096, as LUKS2 `--sector-size`).
pub const SECTOR_SIZES: [usize; 2] = [512, 4096];

/// dm-crypt plain64 counts the tweak in 512-byte units whatever the sector size.
pub const PLAIN64_UNIT_BYTES: usize = 512;

/// An invalid argument: `"<arg>: expected <what>, got <what>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub arg: &'static str,
    pub message: String,
}

impl ArgError {
    pub fn new(arg: &'static str, message: impl Into<String>) -> Self {
        Self {
            arg,
            message: message.into(),
        }
    }
}

impl core::fmt::Display for ArgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.arg, self.message)
    }
}

impl std::error::Error for ArgError {}

/// The 64-byte XTS key: two AES-256 keys that must differ (IEEE 1619 §5.1).
pub fn key(bytes: &[u8]) -> Result<&[u8; KEY_BYTES], ArgError> {
    let key: &[u8; KEY_BYTES] = bytes.try_into().map_err(|_| {
        ArgError::new(
            "key",
            format!(
                "expected {KEY_BYTES} bytes (two AES-256 halves), got {}",
                bytes.len()
            ),
        )
    })?;
    if !key_halves_differ(key) {
        return Err(ArgError::new(
            "key",
            "expected two different 32-byte halves (IEEE 1619 requires independent keys K1 \
             and K2), got equal halves",
        ));
    }
    Ok(key)
}

/// `sectorSize`: 512 or 4096, an exact integer (a JS number, so no silent truncation of 512.5).
pub fn sector_size(value: f64) -> Result<usize, ArgError> {
    SECTOR_SIZES
        .into_iter()
        .find(|&s| value == s as f64)
        .ok_or_else(|| ArgError::new("sectorSize", format!("expected 512 or 4096, got {value}")))
}

/// `firstSector`: a bigint in 0..2^64, given as napi hands it over (sign and 64-bit words,
/// least significant first).
pub fn first_sector(negative: bool, words: &[u64]) -> Result<u64, ArgError> {
    let magnitude_is_zero = words.iter().all(|&w| w == 0);
    if negative && !magnitude_is_zero {
        return Err(ArgError::new(
            "firstSector",
            "expected a non-negative bigint, got a negative one",
        ));
    }
    if words.iter().skip(1).any(|&w| w != 0) {
        return Err(ArgError::new(
            "firstSector",
            "expected a bigint below 2^64, got a larger one",
        ));
    }
    Ok(words.first().copied().unwrap_or(0))
}

/// `firstSector` as a JS number (the keyed API): a non-negative safe integer, at most 2^53 - 1.
/// Above that a double no longer names one sector, so it is refused rather than rounded.
pub fn first_sector_number(value: f64) -> Result<u64, ArgError> {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    if value.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&value) {
        Ok(value as u64)
    } else {
        Err(ArgError::new(
            "firstSector",
            format!("expected a non-negative safe integer (at most 2^53 - 1), got {value}"),
        ))
    }
}

/// The plain64 tweaks of the sectors in `data_len` bytes (argument `data_arg`) starting at
/// `first_sector`: sector n has tweak n * (sectorSize / 512). Rejects data that is not a whole
/// number of sectors, and a run whose last tweak does not fit in 64 bits (dm-crypt would wrap;
/// we refuse rather than reuse tweaks).
pub fn sector_tweaks(
    first_sector: u64,
    sector_size: usize,
    data_arg: &'static str,
    data_len: usize,
) -> Result<TweakSource<'static>, ArgError> {
    if !data_len.is_multiple_of(sector_size) {
        return Err(ArgError::new(
            data_arg,
            format!("expected a whole number of {sector_size}-byte sectors, got {data_len} bytes"),
        ));
    }
    let sectors = data_len / sector_size;
    let step = (sector_size / PLAIN64_UNIT_BYTES) as u64;
    let overflow = || {
        let last_sector = u128::from(first_sector) + sectors.saturating_sub(1) as u128;
        ArgError::new(
            "firstSector",
            format!(
                "expected the plain64 tweak of every sector to fit in 64 bits, got sectors \
                 {first_sector}..={last_sector} of {sector_size} bytes, whose last tweak is {}",
                last_sector * u128::from(step)
            ),
        )
    };
    let first_tweak = first_sector.checked_mul(step).ok_or_else(overflow)?;
    TweakSource::plain64(first_tweak, step, sectors).ok_or_else(overflow)
}

/// `dataUnitSize` for the explicit-tweak API: a multiple of 16 from 16 to 1 MiB.
pub fn data_unit_size(value: f64) -> Result<usize, ArgError> {
    let ok = value.fract() == 0.0
        && value >= 16.0
        && value <= MAX_DATA_UNIT_BYTES as f64
        && (value as usize).is_multiple_of(16);
    if ok {
        Ok(value as usize)
    } else {
        Err(ArgError::new(
            "dataUnitSize",
            format!("expected a multiple of 16 from 16 to {MAX_DATA_UNIT_BYTES}, got {value}"),
        ))
    }
}

/// Explicit tweaks: one 16-byte tweak per `unit_bytes` of `data_len`.
pub fn explicit_tweaks(
    tweaks: &[u8],
    unit_bytes: usize,
    data_len: usize,
) -> Result<TweakSource<'_>, ArgError> {
    if !data_len.is_multiple_of(unit_bytes) {
        return Err(ArgError::new(
            "data",
            format!(
                "expected a whole number of {unit_bytes}-byte data units, got {data_len} bytes"
            ),
        ));
    }
    let units = data_len / unit_bytes;
    if tweaks.len() / 16 != units || !tweaks.len().is_multiple_of(16) {
        return Err(ArgError::new(
            "tweaks",
            format!(
                "expected 16 bytes per data unit ({} bytes for {units} x {unit_bytes} bytes of \
                 data), got {} bytes",
                units * 16,
                tweaks.len()
            ),
        ));
    }
    TweakSource::explicit(tweaks)
        .ok_or_else(|| ArgError::new("tweaks", "expected a multiple of 16 bytes"))
}

/// `dst` must be exactly as long as `src`: never a partial write, never a truncation.
pub fn same_length(src_len: usize, dst_len: usize) -> Result<(), ArgError> {
    if src_len == dst_len {
        Ok(())
    } else {
        Err(ArgError::new(
            "dst",
            format!("expected {src_len} bytes (the length of src), got {dst_len} bytes"),
        ))
    }
}

/// How `dst` sits relative to `src` in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aliasing {
    /// The very same bytes: encrypt in place.
    Same,
    /// No byte in common.
    Disjoint,
}

/// `dst` may be the same memory as `src` or memory disjoint from it; a partial overlap would
/// make blocks read after an earlier block wrote them, so it is refused.
pub fn aliasing(src_start: usize, dst_start: usize, len: usize) -> Result<Aliasing, ArgError> {
    if len == 0 || src_start.abs_diff(dst_start) >= len {
        Ok(Aliasing::Disjoint)
    } else if src_start == dst_start {
        Ok(Aliasing::Same)
    } else {
        Err(ArgError::new(
            "dst",
            "expected the same memory as src (in place) or memory that does not overlap src, \
             got a partial overlap",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_bytes() -> [u8; 64] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn key_messages_name_the_argument() {
        let short = [1u8; 32];
        assert_eq!(
            key(&short).unwrap_err().to_string(),
            "key: expected 64 bytes (two AES-256 halves), got 32"
        );
        let equal = [7u8; 64];
        let err = key(&equal).unwrap_err().to_string();
        assert!(
            err.starts_with("key: expected two different 32-byte halves"),
            "{err}"
        );
        assert!(key(&key_bytes()).is_ok());
    }

    #[test]
    fn sector_size_is_exact() {
        assert_eq!(sector_size(512.0), Ok(512));
        assert_eq!(sector_size(4096.0), Ok(4096));
        for bad in [0.0, 1024.0, 512.5, -512.0, f64::NAN, f64::INFINITY] {
            let err = sector_size(bad).unwrap_err();
            assert_eq!(err.arg, "sectorSize");
            assert!(err.to_string().contains("expected 512 or 4096"));
        }
    }

    #[test]
    fn first_sector_range() {
        assert_eq!(first_sector(false, &[0]), Ok(0));
        assert_eq!(first_sector(false, &[u64::MAX]), Ok(u64::MAX));
        assert_eq!(first_sector(false, &[5, 0]), Ok(5));
        assert_eq!(first_sector(false, &[]), Ok(0));
        assert!(first_sector(true, &[1]).is_err());
        assert_eq!(first_sector(true, &[0]), Ok(0));
        assert!(first_sector(false, &[0, 1]).is_err());
    }

    #[test]
    fn first_sector_number_range() {
        assert_eq!(first_sector_number(0.0), Ok(0));
        assert_eq!(first_sector_number(-0.0), Ok(0));
        assert_eq!(
            first_sector_number(9_007_199_254_740_991.0),
            Ok((1 << 53) - 1)
        );
        for bad in [
            -1.0,
            0.5,
            9_007_199_254_740_992.0,
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
        ] {
            assert_eq!(first_sector_number(bad).unwrap_err().arg, "firstSector");
        }
    }

    #[test]
    fn sector_tweaks_checks_whole_sectors_and_overflow() {
        let t = sector_tweaks(3, 4096, "data", 3 * 4096).unwrap();
        assert_eq!((t.units(), t.words(0), t.words(2)), (3, (24, 0), (40, 0)));
        let err = sector_tweaks(0, 4096, "src", 4097).unwrap_err();
        assert_eq!(
            err.to_string(),
            "src: expected a whole number of 4096-byte sectors, got 4097 bytes"
        );
        // Last 4096-byte sector whose tweak fits: (2^64 - 8) / 8.
        let last_ok = (u64::MAX - 7) / 8;
        assert!(sector_tweaks(last_ok, 4096, "data", 4096).is_ok());
        assert!(sector_tweaks(last_ok, 4096, "data", 8192).is_err());
        assert!(sector_tweaks(last_ok + 1, 4096, "data", 4096).is_err());
        assert!(sector_tweaks(u64::MAX, 512, "data", 512).is_ok());
        assert!(sector_tweaks(u64::MAX, 512, "data", 1024).is_err());
        // Empty data at the very end is fine (nothing to encrypt).
        assert!(sector_tweaks(u64::MAX, 512, "data", 0).is_ok());
        let err = sector_tweaks(u64::MAX, 4096, "data", 4096).unwrap_err();
        assert_eq!(err.arg, "firstSector");
    }

    #[test]
    fn data_unit_and_tweaks() {
        assert_eq!(data_unit_size(16.0), Ok(16));
        assert_eq!(data_unit_size(1048576.0), Ok(1 << 20));
        for bad in [0.0, 8.0, 24.0, 16.5, 2097152.0, f64::NAN] {
            assert_eq!(data_unit_size(bad).unwrap_err().arg, "dataUnitSize");
        }
        let tweaks = [0u8; 32];
        assert_eq!(explicit_tweaks(&tweaks, 512, 1024).unwrap().units(), 2);
        assert_eq!(
            explicit_tweaks(&tweaks, 512, 512).unwrap_err().arg,
            "tweaks"
        );
        assert_eq!(
            explicit_tweaks(&tweaks[..20], 16, 16).unwrap_err().arg,
            "tweaks"
        );
        assert_eq!(explicit_tweaks(&tweaks, 512, 1000).unwrap_err().arg, "data");
    }

    #[test]
    fn aliasing_cases() {
        assert_eq!(aliasing(1000, 1000, 64), Ok(Aliasing::Same));
        assert_eq!(aliasing(1000, 1064, 64), Ok(Aliasing::Disjoint));
        assert_eq!(aliasing(1064, 1000, 64), Ok(Aliasing::Disjoint));
        assert_eq!(aliasing(1000, 1000, 0), Ok(Aliasing::Disjoint));
        assert!(aliasing(1000, 1016, 64).is_err());
        assert!(aliasing(1016, 1000, 64).is_err());
        assert_eq!(same_length(3, 4).unwrap_err().arg, "dst");
    }
}
