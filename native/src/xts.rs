//! XTS-AES-256 (IEEE 1619-2018, unchanged from 1619-2007 for whole blocks): the cipher object,
//! the data-unit layout checks, and dispatch to the backend chosen for this CPU.
//!
//! A call covers many data units (sectors) at once, so the cost of crossing from JavaScript
//! and of broadcasting round keys is paid once per batch. Ciphertext stealing (§5.3.2 for a
//! final partial block) is not needed: data units are whole numbers of 16-byte blocks.

#[cfg(target_arch = "x86_64")]
use crate::backend::aesni::AesNiXts;
use crate::backend::portable::PortableXts;
#[cfg(target_arch = "x86_64")]
use crate::backend::vaes::VaesXts;
#[cfg(target_arch = "x86_64")]
use crate::backend::vaes_avx2::VaesAvx2Xts;
pub use crate::backend::{Direction, Path};
use crate::block_io::{BlockIo, BLOCK_BYTES};
use crate::tweak::TweakSource;

/// Full XTS-AES-256 key: K1 (data) ‖ K2 (tweak), IEEE 1619 §5.1.
pub const KEY_BYTES: usize = 64;

/// Largest data unit the low-level API accepts (IEEE 1619 §5.1 allows up to 2^20 blocks; we
/// cap the unit at 1 MiB, far above any sector size, to bound a single unit's work).
pub const MAX_DATA_UNIT_BYTES: usize = 1 << 20;

/// Why a call could not be carried out. The napi layer validates arguments first and reports
/// them by name; these are the cipher's own invariants, checked again here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XtsError {
    /// K1 == K2. IEEE 1619 §5.1 requires the two halves to be independent keys.
    EqualKeyHalves,
    /// The data unit is empty, not a multiple of 16 bytes, or larger than 1 MiB.
    BadDataUnit { unit_bytes: usize },
    /// The path forced for this thread or process cannot be used (unknown name, or this CPU
    /// lacks a feature it needs); the message says which and why.
    PathUnavailable { message: String },
    /// The buffer does not hold exactly one data unit per tweak.
    LengthMismatch {
        units: usize,
        unit_bytes: usize,
        len: usize,
    },
}

impl core::fmt::Display for XtsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::EqualKeyHalves => write!(f, "the two key halves are equal"),
            Self::PathUnavailable { message } => write!(f, "{message}"),
            Self::BadDataUnit { unit_bytes } => write!(
                f,
                "a data unit of {unit_bytes} bytes is not a multiple of 16 in 16..={MAX_DATA_UNIT_BYTES}"
            ),
            Self::LengthMismatch {
                units,
                unit_bytes,
                len,
            } => write!(
                f,
                "{units} data units of {unit_bytes} bytes do not make {len} bytes"
            ),
        }
    }
}

impl std::error::Error for XtsError {}

/// Whether K1 and K2 differ, compared without an early exit so the time taken does not say
/// where the halves first differ.
pub fn key_halves_differ(key: &[u8; KEY_BYTES]) -> bool {
    let (k1, k2) = key.split_at(KEY_BYTES / 2);
    k1.iter().zip(k2).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0
}

/// An XTS-AES-256 key, expanded for one backend. Key schedules are zeroized on drop.
pub struct XtsAes256 {
    engine: Engine,
}

enum Engine {
    #[cfg(target_arch = "x86_64")]
    Vaes(VaesXts),
    #[cfg(target_arch = "x86_64")]
    VaesAvx2(VaesAvx2Xts),
    #[cfg(target_arch = "x86_64")]
    AesNi(AesNiXts),
    Portable(PortableXts),
}

impl XtsAes256 {
    /// Expands `key` for this thread's active path (`Path::active`): the fastest this CPU
    /// supports unless a benchmark or test forced another.
    pub fn new(key: &[u8; KEY_BYTES]) -> Result<Self, XtsError> {
        let path = Path::active().map_err(|message| XtsError::PathUnavailable { message })?;
        Self::with_path(key, path)?.ok_or_else(|| XtsError::PathUnavailable {
            message: format!("the {} XTS path cannot run on this CPU", path.name()),
        })
    }

    /// Expands `key` for a given backend; `Ok(None)` if this CPU cannot run it. Used by the
    /// tests to cross-check every backend against the portable one.
    pub fn with_path(key: &[u8; KEY_BYTES], path: Path) -> Result<Option<Self>, XtsError> {
        if !key_halves_differ(key) {
            return Err(XtsError::EqualKeyHalves);
        }
        let engine = match path {
            #[cfg(target_arch = "x86_64")]
            Path::VaesAvx512 => VaesXts::new(key).map(Engine::Vaes),
            #[cfg(target_arch = "x86_64")]
            Path::VaesAvx2 => VaesAvx2Xts::new(key).map(Engine::VaesAvx2),
            #[cfg(target_arch = "x86_64")]
            Path::AesNiX8 => AesNiXts::new(key).map(Engine::AesNi),
            #[cfg(not(target_arch = "x86_64"))]
            Path::VaesAvx512 | Path::VaesAvx2 | Path::AesNiX8 => None,
            Path::Portable => Some(Engine::Portable(PortableXts::new(key))),
        };
        Ok(engine.map(|engine| Self { engine }))
    }

    /// The backend this key was expanded for.
    pub fn path(&self) -> Path {
        match self.engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(_) => Path::VaesAvx512,
            #[cfg(target_arch = "x86_64")]
            Engine::VaesAvx2(_) => Path::VaesAvx2,
            #[cfg(target_arch = "x86_64")]
            Engine::AesNi(_) => Path::AesNiX8,
            Engine::Portable(_) => Path::Portable,
        }
    }

    /// Encrypts or decrypts `tweaks.units()` data units of `unit_bytes` each, reading from and
    /// writing to `io` (which may be in place). Unit i uses tweak i of `tweaks`.
    pub fn process(
        &self,
        direction: Direction,
        tweaks: &TweakSource<'_>,
        unit_bytes: usize,
        io: &mut BlockIo<'_>,
    ) -> Result<(), XtsError> {
        if unit_bytes == 0
            || !unit_bytes.is_multiple_of(BLOCK_BYTES)
            || unit_bytes > MAX_DATA_UNIT_BYTES
        {
            return Err(XtsError::BadDataUnit { unit_bytes });
        }
        let units = tweaks.units();
        if units.checked_mul(unit_bytes) != Some(io.len()) {
            return Err(XtsError::LengthMismatch {
                units,
                unit_bytes,
                len: io.len(),
            });
        }
        if io.is_empty() {
            return Ok(());
        }
        let unit_blocks = unit_bytes / BLOCK_BYTES;
        match &self.engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(c) => c.process(direction, tweaks, unit_blocks, io),
            #[cfg(target_arch = "x86_64")]
            Engine::VaesAvx2(c) => c.process(direction, tweaks, unit_blocks, io),
            #[cfg(target_arch = "x86_64")]
            Engine::AesNi(c) => c.process(direction, tweaks, unit_blocks, io),
            Engine::Portable(c) => c.process(direction, tweaks, unit_blocks, io),
        }
        Ok(())
    }

    /// Convenience for tests and benchmarks: a fresh output buffer.
    pub fn process_to_vec(
        &self,
        direction: Direction,
        tweaks: &TweakSource<'_>,
        unit_bytes: usize,
        input: &[u8],
    ) -> Result<Vec<u8>, XtsError> {
        let mut out = input.to_vec();
        let mut io = BlockIo::in_place(&mut out).map_err(|_| XtsError::LengthMismatch {
            units: tweaks.units(),
            unit_bytes,
            len: input.len(),
        })?;
        self.process(direction, tweaks, unit_bytes, &mut io)?;
        Ok(out)
    }
}
